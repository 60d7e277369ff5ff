"""Output bytes per item, FLOPs and foldable BatchNorms of every block, measured once per architecture and input."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..adapters import State, split_model, state_nbytes
from ..adapters.skeleton import build_model
from .batchnorm import FoldPair, find_pairs


@dataclass
class Measured:
    sizes: list[int]  # output bytes per item, per block
    flops: list[float]  # FLOPs per item, per block
    fold_pairs: list[list[FoldPair]]  # per block, the BatchNorms that fold into their convolution


class ShapeProbe:
    """Output bytes per item, FLOPs and foldable BatchNorms of every block, from one real item through a
    random-init copy."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], Measured] = {}

    def measure(self, config_dir: Path, input_key: str, state: State) -> Measured:
        config = (Path(config_dir) / "config.json").read_bytes()
        key = (hashlib.sha256(config).hexdigest(), input_key)
        if key not in self._cache:
            model = build_model(config_dir, device="cpu")
            split = split_model(model)
            sizes, flops, first = [], [], state
            with torch.inference_mode():
                for block in split.blocks:
                    counter = FlopCounterMode(display=False)
                    with counter:
                        state = block.step(model, state)
                    sizes.append(state_nbytes(state) // max(state[0].shape[0], 1))
                    flops.append(float(counter.get_total_flops()) / max(state[0].shape[0], 1))
            self._cache[key] = Measured(sizes, flops, find_pairs(model, split, first))
        return self._cache[key]
