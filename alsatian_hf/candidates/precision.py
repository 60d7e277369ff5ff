"""The float precision blocks run in: exact fp32 by default, TF32 or bf16 autocast when a user opts in.

PyTorch's own defaults are not exact on CUDA: cuDNN may run fp32 convolutions in TF32
(`torch.backends.cudnn.allow_tf32` is True), which rounds their inputs to a 10-bit mantissa. So "fp32" turns
TF32 off for cuBLAS and cuDNN while a block runs on CUDA, and puts the user's settings back after; on CPU it
changes nothing. "tf32" turns TF32 on for both (Ampere and later GPUs). "bf16" runs each block under
`torch.autocast` in bfloat16: matmuls and convolutions take bf16 inputs, and the states a block hands on (and
the activation cache holds) are mostly bf16.

The two opt-in modes change the features' rounding, so they are part of a candidate's `numerics` (the feature
cache and the batch-size choice are kept per precision). Every strategy runs the same blocks under the same
mode, so `alsatian`, `shift` and `base` still rank alike within one mode.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator, Literal

import torch

from ..errors import ConfigurationError


logger = logging.getLogger("alsatian_hf")

Precision_T = Literal["fp32", "tf32", "bf16"]
PRECISIONS: tuple[str, ...] = Precision_T.__args__


def check_precision(precision: str) -> str:
    """Raises ConfigurationError unless `precision` is one of `PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ConfigurationError(
            f"`precision` must be one of {list(PRECISIONS)}, got {precision!r}. 'fp32' (the default) keeps "
            "results exact; 'tf32' (CUDA) and 'bf16' trade rounding for speed."
        )
    return precision


def effective_precision(precision: str, device: torch.device) -> str:
    """The mode a search on `device` runs in: "tf32" means nothing to a CPU's kernels, so it runs as "fp32"
    (and shares fp32's cached features); "bf16" runs anywhere, with a warning where the CPU has no bf16
    instructions and emulates them, many times slower than fp32."""
    check_precision(precision)
    if device.type == "cuda":
        return precision
    if precision == "tf32":
        logger.warning("precision='tf32' applies to CUDA devices only; this search runs on %s in exact fp32.", device)
        return "fp32"
    if precision == "bf16" and device.type == "cpu" and not _cpu_has_bf16():
        logger.warning(
            "precision='bf16' on a CPU without bf16 instructions (%s): its kernels are emulated and run many "
            "times slower than fp32. Use precision='fp32' on this machine.",
            torch.backends.cpu.get_cpu_capability(),
        )
    return precision


def _cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX512-BF16 or AMX); True where torch cannot tell."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    matmul, conv = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, conv


@contextlib.contextmanager
def precision_context(precision: str, device_type: str) -> Iterator[None]:
    """What one block call on `device_type` ("cpu", "cuda", ...) runs under, in `precision`: on CUDA, TF32 on
    for "tf32" and off otherwise (the fp32 ops that autocast leaves stay exact too); autocast for "bf16"."""
    with contextlib.ExitStack() as stack:
        if device_type == "cuda":
            stack.enter_context(_tf32(precision == "tf32"))
        if precision == "bf16":
            stack.enter_context(torch.autocast(device_type, dtype=torch.bfloat16))
        yield
