"""Extracted features, per model and item, kept in RAM (the baselines too) and reused across iterations.

With a `FeatureCache`, every batch a model extracts is also written to disk, and `preload` reads back what
earlier searches (or this one, before a crash) extracted: those models skip extraction for those items.
The store also names, reads and writes the *states* of shared prefixes (`state_key`), which `alsatian`
persists and starts later models from.

Writes go to disk on one background thread, so encoding, hashing and file creation overlap the blocks that
run meanwhile; `flush` waits for them (before an iteration is recorded as finished, and at the end). Blocks
never modify their input in place (the activation cache relies on that too), so what is written is what was
computed, and a write that still raced would fail verification when read, never be used.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from ..adapters import State
from ..store.feature_cache import FeatureCache


logger = logging.getLogger("alsatian_hf")

MAX_PENDING_WRITES = 64  # batches queued for the writer before `add` waits: bounds the RAM they hold


class FeatureStore:
    """Args:
    disk: the persistent cache, or None (RAM only).
    keys: each model's `feature_key` (models without one are never persisted).
    fingerprint: the dataset's fingerprint, naming its items on disk.
    state_keys: each model's `state_key` after 0, 1, ... blocks (its last block's output is its features);
        models without them never persist or read states.
    """

    def __init__(
        self,
        disk: FeatureCache | None = None,
        keys: dict[str, str] | None = None,
        fingerprint: str | None = None,
        state_keys: dict[str, list[str]] | None = None,
    ) -> None:
        self._rows: dict[str, dict[int, tuple[torch.Tensor, int]]] = {}  # model -> item -> (batch tensor, row)
        self.disk = disk if fingerprint else None
        self.keys = keys or {}
        self.state_keys = state_keys or {}
        self.fingerprint = fingerprint
        self.disk_error: str | None = None  # why the disk cache was given up mid-search (a full disk)
        self._writer: ThreadPoolExecutor | None = None
        self._pending: deque[Future] = deque()

    def _give_up(self, e: OSError) -> None:
        """A full disk costs this search its persistence, never its result."""
        if self.disk is None:
            return
        self.disk_error = f"{type(e).__name__}: {e}"
        logger.warning("feature cache: cannot write to %s (%s); this search keeps its features in RAM only. "
                       "Free space or lower `feature_cache_budget`.", self.disk.root, e)  # fmt: skip
        self.disk = None

    def _submit(self, write, *args) -> None:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="alsatian-feature-cache")
        while len(self._pending) >= MAX_PENDING_WRITES:
            self._settle(self._pending.popleft())
        self._pending.append(self._writer.submit(write, *args))

    def _settle(self, future: Future) -> None:
        try:
            future.result()
        except OSError as e:
            self._give_up(e)

    def flush(self) -> None:
        """Wait until every queued write is on disk (or has failed, which gives the disk cache up)."""
        while self._pending:
            self._settle(self._pending.popleft())

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None

    def add(self, model_id: str, items: tuple[int, ...], features: torch.Tensor) -> None:
        features = features.detach().to("cpu").float().flatten(1)
        rows = self._rows.setdefault(model_id, {})
        for row, item in enumerate(items):
            rows[item] = (features, row)
        if self.disk is not None and model_id in self.keys:
            self._submit(self.disk.put, self.keys[model_id], self.fingerprint, tuple(items), features)

    def preload(self, model_id: str, items) -> tuple[bool, bool]:
        """Read the model's missing features among `items` from the disk cache, whatever part of them is there.
        Returns (every item's features are in RAM now, some were read from disk)."""
        rows = self._rows.setdefault(model_id, {})
        missing = [i for i in items if i not in rows]
        if not missing:
            return True, False
        if self.disk is None or model_id not in self.keys:
            return False, False
        found = self.disk.get(self.keys[model_id], self.fingerprint, missing)
        for item, row in found.items():
            rows[item] = (row.unsqueeze(0), 0)
        return len(found) == len(missing), bool(found)

    def export(self, model_id: str, items: list[int]) -> torch.Tensor | None:
        """The model's features of `items`, one row each (for another rank's `import_rows`); None for no items."""
        return self.get(model_id, items) if items else None

    def import_rows(self, model_id: str, items: list[int], rows: torch.Tensor | None) -> None:
        """Features another rank extracted (`export`); rows this store holds already are kept."""
        held = self._rows.setdefault(model_id, {})
        for row, item in enumerate(items):
            held.setdefault(item, (rows, row))

    def items(self, model_id: str) -> list[int]:
        """The items whose features of the model this store holds."""
        return list(self._rows.get(model_id, ()))

    def has(self, model_id: str, items) -> bool:
        rows = self._rows.get(model_id, {})
        return all(i in rows for i in items)

    def get(self, model_id: str, items) -> torch.Tensor:
        """The model's features of `items`, a row each, in a new tensor. Consecutive items that are consecutive
        rows of one extracted batch (the usual case) are copied as one slice, not indexed row by row."""
        rows = self._rows[model_id]
        parts, source, start, stop = [], None, 0, 0
        for i in items:
            tensor, row = rows[i]
            if tensor is source and row == stop:
                stop += 1
                continue
            if source is not None:
                parts.append(source[start:stop])
            source, start, stop = tensor, row, row + 1
        if source is not None:
            parts.append(source[start:stop])
        return torch.cat(parts)

    def nbytes(self) -> int:
        seen = {id(t): t.numel() * t.element_size() for rows in self._rows.values() for t, _ in rows.values()}
        return sum(seen.values())

    def drop(self, model_ids) -> None:
        for m in model_ids:
            self._rows.pop(m, None)

    # -- states of shared prefixes ----------------------------------------------------------------------------
    def state_key(self, model_id: str, depth: int) -> str | None:
        """The key of `model_id`'s state after `depth` blocks (0: its preprocessed inputs); None where states
        are not persisted, and for its last block (that output is its features)."""
        keys = self.state_keys.get(model_id)
        return keys[depth] if self.disk is not None and keys and depth < len(keys) else None

    def stored_states(self, key: str) -> set[str]:
        """The segment names (`FeatureCache.segment_name`) of the batches whose state `key` is on disk."""
        return self.disk.stored_states(key, self.fingerprint) if self.disk is not None else set()

    def get_state(self, key: str, items: tuple[int, ...]) -> State | None:
        return self.disk.get_state(key, self.fingerprint, items) if self.disk is not None else None

    def put_state(self, key: str, items: tuple[int, ...], state: State) -> None:
        if self.disk is None:
            return
        disk, fingerprint = self.disk, self.fingerprint

        def write() -> None:
            if not disk.has_state(key, fingerprint, items):
                disk.put_state(key, fingerprint, items, state)

        self._submit(write)
