"""Bytes from the hub (`hub_fetch`): one search per strategy from a cold block store, against the lower bound.

The lower bound is every candidate's feature-extractor bytes once, plus the safetensors headers; a head is
never fetched. This is the fetch-and-hash path (`xet_identity=False`); `xet_fetch` measures Xet identity. The last search leaves the zoo's store warm for the timed cells.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from alsatian_hf._safetensors import decode, read_file_header
from alsatian_hf.localhub import HubServer
from alsatian_hf.store.block_store import BlockStore

from ._tables import Table
from .suites import ARCHS, STRATEGIES, Run, dataset, org_of, search


HEAD_PREFIXES = ("fc.", "classifier.", "head.")


@dataclass(kw_only=True)
class HubFetchRow:
    suite: str
    architecture: str
    distribution: str
    num_models: int
    strategy: str
    bytes_fetched: int
    header_bytes: int
    feature_extractor_bytes: int  # the lower bound: every candidate's feature extractor once
    requests: int
    bytes_per_model: int
    requests_per_model: float
    store_bytes: int
    unique_block_bytes: int
    dedup_ratio: float
    device: str
    torch_version: str
    code_revision: str


def run_hub_fetch(run: Run, *, arch: str, dist: str) -> None:
    table = Table(run.out / "hub_fetch.csv", HubFetchRow)
    org, store = org_of(arch, dist), run.store(org_of(arch, dist))
    ds = dataset(arch, 64 if ARCHS[arch].modality == "image" else 40)
    fe = feature_extractor_bytes(run.hub.root / org)
    num_models = run.suite.num_models
    for strategy in STRATEGIES:
        key = dict(architecture=arch, distribution=dist, num_models=num_models, strategy=strategy)
        if not run.force and table.has(**key) and store.is_dir():
            continue
        table.drop(**key)
        shutil.rmtree(store, ignore_errors=True)
        run.hub.clear_log()
        res = search(run, org=org, ds=ds, strategy=strategy, xet_identity=False)  # Xet: see `xet_fetch`
        blocks = BlockStore(store)
        info = blocks.info()
        unique = sum(len(b) for p in blocks.block_files() for *_, b in decode(p.read_bytes()))
        table.add(HubFetchRow(
            suite=run.suite_name, **key, bytes_fetched=res.bytes_fetched, header_bytes=header_bytes(run.hub),
            feature_extractor_bytes=fe, requests=res.requests, bytes_per_model=res.bytes_fetched // num_models,
            requests_per_model=round(res.requests / num_models, 1), store_bytes=info.bytes,
            unique_block_bytes=unique, dedup_ratio=round(info.dedup_ratio, 3), **run.env,
        ))  # fmt: skip
        print(f"  {org} {strategy}: fetched {res.bytes_fetched / 1e6:.1f} MB in {res.requests} requests "
              f"(feature extractors {fe / 1e6:.1f} MB), store dedup {info.dedup_ratio:.2f}", flush=True)  # fmt: skip


def header_bytes(hub: HubServer) -> int:
    """Bytes of safetensors header reads (the 8-byte length and the JSON) in the hub's request log."""
    return sum(
        r.bytes_sent
        for r in hub.requests(kind="resolve")
        if r.path.endswith(".safetensors") and r.range and r.range.startswith(("bytes=0-7", "bytes=8-"))
    )


def feature_extractor_bytes(org_dir: Path) -> int:
    """Bytes of every tensor but the heads' in an org's checkpoints."""
    total = 0
    for repo in sorted(p for p in org_dir.iterdir() if p.is_dir()):
        for shard in repo.glob("*.safetensors"):
            header, _ = read_file_header(shard)
            total += sum(m["data_offsets"][1] - m["data_offsets"][0] for k, m in header.items()
                         if not k.startswith(HEAD_PREFIXES))  # fmt: skip
    return total
