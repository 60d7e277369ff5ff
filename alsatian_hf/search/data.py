"""The data store: column detection, checks, and preprocessing once per distinct processor config.

A *processor* turns dataset items into a model's input tensors: timm's `resolve_data_config` +
`create_transform`, transformers' `AutoImageProcessor`, or `AutoTokenizer` at a fixed `max_length`. Its
config is hashed into an `input_key`; candidates with equal keys share prepared inputs (and a task-tree root).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .._digest_cache import DigestCache
from ..errors import CandidateSkipped, DatasetError

logger = logging.getLogger("alsatian_hf")


@dataclass
class Columns:
    kind: str  # "image" or "text"
    input: str
    label: str


def detect_columns(dataset, *, image_column: str | None = None, text_column: str | None = None,
                   label_column: str | None = None) -> Columns:
    """Find the input and label columns by feature type, or check the ones given.

    Raises:
        DatasetError: naming the problem and listing the columns.
    """
    from datasets import ClassLabel, Image, Value

    features = dataset.features
    names = list(features)
    if label_column is None:
        labels = [n for n, f in features.items() if isinstance(f, ClassLabel)]
        label_column = labels[0] if len(labels) == 1 else ("label" if "label" in features else None)
        if label_column is None:
            raise DatasetError(f"No label column found (looked for one ClassLabel column or `label`); the dataset "
                               f"has columns {names}. Pass `label_column=...`.")
    elif label_column not in features:
        raise DatasetError(f"Label column `{label_column}` is not in the dataset; its columns are {names}.")
    if image_column is not None and text_column is not None:
        raise DatasetError("Pass either `image_column` or `text_column`, not both.")
    if image_column is not None or text_column is not None:
        col = image_column or text_column
        if col not in features:
            raise DatasetError(f"Column `{col}` is not in the dataset; its columns are {names}.")
        return Columns("image" if image_column else "text", col, label_column)
    images = [n for n, f in features.items() if isinstance(f, Image) and n != label_column]
    texts = [n for n, f in features.items() if isinstance(f, Value) and f.dtype in ("string", "large_string")
             and n != label_column]
    if len(images) + len(texts) != 1:
        found = images + texts
        raise DatasetError(f"Cannot tell which column is the input: found {found or 'no image or text column'} among "
                           f"{names}. Pass `image_column=...` or `text_column=...`.")
    return Columns("image", images[0], label_column) if images else Columns("text", texts[0], label_column)


def labels_of(dataset, column: str) -> list[int]:
    """Integer labels; string labels are mapped in sorted order."""
    values = dataset[column]
    if values and not isinstance(values[0], int):
        names = sorted(set(values))
        return [names.index(v) for v in values]
    return [int(v) for v in values]


def check_labels(labels: list[int], *, name: str = "train_dataset") -> None:
    """Raises DatasetError for one class, or fewer than 2 items per class on average."""
    classes = set(labels)
    if len(classes) < 2:
        raise DatasetError(f"`{name}` has {len(classes)} class; a search needs at least 2 labelled classes.")
    if len(labels) < 2 * len(classes):
        raise DatasetError(f"`{name}` has {len(labels)} items for {len(classes)} classes; it needs at least "
                           f"{2 * len(classes)} (2 per class) to hold out a test split.")


@dataclass
class Processor:
    key: str  # the input key: a hash of the processor config
    kind: str  # "image" or "text"
    fn: Callable[[list[Any]], dict[str, torch.Tensor]]
    description: str = ""


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Tokenizers and image processors by the digest of their files: loading one tokenizer per candidate was most
# of a 35-model text search's set-up (35 x ~50 ms).
_LOADED = DigestCache()


def timm_processor(model, image_size: int | None) -> Processor:
    from timm.data import create_transform, resolve_data_config

    cfg = resolve_data_config({}, model=model)
    if image_size is not None:
        cfg = {**cfg, "input_size": (3, image_size, image_size), "crop_pct": 1.0}
    transform = create_transform(**cfg, is_training=False)

    def fn(images):
        return {"pixel_values": torch.stack([transform(im.convert("RGB")) for im in images])}

    return Processor(_key(["timm", cfg]), "image", fn, f"timm {cfg['input_size']}")


def image_processor(config_dir: Path, image_size: int | None) -> Processor:
    from transformers import AutoImageProcessor

    path = config_dir / "preprocessor_config.json"
    if not path.is_file():
        raise CandidateSkipped(str(config_dir), "no preprocessor_config.json: the image preprocessing is unknown.")
    kwargs: dict[str, Any] = {}
    if image_size is not None:
        kwargs["size"] = {"height": image_size, "width": image_size}
        kwargs["do_center_crop"] = False
    spec = json.loads(path.read_text())
    spec.pop("processor_class", None)
    proc = _LOADED.get("image-" + _key([spec, _model_type(config_dir)]),
                       lambda: AutoImageProcessor.from_pretrained(config_dir))

    def fn(images):
        return {"pixel_values": proc(images=[im.convert("RGB") for im in images], return_tensors="pt",
                                     **kwargs)["pixel_values"]}

    return Processor(_key(["hf-image", spec, kwargs]), "image", fn, type(proc).__name__)


def _model_type(config_dir: Path) -> str:
    """What else Auto* classes read: config.json's model_type picks the class when the processor files don't."""
    path = config_dir / "config.json"
    return str(json.loads(path.read_text()).get("model_type", "")) if path.is_file() else ""


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "merges.txt", "vocab.json",
                   "special_tokens_map.json", "spiece.model", "sentencepiece.bpe.model")


def text_processor(config_dir: Path, max_length: int) -> Processor:
    from transformers import AutoTokenizer

    files = [config_dir / f for f in TOKENIZER_FILES if (config_dir / f).is_file()]
    if not files:
        raise CandidateSkipped(str(config_dir), "no tokenizer files: the text preprocessing is unknown.")
    digest = hashlib.sha256(_model_type(config_dir).encode())
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    tok = _LOADED.get("text-" + digest.hexdigest(), lambda: AutoTokenizer.from_pretrained(config_dir))

    def fn(texts):
        enc = tok(list(texts), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    return Processor(f"text-{digest.hexdigest()[:16]}-{max_length}", "text", fn, type(tok).__name__)


@dataclass
class PreparedData:
    """Prepared inputs per (input key, item), computed on first use: 'prepare data' happens once per processor."""

    dataset: Any
    column: str
    num_workers: int = 0  # >0: preprocess slices of a batch in that many threads
    processors: dict[str, Processor] = field(default_factory=dict)
    _rows: dict[str, dict[int, dict[str, torch.Tensor]]] = field(default_factory=dict)

    def add(self, processor: Processor) -> str:
        self.processors.setdefault(processor.key, processor)
        return processor.key

    def __call__(self, input_key: str, items: tuple[int, ...]) -> dict[str, torch.Tensor]:
        rows = self._rows.setdefault(input_key, {})
        missing = [i for i in items if i not in rows]
        if missing:
            fn = self.processors[input_key].fn
            values = list(self.dataset.select(missing)[self.column])
            if self.num_workers > 0 and len(values) > 1:
                from concurrent.futures import ThreadPoolExecutor

                step = -(-len(values) // self.num_workers)
                with ThreadPoolExecutor(self.num_workers) as pool:
                    parts = list(pool.map(fn, [values[i: i + step] for i in range(0, len(values), step)]))
                batch = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
            else:
                batch = fn(values)
            for j, item in enumerate(missing):
                rows[item] = {k: v[j] for k, v in batch.items()}
        keys = rows[items[0]].keys()
        return {k: torch.stack([rows[i][k] for i in items]) for k in keys}

    def drop(self) -> None:
        self._rows.clear()
