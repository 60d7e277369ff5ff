"""Block sources: where a candidate's block tensors come from, and how each block's content hash is known.

`LocalBlockSource` reads a checkpoint folder memory-mapped; `HubBlockSource` reads a Hub repo's safetensors
shards by byte range, hashes each block from its bytes and stores it once in the block store (the head is
never fetched). Both give the same content hash for the same tensors.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import torch

from ..adapters import SplitModel
from ..errors import BlockIntegrityError, NoSafetensorsError
from ..hub import RangeReader, TensorLocation, merge_ranges
from ..hub.headers import layout_from_json
from ..hub.xet import XetReader
from ..store.block_store import BlockStore
from ..store.identity import content_hash, empty_block_hash, safetensors_dtype


logger = logging.getLogger("alsatian_hf")


def files_identity(lfs_sha256s: list[str]) -> str | None:
    """One id for a checkpoint's files: equal LFS sha256s mean identical files, hence identical blocks."""
    if not lfs_sha256s or any(not s for s in lfs_sha256s):
        return None
    return hashlib.sha256("\0".join(sorted(lfs_sha256s)).encode()).hexdigest()


class TensorSource(Protocol):
    """Where a candidate's block tensors come from: `LocalBlockSource` or `HubBlockSource`."""

    def keys(self) -> list[str]: ...

    def shape(self, key: str) -> tuple[int, ...]:
        """The checkpoint tensor's shape (from its header: no bytes are read)."""
        ...

    def block_hash(self, split: SplitModel, index: int) -> str: ...

    def load_tensors(self, split: SplitModel, index: int) -> dict[str, torch.Tensor]: ...

    def prepare(self, split: SplitModel) -> None:
        """Establish every block's hash ahead of `block_hash` calls (a Hub source does it in parallel)."""


def _unknown(split: SplitModel, known: dict[int, str]) -> list[int]:
    """The split's blocks with tensors whose hash `known` lacks (a weightless block needs none)."""
    return [i for i, b in enumerate(split.blocks) if b.keys and i not in known]


class LocalBlockSource:
    """Blocks of a local `model.safetensors` or sharded `model.safetensors.index.json` checkpoint, read
    memory-mapped and hashed in memory (the twin of `HubBlockSource`)."""

    def __init__(self, folder: str | Path):
        from safetensors import safe_open

        self.folder = Path(folder)
        index = self.folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
        elif (self.folder / "model.safetensors").is_file():
            with safe_open(self.folder / "model.safetensors", framework="pt") as f:
                weight_map = {k: "model.safetensors" for k in f.keys()}
        else:
            raise NoSafetensorsError(
                f"{self.folder} has no model.safetensors or model.safetensors.index.json; "
                "weights load only from safetensors (convert a .bin checkpoint first)."
            )
        self.weight_map: dict[str, str] = weight_map
        self._handles: dict[str, object] = {}

    def keys(self) -> list[str]:
        return list(self.weight_map)

    def shape(self, key: str) -> tuple[int, ...]:
        self._tensor_handle(key)
        return tuple(self._handles[self.weight_map[key]].get_slice(key).get_shape())

    def _tensor_handle(self, key: str) -> None:
        from safetensors import safe_open

        shard = self.weight_map[key]
        if shard not in self._handles:
            self._handles[shard] = safe_open(self.folder / shard, framework="pt")

    def _tensor(self, key: str) -> torch.Tensor:
        self._tensor_handle(key)
        return self._handles[self.weight_map[key]].get_tensor(key)

    def block_hash(self, split: SplitModel, index: int) -> str:
        block = split.blocks[index]
        if not block.keys:
            return empty_block_hash(split.family, block.name)

        def items():
            for key in block.keys:
                t = self._tensor(key).contiguous()
                yield (
                    block.relative_name(key),
                    safetensors_dtype(t.dtype),
                    list(t.shape),
                    t.reshape(-1).view(torch.uint8).numpy().tobytes(),
                )

        return content_hash(items())

    def load_tensors(self, split: SplitModel, index: int) -> dict[str, torch.Tensor]:
        return {k: self._tensor(k) for k in split.blocks[index].keys}

    def prepare(self, split: SplitModel) -> None:
        """Nothing to do: local blocks are hashed from memory-mapped tensors on demand."""


class HubBlockSource:
    """A `TensorSource` for one repo at one commit. Heads are never fetched: only blocks' keys are read.

    A block not in the store yet is established, in this order: by an identical checkpoint's LFS sha256; by a
    Xet proof against a stored block (the base model's first), fetching only what the proof leaves open (see
    `xet_identity`); or by fetching and hashing its bytes. The store records which.

    Args:
        files_sha: one id of the checkpoint's LFS sha256s (see `files_identity`).
        xet: reads Xet reconstructions; None (or no `xet_hashes`) skips proofs.
        xet_hashes: the checkpoint files' Xet hashes.
        base_model: the repo the card names as `base_model`, tried first as the proofs' reference.
    """

    def __init__(
        self,
        repo_id: str,
        revision: str,
        layout: dict[str, TensorLocation],
        store: BlockStore,
        reader: RangeReader,
        files_sha: str | None = None,
        *,
        xet: XetReader | None = None,
        xet_hashes: dict[str, str] | None = None,
        base_model: str | None = None,
    ):
        self.repo_id = repo_id
        self.revision = revision
        self.layout = layout
        self.store = store
        self.reader = reader
        self.files_sha = files_sha
        self.xet = xet if xet_hashes else None
        self.xet_hashes = xet_hashes or {}
        self.base_model = base_model
        self._known: dict[int, str] | None = None
        self._index_lock = threading.Lock()
        self._indexed: dict[str, dict[int, str]] | None = None  # per family, read by `read_index`

    def read_index(self) -> None:
        """Read the store's index of this commit now (the opening thread calls it). The search's main thread then
        finds it in memory: its own index queries waited on the GIL behind the threads opening the next
        candidates, 3-10 ms each."""
        self._indexed = self.store.commit_hashes(self.repo_id, self.revision)

    def prepare(self, split: SplitModel, *, workers: int = 8) -> None:
        """Establish every block's identity now, several blocks at a time (the requests are I/O-bound).

        The candidate is locked once, not block by block, and its blocks are indexed in one transaction: a
        lock and a commit per block cost more than proving a block from cached terms.
        """
        known = self._index(split)
        if not _unknown(split, known):
            return
        with self.store.lock(self._lock_name()):
            known.update(self.store.model_hashes(self.repo_id, self.revision, split.family))  # another process's
            # blocks that list the same tensors (ALBERT's layers of one group) are one block's bytes: fetch once
            alike: dict[tuple, list[int]] = {}
            for i in _unknown(split, known):
                block = split.blocks[i]
                alike.setdefault(tuple((k, block.relative_name(k)) for k in block.keys), []).append(i)
            todo = [indices[0] for indices in alike.values()]
            refs = self._references(split, todo)
            # tensors several of them list (DeBERTa's relative embeddings, in every layer): fetched once, where no
            # Xet proof against a stored block might spare the bytes
            listed = Counter(k for i in todo if not refs[i] for k in split.blocks[i].shared)
            twice = [k for k, n in listed.items() if n > 1]
            fetched = {k: raw for k, (*_, raw) in zip(twice, self._fetch(twice, str))} if twice else {}
            with ThreadPoolExecutor(max(1, min(workers, len(todo)))) as pool:
                first = dict(zip(todo, pool.map(lambda i: self._establish(split, i, refs[i], fetched), todo)))
            self._record(split, {i: first[indices[0]] for indices in alike.values() for i in indices})

    def _lock_name(self) -> str:
        return f"{self.repo_id}-{self.revision}".replace("/", "--")

    def _record(self, split: SplitModel, established: dict[int, tuple[str, str]]) -> None:
        """Index newly established blocks, one transaction per identity method."""
        by_method: dict[str, dict[int, str]] = {}
        for i, (h, method) in established.items():
            by_method.setdefault(method, {})[i] = h
            self.reader.stats.record_identity(method)
        for method, hashes in by_method.items():
            self.store.index_model(self.repo_id, self.revision, split.family, hashes, method=method)
        hashes = {i: h for i, (h, _) in established.items()}
        if self.files_sha and hashes:
            self.store.index_files(self.files_sha, split.family, hashes)
        self._known.update(hashes)

    def keys(self) -> list[str]:
        return list(self.layout)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.layout[key].shape)

    def _index(self, split: SplitModel) -> dict[int, str]:
        with self._index_lock:
            if self._known is None:
                indexed = self._indexed
                if indexed is None:  # `read_index` was not called
                    indexed = self.store.commit_hashes(self.repo_id, self.revision)
                self._known = dict(indexed.get(split.family, {}))
                if self.files_sha and _unknown(split, self._known):  # an identical checkpoint's blocks fill gaps
                    shortcut = self.store.files_hashes(self.files_sha, split.family)
                    new = {i: h for i, h in shortcut.items() if i not in self._known}
                    if new:
                        logger.debug("%s: blocks known from an identical checkpoint (LFS sha256)", self.repo_id)
                        self._known.update(new)
                        self.store.index_model(self.repo_id, self.revision, split.family, new, method="lfs-sha")
                        for _ in new:
                            self.reader.stats.record_identity("lfs-sha")
        return self._known

    def block_hash(self, split: SplitModel, index: int) -> str:
        block = split.blocks[index]
        if not block.keys:
            return empty_block_hash(split.family, block.name)
        known = self._index(split)
        if index not in known:
            self.prepare(split)  # establishes every block not known yet, under the candidate's lock
        return known[index]

    def _establish(self, split: SplitModel, index: int, references: list[tuple[str, str, str]],
                   fetched: dict[str, bytes]) -> tuple[str, str]:  # fmt: skip
        """(content hash, identity method) of a block the store does not know for this checkpoint yet, proven
        against `references` (see `_references`) when it can be. `fetched`: bytes of tensors read already."""
        block = split.blocks[index]
        for ref_repo, ref_rev, ref_hash in references:
            outcome = self._prove(block, ref_repo, ref_rev, ref_hash)
            if outcome is None:
                continue
            if not outcome.proven_bytes:  # no term shared with the best reference: fetch, don't ask others
                break
            if outcome.identical:
                return ref_hash, "xet-proof"
            tensors = [(block.relative_name(k), self.layout[k].dtype, self.layout[k].shape, outcome.raw[k])
                       for k in block.keys]  # fmt: skip
            return self.store.put(tensors), "bytes"
        return self.store.put(self._fetch(block.keys, block.relative_name, fetched)), "bytes"

    def _references(self, split: SplitModel, indices: list[int], limit: int = 3) -> dict[int, list]:
        """Stored blocks to prove each block against: the base model's first, then the newest of other repos."""
        if self.xet is None:
            return {i: [] for i in indices}
        return self.store.references(split.family, indices, exclude=self.repo_id, prefer=self.base_model,
                                     limit=limit)  # fmt: skip

    @functools.lru_cache(maxsize=16)  # noqa: B019 (a source lives for one search)
    def _ref_xet_hashes(self, repo: str, revision: str) -> dict[str, str]:
        return self.store.xet_hashes(repo, revision)

    def _prove(self, block, ref_repo: str, ref_rev: str, ref_hash: str):
        from .xet_identity import XetFile, prove

        layout_json, ref_hashes = self.store.load_layout(ref_repo, ref_rev), self._ref_xet_hashes(ref_repo, ref_rev)
        if not layout_json or not ref_hashes:
            return None
        return prove(
            keys=block.keys,
            cand=XetFile(self.repo_id, self.revision, self.xet_hashes, self.layout),
            ref=XetFile(ref_repo, ref_rev, ref_hashes, layout_from_json(layout_json)),
            ref_raw=lambda: self.store.raw(ref_hash),  # read only once a term proves something
            rel_name=block.relative_name,
            xet=self.xet,
            reader=self.reader,
        )

    def _fetch(
        self, keys, rel_name, fetched: dict[str, bytes] | None = None
    ) -> list[tuple[str, str, tuple[int, ...], bytes]]:
        """The block's tensors with the fewest Range requests: contiguous tensors are merged, one range each.
        Those in `fetched` are not requested again."""
        fetched = fetched or {}
        by_file: dict[str, list[TensorLocation]] = {}
        for key in keys:
            if key not in fetched:
                by_file.setdefault(self.layout[key].filename, []).append(self.layout[key])
        raw: dict[tuple[str, int], bytes] = {}
        for filename, locs in by_file.items():
            for start, end in merge_ranges([(loc.start, loc.end) for loc in locs]):
                body = self.reader.read(self.repo_id, filename, self.revision, start, end)
                for loc in locs:
                    if start <= loc.start and loc.end <= end:
                        raw[(filename, loc.start)] = body[loc.start - start : loc.end - start]
        out = []
        for key in keys:
            loc = self.layout[key]
            body = fetched[key] if key in fetched else raw[(loc.filename, loc.start)]
            out.append((rel_name(key), loc.dtype, loc.shape, body))
        return out

    def load_tensors(self, split: SplitModel, index: int) -> dict[str, torch.Tensor]:
        block = split.blocks[index]
        if not block.keys:
            return {}
        h = self.block_hash(split, index)
        try:
            stored = self.store.get(h)
        except BlockIntegrityError as e:  # damaged or deleted since it was stored: the Hub still has it
            logger.warning("%s: block %d (%s) in the store is unusable (%s); fetching it again", self.repo_id,
                           index, h[:12], e)  # fmt: skip
            self.store.discard(h)
            self.store.put(self._fetch(block.keys, block.relative_name), expected_hash=h)
            with self.reader.stats._lock:
                self.reader.stats.refetched_blocks += 1
            stored = self.store.get(h)
        return {key: stored[block.relative_name(key)] for key in block.keys}
