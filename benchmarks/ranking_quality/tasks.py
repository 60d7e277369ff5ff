"""The benchmark's data: source tasks (what the zoo's fine-tunes learnt) and targets (what the search ranks for).

Every target is disjoint in items from every source: the image sources draw from Fashion-MNIST's train split,
the Fashion-MNIST targets from its test split, and digits is never a source. The text sources are 20 Newsgroups'
`comp.*`, `rec.*`, `sci.*` and `talk.*` groups from its train file; the text targets are its `sci.*`, `rec.*`,
`comp.*` and `talk.*` groups from its test file, and the three groups no source has seen (`news-misc`). Three
text targets are out of every source's domain (`OUT_OF_DOMAIN`): newswire (`reuters-r8`, Reuters-21578's R8
train file), tweets (`tweets-2016`: whose author they are) and Slovenian readers' comments (`slo-comments`:
under which news section). Some sources cover a target in domain, as an org's zoo often has fine-tunes on data
like the user's: `fmnist-all` (every class; `fmnist-all3k` is a smaller draw), `fmnist-upper` and
`fmnist-other` for the Fashion-MNIST targets, and the text sources named like the text targets for theirs.
"Random" sources keep their images or texts and draw labels uniformly at random: deliberately poor sources
(under the ground truth's recipe, though, their fine-tunes score with the rest).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np


Modality_T = Literal["image", "text"]

FMNIST_UPPER = (0, 2, 3, 4, 6)  # T-shirt, pullover, dress, coat, shirt
FMNIST_OTHER = (1, 5, 7, 8, 9)  # trouser, sandal, sneaker, bag, ankle boot
REUTERS_R8 = ("acq", "crude", "earn", "interest", "money-fx", "trade")  # R8's classes with 190+ train-file items
NEWS_MISC = ("alt.atheism", "misc.forsale", "soc.religion.christian")  # the 20 Newsgroups no source draws from
# sport and economy: the corpus's two large sections ("Politika" has 108 comments, and "Drugo", other, is no topic)
SLO_SECTIONS = ("Šport", "Gospodarstvo")
OUT_OF_DOMAIN = ("reuters-r8", "tweets-2016", "slo-comments")  # text targets from other corpora than the sources'


@dataclass(frozen=True)
class Task:
    name: str
    modality: Modality_T
    num_classes: int
    train_items: int
    test_items: int = 0  # 0 for a source (the zoo trains on all of it)
    what: str = ""  # a target's data, for the card


SOURCES = {
    t.name: t
    for t in (
        Task("fmnist-upper", "image", 5, 1500),
        Task("fmnist-other", "image", 5, 1500),
        Task("fmnist-random", "image", 10, 1500),
        Task("fmnist-all", "image", 10, 10000),
        Task("fmnist-all3k", "image", 10, 3000),
        Task("news-comp", "text", 5, 800),
        Task("news-rec", "text", 4, 800),
        Task("news-sci", "text", 4, 800),
        Task("news-random", "text", 4, 800),
    )
}
TARGETS = {
    t.name: t
    for t in (
        Task("fashion-mnist", "image", 10, 1000, 8000, "Fashion-MNIST (test split)"),
        # the five upper-body garments alone: the hard part of Fashion-MNIST (every item of the five in the test split)
        Task("fashion-mnist-upper", "image", 5, 1000, 4000, "Fashion-MNIST's 5 upper-body garments"),
        Task("fashion-mnist-other", "image", 5, 1000, 4000, "Fashion-MNIST's 5 other classes (trousers, shoes, bag)"),
        Task("digits", "image", 10, 1000, 797, "digits"),
        Task("news-sci", "text", 4, 400, 800, "20 Newsgroups `sci.*` (test file)"),
        Task("news-rec", "text", 4, 400, 800, "20 Newsgroups `rec.*` (test file)"),
        Task("news-comp", "text", 5, 500, 1000, "20 Newsgroups `comp.*` (test file)"),
        # the only text source on `talk.*` is news-random: in domain, but with random labels
        Task("news-talk", "text", 4, 400, 800, "20 Newsgroups `talk.*` (test file)"),
        # newswire, which no source covers: a target out of the zoo's domain
        Task("reuters-r8", "text", 6, 480, 600, "Reuters-21578 R8's 6 largest classes (train file)"),
        Task("tweets-2016", "text", 2, 400, 800, "2016 US election tweets, by Clinton or by Trump (no retweets)"),
        # Usenet, but three groups that no source covers, not even with random labels
        Task(
            "news-misc", "text", 3, 300, 600, "20 Newsgroups `alt.atheism`, `misc.forsale`, `soc.religion.christian`"
        ),
        # another language (MiniLM's vocabulary is English) and another genre: readers' comments under news stories
        Task("slo-comments", "text", 2, 360, 800, "Slovenian readers' comments under sport or economy news"),
    )
}


@dataclass(frozen=True)
class Profile:
    """How big a run is: `FULL` is the benchmark; `TINY` runs the same code in about a minute (the test suite)."""

    name: str
    item_scale: float = 1.0  # of every task's item counts
    epochs: int | None = None  # overrides every recipe's
    seeds: int = 3
    targets: tuple[str, ...] = tuple(TARGETS)
    splits: int = 5  # draws of D_test (the search's `seed`) that every scorer's all-data scores are taken over

    def items(self, n: int) -> int:
        return max(20, round(n * self.item_scale)) if n else 0


FULL = Profile("full")
TINY = Profile("tiny", item_scale=0.1, epochs=1, seeds=2, targets=("digits",), splits=2)


def _stratified(labels: np.ndarray, n: int, rng: np.random.Generator, exclude: np.ndarray | None = None) -> np.ndarray:
    """n indices, classes as even as their sizes allow, none of `exclude`."""
    pool = np.setdiff1d(np.arange(len(labels)), exclude if exclude is not None else [])
    per_class = [rng.permutation(pool[labels[pool] == c]) for c in np.unique(labels[pool])]
    picked: list[int] = []
    depth = 0
    while len(picked) < n and depth < max(len(p) for p in per_class):
        picked += [int(p[depth]) for p in per_class if depth < len(p)][: n - len(picked)]
        depth += 1
    return np.sort(np.array(picked))


def _image_ds(images: np.ndarray, labels: np.ndarray, num_classes: int):
    from alsatian_hf.zoo.data import _image_dataset

    return _image_dataset(images, labels, [str(i) for i in range(num_classes)])


def _fmnist_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    from alsatian_hf.zoo.data import FASHION_MNIST_DIR, _read_idx

    prefix = "train" if split == "train" else "t10k"
    img = next(iter(sorted(FASHION_MNIST_DIR.glob(f"{prefix}-images-idx3-ubyte*"))))
    lbl = next(iter(sorted(FASHION_MNIST_DIR.glob(f"{prefix}-labels-idx1-ubyte*"))))
    return _read_idx(img), _read_idx(lbl)


def _news_rows(split: str, prefix: str | tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    from alsatian_hf.zoo.data import newsgroups

    ds = newsgroups(split=split)
    names = ds.features["label"].names
    keep = [c for c in range(len(names)) if names[c].startswith(prefix)]
    rows = [(t, keep.index(y)) for t, y in zip(ds["text"], ds["label"]) if y in keep]
    return [t for t, _ in rows], np.array([y for _, y in rows])


def _out_of_domain_rows(name: str) -> tuple[list[str], np.ndarray]:
    """(texts, labels) of an out-of-domain text target, each text once (a few wire stories and tweets repeat)."""
    from alsatian_hf.zoo.data import orange_text_rows

    if name == "reuters-r8":
        classes, rows = REUTERS_R8, orange_text_rows("reuters-r8-train.tab")
    elif name == "slo-comments":  # columns "Category" (the news section) and "Content"
        classes, rows = SLO_SECTIONS, orange_text_rows("slo-opinion-corpus.tab", (2, 9))
    else:  # the authors' own tweets: columns "Is retweet", "Author" and "Content"
        classes = ("HillaryClinton", "realDonaldTrump")
        rows = [(a, t) for rt, a, t in orange_text_rows("election-tweets-2016.tab", (0, 7, 9)) if rt == "False"]
    first: dict[str, int] = {}  # text -> the class it is first listed under
    for cat, text in rows:
        if cat in classes:
            first.setdefault(text, classes.index(cat))
    return list(first), np.array(list(first.values()))


def source_dataset(name: str, seed: int = 0, profile: Profile = FULL):
    """The source task's training data as a `datasets.Dataset` (`image` or `text`, and `label`)."""
    from datasets import ClassLabel, Dataset, Features, Value

    task = SOURCES[name]
    task = replace(task, train_items=profile.items(task.train_items))
    rng = np.random.default_rng(seed)
    if task.modality == "image":
        images, labels = _fmnist_arrays("train")
        if name == "fmnist-random":
            idx = _stratified(labels, task.train_items, rng)
            return _image_ds(images[idx], rng.integers(0, task.num_classes, len(idx)), task.num_classes)
        classes = np.array({"fmnist-upper": FMNIST_UPPER, "fmnist-other": FMNIST_OTHER}.get(name, range(10)))
        pool = np.flatnonzero(np.isin(labels, classes))
        idx = pool[_stratified(labels[pool], task.train_items, rng)]
        return _image_ds(images[idx], np.searchsorted(classes, labels[idx]), task.num_classes)
    texts, labels = _news_rows("train", "talk." if name == "news-random" else name.split("-", 1)[1] + ".")
    idx = _stratified(labels, task.train_items, rng)
    y = rng.integers(0, task.num_classes, len(idx)) if name == "news-random" else labels[idx]
    features = Features({"text": Value("string"), "label": ClassLabel(num_classes=task.num_classes)})
    return Dataset.from_dict({"text": [texts[i] for i in idx], "label": [int(v) for v in y]}, features=features)


def items_digest(*datasets) -> str:
    """A digest of the datasets' items (an image's pixels, or a text) and labels, in order: the draw a ground
    truth was measured on, so a changed draw is told from the one on record."""
    import hashlib

    h = hashlib.sha256()
    for ds in datasets:
        for item in ds["image"] if "image" in ds.column_names else ds["text"]:
            b = item.encode() if isinstance(item, str) else np.asarray(item).tobytes()
            h.update(len(b).to_bytes(8, "little") + b)
        h.update(np.asarray(ds["label"], dtype=np.int64).tobytes())
        h.update(b"|")  # where one dataset ends: (train, test) is not (train + test[:1], test[1:])
    return h.hexdigest()[:16]


def target_datasets(name: str, seed: int = 0, profile: Profile = FULL):
    """(train, test) of a target: the search sees `train`; the ground truth fine-tunes on `train` and tests on `test`."""
    from datasets import ClassLabel, Dataset, Features, Value

    task = TARGETS[name]
    task = replace(task, train_items=profile.items(task.train_items), test_items=profile.items(task.test_items))
    rng = np.random.default_rng(seed)
    if task.modality == "image":
        if name.startswith("fashion-mnist"):
            images, labels = _fmnist_arrays("test")
            classes = {"fashion-mnist-upper": FMNIST_UPPER, "fashion-mnist-other": FMNIST_OTHER}.get(name)
            if classes:
                keep = np.flatnonzero(np.isin(labels, classes))
                images, labels = images[keep], np.searchsorted(np.array(classes), labels[keep])
        else:
            from sklearn.datasets import load_digits

            bunch = load_digits()
            images, labels = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8), bunch.target
        train = _stratified(labels, task.train_items, rng)
        test = _stratified(labels, task.test_items, rng, exclude=train)
        return tuple(_image_ds(images[i], labels[i], task.num_classes) for i in (train, test))
    if name in OUT_OF_DOMAIN:
        texts, labels = _out_of_domain_rows(name)
        reposted = np.array([], dtype=int)
    else:
        texts, labels = _news_rows("test", NEWS_MISC if name == "news-misc" else name.split("-", 1)[1] + ".")
        # 20 Newsgroups' test file repeats a few train-file posts word for word (FAQs posted again): never a
        # target item
        from alsatian_hf.zoo.data import newsgroups

        in_train_file = set(newsgroups(split="train")["text"])
        reposted = np.array([i for i, t in enumerate(texts) if t in in_train_file], dtype=int)
    train = _stratified(labels, task.train_items, rng, exclude=reposted)
    test = _stratified(labels, task.test_items, rng, exclude=np.union1d(train, reposted))
    features = Features({"text": Value("string"), "label": ClassLabel(num_classes=task.num_classes)})
    return tuple(
        Dataset.from_dict({"text": [texts[j] for j in i], "label": [int(labels[j]) for j in i]}, features=features)
        for i in (train, test)
    )
