"""The persistent feature cache: repeat and incremental searches compute nothing twice, rankings never change,
and a torn or corrupt entry is recomputed, never used."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from alsatian_hf import ModelSearcher, SearchArguments, SearchCallback
from alsatian_hf.errors import ConfigurationError
from alsatian_hf.store.feature_cache import STATES, FeatureCache, feature_key, state_key
from alsatian_hf.zoo.data import digits, newsgroups


@pytest.fixture(scope="module")
def ds():
    return digits(num_items=80, seed=0)


class _Iterations(SearchCallback):
    """What `on_iteration_end` was told, in order."""

    def __init__(self):
        self.seen = []

    def on_iteration_end(self, *, iteration, scores, survivors):
        self.seen.append((iteration, scores, survivors))


def _search(repos, ds, store, callbacks=None, **kw):
    kw = {"result_size": 1, "image_size": 32, "scorer": "knn", "batch_size": 16, **kw}
    args = SearchArguments(store_dir=str(store), **kw)
    return ModelSearcher(repos, train_dataset=ds, args=args, callbacks=callbacks).search()


def _told(result) -> list[tuple]:
    return [(it["iteration"], it["scores"], it["survivors"]) for it in result.iterations]


def _executions(result) -> int:
    return sum(it["block_executions"] for it in result.iterations)


@pytest.mark.parametrize("strategy", ["alsatian", "shift", "base"])
def test_repeat_search_computes_no_block_and_ranks_alike(hub, tiny_zoo, ds, tmp_path, strategy):
    first = _search(tiny_zoo.repo_ids, ds, tmp_path / "store", strategy=strategy)
    assert _executions(first) > 0 and first.feature_cache["bytes_written"] > 0
    iterations = _Iterations()
    again = _search(tiny_zoo.repo_ids, ds, tmp_path / "store", callbacks=[iterations], strategy=strategy)
    assert _executions(again) == 0
    assert again.feature_cache["miss_items"] == 0 and again.feature_cache["hit_items"] > 0
    assert again.feature_cache["cached"] == sorted(tiny_zoo.repo_ids)
    assert all(it["restored"] for it in again.iterations)  # and no iteration was scored again
    for key in ("candidates", "scores", "survivors"):
        assert [it[key] for it in again.iterations] == [it[key] for it in first.iterations]
    assert again.models == first.models
    assert [r["score"] for r in again.ranking] == [r["score"] for r in first.ranking]  # bit-identical features
    assert iterations.seen == _told(first)  # callbacks hear of restored iterations as of scored ones


def test_features_from_one_strategy_serve_the_others(hub, tiny_zoo, ds, tmp_path):
    clean = _search(tiny_zoo.repo_ids, ds, tmp_path / "clean", strategy="base", feature_cache=False)
    assert not (tmp_path / "clean" / "features").exists() and not clean.feature_cache.get("hit_items")
    _search(tiny_zoo.repo_ids, ds, tmp_path / "store", strategy="base")  # every model on every item
    for strategy in ("alsatian", "shift"):
        res = _search(tiny_zoo.repo_ids, ds, tmp_path / "store", strategy=strategy)
        assert res.models == clean.models and _executions(res) == 0


def test_other_data_or_settings_do_not_hit(hub, tiny_zoo, ds, tmp_path):
    _search(tiny_zoo.repo_ids, ds, tmp_path / "store")
    other = _search(tiny_zoo.repo_ids, digits(num_items=80, seed=1), tmp_path / "store")
    assert other.feature_cache["hit_items"] == 0 and _executions(other) > 0
    resized = _search(tiny_zoo.repo_ids, ds, tmp_path / "store", image_size=40)  # another input key
    assert resized.feature_cache["hit_items"] == 0 and _executions(resized) > 0


def test_an_org_that_gained_models_runs_only_the_new_ones(hub, tiny_zoo, ds, tmp_path):
    old, new = tiny_zoo.repo_ids[:4], tiny_zoo.repo_ids[4:]
    _search(old, ds, tmp_path / "store")
    grown = _search(old + new, ds, tmp_path / "store")
    clean = _search(old + new, ds, tmp_path / "clean", feature_cache=False)
    assert grown.models == clean.models
    first = grown.iterations[0]
    assert sorted(first["cached"]) == sorted(old)  # D_1 of the bigger search is a prefix of the old D_1
    assert first["block_executions"] < clean.iterations[0]["block_executions"]


def test_corrupt_and_torn_segments_are_recomputed(hub, tiny_zoo, ds, tmp_path, caplog):
    first = _search(tiny_zoo.repo_ids, ds, tmp_path / "store")
    # the longest-surviving model's segments: a repeat restores the iterations, then reads the survivors' features
    # (an early-pruned model's are never read again, and which one sorts first depends on the key hashes)
    folders = {p.parent for p in (tmp_path / "store" / "features").rglob("*.safetensors") if STATES not in p.parts}
    segments = sorted(max(folders, key=lambda f: (len(list(f.glob("*.safetensors"))), str(f))).glob("*.safetensors"))
    data = bytearray(segments[0].read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in a feature
    segments[0].write_bytes(bytes(data))
    segments[1].write_bytes(segments[1].read_bytes()[:100])  # a torn write
    with caplog.at_level("WARNING", logger="alsatian_hf"):
        again = _search(tiny_zoo.repo_ids, ds, tmp_path / "store")
    assert again.feature_cache["corrupt"] == 2 and "corrupt" in caplog.text
    assert 0 < _executions(again) < _executions(first)
    assert again.models == first.models
    assert [r["score"] for r in again.ranking] == [r["score"] for r in first.ranking]
    assert FeatureCache(tmp_path / "store" / "features", budget=1 << 40).gc(verify=True)["corrupt"] == 0


@pytest.mark.parametrize("when", ["extraction", "between_iterations"])
def test_a_killed_search_resumes_from_what_it_persisted(hub, tiny_zoo, ds, tmp_path, when):
    """The process dies (os._exit: no clean-up, as a SIGKILL) inside iteration 1's extraction, or right after
    iteration 1 was persisted; run again, it computes only the rest and ranks as a clean run."""
    method, after = ("put", 12) if when == "extraction" else ("save_iteration", 1)
    script = f"""
import os
from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.store import feature_cache
from alsatian_hf.zoo.data import digits, newsgroups
original, count = feature_cache.FeatureCache.{method}, [0]
def dying(self, *a, **k):
    original(self, *a, **k)
    count[0] += 1
    if count[0] == {after}:
        os._exit(9)
feature_cache.FeatureCache.{method} = dying
args = SearchArguments(result_size=1, image_size=32, scorer="knn", store_dir={str(tmp_path / "store")!r}, batch_size=16)
ModelSearcher({tiny_zoo.repo_ids!r}, train_dataset=digits(num_items=80, seed=0), args=args).search()
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 9, out.stderr[-2000:]
    iterations = _Iterations()
    resumed = _search(tiny_zoo.repo_ids, ds, tmp_path / "store", callbacks=[iterations])
    clean = _search(tiny_zoo.repo_ids, ds, tmp_path / "clean", feature_cache=False)
    assert iterations.seen == _told(clean)  # restored or scored, every iteration once, in order
    assert resumed.models == clean.models
    assert [it["scores"] for it in resumed.iterations] == [it["scores"] for it in clean.iterations]
    assert resumed.feature_cache["hit_items"] > 0
    assert _executions(resumed) < _executions(clean)
    if when == "between_iterations":
        assert resumed.iterations[0]["restored"] and resumed.iterations[0]["block_executions"] == 0
        assert [it["block_executions"] for it in resumed.iterations[1:]] == [
            it["block_executions"] for it in clean.iterations[1:]]  # fmt: skip


def test_eviction_keeps_the_budget_least_recently_used_first(tmp_path):
    cache = FeatureCache(tmp_path, budget=3000)
    keys = [feature_key("in", [f"block-{i}"], "cpu") for i in range(4)]
    for i, key in enumerate(keys):
        cache.put(key, "fp", (0, 1), torch.full((2, 128), float(i)))  # ~1.2 KB each
        os.utime(tmp_path / key[:2] / key, (1000 + i, 1000 + i))  # written in this order
    assert cache.get(keys[0], "fp", (0, 1))  # the oldest is used again: the second-oldest goes first
    assert cache.evict() > 0 and cache.info().bytes <= 3000
    assert cache.get(keys[0], "fp", (0, 1)) and not cache.get(keys[1], "fp", (0, 1))


def test_two_writers_of_one_batch_leave_one_good_segment(tmp_path):
    a, b = FeatureCache(tmp_path, budget=1 << 30), FeatureCache(tmp_path, budget=1 << 30)
    key = feature_key("in", ["x"], "cpu")
    a.put(key, "fp", (5, 6), torch.ones(2, 8))
    b.put(key, "fp", (5, 6), torch.ones(2, 8))
    assert len(list(tmp_path.rglob("*.safetensors"))) == 1 and not list(tmp_path.rglob(".tmp-*"))
    assert a.get(key, "fp", (5, 6))[6].tolist() == [1.0] * 8


def test_bad_budget_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="feature_cache_budget"):
        SearchArguments(feature_cache_budget="lots")


def _node_items(result) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in result.iterations:
        for node, n in it["node_items"].items():
            out[node] = out.get(node, 0) + n
    return out


@pytest.mark.parametrize("persist_states", [True, False])
def test_a_grown_org_computes_only_the_blocks_its_new_model_adds(hub, tiny_zoo, ds, tmp_path, persist_states):
    """A new fine-tune starts from the stored state of the prefix it shares with the old models: the grown
    search executes exactly what a clean search executes at task-tree nodes that only the new model has (its
    new block and the parameterless read-out after it). Without states it runs its shared prefix again.
    Five and six candidates make the same schedule, so the old search cut the same batches."""
    old, new = tiny_zoo.repo_ids[:5], tiny_zoo.repo_ids[5:]
    clean_old = _search(old, ds, tmp_path / "clean", feature_cache=False)
    clean_all = _search(old + new, ds, tmp_path / "clean", feature_cache=False)
    _search(old, ds, tmp_path / "store", persist_states=persist_states)
    grown = _search(old + new, ds, tmp_path / "store", persist_states=persist_states)
    assert grown.models == clean_all.models
    assert [r["score"] for r in grown.ranking] == [r["score"] for r in clean_all.ranking]  # bit-identical
    old_nodes = set(_node_items(clean_old))
    new_nodes = sum(n for node, n in _node_items(clean_all).items() if node not in old_nodes)
    assert new_nodes > 0
    if persist_states:
        assert _executions(grown) == new_nodes
        assert grown.feature_cache["state_items_read"] > 0
    else:
        assert _executions(grown) > 2 * new_nodes
        assert not (tmp_path / "store" / "features" / STATES).exists()


def _keep_only_states(store) -> None:
    """Drop every model's features and finished iterations, as if the models had never been searched."""
    for path in (store / "features").iterdir():
        if path.name != STATES:
            shutil.rmtree(path)


@pytest.mark.parametrize("zoo", ["tiny_zoo", "vit_zoo", "tiny_bert_repo"])
def test_models_started_from_stored_states_score_bit_identically(zoo, hub, tmp_path, request):
    """Convolution states (channels-last), ViT token states and BERT's (hidden states, attention mask) tuples
    all come back in their dtype and layout: a search that starts its models from them scores exactly as one
    that ran them through."""
    repos = request.getfixturevalue(zoo).repo_ids
    text = zoo == "tiny_bert_repo"
    data = (
        newsgroups(num_items=60, seed=0, categories=["sci.space", "rec.sport.hockey"])
        if text
        else digits(num_items=80, seed=0)
    )
    store = tmp_path / "store"
    first = _search(repos, data, store, max_length=32)
    assert first.feature_cache["state_items_written"] > 0
    _keep_only_states(store)
    again = _search(repos, data, store, max_length=32)
    assert again.feature_cache["state_items_read"] > 0 and again.feature_cache["hit_items"] == 0
    assert 0 < _executions(again) < _executions(first)
    assert [it["scores"] for it in again.iterations] == [it["scores"] for it in first.iterations]


def test_a_corrupt_state_is_recomputed_never_used(hub, tiny_zoo, ds, tmp_path, caplog):
    store = tmp_path / "store"
    first = _search(tiny_zoo.repo_ids, ds, store)
    _keep_only_states(store)
    segments = sorted((store / "features" / STATES).rglob("*.safetensors"))
    for path in segments:  # a flipped bit near the end of every state: wherever a model starts, it finds one
        data = bytearray(path.read_bytes())
        data[-3] ^= 0xFF
        path.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="alsatian_hf"):
        again = _search(tiny_zoo.repo_ids, ds, store)
    assert again.feature_cache["corrupt"] > 0 and "corrupt" in caplog.text
    assert again.feature_cache["state_items_read"] == 0
    assert [it["scores"] for it in again.iterations] == [it["scores"] for it in first.iterations]
    cache = FeatureCache(store / "features", budget=1 << 40)
    assert cache.gc(verify=True)["corrupt"] > 0  # shallower states the search never needed to read
    assert cache.gc(verify=True)["corrupt"] == 0


def test_states_keep_dtype_and_layout_and_are_evicted_first(tmp_path):
    cache = FeatureCache(tmp_path, budget=1 << 30)
    conv = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    key = state_key("in", ["block-a"], "cpu")
    cache.put_state(key, "fp", (7, 9), (conv, mask))
    got_conv, got_mask = cache.get_state(key, "fp", (7, 9))
    assert torch.equal(got_conv, conv) and got_conv.stride() == conv.stride()
    assert torch.equal(got_mask, mask) and got_mask.dtype == torch.int64
    assert cache.get_state(key, "fp", (7, 8)) is None  # another batch
    assert cache.stored_states(key, "fp") == {FeatureCache.segment_name((7, 9))}
    features = feature_key("in", ["block-a"], "cpu")
    cache.put(features, "fp", (7, 9), torch.ones(2, 8))
    info = cache.info()
    assert info.states == 1 and info.state_bytes > 0 and info.models == 1
    cache.budget = info.bytes + info.state_bytes - 1  # one byte too many: the state goes, the features stay
    assert cache.evict() == info.state_bytes
    assert cache.get_state(key, "fp", (7, 9)) is None and cache.get(features, "fp", (7, 9))


def test_lazy_eviction_scans_again_once_the_writes_may_outgrow_the_budget(tmp_path):
    cache = FeatureCache(tmp_path, budget=3000)
    keys = [feature_key("in", [f"block-{i}"], "cpu") for i in range(3)]
    cache.put(keys[0], "fp", (0, 1), torch.zeros(2, 128))  # ~1.2 KB each
    assert cache.evict() == 0
    cache.put(keys[1], "fp", (0, 1), torch.ones(2, 128))
    assert cache.evict(lazy=True) == 0 and cache.info().bytes > 2000  # what was written still fits
    cache.put(keys[2], "fp", (0, 1), torch.ones(2, 128))
    assert cache.evict(lazy=True) > 0 and cache.info().bytes <= 3000


def test_another_label_column_of_the_same_rows_is_scored_not_restored(hub, tiny_zoo, ds, tmp_path):
    """The datasets' fingerprints name their rows, not which column labels them. With `eval_dataset` as D_test
    the schedule does not depend on the labels either, so a search against another column of the same datasets
    (CIFAR-100's `fine_label`, then `coarse_label`) has the same units: it must score, not restore the first's."""
    coarse = lambda split: split.add_column("coarse", [label // 5 for label in split["label"]])  # noqa: E731
    train, test = coarse(ds.select(range(60))), coarse(ds.select(range(60, 80)))

    def search(label_column):
        args = SearchArguments(store_dir=str(tmp_path / "store"), result_size=1, image_size=32, scorer="knn",
                               batch_size=16)  # fmt: skip
        searcher = ModelSearcher(tiny_zoo.repo_ids, train_dataset=train, eval_dataset=test, args=args,
                                 label_column=label_column)  # fmt: skip
        return searcher.search()

    fine = search("label")
    again, other = search("label"), search("coarse")
    assert all(it["restored"] for it in again.iterations)  # the same search is restored
    assert not any(it["restored"] for it in other.iterations)
    assert other.iterations[0]["scores"] != fine.iterations[0]["scores"]  # 2 classes score unlike 10
