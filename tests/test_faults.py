"""Faults lose nothing: real searches against the local Hub under process, disk and concurrency faults rank as
a clean run does, and leave the block store and the feature cache consistent.

A server killed mid-fetch and restarted is here; other server faults (500s, truncated bodies, Range ignored,
a slow server) are in test_hub_store.py and
test_localhub.py, Xet CAS faults in test_xet_identity.py, hostile repos in test_hostile_repos.py, and a search
killed during feature writing or between iterations in test_feature_cache.py.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.errors import StoreFullError
from alsatian_hf.store import block_store, feature_cache
from alsatian_hf.store.block_store import BlockStore
from alsatian_hf.store.feature_cache import FeatureCache
from alsatian_hf.zoo.data import digits


def _args(store, **kw):
    return SearchArguments(result_size=1, image_size=32, scorer="knn", store_dir=str(store), batch_size=16, **kw)


def _search(repos, store, **kw):
    return ModelSearcher(repos, train_dataset=digits(num_items=60, seed=0), args=_args(store, **kw)).search()


@pytest.fixture(scope="module")
def clean(tiny_zoo, tmp_path_factory):  # the session hub serves it (the `hub` fixture is per test)
    return _search(tiny_zoo.repo_ids, tmp_path_factory.mktemp("clean") / "store", feature_cache=False)


def _consistent(store_dir) -> None:
    store = BlockStore(store_dir)
    assert store.gc(verify=True)["corrupt"] == 0
    assert not list((store.root / "blocks").glob("*/.tmp-*"))
    assert FeatureCache(store.root / "features", budget=1 << 40).gc(verify=True)["corrupt"] == 0


_KILLED_FETCH = """
import os, sys
from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.hub import ranges
from alsatian_hf.store import block_store
from alsatian_hf.zoo.data import digits
read, put, stored = ranges.RangeReader.read, block_store.BlockStore.put, [0]
def counted_put(self, *a, **k):
    h = put(self, *a, **k)
    stored[0] += 1
    return h
def dying_read(self, *a, **k):
    if stored[0] >= 2 and not k.get("header"):
        os._exit(9)  # in the middle of fetching blocks, two of them stored: no clean-up, as a SIGKILL
    return read(self, *a, **k)
block_store.BlockStore.put, ranges.RangeReader.read = counted_put, dying_read
args = SearchArguments(result_size=1, image_size=32, scorer="knn", store_dir=sys.argv[1], batch_size=16)
ModelSearcher(sys.argv[2:], train_dataset=digits(num_items=60, seed=0), args=args).search()
"""


def test_killed_during_block_fetch_resumes(hub, tiny_zoo, clean, tmp_path):
    out = subprocess.run([sys.executable, "-c", _KILLED_FETCH, str(tmp_path / "store"), *tiny_zoo.repo_ids],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 9, out.stderr[-2000:]
    assert BlockStore(tmp_path / "store").info().blocks > 0  # some blocks were stored before the kill
    resumed = _search(tiny_zoo.repo_ids, tmp_path / "store")
    assert resumed.models == clean.models and not resumed.skipped
    assert [r["score"] for r in resumed.ranking] == [r["score"] for r in clean.ranking]
    _consistent(tmp_path / "store")


def _no_space(f, blob: bytes) -> None:
    f.write(blob[: len(blob) // 2])  # the disk fills up halfway through the file
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_while_writing_a_block_is_a_clear_error(hub, tiny_zoo, tmp_path, monkeypatch):
    monkeypatch.setattr(block_store, "_write_file", _no_space)
    with pytest.raises(StoreFullError, match="No space left.*store gc"):
        _search(tiny_zoo.repo_ids, tmp_path / "store")
    monkeypatch.undo()
    _consistent(tmp_path / "store")  # the temporary file is gone, the index names no missing block
    assert BlockStore(tmp_path / "store").info().blocks == 0


def test_full_disk_while_writing_features_keeps_the_search(hub, tiny_zoo, clean, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(feature_cache, "_write_file", _no_space)
    with caplog.at_level("WARNING", logger="alsatian_hf"):
        res = _search(tiny_zoo.repo_ids, tmp_path / "store")
    assert res.models == clean.models and "No space left" in res.feature_cache["error"]
    assert "keeps its features in RAM" in caplog.text
    monkeypatch.undo()
    _consistent(tmp_path / "store")
    assert FeatureCache(tmp_path / "store" / "features", budget=1 << 40).info().segments == 0


_SEARCH = """
import json, sys
from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.zoo.data import digits
args = SearchArguments(result_size=1, image_size=32, scorer="knn", store_dir=sys.argv[1], batch_size=16)
res = ModelSearcher(sys.argv[2:], train_dataset=digits(num_items=60, seed=0), args=args).search()
print(json.dumps([res.models, [r["score"] for r in res.ranking], res.skipped]))
"""


def test_two_searches_at_once_share_one_store_and_cache(hub, tiny_zoo, clean, tmp_path):
    cmd = [sys.executable, "-c", _SEARCH, str(tmp_path / "store"), *tiny_zoo.repo_ids]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, outs):
        assert p.returncode == 0, stderr[-2000:]
        models, scores, skipped = __import__("json").loads(stdout.strip().splitlines()[-1])
        assert models == clean.models and scores == [r["score"] for r in clean.ranking] and not skipped
    _consistent(tmp_path / "store")
    again = _search(tiny_zoo.repo_ids, tmp_path / "store")
    assert sum(it["block_executions"] for it in again.iterations) == 0  # one good entry per batch


_OPEN_AT = """
import sys, time
from alsatian_hf.store.block_store import BlockStore
while time.time() < float(sys.argv[2]):
    pass
BlockStore(sys.argv[1])
"""


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path):
    """Ranks under a launcher open one fresh store together; they used to race to switch its index to WAL
    ("database is locked") and to add the same column."""
    for attempt in range(4):
        start = time.time() + 2  # all processes leave their busy wait at the same moment
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT, str(tmp_path / f"store-{attempt}"), str(start)],
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]  # fmt: skip
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-2000:]
    assert BlockStore(tmp_path / "store-0").info().blocks == 0


def test_store_gc_while_a_search_runs(hub, tiny_zoo, clean, tmp_path):
    hub.faults.delay = 0.02  # a slower server: gc runs many times during the set-up
    stop, runs, failures = threading.Event(), [0], []

    def collect():
        store = BlockStore(tmp_path / "store")
        while not stop.is_set():
            try:
                store.gc()
                FeatureCache(store.root / "features", budget=1 << 40).gc()
            except Exception as e:  # noqa: BLE001 (asserted below: gc must never fail beside a search)
                failures.append(e)
            runs[0] += 1

    thread = threading.Thread(target=collect)
    try:
        BlockStore(tmp_path / "store")
        thread.start()
        res = _search(tiny_zoo.repo_ids, tmp_path / "store")
    finally:
        stop.set()
        thread.join()
        hub.faults.reset()
    assert runs[0] > 1 and not failures, failures
    assert res.models == clean.models and not res.skipped
    _consistent(tmp_path / "store")


def test_a_flipped_byte_in_a_stored_block_is_refetched(hub, tiny_zoo, clean, tmp_path, caplog):
    # without prepared blocks: a later load would memory-map the block's prepared form, not read the block
    _search(tiny_zoo.repo_ids, tmp_path / "store", feature_cache=False, prepared_blocks=False)
    store = BlockStore(tmp_path / "store")
    victim = max(store.block_files(), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x01
    victim.write_bytes(bytes(data))
    os.utime(victim, (1, 1))  # another file version: it is verified again when read
    with caplog.at_level("WARNING", logger="alsatian_hf"):
        again = _search(tiny_zoo.repo_ids, tmp_path / "store", feature_cache=False, prepared_blocks=False)
    assert again.models == clean.models and not again.skipped
    assert again.fetch["refetched_blocks"] == 1 and "fetching it again" in caplog.text
    assert again.bytes_fetched > 0  # the block came back from the Hub
    _consistent(tmp_path / "store")


def _serve(root, port: int) -> subprocess.Popen:
    """`alsatian-hf serve-hub` in a process of its own, slowed to 3 MB/s so a search is mid-fetch for seconds."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "alsatian_hf.cli", "serve-hub", str(root), "--port", str(port), "--no-xet",
         "--bandwidth", "3MB/s"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert "Serving" in proc.stdout.readline()  # printed once it listens
    return proc


def test_server_killed_mid_fetch_and_restarted(hub, hub_root, tiny_zoo, clean, tmp_path):
    from alsatian_hf.localhub import use_endpoint

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = _serve(hub_root, port)
    use_endpoint(f"http://127.0.0.1:{port}")
    result, errors = [], []

    def search():
        try:
            result.append(_search(tiny_zoo.repo_ids, tmp_path / "store", xet_identity=False))
        except Exception as e:  # noqa: BLE001 (the assertion below shows it)
            errors.append(e)

    thread = threading.Thread(target=search)
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while not any(BlockStore(tmp_path / "store").block_files()) and time.monotonic() < deadline:
            time.sleep(0.05)  # until the first block is stored: the search is fetching now
        server.send_signal(signal.SIGKILL)
        server.wait()
        server = _serve(hub_root, port)  # back on the same port within the clients' retry window
        thread.join(timeout=300)
    finally:
        server.kill()
        server.wait()
        use_endpoint(hub.url)
    assert not errors, errors
    res = result[0]
    assert res.fetch["retries"] >= 1  # the kill was felt mid-fetch, and retried through
    assert res.models == clean.models and not res.skipped
    assert [r["score"] for r in res.ranking] == [r["score"] for r in clean.ranking]
    _consistent(tmp_path / "store")
