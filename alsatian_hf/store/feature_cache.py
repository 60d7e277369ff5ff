"""Extracted features on disk, so no search computes a model's features for an item twice.

A model's features for an item depend only on its preprocessing, the content of its blocks in order, the
item's bytes and the device kind the blocks ran on. `feature_key` hashes the first two with the device kind,
and the dataset's fingerprint names the items: a repeat search, a resumed one, and an org search that gained
models all find what earlier searches computed, whatever their schedule.

Layout: `<root>/<key[:2]>/<key>/<dataset fingerprint>/<segment>.safetensors`, one segment per batch the
engine produced, holding `items` (int64) and `features` (float32, one row per item), with the sha256 of both
in its metadata. Segments are written to a temporary file and renamed, so a reader never sees a torn one, and
their name is a digest of their items, so two searches writing one batch at once leave one good segment. A
segment whose bytes no longer match is deleted and recomputed, never used. Eviction is least recently used,
by model key, down to the byte budget.

*States* are the same for what the engine passes between blocks: the preprocessed inputs and the outputs of
shared prefixes, keyed by `state_key` (the prefix's block hashes, none for the inputs) under `<root>/states/`.
A segment holds one batch's whole state tuple (a BERT state carries its attention mask) in its own dtypes and
memory layout (channels-last tensors as their NHWC bytes, copied neither way), with a blake3 digest. A
search that finds a prefix's state on disk starts the models below it there, so a new
fine-tune computes only the blocks it does not share. Eviction drops states before features: a state only
saves time, while features are a model's result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from .._safetensors import decode, encode, read_header
from ..errors import FeatureIntegrityError
from ._files import STALE_TEMP_SECONDS, TEMP_PREFIX, age, sweep_temp_files, write_atomic
from .identity import prefix_chain


logger = logging.getLogger("alsatian_hf")

STATES = "states"  # the sub-folder of states (inputs and shared intermediates)
STATE_SHARE = 0.5  # of the budget states may keep after eviction; features get the rest first


def _write_file(f, blob: bytes) -> None:
    """Every feature byte goes to disk through here (the fault tests make it fail as a full disk would)."""
    f.write(blob)


def feature_key(input_key: str, block_hashes: list[str], device_kind: str) -> str:
    """The key of a model's features: its input key, its block content hashes in order, and what else decides
    the numerics (`device_kind`: the device type and library versions; CPU and CUDA kernels round
    differently, so features from one never stand in for the other's)."""
    text = json.dumps([input_key, list(block_hashes), device_kind])
    return hashlib.sha256(text.encode()).hexdigest()


def state_key(input_key: str, block_hashes: list[str], device_kind: str) -> str:
    """The key of the state after `block_hashes` (a prefix of some model's blocks; none: the preprocessed
    inputs). It differs from `feature_key` of the same blocks: a model's features are its state flattened."""
    return state_keys(input_key, [*block_hashes, ""], device_kind)[-1]


def state_keys(input_key: str, block_hashes: list[str], device_kind: str) -> list[str]:
    """`state_key` after 0, 1, ..., len - 1 of `block_hashes` (every state a model passes on, its features
    left out) in one pass: each hashes its task-tree node's key, the chained prefix hash, so a model of L
    blocks costs L hashes, not L^2."""
    return [
        hashlib.sha256(json.dumps([node, f"{device_kind}/state"]).encode()).hexdigest()
        for node in prefix_chain(input_key, block_hashes)[:-1]
    ]


def _segment_name(items: tuple[int, ...]) -> str:
    return hashlib.sha256(torch.tensor(items, dtype=torch.int64).numpy().tobytes()).hexdigest()[:32]


def _is_channels_last(t: torch.Tensor) -> bool:
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """blake3 over each (contiguous) tensor's name, dtype, shape and bytes: states are written as they are
    computed, so their digest must cost little next to the write (blake3 runs at several GB/s)."""
    from blake3 import blake3

    h = blake3()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


@dataclass
class FeatureCacheStats:
    hit_items: int = 0  # (model, item) rows read from disk
    miss_items: int = 0  # rows a search needed and had to compute
    bytes_read: int = 0
    bytes_written: int = 0
    corrupt: int = 0  # segments that failed verification (deleted, recomputed)
    state_items_read: int = 0  # (state, item) rows that started models below a shared prefix
    state_items_written: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class FeatureCacheInfo:
    root: str
    models: int
    segments: int
    bytes: int
    states: int = 0  # keys of stored states (inputs and shared prefixes)
    state_bytes: int = 0


def _digest(items: torch.Tensor, features: torch.Tensor) -> str:
    h = hashlib.sha256(items.numpy().tobytes())
    h.update(features.numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """Features on disk by (model key, dataset fingerprint, item), within `budget` bytes.

    Example:
        >>> import tempfile, torch
        >>> tmp = tempfile.TemporaryDirectory()
        >>> cache = FeatureCache(tmp.name, budget=1 << 20)
        >>> key = feature_key("input", ["block-a", "block-b"], "cpu")
        >>> cache.put(key, "fingerprint", (3, 5), torch.ones(2, 4))
        >>> rows = cache.get(key, "fingerprint", (3, 4, 5))
        >>> sorted(rows), rows[5].tolist()
        ([3, 5], [1.0, 1.0, 1.0, 1.0])
        >>> tmp.cleanup()
    """

    def __init__(self, root: str | Path, *, budget: int):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.budget = budget
        self.stats = FeatureCacheStats()
        self._lock = threading.Lock()
        self._scanned: tuple[int, int, int] | None = None  # (bytes, state bytes, bytes written) at the last evict

    def _folder(self, key: str, fingerprint: str, *, state: bool = False) -> Path:
        return (self.root / STATES if state else self.root) / key[:2] / key / fingerprint

    def get(self, key: str, fingerprint: str, items) -> dict[int, torch.Tensor]:
        """The stored feature rows among `items` (item -> 1-D float32 tensor); verified, corrupt ones dropped."""
        folder = self._folder(key, fingerprint)
        wanted, found = set(items), {}
        if folder.is_dir():
            for path in sorted(folder.glob("*.safetensors")):
                segment = self._read(path)
                if segment is None:
                    continue
                seg_items, feats = segment
                for row, item in enumerate(seg_items.tolist()):
                    if item in wanted and item not in found:
                        found[item] = feats[row]
                if len(found) == len(wanted):
                    break
            if found:
                os.utime(folder.parent)  # least recently used: by model key
        with self._lock:
            self.stats.hit_items += len(found)
            self.stats.miss_items += len(wanted) - len(found)
        return found

    def _read(self, path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            blob = path.read_bytes()
            tensors = {name: (dtype, shape, data) for name, dtype, shape, data in decode(blob, name=str(path))}
            header, _ = read_header(lambda a, b: blob[a:b], name=str(path), with_metadata=True)
            metadata = header.get("__metadata__", {})
            items = torch.frombuffer(bytearray(tensors["items"][2]), dtype=torch.int64)
            _, shape, data = tensors["features"]
            feats = torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(shape)
            if metadata.get("sha256") != _digest(items, feats) or len(items) != shape[0]:
                raise FeatureIntegrityError("content digest mismatch")
        except FileNotFoundError:  # evicted or replaced by another process since the listing
            return None
        except Exception as e:  # a torn, truncated or flipped segment is recomputed, never used
            logger.warning("feature cache: %s is corrupt (%s); its items are recomputed", path, e)
            path.unlink(missing_ok=True)
            with self._lock:
                self.stats.corrupt += 1
            return None
        with self._lock:
            self.stats.bytes_read += len(blob)
        return items, feats

    def put(self, key: str, fingerprint: str, items: tuple[int, ...], features: torch.Tensor) -> None:
        """Store one batch's rows (`features[i]` belongs to `items[i]`), atomically."""
        items_t = torch.tensor(items, dtype=torch.int64)
        feats = features.detach().to("cpu", torch.float32).contiguous()
        folder = self._folder(key, fingerprint)
        name = _segment_name(tuple(items))
        blob = encode(
            [
                ("features", "F32", list(feats.shape), feats.numpy().tobytes()),
                ("items", "I64", [len(items)], items_t.numpy().tobytes()),
            ],
            metadata={"sha256": _digest(items_t, feats)},
        )
        # one good segment, whoever renames last
        write_atomic(folder / f"{name}.safetensors", blob, write=_write_file)
        with self._lock:
            self.stats.bytes_written += len(blob)

    # -- states: preprocessed inputs and shared prefixes' outputs, one segment per batch -----------------------
    def _state_segment(self, key: str, fingerprint: str, items: tuple[int, ...]) -> Path:
        return self._folder(key, fingerprint, state=True) / f"{_segment_name(tuple(items))}.safetensors"

    def has_state(self, key: str, fingerprint: str, items: tuple[int, ...]) -> bool:
        """Whether a segment for exactly this batch exists (it is verified when read)."""
        return self._state_segment(key, fingerprint, items).is_file()

    @staticmethod
    def segment_name(items: tuple[int, ...]) -> str:
        """The name a batch's segments have (a digest of its items)."""
        return _segment_name(tuple(items))

    def stored_states(self, key: str, fingerprint: str) -> set[str]:
        """The segment names of the batches whose state `key` is stored (one listing, not a stat per batch)."""
        try:
            names = os.listdir(self._folder(key, fingerprint, state=True))
        except FileNotFoundError:
            return set()
        return {n.removesuffix(".safetensors") for n in names if n.endswith(".safetensors")}

    def put_state(self, key: str, fingerprint: str, items: tuple[int, ...], state: tuple[torch.Tensor, ...]) -> None:
        """Store one batch's state tuple, atomically, with each tensor's dtype and memory layout."""
        tensors = {"items": torch.tensor(items, dtype=torch.int64)}
        layouts = []
        for i, t in enumerate(state):
            t = t.detach().to("cpu")
            if _is_channels_last(t):  # its bytes as they lie, NHWC: no copy on the way out or back in
                layouts.append("nhwc")
                tensors[f"state.{i}"] = t.permute(0, 2, 3, 1)
            else:
                layouts.append("contiguous")
                tensors[f"state.{i}"] = t.contiguous()
        blob = save_tensors(tensors, metadata={"blake3": _tensors_digest(tensors), "layouts": json.dumps(layouts)})
        write_atomic(self._state_segment(key, fingerprint, items), blob, write=_write_file)
        with self._lock:
            self.stats.bytes_written += len(blob)
            self.stats.state_items_written += len(items)

    def get_state(self, key: str, fingerprint: str, items: tuple[int, ...]) -> tuple[torch.Tensor, ...] | None:
        """The stored state of exactly this batch, verified and in its original layout; None when it is missing
        or corrupt (a corrupt segment is deleted and counted)."""
        path = self._state_segment(key, fingerprint, items)
        state = self._read_state(path)
        if state is None:
            return None
        try:
            os.utime(path.parent.parent)  # least recently used: by key
        except FileNotFoundError:
            pass
        with self._lock:
            self.stats.state_items_read += len(items)
        return state

    def _read_state(self, path: Path) -> tuple[torch.Tensor, ...] | None:
        """A state segment, verified: its digest, and the items its name (a digest of them) promises. None when
        it is missing; a corrupt one is deleted and counted, never used."""
        try:
            blob = path.read_bytes()
        except FileNotFoundError:  # never written, or evicted or replaced since the listing
            return None
        try:
            tensors = load_tensors(blob)
            header, _ = read_header(lambda a, b: blob[a:b], name=str(path), with_metadata=True)
            metadata = header.get("__metadata__", {})
            layouts = json.loads(metadata["layouts"])
            if metadata.get("blake3") != _tensors_digest(tensors):
                raise FeatureIntegrityError("content digest mismatch")
            if path.name != f"{_segment_name(tuple(tensors['items'].tolist()))}.safetensors":
                raise FeatureIntegrityError("it holds other items than its name says")
            state = tuple(  # NHWC bytes viewed as NCHW: the channels-last tensor that was stored, strides and all
                tensors[f"state.{i}"].permute(0, 3, 1, 2) if layout == "nhwc" else tensors[f"state.{i}"]
                for i, layout in enumerate(layouts)
            )
        except Exception as e:  # torn, truncated or flipped: recomputed, never used
            logger.warning("feature cache: state %s is corrupt (%s); it is recomputed", path, e)
            path.unlink(missing_ok=True)
            with self._lock:
                self.stats.corrupt += 1
            return None
        with self._lock:
            self.stats.bytes_read += len(blob)
        return state

    # -- iteration state ---------------------------------------------------------------------------------
    def _state_path(self, search_key: str, iteration: int) -> Path:
        return self.root / "searches" / search_key / f"iteration-{iteration}.json"

    def save_iteration(self, search_key: str, iteration: int, state: dict) -> None:
        """Persist a finished iteration's candidates, scores and survivors (atomically)."""
        write_atomic(self._state_path(search_key, iteration), json.dumps(state).encode(), write=_write_file)

    def load_iteration(self, search_key: str, iteration: int) -> dict | None:
        """A finished iteration of the same search, or None (never run, or unreadable: it is run again)."""
        try:
            return json.loads(self._state_path(search_key, iteration).read_text())
        except (OSError, ValueError):
            return None

    # -- maintenance ---------------------------------------------------------------------------------------
    def _models(self) -> list[Path]:
        return [p for p in self.root.glob("*/*") if p.is_dir() and p.parent.name not in ("searches", STATES)]

    def _states(self) -> list[Path]:
        return [p for p in (self.root / STATES).glob("*/*") if p.is_dir()]

    def info(self) -> FeatureCacheInfo:
        segments = list(self.root.glob("*/*/*/*.safetensors"))
        states = list((self.root / STATES).glob("*/*/*/*.safetensors"))
        return FeatureCacheInfo(
            str(self.root), len(self._models()), len(segments), sum(p.stat().st_size for p in segments),
            len(self._states()), sum(p.stat().st_size for p in states),
        )  # fmt: skip

    def evict(self, *, lazy: bool = False) -> int:
        """Remove least recently used keys until the cache fits its budget, and states until they fit their
        share of it (`STATE_SHARE`), states first; returns bytes freed. `lazy` skips the scan of every file
        while what the last scan found plus what this process wrote since still fits (mid-search; another
        process's writes are then caught by the next full scan)."""
        if lazy and self._scanned is not None:
            total, states, written = self._scanned
            grown = self.stats.bytes_written - written
            if total + grown <= self.budget and states + grown <= self.budget * STATE_SHARE:
                return 0

        def sizes(keys: list[Path]) -> dict[Path, tuple[int, float]]:  # key -> (bytes, last used)
            out = {}
            for k in keys:
                try:
                    out[k] = (sum(p.stat().st_size for p in k.rglob("*.safetensors")), k.stat().st_mtime)
                except FileNotFoundError:  # evicted by another process meanwhile
                    pass
            return out

        states, features = sizes(self._states()), sizes(self._models())
        state_total = sum(n for n, _ in states.values())
        total, freed = state_total + sum(n for n, _ in features.values()), 0
        for key in sorted(states, key=lambda k: states[k][1]):
            if total - freed <= self.budget and state_total <= self.budget * STATE_SHARE:
                break
            shutil.rmtree(key, ignore_errors=True)
            freed += states[key][0]
            state_total -= states[key][0]
        for key in sorted(features, key=lambda k: features[k][1]):
            if total - freed <= self.budget:
                break
            shutil.rmtree(key, ignore_errors=True)
            freed += features[key][0]
        self._scanned = (total - freed, state_total, self.stats.bytes_written)
        return freed

    def gc(self, *, verify: bool = False) -> dict[str, int]:
        """Remove stale temporary files, empty folders and (with `verify`) segments that fail verification."""
        removed = {"temp_files": 0, "corrupt": 0}
        states = self.root / STATES
        removed["temp_files"] = sweep_temp_files(
            [*self.root.glob(f"*/*/*/{TEMP_PREFIX}*"), *states.glob(f"*/*/*/{TEMP_PREFIX}*")]
        )
        if verify:
            before = self.stats.corrupt
            for path in self.root.glob("*/*/*/*.safetensors"):
                self._read(path)
            for path in states.glob("*/*/*/*.safetensors"):
                self._read_state(path)
            removed["corrupt"] = self.stats.corrupt - before
        folders = [*states.glob("*/*/*"), *self.root.glob("*/*/*"), *states.glob("*/*"), *self.root.glob("*/*")]
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            try:  # empty and old: a search may have just made a folder it is about to write into
                if folder.is_dir() and age(folder) > STALE_TEMP_SECONDS and not any(folder.iterdir()):
                    folder.rmdir()
            except OSError:  # written into, or removed, by another process meanwhile
                pass
        return removed
