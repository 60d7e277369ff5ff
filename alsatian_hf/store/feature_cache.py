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

from .._safetensors import decode, encode, read_header
from ..errors import FeatureIntegrityError
from ._files import STALE_TEMP_SECONDS, TEMP_PREFIX, age, sweep_temp_files, write_atomic


logger = logging.getLogger("alsatian_hf")


def _write_file(f, blob: bytes) -> None:
    """Every feature byte goes to disk through here (the fault tests make it fail as a full disk would)."""
    f.write(blob)


def feature_key(input_key: str, block_hashes: list[str], device_kind: str) -> str:
    """The key of a model's features: its input key, its block content hashes in order, and what else decides
    the numerics (`device_kind`: the device type and library versions; CPU and CUDA kernels round
    differently, so features from one never stand in for the other's)."""
    text = json.dumps([input_key, list(block_hashes), device_kind])
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class FeatureCacheStats:
    hit_items: int = 0  # (model, item) rows read from disk
    miss_items: int = 0  # rows a search needed and had to compute
    bytes_read: int = 0
    bytes_written: int = 0
    corrupt: int = 0  # segments that failed verification (deleted, recomputed)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class FeatureCacheInfo:
    root: str
    models: int
    segments: int
    bytes: int


def _digest(items: torch.Tensor, features: torch.Tensor) -> str:
    h = hashlib.sha256(items.numpy().tobytes())
    h.update(features.numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """Features on disk by (model key, dataset fingerprint, item), within `budget` bytes.

    Example:
        >>> import tempfile, torch
        >>> cache = FeatureCache(tempfile.mkdtemp(), budget=1 << 20)
        >>> key = feature_key("input", ["block-a", "block-b"], "cpu")
        >>> cache.put(key, "fingerprint", (3, 5), torch.ones(2, 4))
        >>> rows = cache.get(key, "fingerprint", (3, 4, 5))
        >>> sorted(rows), rows[5].tolist()
        ([3, 5], [1.0, 1.0, 1.0, 1.0])
    """

    def __init__(self, root: str | Path, *, budget: int):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.budget = budget
        self.stats = FeatureCacheStats()
        self._lock = threading.Lock()

    def _folder(self, key: str, fingerprint: str) -> Path:
        return self.root / key[:2] / key / fingerprint

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
        name = hashlib.sha256(items_t.numpy().tobytes()).hexdigest()[:32]
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
        return [p for p in self.root.glob("*/*") if p.is_dir() and p.parent.name != "searches"]

    def info(self) -> FeatureCacheInfo:
        segments = [p for p in self.root.glob("*/*/*/*.safetensors")]
        return FeatureCacheInfo(
            str(self.root), len(self._models()), len(segments), sum(p.stat().st_size for p in segments)
        )

    def evict(self) -> int:
        """Remove least recently used models' features until the cache fits its budget; returns bytes freed."""
        sizes = {m: sum(p.stat().st_size for p in m.rglob("*.safetensors")) for m in self._models()}
        total, freed = sum(sizes.values()), 0
        for model in sorted(sizes, key=lambda m: m.stat().st_mtime):
            if total - freed <= self.budget:
                break
            shutil.rmtree(model, ignore_errors=True)
            freed += sizes[model]
        return freed

    def gc(self, *, verify: bool = False) -> dict[str, int]:
        """Remove stale temporary files, empty folders and (with `verify`) segments that fail verification."""
        removed = {"temp_files": 0, "corrupt": 0}
        removed["temp_files"] = sweep_temp_files(self.root.glob(f"*/*/*/{TEMP_PREFIX}*"))
        if verify:
            before = self.stats.corrupt
            for path in self.root.glob("*/*/*/*.safetensors"):
                self._read(path)
            removed["corrupt"] = self.stats.corrupt - before
        for folder in sorted(self.root.glob("*/*/*"), reverse=True) + sorted(self.root.glob("*/*")):
            try:  # empty and old: a search may have just made a folder it is about to write into
                if folder.is_dir() and age(folder) > STALE_TEMP_SECONDS and not any(folder.iterdir()):
                    folder.rmdir()
            except OSError:  # written into, or removed, by another process meanwhile
                pass
        return removed
