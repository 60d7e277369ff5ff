"""What the engine runs: a candidate as an ordered list of blocks, independent of Hub and model family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..adapters import State


@dataclass
class EngineBlock:
    """One block of one candidate.

    Args:
        content_hash: identifies what the block computes: its tensors' content hash, salted with what its config
            decides beyond them (`adapters.signature`, `Block.salt`); equal hashes are interchangeable.
        param_bytes: bytes of its parameters and buffers.
        bytes_per_item: bytes of its output state for one item (from shape inference at the real input).
        load: materialises the weights on `device` (lazy fetch + assign); idempotent.
        unload: frees them again.
        run: `state -> state` on loaded weights.
        cost: compute cost per item (e.g. FLOPs), for the ideal-speedup bound.
    """

    content_hash: str
    param_bytes: int
    bytes_per_item: int
    load: Callable[[torch.device], None]
    unload: Callable[[], None]
    run: Callable[[State], State]
    cost: float = 1.0


@dataclass
class EngineCandidate:
    """Args:
    model_id: the candidate's id (repo id or folder).
    input_key: identity of its preprocessing; candidates with equal keys share inputs.
    blocks: the feature extractor's blocks, the read-out last.
    initial_state: prepared inputs (a dict of batched tensors) -> the state block 0 consumes.
    numerics: what besides the blocks' weights decides the features' float rounding (e.g. "channels_last"); it
        is part of the feature cache's key.
    input_bytes_per_item: bytes of the state block 0 consumes, for one item.
    """

    model_id: str
    input_key: str
    blocks: list[EngineBlock]
    initial_state: Callable[[dict[str, torch.Tensor]], State]
    numerics: str = ""
    input_bytes_per_item: int = 0
