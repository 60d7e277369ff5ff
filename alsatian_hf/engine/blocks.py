"""An LRU of loaded blocks, keyed by content hash, so consecutive steps that need a block don't reload it."""

from __future__ import annotations

import time
from collections import OrderedDict

import torch

from ..candidates.candidate import EngineBlock


class BlockLRU:
    """Keeps up to `max_bytes` of loaded block parameters (0 disables keeping: load, run, unload)."""

    def __init__(self, device: torch.device, max_bytes: int = 2 << 30):
        self.device = device
        self.max_bytes = max_bytes
        self._loaded: OrderedDict[str, EngineBlock] = OrderedDict()
        self.bytes = 0
        self.loads = 0
        self.bytes_loaded = 0
        self.load_seconds = 0.0

    def get(self, block: EngineBlock) -> EngineBlock:
        """The loaded block with `block`'s content hash (this one, or an identical one loaded earlier)."""
        hit = self._loaded.get(block.content_hash)
        if hit is not None:
            self._loaded.move_to_end(block.content_hash)
            return hit
        start = time.perf_counter()
        block.load(self.device)
        self.load_seconds += time.perf_counter() - start
        self.loads += 1
        self.bytes_loaded += block.param_bytes
        self._loaded[block.content_hash] = block
        self.bytes += block.param_bytes
        self._evict(keep=block.content_hash)
        return block

    def _evict(self, keep: str) -> None:
        while self.bytes > self.max_bytes and len(self._loaded) > 1:
            key, old = next(iter(self._loaded.items()))
            if key == keep:
                self._loaded.move_to_end(key)
                continue
            del self._loaded[key]
            old.unload()
            self.bytes -= old.param_bytes

    def clear(self) -> None:
        for block in self._loaded.values():
            block.unload()
        self._loaded.clear()
        self.bytes = 0
