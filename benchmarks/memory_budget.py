"""The cache budget (paper §6.4): alsatian at three budgets, down to one that forces chunking."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ._tables import Table
from .suites import Run, dataset, ensure_zoo, search


@dataclass(kw_only=True)
class MemoryBudgetRow:
    suite: str
    architecture: str
    distribution: str
    num_models: int
    num_items: int
    strategy: str
    cache_budget: str  # "label=bytes"
    device: str
    torch_version: str
    code_revision: str
    seconds: float
    chunks: int
    c_min: int
    cache_peak: int
    peak_within_budget: bool
    same_ranking: bool


def run_memory_budget(run: Run) -> None:
    table = Table(run.out / "memory_budget.csv", MemoryBudgetRow)
    arch, dist, suite = run.suite.budget_arch, "top_layers", run.suite
    key = dict(architecture=arch, distribution=dist, num_models=suite.num_models, num_items=suite.budget_items)
    if not run.force and table.has(**key):
        return
    table.drop(**key)
    org = ensure_zoo(run, arch=arch, dist=dist)
    ds = dataset(arch, suite.budget_items)
    batch = 16  # small batches, so a small budget can chunk an iteration into whole batches
    reference = search(run, org=org, ds=ds, strategy="alsatian", batch_size=batch)
    c_min = max(it["c_min"] for it in reference.iterations)
    per_item = max(it["c_min"] / max(it["new_items"], 1) for it in reference.iterations)
    budgets = [("auto", "auto"), ("c_min", c_min), ("c_min/4", max(int(c_min / 4), int(per_item * batch) + 1))]
    for label, budget in budgets:
        runs = [
            search(run, org=org, ds=ds, strategy="alsatian", cache_budget=budget, batch_size=batch)
            for _ in range(suite.repeats)
        ]
        first = runs[0]
        peak = max(it["cache_peak"] for it in first.iterations)
        chunks = max(it["chunks"] for it in first.iterations)
        seconds = statistics.median(r.seconds for r in runs)
        table.add(MemoryBudgetRow(
            suite=run.suite_name, **key, strategy="alsatian", cache_budget=f"{label}={budget}", **run.env,
            seconds=round(seconds, 3), chunks=chunks, c_min=c_min, cache_peak=peak,
            peak_within_budget=budget == "auto" or peak <= budget, same_ranking=first.models == reference.models,
        ))  # fmt: skip
        print(f"  budget {label}: chunks {chunks}, peak {peak}, {seconds:.1f}s", flush=True)
