"""Block discovery for vision models no adapter is registered for.

Rule: the outermost homogeneous `ModuleList`/`Sequential` (at least two children of one class) that holds most
of the base model's parameters is the block list. The stem is everything the model runs before the list's
first block (captured with a forward pre-hook). The read-out of a transformers model applies, in registration
order, the modules registered after the list (the head excluded), then pools what is left (first token of a
sequence, mean over a feature map); that of a timm model applies the modules `forward_features` calls after the
list, in the order it calls them, then `forward_head(pre_logits=True)`.

A timm model without such a list (RegNet's `s1`..`s4`, MobileNetV3, DenseNet, VGG) is split as timm's own
`features_only` wrapper assumes it runs: `forward_features` is the modules it calls, one after another
(`nn.Sequential`s opened up), each a block, a weightless one (an activation, a pool) joined to the block
before; the read-out is `forward_head(pre_logits=True)`. The call order is traced on a meta copy, so no weight
is read.

A discovered split is used only when it reproduces the library's own features on a random input; otherwise
`UnsupportedArchitectureError` says how to register an adapter. Text models are never discovered: their layers
take attention masks that a single-tensor state would silently drop.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import UnsupportedArchitectureError
from ._base import Block, SplitModel, base_model, state_keys


class _Captured(Exception):
    def __init__(self, hidden: torch.Tensor):
        self.hidden = hidden


def _unsupported(model: nn.Module, why: str) -> UnsupportedArchitectureError:
    return UnsupportedArchitectureError(
        f"No block adapter is registered for {type(model).__name__}, and discovery failed: {why}. Register one with "
        "`@alsatian_hf.adapters.register_adapter('<model_type or timm architecture>')` on an `Adapter` subclass."
    )


def find_block_list(model: nn.Module) -> tuple[str, nn.Module]:
    """(path, module) of the outermost homogeneous list holding most of the base model's parameters."""
    base, prefix = base_model(model)
    total = sum(p.numel() for p in base.parameters())
    for name, module in base.named_modules():  # pre-order: outer lists come first
        if isinstance(module, (nn.ModuleList, nn.Sequential)) and len(module) >= 2:
            kinds = {type(child) for child in module}
            owned = sum(p.numel() for p in module.parameters())
            if len(kinds) == 1 and total and owned > total / 2:
                return prefix + name, module
    raise _unsupported(model, "no homogeneous ModuleList/Sequential holds most of its parameters")


def _is_text(model: nn.Module) -> bool:
    return getattr(model, "main_input_name", "pixel_values") != "pixel_values"


def discover(model: nn.Module, family: str) -> SplitModel:
    """A split found by the rule above (not yet validated: see `validate`)."""
    if _is_text(model):
        raise _unsupported(model, "text models are not discovered (their layers need attention masks)")
    try:
        path, layers = find_block_list(model)
    except UnsupportedArchitectureError:
        if hasattr(model, "forward_features"):
            return _discover_calls(model, family)
        raise
    base, prefix = base_model(model)
    all_keys = list(model.state_dict(keep_vars=True))
    list_keys = {k for k in all_keys if k.startswith(path + ".")}
    is_timm = hasattr(model, "forward_features")
    cfg = getattr(model, "pretrained_cfg", None) or {}
    head_prefixes = tuple(f"{c}." for c in ([cfg.get("classifier")] if cfg.get("classifier") else []))
    order = [k for k in all_keys if k not in list_keys]
    first_list = next(i for i, k in enumerate(all_keys) if k in list_keys)
    before = [k for k in all_keys[:first_list] if k not in list_keys]
    after_modules = _modules_after(base, path[len(prefix) :])
    after_keys = [prefix + n + "." + k for n, m in after_modules for k in m.state_dict(keep_vars=True)]
    head = [k for k in order if k not in before and k not in after_keys]
    if is_timm:
        head = [k for k in order if k.startswith(head_prefixes)]
        after_keys = [k for k in after_keys if not k.startswith(head_prefixes)]
        # what forward_features runs after the list, in its order; forward_head(pre_logits=True) does the rest
        tail = list(dict.fromkeys(_trace_calls(model, [n for n, _ in after_modules]) or []))

    def stem(m, s):
        handle = m.get_submodule(path)[0].register_forward_pre_hook(
            lambda _mod, args: (_ for _ in ()).throw(_Captured(args[0]))
        )
        try:
            if is_timm:
                m.forward_features(s[0])
            else:
                m.base_model(pixel_values=s[0])
        except _Captured as c:
            return (c.hidden,)
        finally:
            handle.remove()
        raise _unsupported(m, f"its forward never reached {path}")

    def layer(i):
        def step(m, s):
            out = m.get_submodule(path)[i](s[0])
            return (out[0] if isinstance(out, tuple) else out,)

        return step

    def readout(m, s):
        x = s[0]
        if is_timm:
            for name in tail:
                x = m.get_submodule(name)(x)
            return (m.forward_head(x, pre_logits=True),)
        b = base_model(m)[0]
        for name, _ in after_modules:
            x = b.get_submodule(name)(x)
        return (_pool(x),)

    blocks = [Block("stem", tuple(before), stem)]
    blocks += [
        Block(f"{path}.{i}", state_keys(layers[i], f"{path}.{i}."), layer(i), prefix=f"{path}.{i}.")
        for i in range(len(layers))
    ]
    blocks.append(Block("readout", tuple(after_keys), readout))
    return SplitModel(model=model, blocks=blocks, head_keys=tuple(head), family=family)


def _discover_calls(model: nn.Module, family: str) -> SplitModel:
    """A timm model as the sequence of modules `forward_features` calls (see the module's docstring)."""
    flat = _flat_children(model)
    calls = _trace_calls(model, flat)
    if not calls or len(set(calls)) != len(calls):
        raise _unsupported(model, "no block list, and forward_features is not a sequence of its modules")
    cfg = getattr(model, "pretrained_cfg", None) or {}
    head_prefixes = tuple(f"{c}." for c in ([cfg.get("classifier")] if cfg.get("classifier") else []))
    groups: list[list[str]] = []
    for name in calls:
        if groups and not model.get_submodule(name).state_dict():  # an activation, a pool: with the block before
            groups[-1].append(name)
        else:
            groups.append([name])
    all_keys = list(model.state_dict(keep_vars=True))
    owned = {
        k: i for i, group in enumerate(groups) for n in group for k in state_keys(model.get_submodule(n), n + ".")
    }
    if any("." not in k and not k.startswith(head_prefixes) for k in all_keys):
        raise _unsupported(model, "forward_features reads weights outside its modules")

    def step(names):
        def run(m, s):
            x = s[0]
            for name in names:
                x = m.get_submodule(name)(x)
            return (x,)

        return run

    blocks = [
        Block(group[0], tuple(k for k in all_keys if owned.get(k) == i), step(group), prefix=f"{group[0]}.")
        for i, group in enumerate(groups)
    ]
    rest = [k for k in all_keys if k not in owned]
    readout = tuple(k for k in rest if not k.startswith(head_prefixes))
    blocks.append(Block("readout", readout, lambda m, s: (m.forward_head(s[0], pre_logits=True),)))
    head = tuple(k for k in rest if k.startswith(head_prefixes))
    return SplitModel(model=model, blocks=blocks, head_keys=head, family=family)


def _flat_children(model: nn.Module) -> list[str]:
    """The model's children by name, each `nn.Sequential` opened up into its own (recursively)."""
    out = []

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.Sequential):
                walk(child, f"{prefix}{name}.")
            else:
                out.append(prefix + name)

    walk(model, "")
    return out


def _trace_calls(model: nn.Module, names: list[str]) -> list[str] | None:
    """Which of the modules `names` timm's `forward_features` calls, in call order, traced on a meta copy of
    the model (no weight is copied or read); None where the model does not run on the meta device."""
    memo: dict = {
        id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False) for p in model.parameters()
    }
    memo |= {id(b): torch.empty_like(b, device="meta") for b in model.buffers()}
    cfg = getattr(model, "pretrained_cfg", None) or {}
    channels, height, width = cfg.get("input_size", (3, 224, 224))
    calls: list[str] = []
    try:  # the copy is the probe's own: its hooks go with it
        probe = copy.deepcopy(model, memo)
        for name in names:
            probe.get_submodule(name).register_forward_hook(lambda *_, n=name: calls.append(n))
        with torch.no_grad():
            probe.forward_features(torch.empty(1, channels, height, width, device="meta"))
    except Exception:  # a module that does not copy, an op without a meta kernel, a shape check: no trace
        return None
    return calls


def _modules_after(base: nn.Module, list_path: str) -> list[tuple[str, nn.Module]]:
    """Top-level-most modules registered after the block list (siblings of it and of its ancestors)."""
    out: list[tuple[str, nn.Module]] = []
    parts = list_path.split(".")
    for depth in range(len(parts), 0, -1):
        parent_path = ".".join(parts[: depth - 1])
        parent = base.get_submodule(parent_path) if parent_path else base
        names = list(parent._modules)
        for name in names[names.index(parts[depth - 1]) + 1 :]:
            child = parent._modules[name]
            if child is not None:
                out.append((f"{parent_path}.{name}" if parent_path else name, child))
    return out


def _pool(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:  # (batch, tokens, dim): the first token
        return x[:, 0]
    if x.dim() == 4:  # (batch, channels, h, w): global average
        return x.mean((2, 3))
    return x.flatten(1)


def reference_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The library's own features: timm's pre-logits; for a transformers classifier, what its last head module is
    handed (CvT's head normalises its class token, I-JEPA's averages every token); for a bare transformers model,
    `pooler_output` (else pooled states)."""
    if hasattr(model, "forward_features"):
        return model.forward_head(model.forward_features(x), pre_logits=True)
    base, _ = base_model(model)
    heads = [child for child in model.children() if child is not base]
    if base is not model and heads:
        handed: list[torch.Tensor] = []
        hooks = [h.register_forward_pre_hook(lambda _m, args: handed.append(args[0])) for h in heads]
        try:
            model(pixel_values=x)
        finally:
            for hook in hooks:
                hook.remove()
        if handed:
            return handed[-1].flatten(1)  # a head that flattens first (ResNet's) is handed (batch, C, 1, 1)
    out = base(pixel_values=x)
    pooled = getattr(out, "pooler_output", None)
    return _pool(pooled) if pooled is not None else _pool(out.last_hidden_state)


def validate(model: nn.Module, split: SplitModel) -> None:
    """Raises UnsupportedArchitectureError unless the discovered blocks reproduce the model's own features."""
    if any(p.is_meta for p in model.parameters()):
        return  # a skeleton: the random-init copy used for shape probing is validated instead
    cfg = getattr(model, "pretrained_cfg", None) or {}
    config = getattr(model, "config", None)
    if "input_size" in cfg:  # timm: (channels, height, width)
        height, width = cfg["input_size"][-2:]
    else:  # transformers: an int, or [height, width] (Hiera's, PVT v2's)
        size = getattr(config, "image_size", 224)
        height, width = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    channels = getattr(config, "num_channels", 3)
    x = torch.randn(2, channels, height, width, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            got, want = split.run((x,))[0], reference_features(model, x)
            ok = got.numel() == want.numel() and torch.allclose(got.reshape(want.shape), want, atol=1e-5)
    except UnsupportedArchitectureError:
        raise
    except Exception as e:  # the rule does not fit this forward
        raise _unsupported(model, f"the discovered blocks do not run ({type(e).__name__}: {e})") from e
    if not ok:
        raise _unsupported(model, "the discovered blocks do not reproduce its own features")
