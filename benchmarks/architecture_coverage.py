"""Which architectures a search can split: every registered adapter or discovery rule, tried on real models
with random weights (discovery checks its split against the library's own features; `tests/test_adapters.py`
checks every adapter's).

The list is the timm families, transformers image classifiers and transformers text classifiers users fine-tune
most, at their smallest standard size or a shrunk config; a row is `adapter` (a registered adapter splits it), `discovered`
(discovery splits it and reproduces its features) or `refused` (with discovery's reason). A row counts only if the
skeleton a search builds from the model's saved config.json, with meta weights, splits into the same blocks.

    python -m benchmarks.architecture_coverage [--only NAME ...]
    python -m benchmarks.architecture_coverage --timm-skeletons   # every registered timm model, meta weights
    python -m benchmarks.architecture_coverage --timm-families [--only MODULE ...]   # as a search runs them
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Callable

from torch import nn


TIMM = [
    "test_vit", "test_efficientnet", "test_byobnet", "test_convnext", "test_nfnet", "test_vit2", "test_vit3",
    "test_mambaout", "mobilenetv3_small_050", "mobilenetv2_050", "regnetx_002", "resnetv2_50", "densenet121",
    "efficientvit_b0", "fastvit_t8", "levit_128s", "maxvit_nano_rw_256", "coatnet_nano_rw_224",
    "eva02_tiny_patch14_224", "deit3_small_patch16_224", "beit_base_patch16_224", "convnextv2_atto", "ghostnet_100",
    "rexnet_100", "mixer_s16_224", "caformer_s18", "hgnetv2_b0", "repvit_m1", "tiny_vit_5m_224",
    "efficientformerv2_s0", "inception_v3", "xception41", "vgg11", "dla34", "hrnet_w18_small", "cspresnet50",
    "mobilevit_xxs", "edgenext_xx_small", "poolformer_s12", "pvt_v2_b0", "nest_tiny", "twins_svt_small",
    "crossvit_tiny_240", "cait_xxs24_224", "xcit_nano_12_p16_224", "gcvit_xxtiny", "davit_tiny", "focalnet_tiny_srf",
    "swinv2_cr_tiny_ns_224", "regnety_002", "tf_mixnet_s", "mnasnet_050", "hiera_tiny_224",
    "vit_small_patch16_dinov3", "mvitv2_tiny", "volo_d1_224", "swinv2_tiny_window8_256", "vit_tiny_r_s16_p8_224",
]  # fmt: skip


def _transformers() -> dict[str, Callable[[], nn.Module]]:
    import transformers as T

    vit = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32,
               patch_size=8)  # fmt: skip
    text = dict(vocab_size=31, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    swin = dict(image_size=32, patch_size=4, embed_dim=8, depths=[1, 2], num_heads=[1, 2], window_size=4)
    return {
        "ViT": lambda: T.ViTForImageClassification(T.ViTConfig(**vit)),
        "DINOv2": lambda: T.Dinov2ForImageClassification(T.Dinov2Config(**vit)),
        "CLIP": lambda: T.CLIPForImageClassification(T.CLIPConfig(vision_config=vit, text_config=text)),
        "SigLIP": lambda: T.SiglipForImageClassification(T.SiglipConfig(vision_config=vit, text_config=text)),
        "Swin": lambda: T.SwinForImageClassification(T.SwinConfig(**swin)),
        "Swin V2": lambda: T.Swinv2ForImageClassification(T.Swinv2Config(**swin)),
        "ConvNeXt V2": lambda: T.ConvNextV2ForImageClassification(T.ConvNextV2Config(hidden_sizes=[8, 16],
                                                                                     depths=[1, 1], num_stages=2)),
        "BEiT": lambda: T.BeitForImageClassification(T.BeitConfig(**vit)),
        "Data2Vec-vision": lambda: T.Data2VecVisionForImageClassification(T.Data2VecVisionConfig(**vit)),
        "EfficientNet": lambda: T.EfficientNetForImageClassification(T.EfficientNetConfig(image_size=32)),
        "MobileNetV2": lambda: T.MobileNetV2ForImageClassification(T.MobileNetV2Config(image_size=32)),
        "MobileViT": lambda: T.MobileViTForImageClassification(T.MobileViTConfig(image_size=32)),
        "RegNet": lambda: T.RegNetForImageClassification(T.RegNetConfig(hidden_sizes=[8, 16, 16, 16],
                                                                        embedding_size=8)),
        "LeViT": lambda: T.LevitForImageClassification(T.LevitConfig(image_size=64)),
        "PVT": lambda: T.PvtForImageClassification(T.PvtConfig(image_size=32)),
        "FocalNet": lambda: T.FocalNetForImageClassification(T.FocalNetConfig(image_size=32, embed_dim=8,
                                                                              depths=[1, 1], hidden_sizes=[8, 16])),
        "CvT": lambda: T.CvtForImageClassification(T.CvtConfig()),
        "ViT-MSN": lambda: T.ViTMSNForImageClassification(T.ViTMSNConfig(**vit)),
        "DINOv3 ViT": lambda: T.DINOv3ViTModel(T.DINOv3ViTConfig(**vit, num_register_tokens=2)),
        "DINOv3 ConvNeXt": lambda: T.DINOv3ConvNextModel(T.DINOv3ConvNextConfig(hidden_sizes=[8, 16, 16, 16],
                                                                                depths=[1, 1, 1, 1])),
        "SigLIP 2": lambda: T.Siglip2ForImageClassification(T.Siglip2Config(vision_config={**vit, "num_patches": 16},
                                                                            text_config=text)),
        "MetaCLIP 2": lambda: T.MetaClip2ForImageClassification(T.MetaClip2Config(vision_config=vit,
                                                                                  text_config=text)),
        "DeiT": lambda: T.DeiTForImageClassification(T.DeiTConfig(**vit)),
        "I-JEPA": lambda: T.IJepaForImageClassification(T.IJepaConfig(**vit)),
        "ResNet": lambda: T.ResNetForImageClassification(T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16],
                                                                        depths=[1, 2])),
        "ConvNeXt": lambda: T.ConvNextForImageClassification(T.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1],
                                                                              num_stages=2)),
        "BiT": lambda: T.BitForImageClassification(T.BitConfig()),
        "MobileNetV1": lambda: T.MobileNetV1ForImageClassification(T.MobileNetV1Config(image_size=32)),
        "MobileViTV2": lambda: T.MobileViTV2ForImageClassification(T.MobileViTV2Config(image_size=32)),
        "PP-LCNet": lambda: T.PPLCNetForImageClassification(T.PPLCNetConfig()),
        "SegFormer": lambda: T.SegformerForImageClassification(T.SegformerConfig()),
        "TextNet": lambda: T.TextNetForImageClassification(T.TextNetConfig()),
        "HGNetV2": lambda: T.HGNetV2ForImageClassification(T.HGNetV2Config()),
        "PoolFormer": lambda: T.PoolFormerForImageClassification(T.PoolFormerConfig()),
        "PVT v2": lambda: T.PvtV2ForImageClassification(T.PvtV2Config()),
        "SwiftFormer": lambda: T.SwiftFormerForImageClassification(T.SwiftFormerConfig()),
    }  # fmt: skip


def _text() -> dict[str, Callable[[], nn.Module]]:
    import transformers as T

    bert = dict(vocab_size=31, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                max_position_embeddings=64)  # fmt: skip
    deberta = dict(bert, relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm",
                   pos_att_type=["p2c", "c2p"], position_biased_input=False, type_vocab_size=0)  # fmt: skip
    bart = dict(vocab_size=31, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37)  # fmt: skip

    moe = dict(intermediate_size=40, moe_intermediate_size=16, num_experts_per_tok=2, pad_token_id=0)
    linear = dict(layer_types=["linear_attention", "full_attention"], linear_num_key_heads=2, linear_num_value_heads=2,
                  linear_key_head_dim=8, linear_value_head_dim=8)  # fmt: skip

    def clf(name: str, **kw) -> Callable[[], nn.Module]:
        return lambda: getattr(T, f"{name}ForSequenceClassification")(getattr(T, f"{name}Config")(**{**bert, **kw}))

    return {
        "BERT": clf("Bert"),
        "RoBERTa": clf("Roberta", pad_token_id=1),
        "XLM-RoBERTa": clf("XLMRoberta", pad_token_id=1),
        "CamemBERT": clf("Camembert", pad_token_id=1),
        "Data2Vec-text": clf("Data2VecText", pad_token_id=1),
        "ERNIE": clf("Ernie"),
        "Megatron-BERT": clf("MegatronBert"),
        "XLM-RoBERTa XL": clf("XLMRobertaXL", pad_token_id=1),
        "ELECTRA": clf("Electra", embedding_size=16),
        "ALBERT": clf("Albert", embedding_size=16),
        "DistilBERT": lambda: T.DistilBertForSequenceClassification(T.DistilBertConfig(vocab_size=31, dim=32,
                                                                                      n_layers=2, n_heads=2,
                                                                                      hidden_dim=37)),
        "DeBERTa": clf("Deberta", relative_attention=True),
        "DeBERTa-v2/v3": lambda: T.DebertaV2ForSequenceClassification(T.DebertaV2Config(**deberta)),
        "MPNet": clf("MPNet"),
        "ModernBERT": clf("ModernBert", pad_token_id=0),
        "ESM": clf("Esm", pad_token_id=1, mask_token_id=2),
        "RemBERT": clf("RemBert", input_embedding_size=16, output_embedding_size=16),
        "RoFormer": clf("RoFormer", embedding_size=32),
        "Longformer": clf("Longformer", attention_window=4, pad_token_id=1),
        "BigBird": clf("BigBird", attention_type="original_full"),
        "MobileBERT": clf("MobileBert", embedding_size=16),
        "I-BERT": clf("IBert", pad_token_id=1),
        "Nystromformer": clf("Nystromformer"),
        "NomicBERT": clf("NomicBert"),
        "GTE": clf("Gte"),
        "jina-embeddings-v3": clf("JinaEmbeddingsV3"),
        "EuroBERT": clf("EuroBert", num_key_value_heads=1, pad_token_id=0),
        "BART": lambda: T.BartForSequenceClassification(T.BartConfig(**bart)),
        "mBART": lambda: T.MBartForSequenceClassification(T.MBartConfig(**bart)),
        "PLBart": lambda: T.PLBartForSequenceClassification(T.PLBartConfig(**bart)),
        "MVP": lambda: T.MvpForSequenceClassification(T.MvpConfig(**bart)),
        "GPT-2": lambda: T.GPT2ForSequenceClassification(T.GPT2Config(vocab_size=31, n_embd=32, n_layer=2,
                                                                      n_head=2, n_positions=64, pad_token_id=0)),
        "T5 (encoder)": lambda: T.T5EncoderModel(T.T5Config(vocab_size=31, d_model=32, d_kv=16, d_ff=37,
                                                            num_layers=2, num_heads=2)),
        "T5 (classifier)": lambda: T.T5ForSequenceClassification(T.T5Config(vocab_size=31, d_model=32, d_kv=16,
                                                                             d_ff=37, num_layers=2, num_heads=2,
                                                                             decoder_start_token_id=0)),
        "UMT5 (classifier)": lambda: T.UMT5ForSequenceClassification(T.UMT5Config(vocab_size=31, d_model=32,
                                                                                 d_kv=16, d_ff=37, num_layers=2,
                                                                                 num_heads=2,
                                                                                 decoder_start_token_id=0)),
        "OPT": lambda: T.OPTForSequenceClassification(T.OPTConfig(vocab_size=31, hidden_size=32, num_hidden_layers=2,
                                                                  ffn_dim=37, num_attention_heads=2, pad_token_id=1)),
        "GPT-NeoX": clf("GPTNeoX", pad_token_id=0),
        "Llama": clf("Llama", num_key_value_heads=1, pad_token_id=0),
        "Mistral": clf("Mistral", num_key_value_heads=1, pad_token_id=0, sliding_window=4),
        "Qwen2": clf("Qwen2", num_key_value_heads=1, pad_token_id=0),
        "Gemma": clf("Gemma", num_key_value_heads=1, pad_token_id=0, head_dim=16),
        "OLMo 3": clf("Olmo3", num_key_value_heads=1, pad_token_id=0),
        "Gemma 3 (image-text)": lambda: T.Gemma3ForSequenceClassification(T.Gemma3Config(
            text_config=dict(bert, num_key_value_heads=1, pad_token_id=0, head_dim=16),
            vision_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                               image_size=16, patch_size=4), mm_tokens_per_image=4, image_token_index=30)),
        "GLM-4": clf("Glm4", num_key_value_heads=1, pad_token_id=0, head_dim=16),
        "Ministral 3": clf("Ministral3", num_key_value_heads=1, pad_token_id=0),
        "Falcon": clf("Falcon"),
        "Granite (base)": lambda: T.GraniteModel(T.GraniteConfig(**bert, num_key_value_heads=1,
                                                                 embedding_multiplier=12.0)),
        "Command R (base)": lambda: T.CohereModel(T.CohereConfig(**bert, num_key_value_heads=1)),
        "Mixtral": clf("Mixtral", num_local_experts=4, **moe),
        "Qwen3-MoE": clf("Qwen3Moe", num_experts=4, head_dim=16, **moe),
        "DeepSeek-V3": clf("DeepseekV3", n_routed_experts=4, kv_lora_rank=8, q_lora_rank=None, qk_rope_head_dim=8,
                           qk_nope_head_dim=8, v_head_dim=16, n_group=1, topk_group=1, **moe),
        "gpt-oss": clf("GptOss", num_local_experts=4, head_dim=16, **moe),
        "OLMoE (base)": lambda: T.OlmoeModel(T.OlmoeConfig(**{**bert, "num_experts": 4, **moe})),
        "Qwen3-Next": clf("Qwen3Next", num_experts=4, head_dim=16, **moe, **linear),
        "Granite 4 (base)": lambda: T.GraniteMoeHybridModel(T.GraniteMoeHybridConfig(**{
            **bert, **moe, "num_local_experts": 4, "layer_types": ["linear_attention", "full_attention"],
            "mamba_n_heads": 4, "mamba_d_head": 16, "mamba_d_state": 8, "mamba_chunk_size": 4})),
        "Jamba": clf("Jamba", num_experts=4, attn_layer_period=2, attn_layer_offset=1, **moe),
        "Falcon-H1 (base)": lambda: T.FalconH1Model(T.FalconH1Config(**bert, mamba_d_ssm=64, mamba_n_heads=4,
                                                                     mamba_d_head=16, mamba_d_state=8,
                                                                     mamba_chunk_size=4)),
        "LFM2 (base)": lambda: T.Lfm2Model(T.Lfm2Config(**bert, layer_types=["conv", "full_attention"])),
        "Qwen2.5-VL (image-text)": lambda: T.Qwen2_5_VLForConditionalGeneration(T.Qwen2_5_VLConfig(
            text_config=dict(bert, pad_token_id=0, head_dim=16, num_key_value_heads=1, rope_scaling={
                "rope_type": "default", "mrope_section": [2, 3, 3]}),
            vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=32,
                               patch_size=4, spatial_merge_size=1, temporal_patch_size=1))),
        "Qwen3.5 (image-text)": lambda: T.Qwen3_5ForSequenceClassification(T.Qwen3_5Config(
            text_config=dict(bert, pad_token_id=0, head_dim=16, intermediate_size=40, **linear),
            vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=32,
                               patch_size=4, spatial_merge_size=1, temporal_patch_size=1))),
        "XLNet": lambda: T.XLNetForSequenceClassification(T.XLNetConfig(vocab_size=31, d_model=32, n_layer=2,
                                                                        n_head=2, d_inner=37)),
        "Funnel": lambda: T.FunnelForSequenceClassification(T.FunnelConfig(vocab_size=31, d_model=32, n_head=2,
                                                                           d_head=16, d_inner=37,
                                                                           block_sizes=[1, 1])),
    }  # fmt: skip


def _row(build: Callable[[], nn.Module]) -> tuple[str, str]:
    import torch

    from alsatian_hf.adapters import split_model

    torch.manual_seed(0)
    try:
        model = build().eval()
        split = split_model(model)
    except Exception as e:  # refused: the reason is the row
        return "refused", _refusal(e)
    try:  # a search splits the skeleton built from the repo's config.json, with meta weights
        skeleton = split_model(_skeleton(model))
        assert [b.keys for b in skeleton.blocks] == [b.keys for b in split.blocks], "its skeleton splits otherwise"
    except Exception as e:
        return "refused", f"its skeleton from config.json: {type(e).__name__}: {e}"[:90]
    kind = "discovered" if split.family.startswith("discovered:") else "adapter"
    return kind, f"{len(split.blocks)} blocks ({split.family})"


def _refusal(e: Exception) -> str:
    """A refusal's reason, without the adapter lookup before it and the advice after it."""
    return str(e).split("discovery failed: ")[-1].split(". Register")[0][:90]


def _skeleton(model: nn.Module) -> nn.Module:
    """`model` as a search builds it: from its saved config.json, with meta weights."""
    import tempfile
    from pathlib import Path

    from alsatian_hf.adapters.skeleton import build_model

    with tempfile.TemporaryDirectory() as folder:
        if hasattr(model, "config"):  # transformers: saved as `save_pretrained` saves it, naming its class
            model.config.architectures = [type(model).__name__]
            model.config.save_pretrained(folder)
        else:
            from timm.models._hub import save_config_for_hf

            save_config_for_hf(model, Path(folder) / "config.json", model_config={"num_classes": model.num_classes})
        return build_model(folder, device="meta", shared=False)


def timm_skeletons() -> dict[str, str]:
    """Builds every model timm registers as a search builds a skeleton (meta weights, real buffers); returns the
    ones that fail or keep a buffer on meta, with why (about 3 minutes)."""
    import timm

    from alsatian_hf.adapters.skeleton import _timm_on_meta

    failed = {}
    for name in timm.list_models():
        try:
            model = _timm_on_meta(lambda: timm.create_model(name, pretrained=False))
            left = [key for key, b in model.named_buffers() if b.is_meta]
            if left:  # a block reading one fails
                failed[name] = f"buffers left on meta: {left[:3]}"
        except Exception as e:
            failed[name] = f"{type(e).__name__}: {e}"[:120]
    return failed


def timm_families(only: list[str] | None = None) -> list[tuple[str, str, str, str]]:
    """One model per timm module (its fewest parameters, at most 320 px) through what a search runs: saved as
    safetensors with BatchNorm statistics a trained model has, built by `build_candidate` (skeleton from the saved
    config, probe, BatchNorm folds, layouts), its blocks loaded and run on two images against the model's
    `forward_head(pre_logits=True)`. Rows: (module, model, `ok`/`refused`/`wrong`/`error`, detail); about 6 min."""
    import tempfile

    import timm
    import torch
    from accelerate import init_empty_weights
    from timm.models._hub import save_for_hf

    from alsatian_hf.candidates import LocalBlockSource, ShapeProbe, build_candidate
    from alsatian_hf.errors import UnsupportedArchitectureError

    probe, rows = ShapeProbe(), []
    for module in timm.list_modules():
        if only and module not in only:
            continue
        sizes = {}
        for name in timm.list_models(module=module):
            try:
                with init_empty_weights(include_buffers=True):
                    model = timm.create_model(name)
            except Exception:  # needs arguments or packages this list does not give
                continue
            if model.pretrained_cfg.get("input_size", (3, 224, 224))[-1] <= 320:
                sizes[name] = sum(p.numel() for p in model.parameters())
        if not sizes:
            continue
        name = min(sizes, key=sizes.get)
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False, num_classes=7).eval()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d) and m.track_running_stats:
                    m.running_mean.normal_(0, 0.1)
                    m.running_var.uniform_(0.5, 2.0)
        x = torch.randn(2, *model.pretrained_cfg.get("input_size", (3, 224, 224)))
        with tempfile.TemporaryDirectory() as folder:
            try:
                save_for_hf(model, folder, safe_serialization=True)
                cand, split = build_candidate(name, folder, LocalBlockSource(folder), input_key=f"families-{name}",
                                              probe_inputs={"pixel_values": x[:1]}, probe=probe)  # fmt: skip
                with torch.inference_mode():
                    want = model.forward_head(model.forward_features(x), pre_logits=True)
                    state = cand.initial_state({"pixel_values": x})
                    for block in cand.blocks:
                        block.load(torch.device("cpu"))
                        state = block.run(state)
                        block.unload()
                err = float((state[0] - want).abs().max() / want.abs().max().clamp_min(1e-6))
                kind = "ok" if err < 1e-3 else "wrong"
                detail = f"{split.family}, {len(cand.blocks)} blocks, {cand.numerics or 'plain'}, rel. error {err:.0e}"
            except UnsupportedArchitectureError as e:
                kind, detail = "refused", _refusal(e)
            except Exception as e:
                kind, detail = "error", f"{type(e).__name__}: {e}"[:120]
        rows.append((module, name, kind, detail))
    return rows


def main(argv: list[str] | None = None) -> None:
    import argparse

    import timm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        help="these architectures alone (names as listed; timm modules with --timm-families)",
    )
    parser.add_argument("--timm-skeletons", action="store_true", help="build every registered timm model's skeleton")
    parser.add_argument("--timm-families", action="store_true", help="one model per timm module, as a search runs it")
    args = parser.parse_args(argv)
    only = args.only
    warnings.filterwarnings("ignore")
    if args.timm_families:
        rows = timm_families(only)
        print("| timm module | model | as searched | detail |\n|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        counts = Counter(kind for _, _, kind, _ in rows)
        print(f"timm families: {len(rows)} modules; {counts['ok']} searched exactly, {counts['refused']} refused, "
              f"{counts['wrong']} wrong, {counts['error']} failing")  # fmt: skip
        return
    if args.timm_skeletons:
        failed = timm_skeletons()
        for name, why in failed.items():
            print(f"| {name} | {why} |")
        total = len(timm.list_models())
        print(f"timm skeletons: {total - len(failed)} of {total} registered models build with meta weights")
        return

    def wanted(name: str) -> bool:
        return only is None or name in only

    rows = [("timm", n, *_row(lambda n=n: timm.create_model(n, pretrained=False, num_classes=7)))
            for n in TIMM if wanted(n)]  # fmt: skip
    rows += [("transformers", n, *_row(build)) for n, build in _transformers().items() if wanted(n)]
    rows += [("transformers text", n, *_row(build)) for n, build in _text().items() if wanted(n)]
    print("| library | architecture | split | blocks or reason |\n|---|---|---|---|")
    for library, name, kind, detail in rows:
        print(f"| {library} | {name} | {kind} | {detail} |")
    for library in ("timm", "transformers", "transformers text"):
        counts = Counter(kind for lib, _, kind, _ in rows if lib == library)
        print(f"{library}: {sum(counts.values())} architectures; {counts['adapter']} by an adapter, "
              f"{counts['discovered']} discovered, {counts['refused']} refused")  # fmt: skip


if __name__ == "__main__":
    main()
