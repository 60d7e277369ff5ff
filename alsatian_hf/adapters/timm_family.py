"""Adapters for timm models: resnet/resnext, efficientnet(_lite), vit/deit, eva (EVA-02, RoPE ViTs), convnext, swin,
cait, xcit, twins, hrnet.

They are registered under `timm:<ModelClass>`, and an exact timm `architecture` may be registered too.
The block lists follow `forward_features` / `forward_head(pre_logits=True)` rather than `group_matcher`,
which merges final norms into the last block and downsampling into the next stage.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UnsupportedArchitectureError
from ._base import Adapter, Block, SplitModel, State, grid_map, grid_size, grid_state, register_adapter, state_keys


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


def _with_class_token(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's learnt class token put before every item's tokens (XCiT, MViTv2, VOLO)."""
    return torch.cat((model.cls_token.expand(x.shape[0], -1, -1), x), dim=1)


def _class_attention_blocks(model: nn.Module, attr: str) -> list[Block]:
    """A block per class-attention block in `model.<attr>` (XCiT's `cls_attn_blocks`, VOLO's `post_network`): the
    first puts the learnt class token before the tokens, and owns it."""

    def step(j):
        return lambda m, s: (getattr(m, attr)[j](_with_class_token(m, s[0]) if j == 0 else s[0]),)

    blocks = []
    for j, module in enumerate(getattr(model, attr) or ()):
        path = f"{attr}.{j}"
        keys = state_keys(module, path + ".") + (("cls_token",) if j == 0 else ())
        blocks.append(Block(path, keys, step(j), prefix=path + "."))
    return blocks


def _modules_block(model: nn.Module, name: str, paths: list[str], step) -> Block:
    keys: tuple[str, ...] = ()
    for p in paths:
        owner_path, _, attr = p.rpartition(".")
        try:
            owner = model.get_submodule(owner_path) if owner_path else model
        except AttributeError:
            continue
        obj = getattr(owner, attr, None)
        if isinstance(obj, nn.Module):
            keys += state_keys(obj, p + ".")
        elif isinstance(obj, torch.Tensor):
            keys += (p,)
    return Block(name=name, keys=keys, step=step)


@register_adapter("timm:ResNet")
class TimmResNetAdapter(Adapter):
    """stem (conv1, bn1, act, maxpool) | every residual block of layer1..4 | global pool."""

    family = "timm-resnet"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
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

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        blocks = [_modules_block(model, "stem", ["conv_stem", "bn1"], lambda m, s: (m.bn1(m.conv_stem(s[0])),))]
        for i, stage in enumerate(model.blocks):
            for j in range(len(stage)):
                blocks.append(_sub_block(model, f"blocks.{i}.{j}"))
        blocks.append(
            _modules_block(model, "conv_head", ["conv_head", "bn2"], lambda m, s: (m.bn2(m.conv_head(s[0])),))
        )
        blocks.append(Block("readout", (), lambda m, s: (m.forward_head(s[0], pre_logits=True),)))
        return _finish(model, self.family, blocks)


@register_adapter("timm:VisionTransformer")
class TimmViTAdapter(Adapter):
    """stem (patch embed, tokens, position embedding, pre-norm) | every transformer block | norm + pool."""

    family = "timm-vit"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        def stem(m, s):
            x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(s[0]))))
            return (x,)

        def readout(m, s):
            return (m.forward_head(m.norm(s[0]), pre_logits=True),)

        blocks = [
            _modules_block(model, "stem", ["cls_token", "reg_token", "pos_embed", "patch_embed", "norm_pre"], stem)
        ]
        for i in range(len(model.blocks)):
            blocks.append(_sub_block(model, f"blocks.{i}"))
        blocks.append(_modules_block(model, "readout", ["norm", "attn_pool", "fc_norm"], readout))
        return _finish(model, self.family, blocks)


@register_adapter("timm:Eva")
class TimmEvaAdapter(Adapter):
    """EVA-02 and timm's RoPE ViTs: stem (patch embed, tokens, position embedding, pre-norm) | every block, given
    the rotary position embedding `forward_features` gives it | norm + pool.

    The rotary embedding depends only on the token grid, so each block recomputes it; where it is learnt
    (`rope_mixed`: per-layer frequencies in `rope.freqs`), every block lists those weights as shared. A model
    built with `dynamic_img_size` (timm's DINOv3) takes the grid from each input: the state carries it (patches
    high and wide, per item) from the stem to the last block.
    """

    family = "timm-eva"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        mixed = bool(getattr(model, "rope_mixed", False))
        dynamic = bool(getattr(model, "dynamic_img_size", False))

        def stem(m, s):
            patches = m.patch_embed(s[0])
            x, _ = m._pos_embed(patches)
            if not dynamic:
                return (m.norm_pre(x),)
            return (m.norm_pre(x), grid_state(x, *patches.shape[1:3]))  # dynamic: patches come as (B, H, W, C)

        def block(i):
            def step(m, s):
                rope = None
                if m.rope is not None and dynamic:  # as `Eva._pos_embed` computes it
                    rope = m.rope.get_embed(shape=grid_size(s[1]))
                elif m.rope is not None:
                    fixed = hasattr(m.rope, "feat_shape")
                    rope = m.rope.get_embed() if fixed else m.rope.get_embed(shape=m.patch_embed.grid_size)
                rope = rope[i] if mixed and rope is not None else rope
                return (m.blocks[i](s[0], rope=rope), *s[1:])

            return step

        rope_keys = state_keys(model.rope, "rope.") if model.rope is not None else ()
        blocks = [
            _modules_block(model, "stem", ["cls_token", "reg_token", "pos_embed", "patch_embed", "norm_pre"], stem)
        ]
        for i in range(len(model.blocks)):
            own = state_keys(model.blocks[i], f"blocks.{i}.")
            blocks.append(Block(f"blocks.{i}", own + rope_keys, block(i), prefix=f"blocks.{i}.",
                                shared={k: k for k in rope_keys}))  # fmt: skip
        readout = _modules_block(model, "readout", ["norm", "attn_pool", "fc_norm"],
                                 lambda m, s: (m.forward_head(m.norm(s[0]), pre_logits=True),))  # fmt: skip
        return _finish(model, self.family, [*blocks, readout])


def _staged(
    model: nn.Module,
    family: str,
    stem_paths: list[str],
    stem_step,
    stages_attr: str,
    readout_paths: list[str],
    readout_step,
) -> SplitModel:
    """stem | per stage: its downsample (when it has weights), then every block | read-out."""
    blocks = [_modules_block(model, "stem", stem_paths, stem_step)]
    for i, stage in enumerate(getattr(model, stages_attr)):
        down = getattr(stage, "downsample", None)
        if down is not None and state_keys(down, ""):
            blocks.append(_sub_block(model, f"{stages_attr}.{i}.downsample"))
        elif down is not None and not isinstance(down, nn.Identity):
            path = f"{stages_attr}.{i}.downsample"
            blocks.append(Block(path, (), lambda m, s, _p=path: (m.get_submodule(_p)(s[0]),)))
        for j in range(len(stage.blocks)):
            blocks.append(_sub_block(model, f"{stages_attr}.{i}.blocks.{j}"))
    blocks.append(_modules_block(model, "readout", readout_paths, readout_step))
    return _finish(model, family, blocks)


@register_adapter("timm:ConvNeXt")
class TimmConvNeXtAdapter(Adapter):
    """stem | per stage: downsample, then every block | norm_pre + head norm/pool (pre-logits)."""

    family = "timm-convnext"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        return _staged(
            model,
            self.family,
            ["stem"],
            lambda m, s: (m.stem(s[0]),),
            "stages",
            ["norm_pre", "head.norm", "head.pre_logits"],
            lambda m, s: (m.forward_head(m.norm_pre(s[0]), pre_logits=True),),
        )


@register_adapter("timm:SwinTransformer")
class TimmSwinAdapter(Adapter):
    """patch embed | per stage: patch merging, then every Swin block | norm + global pool."""

    family = "timm-swin"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        return _staged(
            model,
            self.family,
            ["patch_embed"],
            lambda m, s: (m.patch_embed(s[0]),),
            "layers",
            ["norm"],
            lambda m, s: (m.forward_head(m.norm(s[0]), pre_logits=True),),
        )


@register_adapter("timm:Cait")
class TimmCaitAdapter(Adapter):
    """CaiT: stem (patch embed + position embedding) | every self-attention block | every class-attention block,
    the class token attending to the patches | norm + pool.

    The class-attention blocks update the class token alone, reading the patches the last self-attention block
    left: the state carries both, (patches, class token), from the first class-attention block, which takes the
    learnt token.
    """

    family = "timm-cait"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        def cls_block(j):
            def step(m, s):
                x = s[0]
                cls = m.cls_token.expand(x.shape[0], -1, -1) if j == 0 else s[1]
                return (x, m.blocks_token_only[j](x, cls))

            return step

        def readout(m, s):
            x = torch.cat((s[1], s[0]), dim=1) if len(s) > 1 else s[0]  # as `Cait.forward_cls` leaves them
            return (m.forward_head(m.norm(x), pre_logits=True),)

        blocks = [_modules_block(model, "stem", ["pos_embed", "patch_embed"],
                                 lambda m, s: (m.patch_embed(s[0]) + m.pos_embed,))]  # fmt: skip
        blocks += [_sub_block(model, f"blocks.{i}") for i in range(len(model.blocks))]
        for j in range(len(model.blocks_token_only or ())):
            path = f"blocks_token_only.{j}"
            keys = state_keys(model.blocks_token_only[j], path + ".") + (("cls_token",) if j == 0 else ())
            blocks.append(Block(path, keys, cls_block(j), prefix=path + "."))
        blocks.append(_modules_block(model, "readout", ["norm"], readout))
        return _finish(model, self.family, blocks)


@register_adapter("timm:Xcit")
class TimmXcitAdapter(Adapter):
    """XCiT: stem (convolutional patch embed + Fourier position encoding) | every cross-covariance block |
    every class-attention block (the first prepends the class token) | norm + pool.

    The cross-covariance blocks' local patch interaction reshapes the tokens to the patch grid: the state carries
    the grid (patches high and wide, per item) from the stem to the last of them.
    """

    family = "timm-xcit"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        def stem(m, s):
            x, (hp, wp) = m.patch_embed(s[0])
            if m.pos_embed is not None:  # as `Xcit.forward_features`: (B, C, Hp, Wp) -> (B, N, C)
                x = x + m.pos_embed(x.shape[0], hp, wp).reshape(x.shape[0], -1, x.shape[1]).permute(0, 2, 1)
            return (x, grid_state(x, hp, wp))

        def block(i):
            def step(m, s):
                return (m.blocks[i](s[0], *grid_size(s[1])), s[1])

            return step

        blocks = [_modules_block(model, "stem", ["patch_embed", "pos_embed"], stem)]
        for i in range(len(model.blocks)):
            path = f"blocks.{i}"
            blocks.append(Block(path, state_keys(model.blocks[i], path + "."), block(i), prefix=path + "."))
        blocks += _class_attention_blocks(model, "cls_attn_blocks")

        def readout(m, s):
            x = s[0]
            if len(s) > 1 and m.cls_attn_blocks is not None:  # no class-attention block: the token is prepended
                x = _with_class_token(m, x)
            return (m.forward_head(m.norm(x), pre_logits=True),)

        bare = model.cls_attn_blocks is not None and not len(model.cls_attn_blocks)
        blocks.append(_modules_block(model, "readout", ["norm", *(["cls_token"] if bare else [])], readout))
        return _finish(model, self.family, blocks)


@register_adapter("timm:MultiScaleVit")
class TimmMViTv2Adapter(Adapter):
    """MViTv2: patch embed + class token + position | every multiscale block of every stage | norm + pool.

    A block that pools its queries shrinks the patch grid, which the next block reads: the state carries it.
    """

    family = "timm-mvitv2"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        def stem(m, s):  # as `MultiScaleVit.forward_features`
            x, (h, w) = m.patch_embed(s[0])
            x = _with_class_token(m, x) if m.cls_token is not None else x
            if m.pos_embed is not None:
                x = x + m.pos_embed
            return (x, grid_state(x, h, w))

        def block(i, j):
            def step(m, s):
                x, (h, w) = m.stages[i].blocks[j](s[0], list(grid_size(s[1])))
                return (x, grid_state(x, h, w))

            return step

        blocks = [_modules_block(model, "stem", ["patch_embed", "cls_token", "pos_embed"], stem)]
        for i, stage in enumerate(model.stages):
            for j in range(len(stage.blocks)):
                path = f"stages.{i}.blocks.{j}"
                blocks.append(Block(path, state_keys(stage.blocks[j], path + "."), block(i, j), prefix=path + "."))
        readout = _modules_block(model, "readout", ["norm"], lambda m, s: (m.forward_head(m.norm(s[0]), True),))
        return _finish(model, self.family, [*blocks, readout])


@register_adapter("timm:ConVit")
class TimmConVitAdapter(Adapter):
    """ConViT: patch embed + position | every block | norm + pool.

    Its gated positional self-attention blocks run on the patches alone; the first plain-attention block
    (`local_up_to_layer`) puts the learnt class token before them, and owns it (the read-out does where no block
    does, as timm then never adds it).
    """

    family = "timm-convit"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        def stem(m, s):  # as `ConVit.forward_features` starts
            x = m.patch_embed(s[0])
            return (x + m.pos_embed if m.use_pos_embed else x,)

        def block(u):
            def step(m, s):
                x = s[0]
                if u == m.local_up_to_layer and m.cls_token is not None:
                    x = _with_class_token(m, x)
                return (m.blocks[u](x),)

            return step

        joins = model.cls_token is not None and model.local_up_to_layer < len(model.blocks)
        blocks = [_modules_block(model, "stem", ["patch_embed", "pos_embed"], stem)]
        for u, module in enumerate(model.blocks):
            path = f"blocks.{u}"
            keys = state_keys(module, path + ".") + (("cls_token",) if joins and u == model.local_up_to_layer else ())
            blocks.append(Block(path, keys, block(u), prefix=path + "."))
        paths = ["norm"] + (["cls_token"] if not joins else [])
        readout = _modules_block(model, "readout", paths, lambda m, s: (m.forward_head(m.norm(s[0]), True),))
        return _finish(model, self.family, [*blocks, readout])


@register_adapter("timm:PoolingVisionTransformer")
class TimmPiTAdapter(Adapter):
    """PiT: patch embed + position + class token(s) | per stage: entry (its pooling of the map and the class tokens,
    then the map's tokens after them, normed), every block | norm of the class tokens + pool.

    Between blocks the state is the stage's token sequence and its grid; the class tokens come first, as many as the
    model has (two for the distilled PiTs)."""

    family = "timm-pit"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        def stem(m, s):  # as `PoolingVisionTransformer.forward_features` starts
            x = m.patch_embed(s[0]) + m.pos_embed
            return (x, m.cls_token.expand(x.shape[0], -1, -1))

        def apart(m, s):  # a stage's tokens back into (map, class tokens), as `Transformer.forward` ends
            seq, n = s[0], m.cls_token.shape[1]
            return grid_map(seq[:, n:], s[1]), seq[:, :n]

        def entry(i):
            def step(m, s):  # as `Transformer.forward` starts
                x, cls = s if i == 0 else apart(m, s)
                stage = m.transformers[i]
                if stage.pool is not None:
                    x, cls = stage.pool(x, cls)
                seq = torch.cat((cls, x.flatten(2).transpose(1, 2)), dim=1)
                return (stage.norm(seq), grid_state(seq, *x.shape[-2:]))

            return step

        def block(i, j):
            return lambda m, s: (m.transformers[i].blocks[j](s[0]), s[1])

        blocks = [_modules_block(model, "stem", ["patch_embed", "pos_embed", "cls_token"], stem)]
        for i, stage in enumerate(model.transformers):
            path = f"transformers.{i}"
            blocks.append(_modules_block(model, f"{path}.entry", [f"{path}.pool", f"{path}.norm"], entry(i)))
            blocks += [Block(f"{path}.blocks.{j}", state_keys(b, f"{path}.blocks.{j}."), block(i, j),
                             prefix=f"{path}.blocks.{j}.") for j, b in enumerate(stage.blocks)]  # fmt: skip
        readout = _modules_block(model, "readout", ["norm"],
                                 lambda m, s: (m.forward_head(m.norm(apart(m, s)[1]), pre_logits=True),))  # fmt: skip
        return _finish(model, self.family, [*blocks, readout])


@register_adapter("timm:Nest")
class TimmNestAdapter(Adapter):
    """NesT: patch embed | per level: entry (the previous level's blocks back into a map, the aggregation pool,
    the map cut into blocks, + position), every transformer block | the last level's map, norm + pool.

    Between blocks the state is the level's (batch, blocks, tokens, channels) tensor, as its encoder runs it.
    """

    family = "timm-nest"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        from timm.models.nest import blockify, deblockify

        def to_map(m, x, i):  # level i's blocks back into a (B, C, H, W) map, as `NestLevel.forward` ends
            return deblockify(x, m.levels[i].block_size).permute(0, 3, 1, 2)

        def entry(i):
            def step(m, s):
                x = s[0] if i == 0 else to_map(m, s[0], i - 1)
                level = m.levels[i]
                x = blockify(level.pool(x).permute(0, 2, 3, 1), level.block_size)
                return (x + level.pos_embed,)

            return step

        def readout(m, s):
            x = to_map(m, s[0], len(m.levels) - 1)
            return (m.forward_head(m.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), pre_logits=True),)

        blocks = [_sub_block(model, "patch_embed")]
        for i, level in enumerate(model.levels):
            blocks.append(_modules_block(model, f"levels.{i}.entry", [f"levels.{i}.pool", f"levels.{i}.pos_embed"],
                                         entry(i)))  # fmt: skip
            blocks += [_sub_block(model, f"levels.{i}.transformer_encoder.{j}")
                       for j in range(len(level.transformer_encoder))]  # fmt: skip
        return _finish(model, self.family, [*blocks, _modules_block(model, "readout", ["norm"], readout)])


@register_adapter("timm:CrossVit")
class TimmCrossVitAdapter(Adapter):
    """CrossViT: both branches' embeddings (each scale's patches, class token, position) | every multi-scale block,
    which runs both branches and fuses their class tokens | each branch's norm, the class tokens joined.

    The state is the branches' token tensors, one per branch.
    """

    family = "timm-crossvit"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        branches = range(model.num_branches)
        stem_paths = ["patch_embed", *(f"{name}_{i}" for i in branches for name in ("cls_token", "pos_embed"))]
        blocks = [_modules_block(model, "stem", stem_paths, lambda m, s: tuple(m._embed(s[0])))]

        def block(i):
            return lambda m, s: tuple(m.blocks[i](list(s)))

        blocks += [
            Block(f"blocks.{i}", state_keys(b, f"blocks.{i}."), block(i), prefix=f"blocks.{i}.")
            for i, b in enumerate(model.blocks)
        ]

        def readout(m, s):
            return (m.forward_head([norm(x) for norm, x in zip(m.norm, s)], pre_logits=True),)

        return _finish(model, self.family, [*blocks, _modules_block(model, "readout", ["norm"], readout)])


@register_adapter("timm:VOLO")
class TimmVoloAdapter(Adapter):
    """VOLO: patch embed | every block of every network stage (outlookers, then transformers; a downsample step
    between, the position added before the stage after it) | every class-attention block (the first prepends
    the class token) | norm + pool.

    The aux head, which VOLO adds to its logits from every token, is head: a search reads the pooled token, as
    `forward_head(pre_logits=True)` does.
    """

    family = "timm-volo"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        # (stage, its block), the block None for a downsample step that is one module
        order = [(i, j) for i, stage in enumerate(model.network)
                 for j in (range(len(stage)) if isinstance(stage, nn.Sequential) else [None])]  # fmt: skip

        def stage_block(i, j, last):
            def step(m, s):
                x = s[0]
                if i == 2 and j in (0, None) and m.pos_embed is not None:  # as `VOLO.forward_tokens`
                    x = x + m.pos_embed
                x = (m.network[i] if j is None else m.network[i][j])(x)
                return (x.reshape(x.shape[0], -1, x.shape[-1]) if last else x,)  # tokens (B, N, C) after the last

            return step

        # (B, C, H, W) -> (B, H, W, C), as `VOLO.forward_features`
        blocks = [
            _modules_block(model, "stem", ["patch_embed"], lambda m, s: (m.patch_embed(s[0]).permute(0, 2, 3, 1),))
        ]
        for k, (i, j) in enumerate(order):
            path = f"network.{i}" if j is None else f"network.{i}.{j}"
            keys = state_keys(model.get_submodule(path), path + ".")
            if i == 2 and j in (0, None) and model.pos_embed is not None:
                keys += ("pos_embed",)
            blocks.append(Block(path, keys, stage_block(i, j, k == len(order) - 1), prefix=path + "."))
        blocks += _class_attention_blocks(model, "post_network")
        readout = _modules_block(model, "readout", ["norm"], lambda m, s: (m.forward_head(m.norm(s[0]), True),))
        return _finish(model, self.family, [*blocks, readout])


@register_adapter("timm:Twins")
class TimmTwinsAdapter(Adapter):
    """Twins (PCPVT and SVT): per stage, its patch embedding | every block, the first followed by the stage's
    position generator (PEG) | norm + pool.

    The blocks read the token grid, so the state carries it (per item, a tensor); between stages the tokens
    become a feature map again, in the next stage's embedding step.
    """

    family = "timm-twins"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        def embed(i):
            def step(m, s):
                x = s[0]
                if i:  # as `Twins.forward_features` leaves every stage but the last: a feature map
                    x = grid_map(x, s[1])
                x, (h, w) = m.patch_embeds[i](x)
                return (x, grid_state(x, h, w))

            return step

        def block(i, j):
            def step(m, s):
                size = grid_size(s[1])
                x = m.blocks[i][j](s[0], size)
                return (m.pos_block[i](x, size) if j == 0 else x, s[1])

            return step

        blocks = []
        for i, stage in enumerate(model.blocks):
            blocks.append(_modules_block(model, f"patch_embeds.{i}", [f"patch_embeds.{i}"], embed(i)))
            for j in range(len(stage)):
                path = f"blocks.{i}.{j}"
                peg = [f"pos_block.{i}"] if j == 0 else []
                blocks.append(_modules_block(model, path, [path, *peg], block(i, j)))
        blocks.append(_modules_block(model, "readout", ["norm"],
                                     lambda m, s: (m.forward_head(m.norm(s[0]), pre_logits=True),)))  # fmt: skip
        return _finish(model, self.family, blocks)


@register_adapter("timm:HighResolutionNet")
class TimmHRNetAdapter(Adapter):
    """HRNet (classification head): stem | every block of layer1 | per stage: its transition into branches, then
    every high-resolution module | the head's aggregation (incre, downsample, final layer) | global pool.

    From the first transition on, the state is the tuple of branch outputs, one feature map per resolution, as
    `HighResolutionNet.stages` hands the list on. A transition's identity entries pass their branch through; its
    new branch is made from the last one.
    """

    family = "timm-hrnet"

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        if model.incre_modules is None or model.downsamp_modules is None:
            raise UnsupportedArchitectureError(
                f"{type(model).__name__} built with head={'incre' if model.incre_modules is not None else 'none'!r}: "
                "its features are a list of branches, which no proxy scores. Search an HRNet with its "
                "classification head (timm's default)."
            )

        def stem(m, s):
            x = m.act1(m.bn1(m.conv1(s[0])))
            return (m.act2(m.bn2(m.conv2(x))),)

        def transition(k):
            def step(m, s):
                modules = getattr(m, f"transition{k}")
                if k == 1:  # from the stem's one map
                    return tuple(t(s[0]) for t in modules)
                return tuple(s[i] if isinstance(t, nn.Identity) else t(s[-1]) for i, t in enumerate(modules))

            return step

        def module(stage, j):
            return lambda m, s: tuple(getattr(m, stage)[j](list(s)))

        def aggregate(m, s):  # as `HighResolutionNet.forward_features` ends
            y = None
            for i, incre in enumerate(m.incre_modules):
                y = incre(s[i]) if y is None else incre(s[i]) + m.downsamp_modules[i - 1](y)
            return (m.final_layer(y),)

        blocks = [_modules_block(model, "stem", ["conv1", "bn1", "conv2", "bn2"], stem)]
        blocks += [_sub_block(model, f"layer1.{j}") for j in range(len(model.layer1))]
        for k, stage in ((1, "stage2"), (2, "stage3"), (3, "stage4")):
            blocks.append(_modules_block(model, f"transition{k}", [f"transition{k}"], transition(k)))
            blocks += [_modules_block(model, f"{stage}.{j}", [f"{stage}.{j}"], module(stage, j))
                       for j in range(len(getattr(model, stage)))]  # fmt: skip
        head = ["incre_modules", "downsamp_modules", "final_layer"]
        blocks.append(_modules_block(model, "aggregation", head, aggregate))
        blocks.append(Block("readout", (), lambda m, s: (m.forward_head(s[0], pre_logits=True),)))
        return _finish(model, self.family, blocks)
