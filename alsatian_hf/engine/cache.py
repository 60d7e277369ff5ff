"""The caching service: intermediates in tiers (accelerator memory, CPU RAM, disk) under one byte budget.

An entry is a node's output for one chunk: a list of per-batch states (tuples of tensors). `reserve` picks
the first tier with room for the planned size and spills down a tier instead of failing; the disk tier keeps
each batch in a safetensors file and reads it back memory-mapped. All tiers together never hold more than
`budget` bytes; `peak` and `tier_peaks` report what was actually held.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..adapters import State, state_nbytes
from ..errors import CacheKeyError, ConfigurationError, PlanningError


logger = logging.getLogger("alsatian_hf")

# "auto": this fraction of free RAM plus free accelerator memory (paper §4.1 sets the budget to their sum).
AUTO_BUDGET_FRACTION = 0.5


@dataclass
class Tier:
    name: str  # "cuda", "cpu" or "disk"
    capacity: int
    used: int = 0
    peak: int = 0


@dataclass
class _Entry:
    tier: Tier
    reserved: int
    batches: list = field(default_factory=list)  # states, or disk file paths
    used: int = 0


def free_memory() -> dict[str, int]:
    """Free bytes per device, through accelerate (GPU ids as ints, and "cpu")."""
    from accelerate.utils import get_max_memory

    return {str(k): int(v) for k, v in get_max_memory().items()}


def resolve_budget(cache_budget: int | str, device: torch.device) -> int:
    """`cache_budget` in bytes, or "auto": AUTO_BUDGET_FRACTION of free RAM plus free accelerator memory."""
    if cache_budget == "auto":
        free = free_memory()
        total = free.get("cpu", 0)
        if device.type == "cuda":
            total += free.get(str(device.index or 0), 0)
        return int(total * AUTO_BUDGET_FRACTION)
    if isinstance(cache_budget, bool) or not isinstance(cache_budget, int) or cache_budget <= 0:
        raise ConfigurationError(f"`cache_budget` must be a positive number of bytes or 'auto', got {cache_budget!r}.")
    return cache_budget


def default_tiers(budget: int, device: torch.device) -> list[Tier]:
    """Accelerator memory first (when the device is one), then RAM, then disk for whatever is left."""
    free = free_memory()
    tiers = []
    if device.type == "cuda":
        tiers.append(Tier("cuda", int(free.get(str(device.index or 0), 0) * AUTO_BUDGET_FRACTION)))
    tiers.append(Tier("cpu", int(free.get("cpu", 0) * AUTO_BUDGET_FRACTION)))
    tiers.append(Tier("disk", budget))
    return tiers


def _to_host(t: torch.Tensor) -> torch.Tensor:
    """`t` in RAM. From an accelerator it lands in pinned (page-locked) memory without waiting: the copy back
    is then asynchronous too, and both are ordered on the device's stream, which alone reads the entry."""
    if t.device.type == "cpu":
        return t
    host = torch.empty_like(t, device="cpu", pin_memory=True)
    return host.copy_(t, non_blocking=True)


class TieredCache:
    """Intermediates under one byte budget, in the first tier with room for each entry.

    Example:
        >>> cache = TieredCache(budget=1 << 20, tiers=[Tier("cpu", 1 << 10), Tier("disk", 1 << 20)])
        >>> cache.reserve("n", 4096)  # too big for RAM's 1 KiB: it spills to disk
        'disk'
    """

    def __init__(
        self, budget: int, tiers: list[Tier], *, device: torch.device | str = "cpu", disk_dir: str | Path | None = None
    ):
        self.budget = budget
        self.tiers = tiers
        self.device = torch.device(device)
        self._disk_root = Path(disk_dir) if disk_dir else None
        self._disk_dir: Path | None = None
        self.entries: dict[str, _Entry] = {}
        self.used = 0
        self.peak = 0

    @property
    def tier_peaks(self) -> dict[str, int]:
        return {t.name: t.peak for t in self.tiers}

    def reset_peaks(self) -> None:
        self.peak = self.used
        for t in self.tiers:
            t.peak = t.used

    def reserve(self, key: str, nbytes: int) -> str:
        """Claim room for an entry of (about) `nbytes`; returns the tier chosen.

        Raises:
            PlanningError: when the budget itself has no room (the planner should have chunked).
        """
        if key in self.entries:
            raise CacheKeyError(f"cache entry {key!r} exists: the plan reserves a node twice")
        reserved = sum(e.reserved for e in self.entries.values())
        if reserved + nbytes > self.budget:
            raise PlanningError(f"cache budget of {self.budget} bytes exceeded: {reserved} reserved + {nbytes} asked.")
        for tier in self.tiers:
            tier_reserved = sum(e.reserved for e in self.entries.values() if e.tier is tier)
            if tier_reserved + nbytes <= tier.capacity:
                self.entries[key] = _Entry(tier, nbytes)
                if tier is not self.tiers[0]:
                    logger.debug("cache entry %s spills to tier %s", key[:12], tier.name)
                return tier.name
        raise PlanningError(
            f"no cache tier has room for {nbytes} bytes (tiers: {[(t.name, t.capacity) for t in self.tiers]})."
        )

    def append(self, key: str, state: State) -> None:
        entry = self.entries[key]
        nbytes = state_nbytes(state)
        if entry.tier.name == "cuda":
            stored = tuple(t.to(self.device) for t in state)
        elif entry.tier.name == "cpu":
            stored = tuple(_to_host(t) for t in state)
        else:
            path = self._disk() / f"{key[:16]}-{len(entry.batches)}.safetensors"
            save_file({str(i): t.detach().to("cpu").contiguous() for i, t in enumerate(state)}, str(path))
            stored = path
        entry.batches.append(stored)
        entry.used += nbytes
        entry.tier.used += nbytes
        entry.tier.peak = max(entry.tier.peak, entry.tier.used)
        self.used += nbytes
        self.peak = max(self.peak, self.used)

    def batches(self, key: str):
        """The entry's batch states, in order, on the compute device."""
        for stored in self.entries[key].batches:
            if isinstance(stored, Path):
                loaded = load_file(str(stored))  # memory-mapped
                stored = tuple(loaded[str(i)] for i in range(len(loaded)))
            yield tuple(t.to(self.device, non_blocking=True) for t in stored)

    def release(self, key: str) -> None:
        entry = self.entries.pop(key, None)
        if entry is None:
            return
        entry.tier.used -= entry.used
        self.used -= entry.used
        for stored in entry.batches:
            if isinstance(stored, Path):
                stored.unlink(missing_ok=True)

    def clear(self) -> None:
        for key in list(self.entries):
            self.release(key)
        if self._disk_dir is not None:
            shutil.rmtree(self._disk_dir, ignore_errors=True)
            self._disk_dir = None

    def _disk(self) -> Path:
        if self._disk_dir is None:
            if self._disk_root is not None:
                self._disk_root.mkdir(parents=True, exist_ok=True)
            self._disk_dir = Path(tempfile.mkdtemp(prefix="alsatian-cache-", dir=self._disk_root))
        return self._disk_dir
