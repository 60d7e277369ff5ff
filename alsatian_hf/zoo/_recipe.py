"""The paper's M_syn recipe (§6, Models), as a pure, seeded plan.

Start from a base model. Each new model copies a randomly chosen existing model and re-initialises its last
n blocks, with n drawn from a truncated normal that depends on the distribution. n >= 1, so no two models
are duplicates (the reference code can draw n = 0).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigurationError


Distribution_T = Literal["top_50", "top_25", "top_layers"]
DISTRIBUTIONS: tuple[str, ...] = ("top_50", "top_25", "top_layers")


@dataclass(frozen=True)
class ZooEntry:
    index: int
    parent: int | None  # None for the base model
    num_reinit: int  # how many trailing blocks were re-initialised (0 for the base)


def _truncnorm(rng: random.Random, mean: float, std: float, low: int, high: int) -> int:
    """An integer from N(mean, std) truncated to [low, high], by rejection (round half up)."""
    for _ in range(10_000):
        n = math.floor(rng.gauss(mean, std) + 0.5)
        if low <= n <= high:
            return n
    return min(max(math.floor(mean + 0.5), low), high)


def sample_num_reinit(distribution: Distribution_T, num_blocks: int, rng: random.Random) -> int:
    """How many trailing blocks to re-initialise: ~50% (top_50), ~25% (top_25) or the last few (top_layers)."""
    if distribution == "top_50":
        mean, std, high = 0.5 * num_blocks, 0.1 * num_blocks, num_blocks
    elif distribution == "top_25":
        mean, std, high = 0.25 * num_blocks, 0.1 * num_blocks, num_blocks
    elif distribution == "top_layers":
        mean, std, high = 1.0, 1.0, max(1, math.ceil(0.2 * num_blocks))
    else:
        raise ConfigurationError(f"`distribution` must be one of {DISTRIBUTIONS}, got {distribution!r}.")
    return _truncnorm(rng, mean, std, 1, high)


def plan_zoo(num_models: int, num_blocks: int, distribution: Distribution_T, seed: int) -> list[ZooEntry]:
    """The seeded list of zoo entries; entry 0 is the base model."""
    if num_models < 1:
        raise ConfigurationError(f"`num_models` must be >= 1, got {num_models}.")
    if num_blocks < 1:
        raise ConfigurationError(f"`num_blocks` must be >= 1, got {num_blocks}.")
    rng = random.Random(seed)
    entries = [ZooEntry(0, None, 0)]
    for i in range(1, num_models):
        parent = rng.randrange(i)
        entries.append(ZooEntry(i, parent, sample_num_reinit(distribution, num_blocks, rng)))
    return entries


def expected_unique_blocks(entries: list[ZooEntry], num_blocks: int) -> int:
    """Unique blocks the recipe yields: the base's blocks plus every re-initialised one."""
    return num_blocks + sum(e.num_reinit for e in entries)


def recipe_task_tree(num_models: int, num_blocks: int, distribution: Distribution_T, seed: int, *, bases: int = 1):
    """The task tree of a recipe zoo without building it, for planning at scale. `bases` > 1 gives real lineage
    shapes: a few unrelated bases, each with many fine-tunes (of it and of each other). Blocks differ in cost
    (seeded, 0.5 to 2.0), as real ones do.

    Example:
        >>> tree = recipe_task_tree(20, 8, "top_layers", seed=0, bases=2)
        >>> len(tree.models), len(tree.roots)
        (20, 1)
    """
    from ..plan import BlockInfo, TaskTree

    rng = random.Random(seed)
    costs = [rng.uniform(0.5, 2.0) for _ in range(num_blocks)]
    tree = TaskTree()
    per_base = -(-num_models // bases)
    for b in range(bases):
        blocks: list[list[str]] = []
        for e in plan_zoo(min(per_base, num_models - b * per_base), num_blocks, distribution, seed + b):
            own = [f"b{b}-{j}" for j in range(num_blocks)] if e.parent is None else list(blocks[e.parent])
            for j in range(num_blocks - e.num_reinit, num_blocks):
                own[j] = f"b{b}-{j}-m{e.index}"
            blocks.append(own)
            tree.add_model(f"base{b}-m{e.index}", "x", [BlockInfo(h, 4, costs[j]) for j, h in enumerate(own)])
    return tree
