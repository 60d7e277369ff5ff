"""Input size (`input_scaling`): alsatian against shift as the image grows, and inference with it."""

from __future__ import annotations

from dataclasses import dataclass

from ._tables import Table
from .speedup import rounded, speedup
from .suites import Run, alternating, dataset, ensure_zoo, search


@dataclass(kw_only=True)
class InputScalingRow:
    suite: str
    architecture: str
    distribution: str
    num_models: int
    num_items: int
    image_size: int
    strategy: str
    device: str
    torch_version: str
    code_revision: str
    seconds: float
    inference: float
    other_seconds: float  # everything but inference: the fixed costs every strategy pays
    repeats: int
    speedup_vs_shift: float
    inference_speedup_vs_shift: float
    ideal_speedup: float
    of_ideal: float | None
    time_ideal_speedup: float | None
    of_time_ideal: float | None
    same_ranking: bool


def run_input_scaling(run: Run) -> None:
    table = Table(run.out / "input_scaling.csv", InputScalingRow)
    for arch, dist, num_items, image_sizes in run.suite.scaling:
        org = ensure_zoo(run, arch=arch, dist=dist)
        ds = dataset(arch, num_items)
        for size in image_sizes:
            key = dict(architecture=arch, distribution=dist, num_models=run.suite.num_models, num_items=num_items,
                       image_size=size)  # fmt: skip
            if not run.force and table.has(**key):
                continue
            table.drop(**key)
            runs: dict[str, list] = {"alsatian": [], "shift": []}
            for strategy in alternating(run.suite.repeats, ("alsatian", "shift")):
                runs[strategy].append(search(run, org=org, ds=ds, strategy=strategy, image_size=size))
            same = runs["alsatian"][0].models == runs["shift"][0].models
            vs = {s: speedup(runs, s, reference="shift") for s in runs}
            for s, sp in vs.items():
                table.add(InputScalingRow(
                    suite=run.suite_name, **key, strategy=s, **run.env, seconds=round(sp.seconds, 3),
                    inference=round(sp.inference, 3), other_seconds=round(sp.seconds - sp.inference, 3),
                    repeats=run.suite.repeats, speedup_vs_shift=round(sp.ratio, 3),
                    inference_speedup_vs_shift=round(sp.inference_ratio, 3), ideal_speedup=round(sp.ideal, 3),
                    of_ideal=rounded(sp.of_ideal), time_ideal_speedup=rounded(sp.time_ideal),
                    of_time_ideal=rounded(sp.of_time_ideal), same_ranking=same,
                ))  # fmt: skip
            a = vs["alsatian"]
            print(f"  {org} n={num_items} {size}px: alsatian {a.seconds:.1f}s shift {vs['shift'].seconds:.1f}s -> "
                  f"{a.ratio:.2f}x (inference {a.inference_ratio:.2f}x, ideal {a.ideal:.2f}x, in time "
                  f"{a.time_ideal or 0:.2f}x); same ranking: {same}", flush=True)  # fmt: skip
