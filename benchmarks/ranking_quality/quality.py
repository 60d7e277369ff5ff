"""The search side: every scorer searches every target's zoo through `ModelSearcher.from_hub` on the local Hub,
and its scores and pick are measured against the ground truth.

Per (target, scorer), from one block store:
- the successive-halving search the user runs (result size 1), timed without the feature cache: its pick,
  and its iteration-1 scores; again with `min_items_per_class=MIN_ITEMS_PER_CLASS` (a row of its own);
- one iteration over all of D_train (result size = every candidate): the scores with all the data (through
  the feature cache, so features are extracted once for all scorers);
- that iteration again for each of `Profile.splits` seeds of the search, which draw D_test anew
  (`ranking_split_scores.csv`): with 80 to 200 test items, one draw moves a scorer's weighted tau as much as the
  choice of scorer does, so scorers are compared over the draws (`card.paired_against_default`).

Metrics: weighted Kendall tau (`scipy.stats.weightedtau`), Kendall tau and Pearson r between scores and mean
fine-tuned accuracy; the top-1 regret of the pick (points below the best mean accuracy); and the noise floor
beside them: the ground truth's seed-vs-seed Kendall tau, its mean standard error per candidate, and the
fraction of candidate pairs its seeds tell apart (`separable_pairs`). Kendall tau is also taken over those pairs
alone: where most candidates fine-tune alike, the plain tau mostly measures the noise. The weighted tau is also
taken against each seed's accuracies alone; its spread over seeds is how far two scorers' weighted taus must
differ before the benchmark tells them apart.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .._tables import Table, read_rows
from ..suites import provenance
from .finetune import MAX_LENGTH
from .tasks import FULL, TARGETS, Profile, items_digest, target_datasets
from .truth import mean_accuracy
from .zoo import org_of


MIN_ITEMS_PER_CLASS = 10


def scorers() -> dict[str, tuple[str | object, dict]]:
    """name -> (a scorer name or object, scorer_kwargs) for every scorer under test."""
    from alsatian_hf.scoring import HScore

    from .proxies import GBC, NCTI, SFDA

    return {
        "linear": ("linear", {}),
        "linear-tiebreak": ("linear", {"tie_break": True}),  # equal accuracies ordered by confidence
        # raw features: the probe's effective step grows with the square of their scale, which differs 10x
        # between candidates here (feature RMS 0.04 for MiniLM, 0.38 for its fine-tunes), so a candidate's
        # score depends on its scale; kept as a reference, never a default (docs/concepts.md, "Choosing a scorer")
        "linear-raw": ("linear", {"normalize": False}),
        "knn": ("knn", {}),
        "logme": ("logme", {}),
        "hscore": ("hscore", {}),  # Ledoit-Wolf shrinkage (the default)
        "hscore-pinv": (HScore(shrinkage=None), {}),  # the original: degenerate with fewer items than dimensions
        "gbc": (GBC(), {}),
        "sfda": (SFDA(), {}),  # the authors' adaptive shrinkage: most candidates score 1.0 (see `SFDA`)
        "sfda-lw": (SFDA(shrinkage="ledoit-wolf"), {}),
        "ncti": (NCTI(), {}),  # relative to the candidates scored together (see `NCTI`)
        "head-probe": ("head", {}),  # a fresh head trained as the ground truth trains one (`HeadProbe`)
        "head-tiebreak": ("head", {"tie_break": True}),  # the default, its equal accuracies ordered by confidence
    }


def default_scorer() -> str:
    """The name under `scorers()` of the library's default scorer (`SearchArguments.scorer`, no kwargs): the one
    the card compares every other scorer with."""
    from dataclasses import fields

    from alsatian_hf import SearchArguments

    default = next(f.default for f in fields(SearchArguments) if f.name == "scorer")
    return next(name for name, (scorer, kwargs) in scorers().items() if scorer == default and not kwargs)


@dataclass(kw_only=True)
class RankingQualityRow:
    target: str
    modality: str
    scorer: str
    min_items_per_class: int  # 0: the paper's schedule
    candidates: int
    seeds: int
    truth_seed_tau: float  # noise floor: mean Kendall tau between the ground truth's seeds
    truth_seed_wtau: float
    truth_se_points: float  # mean standard error of a candidate's mean accuracy
    truth_spread_points: float  # best minus worst mean accuracy
    truth_separable_pairs: float  # fraction of candidate pairs whose mean accuracies the seeds tell apart
    pick: str
    best: str
    regret_points: float  # best mean accuracy minus the pick's
    random_regret_points: float  # best minus the candidates' average: a random pick's expected regret
    it1_items: int
    it1_distinct_scores: int  # 1: the scorer was constant across candidates in iteration 1 (to 9 digits)
    it1_wtau: float
    it1_tau: float
    it1_pearson: float
    all_distinct_scores: int
    all_wtau: float
    all_wtau_seed_sd: float  # sd over seeds of the weighted tau against one seed's accuracies
    all_tau: float
    all_tau_separable: float  # Kendall tau over the separable pairs alone: the order the ground truth is sure of
    all_pearson: float
    tie_iterations: int  # iterations whose cut fell between exactly equal scores
    search_seconds: float
    device: str
    torch_version: str
    code_revision: str


@dataclass(kw_only=True)
class RankingSplitRow:
    target: str
    scorer: str
    split: int  # the search's `seed`: it draws D_test (and the train slices); 0 is `RankingScoreRow.score_all`'s
    model: str
    score: float  # the all-data score


@dataclass(kw_only=True)
class RankingScoreRow:
    target: str
    scorer: str
    model: str
    accuracy_mean: float
    accuracy_se: float
    score_it1: float
    score_all: float
    picked: bool


def weighted_tau(scores: list[float], accs: list[float]) -> float:
    """`scipy.stats.weightedtau` of scores against accuracies; NaN for a constant scorer, which ranks nothing."""
    from scipy import stats

    return float(stats.weightedtau(scores, accs).statistic) if len(set(scores)) > 1 else float("nan")


def _correlations(scores: list[float], accs: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    if len(set(scores)) < 2:
        return float("nan"), float("nan"), float("nan")  # a constant scorer ranks nothing
    return (
        weighted_tau(scores, accs),
        float(stats.kendalltau(scores, accs).statistic),
        float(stats.pearsonr(scores, accs).statistic),
    )


def _distinct(scores: list[float]) -> int:
    """How many different scores, to 9 significant digits: the pseudo-inverse H-score's C - 1 comes out as
    2.9999999999 and 3.0000000001, a tie to any reader though not to `==`."""
    return len({float(f"{s:.9g}") for s in scores})


def noise_floor(rows: list[dict], target: str, models: list[str]) -> tuple[float, float, list[list[float]]]:
    """(mean seed-vs-seed Kendall tau, mean weighted tau, accuracies per seed over `models`)."""
    from scipy import stats

    seeds = sorted({int(r["seed"]) for r in rows if r["target"] == target})
    acc = {(r["model"], int(r["seed"])): float(r["accuracy"]) for r in rows if r["target"] == target}
    per_seed = [[acc[(m, s)] for m in models] for s in seeds if all((m, s) in acc for m in models)]
    pairs = list(itertools.combinations(per_seed, 2))
    if not pairs:
        return float("nan"), float("nan"), per_seed
    tau = statistics.mean(float(stats.kendalltau(a, b).statistic) for a, b in pairs)
    wtau = statistics.mean(float(stats.weightedtau(a, b).statistic) for a, b in pairs)
    return tau, wtau, per_seed


def separable_pairs(per_seed: list[list[float]]) -> list[tuple[int, int]]:
    """The candidate pairs (indices) whose mean accuracies differ by more than twice the standard error of the
    difference, from the pooled per-run sd of the target (3 seeds are too few for a per-candidate sd)."""
    runs = np.array(per_seed)  # (seeds, candidates)
    if len(runs) < 2:
        return []
    se_diff = float(np.sqrt(runs.var(axis=0, ddof=1).mean() * 2 / len(runs)))
    means = runs.mean(axis=0)
    return [(a, b) for a, b in itertools.combinations(range(len(means)), 2) if abs(means[a] - means[b]) > 2 * se_diff]


def _pair_tau(scores: list[float], accs: list[float], pairs: list[tuple[int, int]]) -> float:
    """Kendall's tau-a over the given pairs: (concordant - discordant) / pairs; a tie in scores counts 0."""
    if not pairs:
        return float("nan")
    signs = [np.sign(scores[a] - scores[b]) * np.sign(accs[a] - accs[b]) for a, b in pairs]
    return float(np.mean(signs))


def _search(org: str, ds, scorer, kwargs: dict, store: Path, result_size: int, *, feature_cache: bool,
            min_items_per_class: int | None = None, seed: int = 0):  # fmt: skip
    from alsatian_hf import ModelSearcher, SearchArguments

    args = SearchArguments(
        result_size=result_size,
        scorer=scorer if isinstance(scorer, str) else "linear",
        scorer_kwargs=kwargs,
        max_length=MAX_LENGTH,
        store_dir=str(store),
        seed=seed,
        feature_cache=feature_cache,
        min_items_per_class=min_items_per_class,
    )
    extra = {} if isinstance(scorer, str) else {"scorer": scorer}
    return ModelSearcher.from_hub(author=org, train_dataset=ds, args=args, **extra).search()


def run_quality(hub_root: Path, work: Path, out: Path, modalities: list[str], *, build_dir: Path | None = None,
                profile: Profile = FULL, scorer_names: list[str] | None = None,
                splits_only: bool = False) -> None:  # fmt: skip
    """Writes `ranking_quality.csv`, `ranking_scores.csv`, `ranking_split_scores.csv` and the merged
    `ground_truth.csv` into `out`.

    `build_dir` holds the build's tables (`ground_truth_<modality>.csv`); default: `out`. `splits_only` measures
    the split scores alone and keeps the other tables' rows (it reruns none of their timed searches).
    """
    from alsatian_hf.localhub import HubServer, use_endpoint

    from .truth import TruthRow, measured_recipe, recipe_digest, stale_runs

    build_dir = build_dir or out
    truth_rows = [r for m in modalities for r in read_rows(build_dir / f"ground_truth_{m}.csv")]
    targets = [t for t in TARGETS.values() if t.modality in modalities and t.name in profile.targets]
    data = {t.name: target_datasets(t.name, profile=profile) for t in targets}
    recipes = {m: measured_recipe(build_dir, m, profile) for m in modalities}
    stale = stale_runs(
        truth_rows,
        {name: items_digest(*ds) for name, ds in data.items()},
        {t.name: recipe_digest(recipes[t.modality]) if recipes[t.modality] else None for t in targets},
    )
    if stale:
        raise ValueError(
            f"The ground truth of {sorted({r['target'] for r in stale})} was measured on another draw of the "
            "target's items, or by another recipe, than today's. Run `python -m benchmarks.ranking_quality "
            "--build` first: it drops those runs and measures them anew."
        )
    os.environ.setdefault("HF_HOME", str(work / "hf-home"))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    merged = Table(out / "ground_truth.csv", TruthRow)
    merged.rewrite([r for r in merged.rows if TARGETS[r["target"]].modality not in modalities] + truth_rows)
    quality = Table(out / "ranking_quality.csv", RankingQualityRow)
    detail = Table(out / "ranking_scores.csv", RankingScoreRow)
    by_split = Table(out / "ranking_split_scores.csv", RankingSplitRow)
    hub = HubServer(hub_root).start()
    use_endpoint(hub.url)
    try:
        for target in targets:
            org = org_of(target.modality, profile)
            truth = mean_accuracy(truth_rows, target.name)
            if not truth:
                print(f"  {target.name}: no ground truth yet (run --build)", flush=True)
                continue
            train_ds, _ = data[target.name]
            for name, (scorer, kwargs) in scorers().items():
                if scorer_names and name not in scorer_names:
                    continue
                store = work / "stores" / org
                first = None
                if not splits_only:
                    quality.drop(target=target.name, scorer=name)
                    detail.drop(target=target.name, scorer=name)
                    first = _measure(org, target, name, scorer, kwargs, train_ds, truth, truth_rows, store, quality,
                                     detail)  # fmt: skip
                _measure_splits(org, target.name, name, scorer, kwargs, train_ds, store, by_split, profile.splits,
                                first)  # fmt: skip
    finally:
        hub.stop()


def _measure_splits(org, target, name, scorer, kwargs, train_ds, store, table, splits, first=None) -> None:
    """One all-data iteration per split seed (`first`: split 0's scores, when measured already)."""
    per_split = [first] if first is not None else []
    for seed in range(len(per_split), splits):
        result = _search(org, train_ds, scorer, kwargs, store, 10**6, feature_cache=True, seed=seed)
        per_split.append(result.iterations[0]["scores"])
    rows = [asdict(RankingSplitRow(target=target, scorer=name, split=split, model=model, score=score))
            for split, scores in enumerate(per_split) for model, score in scores.items()]  # fmt: skip
    table.rewrite([r for r in table.rows if (r["target"], r["scorer"]) != (target, name)] + rows)
    print(f"  {target} {name}: all-data scores over {splits} splits", flush=True)


def _measure(org, target, name, scorer, kwargs, train_ds, truth, truth_rows, store, quality, detail) -> dict:
    """Measures one scorer on one target; returns its all-data scores (split 0)."""
    # all data first (a result size above the candidate count is one iteration on all of D_train); it also
    # warms the block store, so neither timed search below pays for fetching blocks
    everything = _search(org, train_ds, scorer, kwargs, store, 10**6, feature_cache=True)
    full = everything.iterations[0]["scores"]
    runs = {}  # min_items_per_class -> (the halving search, its seconds)
    for per_class in (0, MIN_ITEMS_PER_CLASS):
        start = time.perf_counter()
        result = _search(org, train_ds, scorer, kwargs, store, 1, feature_cache=False,
                         min_items_per_class=per_class or None)  # fmt: skip
        runs[per_class] = (result, time.perf_counter() - start)
    candidates = runs[0][0].iterations[0]["candidates"]
    models = [m for m in candidates if m in truth]
    accs = [truth[m][0] for m in models]
    best = max(models, key=lambda m: truth[m][0])
    seed_tau, seed_wtau, per_seed = noise_floor(truth_rows, target.name, models)
    all_wtau, all_tau, all_pearson = _correlations([full[m] for m in models], accs)
    seed_wtaus = [weighted_tau([full[m] for m in models], s) for s in per_seed]
    separable = separable_pairs(per_seed)
    n_pairs = len(models) * (len(models) - 1) // 2
    floor = dict(candidates=len(models), seeds=len(per_seed), truth_seed_tau=seed_tau, truth_seed_wtau=seed_wtau,
                 truth_se_points=float(np.nanmean([truth[m][1] for m in models])),
                 truth_spread_points=max(accs) - min(accs), best=best,
                 truth_separable_pairs=len(separable) / n_pairs if n_pairs else float("nan"),
                 random_regret_points=truth[best][0] - float(np.mean(accs)))  # fmt: skip
    on_all = dict(all_distinct_scores=_distinct([full[m] for m in models]), all_wtau=all_wtau, all_tau=all_tau,
                  all_tau_separable=_pair_tau([full[m] for m in models], accs, separable), all_pearson=all_pearson,
                  all_wtau_seed_sd=float(np.std(seed_wtaus, ddof=1)) if len(seed_wtaus) > 1 else float("nan"))  # fmt: skip
    for per_class, (halving, seconds) in runs.items():
        it1, pick = halving.iterations[0]["scores"], halving.best
        it1_wtau, it1_tau, it1_pearson = _correlations([it1[m] for m in models], accs)
        regret = truth[best][0] - truth[pick][0] if pick in truth else float("nan")
        row = RankingQualityRow(
            target=target.name, modality=target.modality, scorer=name, min_items_per_class=per_class, pick=pick,
            regret_points=regret, it1_items=halving.iterations[0]["train_items"],
            it1_distinct_scores=_distinct([it1[m] for m in models]), it1_wtau=it1_wtau, it1_tau=it1_tau,
            it1_pearson=it1_pearson, tie_iterations=len(halving.ties), search_seconds=round(seconds, 2),
            **floor, **on_all, **provenance(),
        )  # fmt: skip
        quality.add(row)
        print(f"  {target.name} {name} (min items per class {per_class}): pick {pick.split('/')[1]} (regret "
              f"{regret:.2f} pts), weighted tau {all_wtau:.2f} (it1 {it1_wtau:.2f}), {seconds:.0f}s", flush=True)  # fmt: skip
    it1, pick = runs[0][0].iterations[0]["scores"], runs[0][0].best
    for m in models:
        detail.add(RankingScoreRow(target=target.name, scorer=name, model=m, accuracy_mean=truth[m][0],
                                   accuracy_se=truth[m][1], score_it1=it1[m], score_all=full[m],
                                   picked=m == pick))  # fmt: skip
    return full
