"""The paper's experiments at CPU scale, through the public API, published as a datasets-style dataset card.

    python -m benchmarks.run --suite paper-cpu [--archs resnet18 vit_tiny] [--distributions top_layers]
                             [--sizes 500 2000] [--repeats 3] [--force]
    python -m benchmarks.run --suite smoke

Zoos are built with `alsatian_hf.zoo` and served by the local hub; every measured search is
`ModelSearcher.from_hub(...).search()`. Strategies run in alternating order in one process and each cell
reports the median of `--repeats`. Results go to `benchmarks/results/<suite>/`: one CSV per table, PNG plots
and a README.md dataset card. The run is resumable: a cell whose CSV row exists is skipped unless `--force`.

Steps, each skippable with `--skip`: `cells` (end_to_end, time_breakdown), `fetch` (hub_fetch: each
strategy once from a cold block store, before a zoo's cells), `memory` (§6.4 cache budgets), `scaling`
(input_scaling: alsatian vs shift at growing image sizes), `blocks` (block_times: time and FLOPs per engine
block) and `planner` (planner_scaling).
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from alsatian_hf.localhub import HubServer, use_endpoint


HERE = Path(__file__).resolve().parent
STRATEGIES = ("alsatian", "shift", "base")
PHASES = ("prepare_data", "prepare_model", "inference", "proxy_scoring")


@dataclass(frozen=True)
class Arch:
    name: str
    modality: str  # "image" or "text"
    display: str


ARCHS = {
    "resnet18": Arch("resnet18", "image", "timm resnet18 (random init)"),
    "vit_tiny": Arch("vit_tiny", "image", "timm vit_tiny, patch 8 at 32px (random init)"),
    "effnet_lite0": Arch("effnet_lite0", "image", "EfficientNet-Lite0, real ImageNet weights"),
    "minilm": Arch("minilm", "text", "all-MiniLM-L6-v2 (BERT), real weights"),
    "test_resnet": Arch("test_resnet", "image", "timm test_resnet (random init)"),
}


@dataclass
class Suite:
    archs: list[str]
    distributions: list[str]
    sizes: dict[str, list[int]]  # per arch
    num_models: int
    repeats: int
    image_size: int = 32
    max_length: int = 32
    budget_arch: str = "resnet18"
    budget_items: int = 500
    planner_models: list[int] = field(default_factory=lambda: [500, 5000])
    # Input-size cells (arch, distribution, items, image sizes): alsatian against shift as inference grows
    # against the fixed costs every strategy pays.
    scaling: list[tuple[str, str, int, list[int]]] = field(default_factory=list)


SUITES = {
    "paper-cpu": Suite(
        archs=["resnet18", "vit_tiny", "effnet_lite0", "minilm"],
        distributions=["top_50", "top_25", "top_layers"],
        # EfficientNet-Lite0 stops at 1000 and MiniLM at 200 items so the suite fits ~90 min on 2
        # CPU cores: their `base` rows dominate (142 s per repeat for EfficientNet at 2000 items).
        sizes={"resnet18": [500, 2000], "vit_tiny": [500, 2000], "effnet_lite0": [500, 1000], "minilm": [100, 200]},
        num_models=35,
        repeats=3,
        # resnet18 top_layers: its gap to the bound is fixed cost; EfficientNet top_25: its inference
        # itself stays below the FLOP bound at 32px.
        scaling=[("resnet18", "top_layers", 1000, [32, 64, 128]), ("effnet_lite0", "top_25", 500, [32, 96])],
    ),
    "smoke": Suite(
        archs=["test_resnet"],
        distributions=["top_layers"],
        sizes={"test_resnet": [64]},
        num_models=4,
        repeats=1,
        budget_arch="test_resnet",
        budget_items=64,
        planner_models=[50, 500],
        scaling=[("test_resnet", "top_layers", 64, [32, 48])],
    ),
}

COLUMNS = {
    "end_to_end": [
        "suite",
        "architecture",
        "distribution",
        "num_models",
        "num_items",
        "strategy",
        "cache_budget",
        "device",
        "torch_version",
        "code_revision",
        "seconds",
        "search_seconds",
        "setup_seconds",
        "repeats",
        "speedup_vs_base",
        "speedup_vs_shift",
        "ideal_speedup",
        "of_ideal",
        "time_ideal_speedup",
        "of_time_ideal",
        "block_executions",
        "compute_cost",
        "bytes_fetched",
        "same_ranking",
    ],
    "time_breakdown": [
        "suite",
        "architecture",
        "distribution",
        "num_models",
        "num_items",
        "strategy",
        "device",
        "torch_version",
        "code_revision",
        "prepare_data",
        "prepare_model",
        "inference",
        "proxy_scoring",
        "setup",
        "seconds",
    ],
    "memory_budget": [
        "suite",
        "architecture",
        "distribution",
        "num_models",
        "num_items",
        "strategy",
        "cache_budget",
        "device",
        "torch_version",
        "code_revision",
        "seconds",
        "chunks",
        "c_min",
        "cache_peak",
        "peak_within_budget",
        "same_ranking",
    ],
    "planner_scaling": [
        "suite",
        "num_models",
        "blocks_per_model",
        "unique_edges",
        "seconds",
        "device",
        "torch_version",
        "code_revision",
    ],
    "input_scaling": [
        "suite",
        "architecture",
        "distribution",
        "num_models",
        "num_items",
        "image_size",
        "strategy",
        "device",
        "torch_version",
        "code_revision",
        "seconds",
        "inference",
        "other_seconds",
        "repeats",
        "speedup_vs_shift",
        "inference_speedup_vs_shift",
        "ideal_speedup",
        "of_ideal",
        "time_ideal_speedup",
        "of_time_ideal",
        "same_ranking",
    ],
    "block_times": [
        "suite",
        "architecture",
        "image_size",
        "block",
        "name",
        "output_shape",
        "batch_size",
        "ms_per_batch",
        "time_share",
        "flop_share",
        "device",
        "torch_version",
        "code_revision",
    ],
    "hub_fetch": [
        "suite",
        "architecture",
        "distribution",
        "num_models",
        "strategy",
        "bytes_fetched",
        "header_bytes",
        "feature_extractor_bytes",
        "requests",
        "bytes_per_model",
        "requests_per_model",
        "store_bytes",
        "unique_block_bytes",
        "dedup_ratio",
        "device",
        "torch_version",
        "code_revision",
    ],
}


class Table:
    """A CSV that is appended row by row, so an interrupted run resumes where it stopped."""

    def __init__(self, path: Path, columns: list[str]):
        self.path, self.columns = path, columns
        self.rows: list[dict] = []
        if path.is_file():
            with open(path, newline="") as f:
                self.rows = list(csv.DictReader(f))

    def has(self, **key) -> bool:
        return any(all(str(r.get(k)) == str(v) for k, v in key.items()) for r in self.rows)

    def drop(self, **key) -> None:
        self.rows = [r for r in self.rows if not all(str(r.get(k)) == str(v) for k, v in key.items())]
        self._write()

    def add(self, row: dict) -> None:
        self.rows.append({c: row.get(c, "") for c in self.columns})
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns)
            w.writeheader()
            w.writerows(self.rows)


def _source(arch: str):
    from alsatian_hf.zoo import TimmSource

    if arch == "resnet18":
        return TimmSource("resnet18", model_args={"num_classes": 10})
    if arch == "test_resnet":
        return TimmSource("test_resnet", model_args={"num_classes": 10})
    if arch == "vit_tiny":
        return TimmSource("vit_tiny_patch16_224", model_args={"num_classes": 10, "img_size": 32, "patch_size": 8})
    if arch == "effnet_lite0":
        from alsatian_hf.zoo.efficientnet_lite import efficientnet_lite0_source

        return efficientnet_lite0_source(num_classes=10)
    if arch == "minilm":
        from alsatian_hf.zoo.minilm import minilm_source

        return minilm_source(num_labels=20)
    raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(ARCHS)}")


def _dataset(arch: str, num_items: int):
    from alsatian_hf.zoo.data import fashion_mnist, newsgroups

    if ARCHS[arch].modality == "text":
        return newsgroups(num_items=num_items, seed=0)
    return fashion_mnist(num_items=num_items, seed=0)


def _org(arch: str, dist: str) -> str:
    return f"{arch.replace('_', '-')}-{dist.replace('_', '-')}"


def _ensure_zoo(root: Path, arch: str, dist: str, num_models: int) -> None:
    from alsatian_hf.zoo import ZooSpec, build_zoo

    org = _org(arch, dist)
    folder = root / org
    if folder.is_dir() and len([p for p in folder.iterdir() if p.is_dir()]) == num_models:
        return
    start = time.perf_counter()
    report = build_zoo(
        ZooSpec(org, _source(arch), num_models=num_models, distribution=dist, seed=0), root, overwrite=True
    )
    print(
        f"  built {org}: {num_models} models, {report.unique_blocks} unique blocks, "
        f"{time.perf_counter() - start:.0f}s",
        flush=True,
    )


def _search(
    org: str,
    ds,
    suite: Suite,
    strategy: str,
    store: Path,
    cache_budget="auto",
    batch_size: int = 64,
    image_size: int | None = None,
):
    from alsatian_hf import ModelSearcher, SearchArguments

    args = SearchArguments(
        result_size=1,
        strategy=strategy,
        image_size=image_size or suite.image_size,
        max_length=suite.max_length,
        store_dir=str(store),
        cache_budget=cache_budget,
        batch_size=batch_size,
    )
    return ModelSearcher.from_hub(author=org, train_dataset=ds, args=args).search()


@functools.lru_cache(maxsize=None)  # once per run: the run's own CSV writes must not count as changes
def _code_revision() -> str:
    """The commit the run measured, `+dirty` when alsatian_hf/ or benchmarks/ code differs from it."""
    import subprocess

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "alsatian_hf", "benchmarks/*.py"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def _env() -> dict:
    import torch

    device = "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"device": device, "torch_version": torch.__version__, "code_revision": _code_revision()}


def run_cells(
    suite_name: str, suite: Suite, out: Path, work: Path, hub: HubServer, force: bool, fetch: bool = True
) -> None:
    tables = {name: Table(out / f"{name}.csv", cols) for name, cols in COLUMNS.items()}
    env = _env()
    for arch in suite.archs:
        for dist in suite.distributions:
            _ensure_zoo(hub.root, arch, dist, suite.num_models)
            org = _org(arch, dist)
            store = work / "stores" / org
            key = dict(architecture=arch, distribution=dist, num_models=suite.num_models)
            if fetch or not store.is_dir():  # the timed cells need a warm store either way
                _hub_fetch(suite_name, suite, arch, dist, store, hub, tables["hub_fetch"], env, force)
            for num_items in suite.sizes[arch]:
                cell = dict(**key, num_items=num_items)
                if not force and tables["end_to_end"].has(**cell):
                    print(f"  skip {org} n={num_items} (done)", flush=True)
                    continue
                tables["end_to_end"].drop(**cell)
                tables["time_breakdown"].drop(**cell)
                _run_cell(suite_name, suite, org, arch, dist, num_items, store, tables, env)


def _hub_fetch(suite_name, suite, arch, dist, store, hub, table, env, force) -> None:
    """One search per strategy from a cold block store: what each fetches from the hub, and the store it leaves.

    The last one leaves the store warm for the timed cells, whose searches then fetch nothing.
    """
    import shutil

    from alsatian_hf._safetensors import decode
    from alsatian_hf.store.block_store import BlockStore

    org = _org(arch, dist)
    ds = _dataset(arch, 64 if ARCHS[arch].modality == "image" else 40)
    fe = _feature_extractor_bytes(hub.root / org)
    for strategy in STRATEGIES:
        key = dict(architecture=arch, distribution=dist, num_models=suite.num_models, strategy=strategy)
        if not force and table.has(**key) and store.is_dir():
            continue
        table.drop(**key)
        shutil.rmtree(store, ignore_errors=True)
        hub.clear_log()
        res = _search(org, ds, suite, strategy, store)
        header = header_bytes(hub)
        bs = BlockStore(store)
        info = bs.info()
        unique = sum(len(b) for p in bs.block_files() for *_, b in decode(p.read_bytes()))
        table.add(
            {
                "suite": suite_name,
                **key,
                "bytes_fetched": res.bytes_fetched,
                "header_bytes": header,
                "feature_extractor_bytes": fe,
                "requests": res.requests,
                "bytes_per_model": res.bytes_fetched // suite.num_models,
                "requests_per_model": round(res.requests / suite.num_models, 1),
                "store_bytes": info.bytes,
                "unique_block_bytes": unique,
                "dedup_ratio": round(info.dedup_ratio, 3),
                **env,
            }
        )
        print(
            f"  {org} {strategy}: fetched {res.bytes_fetched / 1e6:.1f} MB in {res.requests} requests "
            f"(feature extractors {fe / 1e6:.1f} MB), store dedup {info.dedup_ratio:.2f}",
            flush=True,
        )


def header_bytes(hub: HubServer) -> int:
    """Bytes of safetensors header reads (the 8-byte length and the JSON) in the hub's request log."""
    return sum(
        r.bytes_sent
        for r in hub.requests(kind="resolve")
        if r.path.endswith(".safetensors") and r.range and r.range.startswith(("bytes=0-7", "bytes=8-"))
    )


def _feature_extractor_bytes(org_dir: Path) -> int:
    import json
    import struct

    total = 0
    for repo in sorted(p for p in org_dir.iterdir() if p.is_dir()):
        for shard in repo.glob("*.safetensors"):
            with open(shard, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
            total += sum(
                m["data_offsets"][1] - m["data_offsets"][0]
                for k, m in header.items()
                if k != "__metadata__" and not k.startswith(("fc.", "classifier.", "head."))
            )
    return total


def time_ideal(reference: list, runs: list) -> float | None:
    """The sharing bound in time: the reference's block time over `runs`' block executions priced at it.

    Each block's time per item comes from the reference strategy's own runs (all repeats, all iterations), so
    this is the speedup `runs`' strategy would reach if it ran every block as fast as the reference does and
    spent nothing else; unlike the FLOP-weighted ideal, it holds whatever each block's time per FLOP. None when
    a block of `runs` never ran in the reference.
    """

    def per_block(results):
        out: dict[str, list] = {}
        for res in results:
            for it in res.iterations:
                for h, (n, t) in it.get("block_time", {}).items():
                    entry = out.setdefault(h, [0, 0.0])
                    entry[0] += n
                    entry[1] += t
        return out

    ref_all, ref_one, own = per_block(reference), per_block(reference[:1]), per_block(runs[:1])
    if not ref_all or not own or not own.keys() <= ref_all.keys():
        return None
    rate = {h: t / n for h, (n, t) in ref_all.items() if n}
    priced = sum(n * rate[h] for h, (n, _) in own.items())
    return sum(n * rate[h] for h, (n, _) in ref_one.items()) / priced if priced else None


def _ratio(value: float | None) -> float | str:
    return round(value, 3) if value is not None else ""


def _run_cell(suite_name, suite, org, arch, dist, num_items, store, tables, env) -> None:
    ds = _dataset(arch, num_items)
    results: dict[str, list] = {s: [] for s in STRATEGIES}
    for r in range(suite.repeats):
        order = STRATEGIES if r % 2 == 0 else tuple(reversed(STRATEGIES))
        for strategy in order:
            results[strategy].append(_search(org, ds, suite, strategy, store))
    med = {s: statistics.median(x.seconds for x in v) for s, v in results.items()}
    search = {s: statistics.median(x.seconds - x.setup_seconds for x in v) for s, v in results.items()}
    cost = {s: sum(it["compute_cost"] for it in v[0].iterations) for s, v in results.items()}
    same = len({tuple(v[0].models) for v in results.values()}) == 1
    ideal = {"alsatian": cost["shift"] / cost["alsatian"], "shift": cost["base"] / cost["shift"], "base": 1.0}
    t_ideal = {
        "alsatian": time_ideal(results["shift"], results["alsatian"]),
        "shift": time_ideal(results["base"], results["shift"]),
        "base": 1.0,
    }
    for s in STRATEGIES:
        first = results[s][0]
        vs_shift = med["shift"] / med[s]
        tables["end_to_end"].add(
            {
                "suite": suite_name,
                "architecture": arch,
                "distribution": dist,
                "num_models": suite.num_models,
                "num_items": num_items,
                "strategy": s,
                "cache_budget": "auto",
                **env,
                "seconds": round(med[s], 3),
                "search_seconds": round(search[s], 3),
                "setup_seconds": round(med[s] - search[s], 3),
                "repeats": suite.repeats,
                "speedup_vs_base": round(med["base"] / med[s], 3),
                "speedup_vs_shift": round(vs_shift, 3),
                "ideal_speedup": round(ideal[s], 3),
                "of_ideal": round((vs_shift if s == "alsatian" else med["base"] / med[s]) / ideal[s], 3)
                if s != "base"
                else "",
                "time_ideal_speedup": _ratio(t_ideal[s]),
                "of_time_ideal": _ratio((vs_shift if s == "alsatian" else med["base"] / med[s]) / t_ideal[s])
                if s != "base" and t_ideal[s]
                else "",
                "block_executions": sum(it["block_executions"] for it in first.iterations),
                "compute_cost": f"{cost[s]:.4g}",
                "bytes_fetched": first.bytes_fetched,
                "same_ranking": same,
            }
        )
        phases = {
            p: statistics.median(sum(it["seconds"][p] for it in x.iterations) for x in results[s]) for p in PHASES
        }
        tables["time_breakdown"].add(
            {
                "suite": suite_name,
                "architecture": arch,
                "distribution": dist,
                "num_models": suite.num_models,
                "num_items": num_items,
                "strategy": s,
                **env,
                **{p: round(v, 3) for p, v in phases.items()},
                "setup": round(med[s] - search[s], 3),
                "seconds": round(med[s], 3),
            }
        )
    print(
        f"  {org} n={num_items}: alsatian {med['alsatian']:.1f}s shift {med['shift']:.1f}s base {med['base']:.1f}s"
        f" -> {med['shift'] / med['alsatian']:.2f}x vs shift (ideal {ideal['alsatian']:.2f}x, in time "
        f"{t_ideal['alsatian'] or 0:.2f}x), "
        f"{med['base'] / med['alsatian']:.2f}x vs base; same ranking: {same}",
        flush=True,
    )


def run_memory_budget(suite_name: str, suite: Suite, out: Path, work: Path, hub: HubServer, force: bool) -> None:
    """§6.4: the cache budget at three levels, down to one that forces chunking."""
    table = Table(out / "memory_budget.csv", COLUMNS["memory_budget"])
    arch, dist = suite.budget_arch, "top_layers"
    key = dict(architecture=arch, distribution=dist, num_models=suite.num_models, num_items=suite.budget_items)
    if not force and table.has(**key):
        return
    table.drop(**key)
    _ensure_zoo(hub.root, arch, dist, suite.num_models)
    org, env = _org(arch, dist), _env()
    store = work / "stores" / org
    ds = _dataset(arch, suite.budget_items)
    batch = 16  # small batches, so a small budget can chunk an iteration into whole batches
    reference = _search(org, ds, suite, "alsatian", store, batch_size=batch)
    c_min = max(it["c_min"] for it in reference.iterations)
    per_item = max(it["c_min"] / max(it["new_items"], 1) for it in reference.iterations)
    budgets = [("auto", "auto"), ("c_min", c_min), ("c_min/4", max(int(c_min / 4), int(per_item * batch) + 1))]
    for label, budget in budgets:
        runs = [
            _search(org, ds, suite, "alsatian", store, cache_budget=budget, batch_size=batch)
            for _ in range(suite.repeats)
        ]
        res = runs[0]
        peak = max(it["cache_peak"] for it in res.iterations)
        table.add(
            {
                "suite": suite_name,
                **key,
                "strategy": "alsatian",
                "cache_budget": f"{label}={budget}",
                **env,
                "seconds": round(statistics.median(r.seconds for r in runs), 3),
                "chunks": max(it["chunks"] for it in res.iterations),
                "c_min": c_min,
                "cache_peak": peak,
                "peak_within_budget": budget == "auto" or peak <= budget,
                "same_ranking": res.models == reference.models,
            }
        )
        print(
            f"  budget {label}: chunks {max(it['chunks'] for it in res.iterations)}, peak {peak}, "
            f"{statistics.median(r.seconds for r in runs):.1f}s",
            flush=True,
        )


def run_input_scaling(suite_name: str, suite: Suite, out: Path, work: Path, hub: HubServer, force: bool) -> None:
    """Alsatian against shift at growing image sizes: inference grows, the fixed costs of a search do not."""
    table = Table(out / "input_scaling.csv", COLUMNS["input_scaling"])
    env = _env()
    for arch, dist, num_items, image_sizes in suite.scaling:
        _ensure_zoo(hub.root, arch, dist, suite.num_models)
        org = _org(arch, dist)
        store, ds = work / "stores" / org, _dataset(arch, num_items)
        for size in image_sizes:
            key = dict(
                architecture=arch, distribution=dist, num_models=suite.num_models, num_items=num_items, image_size=size
            )
            if not force and table.has(**key):
                continue
            table.drop(**key)
            runs: dict[str, list] = {"alsatian": [], "shift": []}
            for r in range(suite.repeats):
                for strategy in ("alsatian", "shift") if r % 2 == 0 else ("shift", "alsatian"):
                    runs[strategy].append(_search(org, ds, suite, strategy, store, image_size=size))
            med = {s: statistics.median(x.seconds for x in v) for s, v in runs.items()}
            inf = {
                s: statistics.median(sum(it["seconds"]["inference"] for it in x.iterations) for x in v)
                for s, v in runs.items()
            }
            cost = {s: sum(it["compute_cost"] for it in v[0].iterations) for s, v in runs.items()}
            ideal = cost["shift"] / cost["alsatian"]
            t_ideal = time_ideal(runs["shift"], runs["alsatian"])
            same = runs["alsatian"][0].models == runs["shift"][0].models
            for s in runs:
                table.add(
                    {
                        "suite": suite_name,
                        **key,
                        "strategy": s,
                        **env,
                        "seconds": round(med[s], 3),
                        "inference": round(inf[s], 3),
                        "other_seconds": round(med[s] - inf[s], 3),
                        "repeats": suite.repeats,
                        "speedup_vs_shift": round(med["shift"] / med[s], 3),
                        "inference_speedup_vs_shift": round(inf["shift"] / inf[s], 3),
                        "ideal_speedup": round(ideal if s == "alsatian" else 1.0, 3),
                        "of_ideal": round(med["shift"] / med[s] / ideal, 3) if s == "alsatian" else "",
                        "time_ideal_speedup": _ratio(t_ideal if s == "alsatian" else 1.0),
                        "of_time_ideal": _ratio(med["shift"] / med[s] / t_ideal)
                        if s == "alsatian" and t_ideal
                        else "",
                        "same_ranking": same,
                    }
                )
            print(
                f"  {org} n={num_items} {size}px: alsatian {med['alsatian']:.1f}s shift {med['shift']:.1f}s -> "
                f"{med['shift'] / med['alsatian']:.2f}x (inference {inf['shift'] / inf['alsatian']:.2f}x, "
                f"ideal {ideal:.2f}x, in time {t_ideal or 0:.2f}x); same ranking: {same}",
                flush=True,
            )


def run_block_times(suite_name: str, suite: Suite, out: Path, hub: HubServer, force: bool) -> None:
    """Time and FLOPs of each engine block of the input-size cells' models: where time per FLOP departs from even.

    The sharing bound weights block executions by FLOPs; it holds as a time ratio only where every block takes
    the same time per FLOP. This table shows which blocks do not, at each image size.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from alsatian_hf.adapters import split_model
    from alsatian_hf.adapters.skeleton import build_model

    table = Table(out / "block_times.csv", COLUMNS["block_times"])
    env, batch = _env(), 64
    for arch, dist, _, image_sizes in suite.scaling:
        _ensure_zoo(hub.root, arch, dist, suite.num_models)
        model = build_model(hub.root / _org(arch, dist) / "model-base", device="cpu", shared=False)
        split = split_model(model)
        for size in image_sizes:
            if not force and table.has(architecture=arch, image_size=size):
                continue
            table.drop(architecture=arch, image_size=size)
            state = split.adapter.initial_state({"pixel_values": torch.randn(batch, 3, size, size)})
            rows = []
            with torch.inference_mode():
                for i, block in enumerate(split.blocks):
                    counter = FlopCounterMode(display=False)
                    with counter:
                        out_state = block.step(model, state)
                    times = []
                    for _ in range(5):
                        start = time.perf_counter()
                        block.step(model, state)
                        times.append(time.perf_counter() - start)
                    rows.append(
                        (
                            i,
                            block.name,
                            "x".join(map(str, out_state[0].shape[1:])),
                            statistics.median(times),
                            counter.get_total_flops(),
                        )
                    )
                    state = out_state
            total_t, total_f = sum(r[3] for r in rows), max(sum(r[4] for r in rows), 1)
            for i, name, shape, t, f in rows:
                table.add(
                    {
                        "suite": suite_name,
                        "architecture": arch,
                        "image_size": size,
                        "block": i,
                        "name": name,
                        "output_shape": shape,
                        "batch_size": batch,
                        "ms_per_batch": round(t * 1000, 3),
                        "time_share": round(t / total_t, 4),
                        "flop_share": round(f / total_f, 4),
                        **env,
                    }
                )
            worst = max(rows, key=lambda r: r[3] / total_t - r[4] / total_f)
            print(
                f"  blocks {arch} {size}px: {total_t * 1000:.0f} ms per batch of {batch}; most over its FLOP share: "
                f"{worst[1]} ({worst[3] / total_t:.0%} of time, {worst[4] / total_f:.0%} of FLOPs)",
                flush=True,
            )


def run_planner_scaling(suite_name: str, suite: Suite, out: Path, force: bool) -> None:
    import random

    from alsatian_hf.plan import BlockInfo, TaskTree, plan_iteration

    table = Table(out / "planner_scaling.csv", COLUMNS["planner_scaling"])
    env = _env()
    for n in suite.planner_models:
        if not force and table.has(num_models=n):
            continue
        table.drop(num_models=n)
        rng = random.Random(0)
        tree = TaskTree()
        depth = 20
        for i in range(n):  # M_syn-like: copy a random earlier model, change its last 1-4 blocks
            cut = depth - rng.randrange(1, 5)
            tree.add_model(f"m{i}", "x", [BlockInfo(f"b{j}" if j < cut else f"b{j}-{i}", 4096) for j in range(depth)])
        times = []
        for _ in range(3):
            start = time.perf_counter()
            plan_iteration(tree)
            times.append(time.perf_counter() - start)
        table.add(
            {
                "suite": suite_name,
                "num_models": n,
                "blocks_per_model": depth,
                "unique_edges": tree.num_edges(),
                "seconds": round(statistics.median(times), 4),
                **env,
            }
        )
        print(f"  planner: {n} models -> {statistics.median(times) * 1000:.0f} ms", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", choices=sorted(SUITES), default="smoke")
    p.add_argument("--archs", nargs="+", help=f"subset of {sorted(ARCHS)}")
    p.add_argument("--distributions", nargs="+", choices=["top_50", "top_25", "top_layers"])
    p.add_argument("--sizes", nargs="+", type=int, help="dataset sizes (items, 80/20 train/test) for every arch")
    p.add_argument("--models", type=int, help="models per zoo")
    p.add_argument("--repeats", type=int)
    p.add_argument("--force", action="store_true", help="rerun cells whose CSV rows exist")
    p.add_argument(
        "--skip", nargs="*", default=[], choices=["cells", "fetch", "memory", "scaling", "blocks", "planner"]
    )
    p.add_argument("--out", type=Path, help="default: benchmarks/results/<suite>")
    p.add_argument("--work-dir", type=Path, help="zoos and block stores (default: benchmarks/.work/<suite>)")
    args = p.parse_args(argv)

    suite = SUITES[args.suite]
    if args.archs:
        suite.archs = args.archs
    if args.distributions:
        suite.distributions = args.distributions
    if args.sizes:
        suite.sizes = {a: args.sizes for a in suite.archs}
    if args.models:
        suite.num_models = args.models
    if args.repeats:
        suite.repeats = args.repeats
    out = args.out or HERE / "results" / args.suite
    work = args.work_dir or HERE / ".work" / args.suite
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HOME", str(work / "hf-home"))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    hub = HubServer(work / "hub").start()
    use_endpoint(hub.url)
    started = time.perf_counter()
    print(
        f"suite {args.suite}: {suite} on {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        flush=True,
    )
    try:
        if "cells" not in args.skip:
            run_cells(args.suite, suite, out, work, hub, args.force, fetch="fetch" not in args.skip)
        if "memory" not in args.skip:
            run_memory_budget(args.suite, suite, out, work, hub, args.force)
        if "scaling" not in args.skip:
            run_input_scaling(args.suite, suite, out, work, hub, args.force)
        if "blocks" not in args.skip:
            run_block_times(args.suite, suite, out, hub, args.force)
        if "planner" not in args.skip:
            run_planner_scaling(args.suite, suite, out, args.force)
    finally:
        hub.stop()
    from benchmarks.report import write_report

    write_report(out, args.suite, suite, time.perf_counter() - started)
    print(f"results in {out} ({time.perf_counter() - started:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
