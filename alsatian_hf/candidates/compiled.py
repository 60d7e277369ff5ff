"""Blocks run through `torch.compile` (opt-in: `SearchArguments(torch_compile=True)`).

Each block's step function is compiled once per device type and traced against whatever weights the shared
skeleton holds when it runs: dynamo lifts the parameters of `torch.nn` modules into graph inputs, so every
candidate of an architecture reuses the compiled code of its blocks, and swapping a candidate's weights in does
not recompile. A block compiles once per position in the model (its step reads a different submodule) and once
more when the batch size first changes, after which the batch dimension is dynamic.

Off by default, because the measurement says so: on the CPU that built the card (its `precision` table, rows
`fp32+compile`), compiled blocks ran no faster than eager ones (oneDNN convolutions and MKL matmuls are the same
kernels either way; inductor fuses only the cheap elementwise ops around them), and the first search paid
20-40 s of compiling. On CUDA, `torch_compile_mode="reduce-overhead"` replays the blocks as CUDA graphs, whose
outputs are copied out of the graphs' static memory because the engine keeps block outputs across calls. That
path has not run on a device yet: CUDA graph trees treat parameters as fixed addresses, and every candidate's
weights are new tensors, so expect a re-recording per candidate at each block position.
"""

from __future__ import annotations

import weakref
from typing import Callable, Literal

from ..errors import ConfigurationError


CompileMode_T = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
MODES: tuple[str, ...] = CompileMode_T.__args__
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
# dynamo's default limit (8 compiled variants per function, then it silently runs eager) is below the number of
# positions one step function serves (a ResNet's residual blocks share one): each position is one variant
_RECOMPILE_LIMIT = 1024
_ACCUMULATED_RECOMPILE_LIMIT = 16384  # over every function: positions x a static and a dynamic batch, many archs

_compiled: "weakref.WeakKeyDictionary[Callable, dict[tuple[str, str], Callable]]" = weakref.WeakKeyDictionary()


def check_compile_mode(mode: str) -> str:
    """Raises ConfigurationError unless `mode` is one of torch.compile's modes (`MODES`)."""
    if mode not in MODES:
        raise ConfigurationError(f"`torch_compile_mode` must be one of {list(MODES)}, got {mode!r}.")
    return mode


def compiled_step(step: Callable, device_type: str, mode: str = "default") -> Callable:
    """`step(model, state) -> state` compiled for `device_type` in torch.compile's `mode`, built on first use."""
    variants = _compiled.setdefault(step, {})
    fn = variants.get((device_type, mode))
    if fn is None:
        fn = variants[(device_type, mode)] = _build(step, device_type, mode)
    return fn


def _build(step: Callable, device_type: str, mode: str) -> Callable:
    import torch._dynamo

    compiled = torch.compile(step, mode=mode, dynamic=None)
    limits = torch._dynamo.config.patch(
        recompile_limit=_RECOMPILE_LIMIT, accumulated_recompile_limit=_ACCUMULATED_RECOMPILE_LIMIT
    )
    graphs = device_type == "cuda" and mode in _CUDA_GRAPH_MODES

    def run(model, state):
        with limits:
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()  # the previous replay's outputs are copied out below
            out = compiled(model, state)
        return tuple(t.clone() for t in out) if graphs else out

    return run
