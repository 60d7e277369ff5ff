"""Successive halving over engine candidates, with an interchangeable execution strategy (`strategies`).

Every strategy scores the same features with the same proxy on the same data schedule and selects the same
way, so all return the same ranking and the same survivors at every iteration.

Selection rule: higher score first; equal scores keep the candidates' input order (earlier wins).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .._progress import progress_bar
from ..candidates import EngineCandidate
from ..engine import Counters, Executor, FeatureStore, Tier, TieredCache, default_tiers
from ..errors import ConfigurationError
from ..plan import DataSchedule
from ..scoring import Scorer, score_all
from .strategies import STRATEGIES, Strategy_T


logger = logging.getLogger("alsatian_hf")


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
            "iteration": self.iteration,
            "candidates": self.candidates,
            "scores": self.scores,
            "survivors": self.survivors,
            "new_items": self.new_items,
            "train_items": self.train_items,
            "seconds": dict(c.seconds),
            "block_executions": c.block_executions,
            "blocks_loaded": c.blocks_loaded,
            "bytes_loaded": c.bytes_loaded,
            "cache_peak": c.cache_peak,
            "cache_tier_peaks": dict(c.cache_tier_peaks),
            "chunks": c.chunks,
            "c_min": c.c_min,
            "compute_cost": c.compute_cost,
            "unique_edges": self.unique_edges,
            "naive_edges": self.naive_edges,
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


def select(alive: list[str], scores: dict[str, float], keep: int, order: dict[str, int]) -> list[str]:
    """The `keep` best of `alive`: higher score first, ties by input order."""
    return sorted(alive, key=lambda m: (-scores[m], order[m]))[:keep]


def run_halving(
    candidates: list[EngineCandidate],
    labels: list[int],
    schedule: DataSchedule,
    *,
    prepare: Callable[[str, tuple[int, ...]], dict[str, torch.Tensor]],
    scorer: Scorer,
    strategy: Strategy_T = "alsatian",
    batch_size: int = 64,
    cache_budget: int | None = None,
    tiers: list[Tier] | None = None,
    device: torch.device | str = "cpu",
    cache_dir: str | None = None,
    on_iteration_end: Callable[[IterationRecord], None] | None = None,
) -> HalvingOutcome:
    """Successive halving with the chosen execution strategy.

    Args:
        candidates: the models, in input order (which breaks score ties).
        labels: the label of every item of the target dataset (indexed like `schedule`'s items).
        prepare: the data store: `prepare(input_key, items)` -> batched input tensors.
        scorer: the proxy score (see `alsatian_hf.scoring.Scorer`); it gets `device`.
        cache_budget: bytes for intermediates (alsatian); None means unlimited.
        tiers: cache tiers; by default accelerator memory, RAM and disk.

    Raises:
        ConfigurationError: for an unknown `strategy`.
    """
    if strategy not in STRATEGIES:
        raise ConfigurationError(f"`strategy` must be one of {list(STRATEGIES)}, got {strategy!r}.")
    device = torch.device(device)
    start = time.perf_counter()
    order = {c.model_id: i for i, c in enumerate(candidates)}
    budget = cache_budget if cache_budget is not None else 1 << 62
    cache = TieredCache(budget, tiers or default_tiers(budget, device), device=device, disk_dir=cache_dir)
    features = FeatureStore()
    executor = Executor({c.model_id: c for c in candidates}, prepare, device=device, cache=cache, features=features)
    extractor = STRATEGIES[strategy](
        executor=executor,
        candidates=candidates,
        schedule=schedule,
        batch_size=batch_size,
        cache=cache,
        cache_budget=cache_budget,
    )
    label_t = torch.as_tensor(labels)
    alive = [c.model_id for c in candidates]
    outcome = HalvingOutcome(ranking=[], scores={})
    try:
        for it in range(1, schedule.num_iterations + 1):
            new_items = sum(len(u.items) for u in schedule.new_units(it))
            record = IterationRecord(it, list(alive), {}, [], new_items, len(schedule.train_items(it)), Counters())
            bar = progress_bar(
                desc=f"extraction, iteration {it}/{schedule.num_iterations}", unit="block-item", leave=False
            )
            executor.on_batch = bar.update
            extractor.extract(it, alive, record)
            bar.close()
            record.scores.update(_score(scorer, features, alive, schedule, it, label_t, device, record.counters))
            record.survivors = select(alive, record.scores, schedule.survivors_after(it, len(alive)), order)
            pruned = [m for m in alive if m not in record.survivors]
            features.drop(pruned)
            extractor.prune(pruned)
            alive = record.survivors
            outcome.iterations.append(record)
            logger.info(
                "iteration %d/%d: %d -> %d candidates", it, schedule.num_iterations, len(record.candidates), len(alive)
            )
            if on_iteration_end is not None:
                on_iteration_end(record)
    finally:
        cache.clear()
        executor.lru.clear()
    outcome.ranking = alive
    outcome.scores = {m: outcome.iterations[-1].scores[m] for m in alive}
    outcome.seconds = time.perf_counter() - start
    return outcome


def _score(
    scorer: Scorer,
    features: FeatureStore,
    alive: list[str],
    schedule: DataSchedule,
    iteration: int,
    labels: torch.Tensor,
    device: torch.device,
    counters: Counters,
) -> dict[str, float]:
    """Proxy scores of `alive` on D_1..D_iteration (train) and D_test."""
    t0 = time.perf_counter()
    train_items, test_items = schedule.train_items(iteration), schedule.test.items
    bar = progress_bar(total=len(alive), desc=f"scoring, iteration {iteration}", unit="model", leave=False)
    scores = score_all(
        scorer,
        train_features=[features.get(m, train_items) for m in alive],
        train_labels=labels[list(train_items)],
        test_features=[features.get(m, test_items) for m in alive],
        test_labels=labels[list(test_items)],
        device=device,
    )
    bar.update(len(alive))
    bar.close()
    counters.add_time("proxy_scoring", time.perf_counter() - t0)
    return dict(zip(alive, scores))
