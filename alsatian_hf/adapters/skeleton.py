"""Build a model from its config.json alone: on the meta device (no weights) or randomly initialised."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from .._digest_cache import DigestCache
from ..errors import UnsupportedArchitectureError


def library_of(config: dict) -> str:
    """'timm' for timm's config.json (it names an `architecture`), 'transformers' when it has a `model_type`."""
    if "architecture" in config:
        return "timm"
    if "model_type" in config:
        return "transformers"
    raise UnsupportedArchitectureError(
        "config.json names neither a timm `architecture` nor a transformers "
        "`model_type`; only timm and transformers models can be split into blocks."
    )


_META_CACHE = DigestCache()  # config.json digest -> the shared meta skeleton


def build_model(config_dir: str | Path, *, device: str | torch.device = "meta", shared: bool = True) -> nn.Module:
    """The model described by `config_dir/config.json`, in eval mode, without loading any weights.

    A meta skeleton is built once per config and shared (`shared=False` gives a private copy): callers
    assign the tensors they need right before they run a block (see `candidates.build_candidate`).

    On "meta" no weight is allocated: accelerate's `init_empty_weights` keeps buffers real, because
    non-persistent ones (BERT's `position_ids`, Swin's `relative_position_index`) never come from a checkpoint.
    On "cpu" the weights are the library's random initialisation (used to probe shapes with one real item).
    """
    config_dir = Path(config_dir)
    raw = (config_dir / "config.json").read_bytes()
    if str(device) == "meta":
        # Fine-tunes of one base share a config: build it once. A library's weight init still runs on the meta
        # device (timm's ViT: ~0.3 s a model), which dominated the set-up of a search over many fine-tunes.
        model = _META_CACHE.get(hashlib.sha256(raw).hexdigest(), lambda: _build(config_dir, raw, device))
        return model if shared else copy.deepcopy(model)
    return _build(config_dir, raw, device)


def _build(config_dir: Path, raw: bytes, device) -> nn.Module:
    from accelerate import init_empty_weights

    config = json.loads(raw)
    library = library_of(config)
    context = init_empty_weights() if str(device) == "meta" else torch.device(device)
    with context:
        if library == "timm":
            import timm
            from timm.models._hub import load_model_config_from_path

            pretrained_cfg, name, model_args = load_model_config_from_path(config_dir)
            model = timm.create_model(name, pretrained=False, pretrained_cfg=pretrained_cfg, **model_args)
        else:
            import transformers

            cfg = transformers.AutoConfig.from_pretrained(config_dir)
            arch = (cfg.architectures or [None])[0]
            cls = getattr(transformers, arch, None) if arch else None
            if cls is None:
                cls = transformers.AutoModel
                model = cls.from_config(cfg)
            else:
                model = cls(cfg)
    return model.eval()
