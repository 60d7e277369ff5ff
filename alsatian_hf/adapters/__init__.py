"""`alsatian_hf.adapters`: split transformers and timm models into the blocks of their feature extractor."""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

from ..errors import UnsupportedArchitectureError
from . import timm_family, transformers_family  # noqa: F401  (they register their adapters)
from ._base import (
    Adapter,
    Block,
    SplitModel,
    State,
    base_model,
    check_coverage,
    find_adapter,
    list_adapters,
    register_adapter,
    state_nbytes,
)
from .sentence_pooling import SentencePooling, sentence_prompt, with_sentence_pooling


def split_model(model: nn.Module, *, architecture: str | None = None, checkpoint_keys=None,
                pooling: SentencePooling | None = None) -> SplitModel:  # fmt: skip
    """Split a timm or transformers model with the adapter registered for it.

    Args:
        architecture: the timm `architecture` from config.json (read from `model.pretrained_cfg` if omitted).
        checkpoint_keys: the checkpoint's tensor names, when they come from a real file; otherwise the keys
            `save_pretrained` would write.
        pooling: a sentence-transformers repo's read-out (`SentencePooling.from_folder`), which replaces the
            adapter's where the adapter knows its token states (text adapters do).

    Raises:
        UnsupportedArchitectureError: when no adapter fits.
    """
    cfg = getattr(model, "config", None)
    model_type = getattr(cfg, "model_type", None) if cfg is not None and not isinstance(cfg, dict) else None
    if architecture is None:
        architecture = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    try:
        adapter = find_adapter(
            model_type, architecture, f"timm:{type(model).__name__}", model_class=type(model).__name__
        )
    except UnsupportedArchitectureError:
        return _discovered(model, checkpoint_keys)
    split = adapter.split(model, checkpoint_keys)
    split.adapter = adapter
    token_states = getattr(adapter, "token_states", None)
    if pooling is not None and token_states is not None:
        base, p = base_model(model)
        found = token_states(base, p)
        if found is not None:
            split = with_sentence_pooling(split, found, pooling)
    return split


def _discovered(model: nn.Module, checkpoint_keys) -> SplitModel:
    """Discovery (adapters/discovery.py) for unregistered vision models, validated on a random input."""
    from .discovery import discover, validate

    split = discover(model, family=f"discovered:{type(model).__name__}")
    validate(model, split)
    if getattr(model, "config", None) is not None and not isinstance(model.config, dict):
        from .transformers_family import checkpoint_key_map

        key_map = checkpoint_key_map(model, checkpoint_keys)
        for block in split.blocks:
            block.model_keys = {key_map[k]: k for k in block.keys if k in key_map}
            block.keys = tuple(key_map[k] for k in block.keys if k in key_map)
            block.prefix = ""
        split.head_model_keys = {key_map[k]: k for k in split.head_keys if k in key_map}
        split.head_keys = tuple(split.head_model_keys)
        split.ignored_keys = tuple(k for k in checkpoint_keys or () if k not in set(key_map.values()))
    split.adapter = Adapter()
    return split


def _locate(model: nn.Module, key: str) -> tuple[nn.Module, str]:
    path, _, attr = key.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


# Where one tensor goes in the skeleton: the owning module's `_parameters` or `_buffers`, the name, the value.
Slot = tuple[dict, str, Any]


def bind_block(split: SplitModel, block: Block, tensors: dict[str, torch.Tensor]) -> list[Slot]:
    """The skeleton slots of `tensors` (checkpoint keys, a merge's sources joined or not: `Block.joined`),
    resolved once per load: `assign` then writes them before every run of the block, without copying them.

    Resolving module paths and wrapping Parameters cost 90-170 us per run, more than a small block's compute,
    and the shared skeleton may hold another candidate's weights at every run. Non-persistent buffers of the
    block's modules (never in a checkpoint) are moved to the tensors' device here, and so are those of modules
    that own no checkpoint tensor at all (a rotary table that every layer's step calls, such as timm EVA's
    `rope` or DINOv3's `rope_embeddings`), since no block's load would move them.
    """
    device = next(iter(tensors.values())).device if tensors else None
    slots: list[Slot] = []
    owners = set()
    for model_key, t in block.assigned(tensors):
        module, attr = _locate(split.model, model_key)
        if attr in module._parameters:
            slots.append((module._parameters, attr, nn.Parameter(t, requires_grad=False)))
        else:
            slots.append((module._buffers, attr, t))
        owners.add(module)
    for sub in {m for owner in owners for m in owner.modules()} | _weightless(split.model):
        for name in sub._non_persistent_buffers_set:
            if sub._buffers.get(name) is not None and sub._buffers[name].device != device:
                sub._buffers[name] = sub._buffers[name].to(device)
    return slots


_WEIGHTLESS: "weakref.WeakKeyDictionary[nn.Module, set[nn.Module]]" = weakref.WeakKeyDictionary()


def _weightless(model: nn.Module) -> set[nn.Module]:
    """The modules of `model` that hold non-persistent buffers and nothing a checkpoint holds (found once per
    skeleton)."""
    if model not in _WEIGHTLESS:
        _WEIGHTLESS[model] = {
            m
            for m in model.modules()
            if m._non_persistent_buffers_set
            and not any(True for _ in m.parameters())
            and not any(n not in sub._non_persistent_buffers_set for sub in m.modules() for n in sub._buffers)
        }
    return _WEIGHTLESS[model]


def assign(slots: list[Slot]) -> None:
    for owner, name, value in slots:
        owner[name] = value


def load_block(split: SplitModel, block: Block, tensors: dict[str, torch.Tensor]) -> None:
    """Assign `tensors` (checkpoint keys) into the skeleton, without copying them (`bind_block`, then `assign`)."""
    assign(bind_block(split, block, tensors))


def unload_block(split: SplitModel, block: Block) -> None:
    """Put the block's tensors back on the meta device, freeing their memory."""
    for model_key in block.model_tensors():
        module, attr = _locate(split.model, model_key)
        if attr in module._parameters:
            p = module._parameters[attr]
            module._parameters[attr] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False)
        else:
            module._buffers[attr] = torch.empty_like(module._buffers[attr], device="meta")


__all__ = [
    "Adapter",
    "Block",
    "SentencePooling",
    "SplitModel",
    "State",
    "assign",
    "base_model",
    "bind_block",
    "check_coverage",
    "find_adapter",
    "list_adapters",
    "load_block",
    "register_adapter",
    "sentence_prompt",
    "split_model",
    "state_nbytes",
    "unload_block",
]
