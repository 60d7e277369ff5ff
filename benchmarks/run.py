"""The paper's experiments at CPU scale, through the public API, published as a datasets-style dataset card.

    python -m benchmarks.run --suite paper-cpu [--archs resnet18 vit_tiny] [--distributions top_layers]
                             [--sizes 500 2000] [--repeats 3] [--force]
    python -m benchmarks.run --suite smoke

`--archs` narrows the cells and every per-model step (`scaling`, `speed`, `batch`, `precision`) to those
architectures; the steps of the budget cell (`memory`, `persistence`, `distributed`) keep the suite's.

Zoos are built with `alsatian_hf.zoo` and served by the local hub; every measured search is
`ModelSearcher.from_hub(...).search()`. Strategies run in alternating order in one process and each cell
reports the median of `--repeats`. Results go to `benchmarks/results/<suite>/`: one CSV per table, PNG plots
and a README.md dataset card. The run is resumable: a cell whose CSV row exists is skipped unless `--force`.

Steps, each skippable with `--skip`, each in a module of its own with the row dataclass of its table:
`cells` (end_to_end.py: end_to_end, time_breakdown), `fetch` (hub_fetch.py: each strategy once from a cold
block store, before a zoo's cells), `memory` (memory_budget.py: §6.4 cache budgets), `scaling`
(input_scaling.py: alsatian vs shift at growing image sizes), `blocks` (block_times.py: time and FLOPs per
engine block), `speed` (block_speed.py: per-block items/s on one thread, the engine's fast paths against
the plain layout), `batch` (batch_size.py: alsatian end to end at execution batch sizes 64, 128, 256 and `auto`),
`precision` (precision.py: the opt-in tf32, bf16 and torch.compile modes against exact eager fp32, rankings and speed), `planner` (planner_scaling.py), `partition` (partition.py: the task tree split across 2, 8
and 64 workers against the lower bound, on paper) and `xet` (xet_transfer.py: xet_fetch and cold_search, a cold
search with Xet identity against fetching everything, per upload mode, at 100 MB/s for the timed one) and
`persistence` (persistence.py: a repeat search, five new models, and a killed and resumed search against the
feature cache) and `distributed` (distributed.py: 2 ranks under torchrun against 1 process of 1 and of 2
threads).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from alsatian_hf._device import cpu_model
from alsatian_hf.localhub import HubServer, use_endpoint

from .batch_size import run_batch_size
from .block_speed import run_block_speed
from .block_times import run_block_times
from .distributed import run_distributed
from .end_to_end import run_end_to_end
from .input_scaling import run_input_scaling
from .memory_budget import run_memory_budget
from .partition import run_partition
from .persistence import run_persistence
from .planner_scaling import run_planner_scaling
from .precision import run_precision
from .report import write_report
from .suites import ARCHS, HERE, SUITES, Run, Suite, provenance
from .xet_transfer import run_xet_transfer


STEPS = [
    "cells",
    "fetch",
    "memory",
    "scaling",
    "blocks",
    "speed",
    "batch",
    "precision",
    "planner",
    "partition",
    "xet",
    "persistence",
    "distributed",
]


def only_archs(suite: Suite, archs: list[str]) -> None:
    """Narrow the suite to `archs`: its cells, and the per-model lists of the other steps too (`scaling`,
    `speed`, `batch`, `precision`), so `--archs resnet18` runs no other architecture's zoo there."""
    suite.archs = archs
    for name in ("scaling", "speed", "batch", "precision"):
        setattr(suite, name, [cell for cell in getattr(suite, name) if cell[0] in archs])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", choices=sorted(SUITES), default="smoke")
    p.add_argument("--archs", nargs="+", choices=sorted(ARCHS))
    p.add_argument("--distributions", nargs="+", choices=["top_50", "top_25", "top_layers"])
    p.add_argument("--sizes", nargs="+", type=int, help="dataset sizes (items, 80/20 train/test) for every arch")
    p.add_argument("--models", type=int, help="models per zoo")
    p.add_argument("--repeats", type=int)
    p.add_argument("--force", action="store_true", help="rerun cells whose CSV rows exist")
    p.add_argument("--skip", nargs="*", default=[], choices=STEPS)
    p.add_argument("--out", type=Path, help="default: benchmarks/results/<suite>")
    p.add_argument("--work-dir", type=Path, help="zoos and block stores (default: benchmarks/.work/<suite>)")
    args = p.parse_args(argv)

    suite = SUITES[args.suite]
    if args.archs:
        only_archs(suite, args.archs)
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
    run = Run(args.suite, suite, out, work, hub, args.force, provenance())
    started = time.perf_counter()
    machine = f"{cpu_model()}, {os.cpu_count()} cores"
    print(f"suite {args.suite}: {suite} on {machine}", flush=True)
    try:
        if "cells" not in args.skip:
            run_end_to_end(run, fetch="fetch" not in args.skip)
        if "memory" not in args.skip:
            run_memory_budget(run)
        if "scaling" not in args.skip:
            run_input_scaling(run)
        if "blocks" not in args.skip:
            run_block_times(run)
        if "speed" not in args.skip:
            run_block_speed(run)
        if "batch" not in args.skip:
            run_batch_size(run)
        if "precision" not in args.skip:
            run_precision(run)
        if "planner" not in args.skip:
            run_planner_scaling(run)
        if "partition" not in args.skip:
            run_partition(run)
        if "xet" not in args.skip:
            run_xet_transfer(run)
        if "persistence" not in args.skip:
            run_persistence(run)
        if "distributed" not in args.skip:
            run_distributed(run)
    finally:
        hub.stop()
    write_report(out, suite_name=args.suite, suite=suite, seconds=time.perf_counter() - started)
    print(f"results in {out} ({time.perf_counter() - started:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
