"""The target dataset as a search reads it: one map-style split, its input and label columns, its rows whatever
their format, its labels as classes 0..K-1. Everything here is checked before any candidate is opened, so bad
input costs no download and its error names the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..candidates.processors import Modality_T
from ..errors import DatasetError


if TYPE_CHECKING:
    import PIL.Image


@dataclass
class Columns:
    kind: Modality_T
    input: str
    label: str
    pair: str | None = None  # the second text of a sentence pair (NLI, paraphrase), tokenized as `text_pair`

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input,) if self.pair is None else (self.input, self.pair)


def check_dataset(dataset, *, name: str = "train_dataset") -> None:
    """Raises DatasetError unless `dataset` is a map-style `datasets.Dataset`: halving reads items by index, and
    reads them again in later iterations, which a split dict, a stream or a DataFrame cannot do as it is."""
    import datasets

    if isinstance(dataset, datasets.Dataset):
        return
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        splits = list(dataset)
        raise DatasetError(
            f"`{name}` is a {type(dataset).__name__} with splits {splits}; pass one split, e.g. "
            f"`{name}=ds[{splits[0] if splits else 'train'!r}]` (and another as `eval_dataset` to fix D_test)."
        )
    if isinstance(dataset, datasets.IterableDataset):
        raise DatasetError(
            f"`{name}` is an IterableDataset (streamed); a search reads its items by index, several times. "
            f"Materialise the items to search on: `datasets.Dataset.from_generator(lambda: (yield from "
            f"ds.take(2000)), features=ds.features)`."
        )
    fix = "datasets.Dataset.from_pandas(df)" if type(dataset).__name__ == "DataFrame" else "datasets.Dataset.from_dict"
    raise DatasetError(
        f"`{name}` must be a `datasets.Dataset`, got {type(dataset).__name__}; convert it with `{fix}`."
    )


def check_has_columns(eval_dataset, columns: Columns) -> None:
    """Raises DatasetError unless `eval_dataset` has the input and label columns found in `train_dataset`."""
    absent = [c for c in (*columns.inputs, columns.label) if c not in eval_dataset.features]
    if absent:
        raise DatasetError(
            f"`eval_dataset` lacks {absent}, which `train_dataset` searches on; its columns are "
            f"{list(eval_dataset.features)}. Rename them (`ds.rename_column`) to match."
        )


def plain_rows(dataset):
    """`dataset` as Python rows, which a search reads (PIL images, strings), whatever `set_format` a training
    script left on it ("torch", "numpy", some columns only): formats present the same data. A custom transform
    (`with_transform`) is the user's own code and stays; `check_transformed` checks what it returns."""
    fmt = dataset.format
    if fmt["type"] == "custom" or (fmt["type"] is None and fmt["columns"] in (None, list(dataset.features))):
        return dataset
    return dataset.with_format(None)


def check_transformed(dataset, columns: Columns, *, name: str = "train_dataset") -> None:
    """Raises DatasetError when a custom transform turns the input column into something that is not what
    each candidate's own preprocessing starts from (images, or texts)."""
    import PIL.Image

    if dataset.format["type"] != "custom" or not len(dataset):
        return
    wanted = (PIL.Image.Image,) if columns.kind == "image" else (str,)
    if columns.kind == "image" and holds_arrays(dataset.features[columns.input]):
        wanted = (list, np.ndarray, torch.Tensor)
    row = dataset[0]
    for column in columns.inputs:
        if not isinstance(row[column], wanted):
            raise DatasetError(
                f"`{name}`'s transform (`with_transform`/`set_transform`) gives `{column}` as "
                f"{type(row[column]).__name__}; every candidate preprocesses the raw {columns.kind}s itself, so "
                f"pass the dataset without it: `ds.with_format(None)`."
            )


def detect_columns(
    dataset, *, image_column: str | None = None, text_column: str | Sequence[str] | None = None,
    label_column: str | None = None,
) -> Columns:  # fmt: skip
    """Find the input and label columns by feature type, or check the ones given. `text_column` may name two
    columns: a sentence pair (premise and hypothesis, two questions), tokenized together as `text_pair`.

    Raises:
        DatasetError: naming the problem and listing the columns.
    """
    from datasets import ClassLabel, Image, Value

    features = dataset.features
    names = list(features)
    if label_column is None:
        labels = [n for n, f in features.items() if isinstance(f, ClassLabel)]
        named = [n for n in ("label", "labels") if n in features]  # `labels`: what Trainer's datasets carry
        label_column = labels[0] if len(labels) == 1 else (named[0] if len(named) == 1 else None)
        if label_column is None:
            raise DatasetError(
                f"No label column found (looked for one ClassLabel column, or `label` or `labels`); the dataset "
                f"has columns {names}. Pass `label_column=...`."
            )
    elif label_column not in features:
        raise DatasetError(f"Label column `{label_column}` is not in the dataset; its columns are {names}.")
    if image_column is not None and text_column is not None:
        raise DatasetError("Pass either `image_column` or `text_column`, not both.")
    pair = None
    if text_column is not None and not isinstance(text_column, str):
        given = list(text_column)
        if len(given) not in (1, 2) or not all(isinstance(c, str) for c in given) or len(set(given)) < len(given):
            raise DatasetError(
                f"`text_column` is {text_column!r}; pass one column of texts, or two for sentence pairs, e.g. "
                "`text_column=('premise', 'hypothesis')`."
            )
        text_column, pair = given[0], (given[1] if len(given) == 2 else None)
    if image_column is not None or text_column is not None:
        for col in (image_column or text_column, *([pair] if pair else [])):
            if col not in features:
                raise DatasetError(f"Column `{col}` is not in the dataset; its columns are {names}.")
            if image_column is not None:
                check_image_column(dataset, col)
            elif not (isinstance(features[col], Value) and features[col].dtype in ("string", "large_string")):
                raise DatasetError(
                    f"Text column `{col}` holds {features[col]}, not strings; pass a column of texts as `text_column`."
                )
            if col == label_column:
                raise DatasetError(f"`{col}` is the label column; it cannot be an input too.")
        return Columns("image" if image_column else "text", image_column or text_column, label_column, pair)
    images = [n for n, f in features.items() if isinstance(f, Image) and n != label_column]
    texts = [
        n
        for n, f in features.items()
        if isinstance(f, Value) and f.dtype in ("string", "large_string") and n != label_column
    ]
    if len(images) + len(texts) != 1:
        found = images + texts
        pairs = f" (or `text_column=({texts[0]!r}, {texts[1]!r})` for sentence pairs)" if len(texts) == 2 else ""
        raise DatasetError(
            f"Cannot tell which column is the input: found {found or 'no image or text column'} among "
            f"{names}. Pass `image_column=...` or `text_column=...`{pairs}."
        )
    return Columns("image", images[0], label_column) if images else Columns("text", texts[0], label_column)


def holds_arrays(feature) -> bool:
    """Whether an image column holds pixel arrays (lists, `Array2D`/`Array3D`) rather than `datasets.Image`."""
    from datasets import Image

    return not isinstance(feature, Image)


def _leaf_dtype(feature) -> str | None:
    while hasattr(feature, "feature"):  # List, LargeList, Sequence: down to the values
        feature = feature.feature
    return getattr(feature, "dtype", None)


def check_image_column(dataset, column: str) -> None:
    """Raises DatasetError unless `column` holds images: `datasets.Image`, or integer pixel arrays in 0-255 of
    shape (H, W) or (H, W, C) with C in 1, 3, 4 (lists of Python ints arrive as int64), which the search turns
    into the images PIL makes of them. The first item's shape and range stand for all; each item's range is
    checked again as it is read."""
    feature = dataset.features[column]
    if not holds_arrays(feature):
        return
    dtype = _leaf_dtype(feature)
    if dtype in ("string", "large_string", "binary", "large_binary"):
        raise DatasetError(
            f"Image column `{column}` holds {feature}, not images. If they are image files (paths) or their bytes, "
            f"let `datasets` decode them: `ds.cast_column({column!r}, datasets.Image())`."
        )
    first = np.asarray(dataset[0][column]) if dtype in _PIXEL_DTYPES and len(dataset) else None
    shape = None if first is None else first.shape
    if first is None or not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4))):
        raise DatasetError(
            f"Image column `{column}` holds {feature}"
            + (f" of shape {shape}" if shape else "")
            + "; images must be a `datasets.Image` column or integer pixel arrays in 0-255 of shape (H, W) or "
            "(H, W, C) with C = 1, 3 or 4. Convert the pixels first, e.g. with "
            "`(pixels * 255).round().astype('uint8').transpose(1, 2, 0)` in a `ds.map`."
        )
    pixels_to_image(first)  # its range


_PIXEL_DTYPES = ("uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64")


def check_items(dataset, columns: Columns, *, name: str = "train_dataset") -> None:
    """Raises DatasetError when an item has no input or label (None) or a negative label (a ClassLabel's -1
    means "no label"), naming how many and how to drop them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = dataset.with_format("arrow")
    for column, what in [*((c, columns.kind) for c in columns.inputs), (columns.label, "label")]:
        missing = table[column].null_count
        if missing:
            raise DatasetError(
                f"`{name}` has {_items(missing)} with no {what} (None in `{column}`); every item needs one. Drop "
                f"them first: `ds.filter(lambda row: row[{column!r}] is not None)`."
            )
    labels = table[columns.label]
    if pa.types.is_integer(labels.type):
        negative = pc.filter(labels, pc.less(labels, 0))
        if len(negative):
            raise DatasetError(
                f"`{name}` has {_items(len(negative))} labelled {sorted(set(negative.to_pylist()))} in "
                f"`{columns.label}` (a ClassLabel's -1 means no label); every item needs a class. Drop them "
                f"first: `ds.filter(lambda row: row[{columns.label!r}] >= 0)`."
            )


def same_classes(eval_dataset, train_dataset, column: str):
    """`eval_dataset` with its ClassLabel ids renumbered by name to `train_dataset`'s. Casting one ClassLabel to
    another keeps the ids, so an eval split whose names are ordered otherwise (["dog", "cat"] against ["cat",
    "dog"]) had each of its labels read as another class.

    Raises:
        DatasetError: when the eval split has classes the train split lacks.
    """
    from datasets import ClassLabel

    train, held = train_dataset.features[column], eval_dataset.features[column]
    if not (isinstance(train, ClassLabel) and isinstance(held, ClassLabel)) or train.names == held.names:
        return eval_dataset
    unknown = sorted(set(held.names) - set(train.names))
    if unknown:
        raise DatasetError(
            f"`eval_dataset`'s `{column}` has classes {unknown} that `train_dataset`'s {train.names} lacks; give "
            f"both splits the same ClassLabel (`ds.cast_column({column!r}, ...)`) or drop those items."
        )
    return eval_dataset.align_labels_with_mapping({name: i for i, name in enumerate(train.names)}, column)


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def labels_of(dataset, column: str) -> list[int]:
    """Class indices 0..K-1 for the K classes present, in the labels' sorted order: integer labels that already
    are 0..K-1 stay as they are, others (strings, floats, ids with gaps such as 7, 1024, 90000) are mapped in
    sorted order. Scorers size their outputs by the largest index, so an id of 90000 would have given every
    probe 90001 classes. (`check_items` first: no None, no negatives.)"""
    # through Arrow in one call: iterating `dataset[column]` formats it row by row (37-92 ms for 2000 labels)
    values = dataset.with_format("arrow")[column].to_pylist()
    names = sorted(set(values))
    if names == list(range(len(names))):
        return [int(v) for v in values]
    index = {name: i for i, name in enumerate(names)}
    return [index[v] for v in values]


def check_labels(labels: list[int], *, name: str = "train_dataset") -> None:
    """Raises DatasetError for one class, or fewer than 2 items per class on average."""
    classes = set(labels)
    if len(classes) < 2:
        raise DatasetError(f"`{name}` has {len(classes)} class; a search needs at least 2 labelled classes.")
    if len(labels) < 2 * len(classes):
        raise DatasetError(
            f"`{name}` has {len(labels)} items for {len(classes)} classes; it needs at least "
            f"{2 * len(classes)} (2 per class) to hold out a test split."
        )


def pixels_to_image(pixels) -> "PIL.Image.Image":
    """An (H, W) or (H, W, C) array of 0-255 integers as the PIL image `datasets.Image` decodes its uint8 bytes
    to: L, RGB or RGBA."""
    import PIL.Image

    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise DatasetError(
                f"An image's pixels range over {array.min()}..{array.max()}, outside 0-255; scale them to uint8 "
                "first, e.g. with `(pixels / pixels.max() * 255).round().astype('uint8')` in a `ds.map`."
            )
        array = array.astype(np.uint8)
    return PIL.Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array)
