"""Execution batch size against speed (`batch_size`): one alsatian search per batch size, end to end.

Every size runs through the public API on the same zoo and data, alternating, medians of the suite's
repeats; warm block store, feature cache off. 64 was `SearchArguments`' default before `auto`, and is the
reference. Where the top blocks run on tiny activations (32 px images reach resnet18's last stage at 1x1), a
batch reads each block's weights once for all its items, so larger batches can pay; the ranking must be the
same at every size.

`auto` measures its size once per store (`alsatian_hf.engine.batch_size`): the row's `tuning_seconds` is
that measurement, in a search of its own before the timed ones, which then read the choice from the store.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from alsatian_hf.engine.batch_size import RECORD

from ._tables import Table
from .suites import Run, search, warm_cells


BATCH_SIZES = (64, 128, 256, "auto")  # the first is the reference of `speedup_vs_default`


@dataclass(kw_only=True)
class BatchSizeRow:
    suite: str
    architecture: str
    distribution: str
    num_models: int
    num_items: int
    batch_size: str  # a number of items, or "auto"
    chosen_size: int  # the size the searches ran (auto: the one it chose)
    tuning_seconds: float  # auto: what measuring the size took, once per store (0 for a fixed size)
    seconds: float  # end to end, median
    inference_seconds: float  # the inference phase, median
    speedup_vs_default: float  # the default size's seconds / these
    same_ranking: bool  # as at the default size
    device: str
    torch_version: str
    code_revision: str


def run_batch_size(run: Run) -> None:
    table = Table(run.out / "batch_size.csv", BatchSizeRow)
    for key, org, ds in warm_cells(run, table, run.suite.batch):
        (run.store(org) / RECORD).unlink(missing_ok=True)
        tuned = search(run, org=org, ds=ds, strategy="alsatian", batch_size="auto").plan["batch_size_tuning"]
        runs: dict[int | str, list] = {b: [] for b in BATCH_SIZES}
        for _ in range(run.suite.repeats):
            for b in BATCH_SIZES:
                runs[b].append(search(run, org=org, ds=ds, strategy="alsatian", batch_size=b))
        secs = {b: statistics.median(r.seconds for r in rs) for b, rs in runs.items()}
        default = BATCH_SIZES[0]
        for b, rs in runs.items():
            row = BatchSizeRow(
                suite=run.suite_name, **key, batch_size=str(b), chosen_size=rs[0].plan["batch_size"],
                tuning_seconds=round(tuned["seconds"], 3) if b == "auto" else 0.0, seconds=round(secs[b], 3),
                inference_seconds=round(statistics.median(r.phase_seconds()["inference"] for r in rs), 3),
                speedup_vs_default=round(secs[default] / secs[b], 3),
                same_ranking=all(r.models == runs[default][0].models for r in rs), **run.env,
            )  # fmt: skip
            table.add(row)
            print(f"  batch size {org} n={key['num_items']} batch {b} ({row.chosen_size}): {row.seconds:.1f}s (inference "
                  f"{row.inference_seconds:.1f}s), {row.speedup_vs_default:.2f}x the default's; "
                  f"same ranking: {row.same_ranking}", flush=True)  # fmt: skip
