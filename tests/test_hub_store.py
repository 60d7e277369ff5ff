"""Blocks straight from Hub safetensors: bytes fetched, nothing extra, repeat searches, faults, concurrency."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from alsatian_hf._safetensors import decode, read_file_header
from alsatian_hf.candidates import open_hub
from alsatian_hf.errors import BlockFetchError
from alsatian_hf.hub import RangeReader, list_candidates, merge_ranges
from alsatian_hf.search import ModelSearcher, SearchArguments
from alsatian_hf.store.block_store import BlockStore
from alsatian_hf.zoo import TimmSource, ZooSpec, build_zoo
from alsatian_hf.zoo.data import digits


@pytest.fixture(scope="module")
def fetch_zoo(hub_root):
    """35 `test_resnet` models, top_layers (a benchmark-shaped zoo with tiny blocks)."""
    return build_zoo(
        ZooSpec(
            "fetch",
            TimmSource("test_resnet", model_args={"num_classes": 10}),
            num_models=35,
            distribution="top_layers",
            seed=5,
        ),
        hub_root,
    )


@pytest.fixture(scope="module")
def small_ds():
    return digits(num_items=60, seed=0)


def _args(tmp_path, **kw):
    return SearchArguments(
        result_size=2, image_size=32, scorer="knn", store_dir=str(tmp_path / "store"), batch_size=32, **kw
    )


def _header(path: Path) -> tuple[int, dict]:
    """(JSON length, header) of a checkpoint, through the package's one header reader."""
    header, start = read_file_header(path)
    return start - 8, header


def _head_ranges(path: Path) -> list[tuple[int, int]]:
    n, header = _header(path)
    return [
        (8 + n + m["data_offsets"][0], 8 + n + m["data_offsets"][1]) for k, m in header.items() if k.startswith("fc.")
    ]


def _fe_bytes(path: Path) -> int:
    n, header = _header(path)
    return sum(m["data_offsets"][1] - m["data_offsets"][0] for k, m in header.items() if not k.startswith("fc."))


def _weight_requests(hub):
    return [r for r in hub.requests(kind="resolve") if r.path.endswith(".safetensors")]


@pytest.mark.slow
def test_bytes_fetched_store_size_and_nothing_extra(hub, hub_root, fetch_zoo, small_ds, tmp_path):
    result = ModelSearcher.from_hub(author="fetch", train_dataset=small_ds, args=_args(tmp_path)).search()
    assert not result.skipped and len(result.ranking) == 2
    weights = _weight_requests(hub)
    fe_total = sum(_fe_bytes(hub_root / r / "model.safetensors") for r in fetch_zoo.repo_ids)
    header_bytes = sum(r.bytes_sent for r in weights if r.range.startswith(("bytes=0-7", "bytes=8-")))
    assert header_bytes == sum(8 + _header(hub_root / r / "model.safetensors")[0] for r in fetch_zoo.repo_ids)
    fetched = sum(r.bytes_sent for r in weights)
    assert fetched <= 1.05 * fe_total + header_bytes
    assert result.bytes_fetched == fetched
    # nothing extra: every weight request is a 206 byte range, and none touches a head tensor
    for r in weights:
        assert r.range and r.status == 206, r
        repo = "/".join(r.path.strip("/").split("/")[:2])
        start, end = map(int, r.range.removeprefix("bytes=").split("-"))
        for hs, he in _head_ranges(hub_root / repo / "model.safetensors"):
            assert end < hs or start >= he, f"head bytes requested from {repo}"
    # the store keeps each unique block once
    store = BlockStore(tmp_path / "store")
    info = store.info()
    unique_bytes = sum(len(b) for p in store.block_files() for _, _, _, b in decode(p.read_bytes()))
    assert info.bytes <= 1.05 * unique_bytes + 4096 * info.blocks  # safetensors headers per block file
    assert info.blocks == fetch_zoo.unique_blocks  # the weightless read-out needs no file
    assert info.logical_bytes > info.bytes and info.dedup_ratio == info.logical_bytes / info.bytes


def test_repeat_search_fetches_nothing_and_runs_offline(hub, tiny_zoo, small_ds, tmp_path):
    first = ModelSearcher(tiny_zoo.repo_ids, train_dataset=small_ds, args=_args(tmp_path)).search()
    hub.clear_log()
    second = ModelSearcher(tiny_zoo.repo_ids, train_dataset=small_ds, args=_args(tmp_path)).search()
    assert second.models == first.models
    assert second.bytes_fetched == 0
    assert sum(r.bytes_sent for r in _weight_requests(hub)) == 0
    pinned = [f"{r['model']}@{r['revision']}" for r in first.ranking]
    script = f"""
import os, json
from alsatian_hf.search import ModelSearcher, SearchArguments
from alsatian_hf.zoo.data import digits
res = ModelSearcher({pinned!r}, train_dataset=digits(num_items=60, seed=0),
                    args=SearchArguments(result_size=1, image_size=32, scorer="knn", store_dir={str(tmp_path / "store")!r})).search()
print(json.dumps([res.models, res.bytes_fetched, res.skipped]))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    models, fetched, skipped = json.loads(out.stdout.strip().splitlines()[-1])
    assert fetched == 0 and not skipped and models[0] in first.models


def test_a_warm_search_of_listed_candidates_sends_the_listing_alone(hub, fetch_zoo, small_ds, tmp_path):
    """Listed candidates are pinned to commits, whose metadata (files, LFS hashes, base model) the store keeps:
    a repeat search asks the Hub for the listing and nothing per candidate, and opens every candidate alike."""
    first = ModelSearcher.from_hub(author="fetch", train_dataset=small_ds, args=_args(tmp_path)).search()
    store = BlockStore(tmp_path / "store")
    kept = {c.repo_id: store.load_commit(c.repo_id, c.revision) for c in list_candidates(author="fetch")}
    assert len(kept) == 35 and all(k is not None and k["files_sha"] for k in kept.values())
    assert all(k["base_model"] in fetch_zoo.repo_ids for m, k in kept.items() if m != "fetch/model-base")
    hub.clear_log()
    second = ModelSearcher.from_hub(author="fetch", train_dataset=small_ds, args=_args(tmp_path)).search()
    assert second.models == first.models and second.bytes_fetched == 0
    paths = [r.path for r in hub.requests()]
    assert paths and all(p.startswith("/api/models?") for p in paths), paths


def test_server_ignoring_range_is_a_clear_error_unless_allowed(hub, tiny_zoo, tmp_path, caplog):
    repo = tiny_zoo.repo_ids[0]
    hub.faults.ignore_range = True
    store = BlockStore(tmp_path / "s1")
    with pytest.raises(BlockFetchError, match="allow_full_download"):
        open_hub(repo, None, store=store, reader=RangeReader())
    reader = RangeReader(allow_full_download=True)
    opened = open_hub(repo, None, store=store, reader=reader)
    assert reader.stats.full_downloads == 1 and "ignores Range" in caplog.text
    assert "fc.weight" in opened.source.keys()


def test_truncated_bodies_and_500s_are_retried_and_never_stored(hub, tiny_zoo, small_ds, tmp_path):
    hub.faults.truncate = 10
    with pytest.raises(Exception):
        ModelSearcher(tiny_zoo.repo_ids[:2], train_dataset=small_ds, args=_args(tmp_path)).search()
    store = BlockStore(tmp_path / "store")
    assert store.info().blocks == 0  # nothing half-written entered the store
    assert store.gc(verify=True)["corrupt"] == 0
    hub.faults.reset()
    hub.faults.fail_every = 3  # every third resolve request fails once: retries get through
    result = ModelSearcher(tiny_zoo.repo_ids[:3], train_dataset=small_ds, args=_args(tmp_path)).search()
    assert not result.skipped and len(result.ranking) == 2
    for path in store.block_files():  # every stored block matches its hash
        store.get(path.stem)


def test_a_rate_limited_search_waits_for_the_window_and_ranks_as_before(hub, tiny_zoo, small_ds, tmp_path, caplog):
    """The Hub answers 429 with its `RateLimit` headers once a user's requests in a window are spent: the search
    waits for the window to reset (retrying within seconds failed every candidate past the quota) and ranks as a
    search the Hub never limited."""
    repos = tiny_zoo.repo_ids[:4]  # in one layout: the timed `auto` probe could pick two, with other numerics
    free = ModelSearcher(repos, train_dataset=small_ds, args=_args(tmp_path / "free", channels_last=True)).search()
    hub.clear_log()
    # a warm HF cache: 12 API requests and 49 range reads here, sent in well under a second; the quotas leave a
    # margin. The window outlasts the 1.5-4.5 s of backoff that retries alone would spend, so only waiting for
    # its reset gets through.
    hub.faults.rate_limits = {"api": (8, 6.0), "resolvers": (20, 6.0)}
    limited = ModelSearcher(
        repos, train_dataset=small_ds, args=_args(tmp_path / "limited", channels_last=True)
    ).search()
    assert not limited.skipped and limited.ranking == free.ranking
    answers = hub.requests()
    assert {r.status for r in answers if "/api/" in r.path} >= {200, 429}
    assert {r.status for r in answers if "/resolve/" in r.path} >= {206, 429}
    assert "rate-limited" in caplog.text and "window to reset" in caplog.text


def test_merge_ranges_merges_touching_spans():
    assert merge_ranges([(10, 20), (0, 10), (30, 40), (35, 50)]) == [(0, 20), (30, 50)]


def test_two_processes_fill_one_store(hub, tiny_zoo, tmp_path):
    script = f"""
from alsatian_hf.candidates import open_hub
from alsatian_hf.hub import RangeReader
from alsatian_hf.adapters.skeleton import build_model
from alsatian_hf.adapters import split_model
from alsatian_hf.store.block_store import BlockStore
store = BlockStore({str(tmp_path / "shared")!r})
for repo in {tiny_zoo.repo_ids!r}:
    opened = open_hub(repo, None, store=store, reader=RangeReader())
    split = split_model(build_model(opened.folder), checkpoint_keys=opened.source.keys())
    for i in range(len(split.blocks)):
        opened.source.block_hash(split, i)
"""
    procs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    store = BlockStore(tmp_path / "shared")
    files = list(store.block_files())
    assert len(files) == len({f.stem for f in files}) == tiny_zoo.unique_blocks
    for f in files:
        store.get(f.stem)
    assert not list((tmp_path / "shared" / "blocks").glob("*/.tmp-*"))


def test_listing_follows_the_base_model_tree(hub, fetch_zoo):
    found = {c.repo_id for c in list_candidates(base_model="fetch/model-base")}
    assert found == set(fetch_zoo.repo_ids[1:])
    assert all(c.revision and len(c.revision) == 40 for c in list_candidates(author="fetch", limit=3))


def test_max_params_filters_without_downloading(hub, fetch_zoo, tiny_bert_repo):
    every = list(list_candidates(author="fetch"))
    n = every[0].num_parameters
    assert n and all(c.num_parameters == n for c in every)
    hub.clear_log()
    assert list(list_candidates(author="fetch", max_params=n - 1)) == []
    assert len(list(list_candidates(author="fetch", max_params=n))) == 35
    assert hub.requests(kind="resolve") == []


def test_repo_without_safetensors_is_skipped_with_reason(hub, hub_root, tiny_zoo, small_ds, tmp_path):
    folder = hub_root / "binonly" / "model"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text((hub_root / tiny_zoo.repo_ids[0] / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle we would ever open")
    try:
        listed = list(list_candidates(author="binonly"))
        assert listed[0].skip_reason is None  # its safetensors conversion is looked for when it is opened
        result = ModelSearcher(
            [*listed, tiny_zoo.repo_ids[0], "binonly/missing"], train_dataset=small_ds, args=_args(tmp_path)
        ).search()
        assert "no open safetensors conversion pull request" in result.skipped["binonly/model"]
        assert "binonly/missing" in result.skipped
        assert result.models == [tiny_zoo.repo_ids[0]]
        (folder / "pytorch_model.bin").unlink()
        assert list(list_candidates(author="binonly"))[0].skip_reason == "no safetensors weights."
    finally:
        shutil.rmtree(folder.parent)


def test_store_cli_info_and_gc(hub, tiny_zoo, small_ds, tmp_path):
    ModelSearcher(tiny_zoo.repo_ids[:2], train_dataset=small_ds, args=_args(tmp_path)).search()
    env = {**os.environ, "ALSATIAN_STORE": str(tmp_path / "store")}
    out = subprocess.run(
        [sys.executable, "-m", "alsatian_hf.cli", "store", "info"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "blocks" in out and "dedup ratio" in out and "feature cache: 2 models" in out
    stray = BlockStore(tmp_path / "store").put([("w", "F32", (1,), b"\0\0\0\0")])
    fresh = BlockStore(tmp_path / "store").put([("w", "F32", (1,), b"\1\0\0\0")])
    os.utime(BlockStore(tmp_path / "store").path(stray), (1, 1))  # unreferenced for long; `fresh` may be indexed next
    out = subprocess.run(
        [sys.executable, "-m", "alsatian_hf.cli", "store", "gc"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "unreferenced: 1" in out
    assert not BlockStore(tmp_path / "store").has(stray) and BlockStore(tmp_path / "store").has(fresh)


def test_an_old_index_is_migrated_once_and_an_up_to_date_one_opens_without_the_setup_lock(tmp_path):
    import sqlite3
    import threading

    root = tmp_path / "store"
    root.mkdir()
    with sqlite3.connect(root / "index.sqlite") as db:  # a store from before identity methods and commit metadata
        db.execute("CREATE TABLE model_blocks (repo TEXT NOT NULL, revision TEXT NOT NULL, block INTEGER NOT NULL, "
                   "family TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (repo, revision, family, block))")  # fmt: skip
        db.execute("INSERT INTO model_blocks VALUES ('org/m', ?, 0, 'f', 'h')", ("a" * 40,))
    store = BlockStore(root)
    store.save_commit("org/m", "a" * 40, {"siblings": ["model.safetensors"], "files_sha": None})
    with sqlite3.connect(root / "index.sqlite") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 1
        assert db.execute("SELECT method FROM model_blocks").fetchall() == [("bytes",)]
    # while another process holds the set-up lock, an up-to-date store still opens at once
    opened = []
    with store.lock("index-setup"):
        t = threading.Thread(target=lambda: opened.append(BlockStore(root)), daemon=True)
        t.start()
        t.join(timeout=30)
    assert opened and opened[0].load_commit("org/m", "a" * 40)["siblings"] == ["model.safetensors"]
    # a store of schema 1 (before shape-probe measurements were kept) gains their table when opened
    with sqlite3.connect(root / "index.sqlite") as db:
        db.execute("DROP TABLE measurements")
        db.execute("PRAGMA user_version = 1")
    BlockStore(root).save_measurement("key", {"sizes": [4]})
    assert BlockStore(root).load_measurement("key") == {"sizes": [4]}
    # the first value kept wins: two ranks that time one thing differently still use one answer
    assert BlockStore(root).save_measurement("key", {"sizes": [5]}) == {"sizes": [4]}
    assert BlockStore(root).load_measurement("key") == {"sizes": [4]}


def test_corrupt_block_file_is_detected_on_read(tmp_path):
    from alsatian_hf.errors import BlockIntegrityError

    store = BlockStore(tmp_path / "s")
    h = store.put([("w", "F32", (2,), b"\0" * 8)])
    store.index_model("org/m", "0" * 40, "family", {0: h})
    assert store.get(h)["w"].shape == (2,)
    path = store.path(h)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(BlockIntegrityError, match="corrupt"):
        store.get(h)
    assert BlockStore(tmp_path / "s").gc(verify=True)["corrupt"] == 1


def test_verified_file_versions_are_remembered_across_store_objects(tmp_path):
    """A repeat search trusts a block file whose size, mtime and inode are unchanged since it was verified (so it
    does not re-hash gigabytes); a changed file is re-hashed, and `gc --verify` re-hashes everything."""
    from alsatian_hf.errors import BlockIntegrityError

    store = BlockStore(tmp_path / "s")
    h = store.put([("w", "F32", (2,), b"\0" * 8)])
    store.index_model("org/m", "0" * 40, "family", {0: h})
    path = store.path(h)
    before = path.stat()
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))  # same size and inode; restore the mtime: this file version looks verified
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert BlockStore(tmp_path / "s").get(h)["w"].shape == (2,)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))  # a new version: hashed again
    with pytest.raises(BlockIntegrityError, match="corrupt"):
        BlockStore(tmp_path / "s").get(h)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert BlockStore(tmp_path / "s").gc(verify=True)["corrupt"] == 1


def _mapped_file(t) -> str | None:
    """The file whose memory mapping holds the tensor's first byte (/proc/self/maps); None for anonymous memory."""
    ptr = t.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= ptr < hi:
            return parts[5] if len(parts) == 6 and parts[5].startswith("/") else None
    return None


def test_prepared_blocks_are_memory_mapped_and_change_no_score(hub, hub_root, tiny_zoo, small_ds, tmp_path):
    """A conv block's prepared form (BatchNorm folded, channels-last) is kept in the store at its first load;
    later loads run on the file's pages, bit-equal to preparing at each load."""
    import torch

    from alsatian_hf.candidates import ShapeProbe, build_candidate, wait_prepared

    def search(folder, **kw):  # channels-last as `build_candidate` below, not by the timed `auto` probe
        args = _args(folder, channels_last=True, **kw)
        return ModelSearcher(tiny_zoo.repo_ids, train_dataset=small_ds, args=args).search()

    off = search(tmp_path / "off", prepared_blocks=False)
    assert BlockStore(tmp_path / "off" / "store").info().prepared_bytes == 0
    first = search(tmp_path / "on")
    wait_prepared()
    store = BlockStore(tmp_path / "on" / "store")
    assert store.info().prepared_bytes > 0
    second = search(tmp_path / "on")
    assert first.ranking == second.ranking == off.ranking  # models and scores, exactly
    assert [it["scores"] for it in first.iterations] == [it["scores"] for it in off.iterations]

    opened = open_hub(tiny_zoo.repo_ids[1], None, store=store, reader=RangeReader())
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    outputs = []
    for prepared_store in (store, None):
        cand, split = build_candidate(
            "m", opened.folder, opened.source, input_key="px32", probe_inputs={"pixel_values": x[:1]},
            probe=ShapeProbe(), prepared_store=prepared_store,
        )  # fmt: skip
        cand.blocks[0].load(torch.device("cpu"))
        outputs.append(cand.blocks[0].run(cand.initial_state({"pixel_values": x}))[0])
        keys = {split.blocks[0].model_key(k) for k in split.blocks[0].keys}
        conv = next(m for p, m in split.model.named_modules() if f"{p}.weight" in keys and hasattr(m, "padding"))
        mapped = _mapped_file(conv.weight)
        if prepared_store is not None:  # the prepared file's pages, in the layout the convolution reads
            assert mapped is not None and "/prepared/" in mapped
            assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        else:
            assert mapped is None  # computed into this process's memory
        cand.blocks[0].unload()
    assert torch.equal(outputs[0], outputs[1])

    # local checkpoints' blocks are not in the store, so neither are their prepared forms
    folders = [str(hub_root / r) for r in tiny_zoo.repo_ids[:2]]
    local = ModelSearcher(folders, train_dataset=small_ds, args=_args(tmp_path / "local")).search()
    wait_prepared()
    assert not local.skipped and BlockStore(tmp_path / "local" / "store").info().prepared_bytes == 0


def test_a_prepared_block_is_verified_and_goes_with_its_block(tmp_path):
    store = BlockStore(tmp_path / "s")
    h = store.put([("w", "F32", (2,), b"\0" * 8)])
    store.index_model("org/m", "0" * 40, "family", {0: h})
    p = store.put_prepared(h, "fold", [("w", "F32", (2,), b"\1" + b"\0" * 7)])
    assert store.prepared(h, "fold")["w"][0] != 0 and store.prepared(h, "other") is None
    assert store.gc()["unreferenced"] == 0 and store.prepared(h, "fold") is not None
    path = store.path(p, "prepared")
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert BlockStore(tmp_path / "s").prepared(h, "fold") is None  # damaged: dropped, to be prepared again
    assert not path.exists()
    p = store.put_prepared(h, "fold", [("w", "F32", (2,), b"\1" + b"\0" * 7)])
    os.utime(store.path(p, "prepared"), (1, 1))
    store.discard(h)  # its block gone: the prepared block goes at the next gc
    removed = BlockStore(tmp_path / "s").gc()
    assert removed["unreferenced"] == 1 and not store.path(p, "prepared").exists()
    assert BlockStore(tmp_path / "s").prepared(h, "fold") is None


def test_a_store_that_cannot_keep_prepared_blocks_warns_once_and_searches_as_before(
    hub, tiny_zoo, small_ds, tmp_path, caplog
):
    from alsatian_hf.candidates import wait_prepared

    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "prepared").write_text("a file where the folder goes: every write fails")
    with caplog.at_level("WARNING", logger="alsatian_hf"):
        result = ModelSearcher(tiny_zoo.repo_ids, train_dataset=small_ds, args=_args(tmp_path)).search()
        wait_prepared()
    off = ModelSearcher(
        tiny_zoo.repo_ids, train_dataset=small_ds, args=_args(tmp_path / "off", prepared_blocks=False)
    ).search()
    assert not result.skipped and result.ranking == off.ranking
    assert caplog.text.count("cannot keep prepared blocks") == 1


def test_a_known_commit_opens_from_the_hf_cache_and_a_missing_small_file_is_fetched_again(hub, tiny_zoo, tmp_path):
    """A commit the store has opened before finds its small files in the HF cache without `snapshot_download`;
    one that lost a file there (a user's cache clean-up) downloads it again instead of opening half a repo."""
    import huggingface_hub
    from huggingface_hub import snapshot_download

    from alsatian_hf.candidates.repos import SMALL_FILES

    listed = next(c for c in list_candidates(author="tiny") if c.repo_id == tiny_zoo.repo_ids[2])
    store = BlockStore(tmp_path / "store")
    first = open_hub(listed.repo_id, listed.revision, store=store, reader=RangeReader())
    assert store.load_commit(listed.repo_id, listed.revision) is not None
    hub.clear_log()
    with pytest.MonkeyPatch.context() as mp:  # its tree-cache read and thread pool were 1 ms a candidate
        mp.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("snapshot_download called"))
        warm = open_hub(listed.repo_id, listed.revision, store=store, reader=RangeReader())
    assert hub.requests() == []
    small = snapshot_download(listed.repo_id, revision=listed.revision, allow_patterns=SMALL_FILES)
    assert warm.folder == first.folder == Path(small)
    (warm.folder / "config.json").unlink()
    again = open_hub(listed.repo_id, listed.revision, store=store, reader=RangeReader())
    assert again.folder == first.folder and json.loads((again.folder / "config.json").read_text())
    assert [r.path for r in hub.requests() if r.path.endswith("config.json")]  # fetched, not assumed


def test_only_candidates_that_need_the_hub_are_opened_in_threads(hub, tiny_zoo, tmp_path):
    """A search opens ahead, in threads, the candidates whose opening waits on the Hub; a commit the store knows,
    a local folder or a listed skip opens in the search's own thread, where threads would only contend."""
    from alsatian_hf.candidates.repos import opens_offline
    from alsatian_hf.hub import Candidate

    listed = next(c for c in list_candidates(author="tiny") if c.repo_id == tiny_zoo.repo_ids[1])
    store = BlockStore(tmp_path / "store")
    pinned = f"{listed.repo_id}@{listed.revision}"
    assert not opens_offline(listed, revision=None, store=store)  # the store has never seen the commit
    assert not opens_offline(pinned, revision=None, store=store)
    open_hub(listed.repo_id, listed.revision, store=store, reader=RangeReader())
    assert opens_offline(listed, revision=None, store=store) and opens_offline(pinned, revision=None, store=store)
    assert not opens_offline(listed.repo_id, revision=None, store=store)  # a branch: its commit may have moved
    assert not opens_offline(listed.repo_id, revision="main", store=store)
    assert opens_offline(listed.repo_id, revision=listed.revision, store=store)
    assert opens_offline(str(tmp_path), revision=None, store=store)  # a local folder
    assert opens_offline(Candidate("x/y", "0" * 40, skip_reason="gated"), revision=None, store=store)


def _albert():
    from transformers import AlbertConfig, AlbertForSequenceClassification

    return AlbertForSequenceClassification(AlbertConfig(vocab_size=57, hidden_size=32, num_hidden_layers=6,
                                                        num_hidden_groups=2, num_attention_heads=2,
                                                        intermediate_size=37, embedding_size=16, num_labels=3))  # fmt: skip


def _deberta():
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    return DebertaV2ForSequenceClassification(DebertaV2Config(
        vocab_size=57, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64, relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm",
        pos_att_type=["p2c", "c2p"], position_biased_input=False, type_vocab_size=0, num_labels=3,
    ))  # fmt: skip


@pytest.mark.parametrize("build", [_albert, _deberta], ids=["albert", "deberta"])
def test_tensors_that_several_blocks_list_are_fetched_once(hub, hub_root, tmp_path, build, letters_tokenizer):
    """ALBERT runs each layer group's weights as several layers, and every DeBERTa layer reads the relative
    embeddings. A cold search fetched such tensors once per block that lists them; it fetches each backbone
    tensor once, and never the head."""
    import shutil

    from alsatian_hf.zoo.data import newsgroups

    folder = hub_root / "sharedorg" / "tiny"
    try:
        build().save_pretrained(folder)
        letters_tokenizer.save_pretrained(folder)
        data = newsgroups(num_items=40, seed=0, categories=["sci.space", "rec.autos"])
        args = SearchArguments(result_size=1, scorer="knn", store_dir=str(tmp_path / "store"), max_length=16)
        result = ModelSearcher(["sharedorg/tiny"], train_dataset=data, args=args).search()
        assert not result.skipped
        n, header = _header(folder / "model.safetensors")
        head = ("classifier.", "pooler.dense.")  # DeBERTa's classifier reads [CLS] through a pooler of its own
        backbone = sum(m["data_offsets"][1] - m["data_offsets"][0] for k, m in header.items()
                       if k != "__metadata__" and not k.startswith(head))  # fmt: skip
        weights = _weight_requests(hub)
        bodies = sum(r.bytes_sent for r in weights if not r.range.startswith(("bytes=0-7", "bytes=8-")))
        assert bodies == backbone
        assert result.bytes_fetched == bodies + 8 + n
    finally:
        shutil.rmtree(hub_root / "sharedorg", ignore_errors=True)
