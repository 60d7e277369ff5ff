"""PEFT LoRA adapters as candidates: listed with their base's fine-tunes, merged as PEFT merges them, sharing the
blocks they leave alone, and skipped with the reason when they cannot be merged.

The adapters are written here in the format `PeftModel.save_pretrained` writes (peft is no dependency). The
merge itself was checked bit for bit against peft 0.21's `merge_and_unload` on ViT (Linear and Conv2d layers,
rsLoRA, `alpha_pattern`, `rank_pattern`, `bias="all"/"lora_only"`, `lora_bias`), BERT (Embedding) and a timm
ResNet (3x3 Conv2d); see the CHANGELOG.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.hub import list_candidates
from alsatian_hf.zoo.data import digits


def _write_adapter(folder: Path, base: str, lora: dict, *, config: dict | None = None, whole: dict | None = None,
                   card_base: str | None = None, relation: str = "adapter") -> Path:  # fmt: skip
    """An adapter as PeftModel.save_pretrained writes it: `lora` maps module paths to (A, B)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for module, (a, b) in lora.items():
        tensors[f"base_model.model.{module}.lora_A.weight"] = a
        tensors[f"base_model.model.{module}.lora_B.weight"] = b
    for path, t in (whole or {}).items():
        tensors[f"base_model.model.{path}"] = t
    save_file(tensors, folder / "adapter_model.safetensors", metadata={"format": "pt"})
    cfg = {"peft_type": "LORA", "base_model_name_or_path": base, "r": 4, "lora_alpha": 8, "use_rslora": False,
           "fan_in_fan_out": False, "use_dora": False, "target_modules": sorted({m.rsplit(".", 1)[-1] for m in lora}),
           "revision": None} | (config or {})  # fmt: skip
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    card = f"---\nbase_model: {card_base or base}\nbase_model_relation: {relation}\nlibrary_name: peft\n---\n"
    (folder / "README.md").write_text(card)
    return folder


def _merged_copy(base_folder: Path, out: Path, deltas: dict[str, tuple[torch.Tensor, torch.Tensor, float]]) -> Path:
    """The base checkpoint with W + (B @ A) * scaling at each checkpoint key: the full model PEFT's merge gives."""
    shutil.copytree(base_folder, out)
    state = load_file(out / "model.safetensors")
    for key, (a, b, scaling) in deltas.items():
        w = state[key].float()
        if w.dim() == 4:  # a kxk convolution: conv2d(A^T, B)^T
            delta = torch.nn.functional.conv2d(a.transpose(0, 1), b).transpose(0, 1) * scaling
        else:
            delta = (b @ a) * scaling
        state[key] = w + delta
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    return out


def _pair(g: torch.Generator, out_features: int, in_features: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(rank, in_features, generator=g) * 0.3, torch.randn(out_features, rank, generator=g) * 0.3


@pytest.fixture()
def vit_adapters(hub_root, vit_zoo):
    """Three LoRA adapters of the ViT base in its org: one named as transformers 5 names modules, two with the
    checkpoint's own (transformers 4) names, one of which also adapts the patch embedding's convolution; and a
    quantized copy that listing leaves out. All removed after."""
    base = vit_zoo.repo_ids[0]
    state = load_file(hub_root / base / "model.safetensors")
    g = torch.Generator().manual_seed(0)
    hidden = state["vit.encoder.layer.0.attention.attention.query.weight"].shape[0]
    made = []
    # every layer's query and value, in transformers 5's module names, with rsLoRA
    new = {
        f"vit.layers.{i}.attention.{p}": _pair(g, hidden, hidden, 4) for i in range(3) for p in ("q_proj", "v_proj")
    }
    made.append(_write_adapter(hub_root / "vitorg" / "vit-lora-all", base, new, config={"use_rslora": True}))
    # layer 2's query only, and the patch embedding's 8x8 convolution, in the checkpoint's names
    conv = state["vit.embeddings.patch_embeddings.projection.weight"]
    a_conv = torch.randn(2, conv.shape[1], *conv.shape[2:], generator=g) * 0.1
    b_conv = torch.randn(conv.shape[0], 2, 1, 1, generator=g) * 0.1
    old = {"vit.encoder.layer.2.attention.attention.query": _pair(g, hidden, hidden, 2)}
    made.append(_write_adapter(hub_root / "vitorg" / "vit-lora-late", base, old, config={"r": 2, "lora_alpha": 3},
                               whole={"classifier.weight": torch.zeros(10, hidden)}))  # fmt: skip
    made.append(_write_adapter(hub_root / "vitorg" / "vit-lora-late-conv", base,
                               {**old, "vit.embeddings.patch_embeddings.projection": (a_conv, b_conv)},
                               config={"r": 2, "lora_alpha": 3}))  # fmt: skip
    quantized = hub_root / "vitorg" / "vit-base-int8"
    shutil.copytree(hub_root / base, quantized)
    (quantized / "README.md").write_text(f"---\nbase_model: {base}\nbase_model_relation: quantized\n---\n")
    made.append(quantized)
    yield {"base": base, "new": new, "old": old, "conv": (a_conv, b_conv)}
    for folder in made:
        shutil.rmtree(folder)


def test_lora_adapters_score_as_their_merged_models_and_share_the_blocks_they_leave(
    hub, hub_root, vit_zoo, vit_adapters, tmp_path
):
    base = vit_adapters["base"]
    listed = {c.repo_id: c for c in list_candidates(base_model=base)}
    assert {"vitorg/vit-lora-all", "vitorg/vit-lora-late", "vitorg/vit-lora-late-conv"} <= set(listed)
    assert "vitorg/vit-base-int8" not in listed  # a quantized copy is the base's weights, rounded
    assert all(listed[a].skip_reason is None for a in ("vitorg/vit-lora-all", "vitorg/vit-lora-late"))

    # the merges, computed here from the checkpoint: new names map onto the checkpoint's keys
    rs = 8 / math.sqrt(4)
    to_key = {"q_proj": "attention.query", "v_proj": "attention.value"}
    all_deltas = {}
    for module, (a, b) in vit_adapters["new"].items():
        _, _, i, _, proj = module.split(".")
        all_deltas[f"vit.encoder.layer.{i}.attention.{to_key[proj]}.weight"] = (a, b, rs)
    (a, b), = vit_adapters["old"].values()  # fmt: skip
    late = {"vit.encoder.layer.2.attention.attention.query.weight": (a, b, 3 / 2)}
    merged_all = _merged_copy(hub_root / base, tmp_path / "merged-all", all_deltas)
    merged_late = _merged_copy(hub_root / base, tmp_path / "merged-late", late)
    conv = {"vit.embeddings.patch_embeddings.projection.weight": (*vit_adapters["conv"], 1.5)}
    merged_conv = _merged_copy(hub_root / base, tmp_path / "merged-late-conv", {**late, **conv})

    ids = [base, listed["vitorg/vit-lora-all"], listed["vitorg/vit-lora-late"], listed["vitorg/vit-lora-late-conv"],
           str(merged_all), str(merged_late), str(merged_conv)]  # fmt: skip
    scores = {}
    for strategy in ("alsatian", "base"):
        args = SearchArguments(result_size=1, strategy=strategy, store_dir=str(tmp_path / "store"), batch_size=32,
                               feature_cache=False)  # fmt: skip
        res = ModelSearcher(ids, train_dataset=digits(num_items=80, seed=0), args=args).search()
        assert not res.skipped
        first = res.iterations[0]["scores"]
        assert first["vitorg/vit-lora-all"] == first[str(merged_all)]
        assert first["vitorg/vit-lora-late"] == first[str(merged_late)]
        assert first["vitorg/vit-lora-late-conv"] == first[str(merged_conv)]
        assert len(set(first.values())) > 2  # the adapters changed the features
        scores[strategy] = [it["scores"] for it in res.iterations]
        if strategy == "alsatian":
            # the base and its late adapter run the blocks before layer 2 once; the conv adapter shares none
            assert res.plan["unique_blocks"] < res.plan["total_blocks"]
    # the result names the base commit an adapter was merged onto
    (base_listed,) = [c for c in list_candidates(author="vitorg") if c.repo_id == base]
    args = SearchArguments(result_size=2, store_dir=str(tmp_path / "store"), batch_size=32, feature_cache=False)
    res = ModelSearcher(["vitorg/vit-lora-all", base], train_dataset=digits(num_items=40, seed=0), args=args).search()
    rows = {r["model"]: r for r in res.ranking}
    assert rows["vitorg/vit-lora-all"]["base"] == f"{base}@{base_listed.revision}" and "base" not in rows[base]
    assert scores["alsatian"] == scores["base"]


def test_block_hashes_of_an_adapter_are_the_bases_where_it_changes_nothing(hub, vit_zoo, vit_adapters, tmp_path):
    from alsatian_hf.adapters import split_model
    from alsatian_hf.adapters.skeleton import build_model
    from alsatian_hf.candidates.repos import open_repo
    from alsatian_hf.hub import RangeReader
    from alsatian_hf.store.block_store import BlockStore

    store, reader = BlockStore(tmp_path / "store"), RangeReader()
    opened = {r: open_repo(r, revision=None, store=store, reader=reader)
              for r in (vit_adapters["base"], "vitorg/vit-lora-late", "vitorg/vit-lora-late-conv")}  # fmt: skip
    split = split_model(build_model(opened[vit_adapters["base"]].folder, device="meta"),
                        checkpoint_keys=opened[vit_adapters["base"]].source.keys())  # fmt: skip
    hashes = {r: [o.source.block_hash(split, i) for i in range(len(split.blocks))] for r, o in opened.items()}
    layer2 = next(i for i, b in enumerate(split.blocks) if any(".layer.2." in k for k in b.keys))
    base, late, conv = hashes.values()
    assert late[:layer2] == base[:layer2] and late[layer2] != base[layer2] and late[layer2 + 1 :] == base[layer2 + 1 :]
    assert conv[0] != base[0] and conv[layer2] == late[layer2]  # equal updates of equal blocks: one hash
    (listed,) = [c for c in list_candidates(author="vitorg") if c.repo_id == "vitorg/vit-lora-late"]
    assert opened["vitorg/vit-lora-late"].revision == listed.revision  # the adapter's commit, not its base's


def test_adapters_that_cannot_be_merged_are_skipped_with_the_reason(hub, hub_root, vit_zoo, tmp_path):
    base = vit_zoo.repo_ids[0]
    hidden = load_file(hub_root / base / "model.safetensors")[
        "vit.encoder.layer.0.attention.attention.query.weight"
    ].shape[0]
    g = torch.Generator().manual_seed(1)
    q = "vit.encoder.layer.1.attention.attention.query"
    good = _write_adapter(tmp_path / "good", base, {q: _pair(g, hidden, hidden, 4)})
    # a trainer's path that looks like a repo id, and the card names the base: the card's is opened
    fallback = _write_adapter(tmp_path / "fallback", "models/vit", {q: _pair(g, hidden, hidden, 4)}, card_base=base)
    bad = {
        "dora-misfit": (_write_adapter(tmp_path / "dora-misfit", base, {q: _pair(g, hidden, hidden, 4)},
                                       whole={f"{q}.lora_magnitude_vector": torch.ones(hidden - 1)},
                                       config={"use_dora": True}), f"has {hidden - 1} entries for {hidden} outputs"),
        "ia3": (_write_adapter(tmp_path / "ia3", base, {q: _pair(g, hidden, hidden, 4)}, config={"peft_type": "IA3"}),
                "a PEFT IA3 adapter; only LoRA adapters"),
        "qalora": (_write_adapter(tmp_path / "qalora", base, {q: _pair(g, hidden, hidden, 4)},
                                  config={"use_qalora": True}), "a QA-LoRA adapter; only plain LoRA"),
        "tokens": (_write_adapter(tmp_path / "tokens", base, {q: _pair(g, hidden, hidden, 4)},
                                  config={"trainable_token_indices": [5, 6]}), "with trainable tokens"),
        "pissa": (_write_adapter(tmp_path / "pissa", base, {q: _pair(g, hidden, hidden, 4)},
                                 config={"init_lora_weights": "pissa_niter_4"}), "which changes the base's weights"),
        "pickle": (_write_adapter(tmp_path / "pickle", base, {}), "an adapter_model.bin is never unpickled"),
        "no-base": (_write_adapter(tmp_path / "no-base", "/home/someone/vit", {q: _pair(g, hidden, hidden, 4)},
                                   card_base=None), "names no base model"),
        "gone-base": (_write_adapter(tmp_path / "gone-base", "vitorg/not-there", {q: _pair(g, hidden, hidden, 4)}),
                      "its base model vitorg/not-there cannot be opened"),
        "wrong-shape": (_write_adapter(tmp_path / "wrong-shape", base, {q: _pair(g, hidden, hidden + 3, 4)}),
                        f"LoRA update of {q} is [{hidden}, {hidden + 3}] but the base's"),
        "other-model": (_write_adapter(tmp_path / "other-model", base, {"model.layers.0.self_attn.q_proj":
                                                                         _pair(g, hidden, hidden, 4)}),
                        "none of the adapter's 1 LoRA layers"),
    }  # fmt: skip
    (bad["pickle"][0] / "adapter_model.safetensors").rename(bad["pickle"][0] / "adapter_model.bin")
    readme = bad["no-base"][0] / "README.md"
    readme.write_text(readme.read_text().replace("base_model: /home/someone/vit\n", ""))
    ids = [base, str(good), str(fallback), *(str(folder) for folder, _ in bad.values())]
    args = SearchArguments(result_size=1, store_dir=str(tmp_path / "store"), batch_size=32, feature_cache=False)
    res = ModelSearcher(ids, train_dataset=digits(num_items=80, seed=0), args=args).search()
    assert set(res.skipped) == {str(folder) for folder, _ in bad.values()}
    for folder, reason in bad.values():
        assert reason in res.skipped[str(folder)], (folder.name, res.skipped[str(folder)])
    assert str(good) in res.iterations[0]["scores"] and str(fallback) in res.iterations[0]["scores"]


def test_a_warm_search_of_adapters_asks_the_hub_for_the_listing_alone(hub, vit_zoo, vit_adapters, tmp_path):
    """An adapter's commit keeps the base commit it first opened with, so a repeat search opens both from the
    store and the HF cache."""
    ds = digits(num_items=80, seed=0)
    args = SearchArguments(result_size=1, store_dir=str(tmp_path / "store"), batch_size=32)
    first = ModelSearcher.from_hub(base_model=vit_adapters["base"], train_dataset=ds, args=args).search()
    assert not first.skipped and "vitorg/vit-lora-all" in first.iterations[0]["scores"]
    hub.clear_log()
    second = ModelSearcher.from_hub(base_model=vit_adapters["base"], train_dataset=ds, args=args).search()
    assert second.models == first.models and second.bytes_fetched == 0
    paths = [r.path for r in hub.requests()]
    assert paths and all(p.startswith("/api/models?") for p in paths), paths
    # and with no Hub at all, from the pinned commits
    pinned = [f"{c.repo_id}@{c.revision}" for c in list_candidates(base_model=vit_adapters["base"])]
    script = f"""
import json
from alsatian_hf.search import ModelSearcher, SearchArguments
from alsatian_hf.zoo.data import digits
res = ModelSearcher({pinned!r}, train_dataset=digits(num_items=80, seed=0),
                    args=SearchArguments(result_size=1, batch_size=32, store_dir={str(tmp_path / "store")!r})).search()
print(json.dumps([res.iterations[0]["scores"], res.skipped]))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    offline, skipped = json.loads(out.stdout.strip().splitlines()[-1])
    assert not skipped and offline == first.iterations[0]["scores"]


def test_max_params_counts_an_adapter_as_its_base(hub, vit_zoo, vit_adapters):
    """An adapter's own safetensors hold a few thousand parameters; searched, it is its base's size."""
    (base,) = [c for c in list_candidates(author="vitorg") if c.repo_id == vit_adapters["base"]]
    adapters = {"vitorg/vit-lora-all", "vitorg/vit-lora-late", "vitorg/vit-lora-late-conv"}
    kept = {c.repo_id: c for c in list_candidates(base_model=base.repo_id, max_params=base.num_parameters)}
    assert adapters <= set(kept) and all(kept[a].num_parameters == base.num_parameters for a in adapters)
    assert not adapters & {
        c.repo_id for c in list_candidates(base_model=base.repo_id, max_params=base.num_parameters - 1)
    }


def test_an_adapters_weights_count_as_fetched_bytes_once(hub, hub_root, vit_zoo, vit_adapters, tmp_path):
    """`bytes_fetched` counts the adapter file's download (the HF cache serves it afterwards)."""
    base, name = vit_adapters["base"], "vitorg/vit-lora-counted"
    folder = _write_adapter(hub_root / name, base, vit_adapters["old"], config={"r": 2, "lora_alpha": 3})
    try:
        ds = digits(num_items=40, seed=0)
        args = SearchArguments(result_size=1, store_dir=str(tmp_path / "store"), batch_size=32, feature_cache=False)
        ModelSearcher([base], train_dataset=ds, args=args).search()  # the base's blocks into the store
        first = ModelSearcher([base, name], train_dataset=ds, args=args).search()
        assert first.bytes_fetched == (folder / "adapter_model.safetensors").stat().st_size
        assert ModelSearcher([base, name], train_dataset=ds, args=args).search().bytes_fetched == 0
    finally:
        shutil.rmtree(folder)


def test_a_timm_convnet_adapter_scores_as_its_merged_copy(hub, hub_root, tiny_zoo, tmp_path):
    """LoRA on a timm ResNet's 3x3 convolutions: the merged weights are then folded with their BatchNorms and
    laid out channels-last, as a full checkpoint's are. peft leaves `base_model_name_or_path` empty for timm
    models, so the card names the base."""
    base = tiny_zoo.repo_ids[0]
    state = load_file(hub_root / base / "model.safetensors")
    convs = sorted(k for k, v in state.items() if k.startswith("layer") and v.dim() == 4 and v.shape[-1] == 3)[:3]
    g = torch.Generator().manual_seed(2)
    lora, deltas = {}, {}
    for key in convs:
        out_c, in_c, kh, kw = state[key].shape
        a, b = torch.randn(2, in_c, kh, kw, generator=g) * 0.2, torch.randn(out_c, 2, 1, 1, generator=g) * 0.2
        lora[key.removesuffix(".weight")] = (a, b)
        deltas[key] = (a, b, 4 / 2)
    adapter = _write_adapter(tmp_path / "resnet-lora", "", lora, config={"r": 2, "lora_alpha": 4}, card_base=base)
    merged = _merged_copy(hub_root / base, tmp_path / "resnet-merged", deltas)
    scores = {}
    for strategy in ("alsatian", "base"):
        args = SearchArguments(result_size=1, strategy=strategy, image_size=32, store_dir=str(tmp_path / "store"),
                               batch_size=32, feature_cache=False)  # fmt: skip
        res = ModelSearcher([base, str(adapter), str(merged)], train_dataset=digits(num_items=80, seed=0),
                            args=args).search()  # fmt: skip
        assert not res.skipped
        first = res.iterations[0]["scores"]
        assert first[str(adapter)] == first[str(merged)]
        scores[strategy] = [it["scores"] for it in res.iterations]
    assert scores["alsatian"] == scores["base"]


def test_a_dora_adapter_scores_as_its_merged_copy(hub, hub_root, vit_zoo, tmp_path):
    """DoRA rescales each output row of W + s * B @ A to its learned magnitude (peft's `DoraLinearVariant.merge`);
    merged here from the formula, in the checkpoint's key space."""
    base = vit_zoo.repo_ids[0]
    state = load_file(hub_root / base / "model.safetensors")
    g = torch.Generator().manual_seed(3)
    lora, whole, deltas = {}, {}, {}
    for i in range(3):
        module = f"vit.encoder.layer.{i}.attention.attention.value"
        w = state[module + ".weight"].float()
        a, b = _pair(g, *w.shape, 4)
        magnitude = torch.rand(w.shape[0], generator=g) + 0.5
        lora[module], whole[module + ".lora_magnitude_vector"] = (a, b), magnitude
        deltas[module + ".weight"] = (a, b, magnitude)
    adapter = _write_adapter(tmp_path / "dora", base, lora, whole=whole, config={"use_dora": True})
    merged = tmp_path / "dora-merged"
    shutil.copytree(hub_root / base, merged)
    for key, (a, b, magnitude) in deltas.items():
        w = state[key].float()
        delta = (b @ a) * (8 / 4)
        state[key] = (magnitude / torch.linalg.norm(w + delta, dim=1)).view(-1, 1) * (w + delta)
    save_file(state, merged / "model.safetensors", metadata={"format": "pt"})
    args = SearchArguments(result_size=1, store_dir=str(tmp_path / "store"), batch_size=32, feature_cache=False)
    res = ModelSearcher(
        [base, str(adapter), str(merged)], train_dataset=digits(num_items=80, seed=0), args=args
    ).search()
    assert not res.skipped
    first = res.iterations[0]["scores"]
    assert first[str(adapter)] == first[str(merged)]


def test_a_lora_update_of_a_fused_qkv_part_is_skipped_not_dropped(hub, hub_root, letters_tokenizer, tmp_path):
    """GTE saves each layer's q, k and v as one tensor, which the search cuts into the model's three; a LoRA
    update of one of them (`k_proj`) has no checkpoint tensor of its own to merge into. It is skipped saying so,
    where leaving it out would have scored the base under the adapter's name."""
    from transformers import GteConfig

    from alsatian_hf.zoo import TransformersSource, ZooSpec, build_zoo
    from alsatian_hf.zoo.data import newsgroups

    config = GteConfig(vocab_size=57, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=37, max_position_embeddings=64, num_labels=3)  # fmt: skip
    source = TransformersSource(config=config, auto_class="AutoModelForSequenceClassification",
                                processor=letters_tokenizer, pipeline_tag="text-classification")  # fmt: skip
    zoo = build_zoo(ZooSpec("lorafused", source, num_models=1, seed=0), hub_root)
    try:
        base = zoo.repo_ids[0]
        g = torch.Generator().manual_seed(0)
        fused = _write_adapter(tmp_path / "k", base, {"gte.layers.1.self_attn.k_proj": _pair(g, 32, 32, 4)})
        args = SearchArguments(result_size=1, max_length=16, store_dir=str(tmp_path / "store"), batch_size=32,
                               feature_cache=False)  # fmt: skip
        data = newsgroups(num_items=60, seed=0, categories=["sci.space", "rec.autos", "talk.politics.guns"])
        res = ModelSearcher([base, str(fused)], train_dataset=data, args=args).search()
        assert "updates a part of a fused checkpoint tensor" in res.skipped[str(fused)]
        assert list(res.iterations[0]["scores"]) == [base]
    finally:
        shutil.rmtree(hub_root / "lorafused", ignore_errors=True)


def test_a_lora_adapter_of_a_mixture_of_experts_updates_an_expert_before_the_experts_merge(
    hub, hub_root, letters_tokenizer, tmp_path
):
    """Mixtral's LoRA fine-tunes adapt attention and each expert's w1, w2, w3, which the checkpoint saves apart
    and the search merges at load: an update lands on its expert's checkpoint tensor, and the adapter scores as
    its merged copy. An update of the merged tensor itself names no one checkpoint tensor, and is skipped."""
    from transformers import MixtralConfig, MixtralForSequenceClassification

    from alsatian_hf.zoo.data import newsgroups

    tok = letters_tokenizer
    config = MixtralConfig(vocab_size=57, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                           max_position_embeddings=64, num_labels=3, pad_token_id=tok.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    base = "loramoe/base"
    MixtralForSequenceClassification(config).save_pretrained(hub_root / base)
    tok.save_pretrained(hub_root / base)
    try:
        g = torch.Generator().manual_seed(0)
        lora = {"model.layers.1.self_attn.q_proj": _pair(g, 32, 32, 4),  # the model's name
                "model.layers.1.block_sparse_moe.experts.2.w1": _pair(g, 40, 32, 4)}  # the checkpoint's  # fmt: skip
        adapter = _write_adapter(tmp_path / "lora", base, lora)
        merged = _merged_copy(hub_root / base, tmp_path / "merged", {
            "model.layers.1.self_attn.q_proj.weight": (*lora["model.layers.1.self_attn.q_proj"], 2.0),
            "model.layers.1.block_sparse_moe.experts.2.w1.weight": (
                *lora["model.layers.1.block_sparse_moe.experts.2.w1"], 2.0),
        })  # fmt: skip
        stacked = _write_adapter(tmp_path / "stacked", base, {}, whole={
            "model.layers.1.mlp.experts.gate_up_proj": torch.zeros(4, 80, 32)})  # fmt: skip
        args = SearchArguments(result_size=1, max_length=16, store_dir=str(tmp_path / "store"), batch_size=32,
                               feature_cache=False)  # fmt: skip
        data = newsgroups(num_items=60, seed=0, categories=["sci.space", "rec.autos", "talk.politics.guns"])
        res = ModelSearcher([base, str(adapter), str(merged), str(stacked)], train_dataset=data, args=args).search()
        assert "matches several tensors of the base" in res.skipped[str(stacked)], res.skipped
        first = res.iterations[0]["scores"]
        assert first[str(adapter)] == first[str(merged)] != first[base]
    finally:
        shutil.rmtree(hub_root / "loramoe", ignore_errors=True)
