"""BatchNorm folded into the convolution before it, for inference.

In eval mode `bn(conv(x))` is one convolution with weight `w * s` and bias `beta + (b - mean) * s`, where
`s = gamma / sqrt(var + eps)`: the BatchNorm pass over every activation disappears. The folded tensors are new
tensors computed at load time (and kept as the block's prepared form, `candidates.prepared`); the stored block is
never changed. On the shared skeleton a block runs folded inside `swapped(...)`, which swaps each folded BatchNorm
module for what remains of it (nothing, or timm's fused activation) and gives its convolution the bias, then puts
both back.

Pairs are found once per architecture by `find_pairs`, on the shape probe's random-init model: a BatchNorm whose
input is the output of a Conv2d of the same block. Each block is then checked by running it folded and not
on randomised BatchNorm statistics; a block whose outputs differ (a convolution output also used elsewhere,
say) keeps its BatchNorms.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from ..adapters import SplitModel, State


@dataclass(frozen=True)
class FoldPair:
    conv: str  # module path of the Conv2d
    bn: str  # module path of the BatchNorm2d that consumes its output


def foldable_bn(module: nn.Module) -> bool:
    return isinstance(module, nn.BatchNorm2d) and module.track_running_stats and module.affine


def _remainder(bn: nn.Module) -> nn.Module | None:
    """What runs in a folded BatchNorm's place: timm's BatchNormAct2d keeps its dropout and activation. None
    for any other subclass: its forward may do more, so it is never folded."""
    drop, act = getattr(bn, "drop", None), getattr(bn, "act", None)
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    if isinstance(drop, nn.Module) and isinstance(act, nn.Module) and type(bn).__name__ == "BatchNormAct2d":
        return nn.Sequential(drop, act)
    return None


def find_pairs(model: nn.Module, split: SplitModel, state: State) -> list[list[FoldPair]]:
    """Per block, the (conv, BatchNorm) pairs that fold exactly: found by running the blocks on `state`, then
    checked block by block against the unfolded block with randomised BatchNorm statistics. `model` is a
    private random-init CPU model whose BatchNorm statistics this changes."""
    paths = {m: p for p, m in model.named_modules()}
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if foldable_bn(m):
                m.running_mean.normal_(generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.weight.normal_(1.0, 0.2, generator=gen)
                m.bias.normal_(generator=gen)
    pairs: list[list[FoldPair]] = []
    with torch.inference_mode():
        for block in split.blocks:
            found = _trace_pairs(model, block, state, paths)
            out = block.step(model, state)
            if found and not _folds_exactly(model, block, state, out, found):
                found = []
            pairs.append(found)
            state = out
    return pairs


def _trace_pairs(model: nn.Module, block, state: State, paths: dict[nn.Module, str]) -> list[FoldPair]:
    # by the id of each conv output, the conv and that output: held, so that no later tensor takes its id once the
    # step drops it (DenseNet's concatenations did, and were taken for the conv's output)
    conv_out: dict[int, tuple[nn.Module, torch.Tensor]] = {}
    found: list[FoldPair] = []

    def after_conv(module, args, output):
        conv_out[id(output)] = (module, output)

    def before_bn(module, args):
        conv, _ = conv_out.get(id(args[0]), (None, None)) if args else (None, None)
        if (
            conv is not None
            and conv.padding_mode == "zeros"
            and foldable_bn(module)
            and _remainder(module) is not None
        ):
            found.append(FoldPair(paths[conv], paths[module]))

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(after_conv))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(before_bn))
    try:
        block.step(model, state)
    finally:
        for h in handles:
            h.remove()
    return list(dict.fromkeys(found))


def _folds_exactly(model: nn.Module, block, state: State, want: State, pairs: list[FoldPair]) -> bool:
    weights, biases = {}, {}
    for p in pairs:
        weights[p.conv], biases[p.conv] = fold_module(model.get_submodule(p.conv), model.get_submodule(p.bn))
    originals = {p.conv: model.get_submodule(p.conv).weight for p in pairs}
    try:
        for path, w in weights.items():
            model.get_submodule(path)._parameters["weight"] = nn.Parameter(w, requires_grad=False)
        with folded(model, pairs, biases):
            got = block.step(model, state)
    finally:
        for path, w in originals.items():
            model.get_submodule(path)._parameters["weight"] = w
    return len(got) == len(want) and all(
        a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-4 * max(float(b.abs().max()), 1.0))
        for a, b in zip(got, want)
    )


def fold(
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor | None,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    eps: float,
    memory_format: torch.memory_format = torch.preserve_format,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The folded conv (weight, bias) of a conv followed by an eval-mode BatchNorm with these tensors. The
    weight is written in `memory_format` in the same pass (a second pass over fresh memory costs as much)."""
    scale = gamma / torch.sqrt(var + eps)
    bias = beta - mean * scale
    if conv_bias is not None:
        bias = bias + conv_bias * scale
    weight = torch.empty_like(conv_weight, memory_format=memory_format)
    return torch.mul(conv_weight, scale.reshape(-1, *([1] * (conv_weight.dim() - 1))), out=weight), bias


def fold_module(conv: nn.Module, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """`fold` with the tensors the two modules hold."""
    return fold(conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)


# One folded pair in the skeleton: (the BatchNorm's parent `_modules`, its name, what runs in its place, the
# conv's `_parameters`, the folded bias as a Parameter).
Swap = tuple[dict, str, nn.Module, dict, nn.Parameter]


def fold_swaps(model: nn.Module, pairs: list[FoldPair], biases: dict[str, torch.Tensor]) -> list[Swap]:
    """The swaps `swapped` makes for `pairs`, resolved once per load (module paths, remainders, bias Parameters)
    rather than at every run, where they cost more than a small block's compute."""
    swaps = []
    for p in pairs:
        parent_path, _, name = p.bn.rpartition(".")
        parent = model.get_submodule(parent_path)
        swaps.append(
            (
                parent._modules,
                name,
                _remainder(parent._modules[name]),
                model.get_submodule(p.conv)._parameters,
                nn.Parameter(biases[p.conv], requires_grad=False),
            )
        )
    return swaps


@contextlib.contextmanager
def swapped(swaps: list[Swap]) -> Iterator[None]:
    """Runs with each folded BatchNorm replaced by its remainder and its conv given the folded bias (the conv's
    weight must already be the folded one); restores both on exit."""
    saved = []
    try:
        for modules, name, remainder, conv_params, bias in swaps:
            saved.append((modules, name, modules[name], conv_params, conv_params.get("bias")))
            modules[name] = remainder
            conv_params["bias"] = bias
        yield
    finally:
        for modules, name, bn, conv_params, bias in reversed(saved):
            modules[name] = bn
            conv_params["bias"] = bias


def folded(
    model: nn.Module, pairs: list[FoldPair], biases: dict[str, torch.Tensor]
) -> contextlib.AbstractContextManager[None]:
    """`swapped` for pairs not resolved yet."""
    return swapped(fold_swaps(model, pairs, biases))
