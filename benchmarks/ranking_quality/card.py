"""The ranking-quality part of the benchmark card: its section, and `ranking_quality.png` (proxy score against
fine-tuned accuracy, a panel per target and scorer)."""

from __future__ import annotations

import math
from pathlib import Path

from .._tables import read_rows


def _f(value: str | float, fmt: str = ".2f") -> str:
    """A CSV cell or a float, formatted; "n/a" for an empty cell or NaN."""
    x = float(value) if value not in ("", None) else float("nan")
    return "n/a" if math.isnan(x) else format(x, fmt)


def scorer_summary(rows: list[dict]) -> list[str]:
    """Per scorer and schedule, over targets: mean regret, mean weighted tau (all data and iteration 1), the
    mean seed sd of the weighted tau, the mean tau over separable pairs, and the targets where it was constant."""
    lines = []
    keys = list(dict.fromkeys((r["scorer"], r["min_items_per_class"]) for r in rows))
    for scorer, per_class in keys:
        sel = [r for r in rows if r["scorer"] == scorer and r["min_items_per_class"] == per_class]

        def mean(col: str) -> float:
            values = [float(r[col]) for r in sel if r[col] not in ("", "nan")]
            return sum(values) / len(values) if values else float("nan")

        constant = [r["target"] for r in sel if r["all_distinct_scores"] == "1" or r["it1_distinct_scores"] == "1"]
        lines.append(
            f"| {scorer} | {per_class if per_class != '0' else 'paper'} | {len(sel)} | {_f(mean('regret_points'))} "
            f"| {_f(mean('all_wtau'))} ± {_f(mean('all_wtau_seed_sd'))} | {_f(mean('all_tau_separable'))} "
            f"| {_f(mean('it1_wtau'))} | "
            f"{_f(mean('search_seconds'), '.1f')} | {', '.join(constant) or 'none'} |"
        )
    return lines


def _accuracies(out: Path) -> dict[str, dict[int, dict[str, float]]]:
    """target -> ground-truth seed -> model -> fine-tuned test accuracy (`ground_truth.csv`)."""
    runs: dict[str, dict[int, dict[str, float]]] = {}
    for r in read_rows(out / "ground_truth.csv"):
        runs.setdefault(r["target"], {}).setdefault(int(r["seed"]), {})[r["model"]] = float(r["accuracy"])
    return runs


def _se(values) -> float:
    import numpy as np

    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def _paired_verdict(diff) -> tuple[float, float, float, float, float]:
    """(delta, bar, seed SE, target SE, split SE) of (seeds, targets, splits) paired differences."""
    seed_se, target_se, split_se = (_se(diff.mean(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    return float(diff.mean()), 2 * max(seed_se, target_se, split_se), seed_se, target_se, split_se


def _verdict(delta: float, bar: float) -> str:
    return "better" if delta > bar else "worse" if delta < -bar else "within noise"


def paired_against_default(out: Path, default: str | None = None) -> dict[str, dict]:
    """scorer -> its weighted tau minus the default's (all-data scores), with the three noises it must beat.
    `default` is a scorer's name in the tables; None: the library's default scorer (`quality.default_scorer`).

    For each target, ground-truth seed and split (a draw of D_test, `ranking_split_scores.csv`; split 0 alone
    where that table lacks the pair), both scorers' weighted taus are taken against that seed's accuracies alone:
    a paired difference, which cancels the noise both scorers meet alike. `delta` is its mean over targets, seeds
    and splits; `wtau` the scorer's own mean weighted tau (the default's under `default_wtau`). `seed_se` is the
    standard error of the per-seed means over seeds (the ground truth's noise); `split_se` that of the per-split
    means over splits (the scorer's own, from its few test items); `target_se` that of the per-target means over
    targets (how much the lead depends on which targets were drawn, since a scorer is chosen for targets not in
    the benchmark). `verdict` is "better" or "worse" only when `delta` lies beyond twice the largest of the three;
    `verdict_holds` counts the targets without which the same rule still gives the same verdict.
    """
    import numpy as np

    from .quality import default_scorer, weighted_tau

    default = default or default_scorer()
    scores: dict[tuple[str, str], list[dict[str, float]]] = {}  # (target, scorer) -> model scores per split
    for r in read_rows(out / "ranking_scores.csv"):
        scores.setdefault((r["target"], r["scorer"]), [{}])[0][r["model"]] = float(r["score_all"])
    by_split: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
    for r in read_rows(out / "ranking_split_scores.csv"):
        by_split.setdefault((r["target"], r["scorer"]), {}).setdefault(int(r["split"]), {})[r["model"]] = float(
            r["score"]
        )
    for key, splits in by_split.items():
        if key in scores:
            scores[key] = [splits[s] for s in sorted(splits)]
    runs = _accuracies(out)
    targets = sorted({t for t, s in scores if s == default})
    seeds = sorted({s for t in targets for s in runs.get(t, {})})
    if len(seeds) < 2 or len(targets) < 2:
        return {}  # no standard error to compare with

    def wtaus(target: str, scorer: str) -> np.ndarray:
        """(seeds, splits) weighted taus."""
        out = []
        for seed in seeds:
            acc = runs.get(target, {}).get(seed, {})
            out.append([])
            for by_model in scores[(target, scorer)]:
                models = sorted(m for m in by_model if m in acc)
                out[-1].append(weighted_tau([by_model[m] for m in models], [acc[m] for m in models]))
        return np.array(out)

    base = {t: wtaus(t, default) for t in targets}
    result = {}
    for scorer in dict.fromkeys(s for _, s in scores):
        if scorer == default or not all((t, scorer) in scores for t in targets):
            continue
        mine = {t: wtaus(t, scorer) for t in targets}
        if any(mine[t].shape != base[t].shape for t in targets):
            continue  # measured over other splits than the default: not a paired difference
        diff = np.stack([mine[t] - base[t] for t in targets], axis=1)  # (seeds, targets, splits)
        if np.isnan(diff).any():
            continue  # a scorer constant on some target
        delta, bar, seed_se, target_se, split_se = _paired_verdict(diff)
        verdict = _verdict(delta, bar)
        # the same rule without each target in turn: how much the verdict rests on any one target
        holds = sum(_verdict(*_paired_verdict(np.delete(diff, t, axis=1))[:2]) == verdict for t in range(len(targets)))
        per_target = diff.mean(axis=(0, 2))
        result[scorer] = dict(delta=delta, wtau=float(np.mean([mine[t] for t in targets])),
                              default_wtau=float(np.mean([base[t] for t in targets])), seed_se=seed_se,
                              target_se=target_se, split_se=split_se, splits=diff.shape[2], verdict=verdict,
                              verdict_holds=holds,
                              targets=len(targets), targets_better=int((per_target > 0).sum()))  # fmt: skip
    return result


def fine_tune_wtau(out: Path) -> dict[str, float]:
    """target -> fine-tuning's own weighted tau on the paired yardstick: the mean accuracy of the other
    ground-truth seeds, as if it were a scorer, against each seed's accuracies in turn (averaged over seeds).
    It is what a scorer as good as two more fine-tunes reaches, not a bound: a scorer that knew each candidate's
    expected accuracy would do a little better, but the seeds' noise keeps even that below 1."""
    import numpy as np

    from .quality import weighted_tau

    wtau = {}
    for target, by_seed in _accuracies(out).items():
        models = sorted(set.intersection(*(set(acc) for acc in by_seed.values())))
        if len(by_seed) < 2 or len(models) < 2:
            continue
        wtaus = [
            weighted_tau(
                [np.mean([by_seed[o][m] for o in by_seed if o != seed]) for m in models],
                [by_seed[seed][m] for m in models],
            )
            for seed in by_seed
        ]
        wtau[target] = float(np.mean(wtaus))
    return wtau


def ranking_lines(out: Path) -> list[str]:
    """The card's section, empty when the card folder has no `ranking_quality.csv`."""
    rows = read_rows(out / "ranking_quality.csv")
    if not rows:
        return []
    from .quality import default_scorer
    from .tasks import TARGETS
    from .zoo import IMAGE_ZOO, TEXT_ZOO

    zoo_counts = {
        "fine-tunes": sum(1 for m in IMAGE_ZOO if m.parent),
        "zero-head": sum(1 for m in IMAGE_ZOO if m.zero_head),
        "scratch": sum(1 for m in IMAGE_ZOO if m.source and not m.parent),
    }
    targets = ", ".join(f"{t.what} ({t.train_items} / {t.test_items})" for t in TARGETS.values())
    summary = [
        "Over targets, per scorer and schedule (means):",
        "",
        "| scorer | schedule | targets | regret (pts) | weighted tau ± seed sd | tau, separable pairs "
        "| weighted tau, iteration 1 | search s | constant on |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
        *scorer_summary(rows),
        "",
    ]
    default = default_scorer()
    paired = paired_against_default(out, default)
    if paired:
        summary += [
            f"Against the default (`{default}`, the library's `SearchArguments.scorer`): each scorer's weighted tau "
            "minus the default's, both against one "
            "ground-truth seed's accuracies at a time (a paired difference), averaged over targets, seeds and "
            f"{next(iter(paired.values()))['splits']} splits (draws of D_test by the search's `seed`; config "
            "`ranking_split_scores`). Three noises beside it: the standard error over seeds (the ground truth's), "
            "over splits (the scorer's own, from few test items) and over targets (how much the lead depends on "
            "which targets were drawn). A scorer is better or worse than the default only beyond twice the "
            "largest; the rule is then applied again without each target in turn, to show how much the verdict "
            f"rests on any one. The default's own weighted tau, so averaged: {next(iter(paired.values()))['default_wtau']:.3f}.",
            "",
            *_fine_tune_lines(out),
            "| scorer | weighted tau | minus the default's | SE, seeds | SE, splits | SE, targets | verdict "
            "| verdict without each target | targets where higher |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|",
            *(
                f"| {s} | {p['wtau']:.3f} | {p['delta']:+.3f} | {p['seed_se']:.3f} | {p['split_se']:.3f} "
                f"| {p['target_se']:.3f} | {p['verdict']} | holds for {p['verdict_holds']} of {p['targets']} "
                f"| {p['targets_better']} of {p['targets']} |"
                for s, p in paired.items()
            ),
            "",
        ]
    table = [
        f"| {r['target']} | {r['scorer']} | {r['min_items_per_class'] if r['min_items_per_class'] != '0' else 'paper'} "
        f"| {_f(r['regret_points'])} | {_f(r['random_regret_points'])} | "
        f"{_f(r['all_wtau'])} ± {_f(r['all_wtau_seed_sd'])} | {_f(r['all_tau'])} ({_f(r['all_tau_separable'])}) | "
        f"{_f(r['all_pearson'])} | "
        f"{_f(r['it1_wtau'])} ({r['it1_items']} items) | {r['it1_distinct_scores']}/{r['candidates']} | "
        f"{r['tie_iterations']} | {_f(r['truth_seed_tau'])} | {_f(r['truth_separable_pairs'])} | "
        f"{_f(r['truth_se_points'])} | {_f(r['search_seconds'], '.1f')} |"
        for r in rows
    ]
    return [
        "## Does it pick the right model? (ranking quality)",
        "",
        "`python -m benchmarks.ranking_quality` (the search side, minutes) after `--build` (the zoo and the ground "
        "truth, hours of CPU, stored in `benchmarks/results/ranking-quality/`). The zoo is real: EfficientNet-Lite0/1/2 "
        f"with their ImageNet weights, {zoo_counts['fine-tunes']} fine-tunes of them trained here on Fashion-MNIST "
        "tasks (two 5-class halves, random labels, and all 10 classes with 3000 or 10000 items) with 0, 50 or 75% "
        f"of blocks frozen ({zoo_counts['zero-head']} by a recipe whose new head starts at zero), and "
        f"{zoo_counts['scratch']} Lite0/Lite1 models trained from random weights on those tasks; all-MiniLM-L6-v2 "
        f"and {sum(1 for m in TEXT_ZOO if m.parent)} fine-tunes of it on 20 Newsgroups groups (comp, rec, sci, and "
        "talk with random labels), 0 or 50% frozen. Targets, disjoint in items from every "
        f"source (train / test items): {targets}. Images at 32 px, text at 64 tokens. The ground truth (config "
        "`ground_truth`) fine-tunes every candidate fully on every target, 3 seeds, AdamW with warm-up and cosine "
        "decay, the learning rate tuned on validation items of one target per modality; image heads start at zero. "
        "Scorers: the library's (`head-probe`, its `head` scorer and the default: a zero head trained as the "
        "ground truth trains one, AdamW, cosine decay, 5 epochs, also with its `tie_break` as `head-tiebreak`; "
        "`linear`, SHiFT's probe, the paper's proxy and "
        "the default until this benchmark found `head` better, also with its `tie_break`, and on "
        "unstandardised features as `linear-raw`, a reference whose lead comes from the features' scale: see "
        "docs/concepts.md; `knn`; "
        "`logme`; `hscore`, with Ledoit-Wolf shrinkage) and, under evaluation in `proxies.py`, the original "
        "H-score (`hscore-pinv`), GBC (Pándy et al., CVPR 2022), SFDA (Shao et al., ECCV 2022; `sfda-lw` with "
        "Ledoit-Wolf shrinkage instead of the authors' adaptive one) and NCTI (Wang et al., ICCV 2023).",
        "",
        "Regret is in accuracy points below the best candidate's mean (a random pick's expected regret beside "
        "it); the weighted tau's ± is its sd over the seeds' accuracies taken one at a time (how far two scorers "
        "must differ to be told apart). `it1` scores are the first halving iteration's; distinct is how many "
        "different scores it gave (1: constant). The noise floor is the ground truth's seed-vs-seed Kendall "
        "tau, the fraction of candidate pairs whose mean accuracies differ by more than twice the standard error "
        "of the difference (separable pairs; the tau in brackets is over those pairs alone), and the mean "
        "standard error per candidate. Schedule `paper` is the paper's; a number is "
        "`min_items_per_class` (the first iteration holds that many items of every class); search seconds are "
        "the halving search's, feature cache off, warm block store. Figure: `ranking_quality.png`.",
        "",
        "| target | scorer | schedule | regret | random | weighted tau (all data) | tau (separable pairs) | Pearson "
        "| weighted tau, iteration 1 | distinct it1 | tie iterations | seed-vs-seed tau | separable pairs | SE (pts) "
        "| search s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *table,
        "",
        *summary,
    ]


def _fine_tune_lines(out: Path) -> list[str]:
    targets = {r["target"] for r in read_rows(out / "ranking_quality.csv")}
    wtau = {t: v for t, v in fine_tune_wtau(out).items() if t in targets}
    if not wtau:
        return []
    per_target = ", ".join(f"{t} {v:.2f}" for t, v in sorted(wtau.items()))
    return [
        "For scale, fine-tuning itself scored like a scorer (the mean accuracy of the other ground-truth seeds, "
        f"against each seed's in turn) reaches a weighted tau of {sum(wtau.values()) / len(wtau):.3f} over the "
        f"targets ({per_target}). Where it is low, the candidates fine-tune too alike for any scorer to order "
        "them reliably on this yardstick.",
        "",
    ]


def plot_ranking(out: Path) -> None:
    rows = read_rows(out / "ranking_scores.csv")
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(r["target"] for r in rows))
    scorers = list(dict.fromkeys(r["scorer"] for r in rows))
    fig, axes = plt.subplots(len(targets), len(scorers), figsize=(2.6 * len(scorers), 2.4 * len(targets)),
                             squeeze=False)  # fmt: skip
    for i, target in enumerate(targets):
        for j, scorer in enumerate(scorers):
            ax = axes[i][j]
            sel = [r for r in rows if r["target"] == target and r["scorer"] == scorer]
            for r in sel:
                picked = r["picked"] == "True"
                ax.errorbar(float(r["score_all"]), float(r["accuracy_mean"]), yerr=float(r["accuracy_se"] or 0),
                            fmt="o", ms=5 if picked else 3, color="tab:red" if picked else "tab:blue")  # fmt: skip
            ax.set_title(f"{target} · {scorer}", fontsize=8)
            ax.tick_params(labelsize=6)
            if j == 0:
                ax.set_ylabel("fine-tuned accuracy (%)", fontsize=7)
            if i == len(targets) - 1:
                ax.set_xlabel("proxy score (all data)", fontsize=7)
    fig.suptitle("Proxy score against fine-tuned accuracy (red: the search's pick)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "ranking_quality.png", dpi=100)
    plt.close(fig)
