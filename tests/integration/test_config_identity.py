"""One checkpoint under two configs: where the configs make its blocks compute otherwise (an activation, a norm's
epsilon, a pooling), the two share no node from there (`adapters.signature`), and each is scored on its own
features, as a search of each alone scores it; where they differ only in what fine-tunes change (labels, names,
dropout, versions), they share every block."""

from __future__ import annotations

import json
import shutil

import pytest

from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.zoo.data import digits, newsgroups


def _copies(hub_root, source: str, org: str, edits: dict) -> list[str]:
    """`org/<name>` per edit: `source`'s files with `edit(config)` applied to its config.json."""
    repos = []
    for name, edit in edits.items():
        folder = hub_root / org / name
        shutil.copytree(hub_root / source, folder)
        (folder / "README.md").write_text("---\n---\n")  # no lineage: other tests list the zoos by it
        config = json.loads((folder / "config.json").read_text())
        edit(config)
        (folder / "config.json").write_text(json.dumps(config))
        repos.append(f"{org}/{name}")
    return repos


def _searches(repos, data, tmp_path, **kw):
    # LogME's evidence is continuous: one model's features read two ways score apart, where accuracies may tie
    runs = {}
    for strategy in ("alsatian", "base"):
        args = SearchArguments(result_size=2, batch_size=32, scorer="logme", strategy=strategy,
                               store_dir=str(tmp_path / strategy), **kw)  # fmt: skip
        runs[strategy] = ModelSearcher(candidates=repos, train_dataset=data, args=args).search()
    assert runs["alsatian"].iterations[0]["scores"] == runs["base"].iterations[0]["scores"]
    assert not runs["alsatian"].skipped
    return runs["alsatian"]


@pytest.fixture()
def timm_copies(hub_root, tiny_zoo):
    def model_args(**kw):
        return lambda config: config.setdefault("model_args", {}).update(kw)

    def relabel(config):
        config["label_names"] = [f"class {i}" for i in range(10)]
        config["pretrained_cfg"]["license"] = "mit"
        config["model_args"]["drop_rate"] = 0.3

    source = tiny_zoo.repo_ids[1]
    edits = {"pool-max": model_args(global_pool="max"), "gelu": model_args(act_layer="gelu"), "relabelled": relabel}
    yield [source, *_copies(hub_root, source, "cfgorg", edits)]
    shutil.rmtree(hub_root / "cfgorg")


def test_a_timm_checkpoint_under_another_pooling_or_activation_is_scored_on_its_own_features(hub, timm_copies,
                                                                                           tmp_path):  # fmt: skip
    source, pool_max, gelu, relabelled = timm_copies
    # at 96 px the last feature map is 3x3: a max pool reads it otherwise than the average (at 32 px it is 1x1)
    res = _searches(timm_copies, digits(num_items=60, seed=0), tmp_path, image_size=96)
    scores = res.iterations[0]["scores"]
    assert len({scores[source], scores[pool_max], scores[gelu]}) == 3
    assert scores[relabelled] == scores[source]
    # the max pool shares every block before its read-out; GELU shares none; the relabelled copy shares all
    blocks = res.plan["total_blocks"] // 4
    assert res.plan["unique_blocks"] == blocks + 1 + blocks
    # and the search says which copies hold the original's tensors but compute them apart, and why
    apart = {tuple(p["models"]): (p["blocks"], p["keys"]) for p in res.plan["computed_apart"]}
    assert apart == {(source, pool_max): (1, ["global_pool"]), (source, gelu): (blocks, ["act_layer"])}
    assert f"{source} and {gelu} hold the same tensors in {blocks} blocks" in res.summary()


@pytest.fixture()
def bert_copies(hub_root, tiny_bert_repo):
    def edit(**kw):
        return lambda config: config.update(kw)

    labels = {"0": "space", "1": "autos", "2": "guns"}
    source = tiny_bert_repo.repo_ids[0]
    edits = {
        "relu": edit(hidden_act="relu"),
        "causal": edit(is_decoder=True),  # BERT as a decoder attends causally, with the same tensors
        # as a fine-tune saved by transformers 4 differs from its base: with keys today's BERT no longer reads
        "relabelled": edit(id2label=labels, label2id={v: int(k) for k, v in labels.items()}, hidden_dropout_prob=0.3,
                           _name_or_path="someone/else", transformers_version="4.30.0",
                           position_embedding_type="absolute", gradient_checkpointing=False),
    }  # fmt: skip
    yield [source, *_copies(hub_root, source, "cfgorg", edits)]
    shutil.rmtree(hub_root / "cfgorg")


def test_a_transformers_checkpoint_under_another_activation_or_attention_is_scored_on_its_own_features(
    hub, bert_copies, tmp_path
):
    source, relu, causal, relabelled = bert_copies
    data = newsgroups(num_items=60, seed=0, categories=["sci.space", "rec.autos", "talk.politics.guns"])
    res = _searches(bert_copies, data, tmp_path, max_length=16)
    scores = res.iterations[0]["scores"]
    assert len({scores[source], scores[relu], scores[causal]}) == 3
    assert scores[relabelled] == scores[source]
    blocks = res.plan["total_blocks"] // 4
    assert res.plan["unique_blocks"] == 3 * blocks
    apart = {tuple(p["models"]): (p["blocks"], p["keys"]) for p in res.plan["computed_apart"]}
    assert apart == {(source, relu): (blocks, ["hidden_act"]), (source, causal): (blocks, ["is_decoder"])}


def test_the_summary_lists_a_few_pairs_computed_apart_and_counts_the_rest():
    """An org whose fine-tunes all changed one key gives one pair each: the plan keeps them all, the summary five."""
    from alsatian_hf import SearchResult
    from alsatian_hf.search.result import APART_SHOWN

    apart = [{"models": ["org/base", f"org/ft{i}"], "blocks": 12, "keys": ["layer_norm_eps"],
              "why": "their configs differ in layer_norm_eps"} for i in range(APART_SHOWN + 2)]  # fmt: skip
    summary = SearchResult(ranking=[{"rank": 1, "model": "org/base", "score": 0.5}], plan={"computed_apart": apart})
    text = summary.summary()
    assert text.count("hold the same tensors in 12 blocks") == APART_SHOWN
    assert (
        "org/base and org/ft0 hold the same tensors in 12 blocks but compute them apart: their configs differ" in text
    )
    assert "and 2 more such pairs" in text
