"""Adapters for timm models: resnet/resnext, efficientnet(_lite), vit/deit.

They are registered under `timm:<ModelClass>`, and an exact timm `architecture` may be registered too.
The block lists follow `forward_features` / `forward_head(pre_logits=True)` rather than `group_matcher`,
which merges final norms into the last block and downsampling into the next stage.
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import Adapter, Block, SplitModel, State, register_adapter, state_keys


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    classifier = cfg.get("classifier") or "fc"
    names = classifier if isinstance(classifier, (list, tuple)) else [classifier]
    return tuple(f"{n}." for n in names)


def _finish(model: nn.Module, family: str, blocks: list[Block]) -> SplitModel:
    owned = {k for b in blocks for k in b.keys}
    heads = _classifier_prefixes(model)
    head_keys = tuple(k for k in model.state_dict(keep_vars=True) if k not in owned and k.startswith(heads))
    return SplitModel(model=model, blocks=blocks, head_keys=head_keys, family=family)


def _sub_block(model: nn.Module, path: str) -> Block:
    module = model.get_submodule(path)

    def step(m: nn.Module, state: State, _path=path) -> State:
        return (m.get_submodule(_path)(state[0]),)

    return Block(name=path, keys=state_keys(module, path + "."), step=step, prefix=path + ".")


def _modules_block(model: nn.Module, name: str, paths: list[str], step) -> Block:
    keys: tuple[str, ...] = ()
    for p in paths:
        if hasattr(model, p) and isinstance(getattr(model, p), nn.Module):
            keys += state_keys(model.get_submodule(p), p + ".")
        elif isinstance(getattr(model, p, None), (nn.Parameter, torch.Tensor)):
            keys += (p,)
    return Block(name=name, keys=keys, step=step)


@register_adapter("timm:ResNet")
class TimmResNetAdapter(Adapter):
    """stem (conv1, bn1, act, maxpool) | every residual block of layer1..4 | global pool."""

    family = "timm-resnet"

    def split(self, model: nn.Module) -> SplitModel:
        def stem(m, s):
            x = m.maxpool(m.act1(m.bn1(m.conv1(s[0]))))
            return (x,)

        blocks = [_modules_block(model, "stem", ["conv1", "bn1"], stem)]
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            for i in range(len(getattr(model, stage))):
                blocks.append(_sub_block(model, f"{stage}.{i}"))
        blocks.append(Block("readout", (), lambda m, s: (m.forward_head(s[0], pre_logits=True),)))
        return _finish(model, self.family, blocks)


@register_adapter("timm:EfficientNet")
class TimmEfficientNetAdapter(Adapter):
    """stem (conv_stem, bn1) | every block of every stage | conv_head + bn2 | global pool."""

    family = "timm-efficientnet"

    def split(self, model: nn.Module) -> SplitModel:
        blocks = [_modules_block(model, "stem", ["conv_stem", "bn1"], lambda m, s: (m.bn1(m.conv_stem(s[0])),))]
        for i, stage in enumerate(model.blocks):
            for j in range(len(stage)):
                blocks.append(_sub_block(model, f"blocks.{i}.{j}"))
        blocks.append(_modules_block(model, "conv_head", ["conv_head", "bn2"], lambda m, s: (m.bn2(m.conv_head(s[0])),)))
        blocks.append(Block("readout", (), lambda m, s: (m.forward_head(s[0], pre_logits=True),)))
        return _finish(model, self.family, blocks)


@register_adapter("timm:VisionTransformer")
class TimmViTAdapter(Adapter):
    """stem (patch embed, tokens, position embedding, pre-norm) | every transformer block | norm + pool."""

    family = "timm-vit"

    def split(self, model: nn.Module) -> SplitModel:
        def stem(m, s):
            x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(s[0]))))
            return (x,)

        def readout(m, s):
            return (m.forward_head(m.norm(s[0]), pre_logits=True),)

        blocks = [_modules_block(model, "stem", ["cls_token", "reg_token", "pos_embed", "patch_embed", "norm_pre"], stem)]
        for i in range(len(model.blocks)):
            blocks.append(_sub_block(model, f"blocks.{i}"))
        blocks.append(_modules_block(model, "readout", ["norm", "attn_pool", "fc_norm"], readout))
        return _finish(model, self.family, blocks)
