"""The execution engine (paper §4.3): runs DFS+ plans, or whole models for the baselines.

Both paths use the same batches, block step functions, feature store and instrumentation, so only the
execution order (and what is cached) differs between strategies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..adapters import State
from ..candidates.candidate import EngineCandidate
from ..errors import BlockFailedError, StateLostError
from ..plan import BlockInference, ModifyCache, Plan
from ..store.identity import prefix_chain
from .blocks import BlockLRU
from .cache import TieredCache
from .features import FeatureStore


# prepared(input_key, items) -> dict of batched input tensors (the data store's job)
PrepareFn = Callable[[str, tuple[int, ...]], dict[str, torch.Tensor]]

PHASES = ("prepare_data", "prepare_model", "inference", "proxy_scoring")


@dataclass
class Counters:
    """What one iteration of one strategy did."""

    seconds: dict[str, float] = field(default_factory=lambda: {p: 0.0 for p in PHASES})
    block_executions: int = 0
    blocks_loaded: int = 0
    bytes_loaded: int = 0
    cache_peak: int = 0
    cache_tier_peaks: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    c_min: int = 0
    compute_cost: float = 0.0  # sum of block cost x items executed
    # content hash -> [items, seconds]: what each block cost in time, which FLOPs only approximate (a strided
    # stem or a depthwise conv on a tiny map takes far more time per FLOP than a wide matmul)
    block_time: dict[str, list] = field(default_factory=dict)
    # task-tree node (its prefix chain hash, 16 hex digits) -> items its block ran on: which computations ran,
    # where `block_time` says which weights (a parameterless pool after a unique block is a unique node)
    node_items: dict[str, int] = field(default_factory=dict)

    def add_time(self, phase: str, seconds: float) -> None:
        self.seconds[phase] += seconds


class _BlockError(Exception):
    """Raised out of `_run_blocks`: which of its blocks (by position) raised, and on which of the batch's items
    (positions in the batch; empty when each item alone passes)."""

    def __init__(self, position: int, cause: Exception, culprits: list[int]):
        super().__init__(str(cause))
        self.position, self.cause, self.culprits = position, cause, culprits


def _culprits(block, state: State) -> list[int]:
    """The items of a batch that `block` fails on alone (states are batch-first): the rows to name."""
    bad = []
    for i in range(state[0].shape[0]):
        try:
            block.run(tuple(t[i : i + 1] for t in state))
        except _NOT_THE_CANDIDATES:
            raise
        except Exception:
            bad.append(i)
    return bad


# resource errors end the search (another batch size or budget is the fix); anything else a block raises is the
# candidate's own fault, and costs the search only the candidates that run that block
_NOT_THE_CANDIDATES = (MemoryError, torch.OutOfMemoryError)


def _node_key(node: str) -> str:
    """A task-tree node's key in `Counters.node_items`: its prefix chain hash, cut to 16 hex digits."""
    return node[:16]


def _cuda_mark() -> torch.cuda.Event:
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


class Executor:
    def __init__(
        self,
        candidates: dict[str, EngineCandidate],
        prepare: PrepareFn,
        *,
        device: torch.device,
        cache: TieredCache,
        features: FeatureStore,
        block_lru_bytes: int = 2 << 30,
    ):
        self.candidates = candidates
        self.prepare = prepare
        self.device = device
        self.cache = cache
        self.features = features
        self.lru = BlockLRU(device, block_lru_bytes)
        self._chains: dict[str, list[str]] = {}
        self.on_batch: Callable[[int], object] | None = None  # progress: called with block executions done
        # models a block failed for: why, and the batch it failed on (their features stop before it)
        self.failed: dict[str, tuple[str, tuple[int, ...]]] = {}

    # -- shared pieces ---------------------------------------------------------------------------------------
    def _inputs(self, candidate: EngineCandidate, items: tuple[int, ...], counters: Counters) -> State:
        start = time.perf_counter()
        inputs = self.prepare(candidate.input_key, items)
        with torch.inference_mode():
            state = tuple(t.to(self.device, non_blocking=True) for t in candidate.initial_state(inputs))
        counters.add_time("prepare_data", time.perf_counter() - start)
        return state

    def _load(self, blocks, counters: Counters):
        loads, nbytes, secs = self.lru.loads, self.lru.bytes_loaded, self.lru.load_seconds
        loaded = [self.lru.get(b) for b in blocks]
        counters.blocks_loaded += self.lru.loads - loads
        counters.bytes_loaded += self.lru.bytes_loaded - nbytes
        counters.add_time("prepare_model", self.lru.load_seconds - secs)
        return loaded

    def _chain(self, model_id: str) -> list[str]:
        """The task-tree node keys of a model's path: [root, after block 1, after block 2, ...]."""
        chain = self._chains.get(model_id)
        if chain is None:
            candidate = self.candidates[model_id]
            chain = self._chains[model_id] = prefix_chain(
                candidate.input_key, [b.content_hash for b in candidate.blocks]
            )
        return chain

    def counter_keys(self, models: list[str]) -> tuple[list[str], list[str]]:
        """Every key of `Counters.block_time` and of `node_items` that running `models` can record, sorted: the
        same lists on every rank, so that `Ranks.combine` adds the counters up densely."""
        blocks = sorted({b.content_hash for m in models for b in self.candidates[m].blocks})
        nodes = sorted({_node_key(node) for m in models for node in self._chain(m)[1:]})
        return blocks, nodes

    def _stored(self, key: str, items: tuple[int, ...], counters: Counters) -> State:
        """A batch's stored state (what a plan rooted at a persisted prefix starts from), on the device.

        Raises:
            StateLostError: when it is gone or corrupt since planning; the strategy plans again without it.
        """
        start = time.perf_counter()
        state = self.features.get_state(key, items)
        if state is None:
            raise StateLostError(key)
        state = tuple(t.to(self.device, non_blocking=True) for t in state)
        counters.add_time("prepare_data", time.perf_counter() - start)
        return state

    def _run_blocks(
        self, blocks, state: State, items: int, counters: Counters, *, nodes: list[str] = (),
        taps: dict[int, str] | None = None, batch: tuple[int, ...] = (),
    ) -> State:  # fmt: skip
        """Runs the (loaded) blocks in order on one batch, counting executions, FLOPs and time, also per block
        and per task-tree node (`nodes`: the node each block's output is). `taps` maps a block's position to
        the state key its output is persisted under (for `batch`)."""
        cuda = self.device.type == "cuda"
        mark = _cuda_mark if cuda else time.perf_counter
        t0 = time.perf_counter()
        spans, begin = [], mark()  # CUDA events time the kernels without a sync per block
        with torch.inference_mode():
            for j, block in enumerate(blocks):
                try:
                    state = block.run(state)
                except _NOT_THE_CANDIDATES:
                    raise
                except Exception as e:
                    raise _BlockError(j, e, _culprits(block, state)) from e
                end = mark()
                spans.append((begin, end))
                if taps and j in taps:  # a shared prefix's output: later models start from it
                    self.features.put_state(taps[j], batch, state)
                    end = mark()
                begin = end
        if cuda:
            torch.cuda.synchronize(self.device)
            seconds = [a.elapsed_time(b) / 1000 for a, b in spans]
        else:
            seconds = [b - a for a, b in spans]
        counters.add_time("inference", time.perf_counter() - t0)
        counters.block_executions += len(blocks) * items
        counters.compute_cost += sum(b.cost for b in blocks) * items
        for block, span in zip(blocks, seconds):
            entry = counters.block_time.setdefault(block.content_hash, [0, 0.0])
            entry[0] += items
            entry[1] += span
        for node in nodes:
            key = _node_key(node)
            counters.node_items[key] = counters.node_items.get(key, 0) + items
        if self.on_batch is not None:
            self.on_batch(len(blocks) * items)
        return state

    def _fail(self, model_id: str, depth: int, error: _BlockError, batch: tuple[int, ...]) -> BlockFailedError:
        """Records the failure of `model_id`'s block `depth` (0-based) on `batch` for every model that runs that
        block after the same prefix, and returns it to raise."""
        node = self._chain(model_id)[depth + 1]
        models = [m for m in self.candidates if node in self._chain(m)]
        rows = [batch[i] for i in error.culprits] or list(batch)
        shown = ", ".join(map(str, rows[:8])) + (", ..." if len(rows) > 8 else "")
        where = f"row {shown}" if len(rows) == 1 else f"rows {shown}"
        if not error.culprits:
            where = f"a batch of rows {shown} (each row alone passes)"
        cause = error.cause
        reason = (
            f"its block {depth} of {len(self.candidates[model_id].blocks)} raised {type(cause).__name__}: {cause}, "
            f"on the target dataset's {where} (rows count `train_dataset`'s, then `eval_dataset`'s)"
        )
        for m in models:
            self.failed.setdefault(m, (reason, batch))
        return BlockFailedError(models, reason)

    def _taps(self, step: BlockInference, persist: set[str]) -> dict[int, str]:
        """Positions in the step's blocks (-1: its input) whose output is a state to persist."""
        taps = {}
        for j in range(-1, step.stop - step.start):
            key = self.features.state_key(step.model, step.start + j + 1)
            if key is not None and key in persist:
                taps[j] = key
        return taps

    # -- alsatian: one chunk of a DFS+ plan ------------------------------------------------------------------
    def run_plan_chunk(
        self,
        plan: Plan,
        chunk: list[tuple[int, ...]],
        counters: Counters,
        *,
        sources: dict[str, str] | None = None,
        persist: set[str] | None = None,
    ) -> None:
        """Executes the plan's block-inference and cache steps over the chunk's batches.

        Args:
            sources: root input key -> the state key of a stored state that root stands for (read, not computed).
            persist: state keys to write as they are computed (outputs of shared prefixes, inputs).
        """
        sources, persist = sources or {}, persist or set()
        needed_inputs = {s.input for s in plan.steps if isinstance(s, BlockInference)}
        chunk_items = sum(len(b) for b in chunk)
        for step in plan.steps:
            if isinstance(step, ModifyCache):
                self.cache.release(step.node)
                continue
            if not isinstance(step, BlockInference):
                continue  # ScoreModel runs after the last chunk
            candidate = self.candidates[step.model]
            blocks = self._load(candidate.blocks[step.start : step.stop], counters)
            keep = step.output in needed_inputs
            if keep:
                self.cache.reserve(step.output, plan.node_bytes_per_item[step.output] * chunk_items)
            root_input = plan.roots.get(step.input)
            stored = sources.get(root_input) if root_input is not None else None
            taps = self._taps(step, persist) if stored is None else {}
            nodes = self._chain(step.model)[step.start + 1 : step.stop + 1]
            cached = iter(chunk) if root_input is not None else self.cache.batches(step.input)
            for batch_items, source in zip(chunk, cached):
                if stored is not None:
                    state = self._stored(stored, batch_items, counters)
                elif root_input is not None:
                    state = self._inputs(candidate, batch_items, counters)
                    if -1 in taps:
                        self.features.put_state(taps[-1], batch_items, state)
                else:
                    state = source
                try:
                    state = self._run_blocks(blocks, state, len(batch_items), counters, nodes=nodes, taps=taps,
                                             batch=batch_items)  # fmt: skip
                except _BlockError as e:
                    raise self._fail(step.model, step.start + e.position, e, batch_items) from e.cause
                for model_id in step.features_of:
                    self.features.add(model_id, batch_items, state[0])
                if keep:
                    t0 = time.perf_counter()
                    self.cache.append(step.output, state)
                    counters.add_time("inference", time.perf_counter() - t0)
        counters.cache_peak = max(counters.cache_peak, self.cache.peak)
        for name, peak in self.cache.tier_peaks.items():
            counters.cache_tier_peaks[name] = max(counters.cache_tier_peaks.get(name, 0), peak)

    # -- shift / base: one whole model ----------------------------------------------------------------------
    def run_model(self, model_id: str, batches: list[tuple[int, ...]], counters: Counters) -> None:
        """Runs every block of one model over the batches; nothing is shared with other models."""
        candidate = self.candidates[model_id]
        self.lru.clear()  # the baselines load each model on its own
        blocks = self._load(candidate.blocks, counters)
        try:
            for batch_items in batches:
                try:
                    state = self._run_blocks(
                        blocks, self._inputs(candidate, batch_items, counters), len(batch_items), counters,
                        nodes=self._chain(model_id)[1:],
                    )  # fmt: skip
                except _BlockError as e:  # this model stops here; the strategy goes on with the next one
                    self._fail(model_id, e.position, e, batch_items)
                    return
                self.features.add(model_id, batch_items, state[0])
        finally:
            self.lru.clear()
