"""Which blocks run their convolutions channels-last: measured once per architecture, input and CPU.

oneDNN's channels-last (NHWC) convolutions are not the fastest everywhere, and where they lose depends on the
CPU. On the AVX-512 Xeon the card was first measured on, channels-last was as fast or faster in every resnet18
block (`block_speed` at 49a523e). On a Xeon with AMX, resnet18's 28x28 stage ran 1.36x faster channels-last but
its 7x7 stage 1.5x slower (112 px, batch 64), and at 32 px its 4x4 stage 2x slower (batches of 256 and 1024).
So with `channels_last="auto"` a CPU search times every block that holds a Conv2d in both layouts, on a
random-init copy, and runs a block in the default (NCHW) layout only where that was clearly faster. CUDA keeps
channels-last everywhere (cuDNN's tensor-core layout).

Both layouts compute the same convolutions and differ by float rounding only. Every strategy of a search runs
the same candidates, so they still rank alike; the layouts are part of the candidate's `numerics`, so the
feature cache never mixes them.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from ..adapters import State, split_model
from ..adapters.skeleton import build_model


# Items per timed batch: as many as hold about this many values of the block's input, within [8, 64]. Small
# batches make close calls noisy (at 32 px one resnet18 block flipped between two runs at 16 items, none at 64 to
# 256), large ones make the measurement long where inputs are large (every block at 64 items at 112 px took
# 5.3 s, at 8 items 0.7 s). Sized per block, the late blocks' small maps get the larger batches they run at.
# Sized by the image, resnet18's 7x7 block at 112 px was timed on 8 items, where NCHW took 0.74-0.78 of
# channels-last's time, a close call under MARGIN that once kept channels-last (`block_speed` at 3901659: 0.67x
# at 64 items); on its own input's 16 items NCHW takes 0.70-0.75 (1 thread, 5 repeats, ad hoc).
BATCH_VALUES = 2**18
BATCH_RANGE = (8, 64)
PASSES = 3  # timed runs per block and layout (the fastest counts), after one untimed run (oneDNN primitives)
# NCHW is kept only where it beat channels-last by this share: a tie stays in the layout that wins on most CPUs.
# The timing is of a random-init, unfolded block alone, which can miss what the engine's folded block meets: in
# EfficientNet-Lite0's depthwise blocks on 1x1 maps (32 px) both layouts took 21-22 ms there, so a 5% margin chose
# NCHW by noise in one run of three, and the engine's folded block then ran 25 ms in NCHW against 1.2 ms
# channels-last (a 35-model top_layers search: 2.7x the inference). resnet18's NCHW wins are 1.5-2x.
MARGIN = 0.2
# Where a block's input maps are 1x1 (EfficientNet-Lite0's last stages at 32 px) the two layouts are the same
# bytes, and only the kernel that their strides pick differs. A block timed alone there does not predict the
# engine's: it chose NCHW for block 14 in a search at 2 threads, whose block then ran 14x slower (search
# inference 3.3-3.6 s against 1.3 s channels-last everywhere), while a lone depthwise conv on 1x1 maps was fast
# in every stride and weight layout tried; why is not known. Such blocks stay channels-last, untimed. Part of
# the stored answer's key, with MARGIN.
RULES = "1x1-channels-last,per-block-batch"


def conv_weights(model: nn.Module, block) -> set[str]:
    """The block's checkpoint keys that are Conv2d weights (other 4-D tensors may be viewed as contiguous)."""
    keys = set()
    for key in block.keys:
        path, _, attr = block.model_key(key).rpartition(".")
        if attr == "weight" and isinstance(model.get_submodule(path), nn.Conv2d):
            keys.add(key)
    return keys


def as_layout(state: State, channels_last: bool) -> State:
    """`state` with its 4-D tensors in the block's layout (no copy where they are already)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return tuple(t.contiguous(memory_format=fmt) if t.dim() == 4 else t for t in state)


def measure_layouts(config_dir: Path, state: State, *, batch: int | None = None) -> list[bool]:
    """Per block, whether it runs channels-last on this CPU at its current intra-op threads.

    Each conv block is timed alone in both layouts, on what the blocks before it make of `state`'s first item,
    repeated to `batch` items (by default sized per block by `BATCH_VALUES`); no block after the last conv
    block runs. Blocks without a Conv2d are False; blocks on 1x1 maps are True, untimed (`RULES`).
    """
    model = build_model(config_dir, device="cpu")
    split = split_model(model)
    convs = [  # per block, its Conv2d modules
        [model.get_submodule(block.model_key(k).rpartition(".")[0]) for k in sorted(conv_weights(model, block))]
        for block in split.blocks
    ]
    out = [False] * len(convs)
    if not any(convs):
        return out
    state = tuple(t[:1] for t in state)  # the chain runs on one item; each timing repeats it
    last = max(i for i, c in enumerate(convs) if c)
    with torch.inference_mode():
        for i, block in enumerate(split.blocks[: last + 1]):
            if convs[i] and _one_by_one(state):
                out[i] = True
            elif convs[i]:
                n = batch or _batch(sum(t[0].numel() for t in state))
                timed = tuple(t.expand(n, *t.shape[1:]).contiguous() for t in state)
                nchw = _seconds(model, block, convs[i], timed, channels_last=False)
                out[i] = not nchw < _seconds(model, block, convs[i], timed, channels_last=True) * (1 - MARGIN)
            state = block.step(model, state)
    return out


def _one_by_one(state: State) -> bool:
    """Whether every map the block gets is 1x1 (`RULES`)."""
    maps = [t for t in state if t.dim() == 4]
    return bool(maps) and all(t.shape[-2:] == (1, 1) for t in maps)


def _batch(values_per_item: int) -> int:
    low, high = BATCH_RANGE
    fits = max(1, BATCH_VALUES // max(values_per_item, 1))
    return max(low, min(high, 1 << (fits.bit_length() - 1)))


def _seconds(model: nn.Module, block, convs: list[nn.Conv2d], state: State, *, channels_last: bool) -> float:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for module in convs:
        module.weight.data = module.weight.data.contiguous(memory_format=fmt)
    state = as_layout(state, channels_last)
    best = float("inf")
    for r in range(PASSES + 1):
        start = time.perf_counter()
        block.step(model, state)
        if r:
            best = min(best, time.perf_counter() - start)
    return best
