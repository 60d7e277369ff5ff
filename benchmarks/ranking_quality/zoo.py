"""The zoo: real ImageNet and sentence-embedding bases, and fine-tunes of them trained here, as Hub repos.

Each fine-tune starts from its parent's weights, gets a fresh head for its source task, keeps its lowest
`frozen` fraction of blocks fixed (bit-identical to the parent's, so the search shares them) and trains the
rest with `ZOO_RECIPES`. A from-scratch model (a source, no parent) starts from random weights instead: a
candidate without ImageNet. Repos are written under `<hub root>/<org>/<name>` with `base_model` lineage; a repo
whose README.md exists is done (the card is written last), so an interrupted build resumes. Training is not
bit-reproducible across machines, so every row carries a digest of the repo's weights (`weights_digest`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .finetune import Recipe, freeze, prepare, train
from .tasks import FULL, SOURCES, Profile, source_dataset


IMAGE_ORG, TEXT_ORG = "rq-image", "rq-text"
# The search and the ground truth see 32 px images: Fashion-MNIST is 28 px and digits 8 px, and a CPU trains
# EfficientNet at 32 px about 2x faster than at 64 (channels-last, 2 threads: 183 vs 89 images/s).
IMAGE_CFG = {"input_size": (3, 32, 32), "crop_pct": 1.0}
ZOO_RECIPES = {"image": Recipe(lr=1e-3, epochs=3, batch_size=64), "text": Recipe(lr=1e-4, epochs=3, batch_size=16)}


@dataclass(frozen=True)
class ZooModel:
    name: str  # the repo's name in its org
    family: str  # lite0, lite1, lite2 or minilm
    parent: str | None = None  # the repo it was fine-tuned from; None for a base or a from-scratch model
    source: str | None = None  # its source task (`tasks.SOURCES`)
    frozen: float = 0.0  # fraction of its blocks left as the parent's
    seed: int = 0
    zero_head: bool = False  # its own training started the fresh head at zero (another team's recipe)

    @property
    def modality(self) -> str:
        return "text" if self.family == "minilm" else "image"


def _ft(family: str, source: str, frozen: float, seed: int, zero_head: bool = False) -> ZooModel:
    name = f"{family}-{source.split('-', 1)[1]}-f{round(frozen * 100)}" + ("-zh" if zero_head else "")
    return ZooModel(name, family, f"{family}-base", source, frozen, seed, zero_head)


def _scratch(family: str, source: str, seed: int) -> ZooModel:
    return ZooModel(f"{family}-scratch-{source.split('-', 1)[1]}", family, source=source, seed=seed)


IMAGE_ZOO = [
    ZooModel("lite0-base", "lite0"),
    ZooModel("lite1-base", "lite1"),
    ZooModel("lite2-base", "lite2"),
    _ft("lite0", "fmnist-upper", 0.0, 1),
    _ft("lite0", "fmnist-other", 0.5, 2),
    _ft("lite0", "fmnist-random", 0.0, 3),
    _ft("lite0", "fmnist-random", 0.75, 4),
    _ft("lite1", "fmnist-upper", 0.5, 5),
    _ft("lite1", "fmnist-other", 0.0, 6),
    _ft("lite1", "fmnist-random", 0.5, 7),
    _ft("lite2", "fmnist-upper", 0.75, 8),
    _ft("lite2", "fmnist-random", 0.0, 9),
    # a wider true spread: in-domain fine-tunes above the rest, models without ImageNet below them
    _ft("lite0", "fmnist-all", 0.0, 15),
    _ft("lite1", "fmnist-all", 0.75, 16),
    _scratch("lite0", "fmnist-all", 17),
    # a ladder of in-domain data, recipe and architecture above them, and of from-scratch training below
    _ft("lite0", "fmnist-all", 0.0, 18, zero_head=True),
    _ft("lite2", "fmnist-all", 0.0, 19),
    _ft("lite0", "fmnist-all3k", 0.0, 20),
    _scratch("lite1", "fmnist-all", 22),
    _scratch("lite0", "fmnist-all3k", 21),
    _scratch("lite0", "fmnist-random", 23),
]
TEXT_ZOO = [
    ZooModel("minilm-base", "minilm"),
    _ft("minilm", "news-comp", 0.0, 11),
    _ft("minilm", "news-rec", 0.5, 12),
    _ft("minilm", "news-random", 0.0, 13),
    _ft("minilm", "news-comp", 0.5, 14),
    # an in-domain fine-tune for each text target, and another poor source
    _ft("minilm", "news-sci", 0.0, 24),
    _ft("minilm", "news-rec", 0.0, 25),
    _ft("minilm", "news-random", 0.5, 26),
]
TINY_ORG = "rq-tiny"
TINY_ZOO = [
    ZooModel("lite0-base", "lite0"),
    _ft("lite0", "fmnist-upper", 0.0, 1),
    _ft("lite0", "fmnist-random", 0.75, 4),
    _scratch("lite0", "fmnist-all", 17),
]
ZOOS = {IMAGE_ORG: IMAGE_ZOO, TEXT_ORG: TEXT_ZOO, TINY_ORG: TINY_ZOO}


def org_of(modality: str, profile: Profile = FULL) -> str:
    if profile.name == "tiny":
        return TINY_ORG
    return TEXT_ORG if modality == "text" else IMAGE_ORG


def base_model(family: str, pretrained: bool = True) -> tuple[nn.Module, object]:
    """(model, tokenizer or None) with the real pretrained weights, or random ones."""
    if family == "minilm":
        from alsatian_hf.zoo.minilm import minilm_source

        if not pretrained:
            raise ValueError("the zoo trains from scratch only its image models; give a MiniLM model a parent")

        source = minilm_source(num_labels=4)
        return source.build(), source.processor
    from alsatian_hf.zoo import TimmSource
    from alsatian_hf.zoo.efficientnet_lite import efficientnet_lite_source, timm_architecture

    if not pretrained:
        arch = timm_architecture(int(family[-1]))
        return TimmSource(arch, model_args={"pretrained_cfg_overlay": IMAGE_CFG}).build(), None
    source = efficientnet_lite_source(int(family[-1]), num_classes=1000, pretrained_cfg_overlay=IMAGE_CFG)
    return source.build(), None


def load_candidate(folder: Path, num_classes: int) -> tuple[nn.Module, object]:
    """A zoo repo's backbone from its safetensors with a fresh `num_classes` head, and its tokenizer (or None)."""
    config = json.loads((folder / "config.json").read_text())
    if "architecture" in config:  # timm
        import timm
        from safetensors.torch import load_file

        model = timm.create_model(
            config["architecture"], num_classes=num_classes, pretrained_cfg_overlay=config["pretrained_cfg"]
        )
        state = {k: v for k, v in load_file(folder / "model.safetensors").items() if not k.startswith("classifier.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("classifier.") for k in missing):
            raise RuntimeError(f"{folder}: weights do not fit {config['architecture']}: {missing} {unexpected}")
        return model, None
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the fresh head is meant: no "newly initialised" warning
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, num_labels=num_classes, ignore_mismatched_sizes=True
        )
    finally:
        logging.set_verbosity(verbosity)
    return model, AutoTokenizer.from_pretrained(folder)


def frozen_keys(model: nn.Module, fraction: float) -> list[str]:
    """The parameter names of the lowest `fraction` of the model's blocks, as the adapters split it."""
    from alsatian_hf.adapters import split_model

    split = split_model(model)
    blocks = [b for b in split.blocks if b.keys]
    return [b.model_key(k) for b in blocks[: round(fraction * len(blocks))] for k in b.keys]


def build_zoo(hub_root: Path, org: str, profile: Profile = FULL, *, reverse: bool = False, log=print) -> list[dict]:
    """Writes the org's repos that are missing; returns one row per model (lineage, source, source accuracy).

    Two processes may build one org at once, one of them `reverse`: each model is built under its own file lock,
    so they meet in the middle and neither builds a model twice. A model's parent is built first (or waited for).
    """
    from filelock import FileLock

    by_name = {m.name: m for m in ZOOS[org]}
    rows: dict[str, dict] = {}

    def ensure(m: ZooModel) -> None:
        if m.name in rows:
            return
        folder = hub_root / org / m.name
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):  # locks nest child -> parent only, so two builders never deadlock
            row = _built_row(folder)
            if row is None:
                if m.parent:
                    ensure(by_name[m.parent])
                row = _build(hub_root, org, m, profile, log)
        rows[m.name] = row

    for m in reversed(ZOOS[org]) if reverse else ZOOS[org]:
        ensure(m)
    return [{**rows[m.name], "weights": weights_digest(hub_root / org / m.name)} for m in ZOOS[org]]


def weights_digest(folder: Path) -> str:
    """The repo's weights, as a short sha256 of its safetensors: what the ground truth of a candidate was
    measured on (training here is not bit-reproducible across machines, so a rebuilt zoo differs)."""
    import hashlib

    with open(folder / "model.safetensors", "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def _built_row(folder: Path) -> dict | None:
    """The zoo row of a finished repo (its card is written last), or None."""
    row_path = folder / "zoo_row.json"
    if (folder / "README.md").is_file() and row_path.is_file():
        return json.loads(row_path.read_text())
    return None


def _build(hub_root: Path, org: str, m: ZooModel, profile: Profile, log) -> dict:
    from .finetune import accuracy

    folder = hub_root / org / m.name
    source_accuracy = None
    torch.manual_seed(m.seed)  # fresh heads
    if m.source is None:
        model, tok = base_model(m.family)
    else:
        task = SOURCES[m.source]
        if m.parent is None:  # from scratch
            model, tok = base_model(m.family, pretrained=False)
            model.reset_classifier(task.num_classes)
        else:
            model, tok = load_candidate(hub_root / org / m.parent, task.num_classes)
        ds = source_dataset(m.source, seed=m.seed, profile=profile)
        inputs, labels = prepare(model, ds, tok), torch.tensor(ds["label"])
        freeze(model, frozen_keys(model, m.frozen))
        recipe = replace(ZOO_RECIPES[m.modality], zero_head=m.zero_head)
        train(model, inputs, labels, replace(recipe, epochs=profile.epochs or recipe.epochs), seed=m.seed)
        source_accuracy = accuracy(model, inputs, labels)
    _save(model, tok, folder)
    row = {"model": f"{org}/{m.name}", "family": m.family, "parent": f"{org}/{m.parent}" if m.parent else "",
           "source": m.source or "", "frozen": m.frozen, "seed": m.seed, "zero_head": m.zero_head,
           "source_train_accuracy": source_accuracy}  # fmt: skip
    (folder / "zoo_row.json").write_text(json.dumps(row))
    _write_card(folder, org, m)
    log(f"  built {org}/{m.name}" + (f": source train accuracy {source_accuracy:.3f}" if m.source else ""))
    return row


def _save(model: nn.Module, tokenizer, folder: Path) -> None:
    from alsatian_hf.zoo import TimmSource, TransformersSource

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.to("cpu").state_dict().items()}
    if tokenizer is None:
        TimmSource(model.pretrained_cfg["architecture"]).save(model, state, folder, None)
    else:
        TransformersSource(processor=tokenizer, pipeline_tag="text-classification").save(model, state, folder, None)


def _write_card(folder: Path, org: str, m: ZooModel) -> None:
    from alsatian_hf.zoo.builder import write_card

    meta = {
        "library_name": "transformers" if m.modality == "text" else "timm",
        "pipeline_tag": "text-classification" if m.modality == "text" else "image-classification",
        "license": "apache-2.0",
        "tags": ["alsatian-ranking-quality"],
    }
    if m.parent:
        meta["base_model"] = f"{org}/{m.parent}"
    if m.parent:
        what = f"Fine-tuned from {org}/{m.parent} on `{m.source}` with its lowest {round(m.frozen * 100)}% of blocks frozen"
        what += ", its new head started at zero." if m.zero_head else "."
    elif m.source:
        what = f"{m.family} trained from random weights on `{m.source}`."
    else:
        what = f"The real pretrained {m.family} (ImageNet for EfficientNet-Lite, all-MiniLM-L6-v2 for MiniLM)."
    write_card(folder, meta, f"{org}/{m.name}", what)


def write_zoo_table(out: Path, org: str, rows: list[dict]) -> None:
    """`zoo_<org>.csv`: every candidate's lineage and source task, merged by model id."""
    import csv

    path = out / f"zoo_{org}.csv"
    merged: dict[str, dict] = {}
    if path.is_file():
        with open(path, newline="") as f:
            merged = {r["model"]: r for r in csv.DictReader(f)}
    merged.update({r["model"]: r for r in rows})
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in merged.values())
