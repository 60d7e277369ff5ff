"""What the engine runs: a candidate as an ordered list of blocks, independent of Hub and model family."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..adapters import State
from ..adapters.signature import differing_keys
from ..store.identity import prefix_hash


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
        tensor_hash: its tensors' content hash alone (what the store keeps them under).
    """

    content_hash: str
    param_bytes: int
    bytes_per_item: int
    load: Callable[[torch.device], None]
    unload: Callable[[], None]
    run: Callable[[State], State]
    cost: float = 1.0
    tensor_hash: str = ""


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
    config: the config values its blocks' identities carry (`adapters.signature`): where two candidates hold
        the same tensors but compute them apart, the keys that differ say why (`computed_apart`).
    """

    model_id: str
    input_key: str
    blocks: list[EngineBlock]
    initial_state: Callable[[dict[str, torch.Tensor]], State]
    numerics: str = ""
    input_bytes_per_item: int = 0
    config: dict = field(default_factory=dict, repr=False)


def computed_apart(candidates: list[EngineCandidate]) -> list[dict]:
    """Pairs of candidates that hold the same tensors behind the same inputs but compute them apart: per pair,
    the blocks they would otherwise share, the config keys that differ (`adapters.signature`), and why in words
    (with no key, their read-outs differ: `Block.salt`). A search reports them, so a key that parts fine-tunes
    without cause can be seen."""
    first: dict[str, tuple[str, EngineCandidate]] = {}  # chain of tensor hashes -> (its node, first holder)
    pairs: dict[tuple[str, str], int] = {}
    by_id = {c.model_id: c for c in candidates}
    for c in candidates:
        tensors = node = c.input_key
        for block in c.blocks:
            tensors, node = prefix_hash(tensors, block.tensor_hash), prefix_hash(node, block.content_hash)
            held = first.setdefault(tensors, (node, c))
            if held[0] != node:
                pair = (held[1].model_id, c.model_id)
                pairs[pair] = pairs.get(pair, 0) + 1
    out = []
    for pair, n in pairs.items():
        keys = differing_keys(by_id[pair[0]].config, by_id[pair[1]].config)
        why = (f"their configs differ in {', '.join(keys)}" if keys
               else "their read-outs differ (sentence-transformers modules, or the head class)")  # fmt: skip
        out.append({"models": list(pair), "blocks": n, "keys": keys, "why": why})
    return out
