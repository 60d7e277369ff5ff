"""The ground truth: every candidate fully fine-tuned on every target, over 3 seeds, by one tuned recipe.

The learning rate is tuned once per modality, on the target's own training items (4/5 train, 1/5 validation),
for the base model, from `LR_GRID`; the test items never take part. Every row is appended as it is measured,
so an interrupted run resumes where it stopped; each modality has its own tables, so the two can be built by
two processes at once (`--modality image` and `--modality text`). Every row names the draw of the target's items
(`data`) and the recipe (`recipe`) it was measured by: the build drops the rows of another draw or recipe, and
the search side refuses them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from alsatian_hf.candidates.processors import timm_processor

from .._tables import Table, read_rows
from .finetune import SEED_OFFSET, Recipe, fine_tune_and_test, prepare
from .tasks import FULL, TARGETS, Profile, items_digest, target_datasets
from .zoo import ZOOS, load_candidate, org_of, write_zoo_table


# Text keeps transformers' own head, drawn N(0, 0.02): already small, and its seeds agree (tau 0.87).
GT_RECIPES = {
    "image": Recipe(lr=0.0, epochs=6, batch_size=32, zero_head=True),
    "text": Recipe(lr=0.0, epochs=3, batch_size=16),
}
LR_GRID = {"image": (1e-3, 3e-3, 1e-2), "text": (5e-5, 2e-4)}
TUNE_TARGET = {"image": "fashion-mnist", "text": "news-sci"}


@dataclass(kw_only=True)
class TuningRow:
    modality: str
    target: str
    model: str
    lr: float
    val_accuracy: float
    seconds: float


@dataclass(kw_only=True)
class TruthRow:
    target: str
    model: str
    seed: int
    lr: float
    epochs: int
    batch_size: int
    recipe: str  # `recipe_digest` of the whole recipe it was measured by (the fields above, and the rest)
    test_items: int
    data: str  # `tasks.items_digest` of the target's (train, test): the draw it was measured on
    accuracy: float
    seconds: float


def tuned_recipe(hub_root: Path, out: Path, modality: str, profile: Profile = FULL, log=print) -> Recipe:
    """The modality's recipe with the learning rate that did best on validation items (tuned on first use)."""
    table = Table(out / f"tuning_{modality}.csv", TuningRow)
    org = org_of(modality, profile)
    target = TUNE_TARGET[modality] if TUNE_TARGET[modality] in profile.targets else profile.targets[0]
    base = ZOOS[org][0].name
    recipe = GT_RECIPES[modality]
    recipe = replace(recipe, epochs=profile.epochs or recipe.epochs)
    train_ds, _ = target_datasets(target, profile=profile)
    n_val = len(train_ds) // 5
    split = train_ds.train_test_split(test_size=n_val, seed=0, stratify_by_column="label")
    for lr in LR_GRID[modality]:
        if table.has(modality=modality, lr=lr):
            continue
        model, tok = load_candidate(hub_root / org / base, TARGETS[target].num_classes)
        tr, va = prepare(model, split["train"], tok), prepare(model, split["test"], tok)
        acc, seconds = fine_tune_and_test(
            model, tr, torch.tensor(split["train"]["label"]), va, torch.tensor(split["test"]["label"]),
            replace(recipe, lr=lr), SEED_OFFSET,
        )  # fmt: skip
        table.add(TuningRow(modality=modality, target=target, model=f"{org}/{base}", lr=lr, val_accuracy=acc,
                            seconds=round(seconds, 1)))  # fmt: skip
        log(f"  tune {modality} lr={lr:g}: validation accuracy {acc:.4f} ({seconds:.0f}s)")
    return measured_recipe(out, modality, profile)


def measured_recipe(out: Path, modality: str, profile: Profile = FULL) -> Recipe | None:
    """The recipe the build measures by: the modality's, with the learning rate that did best on validation
    items (None before the tuning ran)."""
    rows = [r for r in read_rows(out / f"tuning_{modality}.csv") if r["modality"] == modality]
    if not rows:
        return None
    recipe = GT_RECIPES[modality]
    best = max(rows, key=lambda r: (float(r["val_accuracy"]), -float(r["lr"])))
    return replace(recipe, lr=float(best["lr"]), epochs=profile.epochs or recipe.epochs)


def recipe_digest(recipe: Recipe) -> str:
    return hashlib.sha256(json.dumps(asdict(recipe), sort_keys=True).encode()).hexdigest()[:16]


def record_zoo(out: Path, modality: str, org: str, rows: list[dict], log=print) -> None:
    """Writes the zoo's table, first dropping the ground truth of every candidate whose weights differ from
    those on record (or have none on record): a rebuilt zoo is measured anew, never mixed with an old one's."""
    from filelock import FileLock

    table = Table(out / f"ground_truth_{modality}.csv", TruthRow)
    with FileLock(str(table.path) + ".lock"):
        recorded = {r["model"]: r.get("weights") for r in read_rows(out / f"zoo_{org}.csv")}
        changed = {r["model"] for r in rows if recorded.get(r["model"]) != r["weights"]}
        table.refresh()
        stale = [r for r in table.rows if r["model"] in changed]
        if stale:
            table.rewrite([r for r in table.rows if r["model"] not in changed])
            log(f"  dropped {len(stale)} ground-truth runs of {len({r['model'] for r in stale})} candidates whose "
                "weights are not the ones they were measured on")  # fmt: skip
        write_zoo_table(out, org, rows)


def ground_truth(
    hub_root: Path, out: Path, modality: str, profile: Profile = FULL, *, reverse: bool = False, log=print
) -> None:
    """Appends the missing (target, model, seed) rows; seed-major, so a partial run has whole seeds.

    Several processes may build one modality at once: one in order and one with `reverse` meet in the middle.
    A process claims each run by a lock file first, and checks the table on disk, so no run is done twice.
    """
    table = Table(out / f"ground_truth_{modality}.csv", TruthRow)
    claims = hub_root.parent / f"claims-{modality}"  # the work folder: scratch, not results
    claims.mkdir(parents=True, exist_ok=True)
    recipe = tuned_recipe(hub_root, out, modality, profile, log)
    org = org_of(modality, profile)
    targets = [t for t in TARGETS.values() if t.modality == modality and t.name in profile.targets]
    order = list(itertools.product(range(profile.seeds), targets))
    data = {t.name: target_datasets(t.name, profile=profile) for t in targets}  # target -> (train, test)
    digests = {name: items_digest(*ds) for name, ds in data.items()}
    recipes = dict.fromkeys(data, recipe_digest(recipe))
    drop_stale_runs(table, digests, recipes, log)
    prepared: dict[tuple[str, str], tuple] = {}  # (target, preprocessing) -> inputs, shared by seeds and models
    for seed, target in reversed(order) if reverse else order:
        for m in reversed(ZOOS[org]) if reverse else ZOOS[org]:
            model_id = f"{org}/{m.name}"
            with _claim(claims / f"{target.name}.{m.name}.{seed}.lock") as mine:
                if not mine:
                    continue  # another process is running it
                table.refresh()
                if table.has(target=target.name, model=model_id, seed=seed):
                    continue
                train_ds, test_ds = data[target.name]
                model, tok = load_candidate(hub_root / org / m.name, target.num_classes)
                # EfficientNet-Lites share one preprocessing config, MiniLM's fine-tunes one tokenizer
                key = (target.name, timm_processor(model, None).key if tok is None else "tokenizer")
                if key not in prepared:
                    prepared[key] = (prepare(model, train_ds, tok), prepare(model, test_ds, tok))
                tr, te = prepared[key]
                acc, seconds = fine_tune_and_test(
                    model, tr, torch.tensor(train_ds["label"]), te, torch.tensor(test_ds["label"]),
                    recipe, SEED_OFFSET + seed,
                )  # fmt: skip
                row = TruthRow(target=target.name, model=model_id, seed=seed, lr=recipe.lr, epochs=recipe.epochs,
                               batch_size=recipe.batch_size, recipe=recipes[target.name], test_items=len(test_ds),
                               data=digests[target.name], accuracy=round(acc, 5), seconds=round(seconds, 1))  # fmt: skip
                table.add_shared(row)
                log(f"  truth {target.name} seed {seed} {m.name}: {acc:.4f} ({seconds:.0f}s)")


def stale_runs(rows: list[dict], draws: dict[str, str], recipes: dict[str, str | None]) -> list[dict]:
    """The rows of these targets measured on another draw of their items than today's, or by another recipe
    (a recipe of None is not checked); a row without them on record is stale."""

    def stale(r: dict) -> bool:
        recipe = recipes.get(r["target"])
        return r.get("data") != draws[r["target"]] or (recipe is not None and r.get("recipe") != recipe)

    return [r for r in rows if r["target"] in draws and stale(r)]


def drop_stale_runs(table: Table, draws: dict[str, str], recipes: dict[str, str | None], log=print) -> None:
    """Drops the ground truth of a target whose items or recipe changed since it was measured: it is measured
    anew."""
    from filelock import FileLock

    with FileLock(str(table.path) + ".lock"):
        table.refresh()
        stale = stale_runs(table.rows, draws, recipes)
        if stale:
            table.rewrite([r for r in table.rows if r not in stale])
            log(f"  dropped {len(stale)} ground-truth runs of {sorted({r['target'] for r in stale})}: measured on "
                "another draw of the target's items, or by another recipe, than today's")  # fmt: skip


@contextmanager
def _claim(path: Path):
    """True while this process holds the run's lock file; False at once when another process holds it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
        path.unlink(missing_ok=True)  # the run's row is in the table by now, so no one needs the file again


def mean_accuracy(rows: list[dict], target: str) -> dict[str, tuple[float, float, int]]:
    """model -> (mean accuracy in points, its standard error, seeds) on the target."""
    by: dict[str, list[float]] = {}
    for r in rows:
        if r["target"] == target:
            by.setdefault(r["model"], []).append(100 * float(r["accuracy"]))
    out = {}
    for model, accs in by.items():
        a = np.array(accs)
        out[model] = (float(a.mean()), float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan"), len(a))
    return out
