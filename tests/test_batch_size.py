"""`batch_size="auto"`: the cost model that weighs blocks by the zoo's unique nodes, the sizes it may try, and
the measured choice kept in the store, so that repeated and grown searches cut the same batches."""

from __future__ import annotations

import json

import pytest

from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.engine.batch_size import RECORD, choose, estimate, sizes
from alsatian_hf.errors import ConfigurationError
from alsatian_hf.zoo.data import digits, newsgroups


def test_estimate_weighs_each_block_by_its_unique_nodes():
    # a trunk block slower per item at 256 than at 64, and a top block twice as fast per item at 256
    seconds = {64: [0.064, 0.064], 256: [0.320, 0.128]}
    trunk_heavy = estimate(seconds, [10, 1])  # full fine-tunes: ten trunks, one top
    top_heavy = estimate(seconds, [1, 10])  # top-layer fine-tunes: one trunk, ten tops
    assert trunk_heavy == pytest.approx({64: 0.704 / 64, 256: 3.328 / 256})
    assert top_heavy == pytest.approx({64: 0.704 / 64, 256: 1.6 / 256})
    assert choose(trunk_heavy) == 64
    assert choose(top_heavy) == 256


def test_choose_takes_the_largest_size_within_the_gain_of_the_fastest():
    # per-batch costs the measurement leaves out fall with larger batches: alike sizes go to the largest
    assert choose({32: 1.0, 64: 0.5, 128: 0.51, 256: 0.6}) == 128
    assert choose({32: 1.0, 64: 0.5, 128: 0.51, 256: 0.6}, min_gain=0.0) == 64


def test_sizes_reach_the_largest_unit_and_stay_within_the_cache_budget():
    assert sizes(800) == [32, 64, 128, 256, 512, 1024]  # 1024 runs the 800-item unit as one batch
    assert sizes(512) == [32, 64, 128, 256, 512]
    assert sizes(20) == [32]
    assert sizes(100, capacity=70) == [32, 64]
    assert sizes(100, capacity=10) == [10]  # a budget below every size: the most one batch can hold


@pytest.mark.parametrize("bad", [0, -3, "big", 2.5, True])
def test_batch_size_must_be_a_positive_count_or_auto(bad):
    with pytest.raises(ConfigurationError, match="batch_size"):
        SearchArguments(batch_size=bad)


def test_batch_size_from_the_command_line_is_a_number():
    assert SearchArguments(batch_size="128").batch_size == 128
    assert SearchArguments().batch_size == "auto"


def test_channels_last_is_a_bool_or_auto_from_code_and_command_line():
    assert SearchArguments().channels_last == "auto"
    assert SearchArguments(channels_last="false").channels_last is False
    assert SearchArguments(channels_last="True").channels_last is True
    assert SearchArguments(channels_last=False).channels_last is False
    with pytest.raises(ConfigurationError, match="channels_last.*'auto'"):
        SearchArguments(channels_last="nhwc")


@pytest.fixture(scope="module")
def ds():
    return digits(num_items=400, seed=0)  # its largest halving slice holds > 128 items: sizes to choose from


def _search(repos, ds, store, **kw):
    args = SearchArguments(result_size=1, image_size=32, scorer="knn", store_dir=str(store), **kw)
    return ModelSearcher(repos, train_dataset=ds, args=args).search()


def test_auto_measures_once_keeps_the_choice_and_ranks_as_a_fixed_size(hub, tiny_zoo, ds, tmp_path):
    store = tmp_path / "store"
    first = _search(tiny_zoo.repo_ids, ds, store)
    tuning = first.plan["batch_size_tuning"]
    assert tuning["source"] == "measured" and tuning["seconds"] > 0
    measured = {int(k) for k in tuning["seconds_per_item"]}
    assert len(measured) >= 2 and measured <= {32, 64, 128, 256}
    assert first.plan["batch_size"] == tuning["size"] in measured
    assert f"Execution batch size: {tuning['size']} (measured in" in first.summary()
    record = json.loads((store / RECORD).read_text())
    assert [entry["size"] for entry in record.values()] == [tuning["size"]]

    again = _search(tiny_zoo.repo_ids, ds, store)  # the store's choice: nothing measured
    assert again.plan["batch_size_tuning"]["source"] == "store"
    assert again.plan["batch_size"] == first.plan["batch_size"]
    assert again.models == first.models

    pinned = _search(tiny_zoo.repo_ids, ds, tmp_path / "other", batch_size=first.plan["batch_size"], strategy="base")
    assert pinned.plan["batch_size_tuning"] is None
    assert pinned.models == first.models
    assert [r["score"] for r in pinned.ranking] == [r["score"] for r in first.ranking]


def test_a_grown_zoo_of_the_same_architecture_reuses_the_choice(hub, tiny_zoo, ds, tmp_path):
    store = tmp_path / "store"
    first = _search(tiny_zoo.repo_ids[:3], ds, store)
    grown = _search(tiny_zoo.repo_ids, ds, store)
    assert first.plan["batch_size_tuning"]["source"] == "measured"
    assert grown.plan["batch_size_tuning"]["source"] == "store"
    assert grown.plan["batch_size"] == first.plan["batch_size"]


def test_a_tiny_dataset_needs_no_measurement(hub, tiny_zoo, tmp_path):
    res = _search(tiny_zoo.repo_ids, digits(num_items=60, seed=0), tmp_path / "store")
    assert res.plan["batch_size"] == 32 and res.plan["batch_size_tuning"]["source"] == "one size"
    assert not (tmp_path / "store" / RECORD).exists()


def test_auto_measures_text_models_on_their_token_states(hub, tiny_bert_repo, tmp_path):
    data = newsgroups(num_items=300, seed=0, categories=["sci.space", "rec.sport.hockey"])
    auto = _search(tiny_bert_repo.repo_ids, data, tmp_path / "store", max_length=32)
    assert (
        auto.plan["batch_size_tuning"]["source"] == "measured"
        and len(auto.plan["batch_size_tuning"]["seconds_per_item"]) >= 2
    )
    pinned = _search(tiny_bert_repo.repo_ids, data, tmp_path / "store", max_length=32,
                     batch_size=auto.plan["batch_size"], strategy="base")  # fmt: skip
    assert pinned.models == auto.models
    assert [r["score"] for r in pinned.ranking] == [r["score"] for r in auto.ranking]


@pytest.mark.gpu
def test_auto_on_cuda_measures_on_the_device_and_ranks_as_cpu(hub, tiny_zoo, ds, tmp_path):
    cuda = _search(tiny_zoo.repo_ids, ds, tmp_path / "store", device="cuda")
    assert cuda.plan["batch_size_tuning"]["source"] == "measured"
    cpu = _search(tiny_zoo.repo_ids, ds, tmp_path / "cpu", device="cpu", batch_size=cuda.plan["batch_size"])
    assert cuda.models == cpu.models
    assert [r["score"] for r in cuda.ranking] == pytest.approx([r["score"] for r in cpu.ranking], abs=1e-4)
