"""The three execution strategies: how one successive-halving iteration extracts its features.

- `alsatian`: one task tree for all candidates, a DFS+ plan per iteration, shared prefixes computed once and
  intermediates cached within the budget (chunking the iteration's items when it is too small).
- `shift`: successive halving, each surviving model run whole on the iteration's new items; no sharing.
- `base`: every model run whole on all the data up front; no halving of the extraction work.

They extract the same features for the same items, so scoring and selection (in `halving`) are shared and
the ranking does not depend on the strategy. Only execution differs.
"""

from __future__ import annotations

from typing import Literal

from ..candidates import EngineCandidate
from ..engine import Executor, TieredCache
from ..plan import BlockInfo, DataSchedule, TaskTree, fit_budget, plan_iteration


Strategy_T = Literal["alsatian", "shift", "base"]


class ExecutionStrategy:
    """Extracts an iteration's features into the executor's feature store.

    Args:
        executor: runs blocks and whole models, and holds the feature store.
        candidates: every candidate, in input order.
        schedule: the data schedule (which items each iteration adds).
        batch_size: items per inference batch.
        cache: the activation cache (only `alsatian` caches).
        cache_budget: bytes for cached intermediates; None means unlimited.
    """

    def __init__(
        self,
        *,
        executor: Executor,
        candidates: list[EngineCandidate],
        schedule: DataSchedule,
        batch_size: int,
        cache: TieredCache,
        cache_budget: int | None,
    ):
        self.executor = executor
        self.schedule = schedule
        self.batch_size = batch_size
        self.cache = cache
        self.cache_budget = cache_budget

    def extract(self, iteration: int, alive: list[str], record, batches: list[tuple[int, ...]]) -> None:
        """Features of `alive` for `batches` (of `batches_for(iteration)`); fills `record`'s counters."""
        raise NotImplementedError

    def batches_for(self, iteration: int) -> list[tuple[int, ...]]:
        """The batches whose features scoring needs first at `iteration`: the new units', cut from each unit's
        start, so every strategy (and every rerun) extracts identical batches and bit-identical features."""
        return [b for u in self.schedule.new_units(iteration) for b in u.batches(self.batch_size)]

    def prune(self, pruned: list[str]) -> None:
        """Forget candidates that selection dropped."""


class AlsatianStrategy(ExecutionStrategy):
    def __init__(self, *, candidates: list[EngineCandidate], **kwargs):
        super().__init__(candidates=candidates, **kwargs)
        self.candidates = candidates
        self.tree = _tree(candidates)

    def extract(self, iteration: int, alive: list[str], record, batches: list[tuple[int, ...]]) -> None:
        counters = record.counters
        # the task tree of the models that run: those whose features are on disk are not in it
        tree = self.tree if set(alive) == set(self.tree.models) else _tree(
            [c for c in self.candidates if c.model_id in set(alive)])  # fmt: skip
        record.unique_edges, record.naive_edges = tree.num_edges(), tree.naive_edges()
        plan = fit_budget(plan_iteration(tree), batches, self.cache_budget)  # DFS+ (paper §5.3)
        counters.chunks = max(counters.chunks, plan.num_chunks)
        counters.c_min = max(counters.c_min, plan.c_min(max(sum(len(b) for b in chunk) for chunk in plan.chunks)))
        self.cache.reset_peaks()
        for chunk in plan.chunks:
            self.executor.run_plan_chunk(plan, chunk, counters)
        self.cache.clear()

    def prune(self, pruned: list[str]) -> None:
        self.tree.prune(pruned)


def _tree(candidates: list[EngineCandidate]) -> TaskTree:
    tree = TaskTree()
    for c in candidates:
        tree.add_model(
            c.model_id, c.input_key, [BlockInfo(b.content_hash, b.bytes_per_item, b.cost) for b in c.blocks]
        )
    return tree


class ShiftStrategy(ExecutionStrategy):
    def extract(self, iteration: int, alive: list[str], record, batches: list[tuple[int, ...]]) -> None:
        for model_id in alive:
            self.executor.run_model(model_id, batches, record.counters)


class BaseStrategy(ShiftStrategy):
    """Every model on all the data in the first iteration; later iterations find their features in RAM
    (`extract` then only runs models whose first iteration was restored from the feature cache, not run)."""

    def batches_for(self, iteration: int) -> list[tuple[int, ...]]:
        if iteration != 1:
            return super().batches_for(iteration)
        return [b for u in (self.schedule.test, *self.schedule.train_slices) for b in u.batches(self.batch_size)]


STRATEGIES: dict[str, type[ExecutionStrategy]] = {
    "alsatian": AlsatianStrategy,
    "shift": ShiftStrategy,
    "base": BaseStrategy,
}
