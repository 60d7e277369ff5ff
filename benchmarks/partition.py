"""The task tree split across workers, on paper (`partition`): makespan against the lower bound, and planning time.

Zoos of the M_syn recipe (one base, each model a copy of an earlier one with its last blocks re-initialised)
and real lineage shapes (a few unrelated bases with many fine-tunes each), as task trees only: nothing is
built or run. The bound is max(unique cost / workers, longest root-to-leaf path).

The `split_*` columns are what a search runs: one iteration of `SPLIT_ITEMS` items in batches of
`SPLIT_BATCH`, split by whole batches first and by the tree where batches run out
(`partition.split_iteration`), against its bound, the unique cost x items / workers. `few_split_of_bound` is
the same for an iteration of `FEW_BATCHES` batches, fewer than 8 or 64 workers (the early, small iterations of
successive halving, or large GPU batches), which the split runs in gangs of ranks. `tail_split_of_bound` is an
iteration of `TAIL_BATCHES` batches, more than the workers but not a multiple: whole batches, then gangs for the
rest.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from alsatian_hf.plan.partition import partition, split_iteration, tree_bound
from alsatian_hf.zoo._recipe import recipe_task_tree

from ._tables import Table
from .suites import Run


BLOCKS = 20  # blocks per model
SHAPES = {  # shape -> (distribution, bases)
    "msyn-top_layers": ("top_layers", 1),
    "msyn-top_25": ("top_25", 1),
    "msyn-top_50": ("top_50", 1),
    "lineages-8x-top_layers": ("top_layers", 8),
}
WORKERS = (2, 8, 64)
SPLIT_ITEMS, SPLIT_BATCH = 2000, 64  # an iteration on the paper-cpu cells' size, in the default batch size
SPLIT_SIZES = [SPLIT_BATCH] * (SPLIT_ITEMS // SPLIT_BATCH) + [SPLIT_ITEMS % SPLIT_BATCH] * bool(
    SPLIT_ITEMS % SPLIT_BATCH
)
FEW_BATCHES = 5  # 320 items: fewer batches than workers
TAIL_BATCHES = 100  # 6400 items: on 64 workers, one whole batch each and 36 left over


@dataclass(kw_only=True)
class PartitionRow:
    suite: str
    shape: str
    num_models: int
    workers: int
    unique_cost: float  # the tree's cost per item, every edge once
    bound: float  # max(unique_cost / workers, longest path)
    trunk_bound: float  # the bound with the trunk every worker on a subtree computes (`partition.trunk_bound`)
    tree_bound: float  # the same at every node (`partition.tree_bound`): the tightest of the three
    makespan: float  # the largest worker's cost per item
    of_bound: float  # makespan / bound; target <= 1.15 for 8 and 64 workers on 500 models
    of_trunk_bound: float
    of_tree_bound: float
    duplicated_share: float  # cost computed on more than one worker, of unique_cost
    seconds: float  # planning time, median of 3; target < 2 s for 5000 models on 64 workers
    split_of_bound: float  # the iteration split's makespan / (unique cost x items / workers)
    split_duplicated_share: float  # cost x items computed on more than one worker, of the unique
    split_seconds: float  # planning time of the iteration split (it runs `partition` too), median of 3
    few_split_of_bound: float  # the split of an iteration of FEW_BATCHES batches, against its bound
    tail_split_of_bound: float  # the same for TAIL_BATCHES batches
    device: str
    torch_version: str
    code_revision: str


def run_partition(run: Run) -> None:
    table = Table(run.out / "partition.csv", PartitionRow)
    for n in run.suite.planner_models:
        for shape, (distribution, bases) in SHAPES.items():
            tree = None
            for workers in WORKERS:
                key = dict(shape=shape, num_models=n, workers=workers)
                if not run.force and table.has(**key):
                    continue
                table.drop(**key)
                tree = tree or recipe_task_tree(n, BLOCKS, distribution, seed=0, bases=bases)
                times, split_times = [], []
                for _ in range(3):
                    start = time.perf_counter()
                    part = partition(tree, workers)
                    times.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    split = split_iteration(tree, SPLIT_SIZES, workers)
                    split_times.append(time.perf_counter() - start)
                few = split_iteration(tree, [SPLIT_BATCH] * FEW_BATCHES, workers)
                tail = split_iteration(tree, [SPLIT_BATCH] * TAIL_BATCHES, workers)
                tight = tree_bound(tree, workers)
                row = PartitionRow(
                    suite=run.suite_name, **key, unique_cost=round(part.unique_cost, 3), bound=round(part.bound, 3),
                    trunk_bound=round(part.trunk_bound, 3), tree_bound=round(tight, 3), makespan=round(part.makespan, 3),
                    of_bound=round(part.makespan / part.bound, 4),
                    of_trunk_bound=round(part.makespan / part.trunk_bound, 4), of_tree_bound=round(part.makespan / tight, 4),
                    duplicated_share=round(max(part.duplicated, 0.0) / part.unique_cost, 4),  # not -0.0 from rounding
                    seconds=round(statistics.median(times), 4), split_of_bound=round(split.makespan / split.bound, 4),
                    split_duplicated_share=round(max(split.duplicated, 0.0) / split.unique, 4),
                    split_seconds=round(statistics.median(split_times), 4),
                    few_split_of_bound=round(few.makespan / few.bound, 4),
                    tail_split_of_bound=round(tail.makespan / tail.bound, 4), **run.env,
                )  # fmt: skip
                table.add(row)
                print(f"  partition {shape} {n} models, {workers} workers: {row.of_bound:.3f}x the bound, "
                      f"{row.of_trunk_bound:.3f}x the trunk bound, {row.of_tree_bound:.3f}x the tree bound, "
                      f"{row.duplicated_share:.1%} duplicated, "
                      f"{row.seconds * 1000:.0f} ms; iteration split {row.split_of_bound:.3f}x its bound, "
                      f"{row.split_duplicated_share:.1%} duplicated, {row.split_seconds * 1000:.0f} ms; "
                      f"{FEW_BATCHES} batches {row.few_split_of_bound:.3f}x, {TAIL_BATCHES} batches "
                      f"{row.tail_split_of_bound:.3f}x", flush=True)  # fmt: skip
