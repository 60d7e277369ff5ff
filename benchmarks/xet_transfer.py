"""A cold search with transfer priced in (`xet_fetch`, `cold_search`): Xet identity against fetching everything.

Each zoo is served by a hub of its own per upload mode (a CAS keeps one reconstruction per file hash, so the
two modes cannot share one): `dedup`, where a fine-tune's unchanged bytes reference the base's xorbs, and
`no-dedup`, where every file has xorbs of its own. The repos are hard links of the suite's zoo, chunked in
upload order (the base first). `xet_fetch` counts what a cold search fetches with Xet identity on and off;
`cold_search` times the same searches with the hub limited to `bandwidth` bytes per second.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from alsatian_hf._safetensors import decode
from alsatian_hf.localhub import HubServer, use_endpoint
from alsatian_hf.store.block_store import BlockStore

from ._tables import Table
from .hub_fetch import feature_extractor_bytes
from .suites import PAPER_SCORER, Run, dataset, ensure_zoo


MODES = ("dedup", "no-dedup")
BANDWIDTH = 100 * 1000 * 1000  # bytes per second, over all connections


@dataclass(kw_only=True)
class XetFetchRow:
    suite: str
    architecture: str
    distribution: str
    num_models: int
    upload_mode: str
    xet_identity: bool
    bytes_fetched: int
    header_bytes: int
    edge_bytes: int
    weight_bytes: int  # bytes_fetched minus headers: block bytes, edges included
    requests: int
    metadata_requests: int
    metadata_bytes: int
    blocks: int
    proven_blocks: int  # established by a Xet proof
    unique_block_bytes: int
    feature_extractor_bytes: int
    # The targets. dedup: weight bytes <= 1.05 x unique block bytes + 256 KiB per proven (model, block)
    # pair; no-dedup: bytes <= 1.02 x fetching everything and <= 3 metadata requests per block. A row with Xet off
    # is held to the same target, so the card shows what fetching everything would miss.
    target_bytes: int
    within_target: bool
    vs_fetch_everything: float  # bytes fetched with Xet identity off over on
    same_ranking: bool
    device: str
    torch_version: str
    code_revision: str


@dataclass(kw_only=True)
class ColdSearchRow:
    suite: str
    architecture: str
    distribution: str
    num_models: int
    num_items: int
    upload_mode: str
    bandwidth: int
    xet_seconds: float  # end to end, from an empty block store and HF cache
    fetch_everything_seconds: float
    speedup: float
    # set-up only (listing, small files, identity, block transfer): the part Xet identity changes; the rest of a
    # search (preprocessing, inference, scoring) is the same work on both sides and bounds `speedup`
    xet_setup_seconds: float
    fetch_everything_setup_seconds: float
    setup_speedup: float
    xet_bytes: int
    fetch_everything_bytes: int
    same_ranking: bool
    device: str
    torch_version: str
    code_revision: str


def run_xet_transfer(run: Run) -> None:
    fetch = Table(run.out / "xet_fetch.csv", XetFetchRow)
    cold = Table(run.out / "cold_search.csv", ColdSearchRow)
    for arch in run.suite.archs:
        for dist in run.suite.distributions_of(arch):
            org = ensure_zoo(run, arch=arch, dist=dist)
            for mode in MODES:
                key = dict(architecture=arch, distribution=dist, num_models=run.suite.num_models, upload_mode=mode)
                if not run.force and fetch.has(**key) and cold.has(**key):
                    continue
                fetch.drop(**key)
                cold.drop(**key)
                root = _upload(run, org=org, mode=mode)
                try:
                    _measure(run, org=org, root=root, key=key, fetch=fetch, cold=cold)
                finally:
                    use_endpoint(run.hub.url)
                    shutil.rmtree(root, ignore_errors=True)


def _upload(run: Run, *, org: str, mode: str) -> Path:
    """The zoo under a hub root of its own, as hard links, chunked in upload order (the base first)."""
    root = run.work / f"xet-{mode}"
    shutil.rmtree(root, ignore_errors=True)
    src = run.hub.root / org
    files = []
    for repo in sorted(p for p in src.iterdir() if p.is_dir()):  # `-base` sorts before `-ft001`
        for path in sorted(repo.rglob("*")):
            if path.is_file():
                target = root / org / repo.name / path.relative_to(repo)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, target)
                if target.suffix == ".safetensors":
                    files.append(target)
    with HubServer(root, upload_mode=mode) as hub:
        hub.xet.index_files(files)
    return root


def _cold_search(run: Run, *, hub: HubServer, org: str, ds, xet: bool, name: str, limit: int | None = None):
    from alsatian_hf import ModelSearcher, SearchArguments

    store, cache = run.work / f"cold-store-{name}", run.work / f"cold-hf-{name}"
    for folder in (store, cache):
        shutil.rmtree(folder, ignore_errors=True)
    use_endpoint(hub.url)
    previous = os.environ.get("HF_HUB_CACHE")
    os.environ["HF_HUB_CACHE"] = str(cache)  # a cold HF cache too: the small files are fetched again
    import huggingface_hub.constants as constants

    old_cache, constants.HF_HUB_CACHE = constants.HF_HUB_CACHE, str(cache)
    try:
        args = SearchArguments(result_size=1, image_size=run.suite.image_size, max_length=run.suite.max_length,
                               store_dir=str(store), xet_identity=xet, feature_cache=False,
                               scorer=PAPER_SCORER)  # fmt: skip
        res = ModelSearcher.from_hub(author=org, train_dataset=ds, args=args, limit=limit).search()
        return res, store
    finally:
        constants.HF_HUB_CACHE = old_cache
        if previous is None:
            os.environ.pop("HF_HUB_CACHE", None)
        else:
            os.environ["HF_HUB_CACHE"] = previous
        shutil.rmtree(cache, ignore_errors=True)


def _within_target(mode: str, res, unique: int, everything: int) -> tuple[bool, int]:
    """(met, target bytes) for a cold search's bytes, per upload mode (see XetFetchRow)."""
    blocks = max(sum(res.fetch["identity"].values()), 1)
    if mode == "dedup":
        target = int(1.05 * unique + 256 * 1024 * res.fetch["identity"].get("xet-proof", 0))
        met = res.bytes_fetched - res.fetch["header_bytes"] <= target
    else:
        target = int(1.02 * everything)
        met = res.bytes_fetched <= target and res.fetch["metadata_requests"] <= 3 * blocks
    return met, target


def _measure(run: Run, *, org: str, root: Path, key: dict, fetch: Table, cold: Table) -> None:
    arch = key["architecture"]
    fe = feature_extractor_bytes(root / org)
    ds = dataset(arch, 64)
    results = {}
    with HubServer(root, upload_mode=key["upload_mode"]) as hub:
        for xet in (True, False):
            res, store = _cold_search(run, hub=hub, org=org, ds=ds, xet=xet, name=f"{xet}")
            blocks = BlockStore(store)
            unique = sum(len(b) for p in blocks.block_files() for *_, b in decode(p.read_bytes()))
            results[xet] = (res, unique)
            shutil.rmtree(store, ignore_errors=True)
    same = results[True][0].models == results[False][0].models
    for xet, (res, unique) in results.items():
        proven = res.fetch["identity"].get("xet-proof", 0)
        weights = res.bytes_fetched - res.fetch["header_bytes"]
        within, target = _within_target(key["upload_mode"], res, unique, results[False][0].bytes_fetched)
        fetch.add(XetFetchRow(
            suite=run.suite_name, **key, xet_identity=xet, bytes_fetched=res.bytes_fetched,
            header_bytes=res.fetch["header_bytes"], edge_bytes=res.fetch["edge_bytes"], weight_bytes=weights,
            requests=res.requests, metadata_requests=res.fetch["metadata_requests"],
            metadata_bytes=res.fetch["metadata_bytes"], blocks=sum(res.fetch["identity"].values()),
            proven_blocks=proven, unique_block_bytes=unique, feature_extractor_bytes=fe, target_bytes=target,
            within_target=within, same_ranking=same,
            vs_fetch_everything=round(results[False][0].bytes_fetched / max(res.bytes_fetched, 1), 3), **run.env,
        ))  # fmt: skip
    a, b = results[True][0], results[False][0]
    print(f"  {org} {key['upload_mode']}: Xet {a.bytes_fetched / 1e6:.1f} MB ({a.fetch['identity']}, "
          f"{a.fetch['metadata_requests']} metadata requests) vs everything {b.bytes_fetched / 1e6:.1f} MB; "
          f"unique blocks {results[True][1] / 1e6:.1f} MB", flush=True)  # fmt: skip
    num_items = run.suite.sizes[arch][0]
    ds = dataset(arch, num_items)
    timed = {}
    with HubServer(root, upload_mode=key["upload_mode"], bandwidth=BANDWIDTH) as hub:
        # Untimed: imports and the shared meta skeleton are built once per process, so the first timed search
        # would pay them and the second not. Both timed searches start with them warm (and cold stores).
        _, warm = _cold_search(run, hub=hub, org=org, ds=dataset(arch, 64), xet=False, name="warm", limit=1)
        shutil.rmtree(warm, ignore_errors=True)
        for xet in (True, False):
            res, store = _cold_search(run, hub=hub, org=org, ds=ds, xet=xet, name=f"t{xet}")
            timed[xet] = res
            shutil.rmtree(store, ignore_errors=True)
    x, e = timed[True], timed[False]
    cold.add(ColdSearchRow(
        suite=run.suite_name, **key, num_items=num_items, bandwidth=BANDWIDTH, xet_seconds=round(x.seconds, 3),
        fetch_everything_seconds=round(e.seconds, 3), speedup=round(e.seconds / x.seconds, 3),
        xet_setup_seconds=round(x.setup_seconds, 3), fetch_everything_setup_seconds=round(e.setup_seconds, 3),
        setup_speedup=round(e.setup_seconds / x.setup_seconds, 3),
        xet_bytes=x.bytes_fetched, fetch_everything_bytes=e.bytes_fetched, same_ranking=x.models == e.models,
        **run.env,
    ))  # fmt: skip
    print(f"  {org} {key['upload_mode']} cold at {BANDWIDTH / 1e6:.0f} MB/s: Xet {x.seconds:.1f}s vs everything "
          f"{e.seconds:.1f}s -> {e.seconds / x.seconds:.2f}x (set-up {x.setup_seconds:.1f}s vs "
          f"{e.setup_seconds:.1f}s)", flush=True)  # fmt: skip
