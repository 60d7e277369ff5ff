"""Successive halving over engine candidates, with three interchangeable execution strategies.

- `alsatian`: one task tree for all candidates, a DFS+ plan per iteration, shared prefixes computed once
  and intermediates cached within the budget (chunking the iteration's items when it is too small).
- `shift`: successive halving, each surviving model run whole on the iteration's new items; no sharing.
- `base`: every model run whole on all the data up front; no halving of the extraction work.

All three score the same features with the same proxy on the same data schedule and select the same way, so
they return the same ranking and the same survivors at every iteration. Only execution differs.

Selection rule: higher score first; equal scores keep the candidates' input order (earlier wins).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch

from ..engine import Counters, EngineCandidate, Executor, FeatureStore, Tier, TieredCache, default_tiers
from ..plan import BlockInfo, DataSchedule, TaskTree, fit_budget, plan_iteration
from ..scoring import Scorer, score_all

logger = logging.getLogger("alsatian_hf")

Strategy_T = Literal["alsatian", "shift", "base"]
STRATEGIES: tuple[str, ...] = ("alsatian", "shift", "base")


@dataclass
class IterationRecord:
    iteration: int
    candidates: list[str]
    scores: dict[str, float]
    survivors: list[str]
    new_items: int
    train_items: int
    counters: Counters
    unique_edges: int = 0
    naive_edges: int = 0

    def to_dict(self) -> dict:
        c = self.counters
        return {
            "iteration": self.iteration, "candidates": self.candidates, "scores": self.scores,
            "survivors": self.survivors, "new_items": self.new_items, "train_items": self.train_items,
            "seconds": dict(c.seconds), "block_executions": c.block_executions, "blocks_loaded": c.blocks_loaded,
            "bytes_loaded": c.bytes_loaded, "cache_peak": c.cache_peak, "cache_tier_peaks": dict(c.cache_tier_peaks),
            "chunks": c.chunks, "c_min": c.c_min, "compute_cost": c.compute_cost,
            "unique_edges": self.unique_edges, "naive_edges": self.naive_edges,
            "block_time": {h: [n, round(t, 6)] for h, (n, t) in c.block_time.items()},
        }


@dataclass
class HalvingOutcome:
    ranking: list[str]  # the top-k, best first
    scores: dict[str, float]  # final-iteration scores of the ranked models
    iterations: list[IterationRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def survivors(self) -> list[list[str]]:
        return [r.survivors for r in self.iterations]


def _bar(**kwargs):
    from huggingface_hub.utils import tqdm  # honours HF_HUB_DISABLE_PROGRESS_BARS

    return tqdm(**kwargs)


def select(alive: list[str], scores: dict[str, float], keep: int, order: dict[str, int]) -> list[str]:
    """The `keep` best of `alive`: higher score first, ties by input order."""
    return sorted(alive, key=lambda m: (-scores[m], order[m]))[:keep]


def run_halving(candidates: list[EngineCandidate], labels: list[int], schedule: DataSchedule, *,
                prepare: Callable[[str, tuple[int, ...]], dict[str, torch.Tensor]], scorer: Scorer,
                strategy: Strategy_T = "alsatian", batch_size: int = 64, cache_budget: int | None = None,
                tiers: list[Tier] | None = None, device: torch.device | str = "cpu",
                cache_dir: str | None = None, on_iteration_end: Callable[[IterationRecord], None] | None = None,
                ) -> HalvingOutcome:
    """Successive halving with the chosen execution strategy.

    Args:
        candidates: the models, in input order (which breaks score ties).
        labels: the label of every item of the target dataset (indexed like `schedule`'s items).
        prepare: the data store: `prepare(input_key, items)` -> batched input tensors.
        cache_budget: bytes for intermediates (alsatian); None means unlimited.
        tiers: cache tiers; by default accelerator memory, RAM and disk.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {strategy!r}.")
    device = torch.device(device)
    start = time.perf_counter()
    by_id = {c.model_id: c for c in candidates}
    order = {c.model_id: i for i, c in enumerate(candidates)}
    budget = cache_budget if cache_budget is not None else 1 << 62
    cache = TieredCache(budget, tiers or default_tiers(budget, device), device=device, disk_dir=cache_dir)
    features = FeatureStore()
    executor = Executor(by_id, prepare, device=device, cache=cache, features=features)
    label_t = torch.as_tensor(labels)
    tree = None
    if strategy == "alsatian":
        tree = TaskTree()
        for c in candidates:
            tree.add_model(c.model_id, c.input_key,
                           [BlockInfo(b.content_hash, b.bytes_per_item, b.cost) for b in c.blocks])
    alive = [c.model_id for c in candidates]
    outcome = HalvingOutcome(ranking=[], scores={})
    try:
        for it in range(1, schedule.num_iterations + 1):
            counters = Counters()
            units = schedule.new_units(it)
            batches = [b for u in units for b in u.batches(batch_size)]
            record = IterationRecord(it, list(alive), {}, [], sum(len(b) for b in batches),
                                     len(schedule.train_items(it)), counters)
            bar = _bar(desc=f"extraction, iteration {it}/{schedule.num_iterations}", unit="block-item", leave=False)
            executor.on_batch = bar.update
            if strategy == "alsatian":
                assert tree is not None
                record.unique_edges, record.naive_edges = tree.num_edges(), tree.naive_edges()
                plan = fit_budget(plan_iteration(tree), batches, cache_budget)
                counters.chunks = plan.num_chunks
                counters.c_min = plan.c_min(max(sum(len(b) for b in ch) for ch in plan.chunks))
                cache.reset_peaks()
                for chunk in plan.chunks:
                    executor.run_plan_chunk(plan, chunk, counters)
                cache.clear()
            elif strategy == "shift":
                for model_id in alive:
                    executor.run_model(model_id, batches, counters)
            elif it == 1:  # base: everything, once
                every = [b for u in (schedule.test, *schedule.train_slices) for b in u.batches(batch_size)]
                record.new_items = sum(len(b) for b in every)
                for model_id in alive:
                    executor.run_model(model_id, every, counters)
            bar.close()
            # proxy scoring on D_1..D_it and D_test
            t0 = time.perf_counter()
            train_items, test_items = schedule.train_items(it), schedule.test.items
            ytr, yte = label_t[list(train_items)], label_t[list(test_items)]
            bar = _bar(total=len(alive), desc=f"scoring, iteration {it}", unit="model", leave=False)
            scores = score_all(scorer, train_features=[features.get(m, train_items) for m in alive], train_labels=ytr,
                               test_features=[features.get(m, test_items) for m in alive], test_labels=yte)
            record.scores.update(zip(alive, scores))
            bar.update(len(alive))
            bar.close()
            counters.add_time("proxy_scoring", time.perf_counter() - t0)
            keep = schedule.survivors_after(it, len(alive))
            ranked = select(alive, record.scores, keep, order)
            record.survivors = ranked
            pruned = [m for m in alive if m not in ranked]
            features.drop(pruned)
            if tree is not None:
                tree.prune(pruned)
            alive = ranked
            outcome.iterations.append(record)
            logger.info("iteration %d/%d: %d -> %d candidates", it, schedule.num_iterations, len(record.candidates),
                        len(alive))
            if on_iteration_end is not None:
                on_iteration_end(record)
    finally:
        cache.clear()
        executor.lru.clear()
    outcome.ranking = alive
    outcome.scores = {m: outcome.iterations[-1].scores[m] for m in alive}
    outcome.seconds = time.perf_counter() - start
    return outcome
