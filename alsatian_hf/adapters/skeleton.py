"""Build a model from its config.json alone: on the meta device (no weights) or randomly initialised."""

from __future__ import annotations

import copy
import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

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


def _custom_code(config: dict) -> UnsupportedArchitectureError:
    """For a config whose `auto_map` points at the repo's own code (`trust_remote_code` models)."""
    return UnsupportedArchitectureError(
        f"config.json's model_type {config.get('model_type')!r} is the repo's own code (its `auto_map`), which a "
        "search never runs: only architectures transformers or timm implement can be searched."
    )


_META_CACHE = DigestCache()  # config.json digest -> (the shared meta skeleton, its number of parameters)


def build_model(config_dir: str | Path, *, device: str | torch.device = "meta", shared: bool = True,
                max_parameters: int | None = None) -> nn.Module:  # fmt: skip
    """The model described by `config_dir/config.json`, in eval mode, without loading any weights.

    A meta skeleton is built once per config and shared (`shared=False` gives a private copy): callers
    assign the tensors they need right before they run a block (see `candidates.build_candidate`).

    On "meta" no weight is allocated: accelerate's `init_empty_weights` keeps buffers real, because
    non-persistent ones (BERT's `position_ids`, Swin's `relative_position_index`) never come from a checkpoint.
    On "cpu" the weights are the library's random initialisation (used to probe shapes with one real item).

    `max_parameters` bounds the parameters the config may create (a crafted config.json with a million layers
    would otherwise take minutes and gigabytes to build before any check could refuse it).

    Raises:
        UnsupportedArchitectureError: for a config neither library builds, or one over `max_parameters`.
    """
    config_dir = Path(config_dir)
    raw = (config_dir / "config.json").read_bytes()
    if str(device) == "meta":
        # Fine-tunes of one base share a config: build it once. A library's weight init still runs on the meta
        # device (timm's ViT: ~0.3 s a model), which dominated the set-up of a search over many fine-tunes.
        def build():  # with its parameter count: counting 5,000 tensors per candidate was 2 ms of set-up
            model = _build(config_dir, raw, device, max_parameters)
            return model, sum(1 for _ in model.parameters())

        model, num_parameters = _META_CACHE.get(hashlib.sha256(raw).hexdigest(), build)
        if max_parameters is not None and num_parameters > max_parameters:
            raise _too_many(max_parameters)  # built earlier for a checkpoint with more tensors
        return model if shared else copy.deepcopy(model)
    return _build(config_dir, raw, device, max_parameters)


def _too_many(limit: int) -> UnsupportedArchitectureError:
    return UnsupportedArchitectureError(
        f"config.json describes a model with more than {limit} parameter tensors, far more than its checkpoint "
        "holds; the config does not describe these weights."
    )


@contextmanager
def _bounded(limit: int | None):
    """Count parameters as modules register them and stop building past `limit`."""
    if limit is None:
        yield
        return
    registered, count = nn.Module.register_parameter, [0]

    def counting(module, name, param):
        if param is not None:
            count[0] += 1
            if count[0] > limit:
                raise _too_many(limit)
        return registered(module, name, param)

    nn.Module.register_parameter = counting
    try:
        yield
    finally:
        nn.Module.register_parameter = registered


def _timm_on_meta(create: Callable[[], nn.Module]) -> nn.Module:
    """A timm model with meta parameters and real buffers.

    Most build under accelerate's `init_empty_weights`, which keeps every buffer as the constructor computed it.
    Some constructors compute a buffer on their parameters' device: on meta parameters it lands on meta (Swin's
    shifted-window masks), or the constructor fails (Swin V2's relative coordinates, EVA's mixed rotary tables; the
    hybrid ViTs run their backbone on a real input). A failed one is built again wholly on meta. Either way the
    buffers left on meta are recomputed as timm does after loading a checkpoint: `init_non_persistent_buffers`,
    run on CPU views of zeros standing in for the parameters (no memory). Persistent ones come from the checkpoint.

    Raises:
        UnsupportedArchitectureError: when a buffer left on meta is computed by a module without that hook.
    """
    from accelerate import init_empty_weights

    failed = None
    try:
        with init_empty_weights():
            model = create()
    except UnsupportedArchitectureError:
        raise
    except (NotImplementedError, RuntimeError) as e:
        failed = e
        with init_empty_weights(include_buffers=True):  # every tensor on meta, constructors' inputs included
            model = create()
    owners = []  # the modules to recompute their buffers
    for path, module in model.named_modules():
        lost = {k for k, b in module._buffers.items() if b is not None and b.is_meta}
        computed = lost & module._non_persistent_buffers_set
        if computed and not hasattr(module, "init_non_persistent_buffers"):
            where = f"{path or 'the model'}'s computed buffers {sorted(computed)}"
            why = (
                f"its constructor failed on the meta device ({failed}), and {where} have" if failed
                else f"{where} were left on the meta device, and it has"
            )  # fmt: skip
            raise UnsupportedArchitectureError(
                f"timm's {type(model).__name__} cannot be built without its weights: {why} no "
                "`init_non_persistent_buffers` to recompute them."
            ) from failed
        for key in lost:
            module._buffers[key] = torch.zeros(module._buffers[key].shape, dtype=module._buffers[key].dtype)
        if computed:
            owners.append(module)
    for module in owners:
        with _zeros_for_parameters(module):
            module.init_non_persistent_buffers()
    return model


@contextmanager
def _zeros_for_parameters(module: nn.Module):
    """`module`'s meta parameters as zeros on the CPU, each broadcast from one element, for the duration."""
    swapped = []
    for sub in module.modules():
        for key, param in sub._parameters.items():
            if param is not None and param.is_meta:
                swapped.append((sub, key, param))
                sub._parameters[key] = nn.Parameter(
                    torch.zeros((), dtype=param.dtype).expand(param.shape), requires_grad=False
                )
    try:
        yield
    finally:
        for sub, key, param in swapped:
            sub._parameters[key] = param


def _build(config_dir: Path, raw: bytes, device, max_parameters: int | None = None) -> nn.Module:
    from accelerate import init_empty_weights

    config = json.loads(raw)
    library = library_of(config)
    quantized = config.get("quantization_config")
    if isinstance(quantized, dict):  # packed integers (GPTQ, AWQ, bitsandbytes, FP8): not the tensors the model runs
        raise UnsupportedArchitectureError(
            f"its weights are quantized ({quantized.get('quant_method', 'unknown method')}); a search reads "
            "full-precision weights. Search the model they were quantized from (the card's `base_model`)."
        )
    meta = str(device) == "meta"
    if library == "timm":
        import timm
        from timm.models._hub import _parse_model_cfg  # `load_model_config_from_path`, on the parsed config

        if config.get("model_type") == "timm_wrapper" and "pretrained_cfg" not in config:
            raise UnsupportedArchitectureError(
                "it was saved by transformers' TimmWrapper built from a bare config: its tensors are named "
                "under `timm_model.`, not as timm names them, and it has no `pretrained_cfg` to preprocess "
                "with. A TimmWrapper loaded from timm weights (`from_pretrained('timm/...')`) saves timm's "
                "names and is searched; re-save the model that way."
            )
        if config.get("model_args", {}) is None:  # transformers' TimmWrapper saves "no arguments" as null
            del config["model_args"]
        source = {"file": str(config_dir), "source": "local-dir"}
        pretrained_cfg, name, model_args = _parse_model_cfg(config, extra_fields=source)

        def create() -> nn.Module:
            with _bounded(max_parameters):
                return timm.create_model(name, pretrained=False, pretrained_cfg=pretrained_cfg, **model_args)

        if meta:
            model = _timm_on_meta(create)
        else:
            with torch.device(device):
                model = create()
    else:
        import transformers

        with init_empty_weights() if meta else torch.device(device), _bounded(max_parameters):
            try:  # a search never runs a repo's own code, and never asks: transformers would prompt for 15 s
                cfg = transformers.AutoConfig.from_pretrained(config_dir, trust_remote_code=False)
            except ValueError as e:
                if "trust_remote_code" not in str(e):
                    raise
                raise _custom_code(config) from e
            arch = (cfg.architectures or [None])[0]
            cls = getattr(transformers, arch, None) if arch else None
            if cls is None:
                cls = transformers.AutoModel
                model = cls.from_config(cfg)
            else:
                model = cls(cfg)
    # nothing trains a skeleton; a weight that requires grad would trip the autograd hooks of FlopCounterMode's
    # module tracker in the shape probe where a module takes it as input (DeBERTa's LayerNorm of its relative
    # embeddings)
    return model.eval().requires_grad_(False)
