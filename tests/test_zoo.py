"""The M_syn zoo recipe and builder: seeded, n >= 1, unique blocks as the recipe predicts."""

from __future__ import annotations

import random
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alsatian_hf.localhub._repo import FolderRepo
from alsatian_hf.zoo import DISTRIBUTIONS, TimmSource, ZooSpec, build_zoo, expected_unique_blocks, plan_zoo
from alsatian_hf.zoo._recipe import sample_num_reinit


@given(dist=st.sampled_from(DISTRIBUTIONS), blocks=st.integers(1, 60), seed=st.integers(0, 10_000))
def test_num_reinit_is_at_least_one_and_at_most_all(dist, blocks, seed):
    n = sample_num_reinit(dist, blocks, random.Random(seed))
    assert 1 <= n <= blocks


def test_distributions_differ_as_the_paper_describes():
    rng = random.Random(0)
    means = {d: sum(sample_num_reinit(d, 20, rng) for _ in range(400)) / 400 for d in DISTRIBUTIONS}
    assert means["top_layers"] < 2.5 < means["top_25"] < means["top_50"]
    assert abs(means["top_50"] - 10) < 1.5 and abs(means["top_25"] - 5) < 1.5


def test_plan_is_seeded_and_parents_exist():
    a, b = plan_zoo(35, 9, "top_25", seed=4), plan_zoo(35, 9, "top_25", seed=4)
    assert a == b and a != plan_zoo(35, 9, "top_25", seed=5)
    assert a[0].parent is None and all(e.parent < e.index for e in a[1:])


def test_tiny_zoo_cards_and_unique_blocks(tiny_zoo, hub_root):
    assert (
        tiny_zoo.unique_blocks
        == tiny_zoo.expected_unique_blocks
        == expected_unique_blocks(tiny_zoo.entries, tiny_zoo.num_blocks)
    )
    card = (hub_root / tiny_zoo.repo_ids[1] / "README.md").read_text()
    assert card.startswith("---") and 'base_model: "tiny/model-base"' in card and 'library_name: "timm"' in card
    assert FolderRepo(hub_root, "model", tiny_zoo.repo_ids[1]).card_data()["pipeline_tag"] == "image-classification"


def test_existing_zoo_is_not_overwritten_silently(tiny_zoo, hub_root):
    with pytest.raises(FileExistsError, match="overwrite"):
        build_zoo(
            ZooSpec(
                "tiny",
                TimmSource("test_resnet", model_args={"num_classes": 10}),
                num_models=6,
                distribution="top_25",
                seed=1,
            ),
            hub_root,
        )


@pytest.mark.slow
def test_resnet18_top_layers_zoo_of_35_is_reproducible(tmp_path):
    spec = ZooSpec(
        "r18", TimmSource("resnet18", model_args={"num_classes": 10}), num_models=35, distribution="top_layers", seed=0
    )
    first = build_zoo(spec, tmp_path / "a")
    assert first.unique_blocks == first.expected_unique_blocks and len(first.repo_ids) == 35
    shas = {repo: FolderRepo(tmp_path / "a", "model", repo).commit_sha() for repo in first.repo_ids}
    shutil.rmtree(tmp_path / "a")  # each copy is 1.5 GB: hold one at a time
    second = build_zoo(spec, tmp_path / "b")
    assert second.repo_ids == first.repo_ids
    assert {repo: FolderRepo(tmp_path / "b", "model", repo).commit_sha() for repo in second.repo_ids} == shas
