"""The three execution strategies: how one successive-halving iteration extracts its features.

- `alsatian`: one task tree for all candidates, a DFS+ plan per iteration, shared prefixes computed once and
  intermediates cached within the budget (chunking the iteration's items when it is too small).
- `shift`: successive halving, each surviving model run whole on the iteration's new items; no sharing.
- `base`: every model run whole on all the data up front; no halving of the extraction work.

They extract the same features for the same items, so scoring and selection (in `halving`) are shared and
the ranking does not depend on the strategy. Only execution differs.
"""

from __future__ import annotations

import math
from typing import Literal

from ..candidates import EngineCandidate
from ..engine import Executor, TieredCache
from ..errors import BlockFailedError, StateLostError
from ..plan import BlockInfo, DataSchedule, TaskTree, fit_budget, plan_iteration
from ..store.feature_cache import STATE_SHARE


Strategy_T = Literal["alsatian", "shift", "base"]

# of each model's blocks, the top share whose inputs `alsatian` keeps as states: partial fine-tunes retrain top
# blocks (M_syn's top_layers: up to 20% of them), so a new one branches there off whichever model it copied
TOP_SHARE = 0.2


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
        """The batches whose features scoring needs first at `iteration`: the new units', cut on the schedule's
        grid, so every strategy (and every rerun) extracts identical batches and bit-identical features."""
        return [b for u in self.schedule.new_units(iteration) for b in u.batches(self.batch_size)]

    def prune(self, pruned: list[str]) -> None:
        """Forget candidates that selection dropped."""


class AlsatianStrategy(ExecutionStrategy):
    """With a feature cache that keeps states (`FeatureStore.state_keys`), it also persists the preprocessed
    inputs and the outputs of the nodes where models branch off (`_keepable_states`), and starts every model
    from the deepest state on disk: a repeated, resumed or grown search computes only the blocks below it."""

    def __init__(self, *, candidates: list[EngineCandidate], **kwargs):
        super().__init__(candidates=candidates, **kwargs)
        self.candidates = candidates
        self.tree = task_tree(candidates)
        self.keepable = self._keepable_states()

    def _keepable_states(self) -> dict[str, tuple[float, int]]:
        """State key -> (block cost per item a stored copy saves, bytes per item) of the nodes where a model
        seen later most likely branches off: the preprocessed inputs, every node where the task tree branches
        (DFS+ keeps those in the cache anyway; a fine-tune of the base branches where the others did), and
        the nodes in the top `TOP_SHARE` of each model's blocks (a fine-tune that retrained the top blocks of
        any candidate branches there).

        Not the rest of the chains: on this machine creating a file costs about a third of running one block
        on the batch it holds (`persistence` in the benchmark card), and a new model rarely branches in the
        lower middle of a chain. One that does starts from the stored node above."""
        features = self.executor.features
        inputs = {c.model_id: c.input_bytes_per_item for c in self.candidates}
        top = {id(n) for path in self.tree.model_paths.values()
               for n in path[max(0, len(path) - 1 - math.ceil(TOP_SHARE * len(path))) : -1]}  # fmt: skip
        keepable: dict[str, tuple[float, int]] = {}
        saved: dict[int, float] = {}  # id(node) -> cost of its prefix
        for node in [*self.tree.roots.values(), *self.tree.nodes()]:  # parents before children
            saved[id(node)] = 0.0 if node.is_root else saved[id(node.parent)] + node.cost
            branches = len(node.children) >= 2 or bool(node.children and node.leaf_models)
            key = features.state_key(node.representative(), node.depth)
            if key is not None and (branches or id(node) in top or (node.is_root and len(node.models) >= 2)):
                size = inputs[node.representative()] if node.is_root else node.bytes_per_item
                keepable[key] = (saved[id(node)], size)
        return keepable

    def _persist(self, tree: TaskTree, items: int) -> set[str]:
        """The states this iteration writes, the most compute saved first, within the states' share of the
        feature cache's budget (eviction keeps them there; this keeps one search from writing far more)."""
        features = self.executor.features
        if features.disk is None or not self.keepable:
            return set()
        present = {features.state_key(n.representative(), n.depth) for n in [*tree.roots.values(), *tree.nodes()]}
        allowance, chosen = features.disk.budget * STATE_SHARE, set()
        for key, (_, size) in sorted(self.keepable.items(), key=lambda kv: (-kv[1][0], kv[0])):
            if key in present and size * items <= allowance:
                chosen.add(key)
                allowance -= size * items
        return chosen

    def _groups(self, tree: TaskTree, batches: list[tuple[int, ...]], lost: set[str]) -> list[tuple[dict, list]]:
        """The batches grouped by where each model can start on them: model -> (depth, state key) of the deepest
        state stored for that batch. States are per batch, as computed, so a run from one is bit-identical to
        running through; batches alike (usually all of them) run one plan."""
        features = self.executor.features
        if features.disk is None:
            return [({}, batches)]
        stored: dict[str, set[str]] = {}  # state key -> names of its stored batches
        groups: dict[tuple, tuple[dict, list]] = {}
        for batch in batches:
            name, starts = features.disk.segment_name(batch), {}
            for model, path in tree.model_paths.items():
                for depth in range(len(path) - 1, -1, -1):
                    key = features.state_key(model, depth)
                    if key is None or key in lost:
                        continue
                    if key not in stored:
                        stored[key] = features.stored_states(key)
                    if name in stored[key]:
                        starts[model] = (depth, key)
                        break
            groups.setdefault(tuple(sorted(starts.items())), (starts, []))[1].append(batch)
        return list(groups.values())

    def extract(self, iteration: int, alive: list[str], record, batches: list[tuple[int, ...]]) -> None:
        counters = record.counters
        features = self.executor.features
        # the task tree of the models that run: those whose features are on disk are not in it
        tree = self.tree if set(alive) == set(self.tree.models) else task_tree(
            [c for c in self.candidates if c.model_id in set(alive)])  # fmt: skip
        record.unique_edges, record.naive_edges = tree.num_edges(), tree.naive_edges()
        persist = self._persist(tree, sum(len(b) for b in batches))
        lost: set[str] = set()
        running = [c for c in self.candidates if c.model_id in set(alive)]
        while running and batches:
            try:
                for starts, group in self._groups(tree, batches, lost):
                    run_tree = task_tree(running, starts) if starts else tree
                    plan = fit_budget(plan_iteration(run_tree), group, self.cache_budget)  # DFS+ (paper §5.3)
                    counters.chunks = max(counters.chunks, plan.num_chunks)
                    counters.c_min = max(
                        counters.c_min, plan.c_min(max(sum(len(b) for b in chunk) for chunk in plan.chunks))
                    )
                    sources = {f"state:{key}": key for _, key in starts.values()}
                    self.cache.reset_peaks()
                    for chunk in plan.chunks:
                        self.executor.run_plan_chunk(plan, chunk, counters, sources=sources, persist=persist)
                    self.cache.clear()
                return
            except (StateLostError, BlockFailedError) as e:  # plan what is left without the lost state or models
                self.cache.clear()
                if isinstance(e, StateLostError):  # deleted or corrupt since planning
                    lost.add(e.key)
                failed = self.executor.failed
                running = [c for c in running
                           if c.model_id not in failed and not all(features.has(c.model_id, b) for b in batches)]  # fmt: skip
                batches = [b for b in batches if not all(features.has(c.model_id, b) for c in running)]
                tree = task_tree(running)

    def prune(self, pruned: list[str]) -> None:
        self.tree.prune(pruned)


def task_tree(candidates: list[EngineCandidate], starts: dict[str, tuple[int, str]] | None = None) -> TaskTree:
    """The candidates' task tree; a model in `starts` hangs below the root of its stored state instead."""
    tree = TaskTree()
    for c in candidates:
        depth, key = (starts or {}).get(c.model_id, (0, None))
        tree.add_model(
            c.model_id,
            c.input_key if key is None else f"state:{key}",
            [BlockInfo(b.content_hash, b.bytes_per_item, b.cost, b.param_bytes) for b in c.blocks[depth:]],
            depth=depth,
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
