"""The end-to-end cells (paper §6.1, Fig. 10/11): every strategy on every zoo and size, with time by phase."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from alsatian_hf.candidates import wait_prepared
from alsatian_hf.engine import PHASES

from ._tables import Table
from .hub_fetch import run_hub_fetch
from .speedup import rounded, speedup
from .suites import REFERENCE, STRATEGIES, Run, alternating, dataset, ensure_zoo, search


@dataclass(kw_only=True)
class EndToEndRow:
    suite: str
    architecture: str
    distribution: str
    num_models: int
    num_items: int
    strategy: str
    cache_budget: str
    device: str
    torch_version: str
    code_revision: str
    seconds: float  # median end-to-end search time
    search_seconds: float  # without set-up (listing, headers, candidates from the warm store)
    setup_seconds: float
    repeats: int
    speedup_vs_base: float
    speedup_vs_shift: float
    ideal_speedup: float  # FLOP-weighted sharing bound against REFERENCE[strategy]
    of_ideal: float | None
    time_ideal_speedup: float | None  # the same bound in time
    of_time_ideal: float | None
    block_executions: int
    compute_cost: float
    bytes_fetched: int
    same_ranking: bool


@dataclass(kw_only=True)
class TimeBreakdownRow:
    suite: str
    architecture: str
    distribution: str
    num_models: int
    num_items: int
    strategy: str
    device: str
    torch_version: str
    code_revision: str
    prepare_data: float
    prepare_model: float
    inference: float
    proxy_scoring: float
    setup: float
    seconds: float


def run_end_to_end(run: Run, *, fetch: bool = True) -> None:
    """Every cell of the suite; with `fetch`, each zoo's `hub_fetch` rows first (they also warm its store)."""
    e2e = Table(run.out / "end_to_end.csv", EndToEndRow)
    phases = Table(run.out / "time_breakdown.csv", TimeBreakdownRow)
    for arch in run.suite.archs:
        for dist in run.suite.distributions_of(arch):
            org = ensure_zoo(run, arch=arch, dist=dist)
            if fetch or not run.store(org).is_dir():  # the timed cells need a warm store either way
                run_hub_fetch(run, arch=arch, dist=dist)
            for num_items in run.suite.sizes[arch]:
                cell = dict(architecture=arch, distribution=dist, num_models=run.suite.num_models, num_items=num_items)
                if not run.force and e2e.has(**cell):
                    print(f"  skip {org} n={num_items} (done)", flush=True)
                    continue
                e2e.drop(**cell)
                phases.drop(**cell)
                _run_cell(run, org=org, cell=cell, e2e=e2e, phases=phases)


def _run_cell(run: Run, *, org: str, cell: dict, e2e: Table, phases: Table) -> None:
    ds = dataset(cell["architecture"], cell["num_items"])
    wait_prepared()  # the store's prepared blocks, written in the background by earlier searches, are complete
    runs: dict[str, list] = {s: [] for s in STRATEGIES}
    for strategy in alternating(run.suite.repeats, STRATEGIES):
        runs[strategy].append(search(run, org=org, ds=ds, strategy=strategy))
    same = len({tuple(v[0].models) for v in runs.values()}) == 1
    vs = {s: speedup(runs, s, reference=REFERENCE[s]) for s in STRATEGIES}
    for s in STRATEGIES:
        first, sp = runs[s][0], vs[s]
        e2e.add(EndToEndRow(
            suite=run.suite_name, **cell, strategy=s, cache_budget="auto", **run.env,
            seconds=round(sp.seconds, 3), search_seconds=round(sp.search_seconds, 3),
            setup_seconds=round(sp.seconds - sp.search_seconds, 3), repeats=run.suite.repeats,
            speedup_vs_base=round(speedup(runs, s, reference="base").ratio, 3),
            speedup_vs_shift=round(speedup(runs, s, reference="shift").ratio, 3),
            ideal_speedup=round(sp.ideal, 3), of_ideal=rounded(sp.of_ideal),
            time_ideal_speedup=rounded(sp.time_ideal), of_time_ideal=rounded(sp.of_time_ideal),
            block_executions=sum(it["block_executions"] for it in first.iterations),
            compute_cost=float(f"{sum(it['compute_cost'] for it in first.iterations):.4g}"),
            bytes_fetched=first.bytes_fetched, same_ranking=same,
        ))  # fmt: skip
        by_phase = {
            p: statistics.median(sum(it["seconds"][p] for it in x.iterations) for x in runs[s]) for p in PHASES
        }
        phases.add(TimeBreakdownRow(
            suite=run.suite_name, **cell, strategy=s, **run.env, **{p: round(v, 3) for p, v in by_phase.items()},
            setup=round(sp.seconds - sp.search_seconds, 3), seconds=round(sp.seconds, 3),
        ))  # fmt: skip
    a = vs["alsatian"]
    print(f"  {org} n={cell['num_items']}: alsatian {a.seconds:.1f}s shift {vs['shift'].seconds:.1f}s "
          f"base {vs['base'].seconds:.1f}s -> {a.ratio:.2f}x vs shift (ideal {a.ideal:.2f}x, in time "
          f"{a.time_ideal or 0:.2f}x), {speedup(runs, 'alsatian', reference='base').ratio:.2f}x vs base; "
          f"same ranking: {same}", flush=True)  # fmt: skip
