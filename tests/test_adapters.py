"""Adapters: composed blocks equal each library's own features, resume at every block, exact key coverage."""

from __future__ import annotations

import io
import json
import re

import pytest
import timm
import torch
import transformers as T
from safetensors.torch import load, save

from alsatian_hf.adapters import check_coverage, load_block, split_model
from alsatian_hf.adapters.skeleton import build_model
from alsatian_hf.candidates import LocalBlockSource
from alsatian_hf.errors import DataNotInstalledError, UnsupportedArchitectureError


ATOL = 1e-5
_BERT = dict(
    vocab_size=31,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    max_position_embeddings=64,
)
_ALBERT = dict(_BERT, num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2, embedding_size=16)
# DeBERTa-v3's layout: relative positions in buckets, LayerNorm'd relative embeddings, no absolute positions
_DEBERTA_V3 = dict(
    _BERT,
    relative_attention=True,
    position_buckets=8,
    norm_rel_ebd="layer_norm",
    pos_att_type=["p2c", "c2p"],
    position_biased_input=False,
    type_vocab_size=0,
)
# a window of 4 tokens: the sliding-window layer sees less than _text's 7
_MODERNBERT = dict(_BERT, num_hidden_layers=3, global_attn_every_n_layers=2, local_attention=4, pad_token_id=0)
_DECODER = dict(_BERT, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)
_OPT = dict(vocab_size=31, hidden_size=32, num_hidden_layers=2, ffn_dim=37, num_attention_heads=2,
            max_position_embeddings=64, pad_token_id=1)  # fmt: skip
# real T5 configs name the decoder's start token (the padding id)
_T5 = dict(vocab_size=31, d_model=32, d_kv=8, d_ff=37, num_layers=3, num_heads=4, relative_attention_num_buckets=8,
           decoder_start_token_id=0)  # fmt: skip
_XLNET = dict(vocab_size=31, d_model=32, n_layer=2, n_head=2, d_inner=37)
_VIT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=8
)
# two stages of a pyramid vision transformer: 32 px -> 8 x 8 tokens -> 4 x 4
_PVT = dict(image_size=32, num_encoder_blocks=2, depths=[1, 2], sequence_reduction_ratios=[2, 1], hidden_sizes=[8, 16],
            patch_sizes=[4, 2], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2])  # fmt: skip
# two PoolFormer stages of 8 and 16 channels
_POOLFORMER = dict(num_encoder_blocks=2, depths=[1, 2], hidden_sizes=[8, 16], patch_sizes=[7, 3], strides=[4, 2],
                   padding=[2, 1])  # fmt: skip
# two HGNetV2 stages, the second downsampling with light blocks
_HGNETV2 = dict(stem_channels=[3, 8, 8], stage_in_channels=[8, 16], stage_mid_channels=[8, 8],
                stage_out_channels=[16, 16], stage_num_blocks=[1, 2], stage_downsample=[False, True],
                stage_light_block=[False, True], stage_kernel_size=[3, 5], stage_numb_of_layers=[2, 2],
                hidden_sizes=[16, 16])  # fmt: skip
_TOWER_TEXT = dict(vocab_size=31, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
_SWIN = dict(image_size=32, patch_size=4, embed_dim=8, depths=[1, 2], num_heads=[1, 2], window_size=4)


def _text():
    g = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(5, 30, (2, 7), generator=g),
        "attention_mask": torch.tensor([[1] * 7, [1] * 5 + [0] * 2]),
    }


def _long_text(length: int):
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, length - 3 :] = 0
    return {"input_ids": torch.randint(5, 30, (2, length), generator=g), "attention_mask": mask}


def _pixels(size=32):
    return {"pixel_values": torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))}


def _wide_pixels():
    return {"pixel_values": torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))}


def _naflex():
    """SigLIP 2's inputs: two images cut into at most 16 patches of 8 x 8 pixels, a 4 x 4 one and a 2 x 6 one (its
    last 4 patches padding)."""
    g = torch.Generator().manual_seed(0)
    return {
        "pixel_values": torch.randn(2, 16, 3 * 8 * 8, generator=g),
        "pixel_attention_mask": torch.tensor([[1] * 16, [1] * 12 + [0] * 4]),
        "spatial_shapes": torch.tensor([[4, 4], [2, 6]]),
    }


def _cls(h):
    return h.last_hidden_state[:, 0]


def _last(hidden, x):
    """The last token the mask keeps, which `*ForSequenceClassification` of a decoder classifies."""
    last = (torch.arange(hidden.shape[1]) * x["attention_mask"]).argmax(-1)
    return hidden[torch.arange(hidden.shape[0]), last]


def _decoder(kind: str, head: str = "ForSequenceClassification", **config):
    """A case of a decoder's `*ForSequenceClassification` (or, with `head=""`, of its bare `*Model`, for a family
    transformers has no classifier of): features are the last token the mask keeps, after the final norm."""
    cls = getattr(T, f"{kind}{head or 'Model'}")
    return (
        cls.__name__,
        lambda: cls(getattr(T, f"{kind}Config")(**(_DECODER | config))),
        _text,
        lambda m, x: _last(m.base_model(**x).last_hidden_state, x),
    )


def _left_padded(case):
    """`case` on texts padded before they start, which a recurrent layer (linear attention, Mamba, a short
    convolution) must mask out of its state; right padding never reaches the last kept token."""
    name, factory, inputs, reference = case
    return f"{name}-left-padding", factory, lambda: {k: v.flip(1) for k, v in inputs().items()}, reference


# mixtures of experts: 2 of 4 experts a token, each a multiple of 4 floats wide (grouped matmuls need 16-byte
# strides); the checkpoint holds one tensor per expert, the model one stacked tensor
_MOE = dict(intermediate_size=40, moe_intermediate_size=16, num_experts_per_tok=2)
# DeepSeek's multi-head latent attention, and its first layer dense
_MLA = dict(_MOE, n_routed_experts=4, num_key_value_heads=4, kv_lora_rank=8, q_lora_rank=None, qk_rope_head_dim=4,
            qk_nope_head_dim=4, v_head_dim=8, first_k_dense_replace=1, n_group=1, topk_group=1)  # fmt: skip
# a recurrent layer (linear attention, Mamba), a full-attention one, a recurrent one
_HYBRID = ["linear_attention", "full_attention", "linear_attention"]
# linear attention (Gated DeltaNet) beside full attention; padding masks its recurrence
_LINEAR = dict(head_dim=8, layer_types=_HYBRID, linear_num_key_heads=2, linear_num_value_heads=4,
               linear_key_head_dim=8, linear_value_head_dim=8)  # fmt: skip
# DeepSeek sparse attention: each query attends to the 4 keys its indexer ranks highest
_DSA = dict(_MLA, q_lora_rank=8, index_topk=4, index_head_dim=8, index_n_heads=2,
            mlp_layer_types=["dense", "sparse", "sparse"], layer_types=["indexed_attention"] * 3)  # fmt: skip
# Llama 4: chunked attention over 4 tokens, then a full-attention layer without rotary embeddings
_LLAMA4 = dict(head_dim=8, attention_chunk_size=4, num_local_experts=4, num_experts_per_tok=1,
               intermediate_size_mlp=40, layer_types=["chunked_attention", "chunked_attention", "full_attention"],
               no_rope_layers=[1, 1, 0])  # fmt: skip
# Mamba-2 (Granite 4, Nemotron-H) beside attention; Nemotron-H's experts and plain MLP each a layer of their own
_MAMBA = dict(_MOE, layer_types=_HYBRID, num_local_experts=4, shared_intermediate_size=20, mamba_n_heads=4,
              mamba_d_head=16, mamba_n_groups=1, mamba_d_state=8, mamba_expand=2, mamba_chunk_size=4,
              n_routed_experts=4, moe_shared_expert_intermediate_size=16, n_group=1, topk_group=1, head_dim=8,
              mamba_num_heads=4, mamba_head_dim=16, ssm_state_size=8, n_groups=1, chunk_size=4,
              expand=2)  # fmt: skip
_NEMOTRON_H = dict(_MAMBA, num_hidden_layers=4, layer_types=["linear_attention", "moe", "full_attention", "mlp"])
# Falcon-H1: attention and Mamba-2 side by side in each layer, scaled by the config's multipliers
_FALCON_H1 = dict(mamba_d_ssm=64, mamba_n_heads=4, mamba_d_head=16, mamba_d_state=8, mamba_chunk_size=4,
                  embedding_multiplier=3.0, attention_in_multiplier=0.5, ssm_in_multiplier=2.0,
                  mlp_multipliers=[0.5, 2.0])  # fmt: skip
# MiniMax: lightning attention in blocks of 4 tokens beside attention in a 4-token window
_MINIMAX = dict(_MOE, num_local_experts=4, block_size=4, sliding_window=4, layer_types=_HYBRID)
# LFM2's short convolutions beside attention
_CONV = dict(layer_types=["conv", "full_attention", "conv"])
# GLM-4-MoE's and dots.llm1's: DeepSeek-V3's routing and shared expert, with grouped-query attention
_GROUPED = dict(_MOE, n_routed_experts=4, first_k_dense_replace=1, n_group=1, topk_group=1, head_dim=8,
                n_shared_experts=1)  # fmt: skip


# a Qwen-VL language model with 3-D rotary positions (1, 1 and 2 of its 4 frequencies per axis), and a vision tower
_MROPE = {"rope_type": "default", "mrope_section": [1, 1, 2], "mrope_interleaved": True}
_VL_TEXT = dict(_DECODER, intermediate_size=40, head_dim=8, rope_scaling=_MROPE)
_VL_VISION = dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=32, patch_size=4,
                  spatial_merge_size=1, temporal_patch_size=1, embed_dim=16, num_position_embeddings=16)  # fmt: skip


def _qwen_vl(kind: str, **text_config):
    """A case of Qwen2-VL, Qwen2.5-VL or Qwen3-VL on text: its language model, read at the last kept token."""
    cls = getattr(T, f"{kind}ForConditionalGeneration")
    return (
        cls.__name__,
        lambda: cls(getattr(T, f"{kind}Config")(text_config=_VL_TEXT | text_config, vision_config=_VL_VISION)),
        _text,
        lambda m, x: _last(m.model(**x).last_hidden_state, x),
    )


def _gemma3():
    """A tiny Gemma 3 image-text config: Gemma 3's language model beside a SigLIP tower."""
    text = dict(_DECODER, head_dim=8, sliding_window=4)
    vision = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, image_size=16,
                  patch_size=4)  # fmt: skip
    return T.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4, image_token_index=30,
                          pad_token_id=0)  # fmt: skip


_BART = dict(vocab_size=31, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
             decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64)  # fmt: skip


def _bart_text():
    """Two texts as BART's tokenizer makes them: <s> ... </s>, the second padded (pad 1)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 30, (2, 7), generator=g)
    ids[:, 0], ids[0, 6], ids[1, 4], ids[1, 5:] = 0, 2, 2, 1
    return {"input_ids": ids, "attention_mask": (ids != 1).long()}


def _mbart_text():
    """Two texts as mBART's tokenizer makes them: ... </s> <lang id> (2, 25), the second padded (pad 1)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 24, (2, 7), generator=g)
    ids[0, 5:], ids[1, 3:5], ids[1, 5:] = torch.tensor([2, 25]), torch.tensor([2, 25]), 1
    return {"input_ids": ids, "attention_mask": (ids != 1).long()}


def _last_eos(hidden, x):
    """The state at each text's last </s>, which `BartForSequenceClassification` classifies."""
    last = (torch.arange(hidden.shape[1]) * x["input_ids"].eq(2)).argmax(-1)
    return hidden[torch.arange(hidden.shape[0]), last]


def _t5_text():
    """Two texts as T5's tokenizer makes them: ... </s> (1), the second padded (0)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 30, (2, 7), generator=g)
    ids[0, 6], ids[1, 4], ids[1, 5:] = 1, 1, 0
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def _classified(m, x, head: str = "classification_head"):
    """What `m`'s classification head (the module named `head`) is handed."""
    seen = []
    handle = getattr(m, head).register_forward_hook(lambda module, args, out: seen.append(args[0]))
    try:
        m(**x)
    finally:
        handle.remove()
    return seen[0]


def _masked_mean(hidden, x, mask: str = "attention_mask"):
    """The mean of the tokens (or, with `mask="pixel_attention_mask"`, SigLIP 2's patches) the mask keeps."""
    keep = x[mask].unsqueeze(-1).to(hidden.dtype)
    return (hidden * keep).sum(1) / keep.sum(1)


def _first_global(x):
    """Global attention on [CLS], as `LongformerForSequenceClassification` sets it."""
    mask = torch.zeros_like(x["input_ids"])
    mask[:, 0] = 1
    return mask


def _classifier_input(m, x):
    return _classified(m, x, "classifier")


# CvT at 32 px: three stages, the class token joining at the last (as in microsoft/cvt-13); transformers indexes
# stage i's drop-path rates by i, so it needs more than i layers
_CVT = dict(embed_dim=[8, 16, 24], num_heads=[1, 2, 2], depth=[1, 2, 3])
# (name, model factory, inputs, reference features)
TRANSFORMERS_CASES = [
    (
        "CvtForImageClassification",  # the classifier reads its layernorm over the class token
        lambda: T.CvtForImageClassification(T.CvtConfig(**_CVT)),
        _pixels,
        _classifier_input,
    ),
    (
        "Dinov2WithRegistersForImageClassification",  # [CLS] and the mean of the patches, registers left out
        lambda: T.Dinov2WithRegistersForImageClassification(T.Dinov2WithRegistersConfig(**_VIT)),
        _pixels,
        _classifier_input,
    ),
    (
        "IJepaForImageClassification",  # no class token: the classifier averages every token
        lambda: T.IJepaForImageClassification(T.IJepaConfig(**_VIT)),
        _pixels,
        _classifier_input,
    ),
    (
        "PvtForImageClassification",  # the class token joins at the last stage
        lambda: T.PvtForImageClassification(T.PvtConfig(**_PVT)),
        _pixels,
        _classifier_input,
    ),
    (
        "PvtV2ForImageClassification",
        lambda: T.PvtV2ForImageClassification(T.PvtV2Config(**_PVT)),
        _pixels,
        _classifier_input,
    ),
    (
        "PoolFormerForImageClassification",  # the classifier's group norm before the pool
        lambda: T.PoolFormerForImageClassification(T.PoolFormerConfig(**_POOLFORMER)),
        _pixels,
        _classifier_input,
    ),
    (
        "HGNetV2ForImageClassification",  # no base model: the stages hang off the classifier itself
        lambda: T.HGNetV2ForImageClassification(T.HGNetV2Config(**_HGNETV2)),
        _pixels,
        lambda m, x: _classified(m, x, "fc"),
    ),
    (
        "SwiftFormerForImageClassification",  # stages and downsampling embeddings in one list
        lambda: T.SwiftFormerForImageClassification(
            T.SwiftFormerConfig(depths=[1, 2], embed_dims=[8, 16], downsamples=[True, True])
        ),
        _pixels,
        lambda m, x: _classified(m, x, "head"),
    ),
    (
        "PoolFormerModel",
        lambda: T.PoolFormerModel(T.PoolFormerConfig(**_POOLFORMER)),
        _pixels,
        lambda m, x: m(**x).last_hidden_state.mean([-2, -1]),
    ),
    ("BertModel", lambda: T.BertModel(T.BertConfig(**_BERT)), _text, lambda m, x: m(**x).pooler_output),
    (
        "BertForSequenceClassification",
        lambda: T.BertForSequenceClassification(T.BertConfig(**_BERT)),
        _text,
        lambda m, x: m.bert(**x).pooler_output,
    ),
    (
        "RobertaModel",
        lambda: T.RobertaModel(T.RobertaConfig(**_BERT, pad_token_id=1)),
        _text,
        lambda m, x: m(**x).pooler_output,
    ),
    (
        "RobertaForSequenceClassification",
        lambda: T.RobertaForSequenceClassification(T.RobertaConfig(**_BERT, pad_token_id=1)),
        _text,
        lambda m, x: _cls(m.roberta(**x)),
    ),
    (
        "XLMRobertaModel",
        lambda: T.XLMRobertaModel(T.XLMRobertaConfig(**_BERT, pad_token_id=1)),
        _text,
        lambda m, x: m(**x).pooler_output,
    ),
    (
        "XLMRobertaForSequenceClassification",
        lambda: T.XLMRobertaForSequenceClassification(T.XLMRobertaConfig(**_BERT, pad_token_id=1)),
        _text,
        lambda m, x: _cls(m.roberta(**x)),
    ),
    (
        "Data2VecTextForSequenceClassification",
        lambda: T.Data2VecTextForSequenceClassification(T.Data2VecTextConfig(**_BERT, pad_token_id=1)),
        _text,
        lambda m, x: _cls(m.data2vec_text(**x)),
    ),
    ("ErnieModel", lambda: T.ErnieModel(T.ErnieConfig(**_BERT)), _text, lambda m, x: m(**x).pooler_output),
    (
        "MegatronBertModel",  # pre-LayerNorm: the encoder's final `ln` comes before the pooler
        lambda: T.MegatronBertModel(T.MegatronBertConfig(**_BERT)),
        _text,
        lambda m, x: m(**x).pooler_output,
    ),
    (
        "XLMRobertaXLForSequenceClassification",
        lambda: T.XLMRobertaXLForSequenceClassification(T.XLMRobertaXLConfig(**_BERT, pad_token_id=1)),
        _text,
        lambda m, x: _cls(m.roberta(**x)),
    ),
    (
        "LongformerForSequenceClassification",  # [CLS] global, the rest a window of 4: 7 tokens padded to 8
        lambda: T.LongformerForSequenceClassification(T.LongformerConfig(**_BERT, attention_window=4, pad_token_id=1)),
        _text,
        lambda m, x: _cls(m.longformer(**x, global_attention_mask=_first_global(x))),
    ),
    (
        "LongformerModel",
        lambda: T.LongformerModel(T.LongformerConfig(**_BERT, attention_window=[8, 4], pad_token_id=1)),
        _text,
        lambda m, x: m(**x, global_attention_mask=_first_global(x)).pooler_output,
    ),
    (
        "XLNetForSequenceClassification",  # sequence-first inside, read out at the last token
        lambda: T.XLNetForSequenceClassification(T.XLNetConfig(**_XLNET)),
        _text,
        lambda m, x: m.transformer(**x).last_hidden_state[:, -1],
    ),
    (
        "XLNetLMHeadModel-segments-mean",  # how xlnet-base-cased is saved; a sentence pair's segments
        lambda: T.XLNetLMHeadModel(T.XLNetConfig(**_XLNET, summary_type="mean")),
        lambda: {**_text(), "token_type_ids": torch.tensor([[0] * 3 + [1] * 4, [0] * 4 + [1] * 3])},
        lambda m, x: m.transformer(**x).last_hidden_state.mean(1),
    ),
    # decoders, read out at the last token the mask keeps; right padding
    _decoder("Llama"),
    _decoder("Mistral", sliding_window=4),  # every layer a 4-token window
    _decoder("Qwen2", use_sliding_window=True, sliding_window=4, max_window_layers=1),  # full, then sliding layers
    _decoder("Qwen3", head_dim=8),
    _decoder("Gemma", head_dim=8),  # scaled embeddings
    _decoder("Gemma2", head_dim=8, sliding_window=4),  # alternating sliding layers, soft-capping
    _decoder("Phi3", sliding_window=4),
    _decoder("Gemma3Text", head_dim=8),  # rotary embeddings by layer type (local and global)
    (
        "Gemma3ForSequenceClassification",  # the image-text model, read as its language model on text
        lambda: T.Gemma3ForSequenceClassification(_gemma3()),
        _text,
        lambda m, x: _last(m.model(**x).last_hidden_state, x),
    ),
    (
        "Gemma3ForConditionalGeneration",  # how google/gemma-3-4b-it and its fine-tunes are saved
        lambda: T.Gemma3ForConditionalGeneration(_gemma3()),
        _text,
        lambda m, x: _last(m.model(**x).last_hidden_state, x),
    ),
    _decoder("Phi"),
    *(
        _decoder(kind)
        for kind in ("Olmo", "Olmo2", "SmolLM3", "StableLm", "Starcoder2", "Exaone4", "SeedOss", "Arcee")
    ),
    *(_decoder(kind, head_dim=8) for kind in ("Glm", "Helium", "Glm4")),
    (
        "EuroBertForSequenceClassification-late",  # the default pooling: the token states' masked mean
        lambda: T.EuroBertForSequenceClassification(T.EuroBertConfig(**_DECODER)),
        _text,
        lambda m, x: _masked_mean(m.model(**x).last_hidden_state, x),
    ),
    (
        "EuroBertForSequenceClassification-bos",
        lambda: T.EuroBertForSequenceClassification(T.EuroBertConfig(**_DECODER, classifier_pooling="bos")),
        _text,
        lambda m, x: _cls(m.model(**x)),
    ),
    (
        "EuroBertForMaskedLM",  # how EuroBERT/EuroBERT-210m is saved
        lambda: T.EuroBertForMaskedLM(T.EuroBertConfig(**_DECODER)),
        _text,
        lambda m, x: _masked_mean(m.model(**x).last_hidden_state, x),
    ),
    (
        "BartForSequenceClassification",  # facebook/bart-large-mnli
        lambda: T.BartForSequenceClassification(T.BartConfig(**_BART)),
        _bart_text,
        lambda m, x: _last_eos(m.model(**x).last_hidden_state, x),
    ),
    (
        "MBartForSequenceClassification",  # pre-LayerNorm, each stack normed at its end; the decoder starts with the
        lambda: T.MBartForSequenceClassification(T.MBartConfig(**_BART, scale_embedding=True)),  # language id
        _mbart_text,
        _classified,
    ),
    (
        "PLBartForSequenceClassification",
        lambda: T.PLBartForSequenceClassification(T.PLBartConfig(**_BART)),
        _mbart_text,
        _classified,
    ),
    (
        "BartForConditionalGeneration",  # how facebook/bart-base is saved
        lambda: T.BartForConditionalGeneration(T.BartConfig(**_BART, scale_embedding=True)),
        _bart_text,
        lambda m, x: _last_eos(m.model(**x).last_hidden_state, x),
    ),
    _decoder("Olmo3", sliding_window=4),  # sliding and full layers by `layer_types`
    _decoder("Ministral3", sliding_window=4),  # Mistral 3's small models: every layer a window where one is set
    *(_decoder(kind) for kind in ("DiffLlama", "Nemotron")),
    _decoder("HunYuanDenseV1", head_dim=8),
    _decoder("Falcon"),  # falcon-7b: rotary, parallel attention and MLP, multi-query
    _decoder("Falcon", alibi=True),  # falcon-rw: ALiBi folded into the mask
    _decoder("Falcon", new_decoder_architecture=True),  # falcon-40b: grouped queries, two layer norms
    # IBM Granite: embeddings, residuals and attention scaled by the config's multipliers
    _decoder("Granite", "", embedding_multiplier=3.0, residual_multiplier=0.5, attention_multiplier=0.2),
    _decoder("GraniteSWA", "", embedding_multiplier=3.0, sliding_window=4),
    _decoder("Cohere", ""),  # Command R: parallel attention and MLP, interleaved rotary
    _decoder("Cohere2", "", sliding_window=4),  # sliding and full layers by `layer_types`
    _decoder("Apertus", ""),
    _decoder("Ernie4_5", "", head_dim=8),
    # mixtures of experts
    _decoder("Mixtral", num_local_experts=4, sliding_window=4, **_MOE),  # experts and gate/up stored apart
    _decoder("Phimoe", num_local_experts=4, sliding_window=4, **_MOE),
    _decoder("Qwen2Moe", num_experts=4, shared_expert_intermediate_size=20, **_MOE),  # beside a shared expert
    _decoder("Qwen3Moe", num_experts=4, head_dim=8, use_sliding_window=True, sliding_window=4, **_MOE),
    _decoder("JetMoe", num_local_experts=4, **_MOE),  # experts stored stacked: nothing to merge
    _decoder("HunYuanMoEV1", num_experts=4, moe_topk=2, head_dim=8, **_MOE),
    _decoder("GptOss", num_local_experts=4, head_dim=8, sliding_window=4, **_MOE),  # attention sinks; stacked
    _decoder("DeepseekV2", **_MLA),
    _decoder("DeepseekV3", **_MLA),
    *(_decoder(kind, "", num_experts=4, **_MOE) for kind in ("Olmoe", "FlexOlmo", "Cohere2Moe", "MiniMaxM2")),
    _decoder("GraniteMoe", "", num_local_experts=4, embedding_multiplier=3.0, **_MOE),
    _decoder("GraniteMoeShared", "", num_local_experts=4, shared_intermediate_size=20, **_MOE),
    _decoder("Ernie4_5_Moe", "", moe_num_experts=4, moe_k=2, head_dim=8, **_MOE),
    *(_decoder(kind, "", **_GROUPED) for kind in ("Glm4Moe", "Dots1")),
    _decoder("Glm4MoeLite", "", **_MLA),
    *(_decoder(kind, "", num_experts=4, head_dim=8, sliding_window=4, **_MOE) for kind in ("ExaoneMoe", "Afmoe")),
    *(_decoder(kind, "", num_experts=4, head_dim=8, **_MOE) for kind in ("SolarOpen", "Mellum")),
    # linear, sparse and chunked attention
    _decoder("Qwen3Next", num_experts=4, **_LINEAR, **_MOE),
    _left_padded(_decoder("Qwen3Next", num_experts=4, **_LINEAR, **_MOE)),
    _decoder("Qwen3_5Text", **_LINEAR),
    _decoder("Qwen3_5MoeText", "", num_experts=4, **_LINEAR, **_MOE),
    _decoder("OlmoHybrid", "", **_LINEAR),
    *(_decoder(kind, "", **_DSA) for kind in ("DeepseekV32", "GlmMoeDsa")),
    _decoder("Llama4Text", "", **_LLAMA4),
    *(_qwen_vl(kind) for kind in ("Qwen2VL", "Qwen2_5_VL", "Qwen3VL")),  # image-text models, by their language model
    _left_padded(_qwen_vl("Qwen2_5_VL")),  # its positions count kept tokens: rotary, so shifting them changes nothing
    # Mamba and short-convolution layers beside attention, on left-padded texts
    *(
        _left_padded(_decoder(kind, "", **config))
        for kind, config in (("GraniteMoeHybrid", _MAMBA), ("NemotronH", _NEMOTRON_H))
    ),
    _left_padded(_decoder("Jamba", num_experts=4, attn_layer_period=2, attn_layer_offset=1, **_MOE)),
    _left_padded(_decoder("FalconH1", "", **_FALCON_H1)),
    _left_padded(_decoder("MiniMax", **_MINIMAX)),
    _left_padded(_decoder("Lfm2", "", **_CONV)),
    _left_padded(_decoder("Lfm2Moe", "", num_experts=4, num_dense_layers=1, **_CONV, **_MOE)),
    (
        "OPTForSequenceClassification-350m-like",  # positions count kept tokens; project_in/out; post-LayerNorm
        lambda: T.OPTForSequenceClassification(
            T.OPTConfig(**_OPT, word_embed_proj_dim=16, do_layer_norm_before=False)
        ),
        _text,
        lambda m, x: _last(m.model(**x).last_hidden_state, x),
    ),
    (
        "OPTModel-left-padding",
        lambda: T.OPTModel(T.OPTConfig(**_OPT)),
        lambda: {k: v.flip(1) for k, v in _text().items()},
        lambda m, x: _last(m(**x).last_hidden_state, x),
    ),
    (
        "GPTNeoXForSequenceClassification",  # Pythia
        lambda: T.GPTNeoXForSequenceClassification(T.GPTNeoXConfig(**_DECODER)),
        _text,
        lambda m, x: _last(m.gpt_neox(**x).last_hidden_state, x),
    ),
    (
        "GPT2ForSequenceClassification",
        lambda: T.GPT2ForSequenceClassification(
            T.GPT2Config(vocab_size=31, n_embd=32, n_layer=2, n_head=2, n_positions=64, pad_token_id=0)
        ),  # fmt: skip
        _text,
        lambda m, x: _last(m.transformer(**x).last_hidden_state, x),
    ),
    (
        "GPT2LMHeadModel-left-padding",  # how gpt2 and distilgpt2 are saved
        lambda: T.GPT2LMHeadModel(T.GPT2Config(vocab_size=31, n_embd=32, n_layer=2, n_head=2, n_positions=64)),
        lambda: {k: v.flip(1) for k, v in _text().items()},
        lambda m, x: _last(m.transformer(**x).last_hidden_state, x),
    ),
    (
        "LlamaModel-left-padding",  # a bare base model, and the padding decoder tokenizers often use
        lambda: T.LlamaModel(T.LlamaConfig(**_DECODER)),
        lambda: {k: v.flip(1) for k, v in _text().items()},
        lambda m, x: _last(m(**x).last_hidden_state, x),
    ),
    (
        "T5EncoderModel",  # how sentence-t5 and GTR are saved; the relative bias every block adds is shared
        lambda: T.T5EncoderModel(T.T5Config(**_T5)),
        _text,
        lambda m, x: _masked_mean(m(**x).last_hidden_state, x),
    ),
    (
        "T5ForConditionalGeneration",  # how t5-base and flan-t5 are saved: the decoder is head, never fetched
        lambda: T.T5ForConditionalGeneration(T.T5Config(**_T5)),
        _text,
        lambda m, x: _masked_mean(m.encoder(**x).last_hidden_state, x),
    ),
    (
        "T5ForSequenceClassification",  # the decoder's final norm at the last </s>, as its head reads
        lambda: T.T5ForSequenceClassification(T.T5Config(**_T5, num_decoder_layers=2)),
        _t5_text,
        _classified,
    ),
    (
        "MT5ForSequenceClassification-gated-gelu",
        lambda: T.MT5ForSequenceClassification(T.MT5Config(**_T5, feed_forward_proj="gated-gelu")),
        _t5_text,
        _classified,
    ),
    (
        "UMT5EncoderModel",  # google/umt5-*: every block holds its own relative bias
        lambda: T.UMT5EncoderModel(T.UMT5Config(**_T5, feed_forward_proj="gated-gelu")),
        _text,
        lambda m, x: _masked_mean(m(**x).last_hidden_state, x),
    ),
    (
        "UMT5ForSequenceClassification",
        lambda: T.UMT5ForSequenceClassification(T.UMT5Config(**_T5, feed_forward_proj="gated-gelu")),
        _t5_text,
        _classified,
    ),
    (
        "MT5EncoderModel-gated-gelu",
        lambda: T.MT5EncoderModel(T.MT5Config(**_T5, feed_forward_proj="gated-gelu")),
        _text,
        lambda m, x: _masked_mean(m(**x).last_hidden_state, x),
    ),
    (
        "RemBertForSequenceClassification",  # narrow embeddings, projected in the encoder
        lambda: T.RemBertForSequenceClassification(
            T.RemBertConfig(**_BERT, input_embedding_size=16, output_embedding_size=16)
        ),
        _text,
        lambda m, x: m.rembert(**x).pooler_output,
    ),
    (
        "MobileBertForSequenceClassification",  # bottleneck layers, stacked FFNs, no-norm layers
        lambda: T.MobileBertForSequenceClassification(T.MobileBertConfig(**_BERT, embedding_size=16)),
        _text,
        lambda m, x: m.mobilebert(**x).pooler_output,
    ),
    (
        "MobileBertModel-no-activation",  # a pooler without weights: [CLS]
        lambda: T.MobileBertModel(T.MobileBertConfig(**_BERT, embedding_size=16, classifier_activation=False)),
        _text,
        lambda m, x: m(**x).pooler_output,
    ),
    (
        "RoFormerForSequenceClassification",  # the sinusoidal table every layer reads is shared
        lambda: T.RoFormerForSequenceClassification(T.RoFormerConfig(**_BERT, embedding_size=16)),
        _text,
        lambda m, x: _cls(m.roformer(**x)),
    ),
    (
        "EsmModel",  # rotary positions, token dropout, the final norm, the pooler
        lambda: T.EsmModel(
            T.EsmConfig(**_BERT, pad_token_id=1, mask_token_id=2, token_dropout=True, position_embedding_type="rotary")
        ),  # fmt: skip
        _text,
        lambda m, x: m(**x).pooler_output,
    ),
    (
        "EsmForSequenceClassification",
        lambda: T.EsmForSequenceClassification(T.EsmConfig(**_BERT, pad_token_id=1, mask_token_id=2)),
        _text,
        lambda m, x: _cls(m.esm(**x)),
    ),
    (
        "ElectraModel",
        lambda: T.ElectraModel(T.ElectraConfig(**_BERT, embedding_size=16)),
        _text,
        lambda m, x: _cls(m(**x)),
    ),
    (
        "ElectraForSequenceClassification",
        lambda: T.ElectraForSequenceClassification(T.ElectraConfig(**_BERT, embedding_size=16)),
        _text,
        lambda m, x: _cls(m.electra(**x)),
    ),
    (
        "ElectraForSequenceClassification-no-projection",
        lambda: T.ElectraForSequenceClassification(T.ElectraConfig(**_BERT, embedding_size=32)),
        _text,
        lambda m, x: _cls(m.electra(**x)),
    ),
    (
        "BigBirdForSequenceClassification",  # 7 tokens: too few for block-sparse attention, so full attention
        lambda: T.BigBirdForSequenceClassification(T.BigBirdConfig(**_BERT)),
        _text,
        lambda m, x: _cls(m.bert(**x)),
    ),
    (
        "BigBirdForSequenceClassification-block-sparse",  # 17 tokens > (5 + 2) * 2: padded to 18, block-sparse
        lambda: T.BigBirdForSequenceClassification(T.BigBirdConfig(**_BERT, block_size=2, num_random_blocks=1)),
        lambda: _long_text(17),
        lambda m, x: _cls(m.bert(**x)),
    ),
    (
        "AlbertModel",  # 4 layers from 2 groups of 2 inner layers each
        lambda: T.AlbertModel(T.AlbertConfig(**_ALBERT)),
        _text,
        lambda m, x: m(**x).pooler_output,
    ),
    (
        "AlbertForSequenceClassification",
        lambda: T.AlbertForSequenceClassification(T.AlbertConfig(**_ALBERT)),
        _text,
        lambda m, x: m.albert(**x).pooler_output,
    ),
    ("DebertaV2Model", lambda: T.DebertaV2Model(T.DebertaV2Config(**_DEBERTA_V3)), _text, lambda m, x: _cls(m(**x))),
    (
        "DebertaV2ForSequenceClassification",
        lambda: T.DebertaV2ForSequenceClassification(T.DebertaV2Config(**_DEBERTA_V3)),
        _text,
        lambda m, x: _cls(m.deberta(**x)),
    ),
    (
        "DebertaV2ForSequenceClassification-conv",  # deberta-v2-xlarge's convolution after the first layer
        lambda: T.DebertaV2ForSequenceClassification(
            T.DebertaV2Config(**_DEBERTA_V3, conv_kernel_size=3, conv_act="gelu")
        ),
        _text,
        lambda m, x: _cls(m.deberta(**x)),
    ),
    (
        "DebertaForSequenceClassification",
        lambda: T.DebertaForSequenceClassification(
            T.DebertaConfig(**_BERT, relative_attention=True, pos_att_type=["p2c", "c2p"])
        ),
        _text,
        lambda m, x: _cls(m.deberta(**x)),
    ),
    ("MPNetModel", lambda: T.MPNetModel(T.MPNetConfig(**_BERT)), _text, lambda m, x: m(**x).pooler_output),
    (
        "MPNetForSequenceClassification",
        lambda: T.MPNetForSequenceClassification(T.MPNetConfig(**_BERT)),
        _text,
        lambda m, x: _cls(m.mpnet(**x)),
    ),
    (
        "ModernBertModel",  # 3 layers: global, sliding-window, global attention
        lambda: T.ModernBertModel(T.ModernBertConfig(**_MODERNBERT)),
        _text,
        lambda m, x: _cls(m(**x)),
    ),
    (
        "ModernBertForMaskedLM",  # how answerdotai/ModernBERT-base is saved: its decoder tied to the embeddings
        lambda: T.ModernBertForMaskedLM(T.ModernBertConfig(**_MODERNBERT)),
        _text,
        lambda m, x: _cls(m.model(**x)),
    ),
    (
        "ModernBertForSequenceClassification-mean",
        lambda: T.ModernBertForSequenceClassification(T.ModernBertConfig(**_MODERNBERT, classifier_pooling="mean")),
        _text,
        lambda m, x: _masked_mean(m.model(**x).last_hidden_state, x),
    ),
    (
        "NomicBertModel",  # how nomic-ai/nomic-embed-text-v1.5 is saved: no pooler, read out as [CLS]
        lambda: T.NomicBertModel(T.NomicBertConfig(**_BERT)),
        _text,
        lambda m, x: _cls(m(**x)),
    ),
    (
        "NomicBertForSequenceClassification",
        lambda: T.NomicBertForSequenceClassification(T.NomicBertConfig(**_BERT)),
        _text,
        lambda m, x: m.nomic_bert(**x).pooler_output,
    ),
    ("GteModel", lambda: T.GteModel(T.GteConfig(**_BERT)), _text, lambda m, x: _cls(m(**x))),
    (
        "JinaEmbeddingsV3Model",
        lambda: T.JinaEmbeddingsV3Model(T.JinaEmbeddingsV3Config(**_BERT)),
        _text,
        lambda m, x: m(**x).pooler_output,
    ),
    (
        "JinaEmbeddingsV3ForSequenceClassification",
        lambda: T.JinaEmbeddingsV3ForSequenceClassification(T.JinaEmbeddingsV3Config(**_BERT)),
        _text,
        lambda m, x: _cls(m.roberta(**x)),
    ),
    (
        "GteForSequenceClassification",
        lambda: T.GteForSequenceClassification(T.GteConfig(**_BERT)),
        _text,
        lambda m, x: m.gte(**x).pooler_output,
    ),
    (
        "DistilBertModel",
        lambda: T.DistilBertModel(T.DistilBertConfig(vocab_size=31, dim=32, n_layers=2, n_heads=2, hidden_dim=37)),
        _text,
        lambda m, x: _cls(m(**x)),
    ),
    (
        "DistilBertForSequenceClassification",
        lambda: T.DistilBertForSequenceClassification(
            T.DistilBertConfig(vocab_size=31, dim=32, n_layers=2, n_heads=2, hidden_dim=37)
        ),
        _text,
        lambda m, x: _cls(m.distilbert(**x)),
    ),
    (
        "CLIPForImageClassification",
        lambda: T.CLIPForImageClassification(T.CLIPConfig(vision_config=_VIT, text_config=_TOWER_TEXT)),
        _pixels,
        lambda m, x: m.vision_model(**x).last_hidden_state[:, 1:].mean(1),
    ),
    (
        "CLIPModel",  # how openai/clip-vit-* is saved: read out as its classification fine-tunes read out
        lambda: T.CLIPModel(T.CLIPConfig(vision_config=_VIT, text_config=_TOWER_TEXT)),
        _pixels,
        lambda m, x: m.vision_model(**x).last_hidden_state[:, 1:].mean(1),
    ),
    (
        "CLIPVisionModel",
        lambda: T.CLIPVisionModel(T.CLIPVisionConfig(**_VIT)),
        _pixels,
        lambda m, x: m(**x).last_hidden_state[:, 1:].mean(1),
    ),
    (
        "SiglipForImageClassification",
        lambda: T.SiglipForImageClassification(T.SiglipConfig(vision_config=_VIT, text_config=_TOWER_TEXT)),
        _pixels,
        lambda m, x: m.vision_model(**x).last_hidden_state.mean(1),
    ),
    (
        "SiglipModel",
        lambda: T.SiglipModel(T.SiglipConfig(vision_config=_VIT, text_config=_TOWER_TEXT)),
        _pixels,
        lambda m, x: m.vision_model(**x).last_hidden_state.mean(1),
    ),
    (
        "Siglip2ForImageClassification",  # the many classifiers fine-tuned from google/siglip2-*
        lambda: T.Siglip2ForImageClassification(
            T.Siglip2Config(vision_config={**_VIT, "num_patches": 16}, text_config=_TOWER_TEXT)
        ),
        _naflex,
        lambda m, x: _masked_mean(m.vision_model(**x).last_hidden_state, x, "pixel_attention_mask"),
    ),
    (
        "Siglip2Model",
        lambda: T.Siglip2Model(T.Siglip2Config(vision_config={**_VIT, "num_patches": 16}, text_config=_TOWER_TEXT)),
        _naflex,
        lambda m, x: _masked_mean(m.vision_model(**x).last_hidden_state, x, "pixel_attention_mask"),
    ),
    (
        "MetaClip2ForImageClassification",
        lambda: T.MetaClip2ForImageClassification(T.MetaClip2Config(vision_config=_VIT, text_config=_TOWER_TEXT)),
        _pixels,
        lambda m, x: m.vision_model(**x).last_hidden_state[:, 1:].mean(1),
    ),
    (
        "MetaClip2Model",
        lambda: T.MetaClip2Model(T.MetaClip2Config(vision_config=_VIT, text_config=_TOWER_TEXT)),
        _pixels,
        lambda m, x: m.vision_model(**x).last_hidden_state[:, 1:].mean(1),
    ),
    (
        "DINOv3ViTModel",  # how facebook/dinov3-vit* is saved; rotary positions of a 4 x 6 patch grid
        lambda: T.DINOv3ViTModel(T.DINOv3ViTConfig(**_VIT, num_register_tokens=2)),
        _wide_pixels,
        lambda m, x: m(**x).pooler_output,
    ),
    (
        "DINOv3ViTModel-gated",  # the larger ones' gated MLP
        lambda: T.DINOv3ViTModel(T.DINOv3ViTConfig(**_VIT, use_gated_mlp=True, hidden_act="silu")),
        _pixels,
        lambda m, x: m(**x).pooler_output,
    ),
    (
        "DINOv3ConvNextModel",  # how facebook/dinov3-convnext-* is saved
        lambda: T.DINOv3ConvNextModel(T.DINOv3ConvNextConfig(hidden_sizes=[8, 16, 16, 16], depths=[1, 2, 1, 1])),
        _pixels,
        lambda m, x: m(**x).pooler_output,
    ),
    ("ViTModel", lambda: T.ViTModel(T.ViTConfig(**_VIT)), _pixels, lambda m, x: m(**x).pooler_output),
    (
        "ViTForImageClassification",
        lambda: T.ViTForImageClassification(T.ViTConfig(**_VIT)),
        _pixels,
        lambda m, x: _cls(m.vit(**x)),
    ),
    ("DeiTModel", lambda: T.DeiTModel(T.DeiTConfig(**_VIT)), _pixels, lambda m, x: m(**x).pooler_output),
    (
        "DeiTForImageClassification",
        lambda: T.DeiTForImageClassification(T.DeiTConfig(**_VIT)),
        _pixels,
        lambda m, x: _cls(m.deit(**x)),
    ),
    (
        "DeiTForImageClassificationWithTeacher",
        lambda: T.DeiTForImageClassificationWithTeacher(T.DeiTConfig(**_VIT)),
        _pixels,
        lambda m, x: (lambda h: (h[:, 0] + h[:, 1]) / 2)(m.deit(**x).last_hidden_state),
    ),
    ("Dinov2Model", lambda: T.Dinov2Model(T.Dinov2Config(**_VIT)), _pixels, lambda m, x: m(**x).pooler_output),
    (
        "Dinov2ForImageClassification",
        lambda: T.Dinov2ForImageClassification(T.Dinov2Config(**_VIT)),
        _pixels,
        lambda m, x: (lambda h: torch.cat([h[:, 0], h[:, 1:].mean(1)], 1))(m.dinov2(**x).last_hidden_state),
    ),
    (
        "ResNetModel",
        lambda: T.ResNetModel(T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 2])),
        _pixels,
        lambda m, x: m(**x).pooler_output.flatten(1),
    ),
    (
        "ResNetForImageClassification",
        lambda: T.ResNetForImageClassification(T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 2])),
        _pixels,
        lambda m, x: m.resnet(**x).pooler_output.flatten(1),
    ),
    (
        "MobileViTForImageClassification",
        lambda: T.MobileViTForImageClassification(T.MobileViTConfig(image_size=32)),
        _pixels,
        lambda m, x: m.mobilevit(**x).pooler_output,
    ),
    (
        "MobileViTV2ForImageClassification",
        lambda: T.MobileViTV2ForImageClassification(T.MobileViTV2Config(image_size=64, width_multiplier=0.5)),
        lambda: _pixels(64),  # 32 px leaves its last MobileViT block a 1x1 map, too small for its 2x2 patches
        lambda m, x: m.mobilevitv2(**x).pooler_output,
    ),
    (
        "ConvNextModel",
        lambda: T.ConvNextModel(T.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 2], num_stages=2)),
        _pixels,
        lambda m, x: m(**x).pooler_output,
    ),
    (
        "ConvNextForImageClassification",
        lambda: T.ConvNextForImageClassification(T.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 2], num_stages=2)),
        _pixels,
        lambda m, x: m.convnext(**x).pooler_output,
    ),
    (
        "ConvNextV2ForImageClassification",
        lambda: T.ConvNextV2ForImageClassification(
            T.ConvNextV2Config(hidden_sizes=[8, 16], depths=[1, 2], num_stages=2)
        ),
        _pixels,
        lambda m, x: m.convnextv2(**x).pooler_output,
    ),
    ("SwinModel", lambda: T.SwinModel(T.SwinConfig(**_SWIN)), _pixels, lambda m, x: m(**x).pooler_output),
    ("Swinv2Model", lambda: T.Swinv2Model(T.Swinv2Config(**_SWIN)), _pixels, lambda m, x: m(**x).pooler_output),
    (
        "Swinv2ForImageClassification",
        lambda: T.Swinv2ForImageClassification(T.Swinv2Config(**_SWIN)),
        _pixels,
        lambda m, x: m.swinv2(**x).pooler_output,
    ),
    (
        "FocalNetForImageClassification",
        lambda: T.FocalNetForImageClassification(
            T.FocalNetConfig(image_size=32, embed_dim=8, depths=[1, 2], hidden_sizes=[8, 16])
        ),  # fmt: skip
        _pixels,
        lambda m, x: m.focalnet(**x).pooler_output,
    ),
    (
        "FocalNetModel-conv-embed-post-norm",  # the options of focalnet-large and xlarge
        lambda: T.FocalNetModel(
            T.FocalNetConfig(
                image_size=32,
                embed_dim=8,
                depths=[1, 2],
                hidden_sizes=[8, 16],
                use_conv_embed=True,
                use_layerscale=True,
                use_post_layernorm=True,
                normalize_modulator=True,
                focal_levels=[3, 3],
            )
        ),  # fmt: skip
        _pixels,
        lambda m, x: m(**x).pooler_output,
    ),
    (
        "SwinForImageClassification",
        lambda: T.SwinForImageClassification(T.SwinConfig(**_SWIN)),
        _pixels,
        lambda m, x: m.swin(**x).pooler_output,
    ),
]

# CrossViT's two branches, both at 48 px (12 and 16 px patches), and one multi-scale block
_CROSSVIT = dict(img_size=48, img_scale=(1.0, 1.0), embed_dim=[16, 32], depth=[[1, 1, 0]], num_heads=[1, 1],
                 mlp_ratio=[1, 1, 1])  # fmt: skip
# Swin V2 at 64 px (discovery runs the model at its pretrained_cfg's input size)
_SWIN_V2 = dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2), img_size=64, window_size=4,
                pretrained_cfg_overlay=dict(input_size=(3, 64, 64)))  # fmt: skip
TIMM_CASES = [
    ("test_resnet", {}),
    ("resnext50_32x4d", {"layers": (1, 1, 1, 1)}),
    ("test_efficientnet", {}),
    ("tf_efficientnet_lite0", {}),
    ("test_vit", {}),
    ("deit_tiny_patch16_224", {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 32}),
    ("test_convnext", {}),
    (  # its first stage's second block shifts its windows, with a mask computed as it builds
        "swin_tiny_patch4_window7_224",
        {"embed_dim": 16, "depths": (2, 1, 2, 1), "num_heads": (1, 1, 2, 2), "img_size": 56, "window_size": 7},
    ),
    ("eva02_tiny_patch14_224", {"depth": 2, "img_size": 56}),
    ("vit_small_patch16_rope_mixed_224", {"depth": 2, "embed_dim": 64, "num_heads": 2, "img_size": 64}),
    ("vit_small_patch16_dinov3", {"depth": 2, "embed_dim": 64, "num_heads": 2, "img_size": 64}),
    ("cait_xxs24_224", {"depth": 2, "img_size": 32, "patch_size": 8}),
    ("xcit_nano_12_p16_224", {"depth": 2, "img_size": 48}),
    ("xcit_nano_12_p16_224", {"depth": 2, "img_size": 48, "global_pool": "avg", "cls_attn_layers": 0}),
    (
        "twins_pcpvt_small",
        {"depths": (1, 1, 2, 1), "embed_dims": (8, 16, 16, 32), "num_heads": (1, 1, 2, 2), "img_size": 64},
    ),
    (
        "twins_svt_small",
        {
            "depths": (1, 1, 2, 1),
            "embed_dims": (8, 16, 16, 32),
            "num_heads": (1, 1, 2, 2),
            "img_size": 64,
            "wss": (2, 2, 2, 2),
        },
    ),
    ("hrnet_w18_small", {}),  # branches of four resolutions between blocks
    ("mvitv2_tiny", {"img_size": 64}),  # blocks that pool their queries shrink the patch grid
    ("mvitv2_small_cls", {"img_size": 64}),  # a class token beside the patches, read out
    ("nest_tiny", {"img_size": 64}),  # levels of blocks of tokens, aggregated into the next level's
    # two branches of token sequences, of two patch sizes, passed between blocks as one state
    ("crossvit_tiny_240", _CROSSVIT),
    ("volo_d1_224", {"img_size": 64}),  # outlookers on (B, H, W, C) maps, then class attention; an aux head
    # gated positional attention on the patches, then the class token joins
    ("convit_tiny", {"depth": 3, "local_up_to_layer": 2, "img_size": 64}),
    # pooling stages: the map and the class tokens pooled apart, then one sequence; two class tokens if distilled
    ("pit_ti_224", {"img_size": 64}),
    ("pit_ti_distilled_224", {"img_size": 64}),
    # constructors that compute buffers on their parameters' device or run their backbone: see the meta test below
    ("vit_tiny_r_s16_p8_224", {"depth": 2, "img_size": 64}),  # a ResNet stem before the ViT blocks
    ("vitamin_small_224", {"img_size": 64}),
    # discovered: a block list read out through forward_head(pre_logits=True)
    ("test_byobnet", {}),
    ("test_mambaout", {}),
    # discovered: forward_features as the modules it calls (no block list)
    ("regnetx_002", {}),
    ("swinv2_tiny_window8_256", _SWIN_V2),
    ("swinv2_cr_tiny_ns_224", _SWIN_V2),
    ("mobilenetv3_small_050", {}),
    ("test_nfnet", {}),
]


def _roundtrip(state):
    """Serialise a cached state through safetensors, as the engine's disk tier does: tensors only."""
    blob = save({str(i): t.contiguous() for i, t in enumerate(state)})
    loaded = load(blob)
    return tuple(loaded[str(i)] for i in range(len(loaded)))


def _check_equivalence(model, split, state, reference):
    with torch.no_grad():
        full = split.run(state)[0]
        assert torch.allclose(full, reference, atol=ATOL), (full - reference).abs().max()
        # stop after any block k, cache the state, resume: same features
        for k in range(len(split.blocks)):
            cached = _roundtrip(split.run(state, 0, k + 1))
            resumed = split.run(cached, k + 1)[0]
            assert torch.allclose(resumed, reference, atol=ATOL), k


@pytest.mark.parametrize(
    "name, factory, inputs, reference", TRANSFORMERS_CASES, ids=[c[0] for c in TRANSFORMERS_CASES]
)
def test_transformers_equivalence_resume_and_coverage(name, factory, inputs, reference, tmp_path):
    torch.manual_seed(0)
    model = factory().eval()
    x = inputs()
    model.save_pretrained(tmp_path)
    keys = LocalBlockSource(tmp_path).keys()
    split = split_model(model, checkpoint_keys=keys)
    check_coverage(split, keys)
    with torch.no_grad():
        ref = reference(model, x)
    _check_equivalence(model, split, split.adapter.initial_state(x), ref)
    if re.search("For[A-Z]", name):  # a head class (not PoolFormer's own name)
        assert split.head_keys, "a classification checkpoint has head keys, listed so they are never fetched"


@pytest.mark.parametrize("arch, kwargs", TIMM_CASES, ids=[c[0] for c in TIMM_CASES])
def test_timm_equivalence_resume_and_coverage(arch, kwargs):
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=7, **kwargs).eval()
    split = split_model(model)
    check_coverage(split, model.state_dict().keys())
    size = kwargs.get("img_size", model.pretrained_cfg["input_size"][-1])
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.forward_head(model.forward_features(x), pre_logits=True)
    _check_equivalence(model, split, (x,), ref)
    # VOLO's aux head adds to its logits from every token; distilled models' second head reads the distillation token
    heads = ("fc.", "classifier.", "head.", "aux_head.", "head_dist.")
    assert split.head_keys and all(k.startswith(heads) for k in split.head_keys)


@pytest.mark.parametrize("arch, kwargs", TIMM_CASES, ids=[c[0] for c in TIMM_CASES])
def test_timm_skeleton_built_from_the_saved_config_splits_as_the_model_with_its_computed_buffers(
    arch, kwargs, tmp_path
):
    """A search builds each candidate's skeleton from its config.json with meta parameters. The buffers no
    checkpoint holds are the ones the model computes, and the skeleton splits into the model's blocks. Swin, Swin V2,
    the hybrid ViTs, ViTamin and EVA's mixed rotary ViTs compute such buffers on their parameters' device, or run
    their backbone while they build: on meta parameters Swin's masks were left on meta, and the others failed."""
    from timm.models._hub import save_config_for_hf

    model = timm.create_model(arch, pretrained=False, num_classes=7, **kwargs).eval()
    save_config_for_hf(model, tmp_path / "config.json", model_config={"num_classes": 7})
    skeleton = build_model(tmp_path, device="meta", shared=False)
    assert all(p.is_meta for p in skeleton.parameters())
    buffers = dict(model.named_buffers())
    computed = [
        f"{path}.{key}".lstrip(".")
        for path, m in model.named_modules()
        for key in m._non_persistent_buffers_set
        if m._buffers.get(key) is not None
    ]
    for key in computed:
        assert torch.equal(skeleton.get_buffer(key), buffers[key]), key
    split, reference = split_model(skeleton), split_model(model)
    assert split.family == reference.family
    assert [b.keys for b in split.blocks] == [b.keys for b in reference.blocks]


class _ComputedOnItsWeights(torch.nn.Module):
    """A timm model that computes a buffer on its weight's device as it builds, with no
    `init_non_persistent_buffers` to compute it again."""

    def __init__(self, num_classes: int = 7, **kwargs):
        super().__init__()
        self.num_classes, self.head = num_classes, torch.nn.Linear(4, num_classes)
        self.register_buffer("steps", torch.empty(4), persistent=False)
        self.steps.copy_(torch.arange(4.0, device=self.head.weight.device))


def _computed_on_its_weights(pretrained=False, pretrained_cfg=None, **kwargs):
    model = _ComputedOnItsWeights(**kwargs)
    model.pretrained_cfg = {"architecture": "test_computed_on_its_weights", "input_size": (3, 8, 8),
                            "classifier": "head"} | dict(pretrained_cfg or {})  # fmt: skip
    return model


def test_a_timm_model_whose_computed_buffers_cannot_be_rebuilt_without_weights_is_refused_saying_so(tmp_path):
    if not timm.is_model("test_computed_on_its_weights"):
        _computed_on_its_weights.__name__ = "test_computed_on_its_weights"
        timm.models.register_model(_computed_on_its_weights)
    config = {"architecture": "test_computed_on_its_weights", "num_classes": 7,
              "pretrained_cfg": {"input_size": [3, 8, 8], "classifier": "head"}}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitectureError, match=r"_ComputedOnItsWeights cannot be built.*\['steps'\]"):
        build_model(tmp_path, device="meta")


def test_an_hrnet_without_its_classification_head_is_refused_saying_so():
    hrnet = timm.create_model("hrnet_w18_small", pretrained=False, head="incre", num_classes=0).eval()
    with pytest.raises(UnsupportedArchitectureError, match="head='incre'.*list of branches.*classification head"):
        split_model(hrnet)


def test_a_timm_model_with_dynamic_img_size_takes_each_inputs_grid():
    """timm's DINOv3 is built with `dynamic_img_size`: its position and rotary embeddings follow each input's patch
    grid, which the state carries from the stem through every block, so any input size (here 48 x 80, not the
    64 x 64 it was built for) reads out as the model does, also resumed from every block's cached state."""
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_dinov3", pretrained=False, num_classes=7, depth=2, embed_dim=64,
                              num_heads=2, img_size=64).eval()  # fmt: skip
    assert model.dynamic_img_size
    split = split_model(model)
    x = torch.randn(2, 3, 48, 80, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.forward_head(model.forward_features(x), pre_logits=True)
    _check_equivalence(model, split, (x,), ref)


@pytest.mark.parametrize("library", ["transformers", "timm"])
def test_a_rotary_table_that_no_block_owns_follows_the_blocks_to_their_device(library):
    """DINOv3's `rope_embeddings` (and timm EVA's `rope`) hold only non-persistent buffers, which every layer's step
    reads and no block loads: binding a block's tensors on a device moves them there too, or a CUDA search would
    mix devices in the first layer. (The meta device stands in for CUDA here.)"""
    from alsatian_hf.adapters import bind_block

    if library == "timm":
        model = timm.create_model("eva02_tiny_patch14_224", num_classes=7, depth=2, img_size=56).eval()
        rope = model.rope
    else:
        model = T.DINOv3ViTModel(T.DINOv3ViTConfig(**_VIT)).eval()
        rope = model.rope_embeddings
    split = split_model(model)
    state = model.state_dict()
    block = split.blocks[1]
    bind_block(split, block, {k: torch.empty_like(state[block.model_key(k)], device="meta") for k in block.keys})
    assert {b.device.type for b in rope.buffers()} == {"meta"}


def test_vit_checkpoint_keys_are_in_checkpoint_space(tmp_path):
    model = T.ViTForImageClassification(T.ViTConfig(**_VIT)).eval()
    model.save_pretrained(tmp_path)
    split = split_model(model, checkpoint_keys=LocalBlockSource(tmp_path).keys())
    layer = split.blocks[1]
    assert "vit.encoder.layer.0.attention.attention.query.weight" in layer.keys
    assert (
        layer.model_key("vit.encoder.layer.0.attention.attention.query.weight")
        == "vit.layers.0.attention.q_proj.weight"
    )


def _loaded_skeleton(folder):
    """The saved model at `folder` split on its meta skeleton by its checkpoint keys, covering them, with every
    block's tensors loaded from the checkpoint: (split, source)."""
    source = LocalBlockSource(folder)
    split = split_model(build_model(folder, device="meta", shared=False), checkpoint_keys=source.keys())
    check_coverage(split, source.keys())
    for i, block in enumerate(split.blocks):
        load_block(split, block, source.load_tensors(split, i))
    return split, source


def test_sharded_checkpoint_maps_and_loads_into_meta_skeleton(tmp_path):
    torch.manual_seed(0)
    model = T.ViTForImageClassification(T.ViTConfig(**_VIT)).eval()
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    split, source = _loaded_skeleton(tmp_path)
    assert len(set(source.weight_map.values())) >= 3
    x = _pixels()
    with torch.no_grad():
        assert torch.allclose(split.run(split.adapter.initial_state(x))[0], _cls(model.vit(**x)), atol=ATOL)


def test_a_mixture_of_experts_merges_its_saved_experts_as_it_loads_into_a_meta_skeleton(tmp_path):
    """Mixtral saves each expert's w1, w2 and w3 apart; transformers stacks them into `gate_up_proj` and
    `down_proj` at load, and so does each layer's block, with transformers' own converter."""
    from alsatian_hf.adapters import unload_block
    from alsatian_hf.store.identity import tensor_content_hash

    torch.manual_seed(0)
    model = T.MixtralForSequenceClassification(T.MixtralConfig(**(_DECODER | _MOE), num_local_experts=4)).eval()
    model.save_pretrained(tmp_path)
    split, source = _loaded_skeleton(tmp_path)
    layer = split.blocks[1]
    assert {k: len(m.keys) for k, m in layer.merges.items()} == {
        "model.layers.0.mlp.experts.gate_up_proj": 8,  # w1 and w3 of 4 experts, in expert order
        "model.layers.0.mlp.experts.down_proj": 4,
    }
    assert [k for k, _ in layer.merges["model.layers.0.mlp.experts.down_proj"].keys] == [
        f"model.layers.0.block_sparse_moe.experts.{e}.w2.weight" for e in range(4)
    ]
    x = _text()
    with torch.no_grad():
        assert torch.allclose(
            split.run(split.adapter.initial_state(x))[0], _last(model.model(**x).last_hidden_state, x)
        )
    unload_block(split, layer)
    assert split.model.model.layers[0].mlp.experts.gate_up_proj.is_meta
    # the experts cut back out of the model's stacked tensors hash as the checkpoint's own (a zoo's hashes)
    assert tensor_content_hash(layer, model.state_dict()) == source.block_hash(split, 1)


def test_experts_saved_stacked_and_transposed_are_transposed_at_load_as_transformers_does(tmp_path):
    """Qwen3-VL's mixtures of experts save each layer's experts stacked, as (experts, hidden, 2 x intermediate):
    transformers transposes them at load where their shape differs from the model's, and so does the block."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    # 2 x 8 intermediate against 32 hidden: a transposed tensor has another shape, which is how transformers tells
    _, factory, inputs, _ = _qwen_vl("Qwen3VLMoe", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=8)
    model = factory().eval()
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    experts = [k for k in tensors if ".mlp.experts." in k]
    assert experts
    save_file({k: v.transpose(1, 2).contiguous() if k in experts else v for k, v in tensors.items()},
              tmp_path / "model.safetensors", metadata={"format": "pt"})  # fmt: skip
    split, _ = _loaded_skeleton(tmp_path)
    x = inputs()
    with torch.no_grad():
        assert torch.allclose(
            split.run(split.adapter.initial_state(x))[0], _last(model.model(**x).last_hidden_state, x)
        )


def test_real_minilm_matches_transformers(tmp_path):
    from alsatian_hf.zoo.minilm import minilm_dir

    folder = minilm_dir()
    source = LocalBlockSource(folder)
    skeleton = build_model(folder, device="meta")
    split = split_model(skeleton, checkpoint_keys=source.keys())
    check_coverage(split, source.keys())  # the legacy `embeddings.position_ids` key is ignored, as transformers does
    for i, block in enumerate(split.blocks):
        load_block(split, block, source.load_tensors(split, i))
    tok = T.AutoTokenizer.from_pretrained(folder)
    enc = dict(tok(["a search for base models", "offline"], padding="max_length", max_length=16, return_tensors="pt"))
    reference = T.BertModel.from_pretrained(folder).eval()
    with torch.no_grad():
        assert torch.allclose(
            split.run(split.adapter.initial_state(enc))[0], reference(**enc).pooler_output, atol=ATOL
        )


def test_real_minilm_reads_out_as_its_sentence_transformers_modules(tmp_path):
    """all-MiniLM-L6-v2 is a sentence-transformers model: its embedding is the masked mean of its token states,
    L2-normalised (`modules.json`), not its pooler. (Bit-equal to sentence-transformers 6.3's `forward` for every
    pooling mode, checked outside the suite.)"""
    from alsatian_hf.adapters import SentencePooling
    from alsatian_hf.zoo.minilm import minilm_dir

    folder = minilm_dir()
    pooling = SentencePooling.from_folder(folder)
    assert pooling == SentencePooling(("mean",), normalize=True)
    source = LocalBlockSource(folder)
    skeleton = build_model(folder, device="meta")
    split = split_model(skeleton, checkpoint_keys=source.keys(), pooling=pooling)
    check_coverage(split, source.keys())
    # the read-out keeps its tensors (the store indexes blocks by position), and its pooling names it
    assert split.blocks[-1].salt == pooling.signature
    assert set(split.blocks[-1].keys) == {"pooler.dense.weight", "pooler.dense.bias"}
    for i, block in enumerate(split.blocks):
        load_block(split, block, source.load_tensors(split, i))
    tok = T.AutoTokenizer.from_pretrained(folder)
    enc = dict(tok(["a search for base models", "offline"], padding="max_length", max_length=16, return_tensors="pt"))
    with torch.no_grad():
        tokens = T.BertModel.from_pretrained(folder).eval()(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        reference = torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1), dim=-1)
        assert torch.allclose(split.run(split.adapter.initial_state(enc))[0], reference, atol=ATOL)


def test_a_pooling_that_leaves_the_prompt_out_pools_the_text_alone():
    """`include_prompt: false` (INSTRUCTOR's): the first `prompt_tokens` tokens after any left padding are not
    pooled, and weightedmean's positions still count from the text's first token, as in sentence-transformers
    6.3 (bit-equal to its `Pooling` for every mode and either padding side, checked outside the suite)."""
    from alsatian_hf.adapters import SentencePooling

    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 8, 4, generator=g)
    right = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    left = torch.tensor([[1] * 8, [0] * 3 + [1] * 5])
    out = SentencePooling(("mean", "cls"), include_prompt=False).with_prompt(2)
    for mask, start in ((right, [0, 0]), (left, [0, 3])):
        pooled = out(tokens, mask)
        for i, s in enumerate(start):
            text = tokens[i, s + 2 :][mask[i, s + 2 :].bool()]
            assert torch.allclose(pooled[i], torch.cat([text.mean(0), text[0]]))
    # weightedmean: the text's tokens weighted 3, 4, ... (their positions), the prompt's 1 and 2 dropped
    pooled = SentencePooling(("weightedmean",), include_prompt=False).with_prompt(2)(tokens, left)
    weights = torch.arange(3.0, 6.0).view(-1, 1)
    assert torch.allclose(pooled[1], (tokens[1, 5:] * weights).sum(0) / weights.sum())
    # a pooling that includes its prompt ignores it; leaving it out is part of the read-out's identity
    kept = SentencePooling(("mean",)).with_prompt(2)
    assert kept == SentencePooling(("mean",)) and torch.equal(
        kept(tokens, right), SentencePooling(("mean",))(tokens, right)
    )
    assert out.signature != SentencePooling(("mean", "cls"), include_prompt=False).signature


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}, (("cls", "mean"), False)),
        ({"pooling_mode": "lasttoken"}, (("lasttoken",), False)),
        ({"pooling_mode": ["max", "weightedmean"]}, (("max", "weightedmean"), False)),
        ({"pooling_mode_mean_tokens": False}, (("mean",), False)),  # no mode set: sentence-transformers' default
    ],
)
def test_sentence_pooling_reads_legacy_and_current_configs(tmp_path, config, expected):
    from alsatian_hf.adapters import SentencePooling

    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
               {"idx": 3, "name": "3", "path": "3_Normalize",
                "type": "sentence_transformers.models.Normalize"}]  # fmt: skip
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 8, **config}))
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    # a Dense layer's weights are not fetched: the read-out stops before it, so the Normalize after it is not run
    assert SentencePooling.from_folder(tmp_path) == SentencePooling(*expected)
    (tmp_path / "modules.json").write_text(json.dumps([modules[0], modules[1], modules[3]]))
    assert SentencePooling.from_folder(tmp_path) == SentencePooling(expected[0], normalize=True)
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "attention"}))
    assert SentencePooling.from_folder(tmp_path) is None  # a mode it does not know: the model's own read-out
    (tmp_path / "modules.json").unlink()
    assert SentencePooling.from_folder(tmp_path) is None


def test_sentence_pooling_runs_dense_layers_from_safetensors_then_normalizes(tmp_path):
    """LaBSE's and distiluse's read-out: pooling, a Dense layer (tanh), L2. (Bit-equal to sentence-transformers
    6.3 with two stacked Dense layers, checked outside the suite.) A Dense saved as `.bin` stops the read-out."""
    from safetensors.torch import save_file

    from alsatian_hf.adapters import SentencePooling

    modules = [{"type": "sentence_transformers.models.Transformer", "path": ""},
               {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"},
               {"type": "sentence_transformers.models.Dense", "path": "2_Dense"},
               {"type": "sentence_transformers.models.Normalize", "path": "3_Normalize"}]  # fmt: skip
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "mean"}))
    (tmp_path / "2_Dense").mkdir()
    (tmp_path / "2_Dense" / "config.json").write_text(json.dumps(
        {"in_features": 4, "out_features": 3, "bias": True, "activation_function": "torch.nn.modules.activation.Tanh"}
    ))  # fmt: skip
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(3, 4, generator=g), torch.randn(3, generator=g)
    save_file({"linear.weight": weight, "linear.bias": bias}, tmp_path / "2_Dense" / "model.safetensors")
    pooling = SentencePooling.from_folder(tmp_path)
    assert len(pooling.dense) == 1 and pooling.normalize and ":dense-" in pooling.signature
    tokens, mask = torch.randn(2, 5, 4, generator=g), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    mean = (tokens * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    expected = torch.nn.functional.normalize(torch.tanh(mean @ weight.T + bias), dim=-1)
    assert torch.allclose(pooling(tokens, mask), expected, atol=1e-6)
    save_file({"linear.weight": weight + 1, "linear.bias": bias}, tmp_path / "2_Dense" / "model.safetensors")
    assert SentencePooling.from_folder(tmp_path).signature != pooling.signature  # other weights, another read-out
    (tmp_path / "2_Dense" / "model.safetensors").rename(tmp_path / "2_Dense" / "pytorch_model.bin")
    assert SentencePooling.from_folder(tmp_path) == SentencePooling(("mean",))  # stops before it, never unpickled


def test_sentence_pooling_takes_only_the_tokens_the_mask_keeps():
    from alsatian_hf.adapters import SentencePooling

    tokens = torch.arange(24, dtype=torch.float32).view(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])  # right and left padding
    pooled = SentencePooling(("cls", "max", "mean", "lasttoken"))(tokens, mask)
    expected = [
        torch.cat([tokens[0, 0], tokens[0, 1], tokens[0, :2].mean(0), tokens[0, 1]]),
        torch.cat([tokens[1, 1], tokens[1, 2], tokens[1, 1:].mean(0), tokens[1, 2]]),
    ]
    assert torch.equal(pooled, torch.stack(expected))
    weighted = SentencePooling(("weightedmean",))(tokens, mask)  # weights 1, 2 from the first kept token
    assert torch.allclose(weighted[1], (tokens[1, 1] + 2 * tokens[1, 2]) / 3)
    assert torch.allclose(SentencePooling(("mean",), normalize=True)(tokens, mask).norm(dim=-1), torch.ones(2))


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_real_efficientnet_lite_matches_its_package(variant):
    from efficientnet_lite_pytorch import EfficientNet

    from alsatian_hf.zoo.efficientnet_lite import convert_efficientnet_lite, efficientnet_lite_checkpoint

    try:
        checkpoint = efficientnet_lite_checkpoint(variant)
    except DataNotInstalledError as e:
        pytest.skip(str(e))
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    model.load_state_dict(convert_efficientnet_lite(variant))
    model.eval()
    package = EfficientNet.from_name(f"efficientnet-lite{variant}")
    package.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    package.eval()
    size = EfficientNet.get_image_size(f"efficientnet-lite{variant}")  # the package pads statically for it
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model(x), package(x), atol=1e-4)  # logits
        features = split_model(model).run((x,))[0]
        expected = package.extract_features(x).mean((2, 3))
        assert torch.allclose(features, expected, atol=1e-4)


def test_tensors_every_layer_reads_are_shared_by_name_and_claimed_twice_only_where_shared(tmp_path):
    """DeBERTa's relative embeddings belong to every layer block, under one name whatever the checkpoint's
    prefix, so the layers of a bare model and of its classifier hash alike; a key two blocks claim without
    both listing it as shared is still refused."""
    from dataclasses import replace

    from alsatian_hf.store.identity import tensor_content_hash

    torch.manual_seed(0)
    model = T.DebertaV2ForSequenceClassification(T.DebertaV2Config(**_DEBERTA_V3)).eval()
    model.save_pretrained(tmp_path / "clf")
    model.deberta.save_pretrained(tmp_path / "bare")
    splits = {}
    for name, m in (("clf", model), ("bare", model.deberta)):
        splits[name] = split_model(m, checkpoint_keys=LocalBlockSource(tmp_path / name).keys())
    rel = "deberta.encoder.rel_embeddings.weight"
    layers = [b for b in splits["clf"].blocks if b.name.startswith("layer.")]
    assert len(layers) == 2 and all(b.shared[rel] == "encoder.rel_embeddings.weight" for b in layers)
    assert rel not in splits["clf"].blocks[0].keys  # the embeddings block computes without it
    for clf, bare in zip(splits["clf"].blocks, splits["bare"].blocks):
        assert tensor_content_hash(clf, model.state_dict()) == tensor_content_hash(bare, model.deberta.state_dict())
    split = splits["clf"]
    split.blocks[2] = replace(layers[1], shared={})
    with pytest.raises(UnsupportedArchitectureError, match="claimed twice=.*rel_embeddings"):
        check_coverage(split, LocalBlockSource(tmp_path / "clf").keys())


def test_albert_layers_of_one_group_hash_alike_and_those_of_two_do_not():
    """ALBERT runs a group's weights as several layers: the store keeps them once, and a layer's hash says which
    weights it runs."""
    from alsatian_hf.store.identity import tensor_content_hash

    torch.manual_seed(0)
    model = T.AlbertForSequenceClassification(T.AlbertConfig(**_ALBERT)).eval()
    split = split_model(model)
    hashes = [tensor_content_hash(b, model.state_dict()) for b in split.blocks if b.name.startswith("layer.")]
    assert len(hashes) == 4 and hashes[0] == hashes[1] != hashes[2] == hashes[3]


@pytest.mark.parametrize("kind", ["CLIP", "Siglip", "Siglip2", "MetaClip2"])
def test_a_dual_encoder_shares_every_block_with_its_image_classifier(kind):
    """openai/clip-vit-* and google/siglip-* are dual encoders; their fine-tunes are image classifiers, and some
    repos hold the bare image tower. The tower's blocks hash alike in all three, under one config signature (of
    the vision config: the text config never runs), and the text tower is head: never fetched."""
    from alsatian_hf.adapters.signature import signature
    from alsatian_hf.store.identity import tensor_content_hash

    vit = {**_VIT, "num_patches": 16} if kind == "Siglip2" else _VIT
    config = getattr(T, f"{kind}Config")(vision_config=vit, text_config=_TOWER_TEXT)
    torch.manual_seed(0)
    classifier = getattr(T, f"{kind}ForImageClassification")(config).eval()
    dual = getattr(T, f"{kind}Model")(config).eval()
    dual.vision_model.load_state_dict(classifier.vision_model.state_dict())
    tower = getattr(T, f"{kind}VisionModel")(getattr(T, f"{kind}VisionConfig")(**vit)).eval()
    getattr(tower, "vision_model", tower).load_state_dict(classifier.vision_model.state_dict())
    models = (classifier, dual, tower)
    splits = [split_model(m) for m in models]
    hashes = [[tensor_content_hash(b, m.state_dict()) for b in s.blocks] for s, m in zip(splits, models)]
    assert hashes[0] == hashes[1] == hashes[2] and len(hashes[0]) == 4
    assert signature(splits[0]) == signature(splits[1]) == signature(splits[2])
    assert any(k.startswith("text_model.") for k in splits[1].head_keys)
    # a text config that differs leaves the image tower's signature be
    other = getattr(T, f"{kind}Config")(vision_config=vit, text_config={**_TOWER_TEXT, "hidden_act": "relu"})
    assert signature(split_model(getattr(T, f"{kind}Model")(other).eval())) == signature(splits[1])


def test_an_image_text_gemma3_read_out_by_sentence_transformers_modules_pools_its_language_model():
    """A sentence-transformers repo on a Gemma 3 image-text checkpoint reads out by its own pooling over the
    language model's normed token states (the adapter points the read-out there, not at the image-text base)."""
    from alsatian_hf.adapters import SentencePooling

    torch.manual_seed(0)
    model = T.Gemma3ForConditionalGeneration(_gemma3()).eval()
    split = split_model(model, pooling=SentencePooling(("mean",)))
    readout = split.blocks[-1]
    assert [readout.model_key(k) for k in readout.keys] == ["model.language_model.norm.weight"]
    x = _text()
    with torch.no_grad():
        hidden = model.model(**x).last_hidden_state
        assert torch.allclose(split.run(split.adapter.initial_state(x))[0], _masked_mean(hidden, x), atol=ATOL)


def test_a_config_key_counts_in_the_signature_where_the_model_code_reads_it():
    """bert-base-uncased's config has no `position_embedding_type`, its fine-tunes saved by transformers 4 say
    "absolute", and today's BERT reads neither: they sign alike. DeBERTa-v3's `share_att_key`, which its config
    class does not define either, is read by name (`getattr(config, "share_att_key", False)`): it counts. So does
    a padding id where the positions are numbered from it."""
    from alsatian_hf.adapters.signature import signature

    def sign(cls, config_cls, **config):
        return signature(split_model(cls(config_cls(**config)).eval()))

    bert = sign(T.BertModel, T.BertConfig, **_BERT)
    assert sign(T.BertModel, T.BertConfig, **_BERT, position_embedding_type="absolute", output_past=True) == bert
    assert sign(T.BertModel, T.BertConfig, **_BERT, hidden_act="relu") != bert
    deberta = sign(T.DebertaV2Model, T.DebertaV2Config, **{**_DEBERTA_V3, "share_att_key": False})
    assert sign(T.DebertaV2Model, T.DebertaV2Config, **{**_DEBERTA_V3, "share_att_key": True}) != deberta
    # a padding id changes no BERT or Llama feature; RoBERTa numbers its positions from it
    assert sign(T.BertModel, T.BertConfig, **{**_BERT, "pad_token_id": 3}) == bert
    llama = sign(T.LlamaModel, T.LlamaConfig, **_DECODER)
    assert sign(T.LlamaModel, T.LlamaConfig, **{**_DECODER, "pad_token_id": 5, "eos_token_id": 6}) == llama
    roberta = sign(T.RobertaModel, T.RobertaConfig, **{**_BERT, "pad_token_id": 1})
    assert sign(T.RobertaModel, T.RobertaConfig, **{**_BERT, "pad_token_id": 3}) != roberta


def test_unregistered_architecture_names_the_class_and_the_fix():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(UnsupportedArchitectureError, match="register_adapter") as info:
        split_model(model)
    assert "Sequential" in str(info.value)


def test_serialisable_state_between_blocks_is_tensors_only():
    model = T.SwinForImageClassification(T.SwinConfig(**_SWIN)).eval()
    split = split_model(model)
    state = split.run(split.adapter.initial_state(_pixels()), 0, 2)
    assert all(isinstance(t, torch.Tensor) for t in state)
    buf = io.BytesIO(save({str(i): t.contiguous() for i, t in enumerate(state)}))
    assert len(buf.getvalue()) > 0


@pytest.mark.parametrize("factory", [lambda: T.BeitModel(T.BeitConfig(**_VIT))], ids=["beit"])
def test_discovery_for_unregistered_vision_models(factory, tmp_path):
    from alsatian_hf.adapters.discovery import reference_features

    torch.manual_seed(0)
    model = factory().eval()
    model.save_pretrained(tmp_path)
    keys = LocalBlockSource(tmp_path).keys()
    split = split_model(model, checkpoint_keys=keys)
    assert split.family.startswith("discovered:")
    check_coverage(split, keys)
    x = _pixels()["pixel_values"]
    with torch.no_grad():
        _check_equivalence(model, split, (x,), reference_features(model, x))


def test_discovery_checks_the_features_a_transformers_classifier_is_handed():
    """Discovery reads a transformers model out as its pooled states; I-JEPA's classifier averages every token
    instead, so its discovered split (the first token) is refused, not searched on features the classifier never
    sees. Its adapter reads it out as the classifier does."""
    from alsatian_hf.adapters.discovery import discover, validate

    torch.manual_seed(0)
    model = T.IJepaForImageClassification(T.IJepaConfig(**_VIT)).eval()
    with pytest.raises(UnsupportedArchitectureError, match="do not reproduce its own features"):
        validate(model, discover(model, family="discovered:IJepaForImageClassification"))
    assert split_model(model).family == "transformers-vit"


def test_discovery_validates_on_an_image_size_given_as_height_and_width(tmp_path):
    """Hiera's (and PVT v2's) config gives `image_size` as [height, width]; discovery's check input took it for an
    int and failed with a TypeError from `torch.randn`."""
    from alsatian_hf.adapters.discovery import reference_features

    torch.manual_seed(0)
    model = T.HieraForImageClassification(T.HieraConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]))
    model.eval().save_pretrained(tmp_path)
    keys = LocalBlockSource(tmp_path).keys()
    split = split_model(model, checkpoint_keys=keys)
    assert split.family == "discovered:HieraForImageClassification"
    check_coverage(split, keys)
    x = _pixels(224)["pixel_values"]
    with torch.no_grad():
        _check_equivalence(model, split, (x,), reference_features(model, x))


class _Staged(torch.nn.Module):
    """A timm-style model whose block list holds lists of blocks, one list per stage."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3)
        self.stages = torch.nn.ModuleList(
            torch.nn.ModuleList(torch.nn.Conv2d(8, 8, 3) for _ in range(2)) for _ in range(2)
        )
        self.fc = torch.nn.Linear(8, 7)

    def forward_features(self, x):
        x = self.stem(x)
        for stage in self.stages:
            for block in stage:
                x = block(x)
        return x

    def forward_head(self, x, pre_logits: bool = False):
        x = x.mean((-2, -1))
        return x if pre_logits else self.fc(x)


class _Pair(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)

    def forward(self, xs):
        return [self.a(xs[0]), self.b(xs[1])]


class _Branched(torch.nn.Module):
    """A timm-style model whose blocks pass a list of two token sequences, as CrossViT's branches do."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 4, stride=4)
        self.blocks = torch.nn.ModuleList(_Pair() for _ in range(2))
        self.fc = torch.nn.Linear(16, 7)

    def forward_features(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        xs = [x, x.flip(1)]
        for block in self.blocks:
            xs = block(xs)
        return xs

    def forward_head(self, xs, pre_logits: bool = False):
        x = torch.cat([x.mean(1) for x in xs], dim=1)
        return x if pre_logits else self.fc(x)


def test_discovery_refuses_what_it_cannot_reproduce():
    # two branches pass a list of token sequences between blocks, which a one-tensor state cannot hold
    with pytest.raises(UnsupportedArchitectureError, match="_Branched.*blocks do not r.*register_adapter"):
        split_model(_Branched().eval())
    # stages held as lists of blocks (as transformers' PVT held them before its adapter): the forward runs the
    # blocks inside each list, never the lists themselves, so the split's stem never sees its input
    with pytest.raises(UnsupportedArchitectureError, match="_Staged.*never reached.*register_adapter"):
        split_model(_Staged().eval())
    funnel = T.FunnelModel(T.FunnelConfig(vocab_size=31, d_model=32, n_head=2, d_head=16, d_inner=37,
                                          block_sizes=[1, 1])).eval()  # fmt: skip
    with pytest.raises(UnsupportedArchitectureError, match="text models"):
        split_model(funnel)


def test_register_adapter_warns_on_overwrite_and_list_adapters_filters():
    from alsatian_hf.adapters import Adapter, list_adapters, register_adapter
    from alsatian_hf.adapters._base import _REGISTRY

    @register_adapter("test_layout_arch")
    class First(Adapter):
        pass

    try:
        with pytest.warns(UserWarning, match="First"):

            @register_adapter("test_layout_arch")
            class Second(Adapter):
                pass

        assert type(_REGISTRY["test_layout_arch"]).__name__ == "Second"
        assert list_adapters("test_layout_*") == ["test_layout_arch"]
        assert "timm:ResNet" in list_adapters(["timm:Res*", "bert"]) and "bert" in list_adapters(["timm:Res*", "bert"])
        assert list_adapters() == sorted(_REGISTRY)
    finally:
        _REGISTRY.pop("test_layout_arch", None)
