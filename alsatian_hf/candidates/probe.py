"""Output bytes per item and FLOPs of every block, measured once per architecture and input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..adapters import State, split_model, state_nbytes
from ..adapters.skeleton import build_model


class ShapeProbe:
    """Output bytes per item and FLOPs of every block, from one real item through a random-init copy."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    def measure(self, config_dir: Path, input_key: str, state: State) -> tuple[list[int], list[float]]:
        config = (Path(config_dir) / "config.json").read_bytes()
        key = (hashlib.sha256(config).hexdigest(), input_key)
        if key not in self._cache:
            model = build_model(config_dir, device="cpu")
            split = split_model(model)
            sizes, flops = [], []
            with torch.inference_mode():
                for block in split.blocks:
                    counter = FlopCounterMode(display=False)
                    with counter:
                        state = block.step(model, state)
                    sizes.append(state_nbytes(state) // max(state[0].shape[0], 1))
                    flops.append(float(counter.get_total_flops()) / max(state[0].shape[0], 1))
            self._cache[key] = (sizes, flops)
        return self._cache[key]
