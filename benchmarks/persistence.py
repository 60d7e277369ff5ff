"""Nothing computed twice (`persistence`): a repeat search, an org that gained five models, and a search killed
in iteration 2 and run again, each against the feature cache, in block executions and seconds.

The zoo has the suite's models plus five more fine-tunes of the same base; "old" is the first `num_models`.
The block store is warmed first (feature cache off), so every timed search starts with its blocks local.
The killed search runs in a subprocess that SIGKILLs itself once it has done half of iteration 2's block
executions (known from a clean run), and reports what it executed before dying.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ._tables import Table
from .suites import PAPER_SCORER, Run, budget_cell, dataset


NEW_MODELS = 5


@dataclass(kw_only=True)
class PersistenceRow:
    suite: str
    architecture: str
    distribution: str
    num_models: int
    num_items: int
    first_seconds: float
    clean_seconds: float  # the same search without the feature cache: the first one's price for persisting
    # (first and clean: medians of the suite's repeats, alternating)
    first_executions: int
    repeat_seconds: float
    repeat_executions: int
    repeat_time_share: float  # repeat / first; target <= 0.10 with 0 executions
    grown_executions: int  # num_models + NEW_MODELS after the first search
    new_unique_executions: int  # what a clean search of all executes at task-tree nodes only the new models have
    grown_vs_new_unique: float  # target <= 1.1
    killed_executions: int  # the killed search's, before SIGKILL in iteration 2
    resumed_executions: int
    clean_executions: int
    resume_vs_clean: float  # (killed + resumed) / clean; target <= 1.05
    same_ranking: bool
    device: str
    torch_version: str
    code_revision: str


def _executions(result) -> int:
    return sum(it["block_executions"] for it in result.iterations)


def run_persistence(run: Run) -> None:
    from alsatian_hf import ModelSearcher, SearchArguments
    from alsatian_hf.zoo import ZooSpec, build_zoo

    from .suites import org_of, source

    table = Table(run.out / "persistence.csv", PersistenceRow)
    key = budget_cell(run, table)
    if key is None:
        return
    suite, arch, dist, num_items = run.suite, key["architecture"], key["distribution"], key["num_items"]
    org = org_of(arch, dist) + f"-plus{NEW_MODELS}"
    if not (run.hub.root / org).is_dir():
        build_zoo(ZooSpec(org, source(arch), num_models=suite.num_models + NEW_MODELS, distribution=dist, seed=0),
                  run.hub.root, overwrite=True)  # fmt: skip
    repos = sorted(p.parent.name for p in (run.hub.root / org).glob("*/config.json"))
    everyone = [f"{org}/{r}" for r in repos]  # `-base` sorts first
    old = everyone[: suite.num_models]  # the rest are the new fine-tunes
    ds = dataset(arch, num_items)
    store = run.work / "persistence-store"
    shutil.rmtree(store, ignore_errors=True)

    def searched(models, **kw):
        args = SearchArguments(result_size=1, image_size=suite.image_size, max_length=suite.max_length,
                               store_dir=str(store), scorer=PAPER_SCORER, **kw)  # fmt: skip
        return ModelSearcher(models, train_dataset=ds, args=args).search()

    clean_all = searched(everyone, feature_cache=False)  # also warms the block store for everything below
    firsts, cleans = [], []
    for _ in range(run.suite.repeats):  # alternating, medians: what persisting costs is a few seconds in ten
        shutil.rmtree(store / "features", ignore_errors=True)
        cleans.append(searched(old, feature_cache=False))
        firsts.append(searched(old))
    clean = sorted(cleans, key=lambda r: r.seconds)[len(cleans) // 2]
    first = sorted(firsts, key=lambda r: r.seconds)[len(firsts) // 2]
    repeat = searched(old)
    grown = searched(everyone)
    # by task-tree node, not by weights: a parameterless read-out below a new block is new work too
    old_nodes = {node for it in clean.iterations for node in it["node_items"]}
    new_unique = sum(n for it in clean_all.iterations for node, n in it["node_items"].items()
                     if node not in old_nodes)  # fmt: skip
    shutil.rmtree(store / "features", ignore_errors=True)
    stop = clean.iterations[0]["block_executions"] + clean.iterations[1]["block_executions"] // 2
    killed = _killed_search(old, store, stop, suite, num_items, arch)
    resumed = searched(old)
    row = PersistenceRow(
        suite=run.suite_name, **key, first_seconds=round(first.seconds, 3), clean_seconds=round(clean.seconds, 3),
        first_executions=_executions(first),
        repeat_seconds=round(repeat.seconds, 3), repeat_executions=_executions(repeat),
        repeat_time_share=round(repeat.seconds / first.seconds, 3), grown_executions=_executions(grown),
        new_unique_executions=new_unique, grown_vs_new_unique=round(_executions(grown) / max(new_unique, 1), 3),
        killed_executions=killed, resumed_executions=_executions(resumed), clean_executions=_executions(clean),
        resume_vs_clean=round((killed + _executions(resumed)) / _executions(clean), 3),
        same_ranking=first.models == repeat.models == clean.models == resumed.models
        and grown.models == clean_all.models, **run.env,
    )  # fmt: skip
    table.add(row)
    shutil.rmtree(store, ignore_errors=True)
    print(f"  persistence {org}: repeat {row.repeat_executions} executions, {row.repeat_time_share:.0%} of the "
          f"first's time; +{NEW_MODELS} models {row.grown_executions} executions vs {new_unique} at their own "
          f"nodes ({row.grown_vs_new_unique:.2f}x); killed + resumed {row.resume_vs_clean:.2f}x a clean run",
          flush=True)  # fmt: skip


_KILLED = """
import json, os, signal, sys
from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.engine import executor
from benchmarks.suites import PAPER_SCORER, dataset
models, store, stop, image_size, max_length, num_items, arch, report = json.loads(sys.argv[1])
run_blocks, done = executor.Executor._run_blocks, [0]
def counted(self, blocks, state, items, counters, **kw):
    out = run_blocks(self, blocks, state, items, counters, **kw)
    done[0] += len(blocks) * items
    with open(report, "w") as f:
        f.write(str(done[0]))
    if done[0] >= stop:
        os.kill(os.getpid(), signal.SIGKILL)
    return out
executor.Executor._run_blocks = counted
args = SearchArguments(result_size=1, image_size=image_size, max_length=max_length, store_dir=store,
                       scorer=PAPER_SCORER)
ModelSearcher(models, train_dataset=dataset(arch, num_items), args=args).search()
"""


def _killed_search(models, store: Path, stop: int, suite, num_items: int, arch: str) -> int:
    """Block executions of a search SIGKILLed once it has done `stop` of them."""
    report = store / "killed-executions"
    payload = json.dumps([models, str(store), stop, suite.image_size, suite.max_length, num_items, arch, str(report)])
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", _KILLED, payload], cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != -9:
        raise RuntimeError(f"the search to kill ended with {done.returncode}: {done.stderr[-2000:]}")
    executed = int(report.read_text())
    report.unlink()
    return executed
