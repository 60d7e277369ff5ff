"""The supported families, their block-list rule and block counts for a standard config.

`docs/architectures.md` shows this table; a test recomputes every count from real (meta-device) models,
so the documentation cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class FamilyRow:
    library: str
    family: str
    standard: str  # the config the count is for
    rule: str
    build: Callable[[], nn.Module]


def _timm(name: str) -> Callable[[], nn.Module]:
    def build():
        import timm

        return timm.create_model(name, pretrained=False)

    return build


def _hf(config: str, cls: str, **kwargs) -> Callable[[], nn.Module]:
    def build():
        import transformers

        return getattr(transformers, cls)(getattr(transformers, config)(**kwargs))

    return build


ROWS = [
    FamilyRow(
        "timm",
        "resnet / resnext",
        "resnet18",
        "stem → every residual block of layer1-4 → global pool",
        _timm("resnet18"),
    ),
    FamilyRow("timm", "resnet / resnext", "resnet50", "same", _timm("resnet50")),
    FamilyRow(
        "timm",
        "efficientnet / efficientnet_lite",
        "tf_efficientnet_lite0",
        "stem → every block of every stage → conv_head+bn2 → global pool",
        _timm("tf_efficientnet_lite0"),
    ),
    FamilyRow(
        "timm",
        "vit / deit",
        "vit_base_patch16_224",
        "patch embed+tokens → every block → norm+pool",
        _timm("vit_base_patch16_224"),
    ),
    FamilyRow("timm", "vit / deit", "deit_small_patch16_224", "same", _timm("deit_small_patch16_224")),
    FamilyRow(
        "timm",
        "eva (EVA-02, RoPE ViTs, DINOv3)",
        "eva02_base_patch14_224",
        "patch embed+tokens → every block (with its rotary embedding; of each input's grid with `dynamic_img_size`) "
        "→ norm+pool",
        _timm("eva02_base_patch14_224"),
    ),
    FamilyRow(
        "timm",
        "convnext",
        "convnext_tiny",
        "stem → per stage: downsample, every block → norm+pool",
        _timm("convnext_tiny"),
    ),
    FamilyRow(
        "timm",
        "swin",
        "swin_tiny_patch4_window7_224",
        "patch embed → per stage: merging, every block → norm+pool",
        _timm("swin_tiny_patch4_window7_224"),
    ),
    FamilyRow(
        "timm",
        "cait",
        "cait_xxs24_224",
        "patch embed+position → every self-attention block → every class-attention block (the class token reading "
        "the patches) → norm+pool",
        _timm("cait_xxs24_224"),
    ),
    FamilyRow(
        "timm",
        "xcit",
        "xcit_nano_12_p16_224",
        "conv patch embed+Fourier position → every cross-covariance block (with the patch grid) → every "
        "class-attention block → norm+pool",
        _timm("xcit_nano_12_p16_224"),
    ),
    FamilyRow(
        "timm",
        "twins (PCPVT, SVT)",
        "twins_svt_small",
        "per stage: patch embedding, every block (the first with its position generator) → norm+pool",
        _timm("twins_svt_small"),
    ),
    FamilyRow(
        "timm",
        "hrnet (classification head)",
        "hrnet_w18_small",
        "stem → every block of layer1 → per stage: transition into branches, every high-resolution module → "
        "aggregation (incre, downsample, final layer) → global pool",
        _timm("hrnet_w18_small"),
    ),
    FamilyRow(
        "timm",
        "mvitv2",
        "mvitv2_tiny",
        "patch embed+class token+position → every multiscale block of every stage (with the patch grid) → norm+pool",
        _timm("mvitv2_tiny"),
    ),
    FamilyRow(
        "timm",
        "nest",
        "nest_tiny",
        "patch embed → per level: aggregation pool+blocks+position, every transformer block → norm+pool",
        _timm("nest_tiny"),
    ),
    FamilyRow(
        "timm",
        "crossvit",
        "crossvit_tiny_240",
        "both branches' patch embed+class token+position → every multi-scale block (both branches, class tokens "
        "fused) → each branch's norm, class tokens joined",
        _timm("crossvit_tiny_240"),
    ),
    FamilyRow(
        "timm",
        "convit",
        "convit_tiny",
        "patch embed+position → every block (gated positional attention on the patches, then the class token "
        "joins) → norm+pool",
        _timm("convit_tiny"),
    ),
    FamilyRow(
        "timm",
        "pit",
        "pit_ti_224",
        "patch embed+position+class token → per stage: pooling of the map and the class token, then one sequence, "
        "every block → norm of the class token",
        _timm("pit_ti_224"),
    ),
    FamilyRow(
        "timm",
        "volo",
        "volo_d1_224",
        "patch embed → every outlooker and transformer block (a downsample step between) → every class-attention "
        "block → norm+pool",
        _timm("volo_d1_224"),
    ),
    FamilyRow(
        "transformers",
        "BERT",
        "BertConfig()",
        "embeddings → every layer → pooler",
        _hf("BertConfig", "BertForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "RoBERTa",
        "RobertaConfig()",
        "embeddings → every layer → [CLS] state",
        _hf("RobertaConfig", "RobertaForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "XLM-RoBERTa / CamemBERT",
        "XLMRobertaConfig()",
        "same as RoBERTa",
        _hf("XLMRobertaConfig", "XLMRobertaForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "Data2Vec-text / ERNIE",
        "Data2VecTextConfig()",
        "same as RoBERTa",
        _hf("Data2VecTextConfig", "Data2VecTextForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "Megatron-BERT / XLM-R XL",
        "MegatronBertConfig()",
        "embeddings → every layer → final norm+pooler",
        _hf("MegatronBertConfig", "MegatronBertForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "RoFormer",
        "RoFormerConfig()",
        "embeddings (+projection) → every layer (each with the shared sinusoidal table) → [CLS] state",
        _hf("RoFormerConfig", "RoFormerForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "ESM",
        "EsmConfig(vocab_size=33)",
        "embeddings → every layer (rotary) → final norm+[CLS] state",
        _hf("EsmConfig", "EsmForSequenceClassification", vocab_size=33, pad_token_id=1),
    ),
    FamilyRow(
        "transformers",
        "ELECTRA",
        "ElectraConfig()",
        "embeddings (+projection) → every layer → [CLS] state",
        _hf("ElectraConfig", "ElectraForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "Llama / Mistral, Ministral 3 / Qwen2, 3 / Gemma, 2, 3 / Phi, Phi-3 / OLMo, 2, 3 / SmolLM3 / StableLM / "
        "StarCoder2 / GLM, GLM-4 / Nemotron / Granite / Command R (Cohere, 2) / Apertus / ERNIE 4.5 / Hunyuan / "
        "Qwen3-Next, Qwen3.5 (text) / OLMo hybrid / Granite 4 (hybrid) / Llama 4 (text) / DeepSeek-V3.2 / ...",
        "LlamaConfig()",
        "token embeddings (scaled where the config says) → every decoder layer (full, sliding-window, chunked, "
        "sparse or linear attention, or Mamba, as transformers masks each kind) → final norm+last token the mask "
        "keeps",
        _hf("LlamaConfig", "LlamaForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "mixtures of experts: Mixtral / Qwen2-MoE, Qwen3-MoE / OLMoE, FlexOlmo / DeepSeek-V2, V3 / GLM-4-MoE / "
        "ERNIE 4.5 MoE / Hunyuan MoE / gpt-oss / Phi-3.5-MoE / Granite MoE / JetMoE / MiniMax / ...",
        "MixtralConfig()",
        "same as Llama; each layer's experts, saved one tensor per expert, merged at load as transformers merges them",
        _hf("MixtralConfig", "MixtralForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "Nemotron-H (hybrid Mamba-2 Nemotrons)",
        "NemotronHConfig()",
        "embeddings → every layer (Mamba-2, attention, MLP or experts) → norm_f+last token the mask keeps",
        _hf("NemotronHConfig", "NemotronHForCausalLM"),
    ),
    FamilyRow(
        "transformers",
        "Falcon-H1",
        "FalconH1Config()",
        "token embeddings (scaled) → every layer (attention and Mamba-2 side by side) → final norm+last token the "
        "mask keeps",
        _hf("FalconH1Config", "FalconH1ForCausalLM"),
    ),
    FamilyRow(
        "transformers",
        "Jamba",
        "JambaConfig()",
        "token embeddings → every layer (Mamba or attention, some with experts; no rotary positions) → final "
        "norm+last token the mask keeps",
        _hf("JambaConfig", "JambaForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "LFM2 / LFM2-MoE (Liquid)",
        "Lfm2Config()",
        "token embeddings → every layer (short convolution or attention) → embedding_norm+last token the mask keeps",
        _hf("Lfm2Config", "Lfm2ForCausalLM"),
    ),
    FamilyRow(
        "transformers",
        "GPT-2",
        "GPT2Config()",
        "token+position embeddings → every block → ln_f+last token the mask keeps",
        _hf("GPT2Config", "GPT2ForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "OPT",
        "OPTConfig()",
        "token embeddings+learned positions → every layer → final norm+last token the mask keeps",
        _hf("OPTConfig", "OPTForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "GPT-NeoX (Pythia)",
        "GPTNeoXConfig()",
        "same as Llama",
        _hf("GPTNeoXConfig", "GPTNeoXForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "Falcon",
        "FalconConfig()",
        "word embeddings → every block (rotary, or ALiBi in the mask) → ln_f+last token the mask keeps",
        _hf("FalconConfig", "FalconForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "T5 / mT5 (encoder)",
        "T5Config()",
        "shared embeddings → every block (the relative bias shared) → final norm+masked mean",
        _hf("T5Config", "T5EncoderModel"),
    ),
    FamilyRow(
        "transformers",
        "T5 / mT5 (classifier)",
        "T5Config(decoder_start_token_id=0)",
        "shared embeddings → every encoder block → the decoder's embeddings of the input shifted right → every "
        "decoder block (attending to the encoder's normed states) → final norm+state at the last </s>",
        _hf("T5Config", "T5ForSequenceClassification", decoder_start_token_id=0),
    ),
    FamilyRow(
        "transformers",
        "UMT5 (encoder or classifier)",
        "UMT5Config(decoder_start_token_id=0)",
        "as T5's, each block with its own relative bias",
        _hf("UMT5Config", "UMT5ForSequenceClassification", decoder_start_token_id=0),
    ),
    FamilyRow(
        "transformers",
        "Longformer",
        "LongformerConfig()",
        "embeddings (padded to the attention window) → every layer ([CLS] global) → [CLS] state",
        _hf("LongformerConfig", "LongformerForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "BigBird",
        "BigBirdConfig()",
        "embeddings (padded to the block size where block-sparse) → every layer (block-sparse or full) → [CLS] state",
        _hf("BigBirdConfig", "BigBirdForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "XLNet",
        "XLNetConfig()",
        "word embeddings → every layer (relative positions, segments) → last token (`summary_type`)",
        _hf("XLNetConfig", "XLNetForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "RemBERT",
        "RemBertConfig()",
        "embeddings+projection → every layer → pooler",
        _hf("RemBertConfig", "RemBertForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "MobileBERT",
        "MobileBertConfig()",
        "embeddings → every bottleneck layer → pooler, or [CLS] state without `classifier_activation`",
        _hf("MobileBertConfig", "MobileBertForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "ALBERT",
        "AlbertConfig()",
        "embeddings+projection → every layer (its group's shared weights) → pooler",
        _hf("AlbertConfig", "AlbertForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "DeBERTa-v2 / v3",
        "DebertaV2Config()",
        "embeddings → every layer (each with the shared relative embeddings) → [CLS] state",
        _hf("DebertaV2Config", "DebertaV2ForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "DeBERTa",
        "DebertaConfig()",
        "same as DeBERTa-v2",
        _hf("DebertaConfig", "DebertaForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "MPNet",
        "MPNetConfig()",
        "embeddings → every layer (each with the shared relative bias) → pooler or [CLS] state",
        _hf("MPNetConfig", "MPNetForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "ModernBERT",
        "ModernBertConfig()",
        "embeddings → every layer (global or sliding-window) → final norm+[CLS] or mean",
        _hf("ModernBertConfig", "ModernBertForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "Gemma 3 (image-text, by its language model)",
        "Gemma3Config()",
        "token embeddings → every decoder layer (local or global) → final norm+last token the mask keeps",
        _hf("Gemma3Config", "Gemma3ForConditionalGeneration"),
    ),
    FamilyRow(
        "transformers",
        "Qwen3.5 (image-text, by its language model; dense or mixture of experts)",
        "Qwen3_5Config()",
        "token embeddings → every decoder layer (Gated DeltaNet or full attention) → final norm+last token the "
        "mask keeps",
        _hf("Qwen3_5Config", "Qwen3_5ForConditionalGeneration"),
    ),
    FamilyRow(
        "transformers",
        "Qwen2-VL / Qwen2.5-VL / Qwen3-VL (image-text, by its language model)",
        "Qwen2_5_VLConfig()",
        "token embeddings → every decoder layer → final norm+last token the mask keeps",
        _hf("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration"),
    ),
    FamilyRow(
        "transformers",
        "BART",
        "BartConfig()",
        "token embeddings → every encoder layer → the decoder's embeddings of the input shifted right → every decoder "
        "layer (attending to the encoder) → state at the last </s>",
        _hf("BartConfig", "BartForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "mBART / PLBart",
        "MBartConfig()",
        "as BART's, each stack ending in its final norm; the decoder's input starts with each text's language id",
        _hf("MBartConfig", "MBartForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "EuroBERT",
        "EuroBertConfig()",
        "token embeddings → every layer (bidirectional, rotary) → final norm+first token or masked mean",
        _hf("EuroBertConfig", "EuroBertForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "NomicBERT, GTE, jina-embeddings-v3",
        "NomicBertConfig()",
        "embeddings → every layer (rotary positions; its fused qkv cut into q, k, v) → pooler or [CLS] state",
        _hf("NomicBertConfig", "NomicBertModel"),
    ),
    FamilyRow(
        "transformers",
        "DistilBERT",
        "DistilBertConfig()",
        "embeddings → every layer → [CLS] state",
        _hf("DistilBertConfig", "DistilBertForSequenceClassification"),
    ),
    FamilyRow(
        "transformers",
        "ViT",
        "ViTConfig()",
        "embeddings → every layer → layernorm+[CLS]",
        _hf("ViTConfig", "ViTForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "DeiT",
        "DeiTConfig()",
        "embeddings → every layer → layernorm+[CLS]",
        _hf("DeiTConfig", "DeiTForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "DINOv2",
        "Dinov2Config()",
        "embeddings → every layer → layernorm+[CLS]++mean",
        _hf("Dinov2Config", "Dinov2ForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "CLIP (image tower)",
        "CLIPConfig()",
        "embeddings+pre-layernorm → every layer → mean of patch tokens",
        _hf("CLIPConfig", "CLIPForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "SigLIP (image tower)",
        "SiglipConfig()",
        "embeddings → every layer → post-layernorm+mean",
        _hf("SiglipConfig", "SiglipForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "DINOv3 ViT",
        "DINOv3ViTConfig()",
        "embeddings+[CLS]+registers → every layer (rotary positions of the input's patch grid) → norm+[CLS]",
        _hf("DINOv3ViTConfig", "DINOv3ViTModel"),
    ),
    FamilyRow(
        "transformers",
        "DINOv3 ConvNeXt",
        "DINOv3ConvNextConfig()",
        "per stage: downsampling, every layer → pool+norm",
        _hf("DINOv3ConvNextConfig", "DINOv3ConvNextModel"),
    ),
    FamilyRow(
        "transformers",
        "SigLIP 2 (image tower, NaFlex)",
        "Siglip2Config()",
        "embeddings (position table resized per image) → every layer (real patches only) → post-layernorm+mean of "
        "real patches",
        _hf("Siglip2Config", "Siglip2ForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "MetaCLIP 2 (image tower)",
        "MetaClip2Config()",
        "same as CLIP",
        _hf("MetaClip2Config", "MetaClip2ForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "ResNet",
        "ResNetConfig()",
        "embedder → every layer of every stage → pool",
        _hf("ResNetConfig", "ResNetForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "MobileViT (v1, v2)",
        "MobileViTConfig()",
        "conv stem → every encoder layer → 1x1 expansion+pool",
        _hf("MobileViTConfig", "MobileViTForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "ConvNeXt",
        "ConvNextConfig()",
        "embeddings → per stage: downsample, every layer → pool+layernorm",
        _hf("ConvNextConfig", "ConvNextForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "ConvNeXt V2",
        "ConvNextV2Config()",
        "same as ConvNeXt",
        _hf("ConvNextV2Config", "ConvNextV2ForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "Swin",
        "SwinConfig()",
        "embeddings → per stage: every block, merging → layernorm+pool",
        _hf("SwinConfig", "SwinForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "Swin V2",
        "Swinv2Config()",
        "same as Swin",
        _hf("Swinv2Config", "Swinv2ForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "FocalNet",
        "FocalNetConfig()",
        "embeddings → per stage: every layer, downsampling → layernorm+pool",
        _hf("FocalNetConfig", "FocalNetForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "PVT",
        "PvtConfig()",
        "per stage: patch embedding (the class token at the last), every block → layernorm+class token",
        _hf("PvtConfig", "PvtForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "CvT",
        "CvtConfig()",
        "per stage: convolutional embedding (the last stage's class token joins), every layer → layernorm+class token",
        _hf("CvtConfig", "CvtForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "PVT v2",
        "PvtV2Config()",
        "per stage: overlapping patch embedding, every block, layernorm → mean pool",
        _hf("PvtV2Config", "PvtV2ForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "PoolFormer",
        "PoolFormerConfig()",
        "per stage: patch embedding, every layer → group norm+mean pool",
        _hf("PoolFormerConfig", "PoolFormerForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "HGNetV2",
        "HGNetV2Config()",
        "embedder → per stage: downsampling convolution, every block → average pool",
        _hf("HGNetV2Config", "HGNetV2ForImageClassification"),
    ),
    FamilyRow(
        "transformers",
        "SwiftFormer",
        "SwiftFormerConfig()",
        "patch embedding → every block of each stage, each downsampling between → batch norm+mean pool",
        _hf("SwiftFormerConfig", "SwiftFormerForImageClassification"),
    ),
]


def block_count(row: FamilyRow) -> int:
    from accelerate import init_empty_weights

    from . import split_model

    with init_empty_weights():
        model = row.build()
    return len(split_model(model).blocks)


def markdown_table() -> str:
    lines = ["| library | family | standard config | blocks | block list rule |", "|---|---|---|---:|---|"]
    for row in ROWS:
        lines.append(f"| {row.library} | {row.family} | `{row.standard}` | {block_count(row)} | {row.rule} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
