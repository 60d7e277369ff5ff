"""The data schedule of successive halving (paper §2.2, §4.2).

D_target is split into a fixed-size, stratified, seeded D_test and D_train. With n candidates and result size
k there are l = ceil(log2(n / k)) iterations (l = 0 when n <= k: everything is scored once on all of D_train,
which we run as one iteration). D_train is cut into slices D_1..D_l that double in size, so iteration i
trains the proxy on D_1..D_i and the last one has used all of D_train.

Every strategy extracts features in the same *units* (D_test, D_1, ..., D_l), cut into batches on one grid
over D_train (and one over D_test), so all strategies run identical batches and produce bit-identical
features. The grid does not depend on the number of candidates: a search over a grown org cuts the batches an
earlier one did (except where a slice boundary moved), so the states that search stored match batch for batch.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Unit:
    """A run of items extracted together: `name` is "test" or "train_<i>" (1-based)."""

    name: str
    items: tuple[int, ...]  # indices into the target dataset
    offset: int = 0  # position of the unit's first item in D_train (0 for D_test)

    def batches(self, batch_size: int) -> list[tuple[int, ...]]:
        """The unit's items cut where the grid of `batch_size` over D_train (from `offset`) cuts them."""
        cuts = [0, *range((-self.offset) % batch_size or batch_size, len(self.items), batch_size), len(self.items)]
        return [self.items[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


@dataclass(frozen=True)
class DataSchedule:
    test: Unit
    train_slices: tuple[Unit, ...]  # D_1..D_l, doubling in size
    num_candidates: int
    result_size: int

    @property
    def num_iterations(self) -> int:
        return len(self.train_slices)

    def train_items(self, iteration: int) -> tuple[int, ...]:
        """D_1 ∪ ... ∪ D_iteration (1-based), the items the proxy trains on in that iteration."""
        return tuple(i for u in self.train_slices[:iteration] for i in u.items)

    def new_units(self, iteration: int) -> list[Unit]:
        """Units first needed in `iteration`: D_test and D_1 in the first, D_i afterwards."""
        return [self.test, self.train_slices[0]] if iteration == 1 else [self.train_slices[iteration - 1]]

    def survivors_after(self, iteration: int, alive: int) -> int:
        """How many candidates iteration `iteration` keeps: the better half, never fewer than k."""
        if iteration == self.num_iterations:
            return min(alive, self.result_size)
        return max(self.result_size, math.ceil(alive / 2))


def num_iterations(num_candidates: int, result_size: int) -> int:
    """l = ceil(log2(n / k)), at least 1 (l = 0 in the paper's terms is one scoring pass on all data)."""
    if num_candidates <= result_size:
        return 1
    return max(1, math.ceil(math.log2(num_candidates / result_size)))


def stratified_split(
    labels: list[int], *, test_size: float | int, max_test_items: int | None, seed: int
) -> tuple[list[int], list[int]]:
    """Seeded, stratified split of item indices into (train, test).

    Each class contributes to D_test in proportion to its frequency (largest remainders), and at least one
    item of every class with >= 2 items stays in D_train.
    """
    n = len(labels)
    wanted = round(test_size * n) if isinstance(test_size, float) else int(test_size)
    if max_test_items is not None:
        wanted = min(wanted, max_test_items)
    wanted = max(1, min(wanted, n - 1))
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for idx, y in enumerate(labels):
        by_class.setdefault(y, []).append(idx)
    classes = sorted(by_class)
    for c in classes:
        rng.shuffle(by_class[c])
    exact = {c: wanted * len(by_class[c]) / n for c in classes}
    take = {c: min(math.floor(exact[c]), max(len(by_class[c]) - 1, 0)) for c in classes}
    leftovers = sorted(classes, key=lambda c: (-(exact[c] - math.floor(exact[c])), c))
    for c in leftovers:
        if sum(take.values()) >= wanted:
            break
        if take[c] < len(by_class[c]) - 1:
            take[c] += 1
    test = sorted(i for c in classes for i in by_class[c][: take[c]])
    train = [i for c in classes for i in by_class[c][take[c] :]]
    rng.shuffle(train)  # a seeded order: the slices D_1..D_l are prefixes of it
    return train, test


def make_schedule(
    labels: list[int],
    *,
    num_candidates: int,
    result_size: int,
    test_size: float | int = 0.2,
    max_test_items: int | None = 1000,
    max_train_items: int | None = None,
    seed: int = 0,
    test_items: list[int] | None = None,
    min_items_per_class: int | None = None,
) -> DataSchedule:
    """Split the target dataset and cut D_train into doubling slices.

    Args:
        labels: the label of every item of the target dataset.
        test_items: explicit D_test indices (e.g. from an `eval_dataset`); then all other items are D_train.
        min_items_per_class: D_1 holds at least this many items of every class (all of a smaller class), and
            later slices double from there over the rest of D_train (which keeps one item per later slice).
            None keeps the paper's schedule, whose D_1 is |D_train| / (2^l - 1) items whatever the number of
            classes.
    """
    if test_items is not None:
        test_set = set(test_items)
        train = [i for i in range(len(labels)) if i not in test_set]
        random.Random(seed).shuffle(train)
        test = sorted(test_items)
    else:
        train, test = stratified_split(labels, test_size=test_size, max_test_items=max_test_items, seed=seed)
    if max_train_items is not None:
        train = train[:max_train_items]
    levels = num_iterations(num_candidates, result_size)
    # |D_i| = 2^(i-1) * |D_1| and the slices cover D_train exactly: |D_1| = |D_train| / (2^levels - 1).
    total = (1 << levels) - 1
    bounds = [round(len(train) * ((1 << i) - 1) / total) for i in range(1, levels)] + [len(train)]
    if min_items_per_class is not None and levels > 1:
        train, first = _front_load(train, labels, min_items_per_class)
        first = min(first, len(train) - (levels - 1))  # every later slice keeps at least one item
        if first > bounds[0]:  # D_1 grows to `first`; D_2..D_l keep doubling over the rest
            rest, parts = len(train) - first, (1 << levels) - 2
            bounds = [first] + [first + round(rest * ((1 << i) - 2) / parts) for i in range(2, levels)] + [len(train)]
    slices, start = [], 0
    for i, bound in enumerate(bounds, 1):
        end = max(start + 1, bound) if i < levels else len(train)
        slices.append(Unit(f"train_{i}", tuple(train[start:end]), start))
        start = end
    return DataSchedule(Unit("test", tuple(test)), tuple(slices), num_candidates, result_size)


def _front_load(train: list[int], labels: list[int], per_class: int) -> tuple[list[int], int]:
    """`train` reordered so its first items hold `per_class` of every class (in their seeded order), and how
    many items that front is. The rest keeps its order."""
    taken: dict[int, int] = {}
    front, back = [], []
    for i in train:
        if taken.get(labels[i], 0) < per_class:
            taken[labels[i]] = taken.get(labels[i], 0) + 1
            front.append(i)
        else:
            back.append(i)
    return front + back, len(front)
