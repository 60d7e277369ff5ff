"""A block's tensors in the form inference runs them: BatchNorms folded into their convolutions, conv weights
channels-last. Prepared once, kept in the block store beside the block, and memory-mapped by later loads.

Preparing at every load wrote each conv weight into fresh memory, and first touches of fresh pages are page
faults: on this project's 2-core VM they took ~1.7 µs each in one process and ~9 µs with two processes
faulting at once, which cost a 2-rank search most of its speed-up. A memory-mapped prepared block is
file-backed instead: nothing is copied, and processes on one machine share its pages. Its bytes are the ones
preparing at load computes (the same `fold`), so features stay bit-equal.

`keep` writes a prepared block in a background thread at its first load; `wait_prepared` waits for those writes.
A recipe names what preparing does, in block-relative names, so fine-tunes whose checkpoints prefix their keys
differently share one prepared block. Channels-last weights are stored as their (out, h, w, in) contiguous
tensor and viewed back as (out, in, h, w), which is a channels-last tensor without a copy.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait

import torch

from .._safetensors import Tensors
from ..adapters import Block
from ..errors import StoreFullError
from ..store.block_store import BlockStore
from ..store.identity import safetensors_dtype
from .batchnorm import FoldPair


logger = logging.getLogger("alsatian_hf")


RECIPE_VERSION = 2  # bump when preparing computes different bytes for the same block (2: half-precision
# checkpoints are upcast to the model's float32 before folding, where version 1 folded and kept them in half)
_BIAS = "#folded_bias"  # suffix of a folded bias's name, after its conv weight's relative name


def recipe(block: Block, folds: dict[FoldPair, dict[str, str]], eps: dict[FoldPair, float],
           channels_last: set[str]) -> str | None:  # fmt: skip
    """What preparing `block` does, as a stable string; None when loading changes nothing (no fold, no
    channels-last weight): such a block is memory-mapped as stored already."""
    if not folds and not channels_last:
        return None
    rel = block.relative_name
    pairs = sorted([sorted((role, rel(k)) for role, k in keys.items()), eps[p]] for p, keys in folds.items())
    return json.dumps({"v": RECIPE_VERSION, "fold": pairs, "channels_last": sorted(rel(k) for k in channels_last)})


def pack(block: Block, tensors: dict[str, torch.Tensor], biases: dict[str, torch.Tensor],
         folds: dict[FoldPair, dict[str, str]], channels_last: set[str]) -> Tensors:  # fmt: skip
    """The prepared tensors (checkpoint keys) and folded biases (conv paths) as a block's raw tensors."""
    named = {block.relative_name(k): (t.permute(0, 2, 3, 1) if k in channels_last else t) for k, t in tensors.items()}
    for pair, keys in folds.items():
        named[block.relative_name(keys["conv_weight"]) + _BIAS] = biases[pair.conv]
    out = []
    for name, t in named.items():
        t = t.detach().cpu().contiguous()
        out.append((name, safetensors_dtype(t.dtype), tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().data))
    return out


def unpack(block: Block, stored: dict[str, torch.Tensor], folds: dict[FoldPair, dict[str, str]],
           channels_last: set[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:  # fmt: skip
    """`pack`'s inverse on memory-mapped tensors: (tensors by checkpoint key, folded biases by conv path)."""
    tensors = {}
    for key in block.keys:
        t = stored[block.relative_name(key)]
        tensors[key] = t.permute(0, 3, 1, 2) if key in channels_last else t
    biases = {pair.conv: stored[block.relative_name(keys["conv_weight"]) + _BIAS] for pair, keys in folds.items()}
    return tensors, biases


_WRITER: ThreadPoolExecutor | None = None  # one thread writes prepared blocks while the search goes on
_PENDING: dict[tuple[str, str, str], Future] = {}  # (store root, block, recipe) -> its write
_PENDING_LOCK = threading.Lock()
_UNWRITABLE: set[str] = set()  # stores a write failed in (full, read-only): warned once, not tried again


def keep(store: BlockStore, block_hash: str, name: str, tensors: Tensors) -> None:
    """Writes a prepared block in the background: writing and hashing fresh files took ~40% of a first search's
    time when done inline. Python waits for the writer at exit, so no file is left half-written."""
    global _WRITER

    def write():
        try:
            store.put_prepared(block_hash, name, tensors)
        except (StoreFullError, OSError) as e:  # a full disk costs later loads their speed, never a search
            with _PENDING_LOCK:
                if key[0] in _UNWRITABLE:
                    return
                _UNWRITABLE.add(key[0])
            logger.warning("block store: cannot keep prepared blocks in %s (%s); this process prepares blocks at "
                           "each load (`prepared_blocks=False` does so without trying)", store.root, e)  # fmt: skip

    key = (str(store.root), block_hash, name)
    with _PENDING_LOCK:
        if key[0] in _UNWRITABLE:
            return
        if _WRITER is None:
            _WRITER = ThreadPoolExecutor(1, thread_name_prefix="alsatian-prepared")
        for done in [k for k, f in _PENDING.items() if f.done()]:
            del _PENDING[done]
        if key not in _PENDING:  # a block loaded again before its write ended is written once
            _PENDING[key] = _WRITER.submit(write)


def wait_prepared() -> None:
    """Returns once every prepared block submitted so far is in its store (or failed with a warning)."""
    with _PENDING_LOCK:
        pending = list(_PENDING.values())
    wait(pending)
