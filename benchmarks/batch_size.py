"""Execution batch size against speed (`batch_size`): one alsatian search per batch size, end to end.

Every size runs through the public API on the same zoo and data, alternating, medians of the suite's
repeats; warm block store, feature cache off. 64 is `SearchArguments`' default. Where the top blocks run on
tiny activations (32 px images reach resnet18's last stage at 1x1), a batch reads each block's weights once
for all its items, so larger batches can pay; the ranking must be the same at every size.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ._tables import Table
from .suites import Run, dataset, ensure_zoo, search


BATCH_SIZES = (64, 128, 256)  # the first is the default, the reference of `speedup_vs_default`


@dataclass(kw_only=True)
class BatchSizeRow:
    suite: str
    architecture: str
    distribution: str
    num_models: int
    num_items: int
    batch_size: int
    seconds: float  # end to end, median
    inference_seconds: float  # the inference phase, median
    speedup_vs_default: float  # the default size's seconds / these
    same_ranking: bool  # as at the default size
    device: str
    torch_version: str
    code_revision: str


def run_batch_size(run: Run) -> None:
    table = Table(run.out / "batch_size.csv", BatchSizeRow)
    for arch, dist, num_items in run.suite.batch:
        key = dict(architecture=arch, distribution=dist, num_models=run.suite.num_models, num_items=num_items)
        if not run.force and table.has(**key):
            continue
        table.drop(**key)
        org = ensure_zoo(run, arch=arch, dist=dist)
        ds = dataset(arch, num_items)
        search(run, org=org, ds=ds, strategy="alsatian")  # imports, first calls, the block store
        runs: dict[int, list] = {b: [] for b in BATCH_SIZES}
        for _ in range(run.suite.repeats):
            for b in BATCH_SIZES:
                runs[b].append(search(run, org=org, ds=ds, strategy="alsatian", batch_size=b))
        secs = {b: statistics.median(r.seconds for r in rs) for b, rs in runs.items()}
        default = BATCH_SIZES[0]
        for b, rs in runs.items():
            row = BatchSizeRow(
                suite=run.suite_name, **key, batch_size=b, seconds=round(secs[b], 3),
                inference_seconds=round(statistics.median(r.phase_seconds()["inference"] for r in rs), 3),
                speedup_vs_default=round(secs[default] / secs[b], 3),
                same_ranking=all(r.models == runs[default][0].models for r in rs), **run.env,
            )  # fmt: skip
            table.add(row)
            print(f"  batch size {org} n={num_items} batch {b}: {row.seconds:.1f}s (inference "
                  f"{row.inference_seconds:.1f}s), {row.speedup_vs_default:.2f}x the default's; "
                  f"same ranking: {row.same_ranking}", flush=True)  # fmt: skip
