"""What the opt-in numerics modes do to a search (`precision`): each against exact eager fp32, end to end.

`SearchArguments(precision=)` is "fp32" by default (exact; TF32 off on CUDA). "tf32" (CUDA only) and "bf16"
(autocast) round the features differently, so they may change which candidates survive each halving step and
which one wins; this table is their measured effect, and the speed they buy on the device that ran it. Every
mode runs alsatian through the public API on the same zoo and data, alternating, medians of the suite's
repeats; warm block store, feature cache off. A CPU without bf16 instructions emulates bf16, many times slower
than fp32: there the speed columns say so, and only the ranking columns are of use.

The `+compile` modes are fp32 with `SearchArguments(torch_compile=True)` (`+reduce-overhead`: its CUDA-graph
mode, on CUDA only). Their `first_seconds` is the mode's first search in the process, which pays the compiling
(inductor's on-disk cache may hold kernels of an earlier process); `seconds` is the median of the repeats, as
for every mode, so it is the warm cost once the repeats outnumber the first.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ._tables import Table
from .suites import Run, alternating, search, warm_cells


@dataclass(kw_only=True)
class PrecisionRow:
    suite: str
    architecture: str
    distribution: str
    num_models: int
    num_items: int
    image_size: int
    precision: str  # "fp32" (the reference), "tf32", "bf16", "fp32+compile" or "fp32+reduce-overhead"
    seconds: float  # end to end, median
    first_seconds: float | None  # end to end, the mode's first search in the process (compiling, if any)
    inference_seconds: float  # the inference phase, median
    speedup_vs_fp32: float  # fp32's seconds / these
    same_top1: bool  # the search's pick equals fp32's
    same_survivors: bool  # every halving step kept the same candidates as under fp32
    kendall_tau: float  # between this mode's and fp32's iteration-1 scores (every candidate scored there)
    max_abs_score_diff: float  # over every (iteration, candidate) both scored
    device: str
    torch_version: str
    code_revision: str


# mode -> (SearchArguments.precision, SearchArguments.torch_compile_mode)
MODES = {
    "fp32": ("fp32", None),
    "tf32": ("tf32", None),
    "bf16": ("bf16", None),
    "fp32+compile": ("fp32", "default"),
    "fp32+reduce-overhead": ("fp32", "reduce-overhead"),
}


def modes() -> tuple[str, ...]:
    """fp32 first (the reference), then the opt-in modes this device runs as such (tf32 is fp32 on a CPU, and
    reduce-overhead's CUDA graphs need CUDA)."""
    import torch

    if torch.cuda.is_available():
        return tuple(MODES)
    return ("fp32", "bf16", "fp32+compile")


def kendall_tau(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Kendall's tau-b of two score lists, as `scipy.stats.kendalltau` computes it (the device image may lack
    scipy), where that is defined; where a list is constant: 1.0 if both are (all pairs tied alike), else 0."""
    concordant = discordant = tied_a = tied_b = pairs = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = (a[i] > a[j]) - (a[i] < a[j]), (b[i] > b[j]) - (b[i] < b[j])
            pairs += 1
            tied_a += da == 0
            tied_b += db == 0
            concordant += da * db > 0
            discordant += da * db < 0
    denominator = ((pairs - tied_a) * (pairs - tied_b)) ** 0.5
    if not denominator:
        return 1.0 if tied_a == tied_b == pairs else 0.0
    return (concordant - discordant) / denominator


def run_precision(run: Run) -> None:
    table = Table(run.out / "precision.csv", PrecisionRow)
    for key, org, ds in warm_cells(run, table, run.suite.precision):
        cell = {**key, "image_size": key.get("image_size", run.suite.image_size)}
        runs: dict[str, list] = {m: [] for m in modes()}
        for mode in alternating(run.suite.repeats, tuple(runs)):
            precision, compile_mode = MODES[mode]
            runs[mode].append(
                search(run, org=org, ds=ds, strategy="alsatian", precision=precision, torch_compile_mode=compile_mode,
                       image_size=key.get("image_size"))
            )  # fmt: skip
        secs = {m: statistics.median(x.seconds for x in rs) for m, rs in runs.items()}
        exact = runs["fp32"][0]
        for mode, rs in runs.items():
            res = rs[0]
            first = [
                (exact.iterations[0]["scores"][m], res.iterations[0]["scores"][m])
                for m in exact.iterations[0]["scores"]
            ]
            both = [
                (a["scores"][m], b["scores"][m])
                for a, b in zip(exact.iterations, res.iterations)
                for m in a["scores"].keys() & b["scores"].keys()
            ]
            tau = kendall_tau(*zip(*first))
            row = PrecisionRow(
                suite=run.suite_name, **cell, precision=mode, seconds=round(secs[mode], 3),
                first_seconds=round(rs[0].seconds, 3),
                inference_seconds=round(statistics.median(x.phase_seconds()["inference"] for x in rs), 3),
                speedup_vs_fp32=round(secs["fp32"] / secs[mode], 3), same_top1=res.best == exact.best,
                same_survivors=[it["survivors"] for it in res.iterations]
                == [it["survivors"] for it in exact.iterations],
                kendall_tau=round(tau, 3),
                max_abs_score_diff=float(f"{max(abs(a - b) for a, b in both):.3g}"), **run.env,
            )  # fmt: skip
            table.add(row)
            print(f"  precision {org} n={key['num_items']} {cell['image_size']}px {mode}: {row.seconds:.1f}s (first {row.first_seconds:.1f}s, inference "
                  f"{row.inference_seconds:.1f}s), "
                  f"{row.speedup_vs_fp32:.2f}x fp32's; same pick {row.same_top1}, same survivors "
                  f"{row.same_survivors}, iteration-1 tau {row.kendall_tau:.3f}, max score diff "
                  f"{row.max_abs_score_diff:.3g}", flush=True)  # fmt: skip
