"""Adapters for transformers models: BERT (and RoBERTa, XLM-R, CamemBERT, Data2Vec-text, ERNIE, Megatron-BERT,
XLM-R XL), ELECTRA, ESM, ALBERT, DeBERTa (v1, v2/v3), MPNet, RoFormer, ModernBERT, DistilBERT, ViT, DeiT, DINOv2,
CLIP and SigLIP image towers, ResNet, MobileViT (v1, v2), ConvNeXt (v1, v2), Swin (v1, v2).

Each adapter works in the model's own key space; `checkpoint_key_map` translates to checkpoint key space with
transformers' own conversion mapping (v5 renames some keys at load time, e.g. ViT's `encoder.layer.0.attention
.attention.query` -> `layers.0.attention.q_proj`), so the blocks can be hashed and fetched straight from Hub
shards. Requires transformers>=5,<6 (pinned in pyproject.toml).
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
from torch import nn

from ..errors import UnsupportedArchitectureError
from ._base import (
    Adapter,
    Block,
    Merge,
    SplitModel,
    State,
    base_model,
    grid_map,
    grid_size,
    grid_state,
    register_adapter,
    state_keys,
)


def checkpoint_key_map(model: nn.Module, checkpoint_keys=None, chunks: dict | None = None,
                       merges: dict | None = None) -> dict[str, str]:  # fmt: skip
    """model state-dict key -> checkpoint key.

    With `checkpoint_keys` (e.g. from a Hub safetensors header), each is renamed the way `from_pretrained` does;
    without, the keys `save_pretrained` would write are used.

    `chunks`: where given, a checkpoint tensor that `from_pretrained` cuts into equal parts along one dimension (a
    fused qkv: a `WeightConverter` whose one operation is `Chunk`) is recorded there, as checkpoint key -> (dim,
    the model keys of its parts, in order), and each part's model key maps to it.

    `merges`: where given, checkpoint tensors that `from_pretrained` merges into one model tensor (a mixture of
    experts: a `WeightConverter` that stacks, concatenates or transposes them) are recorded there, as model key ->
    `Merge`, and the model key maps to the first of them.

    Raises:
        UnsupportedArchitectureError: when the conversion is not one key to one key, nor one recorded in
            `chunks` or `merges`.
    """
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import (
        WeightConverter,
        WeightRenaming,
        dot_natural_key,
        rename_source_key,
        revert_weight_conversion,
    )

    model_sd = model.state_dict(keep_vars=True)
    if checkpoint_keys is None:
        # shaped as the model's: reverting a merge splits the tensor by its size (its experts)
        probe = {k: torch.empty(v.shape, device="meta") for k, v in model_sd.items()}
        reverted = revert_weight_conversion(model, dict(probe))
        by_id = {id(v): k for k, v in probe.items()}
        converted = any(id(t) not in by_id for t in reverted.values())
        if converted and (chunks is not None or merges is not None):
            return checkpoint_key_map(model, list(reverted), chunks, merges)  # the keys it saves, renamed back
        out = {}
        for ckpt_key, t in reverted.items():
            if id(t) not in by_id:
                raise UnsupportedArchitectureError(
                    f"{type(model).__name__}: checkpoint key {ckpt_key!r} is not a one-to-one rename of a model key."
                )
            out[by_id[id(t)]] = ckpt_key
        return out
    conversions = get_model_conversion_mapping(model)
    renamings = [c for c in conversions if isinstance(c, WeightRenaming)]
    converters = [c for c in conversions if isinstance(c, WeightConverter)]
    prefix = getattr(model, "base_model_prefix", None)
    out = {}
    merged: dict[str, tuple[list, object]] = {}  # model key -> ([(checkpoint key, source pattern)], converter)
    for ckpt_key in checkpoint_keys:
        model_key, source = rename_source_key(ckpt_key, renamings, converters, prefix, model_sd)
        if source is None:
            if model_key in model_sd:
                out[model_key] = ckpt_key
            continue
        parts = _chunked(model_key, source, converters, model_sd) if chunks is not None else None
        if parts is not None:
            chunks[ckpt_key] = parts
            out.update((part, ckpt_key) for part in parts[1])
            continue
        converter = _merging(model_key, source, converters, model_sd) if merges is not None else None
        if converter is None:
            raise UnsupportedArchitectureError(
                f"{type(model).__name__}: checkpoint key {ckpt_key!r} is converted, "
                "not renamed; blocks cannot be mapped one to one."
            )
        merged.setdefault(model_key, ([], converter))[0].append((ckpt_key, source))
    for model_key, (sources, converter) in merged.items():
        sources.sort(key=lambda pair: dot_natural_key(pair[0]))  # the order `from_pretrained` stacks them in
        merges[model_key] = Merge(tuple(sources), converter, model)
        out[model_key] = sources[0][0]
    return out


def _converter(source: str, converters):
    """The converter one of whose source patterns is `source` (what `rename_source_key` says matched)."""
    return next((c for c in converters if source in c.source_patterns), None)


def _merging(model_key: str, source: str, converters, model_sd):
    """The converter whose pattern `source` matched a checkpoint key (renamed to `model_key`), where it makes that
    one model tensor by stacking, concatenating or transposing checkpoint tensors, or None."""
    from transformers.core_model_loading import Concatenate, MergeModulelist, Transpose

    converter = _converter(source, converters)
    ops = getattr(converter, "operations", None) or []
    if not ops or len(converter.target_patterns) != 1 or model_key not in model_sd:
        return None
    return converter if all(type(op) in (MergeModulelist, Concatenate, Transpose) for op in ops) else None


def _chunked(model_key: str, source: str, converters, model_sd) -> tuple | None:
    """(dim, the parts' model keys) where the converter whose pattern `source` matched a checkpoint key (renamed
    to `model_key`, its first part's) only cuts it into equal parts (`Chunk`, one source), or None."""
    from transformers.core_model_loading import Chunk

    converter = _converter(source, converters)
    ops = getattr(converter, "operations", None) or []
    if (
        len(ops) != 1
        or type(ops[0]) is not Chunk
        or ops[0].num_shards_attribute
        or len(converter.source_patterns) != 1
    ):
        return None
    first, targets = converter.target_patterns[0], converter.target_patterns
    if first not in model_key:
        return None
    parts = tuple(model_key.replace(first, t, 1) for t in targets)
    sizes = {tuple(model_sd[p].shape) if p in model_sd else None for p in parts}
    return (ops[0].dim, parts) if len(sizes) == 1 and None not in sizes else None


def _common_prefix(keys: tuple[str, ...]) -> str:
    """The longest dotted prefix shared by all keys ('' for fewer than two)."""
    if len(keys) < 2:
        return ""
    parts = [k.split(".") for k in keys]
    common = []
    for segs in zip(*parts):
        if len(set(segs)) != 1:
            break
        common.append(segs[0])
    return ".".join(common) + "." if common else ""


class TransformersAdapter(Adapter):
    """Shared plumbing: the subclass lists (name, module paths, step) triples in the model's key space."""

    def layout(self, model: nn.Module, base: nn.Module, p: str, in_checkpoint: Callable[[str], bool]) -> list[tuple]:
        """(name, module paths, step[, salt]) per block. `in_checkpoint(path)`: whether the checkpoint holds every
        tensor of the module at `path`, for optional parts such as a bare model's pooler. A `salt` names what a
        config decides that the tensors do not (`Block.salt`: a read-out's pooling)."""
        raise NotImplementedError

    def shared_paths(self, base: nn.Module, p: str) -> list[str]:
        """Module paths that several blocks of `layout` list, because each of them reads the module (see
        `Block.shared`)."""
        return []

    def token_states(self, base: nn.Module, p: str) -> tuple[list[str], Callable] | None:
        """How the read-out's input state becomes the model's token states (its `last_hidden_state`) and 2-D
        mask: (module paths it runs, `step(model, state) -> (tokens, mask)`), for a sentence-transformers
        read-out (`sentence_pooling`). None for a model without token states (image models)."""
        return None

    def split(self, model: nn.Module, checkpoint_keys=None) -> SplitModel:
        base, p = base_model(model)
        chunks: dict[str, tuple[int, tuple[str, ...]]] = {}  # fused checkpoint tensors, cut into model tensors
        merges: dict[str, Merge] = {}  # model tensors merged from several checkpoint tensors (experts)
        key_map = checkpoint_key_map(model, checkpoint_keys, chunks, merges)

        def sources(model_key: str) -> list[str]:  # the checkpoint keys a model key is loaded from
            return [k for k, _ in merges[model_key].keys] if model_key in merges else [key_map[model_key]]

        def in_checkpoint(path: str) -> bool:
            return all(k in key_map for k in state_keys(model.get_submodule(path), path + "."))

        shared = {k for path in self.shared_paths(base, p) for k in state_keys(model.get_submodule(path), path + ".")}
        blocks = []
        owned: set[str] = set()
        for name, paths, step, *salt in self.layout(model, base, p, in_checkpoint):
            model_keys: list[str] = []
            for path in paths:
                target = model.get_submodule(path.rsplit(".", 1)[0]) if "." in path else model
                attr = path.rsplit(".", 1)[-1]
                obj = getattr(target, attr, None)
                if isinstance(obj, nn.Module):
                    model_keys += state_keys(obj, path + ".")
                elif isinstance(obj, torch.Tensor):
                    model_keys.append(path)
            absent = [k for k in model_keys if k not in key_map]
            if absent and checkpoint_keys is not None:
                raise UnsupportedArchitectureError(
                    f"{type(model).__name__}: the checkpoint lacks {len(absent)} of block {name!r}'s tensors "
                    f"({absent[:3]}); transformers would initialise them at random, so its features would mean "
                    "nothing. Check that config.json's `architectures` matches the weights."
                )
            # a fused tensor once; a merged one's sources each
            keys = tuple(dict.fromkeys(c for k in model_keys if k in key_map for c in sources(k)))
            cut = {k: chunks[k] for k in keys if k in chunks}
            apart = [k for k, (_, parts) in cut.items() if not set(parts) <= set(model_keys)]
            if apart:
                raise UnsupportedArchitectureError(
                    f"{type(model).__name__}: checkpoint tensor {apart[0]!r} is cut into tensors of several blocks."
                )
            owned.update(model_keys)
            blocks.append(
                Block(
                    name=name,
                    keys=keys,
                    step=step,
                    prefix=_common_prefix(tuple(key_map[k] for k in model_keys if k in key_map and k not in shared)),
                    # a fused tensor's first part stands for it where one model key is asked for (its dtype)
                    model_keys={c: k for k in model_keys if k in key_map for c in sources(k)}
                    | {k: c[1][0] for k, c in cut.items()},
                    # named without the base prefix, so bare and head-ful checkpoints hash alike
                    shared={key_map[k]: k.removeprefix(p) for k in model_keys if k in key_map and k in shared},
                    salt=salt[0] if salt else "",
                    chunks=cut,
                    merges={k: merges[k] for k in model_keys if k in merges},
                )
            )
        head = {c: k for k in key_map if k not in owned for c in sources(k)}
        loaded = {c for k in key_map for c in sources(k)}
        ignored = tuple(k for k in checkpoint_keys or () if k not in loaded)
        return SplitModel(
            model=model,
            blocks=blocks,
            head_keys=tuple(head),
            family=self.family,
            head_model_keys=head,
            ignored_keys=ignored,
        )


def _ids_and_mask(inputs: dict[str, torch.Tensor]) -> State:
    """The state of an encoder without token types: (input ids, 2-D attention mask)."""
    ids = inputs["input_ids"]
    return (ids, inputs.get("attention_mask", torch.ones_like(ids)))


def _embed_ids(m: nn.Module, s: State) -> State:
    """(ids, mask) -> (embeddings, mask)."""
    return (m.base_model.embeddings(input_ids=s[0]), s[1])


def _pooled(base: nn.Module, p: str, in_checkpoint: Callable[[str], bool]) -> bool:
    """Whether the read-out is the pooler: a bare model saved without its pooler (from a token-classification
    fine-tune, or `add_pooling_layer=False`) reads out [CLS] as a classifier does, instead of running a pooler
    with no weights."""
    return getattr(base, "pooler", None) is not None and in_checkpoint(f"{p}pooler")


def _masked_layer(layers_of, i: int, positions=None):
    """Step for layer i of an encoder whose state is (hidden, 2-D attention mask); the 4-D mask is rebuilt
    per step exactly as the model's forward builds it, so only the 2-D mask needs caching.

    `positions(base, hidden)`: the keyword arguments of position information the model's forward computes once
    and hands every layer (a relative bias, a rotary table); rebuilt per step from the hidden states' shape."""
    from transformers.masking_utils import create_bidirectional_mask

    def step(m, s):
        hidden, mask = s
        b = m.base_model
        mask4 = create_bidirectional_mask(config=b.config, inputs_embeds=hidden, attention_mask=mask)
        out = layers_of(b)[i](hidden, mask4, **(positions(b, hidden) if positions else {}))
        return (out[0] if isinstance(out, tuple) else out, mask)

    return step


_PROJECTIONS = ("embeddings_project", "encoder.embedding_hidden_mapping_in")  # ELECTRA's, RemBERT's


def _has_module(base: nn.Module, path: str) -> bool:
    try:
        return isinstance(base.get_submodule(path), nn.Module)
    except AttributeError:
        return False


def _hidden_and_mask(base: nn.Module, p: str) -> tuple[list[str], Callable]:
    """`token_states` of an encoder whose read-out state is (token states, 2-D mask, ...)."""
    return [], lambda m, s: (s[0], s[1])


def _final_norm(encoder: nn.Module) -> str | None:
    """The norm a pre-LayerNorm encoder applies after its last layer (Megatron-BERT's `ln`, XLM-R XL's
    `LayerNorm`, ESM's `emb_layer_norm_after`), or None."""
    return next(
        (n for n in ("ln", "LayerNorm", "emb_layer_norm_after") if getattr(encoder, n, None) is not None), None
    )


@register_adapter("bert", "roberta", "xlm-roberta", "camembert", "data2vec-text", "ernie", "megatron-bert",
                  "xlm-roberta-xl", "mobilebert", "rembert")  # fmt: skip
class BertAdapter(TransformersAdapter):
    """embeddings (+ the projection to the hidden size, where they are narrower) | every encoder layer | the
    encoder's final norm where it has one (pre-LayerNorm encoders), then the pooler (`pooler_output`), or the
    [CLS] state without a pooler.

    MobileBERT's bottleneck layers take BERT's arguments, and its pooler without `classifier_activation` has no
    weights: it reads [CLS]."""

    family = "transformers-bert"
    reads_pooler = True  # whether its classifier reads the pooler, where the checkpoint has one, or [CLS]

    def initial_state(self, inputs: dict[str, torch.Tensor]) -> State:
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask", torch.ones_like(ids))
        types = inputs.get("token_type_ids", torch.zeros_like(ids))
        return (ids, mask, types)

    def layout(self, model, base, p, in_checkpoint):
        # ELECTRA's and RemBERT's embeddings are narrower than the hidden size; the encoder's input is projected
        project = next((m for m in _PROJECTIONS if _has_module(base, m)), None)
        embed = self.embed_step(project)

        pooled = self.reads_pooler and _pooled(base, p, in_checkpoint)  # ELECTRA has no pooler
        paths, tokens = self.token_states(base, p)  # a pre-LayerNorm encoder's final norm first

        def readout(m, s):
            hidden = tokens(m, s)[0]
            return (m.base_model.pooler(hidden) if pooled else hidden[:, 0],)

        layout = [("embeddings", [f"{p}embeddings", *([f"{p}{project}"] if project else [])], embed)]
        shared = self.shared_paths(base, p)
        layout += [
            (f"layer.{i}", [f"{p}encoder.layer.{i}", *shared], self.layer_step(i))
            for i in range(len(base.encoder.layer))
        ]
        layout.append(("readout", paths + ([f"{p}pooler"] if pooled else []), readout))
        return layout

    def token_states(self, base, p):
        norm = _final_norm(base.encoder)
        if norm is None:
            return _hidden_and_mask(base, p)
        return [f"{p}encoder.{norm}"], lambda m, s: (getattr(m.base_model.encoder, norm)(s[0]), s[1])

    def embed_step(self, project: str | None):
        """`project`: the module path, in the base model, of the projection to the hidden size, or None."""

        def embed(m, s):
            ids, mask, types = s
            b = m.base_model
            hidden = b.embeddings(input_ids=ids, token_type_ids=types)
            return (b.get_submodule(project)(hidden) if project else hidden, mask)

        return embed

    def layer_step(self, i: int):
        return _masked_layer(lambda b: b.encoder.layer, i)


@register_adapter("nomic_bert", "gte", "jina_embeddings_v3")
class RotaryBertAdapter(BertAdapter):
    """nomic-embed-text (NomicBERT), gte-*-v1.5 / gte-multilingual (GTE) and jina-embeddings-v3: BERT's embeddings
    and post-LayerNorm layers, with rotary positions that the model computes once and every layer takes, rebuilt
    per layer here | the pooler where the checkpoint has one, else the [CLS] state (which jina-embeddings-v3's
    RoBERTa-style classifier reads). Their layers are `layers`, not `encoder.layer`, and there is no final norm."""

    family = "transformers-rotary-bert"

    def token_states(self, base, p):
        return _hidden_and_mask(base, p)

    def layout(self, model, base, p, in_checkpoint):
        pooled = _pooled(base, p, in_checkpoint)

        def positions(b, hidden):  # as the model's forward computes them
            ids = torch.arange(hidden.shape[1], device=hidden.device)[None, :]
            return {"position_embeddings": b.rotary_emb(hidden, ids)}

        def readout(m, s):
            return (m.base_model.pooler(s[0]) if pooled else s[0][:, 0],)

        layout = [("embeddings", [f"{p}embeddings"], self.embed_step(None))]
        layout += [
            (f"layers.{i}", [f"{p}layers.{i}"], _masked_layer(lambda b: b.layers, i, positions))
            for i in range(len(base.layers))
        ]
        layout.append(("readout", [f"{p}pooler"] if pooled else [], readout))
        return layout


@register_adapter("roformer")
class RoFormerAdapter(BertAdapter):
    """BERT's layout; every layer rotates its queries and keys by the encoder's sinusoidal position table, so each
    layer block lists the table as shared."""

    family = "transformers-roformer"

    def shared_paths(self, base, p):
        return [f"{p}encoder.embed_positions"]

    def layer_step(self, i: int):
        def positions(b, hidden):  # as `RoFormerEncoder.forward` computes them
            return {"sinusoidal_pos": b.encoder.embed_positions(hidden.shape[:-1])[None, None, :, :]}

        return _masked_layer(lambda b: b.encoder.layer, i, positions)


@register_adapter("esm")
class EsmAdapter(BertAdapter):
    """ESM protein language models: BERT's layout, with the embeddings' token-dropout rescaling (it reads the
    attention mask), rotary position embeddings rebuilt per layer, and the encoder's final norm."""

    family = "transformers-esm"

    def embed_step(self, project: str | None):
        def embed(m, s):
            ids, mask, _ = s
            return (m.base_model.embeddings(input_ids=ids, attention_mask=mask), mask)

        return embed

    def layer_step(self, i: int):
        def positions(b, hidden):  # as `EsmModel.forward` computes them
            if b.position_embedding_type != "rotary":
                return {}
            index = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
            return {"position_embeddings": b.rotary_embeddings(hidden, index)}

        return _masked_layer(lambda b: b.encoder.layer, i, positions)


def _block_sparse(config, length: int) -> bool:
    """Whether `BigBirdModel.forward` runs a sequence of `length` tokens block-sparse: where the config asks, and
    the sequence is longer than (5 + 2 * num_random_blocks) * block_size tokens (else it switches to full)."""
    return config.attention_type == "block_sparse" and length > (5 + 2 * config.num_random_blocks) * config.block_size


@register_adapter("big_bird")
class BigBirdAdapter(BertAdapter):
    """BERT's layout, run as `BigBirdModel.forward` runs it: block-sparse attention where `_block_sparse` says
    (the input padded to a multiple of the block size, the padding masked), full attention otherwise. Read out
    at [CLS], which `BigBirdForSequenceClassification` classifies; the pooler is never read, so it is head."""

    family = "transformers-big-bird"
    reads_pooler = False

    def embed_step(self, project: str | None):
        embed = super().embed_step(project)

        def step(m, s):
            ids, mask, types = s
            config = m.base_model.config
            if _block_sparse(config, ids.shape[1]):  # as `BigBirdModel._pad_to_block_size` pads
                pad = -ids.shape[1] % config.block_size
                ids = nn.functional.pad(ids, (0, pad), value=config.pad_token_id)
                mask = nn.functional.pad(mask, (0, pad), value=0)
                types = nn.functional.pad(types, (0, pad), value=0)
            return embed(m, (ids, mask, types))

        return step

    def layer_step(self, i: int):
        full = super().layer_step(i)

        def step(m, s):
            hidden, mask = s
            b = m.base_model
            module = b.encoder.layer[i]
            if not _block_sparse(b.config, hidden.shape[1]):  # too short: the forward switches to full attention
                module.set_attention_type("original_full", layer_idx=i)
                return full(m, s)
            module.set_attention_type("block_sparse", layer_idx=i)  # what the model's forward sets
            blocked, band, from_mask, to_mask = b.create_masks_for_block_sparse_attn(mask, b.config.block_size)
            out = module(hidden, band_mask=band, from_mask=from_mask, to_mask=to_mask, blocked_encoder_mask=blocked)
            return (out[0] if isinstance(out, tuple) else out, mask)

        return step


@register_adapter("electra")
class ElectraAdapter(BertAdapter):
    """BERT's layout: embeddings (+ the projection to the hidden size, where it differs) | every encoder layer |
    [CLS] state (what the classification head reads; ELECTRA has no pooler). A family of its own in the store."""

    family = "transformers-electra"


@register_adapter("albert")
class AlbertAdapter(TransformersAdapter):
    """embeddings (+ the projection to the hidden size) | every layer | pooler (`pooler_output`), or the [CLS]
    state without one.

    ALBERT runs one layer group's weights as several layers, so every layer block lists its group's tensors as
    `shared`: the layers of one group hash alike, and the store keeps and fetches them once.
    """

    family = "transformers-albert"

    initial_state = BertAdapter.initial_state

    def shared_paths(self, base, p):
        return [f"{p}encoder.albert_layer_groups.{g}" for g in range(len(base.encoder.albert_layer_groups))]

    token_states = staticmethod(_hidden_and_mask)

    def layout(self, model, base, p, in_checkpoint):
        config = base.config

        def embed(m, s):
            ids, mask, types = s
            b = m.base_model
            return (b.encoder.embedding_hidden_mapping_in(b.embeddings(ids, token_type_ids=types)), mask)

        def group_of(i: int) -> int:  # as `AlbertTransformer.forward` picks it
            return int(i / (config.num_hidden_layers / config.num_hidden_groups))

        pooled = _pooled(base, p, in_checkpoint)

        def readout(m, s):
            b = m.base_model
            return (b.pooler_activation(b.pooler(s[0][:, 0])) if pooled else s[0][:, 0],)

        # a layer's step depends only on its group, so layers that hash alike compute alike
        groups = [_masked_layer(lambda b: b.encoder.albert_layer_groups, g) for g in range(config.num_hidden_groups)]
        layout = [("embeddings", [f"{p}embeddings", f"{p}encoder.embedding_hidden_mapping_in"], embed)]
        layout += [
            (f"layer.{i}", [f"{p}encoder.albert_layer_groups.{group_of(i)}"], groups[group_of(i)])
            for i in range(config.num_hidden_layers)
        ]
        layout.append(("readout", [f"{p}pooler"] if pooled else [], readout))
        return layout


@register_adapter("deberta", "deberta-v2")
class DebertaAdapter(TransformersAdapter):
    """embeddings | every encoder layer | [CLS] state (what the classifier's `pooler` reads; it is the head's).

    Every layer reads the encoder's relative-position embeddings (and, in v2/v3, their LayerNorm), so each layer
    block lists them as `shared`: a layer's hash then covers all the weights its output depends on. v2's optional
    convolution after the first layer belongs to that layer's block.
    """

    family = "transformers-deberta"

    initial_state = BertAdapter.initial_state

    def shared_paths(self, base, p):
        encoder = base.encoder
        return [f"{p}encoder.{name}" for name in ("rel_embeddings", "LayerNorm") if hasattr(encoder, name)]

    token_states = staticmethod(_hidden_and_mask)

    def layout(self, model, base, p, in_checkpoint):
        if getattr(base, "z_steps", 0) > 1:
            raise UnsupportedArchitectureError(
                f"{type(model).__name__} with z_steps={base.z_steps} reruns its last layer; it cannot be split into "
                "blocks. Search a checkpoint saved with z_steps=0 (the transformers default)."
            )
        shared = self.shared_paths(base, p)

        def embed(m, s):
            ids, mask, types = s
            return (m.base_model.embeddings(input_ids=ids, token_type_ids=types, mask=mask), mask)

        def layer(i):
            # what `DebertaV2Encoder.forward` computes around layer i, from the 2-D mask the state carries
            def step(m, s):
                hidden, mask = s
                encoder = m.base_model.encoder
                out = encoder.layer[i](
                    hidden,
                    encoder.get_attention_mask(mask),
                    relative_pos=encoder.get_rel_pos(hidden),
                    rel_embeddings=encoder.get_rel_embedding(),
                )[0]
                if i == 0 and getattr(encoder, "conv", None) is not None:
                    out = encoder.conv(hidden, out, mask)
                return (out, mask)

            return step

        conv = [f"{p}encoder.conv"] if getattr(base.encoder, "conv", None) is not None else []
        layout = [("embeddings", [f"{p}embeddings"], embed)]
        layout += [
            (f"layer.{i}", [f"{p}encoder.layer.{i}", *(conv if i == 0 else []), *shared], layer(i))
            for i in range(len(base.encoder.layer))
        ]
        layout.append(("readout", [], lambda m, s: (s[0][:, 0],)))
        return layout


@register_adapter("mpnet")
class MPNetAdapter(TransformersAdapter):
    """embeddings | every encoder layer | pooler (`pooler_output`), or the [CLS] state without one (what the
    classification head reads).

    Every layer adds the encoder's relative-position bias, so each layer block lists it as `shared`, as DeBERTa's
    do.
    """

    family = "transformers-mpnet"

    initial_state = staticmethod(_ids_and_mask)

    def shared_paths(self, base, p):
        return [f"{p}encoder.relative_attention_bias"]

    token_states = staticmethod(_hidden_and_mask)

    def layout(self, model, base, p, in_checkpoint):
        def layer(i):  # with the bias `MPNetEncoder.forward` computes
            return _masked_layer(
                lambda b: b.encoder.layer,
                i,
                lambda b, hidden: {"position_bias": b.encoder.compute_position_bias(hidden)},
            )

        pooled = _pooled(base, p, in_checkpoint)

        def readout(m, s):
            return (m.base_model.pooler(s[0]) if pooled else s[0][:, 0],)

        shared = self.shared_paths(base, p)
        layout = [("embeddings", [f"{p}embeddings"], _embed_ids)]
        layout += [
            (f"layer.{i}", [f"{p}encoder.layer.{i}", *shared], layer(i)) for i in range(len(base.encoder.layer))
        ]
        layout.append(("readout", [f"{p}pooler"] if pooled else [], readout))
        return layout


def _first_or_mean(tokens: Callable, mean: bool) -> Callable:
    """The read-out step of an encoder whose classifier pools its token states (`tokens(m, s) -> (hidden, mask)`):
    the first token's, or (`mean`) the mean of those the mask keeps."""

    def readout(m, s):
        hidden, mask = tokens(m, s)
        if not mean:
            return (hidden[:, 0],)
        return ((hidden * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True),)

    return readout


@register_adapter("modernbert")
class ModernBertAdapter(TransformersAdapter):
    """embeddings | every encoder layer | final norm + the pooling `classifier_pooling` names ([CLS] or the masked
    mean), which is what the classifier's `head` reads.

    Each layer builds its own attention mask (global or sliding-window, by `layer_types`) and rotary embeddings
    from the 2-D mask and the sequence length, as `ModernBertModel.forward` does; neither has weights.
    """

    family = "transformers-modernbert"

    initial_state = staticmethod(_ids_and_mask)

    def token_states(self, base, p):
        return [f"{p}final_norm"], lambda m, s: (m.base_model.final_norm(s[0]), s[1])

    def layout(self, model, base, p, in_checkpoint):
        from transformers.masking_utils import create_bidirectional_mask, create_bidirectional_sliding_window_mask

        masks = {
            "full_attention": create_bidirectional_mask,
            "sliding_attention": create_bidirectional_sliding_window_mask,
        }

        def layer(i):
            def step(m, s):
                hidden, mask = s
                b = m.base_model
                kind = b.layers[i].attention_type
                positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
                out = b.layers[i](
                    hidden,
                    attention_mask=masks[kind](config=b.config, inputs_embeds=hidden, attention_mask=mask),
                    position_embeddings=b.rotary_emb(hidden, positions, kind),
                )
                return (out, mask)

            return step

        mean = model.config.classifier_pooling == "mean"
        paths, tokens = self.token_states(base, p)
        readout = _first_or_mean(tokens, mean)

        layout = [("embeddings", [f"{p}embeddings"], _embed_ids)]
        layout += [(f"layers.{i}", [f"{p}layers.{i}"], layer(i)) for i in range(len(base.layers))]
        # the pooling is the config's: one checkpoint under two configs reads out two ways (`Block.salt`)
        layout.append(("readout", paths, readout, "classifier_pooling=mean" if mean else ""))
        return layout


@register_adapter("eurobert")
class EuroBertAdapter(TransformersAdapter):
    """EuroBERT: token embeddings | every layer (Llama's, attending both ways, with rotary positions rebuilt per
    layer) | final norm + the pooling `classifier_pooling` names: the first token for "bos", else the masked mean
    ("mean"; and "late", whose classifier runs on every token and averages its logits: the features it reads are
    the token states, summarised here by their mean)."""

    family = "transformers-eurobert"

    initial_state = staticmethod(_ids_and_mask)

    def token_states(self, base, p):
        return [f"{p}norm"], lambda m, s: (m.base_model.norm(s[0]), s[1])

    def layout(self, model, base, p, in_checkpoint):
        from transformers.masking_utils import create_bidirectional_mask

        def layer(i):
            def step(m, s):
                hidden, mask = s
                b = m.base_model
                positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
                out = b.layers[i](
                    hidden,
                    attention_mask=create_bidirectional_mask(
                        config=b.config, inputs_embeds=hidden, attention_mask=mask
                    ),
                    position_embeddings=b.rotary_emb(hidden, position_ids=positions),
                    position_ids=positions,
                )
                return (out[0] if isinstance(out, tuple) else out, mask)

            return step

        bos = model.config.classifier_pooling == "bos"
        paths, tokens = self.token_states(base, p)
        readout = _first_or_mean(tokens, not bos)

        def embed(m, s):
            return (m.base_model.embed_tokens(s[0]), s[1])

        layout = [("embeddings", [f"{p}embed_tokens"], embed)]
        layout += [(f"layers.{i}", [f"{p}layers.{i}"], layer(i)) for i in range(len(base.layers))]
        layout.append(("readout", paths, readout, "classifier_pooling=bos" if bos else ""))
        return layout


@register_adapter("longformer")
class LongformerAdapter(BertAdapter):
    """BERT's layout, run as `LongformerForSequenceClassification` runs it: [CLS] attends globally and every token
    attends to it, the sequence is padded to a multiple of the attention window, and each layer's masks are rebuilt
    from the merged 2-D mask (0: padding, 1: local, 2: global), as `LongformerModel.forward` builds them."""

    family = "transformers-longformer"

    def token_states(self, base, p):  # the padding to the window adds tokens the mask drops
        return [], lambda m, s: (s[0], torch.clamp(s[1], max=1))

    def embed_step(self, project: str | None):
        def embed(m, s):
            ids, mask, types = s
            b = m.base_model
            wanted = torch.zeros_like(ids)
            wanted[:, 0] = 1  # the classifier's default: global attention on [CLS]
            merged = b._merge_to_attention_mask(mask, wanted)
            _, ids, merged, types, _, _ = b._pad_to_window_size(
                input_ids=ids, attention_mask=merged, token_type_ids=types, position_ids=None, inputs_embeds=None,
                pad_token_id=b.config.pad_token_id,
            )  # fmt: skip
            return (b.embeddings(input_ids=ids, token_type_ids=types), merged)

        return embed

    def layer_step(self, i: int):
        from transformers.masking_utils import create_bidirectional_mask

        def step(m, s):
            hidden, merged = s
            b = m.base_model
            extended = create_bidirectional_mask(config=b.config, inputs_embeds=hidden,
                                                 attention_mask=torch.clamp(merged, min=0, max=1),
                                                 allow_is_bidirectional_skip=False)[:, 0, 0, :]  # fmt: skip
            extended[merged == 2] = torch.finfo(hidden.dtype).max
            is_global = extended > 0
            out = b.encoder.layer[i](hidden, attention_mask=extended, is_index_masked=extended < 0,
                                     is_index_global_attn=is_global, is_global_attn=bool(is_global.any()))  # fmt: skip
            return (out[0], merged)

        return step


@register_adapter("xlnet")
class XLNetAdapter(TransformersAdapter):
    """word embeddings | every layer | the token the sequence summary reads (`summary_type`: the last, as
    `XLNetForSequenceClassification` reads it; XLNet's tokenizers pad on the left and end with <cls>).

    XLNet runs sequence-first; states stay batch-first, as the engine slices them, and each layer step transposes.
    Its masks, segment matrix and relative positions are rebuilt per layer as `XLNetModel.forward` builds them.
    `mask_emb` is used only for pretraining's permutation objective: it is left to the head, never fetched.
    """

    family = "transformers-xlnet"

    def initial_state(self, inputs: dict[str, torch.Tensor]) -> State:
        ids = inputs["input_ids"]
        state = (ids, inputs.get("attention_mask", torch.ones_like(ids)))
        # no token types is not all zeros: without them XLNet adds no segment term at all
        return state + ((inputs["token_type_ids"],) if "token_type_ids" in inputs else ())

    token_states = staticmethod(_hidden_and_mask)

    def layout(self, model, base, p, in_checkpoint):
        summary = base.config.summary_type
        if summary not in ("last", "first", "mean", "cls_index"):
            raise UnsupportedArchitectureError(f"XLNet's summary_type {summary!r} has no read-out here.")
        if base.attn_type != "bi":  # transformers' own forward fails on padded batches with it
            raise UnsupportedArchitectureError(f"XLNet's attn_type {base.attn_type!r}: only 'bi' is searched.")

        def embed(m, s):
            return (m.base_model.word_embedding(s[0]), *s[1:])

        def layer(i):
            def step(m, s):
                hidden, mask, *types = s
                b = m.base_model
                h = hidden.transpose(0, 1).contiguous()
                qlen, bsz = h.shape[:2]
                attn_mask = ((1.0 - mask.transpose(0, 1).contiguous())[None][:, :, :, None] > 0).to(h.dtype)
                eye = -torch.eye(qlen, device=h.device, dtype=attn_mask.dtype)
                non_target = ((attn_mask + eye[:, :, None, None]) > 0).to(attn_mask)
                seg_mat = None
                if types:
                    t = types[0].transpose(0, 1).contiguous()
                    seg_mat = nn.functional.one_hot((t[:, None] != t[None, :]).long(), num_classes=2).to(h.dtype)
                r = b.relative_positional_encoding(qlen, qlen, bsz=bsz, device=h.device)
                out = b.layer[i](h, None, attn_mask_h=non_target, attn_mask_g=attn_mask, r=r, seg_mat=seg_mat,
                                 mems=None, target_mapping=None)  # fmt: skip
                return (out[0].transpose(0, 1), mask, *types)

            return step

        def readout(m, s):
            hidden = s[0]
            return (hidden[:, 0] if summary == "first" else hidden.mean(1) if summary == "mean" else hidden[:, -1],)

        layout = [("embeddings", [f"{p}word_embedding"], embed)]
        layout += [(f"layer.{i}", [f"{p}layer.{i}"], layer(i)) for i in range(len(base.layer))]
        # the config's, as ModernBERT's pooling is
        layout.append(("readout", [], readout, "" if summary == "last" else f"summary_type={summary}"))
        return layout


def _last_kept(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each row's last token the attention mask keeps: what a decoder's `*ForSequenceClassification` classifies
    (it compares ids with `pad_token_id`; the mask says the same on either padding side). With `ids.eq(eos)` for
    a mask, the last end token, which an encoder-decoder's classifier reads."""
    last = (torch.arange(mask.shape[1], device=mask.device) * mask).argmax(-1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


# decoders whose forward masks every attention layer with a sliding window when `sliding_window` is set (the
# others name each layer's kind in `config.layer_types`, or have none)
_SLIDING_WHEN_SET = {"mistral", "ministral3", "phi3", "mixtral", "phimoe", "qwen3_moe", "minimax"}


@register_adapter("llama", "mistral", "ministral3", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3",
                  "olmo", "olmo2", "olmo3", "smollm3", "stablelm", "starcoder2", "glm", "glm4", "helium", "exaone4",
                  "seed_oss", "arcee", "diffllama", "nemotron", "apertus", "cohere", "cohere2", "ernie4_5",
                  "hunyuan_v1_dense", "granite", "granite_swa",
                  # mixtures of experts: transformers merges their experts at load, and so does a block (`Merge`)
                  "mixtral", "phimoe", "qwen2_moe", "qwen3_moe", "olmoe", "flex_olmo", "granitemoe",
                  "granitemoeshared", "jetmoe", "deepseek_v2", "deepseek_v3", "glm4_moe", "glm4_moe_lite",
                  "ernie4_5_moe", "hunyuan_v1_moe", "dots1", "gpt_oss", "cohere2_moe", "exaone_moe", "afmoe",
                  "solar_open", "mellum", "minimax_m2",
                  # linear-attention and sparse-attention layers beside full ones; Llama 4's chunked attention
                  "qwen3_next", "qwen3_5_text", "qwen3_5_moe_text", "olmo_hybrid", "deepseek_v32", "glm_moe_dsa",
                  "llama4_text", "granitemoehybrid", "minimax")  # fmt: skip
class DecoderAdapter(TransformersAdapter):
    """Decoder-only language models as their `*ForSequenceClassification` reads them: token embeddings | every
    decoder layer | final norm + the last token the attention mask keeps.

    Each layer rebuilds its causal mask (full or sliding-window, by `config.layer_types`) and rotary embeddings
    (Gemma 3's by layer type) from the 2-D mask and the sequence length, as the model's forward does. Granite's
    forward scales the token embeddings by `embedding_multiplier`, and so does the embeddings block. The
    classifier takes the last token that is not `pad_token_id`; the mask says the same for any padding side, and
    also where the tokenizer pads with its end-of-text token.

    A mixture of experts' layer is one block, its router and experts included; where the checkpoint saves one
    tensor per expert, the block merges them at load (`Block.merges`).
    """

    family = "transformers-decoder"
    embed = "embed_tokens"  # the base model's module names, where a family names them otherwise
    norm = "norm"
    rotary = "rotary_emb"  # its rotary table; a model without one (Jamba; Granite 4's NoPE) gets no positions
    mask_kwargs: dict[str, str] = {}  # a hybrid layer's masks: the keyword each part is handed under
    text = ""  # the path, in the base model, of the language model where it is part of an image-text model

    def _text_model(self, m: nn.Module) -> nn.Module:
        return m.base_model.get_submodule(self.text) if self.text else m.base_model

    initial_state = staticmethod(_ids_and_mask)

    def token_states(self, base, p):
        if self.text and _has_module(base, self.text):  # called with the image-text model's base
            p = f"{p}{self.text}."
        return [f"{p}{self.norm}"], lambda m, s: (getattr(self._text_model(m), self.norm)(s[0]), s[1])

    def layout(self, model, base, p, in_checkpoint):
        if self.text:
            base, p = base.get_submodule(self.text), f"{p}{self.text}."
        from transformers.masking_utils import LAYER_PATTERN_TO_MASK_FUNCTION_MAPPING

        config = base.config
        kinds = list(getattr(config, "layer_types", None) or ["full_attention"] * len(base.layers))[: len(base.layers)]
        if config.model_type in _SLIDING_WHEN_SET and getattr(config, "sliding_window", None) is not None:
            kinds = ["sliding_attention" if k == "full_attention" else k for k in kinds]
        # each layer kind's mask as transformers builds it: causal, sliding, chunked (Llama 4), indexed (DeepSeek
        # sparse attention), or the 2-D padding mask of a recurrent layer (Gated DeltaNet, Mamba); a hybrid kind
        # maps to several, each handed under the keyword `mask_kwargs` names
        masks = dict(LAYER_PATTERN_TO_MASK_FUNCTION_MAPPING)
        masks |= dict.fromkeys(("mlp", "moe"), lambda **kw: None)  # Nemotron-H's layers that mix no tokens
        known = {k for k, f in masks.items() if callable(f) or set(f) <= set(self.mask_kwargs)}
        if set(kinds) - known:
            raise UnsupportedArchitectureError(f"{type(model).__name__}: layer types {sorted(set(kinds))}.")
        rotary_emb = getattr(base, self.rotary, None)
        by_kind = rotary_emb is not None and "layer_type" in inspect.signature(type(rotary_emb).forward).parameters

        def layer(i):
            def step(m, s):
                hidden, mask = s
                b = self._text_model(m)
                positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
                made = dict(config=b.config, inputs_embeds=hidden, attention_mask=mask, cache=None,
                            position_ids=positions)  # fmt: skip
                kind = masks[kinds[i]]
                if callable(kind):
                    layer_masks = {"attention_mask": kind(**made)}
                else:
                    layer_masks = {self.mask_kwargs[part]: f(**made) for part, f in kind.items()}
                rotary = None
                if rotary_emb is not None:
                    rotary = getattr(b, self.rotary)(hidden, positions, *([kinds[i]] if by_kind else []))
                out = b.layers[i](hidden, position_embeddings=rotary, position_ids=positions, use_cache=False,
                                  **layer_masks)  # fmt: skip
                return (out[0] if isinstance(out, tuple) else out, mask)

            return step

        def embed(m, s):
            b = self._text_model(m)
            hidden = getattr(b, self.embed)(s[0])
            multiplier = getattr(b.config, "embedding_multiplier", None)  # Granite's; in the config's signature
            return (hidden * multiplier if multiplier is not None else hidden, s[1])

        paths, tokens = self.token_states(base, p)
        layout = [("embeddings", [f"{p}{self.embed}"], embed)]
        layout += [(f"layers.{i}", [f"{p}layers.{i}"], layer(i)) for i in range(len(base.layers))]
        layout.append(("readout", paths, lambda m, s: (_last_kept(*tokens(m, s)),)))
        return layout


class ImageTextDecoderAdapter(DecoderAdapter):
    """An image-text model searched as a text model: its language model alone, as its `*ForSequenceClassification`
    runs it on text. The vision tower and the projector never run, so they are head: never fetched."""

    text = "language_model"
    modality = "text"

    def blocks_config(self, model):  # the vision config never runs
        return model.config.get_text_config()


@register_adapter("gemma3")
class Gemma3Adapter(ImageTextDecoderAdapter):
    """Gemma 3's image-text models (google/gemma-3-4b-it and up, and their fine-tunes)."""

    family = "transformers-gemma3"


@register_adapter("qwen3_5", "qwen3_5_moe")
class Qwen3_5Adapter(ImageTextDecoderAdapter):
    """Qwen3.5's image-text models (Qwen/Qwen3.5-*, dense and mixtures of experts, and their fine-tunes): Gated
    DeltaNet and full-attention layers. On text alone its 3-D rotary positions are the plain ones."""

    family = "transformers-qwen3_5"


@register_adapter("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")
class QwenVLAdapter(ImageTextDecoderAdapter):
    """Qwen2-VL, Qwen2.5-VL and Qwen3-VL (dense and mixtures of experts, whose stacked experts are saved
    transposed) searched on text by their language model; as Qwen3.5's, their 3-D rotary positions are the plain
    ones on text alone."""

    family = "transformers-qwen-vl"


@register_adapter("phi")
class PhiAdapter(DecoderAdapter):
    """Phi-1, 1.5 and 2: the decoders' layout, with its final norm's name."""

    family = "transformers-phi"
    norm = "final_layernorm"


@register_adapter("nemotron_h")
class NemotronHAdapter(DecoderAdapter):
    """Nemotron-H (NVIDIA's hybrid Mamba-2 Nemotrons): Mamba-2, attention, MLP and mixture-of-experts layers,
    under its own module names."""

    family = "transformers-nemotron-h"
    embed = "embeddings"
    norm = "norm_f"


@register_adapter("falcon_h1")
class FalconH1Adapter(DecoderAdapter):
    """Falcon-H1: attention and Mamba-2 side by side in every layer, each on its own mask."""

    family = "transformers-falcon-h1"
    norm = "final_layernorm"
    mask_kwargs = {"full_attention": "attention_mask", "linear_attention": "mamba_attention_mask"}


@register_adapter("jamba")
class JambaAdapter(DecoderAdapter):
    """Jamba: Mamba and attention layers, some with experts; no rotary positions."""

    family = "transformers-jamba"
    norm = "final_layernorm"


@register_adapter("lfm2")
class Lfm2Adapter(DecoderAdapter):
    """LFM2 (Liquid): short-convolution and attention layers; its final norm is named `embedding_norm`."""

    family = "transformers-lfm2"
    norm = "embedding_norm"


@register_adapter("lfm2_moe")
class Lfm2MoeAdapter(Lfm2Adapter):
    """LFM2's mixtures of experts, whose rotary table is `pos_emb`."""

    family = "transformers-lfm2-moe"
    rotary = "pos_emb"


@register_adapter("gpt_neox")
class GPTNeoXAdapter(DecoderAdapter):
    """GPT-NeoX (Pythia): the decoders' layout, under its own module names."""

    family = "transformers-gpt-neox"
    embed = "embed_in"
    norm = "final_layer_norm"


@register_adapter("falcon")
class FalconAdapter(TransformersAdapter):
    """Falcon (tiiuae/falcon-7b, -40b, falcon-rw-*) as `FalconForSequenceClassification` reads it: word
    embeddings | every block | ln_f + the last token the attention mask keeps.

    Each block rebuilds the causal mask `FalconModel.forward` builds, always materialised, with the ALiBi bias
    folded in where the config uses it (falcon-rw), and the rotary table otherwise.
    """

    family = "transformers-falcon"

    initial_state = staticmethod(_ids_and_mask)

    def token_states(self, base, p):
        return [f"{p}ln_f"], lambda m, s: (m.base_model.ln_f(s[0]), s[1])

    def layout(self, model, base, p, in_checkpoint):
        from transformers.masking_utils import create_causal_mask
        from transformers.models.falcon.modeling_falcon import build_alibi_tensor

        def attention_mask(b, hidden, mask, positions):  # as `FalconModel.forward`
            causal = create_causal_mask(config=b.config, inputs_embeds=hidden, attention_mask=mask, cache=None,
                                        position_ids=positions, allow_is_causal_skip=False)  # fmt: skip
            if not b.use_alibi:
                return causal
            low = torch.finfo(hidden.dtype).min
            if causal.dtype == torch.bool:
                causal = torch.where(causal, torch.full((), 0.0, device=causal.device, dtype=hidden.dtype), low)
            alibi = build_alibi_tensor(mask, b.num_heads, dtype=hidden.dtype)
            alibi = alibi.reshape(hidden.shape[0], -1, *alibi.shape[1:])
            return torch.masked_fill(alibi / math.sqrt(b.config.hidden_size // b.num_heads), causal < -1, low)

        def block(i):
            def step(m, s):
                hidden, mask = s
                b = m.base_model
                positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
                out = b.h[i](hidden, attention_mask=attention_mask(b, hidden, mask, positions), position_ids=positions,
                             use_cache=False, position_embeddings=b.rotary_emb(hidden, position_ids=positions))  # fmt: skip
                return (out[0] if isinstance(out, tuple) else out, mask)

            return step

        paths, tokens = self.token_states(base, p)
        layout = [("embeddings", [f"{p}word_embeddings"], lambda m, s: (m.base_model.word_embeddings(s[0]), s[1]))]
        layout += [(f"h.{i}", [f"{p}h.{i}"], block(i)) for i in range(len(base.h))]
        layout.append(("readout", paths, lambda m, s: (_last_kept(*tokens(m, s)),)))
        return layout


@register_adapter("opt")
class OPTAdapter(TransformersAdapter):
    """OPT as `OPTForSequenceClassification` reads it: token embeddings (+ `project_in`) + learned positions, which
    count the tokens the mask keeps | every layer (causal) | final norm (+ `project_out`) + the last token the
    mask keeps."""

    family = "transformers-opt"

    initial_state = staticmethod(_ids_and_mask)

    def token_states(self, base, p):  # what `OPTDecoder.forward` runs after its layers
        names = [n for n in ("final_layer_norm", "project_out") if getattr(base.decoder, n) is not None]

        def tokens(m, s):
            hidden = s[0]
            for name in names:
                hidden = getattr(m.base_model.decoder, name)(hidden)
            return (hidden, s[1])

        return [f"{p}decoder.{n}" for n in names], tokens

    def layout(self, model, base, p, in_checkpoint):
        from transformers.masking_utils import create_causal_mask

        decoder = base.decoder

        def embed(m, s):  # as `OPTDecoder.forward` does before its layers
            ids, mask = s
            d = m.base_model.decoder
            hidden = d.embed_tokens(ids)
            positions = (torch.cumsum(mask, dim=1) * mask - 1).long()
            hidden = d.project_in(hidden) if d.project_in is not None else hidden
            return (hidden + d.embed_positions(mask, 0, position_ids=positions), mask)

        def layer(i):
            def step(m, s):
                hidden, mask = s
                d = m.base_model.decoder
                causal = create_causal_mask(config=d.config, inputs_embeds=hidden, attention_mask=mask, cache=None)
                positions = (torch.cumsum(mask, dim=1) * mask - 1).long()
                out = d.layers[i](hidden, attention_mask=causal, position_ids=positions, use_cache=False)
                return (out[0] if isinstance(out, tuple) else out, mask)

            return step

        names = ("embed_tokens", "embed_positions", "project_in")
        paths, tokens = self.token_states(base, p)
        layout = [("embeddings", [f"{p}decoder.{n}" for n in names if getattr(decoder, n) is not None], embed)]
        layout += [(f"layers.{i}", [f"{p}decoder.layers.{i}"], layer(i)) for i in range(len(decoder.layers))]
        layout.append(("readout", paths, lambda m, s: (_last_kept(*tokens(m, s)),)))
        return layout


@register_adapter("gpt2")
class GPT2Adapter(TransformersAdapter):
    """GPT-2 as `GPT2ForSequenceClassification` reads it: token + position embeddings | every block (causal) |
    `ln_f` + the last token the attention mask keeps (see `DecoderAdapter`)."""

    family = "transformers-gpt2"

    initial_state = staticmethod(_ids_and_mask)

    def token_states(self, base, p):
        return [f"{p}ln_f"], lambda m, s: (m.base_model.ln_f(s[0]), s[1])

    def layout(self, model, base, p, in_checkpoint):
        from transformers.masking_utils import create_causal_mask

        def embed(m, s):
            b = m.base_model
            positions = torch.arange(s[0].shape[1], device=s[0].device).unsqueeze(0)
            return (b.wte(s[0]) + b.wpe(positions), s[1])

        def block(i):
            def step(m, s):
                hidden, mask = s
                b = m.base_model
                positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
                causal = create_causal_mask(config=b.config, inputs_embeds=hidden, attention_mask=mask, cache=None,
                                            position_ids=positions)  # fmt: skip
                out = b.h[i](hidden, None, causal, None, use_cache=False, position_ids=positions)
                return (out[0] if isinstance(out, tuple) else out, mask)

            return step

        paths, tokens = self.token_states(base, p)
        layout = [("embeddings", [f"{p}wte", f"{p}wpe"], embed)]
        layout += [(f"h.{i}", [f"{p}h.{i}"], block(i)) for i in range(len(base.h))]
        layout.append(("readout", paths, lambda m, s: (_last_kept(*tokens(m, s)),)))
        return layout


@register_adapter("t5", "mt5")
class T5Adapter(TransformersAdapter):
    """T5 and mT5. The encoder: token embeddings | every block | final norm + the masked mean of the tokens (T5 has
    no [CLS]; a sentence-transformers T5, such as sentence-t5 or GTR, reads out by its own modules). That is what
    `T5EncoderModel` gives, and how a `T5ForConditionalGeneration` (t5-base, flan-t5) is read: its decoder is head,
    never fetched.

    `T5ForSequenceClassification` reads on as its classifier does, as BART's does (`BartAdapter`): the decoder's
    embeddings of the input shifted right, attending to the encoder's normed states | every decoder block | the
    decoder's final norm at each text's last </s>. The encoder's blocks and states are the same in both, so a
    classifier fine-tuned from a flan-t5 shares them with its base.

    The token embeddings are `shared` (both stacks' `embed_tokens` are tied to them, and checkpoints save that
    name). Only each stack's first block holds the relative-position bias, and every block of the stack adds it:
    each block lists it as `shared` and recomputes it from the sequence length, as `T5Stack.forward` hands it on.
    The state is (hidden, 2-D mask, input ids): the decoder's input is made from the ids.
    """

    family = "transformers-t5"

    def initial_state(self, inputs):
        ids, mask = _ids_and_mask(inputs)
        return (ids, mask, ids)

    def shared_paths(self, base, p):
        # the embeddings and the encoder's norm are read by the decoder too, in a classifier
        return [f"{p}shared", f"{p}encoder.final_layer_norm", *sum(self.bias_paths(base, p).values(), [])]

    @staticmethod
    def bias_paths(base, p) -> dict[str, list[str]]:
        """stack -> the relative-position bias every block of it adds, held by its first block."""
        stacks = ("encoder", "decoder") if getattr(base, "decoder", None) is not None else ("encoder",)
        return {stack: [f"{p}{stack}.block.0.layer.0.SelfAttention.relative_attention_bias"] for stack in stacks}

    @staticmethod
    def run_block(stack, i, hidden, mask, encoded=None, cross=None):
        """Block i of `stack`, handed the first block's bias as `T5Stack.forward` hands it on (the first block
        computes its own)."""
        n = hidden.shape[1]
        bias = stack.block[0].layer[0].SelfAttention.compute_bias(n, n, device=hidden.device) if i else None
        return stack.block[i](hidden, mask, bias, encoded, cross, None, cache=None)[0]

    def token_states(self, base, p):
        return [f"{p}encoder.final_layer_norm"], lambda m, s: (m.base_model.encoder.final_layer_norm(s[0]), s[1])

    def layout(self, model, base, p, in_checkpoint):
        from transformers.masking_utils import create_bidirectional_mask, create_causal_mask

        def block(i):
            def step(m, s):
                hidden, mask, ids = s
                encoder = m.base_model.encoder
                mask4 = create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=mask)
                return (self.run_block(encoder, i, hidden, mask4), mask, ids)

            return step

        paths, tokens = self.token_states(base, p)

        def readout(m, s):
            hidden, mask = tokens(m, s)
            mask = mask.unsqueeze(-1).to(hidden.dtype)
            return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9),)

        biases = self.bias_paths(base, p)
        embed = [("embeddings", [f"{p}shared"], lambda m, s: (m.base_model.shared(s[0]), s[1], s[2]))]
        layers = [
            (f"block.{i}", [f"{p}encoder.block.{i}", *biases["encoder"]], block(i))
            for i in range(len(base.encoder.block))
        ]
        if not hasattr(model, "classification_head"):
            return [*embed, *layers, ("readout", paths, readout)]

        def decoder_embed(m, s):
            hidden, mask, ids = s
            b = m.base_model
            return (b.shared(b._shift_right(ids)), b.encoder.final_layer_norm(hidden), mask, ids)

        def decoder_block(i):
            def step(m, s):
                hidden, encoded, mask, ids = s
                decoder = m.base_model.decoder
                # `T5ForSequenceClassification` gives the decoder no mask of its own: every position is kept, causally
                causal = create_causal_mask(
                    config=decoder.config, inputs_embeds=hidden, attention_mask=None, cache=None
                )
                cross = create_bidirectional_mask(config=decoder.config, inputs_embeds=hidden, attention_mask=mask,
                                                  encoder_hidden_states=encoded)  # fmt: skip
                return (self.run_block(decoder, i, hidden, causal, encoded, cross), encoded, mask, ids)

            return step

        def decoder_readout(m, s):
            hidden, _, _, ids = s
            return (_last_kept(m.base_model.decoder.final_layer_norm(hidden), ids.eq(m.config.eos_token_id)),)

        # the signature leaves token ids out (`adapters.signature`); these two decide what the classifier reads
        start = f"decoder_start_token_id={getattr(model.config, 'decoder_start_token_id', None)}"
        layers.append(("decoder.embeddings", [f"{p}shared", f"{p}encoder.final_layer_norm"], decoder_embed, start))
        layers += [(f"decoder.block.{i}", [f"{p}decoder.block.{i}", *biases["decoder"]], decoder_block(i))
                   for i in range(len(base.decoder.block))]  # fmt: skip
        end = f"eos_token_id={model.config.eos_token_id}"
        return [*embed, *layers, ("readout", [f"{p}decoder.final_layer_norm"], decoder_readout, end)]


@register_adapter("umt5")
class UMT5Adapter(T5Adapter):
    """UMT5 (google/umt5-*): T5's layout, each block holding and computing its own relative-position bias."""

    family = "transformers-umt5"

    @staticmethod
    def bias_paths(base, p):
        return {"encoder": [], "decoder": []}

    @staticmethod
    def run_block(stack, i, hidden, mask, encoded=None, cross=None):
        return stack.block[i](hidden, mask, encoded, encoder_attention_mask=cross, cache=None)


@register_adapter("bart")
class BartAdapter(TransformersAdapter):
    """BART (facebook/bart-large-mnli, the zero-shot classifier, and the fine-tunes of facebook/bart-*) as
    `BartForSequenceClassification` reads it: token embeddings | every encoder layer | the decoder's embeddings of
    the input shifted right | every decoder layer, attending to the encoder's states | the decoder's state at each
    text's last `</s>`.

    The token embeddings are `shared` (tied to both `embed_tokens`, and saved under that name), so both embedding
    blocks list them. The encoder's states and the input ids travel in the state through the decoder's blocks,
    which read them: the encoder's output is the key and value of every cross-attention. The ids that start the
    decoder's input and end a text salt the blocks that read them, since the config signature leaves token ids out.
    A pre-LayerNorm stack's final norm (mBART's `layer_norm`) ends it: the encoder's is run where the decoder
    starts, the decoder's in the read-out.
    """

    family = "transformers-bart"

    initial_state = staticmethod(_ids_and_mask)

    def shared_paths(self, base, p):
        return [f"{p}shared"]

    @staticmethod
    def shift(config, ids):
        """The decoder's input, as the model makes it from the input ids when given none."""
        from transformers.models.bart.modeling_bart import shift_tokens_right

        return shift_tokens_right(ids, config.pad_token_id, config.decoder_start_token_id)

    @staticmethod
    def shift_salt(config) -> str:
        """The config's token ids that `shift` reads (the signature leaves token ids out)."""
        return f"decoder_start_token_id={config.decoder_start_token_id}"

    def layout(self, model, base, p, in_checkpoint):
        from transformers.masking_utils import create_bidirectional_mask, create_causal_mask

        def final_norm(stack, hidden):  # a pre-LayerNorm stack (mBART's) ends in its final norm
            return stack.layer_norm(hidden) if getattr(stack, "layer_norm", None) is not None else hidden

        def encoder_embed(m, s):
            ids, mask = s
            b = m.base_model
            hidden = b.shared(ids)
            hidden = hidden + b.encoder.embed_positions(hidden[:, :, -1]).to(hidden.device)  # as `BartEncoder`
            return (b.encoder.layernorm_embedding(hidden), mask, ids)

        def encoder_layer(i):
            def step(m, s):
                hidden, mask, ids = s
                encoder = m.base_model.encoder
                mask4 = create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=mask)
                out = encoder.layers[i](hidden, mask4)
                return (out[0] if isinstance(out, tuple) else out, mask, ids)

            return step

        def decoder_embed(m, s):
            encoded, mask, ids = s
            b = m.base_model
            encoded = final_norm(b.encoder, encoded)
            shifted = self.shift(b.config, ids)
            hidden = b.shared(shifted)
            positions = torch.arange(hidden.shape[1], device=hidden.device)
            hidden = hidden + b.decoder.embed_positions(shifted, 0, position_ids=positions).to(hidden.device)
            return (b.decoder.layernorm_embedding(hidden), encoded, mask, ids)

        def decoder_layer(i):
            def step(m, s):
                hidden, encoded, mask, ids = s
                decoder = m.base_model.decoder
                # `BartModel` gives the decoder no mask of its own: every position is kept, causally
                every = torch.ones(hidden.shape[:2], dtype=mask.dtype, device=hidden.device)
                causal = create_causal_mask(
                    config=decoder.config, inputs_embeds=hidden, attention_mask=every, cache=None
                )
                cross = create_bidirectional_mask(config=decoder.config, inputs_embeds=hidden, attention_mask=mask,
                                                  encoder_hidden_states=encoded)  # fmt: skip
                out = decoder.layers[i](
                    hidden, causal, encoded, encoder_attention_mask=cross, cache=None, use_cache=False
                )
                return (out[0] if isinstance(out, tuple) else out, encoded, mask, ids)

            return step

        def readout(m, s):
            hidden, _, _, ids = s
            return (_last_kept(final_norm(m.base_model.decoder, hidden), ids.eq(m.base_model.config.eos_token_id)),)

        shared = self.shared_paths(base, p)
        encoder = [f"{p}encoder.embed_positions", f"{p}encoder.layernorm_embedding"]
        decoder = [f"{p}decoder.embed_positions", f"{p}decoder.layernorm_embedding"]
        norms = {n: [f"{p}{n}.layer_norm"] if getattr(getattr(base, n), "layer_norm", None) is not None else []
                 for n in ("encoder", "decoder")}  # fmt: skip
        layout = [("encoder.embeddings", [*shared, *encoder], encoder_embed)]
        layout += [(f"encoder.layers.{i}", [f"{p}encoder.layers.{i}"], encoder_layer(i))
                   for i in range(len(base.encoder.layers))]  # fmt: skip
        # the signature leaves token ids out (`adapters.signature`); these decide what BART computes
        layout.append(("decoder.embeddings", [*shared, *norms["encoder"], *decoder], decoder_embed,
                       self.shift_salt(model.config)))  # fmt: skip
        layout += [(f"decoder.layers.{i}", [f"{p}decoder.layers.{i}"], decoder_layer(i))
                   for i in range(len(base.decoder.layers))]  # fmt: skip
        layout.append(("readout", norms["decoder"], readout, f"eos_token_id={model.config.eos_token_id}"))
        return layout


@register_adapter("mbart", "plbart")
class MBartAdapter(BartAdapter):
    """mBART (facebook/mbart-large-50 and its fine-tunes) and PLBart (uclanlp/plbart-*): BART's layout, with
    mBART's final norms, and the decoder started by each text's language id (its last token that is not padding,
    wrapped to the front) instead of one start token."""

    family = "transformers-mbart"

    @staticmethod
    def shift(config, ids):
        from transformers.models.mbart.modeling_mbart import shift_tokens_right  # PLBart's is a copy

        return shift_tokens_right(ids, config.pad_token_id)

    @staticmethod
    def shift_salt(config):
        return f"pad_token_id={config.pad_token_id}"


@register_adapter("distilbert")
class DistilBertAdapter(TransformersAdapter):
    """embeddings | every transformer layer | [CLS] hidden state (what the classifier's pre_classifier reads)."""

    family = "transformers-distilbert"

    initial_state = staticmethod(_ids_and_mask)

    token_states = staticmethod(_hidden_and_mask)

    def layout(self, model, base, p, in_checkpoint):
        layout = [("embeddings", [f"{p}embeddings"], _embed_ids)]
        layout += [
            (f"layer.{i}", [f"{p}transformer.layer.{i}"], _masked_layer(lambda b: b.transformer.layer, i))
            for i in range(len(base.transformer.layer))
        ]
        layout.append(("readout", [], lambda m, s: (s[0][:, 0],)))
        return layout


@register_adapter("vit", "deit", "dinov2", "dinov2_with_registers", "ijepa")
class ViTAdapter(TransformersAdapter):
    """embeddings | every encoder layer | final layernorm + read-out.

    The read-out is what the classification model's classifier sees: [CLS]; [CLS] ++ the patches' mean for DINOv2
    (with registers too, left out of the mean); [CLS] and distillation averaged for DeiT-distilled; every token's
    mean for I-JEPA, which has no [CLS]. A bare `*Model` with a pooler gives `pooler_output`.
    """

    family = "transformers-vit"

    def layout(self, model, base, p, in_checkpoint):
        layers = base.layers if hasattr(base, "layers") else base.encoder.layer
        layers_path = f"{p}layers" if hasattr(base, "layers") else f"{p}encoder.layer"

        def embed(m, s):
            return (m.base_model.embeddings(s[0]),)

        def layer(i):
            def step(m, s):
                b = m.base_model
                mods = b.layers if hasattr(b, "layers") else b.encoder.layer
                out = mods[i](s[0])
                return (out[0] if isinstance(out, tuple) else out,)

            return step

        norm_name = "layernorm"
        model_type = model.config.model_type
        head_kind = type(model).__name__
        # a bare model saved without its pooler (google/vit-base-patch16-224-in21k's fine-tunes hold none) reads
        # out [CLS] as the classification models do, instead of running a pooler with no weights
        pooled = base is model and getattr(base, "pooler", None) is not None and in_checkpoint(f"{p}pooler")

        def readout(m, s):
            b = m.base_model
            seq = getattr(b, norm_name)(s[0])
            if m is b:
                return (b.pooler(seq) if pooled else seq[:, 0],)
            if model_type in ("dinov2", "dinov2_with_registers"):  # the patches' mean leaves the registers out
                patches = seq[:, 1 + getattr(m.config, "num_register_tokens", 0) :]
                return (torch.cat([seq[:, 0], patches.mean(dim=1)], dim=1),)
            if model_type == "ijepa":  # no class token: every token's mean
                return (seq.mean(dim=1),)
            if head_kind.endswith("WithTeacher"):
                return ((seq[:, 0] + seq[:, 1]) / 2,)
            return (seq[:, 0],)

        paths = [f"{p}{norm_name}"]
        if pooled:
            paths.append(f"{p}pooler")
        # the head class decides the read-out: a head-only fine-tune of distilled DeiT (read as [CLS]) and the
        # distilled model (read as [CLS] and the distillation token) hold the same tensors (`Block.salt`)
        salt = ""  # [CLS], or a bare model's pooler (its own tensors)
        if base is not model and model_type in ("dinov2", "dinov2_with_registers"):
            salt = "readout=cls+mean"
        elif base is not model and model_type == "ijepa":
            salt = "readout=mean"
        elif base is not model and head_kind.endswith("WithTeacher"):
            salt = "readout=cls+distillation"
        layout = [("embeddings", [f"{p}embeddings"], embed)]
        layout += [(f"layer.{i}", [f"{layers_path}.{i}"], layer(i)) for i in range(len(layers))]
        layout.append(("readout", paths, readout, salt))
        return layout


@register_adapter(
    "clip", "clip_vision_model", "siglip", "siglip_vision_model", "metaclip_2", "metaclip_2_vision_model"
)
class VisionTowerAdapter(TransformersAdapter):
    """CLIP's (and MetaCLIP 2's) and SigLIP's image tower: embeddings (+ CLIP's pre-LayerNorm) | every encoder
    layer | what `*ForImageClassification` reads: the mean of CLIP's patch tokens, or of SigLIP's post-LayerNormed
    tokens.

    Every checkpoint reads out so, the dual encoder and the bare tower too: a search of a CLIP or SigLIP base
    and its classification fine-tunes compares the features each would be fine-tuned from. The text tower, the
    projections, CLIP's post-LayerNorm and SigLIP's attention-pooling head are never read, so never fetched.
    """

    family = "transformers-vision-tower"

    def blocks_config(self, model):  # a dual encoder's text config and projections never run
        return getattr(model.config, "vision_config", model.config)

    def layout(self, model, base, p, in_checkpoint):
        tower, t = (model.vision_model, "vision_model.") if hasattr(model, "vision_model") else (model, "")
        siglip = model.config.model_type.startswith("siglip")

        def the_tower(m):
            return m.vision_model if t else m

        def embed(m, s):
            tw = the_tower(m)
            hidden = tw.embeddings(s[0])
            return (hidden if siglip else tw.pre_layrnorm(hidden),)

        def layer(i):
            def step(m, s):
                out = the_tower(m).encoder.layers[i](s[0], None)
                return (out[0] if isinstance(out, tuple) else out,)

            return step

        def readout(m, s):
            if siglip:
                return (the_tower(m).post_layernorm(s[0]).mean(dim=1),)
            return (s[0][:, 1:].mean(dim=1),)

        layout = [("embeddings", [f"{t}embeddings", *([] if siglip else [f"{t}pre_layrnorm"])], embed)]
        layout += [(f"layers.{i}", [f"{t}encoder.layers.{i}"], layer(i)) for i in range(len(tower.encoder.layers))]
        layout.append(("readout", [f"{t}post_layernorm"] if siglip else [], readout))
        return layout


@register_adapter("siglip2", "siglip2_vision_model")
class Siglip2TowerAdapter(VisionTowerAdapter):
    """SigLIP 2's image tower (NaFlex): its processor cuts each image, at its own aspect ratio, into at most
    `max_num_patches` patches, padded to that many, so the state carries the patch mask and each image's patch
    grid, which the embeddings need to resize their position table. Every layer attends to the real patches alone,
    and the read-out is `Siglip2ForImageClassification`'s: the mean of the post-LayerNormed real patches.
    """

    family = "transformers-siglip2"

    def initial_state(self, inputs):
        if "spatial_shapes" not in inputs:  # a processor that resizes whole images (SigLIP's), not SigLIP 2's
            raise UnsupportedArchitectureError(
                "SigLIP 2 takes its processor's patches, their mask and grid (`Siglip2ImageProcessor`), but this "
                "repo's image processor gives whole images; save a Siglip2ImageProcessor with the model."
            )
        return (inputs["pixel_values"], inputs["pixel_attention_mask"], inputs["spatial_shapes"])

    def layout(self, model, base, p, in_checkpoint):
        from transformers.masking_utils import create_bidirectional_mask

        tower, t = (model.vision_model, "vision_model.") if hasattr(model, "vision_model") else (model, "")

        def the_tower(m):
            return m.vision_model if t else m

        def embed(m, s):
            pixels, mask, shapes = s
            return (the_tower(m).embeddings(pixels, shapes), mask)

        def layer(i):
            def step(m, s):
                tw = the_tower(m)
                hidden, mask = s
                mask4 = create_bidirectional_mask(config=tw.config, inputs_embeds=hidden, attention_mask=mask)
                return (tw.encoder.layers[i](hidden, mask4), mask)

            return step

        def readout(m, s):
            hidden, mask = s
            keep = mask.unsqueeze(-1).to(hidden.dtype)
            return ((the_tower(m).post_layernorm(hidden) * keep).sum(dim=1) / keep.sum(dim=1),)

        layout = [("embeddings", [f"{t}embeddings"], embed)]
        layout += [(f"layers.{i}", [f"{t}encoder.layers.{i}"], layer(i)) for i in range(len(tower.encoder.layers))]
        layout.append(("readout", [f"{t}post_layernorm"], readout))
        return layout


def _dinov3(model: nn.Module, part: str) -> tuple[nn.Module, str]:
    """A DINOv3 model's backbone and its key prefix. Its `base_model_prefix` is "model", which is also its encoder's
    attribute: transformers' `base_model` of a bare DINOv3 model is that encoder, not the model."""
    if hasattr(model, part):
        return model, ""
    base, p = base_model(model)
    if not hasattr(base, part):
        raise UnsupportedArchitectureError(f"{type(model).__name__}: no DINOv3 backbone with `{part}` found.")
    return base, p


@register_adapter("dinov3_vit")
class DINOv3ViTAdapter(TransformersAdapter):
    """DINOv3's ViT (`facebook/dinov3-vit*`): patch embeddings with [CLS] and register tokens | every layer | final
    norm + [CLS] (`pooler_output`).

    Its layers take rotary position embeddings of the patch grid, which the model computes once from the input's
    height and width; the state carries the grid (patches high and wide, per item) after the embeddings, and each
    layer rebuilds the embeddings from it, so images of any size (`image_size`) keep their positions.
    """

    family = "transformers-dinov3-vit"

    def layout(self, model, base, p, in_checkpoint):
        base, p = _dinov3(model, "rope_embeddings")
        patch = base.config.patch_size
        ph, pw = tuple(patch) if isinstance(patch, (tuple, list)) else (patch, patch)

        def embed(m, s):
            b, pixels = _dinov3(m, "rope_embeddings")[0], s[0]
            hidden = b.embeddings(pixels.to(b.embeddings.patch_embeddings.weight.dtype))
            grid = torch.tensor([pixels.shape[-2] // ph, pixels.shape[-1] // pw], device=pixels.device)
            return (hidden, grid.expand(pixels.shape[0], 2))

        def layer(i):
            def step(m, s):
                hidden, grid = s
                b = _dinov3(m, "rope_embeddings")[0]
                h, w = grid_size(grid)
                # the rotary table reads the pixels' shape, device and dtype alone
                shape = torch.empty(1, 1, 1, 1, device=hidden.device, dtype=hidden.dtype).expand(1, 1, h * ph, w * pw)
                return (b.model.layer[i](hidden, position_embeddings=b.rope_embeddings(shape)), grid)

            return step

        def readout(m, s):
            return (_dinov3(m, "rope_embeddings")[0].norm(s[0][:, 0]),)

        layout = [("embeddings", [f"{p}embeddings"], embed)]
        layout += [(f"layer.{i}", [f"{p}model.layer.{i}"], layer(i)) for i in range(len(base.model.layer))]
        layout.append(("readout", [f"{p}norm"], readout))
        return layout


@register_adapter("dinov3_convnext")
class DINOv3ConvNextAdapter(TransformersAdapter):
    """DINOv3's ConvNeXt (`facebook/dinov3-convnext-*`): per stage, its downsampling layers, then every layer |
    mean pool + final norm (`pooler_output`)."""

    family = "transformers-dinov3-convnext"

    def layout(self, model, base, p, in_checkpoint):
        base, p = _dinov3(model, "layer_norm")

        def stages(m):
            return _dinov3(m, "layer_norm")[0].model.stages

        def down(i):
            def step(m, s):
                x = s[0]
                for mod in stages(m)[i].downsample_layers:
                    x = mod(x)
                return (x,)

            return step

        def layer(i, j):
            return lambda m, s: (stages(m)[i].layers[j](s[0]),)

        def readout(m, s):
            return (_dinov3(m, "layer_norm")[0].layer_norm(s[0].mean(dim=(-2, -1))),)

        layout = []
        for i, stage in enumerate(base.model.stages):
            layout.append((f"stages.{i}.downsample", [f"{p}model.stages.{i}.downsample_layers"], down(i)))
            layout += [
                (f"stages.{i}.layers.{j}", [f"{p}model.stages.{i}.layers.{j}"], layer(i, j))
                for j in range(len(stage.layers))
            ]
        layout.append(("readout", [f"{p}layer_norm"], readout))
        return layout


@register_adapter("resnet")
class HfResNetAdapter(TransformersAdapter):
    """embedder | every residual layer of every stage | global average pool (flattened `pooler_output`)."""

    family = "transformers-resnet"

    def layout(self, model, base, p, in_checkpoint):
        def layer(i, j):
            return lambda m, s: (m.base_model.encoder.stages[i].layers[j](s[0]),)

        layout = [("embedder", [f"{p}embedder"], lambda m, s: (m.base_model.embedder(s[0]),))]
        for i, stage in enumerate(base.encoder.stages):
            layout += [
                (f"stages.{i}.layers.{j}", [f"{p}encoder.stages.{i}.layers.{j}"], layer(i, j))
                for j in range(len(stage.layers))
            ]
        layout.append(("readout", [], lambda m, s: (torch.flatten(m.base_model.pooler(s[0]), 1),)))
        return layout


@register_adapter("mobilevit", "mobilevitv2")
class HfMobileViTAdapter(TransformersAdapter):
    """conv stem | every encoder layer (a MobileNet stage or a MobileViT block) | v1's 1x1 expansion + mean pool
    (`pooler_output`)."""

    family = "transformers-mobilevit"

    def layout(self, model, base, p, in_checkpoint):
        expand = getattr(base, "conv_1x1_exp", None) is not None

        def layer(i):
            return lambda m, s: (m.base_model.encoder.layer[i](s[0]),)

        def readout(m, s):
            x = m.base_model.conv_1x1_exp(s[0]) if expand else s[0]
            return (x.mean(dim=[-2, -1]),)

        layout = [("conv_stem", [f"{p}conv_stem"], lambda m, s: (m.base_model.conv_stem(s[0]),))]
        layout += [(f"encoder.layer.{i}", [f"{p}encoder.layer.{i}"], layer(i)) for i in range(len(base.encoder.layer))]
        layout.append(("readout", [f"{p}conv_1x1_exp"] if expand else [], readout))
        return layout


@register_adapter("convnext", "convnextv2")
class HfConvNextAdapter(TransformersAdapter):
    """embeddings | per stage: its downsampling layer, then every layer | mean-pool + layernorm (`pooler_output`)."""

    family = "transformers-convnext"

    def layout(self, model, base, p, in_checkpoint):
        def down(i):
            def step(m, s):
                x = s[0]
                for mod in m.base_model.encoder.stages[i].downsampling_layer:
                    x = mod(x)
                return (x,)

            return step

        def layer(i, j):
            return lambda m, s: (m.base_model.encoder.stages[i].layers[j](s[0]),)

        layout = [("embeddings", [f"{p}embeddings"], lambda m, s: (m.base_model.embeddings(s[0]),))]
        for i, stage in enumerate(base.encoder.stages):
            if len(stage.downsampling_layer):
                layout.append((f"stages.{i}.downsample", [f"{p}encoder.stages.{i}.downsampling_layer"], down(i)))
            layout += [
                (f"stages.{i}.layers.{j}", [f"{p}encoder.stages.{i}.layers.{j}"], layer(i, j))
                for j in range(len(stage.layers))
            ]
        layout.append(("readout", [f"{p}layernorm"], lambda m, s: (m.base_model.layernorm(s[0].mean([-2, -1])),)))
        return layout


def _embed_grid(m: nn.Module, s: State) -> State:
    """(pixels,) -> (tokens, grid): embeddings that also return the token grid's size (Swin's, FocalNet's)."""
    hidden, (h, w) = m.base_model.embeddings(s[0])
    return (hidden, grid_state(hidden, h, w))


def _staged(prefix: str, stages: str, blocks: str, shape: list[tuple[int, bool]], block, downsample) -> list:
    """The layout of a hierarchical encoder: per stage, every block (`block(i, j)`), then its downsampling
    (`downsample(i)`) where it has one. `shape`: per stage, (blocks, whether it downsamples)."""
    layout = []
    for i, (count, downsamples) in enumerate(shape):
        path = f"{prefix}{stages}.{i}"
        layout += [(f"{stages}.{i}.{blocks}.{j}", [f"{path}.{blocks}.{j}"], block(i, j)) for j in range(count)]
        if downsamples:
            layout.append((f"{stages}.{i}.downsample", [f"{path}.downsample"], downsample(i)))
    return layout


@register_adapter("swin", "swinv2")
class HfSwinAdapter(TransformersAdapter):
    """embeddings | every Swin block, then each stage's patch merging | layernorm + average pool.

    The state carries the token grid's height and width per item, as a (batch, 2) tensor.
    """

    family = "transformers-swin"

    def layout(self, model, base, p, in_checkpoint):
        def block(i, j):
            def step(m, s):
                hidden, dims = s
                out = m.base_model.encoder.layers[i].blocks[j](hidden, grid_size(dims))
                return (out[0] if isinstance(out, tuple) else out, dims)

            return step

        def merge(i):
            def step(m, s):
                hidden, dims = s
                h, w = grid_size(dims)
                hidden = m.base_model.encoder.layers[i].downsample(hidden, (h, w))
                return (hidden, grid_state(hidden, (h + 1) // 2, (w + 1) // 2))

            return step

        def readout(m, s):
            seq = m.base_model.layernorm(s[0])
            return (torch.flatten(nn.functional.adaptive_avg_pool1d(seq.transpose(1, 2), 1), 1),)

        stages = [(len(stage.blocks), stage.downsample is not None) for stage in base.encoder.layers]
        return [
            ("embeddings", [f"{p}embeddings"], _embed_grid),
            *_staged(f"{p}encoder.", "layers", "blocks", stages, block, merge),
            ("readout", [f"{p}layernorm"], readout),
        ]


@register_adapter("focalnet")
class HfFocalNetAdapter(TransformersAdapter):
    """embeddings | every focal modulation layer, then each stage's downsampling | layernorm + average pool.

    Swin's shape: the state carries the token grid's height and width per item, as a (batch, 2) tensor.
    """

    family = "transformers-focalnet"

    def layout(self, model, base, p, in_checkpoint):
        def layer(i, j):
            def step(m, s):
                hidden, dims = s
                return (m.base_model.encoder.stages[i].layers[j](hidden, grid_size(dims)), dims)

            return step

        def downsample(i):
            def step(m, s):  # as `FocalNetStage.forward` does after its layers
                hidden, dims = s
                h, w = grid_size(dims)
                hidden = hidden.transpose(1, 2).reshape(hidden.shape[0], -1, h, w)
                hidden, (h, w) = m.base_model.encoder.stages[i].downsample(hidden)
                return (hidden, grid_state(hidden, h, w))

            return step

        def readout(m, s):
            return (m.base_model.layernorm(s[0]).mean(1),)

        stages = [(len(stage.layers), stage.downsample is not None) for stage in base.encoder.stages]
        return [
            ("embeddings", [f"{p}embeddings"], _embed_grid),
            *_staged(f"{p}encoder.", "stages", "layers", stages, layer, downsample),
            ("readout", [f"{p}layernorm"], readout),
        ]


def _pvt_block(blocks_of, i: int, j: int):
    """Block j of stage i of a PVT (`blocks_of(base, i)` lists the stage's blocks): (tokens, grid) -> (tokens,
    grid); the block reads the grid as two ints."""

    def step(m, s):
        hidden, grid = s
        return (blocks_of(m.base_model, i)[j](hidden, *grid_size(grid), False)[0], grid)

    return step


@register_adapter("pvt")
class HfPvtAdapter(TransformersAdapter):
    """PVT (Zetatt/pvt-*): per stage, its patch embedding (the last adds the class token) | every block | final
    layernorm + the class token (what `PvtForImageClassification` classifies). Between stages the tokens become a
    feature map again, in the next stage's embedding step; the state carries the grid."""

    family = "transformers-pvt"

    def layout(self, model, base, p, in_checkpoint):
        def embed(i):
            def step(m, s):
                x = grid_map(*s) if i else s[0]
                hidden, h, w = m.base_model.encoder.patch_embeddings[i](x)
                return (hidden, grid_state(hidden, h, w))

            return step

        def blocks_of(b, i):
            return b.encoder.block[i]

        layout = []
        for i, stage in enumerate(base.encoder.block):
            layout.append((f"patch_embeddings.{i}", [f"{p}encoder.patch_embeddings.{i}"], embed(i)))
            layout += [(f"block.{i}.{j}", [f"{p}encoder.block.{i}.{j}"], _pvt_block(blocks_of, i, j))
                       for j in range(len(stage))]  # fmt: skip
        layout.append(
            ("readout", [f"{p}encoder.layer_norm"], lambda m, s: (m.base_model.encoder.layer_norm(s[0])[:, 0],))
        )
        return layout


@register_adapter("cvt")
class HfCvtAdapter(TransformersAdapter):
    """CvT (microsoft/cvt-*): per stage, its convolutional embedding (where the config says, the class token joins)
    | every layer | what `CvtForImageClassification` classifies: its layernorm over the class token (a bare
    `CvtModel`: the class token; the mean of every position where the last stage has none, which transformers'
    classifier cannot run). Between stages the tokens become a feature map again; the state carries the grid."""

    family = "transformers-cvt"

    def layout(self, model, base, p, in_checkpoint):
        cls = list(model.config.cls_token)

        def embed(i):
            def step(m, s):  # as `CvtStage.forward` starts
                stage, x = m.base_model.encoder.stages[i], s[0]
                if i:
                    x = grid_map(x[:, 1:] if cls[i - 1] else x, s[1])
                x = stage.embedding(x)
                b, c, h, w = x.shape
                x = x.view(b, c, h * w).permute(0, 2, 1)
                if cls[i]:
                    x = torch.cat((stage.cls_token.expand(b, -1, -1), x), dim=1)
                return (x, grid_state(x, h, w))

            return step

        def layer(i, j):
            def step(m, s):
                return (m.base_model.encoder.stages[i].layers[j](s[0], *grid_size(s[1])), s[1])

            return step

        def readout(m, s):
            x = s[0][:, :1] if cls[-1] else s[0]
            return ((x if m is m.base_model else m.layernorm(x)).mean(dim=1),)

        layout = []
        for i, stage in enumerate(base.encoder.stages):
            paths = [f"{p}encoder.stages.{i}.embedding"] + ([f"{p}encoder.stages.{i}.cls_token"] if cls[i] else [])
            layout.append((f"stages.{i}.embedding", paths, embed(i)))
            layout += [(f"stages.{i}.layers.{j}", [f"{p}encoder.stages.{i}.layers.{j}"], layer(i, j))
                       for j in range(len(stage.layers))]  # fmt: skip
        layout.append(("readout", [] if model is base else ["layernorm"], readout))
        return layout


@register_adapter("pvt_v2")
class HfPvtV2Adapter(TransformersAdapter):
    """PVT v2 (OpenGVLab/pvt_v2_*): per stage, its overlapping patch embedding | every block | its layernorm, back
    to a feature map | the mean of the last map's positions (what `PvtV2ForImageClassification` classifies). The
    state carries the grid within a stage."""

    family = "transformers-pvt-v2"

    def layout(self, model, base, p, in_checkpoint):
        def embed(i):
            def step(m, s):
                hidden, h, w = m.base_model.encoder.layers[i].patch_embedding(s[0])
                return (hidden, grid_state(hidden, h, w))

            return step

        def norm(i):
            return lambda m, s: (grid_map(m.base_model.encoder.layers[i].layer_norm(s[0]), s[1]),)

        def readout(m, s):  # as the classifier pools: (B, C, H, W) -> (B, H * W, C) -> mean over positions
            x = s[0]
            return (x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1]).mean(dim=1),)

        def blocks_of(b, i):
            return b.encoder.layers[i].blocks

        layout = []
        for i, stage in enumerate(base.encoder.layers):
            path = f"{p}encoder.layers.{i}"
            layout.append((f"layers.{i}.patch_embedding", [f"{path}.patch_embedding"], embed(i)))
            layout += [(f"layers.{i}.blocks.{j}", [f"{path}.blocks.{j}"], _pvt_block(blocks_of, i, j))
                       for j in range(len(stage.blocks))]  # fmt: skip
            layout.append((f"layers.{i}.layer_norm", [f"{path}.layer_norm"], norm(i)))
        layout.append(("readout", [], readout))
        return layout


@register_adapter("poolformer")
class HfPoolFormerAdapter(TransformersAdapter):
    """PoolFormer (sail/poolformer_*): per stage, its patch embedding | every layer | the classifier's group norm
    (where the model has it) + mean pool, as `PoolFormerForImageClassification` reads it."""

    family = "transformers-poolformer"

    def layout(self, model, base, p, in_checkpoint):
        norm = getattr(model, "norm", None) if model is not base else None

        def embed(i):
            return lambda m, s: (m.base_model.encoder.patch_embeddings[i](s[0]),)

        def layer(i, j):
            return lambda m, s: (m.base_model.encoder.block[i][j](s[0])[0],)

        def readout(m, s):
            return ((m.norm(s[0]) if norm is not None else s[0]).mean([-2, -1]),)

        layout = []
        for i, stage in enumerate(base.encoder.block):
            layout.append((f"patch_embeddings.{i}", [f"{p}encoder.patch_embeddings.{i}"], embed(i)))
            layout += [(f"block.{i}.{j}", [f"{p}encoder.block.{i}.{j}"], layer(i, j)) for j in range(len(stage))]
        layout.append(("readout", ["norm"] if norm is not None else [], readout))
        return layout


@register_adapter("hgnet_v2")
class HfHGNetV2Adapter(TransformersAdapter):
    """HGNetV2 (ustc-community/hgnet-v2): embedder | per stage: its downsampling convolution (where it has one),
    then every block | average pool, flattened (what `HGNetV2ForImageClassification` classifies)."""

    family = "transformers-hgnet-v2"

    def layout(self, model, base, p, in_checkpoint):
        def down(i):
            return lambda m, s: (m.base_model.encoder.stages[i].downsample(s[0]),)

        def block(i, j):
            return lambda m, s: (m.base_model.encoder.stages[i].blocks[j](s[0]),)

        layout = [("embedder", [f"{p}embedder"], lambda m, s: (m.base_model.embedder(s[0]),))]
        for i, stage in enumerate(base.encoder.stages):
            path = f"{p}encoder.stages.{i}"
            if not isinstance(stage.downsample, nn.Identity):
                layout.append((f"stages.{i}.downsample", [f"{path}.downsample"], down(i)))
            layout += [
                (f"stages.{i}.blocks.{j}", [f"{path}.blocks.{j}"], block(i, j)) for j in range(len(stage.blocks))
            ]
        layout.append(("readout", [], lambda m, s: (torch.flatten(nn.functional.adaptive_avg_pool2d(s[0], 1), 1),)))
        return layout


@register_adapter("swiftformer")
class HfSwiftFormerAdapter(TransformersAdapter):
    """SwiftFormer (MBZUAI/swiftformer-*): patch embedding | the encoder's network in order: every block of each
    stage, each downsampling embedding between stages | the classifier's batch norm (where the model has it) +
    mean pool, which both its heads read."""

    family = "transformers-swiftformer"

    def layout(self, model, base, p, in_checkpoint):
        norm = getattr(model, "norm", None) if model is not base else None

        def node(*path):  # a module of the encoder's network, by index
            def step(m, s):
                module = m.base_model.encoder.network[path[0]]
                return ((module.blocks[path[1]] if len(path) > 1 else module)(s[0]),)

            return step

        def readout(m, s):
            x = m.norm(s[0]) if norm is not None else s[0]
            return (x.flatten(2).mean(-1),)

        layout = [("patch_embed", [f"{p}patch_embed"], lambda m, s: (m.base_model.patch_embed(s[0]),))]
        for i, module in enumerate(base.encoder.network):
            path = f"{p}encoder.network.{i}"
            if hasattr(module, "blocks"):
                layout += [(f"network.{i}.blocks.{j}", [f"{path}.blocks.{j}"], node(i, j))
                           for j in range(len(module.blocks))]  # fmt: skip
            else:
                layout.append((f"network.{i}", [path], node(i)))
        layout.append(("readout", ["norm"] if norm is not None else [], readout))
        return layout
