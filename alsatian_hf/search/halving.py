"""Successive halving over engine candidates, with an interchangeable execution strategy (`strategies`).

Every strategy scores the same features with the same proxy on the same data schedule and selects the same
way, so all return the same ranking and the same survivors at every iteration.

Selection rule: higher score first; equal scores keep the candidates' input order (earlier wins). When the cut
between survivors and pruned candidates falls between exactly equal scores, the input order decided, not the
proxy: the iteration records those candidates as `ties` and the log warns.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .. import __version__
from .._progress import progress_bar
from ..candidates import EngineCandidate
from ..engine import Counters, Executor, FeatureStore, Tier, TieredCache, default_tiers
from ..errors import ConfigurationError
from ..plan import DataSchedule
from ..scoring import Scorer, score_all
from ..scoring._base import all_finite
from ..store.feature_cache import FeatureCache, feature_key, state_keys
from .distributed import Ranks, Share
from .strategies import STRATEGIES, Strategy_T, task_tree


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
    cached: list[str] = field(default_factory=list)  # candidates whose features came from the feature cache
    restored: bool = False  # scores and survivors restored from a persisted run of this iteration
    rank_block_executions: list[int] = field(default_factory=list)  # per rank, when several ran the iteration
    # per rank, when several ran the iteration: its seconds per phase (`counters.seconds` holds the slowest's),
    # which show how evenly the split loaded the ranks
    rank_seconds: list[dict[str, float]] = field(default_factory=list)
    ties: list[str] = field(default_factory=list)  # candidates tied exactly at the cut (input order decided)
    failed: dict[str, str] = field(default_factory=dict)  # candidates dropped unscored this iteration, and why

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
            "cached": self.cached,
            "restored": self.restored,
            "rank_block_executions": self.rank_block_executions,
            "rank_seconds": self.rank_seconds,
            "ties": self.ties,
            "failed": self.failed,
            "block_time": {h: [n, round(t, 6)] for h, (n, t) in c.block_time.items()},
            "node_items": dict(c.node_items),
        }


@dataclass
class HalvingOutcome:
    ranking: list[str]  # the top-k, best first
    scores: dict[str, float]  # final-iteration scores of the ranked models
    iterations: list[IterationRecord] = field(default_factory=list)
    seconds: float = 0.0
    feature_cache_error: str | None = None  # why features stopped being persisted mid-search, if they did
    failed: dict[str, str] = field(default_factory=dict)  # candidates dropped mid-search, and why

    @property
    def survivors(self) -> list[list[str]]:
        return [r.survivors for r in self.iterations]


def select(alive: list[str], scores: dict[str, float], keep: int, order: dict[str, int]) -> list[str]:
    """The `keep` best of `alive`: higher score first, ties by input order."""
    return sorted(alive, key=lambda m: (-scores[m], order[m]))[:keep]


def tied_at_cut(alive: list[str], scores: dict[str, float], survivors: list[str]) -> list[str]:
    """The candidates whose score equals the last survivor's when some of them were pruned: the cut fell between
    equal scores, so the tie rule (input order) chose. Empty when the proxy alone decided."""
    pruned = [m for m in alive if m not in survivors]
    if not survivors or not pruned:
        return []
    edge = scores[survivors[-1]]
    if not any(scores[m] == edge for m in pruned):
        return []
    return [m for m in alive if scores[m] == edge]


def _report_ties(record: IterationRecord) -> None:
    scored = [m for m in record.candidates if m not in record.failed]
    record.ties = tied_at_cut(scored, record.scores, record.survivors)
    if record.ties:
        kept = [m for m in record.ties if m in record.survivors]
        logger.warning(
            "iteration %d: %d candidates tie exactly at score %r across the cut, so input order chose: kept %s, "
            "pruned %s (a scorer that ties is not telling them apart; try another `scorer`)",
            record.iteration, len(record.ties), record.scores[record.ties[0]], kept,
            [m for m in record.ties if m not in kept],
        )  # fmt: skip


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
    feature_cache: FeatureCache | None = None,
    fingerprint: str | None = None,
    scorer_key: str | None = None,
    persist_states: bool = True,
    ranks: Ranks | None = None,
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
        feature_cache: features on disk: a candidate whose features for an iteration's items are there is not
            run, and every batch extracted is written there.
        fingerprint: the dataset's fingerprint (the feature cache's name for its items).
        scorer_key: names the scorer and its settings; with it, each finished iteration is persisted in the
            feature cache, and a repeated or resumed search restores it instead of scoring again.
        ranks: this process's rank among several (`accelerate launch`, `torchrun`); each extracts and scores
            its share of every iteration (`distributed`). Default: one process.
        persist_states: with a feature cache, `alsatian` also keeps the outputs of prefixes that several
            candidates share (and the preprocessed inputs) there, and starts models from the deepest one stored.
        on_iteration_end: called with each iteration's record once it is finished or restored, in order.

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
    kind = f"{device.type}/torch-{torch.__version__}/alsatian-{__version__}"  # what else decides the numerics
    keys = {
        c.model_id: feature_key(c.input_key, [b.content_hash for b in c.blocks], f"{kind}/{c.numerics}")
        for c in candidates
    }
    keys_of: dict[str, list[str]] = {}  # model -> its states' keys
    if feature_cache is not None and persist_states:
        for c in candidates:
            keys_of[c.model_id] = state_keys(c.input_key, [b.content_hash for b in c.blocks], f"{kind}/{c.numerics}")
    features = FeatureStore(feature_cache, keys, fingerprint, keys_of)
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
    by_id = {c.model_id: c for c in candidates}
    ranks = ranks or Ranks()
    search_key = None
    if feature_cache is not None and fingerprint and scorer_key:
        search_key = _search_key(keys, fingerprint, schedule, scorer_key, labels)
    outcome = HalvingOutcome(ranking=[], scores={})
    holders: dict[str, int] = {}  # distributed: the rank that holds each model's features of earlier iterations
    ready: set[str] = set()  # distributed: models whose owner holds this iteration's features (`base`: all)
    try:
        for it in range(1, schedule.num_iterations + 1):
            batches = extractor.batches_for(it)
            new_items = sum(len(b) for b in batches)
            record = IterationRecord(it, list(alive), {}, [], new_items, len(schedule.train_items(it)), Counters())
            restored = _restore(feature_cache, search_key, it, alive, features, schedule)
            # ranks must agree on every iteration they skip; without a search key none restores, on any rank
            if ranks.distributed and search_key is not None and not all(ranks.gather(restored is not None)):
                restored = None
            if restored is not None:
                holders, ready = {}, set()  # every rank read every survivor's features of the iterations so far
                record.scores, record.survivors, record.cached = restored["scores"], restored["survivors"], alive
                record.failed = restored.get("failed", {})
                outcome.failed.update(record.failed)
                record.restored = True
                _report_ties(record)
                features.drop([m for m in alive if m not in record.survivors])
                extractor.prune([m for m in alive if m not in record.survivors])
                alive = record.survivors
                outcome.iterations.append(record)
                _iteration_done(record, schedule.num_iterations, on_iteration_end)
                continue
            bar = progress_bar(
                desc=f"extraction, iteration {it}/{schedule.num_iterations}", unit="block-item", leave=False
            )
            executor.on_batch = bar.update
            work = [(batches, alive)]
            if ranks.distributed:  # this rank's share of the models that must run (`base`'s ran in iteration 1)
                alive_tree = task_tree([by_id[m] for m in alive if m not in ready])
                work = ranks.work(alive_tree, batches) if alive_tree.models else []
            record.cached = _extract(extractor, features, work, it, record)
            bar.close()
            # a model a block failed for leaves in the first iteration that scores the batch it failed on: the
            # same iteration whichever strategy ran it (`base` runs all batches in iteration 1, `alsatian` each
            # iteration's own), so the strategies drop it alike
            needed = {*schedule.test.items, *schedule.train_items(it)}
            broken = {
                m: executor.failed[m][0] for m in alive if m in executor.failed and needed & {*executor.failed[m][1]}
            }
            if ranks.distributed:  # a rank knows of the failures in the blocks it ran: every rank drops them alike,
                merged: dict[str, str] = {}  # with the lowest rank's reason where two ranks met one model's
                for part in ranks.gather(broken):
                    for m, reason in part.items():
                        merged.setdefault(m, reason)
                broken = merged
            mine = [m for m in alive if m not in broken]
            if ranks.distributed:  # each model's features go to the rank that scores it, and stay there
                owners = ranks.owners(mine, holders)
                _send_features(ranks, features, work, owners, holders)
                mine = [m for m in mine if owners[m] == ranks.rank]
                features.drop([m for m in alive if owners.get(m) != ranks.rank])
                holders = owners
            scores = _score(scorer, features, mine, schedule, it, label_t, device, record.counters)
            if ranks.distributed:  # one exchange: every rank selects from all scores, and counts all ranks' work
                extracted_here = {m for _, models in work for m in models} - set(record.cached)
                # the models whose next iteration's features their owner holds already: nobody extracts them
                upcoming = (
                    [i for b in extractor.batches_for(it + 1) for i in b] if it < schedule.num_iterations else []
                )
                held = [m for m in mine if upcoming and features.has(m, upcoming)]
                share = Share(scores, record.cached, extracted_here, held, record.counters, bool(record.unique_edges))
                total = ranks.combine(share, alive, *executor.counter_keys(alive))
                ready, scores = total.held, total.scores
                cached = total.cached - total.extracted  # cached means: no rank extracted any of its batches
                record.cached = [m for m in alive if m in cached]
                record.rank_block_executions = total.rank_block_executions
                record.rank_seconds = total.rank_seconds
                record.counters = total.counters
                if total.unique_edges:  # the whole tree's, as one process reports it
                    record.unique_edges, record.naive_edges = alive_tree.num_edges(), alive_tree.naive_edges()
            # a candidate a block failed for, or whose features are not finite (NaN weights of a diverged fine-tune,
            # an overflow), has no score: it leaves the search with the reason, and the others go on. Every strategy
            # computes the same features of the same rows, so it leaves in every strategy alike.
            scores |= {m: float("nan") for m in broken}
            record.failed = {m: broken.get(m) or _NOT_FINITE.format(it=it) for m in alive if scores[m] != scores[m]}
            outcome.failed.update(record.failed)
            scored = [m for m in alive if m not in record.failed]
            if not scored:
                raise ConfigurationError(f"No candidate can be scored: all {len(alive)} left in iteration {it} were "
                                         f"dropped: {record.failed}")  # fmt: skip
            record.scores.update({m: scores[m] for m in scored})
            record.survivors = select(scored, record.scores, schedule.survivors_after(it, len(scored)), order)
            _report_ties(record)
            pruned = [m for m in alive if m not in record.survivors]
            features.drop(pruned)
            extractor.prune(pruned)
            alive = record.survivors
            outcome.iterations.append(record)
            features.flush()  # every feature this iteration scored is on disk before it counts as finished
            if feature_cache is not None and features.disk is not None:
                feature_cache.evict(lazy=True)  # within budget during a long search too, not only at its end
            if search_key is not None:
                state = {"candidates": record.candidates, "scores": record.scores, "survivors": record.survivors,
                         "failed": record.failed}  # fmt: skip
                try:
                    feature_cache.save_iteration(search_key, it, state)
                except OSError as e:  # a full disk costs the search its resumability, never its result
                    logger.warning("feature cache: cannot save iteration %d (%s); later ones are not saved", it, e)
                    search_key = None
            _iteration_done(record, schedule.num_iterations, on_iteration_end)
    finally:
        features.close()
        cache.clear()
        executor.lru.clear()
    outcome.ranking = alive
    outcome.feature_cache_error = features.disk_error
    outcome.scores = {m: outcome.iterations[-1].scores[m] for m in alive}
    outcome.seconds = time.perf_counter() - start
    return outcome


def _iteration_done(record: IterationRecord, num_iterations: int,
                    on_iteration_end: Callable[[IterationRecord], None] | None) -> None:  # fmt: skip
    """Logs a finished iteration and hands it to `on_iteration_end`: a restored one too, so that callbacks see
    every iteration of a resumed or repeated search, in order (`record.restored` tells them apart)."""
    logger.info(
        "iteration %d/%d: %d -> %d candidates%s", record.iteration, num_iterations, len(record.candidates),
        len(record.survivors), " (restored from the feature cache)" if record.restored else "",
    )  # fmt: skip
    if on_iteration_end is not None:
        on_iteration_end(record)


def _send_features(ranks: Ranks, features: FeatureStore, work: list[tuple[list[tuple], list[str]]],
                   owners: dict[str, int], holders: dict[str, int]) -> None:  # fmt: skip
    """Each model's features this rank extracted (or read from the feature cache) this iteration go to the rank
    that scores the model (`owners`); all of them, from earlier iterations too, where the model moved away from
    this rank (`holders`). A model without an owner (a block failed for it) goes nowhere, and a batch its block
    failed on, for a later iteration, is not sent."""
    items_to: list[dict[str, list[int]]] = [{} for _ in range(ranks.world)]  # rank -> model -> items
    for batches, models in work:
        for m in models:
            if m in owners and owners[m] != ranks.rank:
                items_to[owners[m]].setdefault(m, []).extend(i for b in batches if features.has(m, b) for i in b)
    for m, owner in owners.items():
        if holders.get(m) == ranks.rank and owner != ranks.rank:
            items_to[owner][m] = features.items(m)  # this iteration's items among them
    # the item indices travel as tensors beside the rows: the header exchange reaches every rank, and item
    # lists in it would grow with ranks x models x items
    parts = []
    for items in items_to:
        tensors = {}
        for m, i in items.items():
            if i:
                tensors["items", m] = torch.tensor(i, dtype=torch.int64)
                tensors["rows", m] = features.export(m, i)
        parts.append(tensors)
    for sender, tensors in enumerate(ranks.send_tensors(parts)):
        if sender != ranks.rank:
            for (kind, model), items in tensors.items():
                if kind == "items":
                    features.import_rows(model, items.tolist(), tensors["rows", model])


def _extract(extractor, features: FeatureStore, work: list[tuple[list[tuple[int, ...]], list[str]]],
             iteration: int, record: IterationRecord) -> list[str]:  # fmt: skip
    """Extract what is neither in RAM nor in the feature cache, batch by batch; returns the candidates that
    read features from the cache. `work` holds (batches, models) groups: one process runs every alive model on
    all the iteration's batches, a rank its share (`Ranks.work`). Within a group, candidates missing the same
    batches run together (usually: all of them, on every batch); the batches are the schedule's own, so a
    resumed, grown or distributed search computes the same bits."""
    from_disk, running = set(), set()
    for batches, models in work:
        items = [i for b in batches for i in b]
        from_disk |= {m for m in models if features.preload(m, items)[1]}  # in RAM already (`base`) reads nothing
        groups: dict[tuple, list[str]] = {}
        for m in models:
            if m in extractor.executor.failed:  # it fails again where it failed: it leaves when that batch counts
                continue
            missing = tuple(b for b in batches if not features.has(m, b))
            if missing:
                groups.setdefault(missing, []).append(m)
        for missing, group in groups.items():
            extractor.extract(iteration, group, record, list(missing))
            running |= set(group)
    models = list(dict.fromkeys(m for _, ms in work for m in ms))
    return [m for m in models if m in from_disk and m not in running]


def _search_key(keys: dict[str, str], fingerprint: str, schedule: DataSchedule, scorer_key: str,
                labels: list[int]) -> str:  # fmt: skip
    """Names one search: its candidates' features in order, the data, every unit's items, the labels scored
    against (the dataset's fingerprint does not say which column, or how its values map to classes) and the
    scorer. Not the strategy: it never changes a score."""
    units = [schedule.test.items, *(u.items for u in schedule.train_slices)]
    text = json.dumps([list(keys.items()), fingerprint, units, schedule.result_size, scorer_key, labels])
    return hashlib.sha256(text.encode()).hexdigest()


def _restore(cache: FeatureCache | None, search_key: str | None, iteration: int, alive: list[str],
             features: FeatureStore, schedule: DataSchedule) -> dict | None:  # fmt: skip
    """A persisted iteration of this search with the same candidates, once the survivors' features for every
    item scored so far are back in RAM (the next iteration scores them); None: run the iteration."""
    state = cache.load_iteration(search_key, iteration) if cache is not None and search_key else None
    if state is None or state.get("candidates") != alive:
        return None
    items = (*schedule.test.items, *schedule.train_items(iteration))
    if not all(features.preload(m, items)[0] for m in state["survivors"]):
        return None
    return state


_NOT_FINITE = (
    "its features or its proxy score are not finite (NaN or infinite) in iteration {it}: a diverged fine-tune's "
    "NaN weights, or weights that overflow on this data. Check its weights (`torch.isfinite`)."
)


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
    train = {m: features.get(m, train_items) for m in alive}
    test = {m: features.get(m, test_items) for m in alive}
    finite = [m for m in alive if all_finite(train[m]) and all_finite(test[m])]
    scores = score_all(
        scorer,
        train_features=[train[m] for m in finite],
        train_labels=labels[list(train_items)],
        test_features=[test[m] for m in finite],
        test_labels=labels[list(test_items)],
        device=device,
    ) if finite else []  # fmt: skip
    bar.update(len(alive))
    bar.close()
    counters.add_time("proxy_scoring", time.perf_counter() - t0)
    # NaN marks a model without a score (non-finite features, or a scorer that gave NaN); it travels through the
    # ranks' score exchange like any score
    return {m: float("nan") for m in alive} | {m: float(x) for m, x in zip(finite, scores)}
