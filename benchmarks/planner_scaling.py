"""Planner scaling (`planner_scaling`): DFS+ planning time for M_syn-like task trees of many models."""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass

from alsatian_hf.plan import BlockInfo, TaskTree, plan_iteration

from ._tables import Table
from .suites import Run


@dataclass(kw_only=True)
class PlannerScalingRow:
    suite: str
    num_models: int
    blocks_per_model: int
    unique_edges: int
    seconds: float
    device: str
    torch_version: str
    code_revision: str


def run_planner_scaling(run: Run, *, depth: int = 20) -> None:
    table = Table(run.out / "planner_scaling.csv", PlannerScalingRow)
    for n in run.suite.planner_models:
        if not run.force and table.has(num_models=n):
            continue
        table.drop(num_models=n)
        rng = random.Random(0)
        tree = TaskTree()
        for i in range(n):  # M_syn-like: copy a random earlier model, change its last 1-4 blocks
            cut = depth - rng.randrange(1, 5)
            tree.add_model(f"m{i}", "x", [BlockInfo(f"b{j}" if j < cut else f"b{j}-{i}", 4096) for j in range(depth)])
        times = []
        for _ in range(3):
            start = time.perf_counter()
            plan_iteration(tree)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        table.add(PlannerScalingRow(
            suite=run.suite_name, num_models=n, blocks_per_model=depth, unique_edges=tree.num_edges(),
            seconds=round(seconds, 4), **run.env,
        ))  # fmt: skip
        print(f"  planner: {n} models -> {seconds * 1000:.0f} ms", flush=True)
