"""Several processes on this machine (`distributed`): one search under `torchrun` with 2 ranks of 1 thread
each, against 1 process of 1 thread and 1 process of 2 threads, end to end. The first two also run with
`prepared_blocks=False` (each block folded into fresh memory at every load, as before prepared blocks), which
prices those page faults in one process and in two at once.

Every configuration runs in a fresh subprocess (same imports and start-up), alternating, `repeats` times;
the seconds are rank 0's `SearchResult.seconds`, medians. The block store is warm and the feature cache off,
so every run extracts. Each process imports the model libraries before it searches, as the warm process of
the `end_to_end` cells has: importing timm costs about 3 s here (torchvision imports torch._dynamo), the
same in every configuration, and it is not search work. For the same reason the ranks join their process group
before the clock starts, as a script that makes its `Accelerator` first does: otherwise rank 0's clock counts
its wait for the other rank to finish starting up (0.04-0.47 s here, up to 15% of the search).
The `*_wall_seconds` columns time what a user waits instead: each command from its launch to its exit, the
launcher, interpreter start, imports, process group and exit included.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ._tables import Table
from .suites import Run, budget_cell, ensure_zoo


@dataclass(kw_only=True)
class DistributedRow:
    suite: str
    architecture: str
    distribution: str
    num_models: int
    num_items: int
    one_thread_seconds: float  # 1 process, 1 thread
    two_ranks_seconds: float  # torchrun, 2 processes of 1 thread
    two_threads_seconds: float  # 1 process, 2 threads
    two_ranks_wall_seconds: float  # the torchrun command, from its launch to its exit
    two_threads_wall_seconds: float  # the 1 process of 2 threads, from its launch to its exit
    speedup_vs_one_thread: float  # target >= 1.7
    speedup_vs_two_threads: float
    unprepared_one_thread_seconds: float  # prepared_blocks=False, 1 process of 1 thread
    unprepared_two_ranks_seconds: float  # prepared_blocks=False, 2 ranks of 1 thread
    same_ranking: bool
    device: str
    torch_version: str
    code_revision: str


_SEARCH = """
import json, os, sys
import torch
import timm, transformers  # noqa: F401 - imported before the search, as in a warm process
from alsatian_hf import ModelSearcher, SearchArguments
from benchmarks.suites import PAPER_SCORER, dataset
org, arch, num_items, image_size, store, out, prepared = json.loads(sys.argv[1])
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
ranked = int(os.environ.get("WORLD_SIZE", "1")) > 1
if ranked:  # joined before the clock: the wait for the other rank's start-up
    from accelerate import PartialState

    PartialState(cpu=True)
# batch 64 as in the cells: `auto` would measure in whichever configuration's search met the store first
args = SearchArguments(result_size=1, image_size=image_size, store_dir=store, feature_cache=False, batch_size=64,
                       prepared_blocks=prepared, scorer=PAPER_SCORER)
res = ModelSearcher.from_hub(author=org, train_dataset=dataset(arch, num_items), args=args).search()
if os.environ.get("RANK", "0") == "0":
    with open(out, "w") as f:
        json.dump({"seconds": res.seconds, "models": res.models}, f)
if ranked:  # this script started the group, so it ends it, as torch asks
    PartialState().destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_distributed(run: Run) -> None:
    table = Table(run.out / "distributed.csv", DistributedRow)
    key = budget_cell(run, table)
    if key is None:
        return
    suite, arch, dist, num_items = run.suite, key["architecture"], key["distribution"], key["num_items"]
    org = ensure_zoo(run, arch=arch, dist=dist)
    store, out = run.work / "distributed-store", run.work / "distributed-result.json"
    root = Path(__file__).resolve().parent.parent

    def searched(ranks: int, threads: int, prepared: bool = True) -> dict:
        payload = json.dumps([org, arch, num_items, suite.image_size, str(store), str(out), prepared])
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": str(threads), "TMPDIR": str(tmp)}
        launcher = [sys.executable]
        if ranks > 1:
            launcher += ["-m", "torch.distributed.run", f"--nproc_per_node={ranks}", f"--master_port={_free_port()}"]
        start = time.perf_counter()
        done = subprocess.run([*launcher, str(script), payload], cwd=root, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{ranks} ranks x {threads} threads failed: {done.stderr[-2000:]}")
        return {**json.loads(out.read_text()), "wall": wall}

    tmp = run.work / "distributed-tmp"  # torchrun leaves a temp folder per launch; this one is removed below
    tmp.mkdir(exist_ok=True)
    script = run.work / "distributed-search.py"
    script.write_text(_SEARCH)
    searched(1, 2)  # warms the block store, and its prepared blocks (written before the process exits)
    runs: dict[tuple, list[dict]] = {(1, 1): [], (2, 1): [], (1, 2): [], (1, 1, False): [], (2, 1, False): []}
    for _ in range(suite.repeats):
        for config in runs:
            runs[config].append(searched(*config))
    secs = {c: statistics.median(r["seconds"] for r in rs) for c, rs in runs.items()}
    walls = {c: statistics.median(r["wall"] for r in rs) for c, rs in runs.items()}
    rankings = {tuple(r["models"]) for rs in runs.values() for r in rs}
    row = DistributedRow(
        suite=run.suite_name, **key, one_thread_seconds=round(secs[1, 1], 3), two_ranks_seconds=round(secs[2, 1], 3),
        two_threads_seconds=round(secs[1, 2], 3), two_ranks_wall_seconds=round(walls[2, 1], 3),
        two_threads_wall_seconds=round(walls[1, 2], 3), speedup_vs_one_thread=round(secs[1, 1] / secs[2, 1], 3),
        speedup_vs_two_threads=round(secs[1, 2] / secs[2, 1], 3),
        unprepared_one_thread_seconds=round(secs[1, 1, False], 3),
        unprepared_two_ranks_seconds=round(secs[2, 1, False], 3), same_ranking=len(rankings) == 1, **run.env,
    )  # fmt: skip
    table.add(row)
    for path in (script, out):
        path.unlink(missing_ok=True)
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"  distributed {org}: 2 ranks x 1 thread {row.two_ranks_seconds:.1f}s, 1 x 1 {row.one_thread_seconds:.1f}s "
          f"({row.speedup_vs_one_thread:.2f}x), 1 x 2 threads {row.two_threads_seconds:.1f}s "
          f"({row.speedup_vs_two_threads:.2f}x); launch to exit: 2 ranks {row.two_ranks_wall_seconds:.1f}s, "
          f"1 x 2 threads {row.two_threads_wall_seconds:.1f}s; prepared_blocks=False: 2 ranks {row.unprepared_two_ranks_seconds:.1f}s, "
          f"1 x 1 {row.unprepared_one_thread_seconds:.1f}s", flush=True)  # fmt: skip
