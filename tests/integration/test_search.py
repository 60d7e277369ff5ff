"""ModelSearcher end to end against the local hub: both modalities, the CLI, the demo, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel

from alsatian_hf import ModelSearcher, SearchArguments, SearchResult
from alsatian_hf.candidates import LocalBlockSource
from alsatian_hf.errors import ConfigurationError, DatasetError
from alsatian_hf.search import SearchCallback
from alsatian_hf.zoo import ZooSpec, build_zoo
from alsatian_hf.zoo.data import digits, fashion_mnist, newsgroups


ROOT = Path(__file__).resolve().parents[2]


def _args(tmp_path, **kw):
    base = dict(
        result_size=2, image_size=32, store_dir=str(tmp_path / "store"), batch_size=32, scorer_kwargs={"epochs": 20}
    )
    base.update(kw)
    return SearchArguments(**base)


@pytest.fixture(scope="module")
def minilm_zoo(hub_root):
    from alsatian_hf.zoo.minilm import minilm_source

    return build_zoo(
        ZooSpec(
            "textorg", minilm_source(num_labels=4), num_models=4, distribution="top_layers", seed=0, name="minilm"
        ),
        hub_root,
    )


@pytest.mark.slow
def test_image_search_fashion_mnist_matches_base(hub, tiny_zoo, tmp_path):
    ds = fashion_mnist(num_items=200, seed=1)
    seen = []

    class Recorder(SearchCallback):
        def on_iteration_end(self, *, iteration, scores, survivors):
            seen.append((iteration, survivors))

    res = ModelSearcher.from_hub(
        author="tiny", train_dataset=ds, args=_args(tmp_path), callbacks=[Recorder()]
    ).search()
    base = ModelSearcher.from_hub(author="tiny", train_dataset=ds, args=_args(tmp_path, strategy="base")).search()
    shift = ModelSearcher.from_hub(author="tiny", train_dataset=ds, args=_args(tmp_path, strategy="shift")).search()
    assert res.models == base.models == shift.models and len(res.models) == 2
    assert [it["survivors"] for it in res.iterations] == [it["survivors"] for it in base.iterations]
    assert seen == [(it["iteration"], it["survivors"]) for it in res.iterations]
    assert res.plan["unique_blocks"] < res.plan["total_blocks"]
    # the report round-trips
    res.save(tmp_path / "report")
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"result.json", "result.png", "summary.md"}
    loaded = SearchResult.load(tmp_path / "report")
    assert loaded.models == res.models and loaded.iterations == json.loads(json.dumps(res.iterations))
    assert list(res.to_pandas()["model"]) == res.models


@pytest.mark.slow
def test_text_search_minilm_on_newsgroups_matches_base(hub, minilm_zoo, tmp_path):
    cats = ["comp.graphics", "rec.sport.hockey", "sci.space", "talk.politics.guns"]
    ds = newsgroups(num_items=120, seed=0, categories=cats)
    args = dict(max_length=48, scorer="knn", scorer_kwargs={})
    res = ModelSearcher.from_hub(author="textorg", train_dataset=ds, args=_args(tmp_path, **args)).search()
    base = ModelSearcher.from_hub(
        author="textorg", train_dataset=ds, args=_args(tmp_path, strategy="base", **args)
    ).search()
    assert not res.skipped and res.models == base.models and len(res.models) == 2
    assert res.dataset["modality"] == "text"


def test_max_length_beyond_a_models_positions_is_cut_to_them(hub, tiny_bert_repo, tmp_path, caplog):
    """The tiny BERT has 64 positions: `max_length=100` used to skip it ("The size of tensor a (100) must match
    the size of tensor b (64)"); its texts are cut at 64 instead, as `max_length=64` cuts them."""
    data = newsgroups(num_items=60, seed=0, categories=["sci.space", "rec.autos"])
    runs = {}
    for length in (100, 64):
        args = _args(tmp_path, max_length=length, result_size=1, feature_cache=False)
        with caplog.at_level("INFO", logger="alsatian_hf"):
            runs[length] = ModelSearcher(tiny_bert_repo.repo_ids, train_dataset=data, args=args).search()
        assert not runs[length].skipped
    assert [it["scores"] for it in runs[100].iterations] == [it["scores"] for it in runs[64].iterations]
    assert "`max_length` 100 is more than its 64 positions; its texts are cut at 64." in caplog.text


def _same_group_pairs(num_items: int):
    """A sentence-pair target from 20 Newsgroups: are two posts from the same group? Half the pairs are."""
    from datasets import ClassLabel, Dataset, Features, Value

    posts = newsgroups(num_items=2 * num_items, seed=0, categories=["sci.space", "rec.autos", "talk.politics.guns"])
    texts, groups = posts["text"], posts["label"]
    by_group = {g: [i for i, x in enumerate(groups) if x == g] for g in set(groups)}
    rows = {"first": [], "second": [], "same": []}
    for i in range(num_items):
        same = i % 2 == 0
        partners = by_group[groups[i]] if same else [j for j, g in enumerate(groups) if g != groups[i]]
        j = partners[(7 * i + 1) % len(partners)]
        rows["first"].append(texts[i])
        rows["second"].append(texts[j])
        rows["same"].append(int(groups[j] == groups[i]))
    features = Features({"first": Value("string"), "second": Value("string"), "same": ClassLabel(names=["no", "yes"])})
    return Dataset.from_dict(rows, features=features)


def test_sentence_pairs_are_tokenized_together_and_rank_alike_in_every_strategy(hub, hub_root, minilm_zoo, tmp_path):
    """NLI- or paraphrase-style targets: `text_column=(a, b)` tokenizes each pair as `tokenizer(a, b)` does
    ([CLS] a [SEP] b [SEP], b's token types 1), and the search reads the pair, not its first text alone."""
    from transformers import AutoTokenizer

    from alsatian_hf.candidates.processors import text_processor

    pairs = _same_group_pairs(60)
    with pytest.raises(DatasetError, match=r"text_column=\('first', 'second'\)\` for sentence pairs"):
        ModelSearcher(minilm_zoo.repo_ids, train_dataset=pairs)
    folder = hub_root / minilm_zoo.repo_ids[0]
    encoded = text_processor(folder, 48).fn(list(zip(pairs["first"][:4], pairs["second"][:4])))
    reference = AutoTokenizer.from_pretrained(folder)(pairs["first"][:4], pairs["second"][:4], padding="max_length",
                                                      truncation=True, max_length=48, return_tensors="pt")  # fmt: skip
    assert all(torch.equal(encoded[k], reference[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    assert encoded["token_type_ids"].any()
    scores = {}
    for strategy in ("alsatian", "base"):
        args = _args(tmp_path, max_length=48, result_size=1, strategy=strategy)
        res = ModelSearcher(minilm_zoo.repo_ids, train_dataset=pairs, text_column=("first", "second"),
                            args=args).search()  # fmt: skip
        assert not res.skipped and res.dataset["modality"] == "text" and res.dataset["inputs"] == ["first", "second"]
        assert len(set(res.iterations[0]["scores"].values())) > 1
        scores[strategy] = [it["scores"] for it in res.iterations]
    assert scores["alsatian"] == scores["base"]
    alone = ModelSearcher(minilm_zoo.repo_ids, train_dataset=pairs, text_column="first",
                          args=_args(tmp_path, max_length=48, result_size=1)).search()  # fmt: skip
    assert [it["scores"] for it in alone.iterations] != scores["alsatian"]  # the feature cache keeps them apart
    for bad, problem in (
        (("first", "first"), "pass one column of texts, or two"),
        (("first", "second", "first"), "pass one column of texts, or two"),
        (("first", "same"), "Text column `same` holds ClassLabel"),
        (("first", "third"), "Column `third` is not in the dataset"),
    ):
        with pytest.raises(DatasetError, match=problem):
            ModelSearcher(minilm_zoo.repo_ids, train_dataset=pairs, text_column=bad)
    with pytest.raises(DatasetError, match="`eval_dataset` lacks \\['second'\\]"):
        ModelSearcher(minilm_zoo.repo_ids, train_dataset=pairs, text_column=("first", "second"),
                      eval_dataset=pairs.remove_columns("second"))  # fmt: skip


def test_the_cli_takes_a_sentence_pair_as_two_comma_separated_columns(hub, tiny_bert_repo, tmp_path):
    pairs = _same_group_pairs(40)
    pairs.save_to_disk(str(tmp_path / "ds"))
    cmd = [sys.executable, "-m", "alsatian_hf.cli", "search", "--models", ",".join(tiny_bert_repo.repo_ids),
           "--dataset", str(tmp_path / "ds"), "--text-column", "first,second", "--max-length", "48",
           "--result-size", "1", "--batch-size", "32", "--scorer-kwargs", '{"epochs": 20}', "--store-dir",
           str(tmp_path / "store"), "--output-dir", str(tmp_path / "out")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    api = ModelSearcher(tiny_bert_repo.repo_ids, train_dataset=pairs, text_column=("first", "second"),
                        args=_args(tmp_path, max_length=48, result_size=1)).search()  # fmt: skip
    cli = SearchResult.load(tmp_path / "out")
    assert [it["scores"] for it in cli.iterations] == [it["scores"] for it in api.iterations]


@pytest.fixture(scope="module")
def deberta_zoo(hub_root, letters_tokenizer):
    """Tiny DeBERTa-v3-like classifiers (relative positions in buckets, LayerNorm'd relative embeddings) with a
    BERT tokenizer: a base and fine-tunes of its top layers."""
    from transformers import DebertaV2Config

    from alsatian_hf.zoo import TransformersSource

    config = DebertaV2Config(
        vocab_size=57, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64, relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm",
        pos_att_type=["p2c", "c2p"], position_biased_input=False, type_vocab_size=0, num_labels=3,
    )  # fmt: skip
    source = TransformersSource(
        config=config,
        auto_class="AutoModelForSequenceClassification",
        processor=letters_tokenizer,
        pipeline_tag="text-classification",
    )
    yield build_zoo(ZooSpec("debertaorg", source, num_models=4, distribution="top_layers", seed=0), hub_root)
    shutil.rmtree(hub_root / "debertaorg")  # the session hub's listings stay as other tests expect them


def test_deberta_layers_share_only_behind_the_relative_embeddings_they_read(hub, hub_root, deberta_zoo, tmp_path):
    """Every DeBERTa layer reads the encoder's relative-position embeddings, so each layer block hashes them
    too: a fine-tune that changed only them shares the embeddings block and none of the layers, and its
    features are its own. Fine-tunes of the top layers share the layers below."""
    from safetensors.torch import load_file, save_file

    assert deberta_zoo.unique_blocks == deberta_zoo.expected_unique_blocks  # the recipe left the shared ones be
    base = deberta_zoo.repo_ids[0]
    moved = tmp_path / "deberta-new-relative-embeddings"
    shutil.copytree(hub_root / base, moved)
    tensors = load_file(moved / "model.safetensors")
    rel = tensors["deberta.encoder.rel_embeddings.weight"]  # a shift of all of it would vanish in its LayerNorm
    rel += torch.randn(rel.shape, generator=torch.Generator().manual_seed(0))
    save_file(tensors, moved / "model.safetensors", metadata={"format": "pt"})
    data = newsgroups(num_items=60, seed=0, categories=["sci.space", "rec.autos", "talk.politics.guns"])
    runs = {}
    for ids in (deberta_zoo.repo_ids, [*deberta_zoo.repo_ids, str(moved)]):
        for strategy in ("alsatian", "shift", "base"):
            args = _args(
                tmp_path,
                strategy=strategy,
                max_length=32,
                result_size=1,
                feature_cache=False,
                scorer="logme",
                scorer_kwargs={},
            )
            runs[len(ids), strategy] = ModelSearcher(ids, train_dataset=data, args=args).search()
    for n in (4, 5):
        first = runs[n, "alsatian"]
        assert not first.skipped
        for strategy in ("shift", "base"):
            assert [it["scores"] for it in runs[n, strategy].iterations] == [it["scores"] for it in first.iterations]
    assert runs[4, "alsatian"].plan["unique_blocks"] < runs[4, "alsatian"].plan["total_blocks"]
    # the moved copy adds its three layers (its embeddings and empty read-out are the base's)
    assert runs[5, "alsatian"].plan["unique_blocks"] == runs[4, "alsatian"].plan["unique_blocks"] + 3
    scores = runs[5, "alsatian"].iterations[0]["scores"]
    assert scores[str(moved)] != scores[base]


def test_a_discovered_timm_family_is_searched_from_the_hub_alike_in_every_strategy(hub, hub_root, tmp_path):
    """RegNet has no block list (its stages are attributes s1..s4): discovery splits it as the modules
    `forward_features` calls, traced on the meta skeleton the engine runs. Its fine-tunes share the blocks
    below the ones they changed, and every strategy ranks alike."""
    from alsatian_hf.zoo import TimmSource

    try:
        zoo = build_zoo(ZooSpec("regnetorg", TimmSource("regnetx_002", model_args={"num_classes": 10}),
                                num_models=4, distribution="top_layers", seed=0), hub_root)  # fmt: skip
        assert zoo.unique_blocks == zoo.expected_unique_blocks
        runs = {}
        for strategy in ("alsatian", "base"):
            args = _args(tmp_path, strategy=strategy, result_size=1, scorer="logme", scorer_kwargs={})
            runs[strategy] = ModelSearcher(
                zoo.repo_ids, train_dataset=digits(num_items=60, seed=0), args=args
            ).search()
            assert not runs[strategy].skipped
        assert [it["scores"] for it in runs["alsatian"].iterations] == [it["scores"] for it in runs["base"].iterations]
        plan = runs["alsatian"].plan
        assert plan["unique_blocks"] < plan["total_blocks"]
    finally:
        shutil.rmtree(hub_root / "regnetorg", ignore_errors=True)


@pytest.mark.parametrize(
    "arch, model_args",
    [
        ("swinv2_tiny_window8_256", dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2), img_size=64,
                                         window_size=4, pretrained_cfg_overlay=dict(input_size=(3, 64, 64)))),
        ("vit_tiny_r_s16_p8_224", dict(depth=2, img_size=64)),
        ("swin_tiny_patch4_window7_224", dict(embed_dim=16, depths=(2, 1, 2, 1), num_heads=(1, 1, 2, 2), img_size=56,
                                              pretrained_cfg_overlay=dict(input_size=(3, 56, 56)))),
    ],
)  # fmt: skip
def test_timm_models_that_compute_buffers_from_their_weights_are_searched_alike_in_every_strategy(
    hub, hub_root, tmp_path, arch, model_args
):
    """Swin V2 computes its relative-position tables on its weights' device, the hybrid ViT runs its ResNet stem to
    learn its feature size: both failed to build the skeleton a search runs on (meta weights). Swin computes its
    shifted-window masks there, which were left on meta. Every candidate was lost; their fine-tunes are now
    searched, sharing the blocks below the ones they changed."""
    from alsatian_hf.zoo import TimmSource

    try:
        zoo = build_zoo(ZooSpec("computedorg", TimmSource(arch, model_args={"num_classes": 10, **model_args}),
                                num_models=3, distribution="top_layers", seed=0), hub_root)  # fmt: skip
        assert zoo.unique_blocks == zoo.expected_unique_blocks
        size = model_args["img_size"]
        first = _alike_in_alsatian_and_base(zoo.repo_ids, digits(num_items=40, seed=0), tmp_path, image_size=size)
        assert len(set(first["scores"].values())) == 3
    finally:
        shutil.rmtree(hub_root / "computedorg", ignore_errors=True)


def test_densenet_fine_tunes_are_searched_with_their_batchnorms_folded(hub, hub_root, tmp_path):
    """DenseNet's probe paired a BatchNorm with a convolution whose dropped output's id its input had taken, and
    failed folding them: every candidate was skipped."""
    from alsatian_hf.zoo import TimmSource

    source = TimmSource("densenet121", model_args={"num_classes": 10, "growth_rate": 8, "block_config": (2, 2, 2, 2)})
    try:
        zoo = build_zoo(ZooSpec("densorg", source, num_models=3, distribution="top_layers", seed=0), hub_root)
        first = _alike_in_alsatian_and_base(zoo.repo_ids, digits(num_items=40, seed=0), tmp_path)
        assert len(set(first["scores"].values())) == 3
    finally:
        shutil.rmtree(hub_root / "densorg", ignore_errors=True)


def test_timm_models_fine_tuned_with_transformers_share_their_timm_base(hub, hub_root, tmp_path):
    """A timm model fine-tuned with transformers' Trainer is saved by `TimmWrapperForImageClassification`: its
    config names the timm `architecture` under `model_type: timm_wrapper`, and its tensors carry the wrapper's
    `timm_model.` prefix. It is searched as the timm model it wraps, sharing the blocks it left alone with its
    timm base."""
    import timm
    from timm.models._hub import save_config_for_hf
    from transformers import TimmWrapperForImageClassification

    from alsatian_hf.zoo.builder import save_state

    torch.manual_seed(0)
    base = timm.create_model("test_resnet", pretrained=False, num_classes=5).eval()
    ids = ["tworg/base", "tworg/ft0", "tworg/ft1"]
    try:
        (hub_root / ids[0]).mkdir(parents=True)
        save_state(base.state_dict(), hub_root / ids[0])
        save_config_for_hf(base, hub_root / ids[0] / "config.json")
        config = json.loads((hub_root / ids[0] / "config.json").read_text())
        del config["model_args"]  # as timm's own Hub repos are saved; TimmWrapper passes num_classes itself
        (hub_root / ids[0] / "config.json").write_text(json.dumps(config))
        for repo in ids[1:]:
            tuned = TimmWrapperForImageClassification.from_pretrained(hub_root / ids[0])
            with torch.no_grad():
                for p in tuned.timm_model.layer4.parameters():
                    p.add_(0.05 * torch.randn_like(p))
            tuned.save_pretrained(hub_root / repo)
        saved = json.loads((hub_root / ids[1] / "config.json").read_text())
        assert saved["model_type"] == "timm_wrapper" and saved["model_args"] is None
        first = _alike_in_alsatian_and_base(ids, digits(num_items=80, seed=0), tmp_path, image_size=32)
        assert len(set(first["scores"].values())) == 3
        # stem and layer1-3 hash alike in all three (the wrapper's config keys do not part them), three layer4s,
        # and the weightless read-out
        assert len(first["block_time"]) == 4 + 3 + 1
        # one built from a bare TimmWrapperConfig names its tensors under `timm_model.`: skipped saying so
        from transformers import TimmWrapperConfig

        bare = TimmWrapperForImageClassification(TimmWrapperConfig(architecture="test_resnet", num_labels=3))
        bare.save_pretrained(hub_root / "tworg" / "bare")
        args = _args(tmp_path, result_size=1, feature_cache=False, image_size=32)
        res = ModelSearcher([ids[0], "tworg/bare"], train_dataset=digits(num_items=80, seed=0), args=args).search()
        assert "saved by transformers' TimmWrapper built from a bare config" in res.skipped["tworg/bare"]
    finally:
        shutil.rmtree(hub_root / "tworg", ignore_errors=True)


def test_transformers_image_models_and_preprocessing_once_per_config(hub, vit_zoo, tmp_path):
    ds = digits(num_items=80, seed=0)
    res = ModelSearcher(vit_zoo.repo_ids, train_dataset=ds, args=_args(tmp_path, image_size=None)).search()
    assert not res.skipped and len(res.models) == 2
    assert len(res.plan["input_keys"]) == 1  # one processor config for all five models


def test_a_headless_base_without_a_pooler_scores_as_its_classifier_and_a_missing_tensor_skips(
    hub, hub_root, vit_zoo, tmp_path
):
    """A bare ViTModel saved without a pooler (from a classifier's `.vit`, as ViT bases often are) reads out
    [CLS] as its fine-tunes do; it used to run the pooler with no weights and fail the whole search. A
    checkpoint that lacks a tensor a block needs is skipped with its name."""
    from safetensors.torch import load_file, save_file
    from transformers import ViTForImageClassification

    base = vit_zoo.repo_ids[0]
    headless = tmp_path / "vit-headless"
    ViTForImageClassification.from_pretrained(hub_root / base).vit.save_pretrained(headless)
    shutil.copy(hub_root / base / "preprocessor_config.json", headless)
    broken = tmp_path / "vit-lacks-a-tensor"
    shutil.copytree(hub_root / vit_zoo.repo_ids[1], broken)
    tensors = load_file(broken / "model.safetensors")
    del tensors[next(k for k in sorted(tensors) if ".layer.1." in k)]
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    ids = [*vit_zoo.repo_ids, str(headless), str(broken)]
    scores = {}
    for strategy in ("alsatian", "base"):
        args = _args(tmp_path, image_size=None, strategy=strategy, result_size=1, feature_cache=False)
        res = ModelSearcher(ids, train_dataset=digits(num_items=80, seed=0), args=args).search()
        assert list(res.skipped) == [str(broken)]
        assert "the checkpoint lacks 1 of block 'layer.1''s tensors" in res.skipped[str(broken)]
        first = res.iterations[0]["scores"]
        assert first[str(headless)] == first[base]
        scores[strategy] = [it["scores"] for it in res.iterations]
    assert scores["alsatian"] == scores["base"]


def _alike_in_alsatian_and_base(repos, data, tmp_path, name: str = "store", **kw) -> dict:
    """Searches `repos` with `alsatian` and with `base` (LogME, whose scores rarely tie; no feature cache) and
    checks that nothing is skipped, that every iteration scores alike, and that `alsatian` shares blocks.
    Returns `alsatian`'s first iteration."""
    runs = {}
    for strategy in ("alsatian", "base"):
        args = _args(tmp_path, strategy=strategy, result_size=1, scorer="logme", scorer_kwargs={}, feature_cache=False,
                     store_dir=str(tmp_path / f"{name}-{strategy}"), **kw)  # fmt: skip
        runs[strategy] = ModelSearcher(repos, train_dataset=data, args=args).search()
        assert not runs[strategy].skipped
    assert [it["scores"] for it in runs["alsatian"].iterations] == [it["scores"] for it in runs["base"].iterations]
    first = runs["alsatian"].iterations[0]
    assert first["block_executions"] < runs["base"].iterations[0]["block_executions"]
    return first


def _fetched_tensors(hub, hub_root: Path, repo: str) -> set[str]:
    """The tensors of `repo` whose bytes any logged range request read."""
    from alsatian_hf._safetensors import read_file_header

    fetched = set()
    for r in hub.requests(kind="resolve"):
        parts = r.path.split("?")[0].strip("/").split("/")
        if not r.range or "/".join(parts[:2]) != repo or not parts[-1].endswith(".safetensors"):
            continue
        start, end = map(int, r.range.removeprefix("bytes=").split("-"))
        header, data = read_file_header(hub_root / repo / "/".join(parts[4:]))
        fetched |= {
            k for k, m in header.items() if start < data + m["data_offsets"][1] and data + m["data_offsets"][0] <= end
        }
    return fetched


def _three_groups():
    return newsgroups(num_items=60, seed=0, categories=["sci.space", "rec.autos", "talk.politics.guns"])


def test_siglip2_classifiers_are_searched_on_their_naflex_patches_beside_their_base(hub, hub_root, tmp_path):
    """google/siglip2-* has many classification fine-tunes. Its processor cuts each image, at its own aspect ratio,
    into at most `max_num_patches` patches, padded, with a patch mask and a grid per image (NaFlex): the search
    keeps all three, shares the base's tower with its fine-tunes, and never fetches the text tower."""
    from transformers import Siglip2Config, Siglip2ForImageClassification, Siglip2ImageProcessor, Siglip2Model

    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, patch_size=8,
                  num_patches=16)  # fmt: skip
    text = dict(vocab_size=31, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    config = Siglip2Config(vision_config=vision, text_config=text)
    processor = Siglip2ImageProcessor(patch_size=8, max_num_patches=16)
    torch.manual_seed(0)
    base = Siglip2Model(config)
    tuned = []
    for i in range(2):  # classifiers that fine-tuned the last layer alone, on two label sets
        model = Siglip2ForImageClassification(Siglip2Config(vision_config=vision, text_config=text, num_labels=3 + i))
        model.vision_model.load_state_dict(base.vision_model.state_dict())
        with torch.no_grad():
            for p in model.vision_model.encoder.layers[1].parameters():
                p.add_(0.05 * torch.randn_like(p))
        tuned.append(model)
    ids = ["s2org/base", "s2org/ft0", "s2org/ft1"]
    try:
        for repo, model in zip(ids, [base, *tuned]):
            model.save_pretrained(hub_root / repo)
            processor.save_pretrained(hub_root / repo)
        ds = digits(num_items=80, seed=0)
        hub.clear_log()
        first = _alike_in_alsatian_and_base(ids, ds, tmp_path, image_size=None)
        fetched = _fetched_tensors(hub, hub_root, ids[0])
        assert fetched and not [k for k in fetched if "text_model" in k]
        assert len(set(first["scores"].values())) == 3
        # one block each for all three (embeddings, first layer, the read-out's norm), and three second layers
        assert len(first["block_time"]) == 3 + 3
        # a square image_size asks for that many pixels a side: at 16 px, (16 / 8)^2 = 4 patches, as a processor
        # saved with that budget cuts them
        args = _args(tmp_path, image_size=16, result_size=1, feature_cache=False, scorer="logme", scorer_kwargs={})
        at_16 = ModelSearcher(ids, train_dataset=ds, args=args).search().iterations[0]["scores"]
        for repo in ids:
            Siglip2ImageProcessor(patch_size=8, max_num_patches=4).save_pretrained(hub_root / repo)
        args = _args(tmp_path, image_size=None, result_size=1, feature_cache=False, scorer="logme", scorer_kwargs={},
                     store_dir=str(tmp_path / "store-4"))  # fmt: skip
        assert at_16 == ModelSearcher(ids, train_dataset=ds, args=args).search().iterations[0]["scores"]
        assert at_16 != first["scores"]
        # a repo that ships SigLIP's processor (whole images) with SigLIP 2's weights is skipped saying so
        from transformers import SiglipImageProcessor

        base.save_pretrained(hub_root / "s2org" / "v1-processor")
        SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(hub_root / "s2org" / "v1-processor")
        res = ModelSearcher([ids[0], "s2org/v1-processor"], train_dataset=ds, args=args).search()
        assert "save a Siglip2ImageProcessor with the model" in res.skipped["s2org/v1-processor"]
    finally:
        shutil.rmtree(hub_root / "s2org", ignore_errors=True)


def test_dinov3_fine_tunes_share_their_base_at_any_image_size(hub, hub_root, tmp_path):
    """facebook/dinov3-vit* computes rotary positions from each input's patch grid; the grid travels in the state
    between blocks, so a search at any `image_size` ranks as the bare models do, sharing the base's blocks."""
    from transformers import DINOv3ViTConfig, DINOv3ViTImageProcessor, DINOv3ViTModel

    config = DINOv3ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                             image_size=32, patch_size=8, num_register_tokens=2)  # fmt: skip
    torch.manual_seed(0)
    base = DINOv3ViTModel(config)
    ids = ["d3org/base", "d3org/ft0", "d3org/ft1"]
    try:
        for i, repo in enumerate(ids):
            model = DINOv3ViTModel(config)
            model.load_state_dict(base.state_dict())
            with torch.no_grad():
                for p in model.model.layer[1].parameters() if i else ():
                    p.add_(0.05 * torch.randn_like(p))
            model.save_pretrained(hub_root / repo)
            DINOv3ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(hub_root / repo)
        ds = digits(num_items=80, seed=0)
        for size in (None, 48):
            first = _alike_in_alsatian_and_base(ids, ds, tmp_path, image_size=size)
            assert len(set(first["scores"].values())) == 3
            assert len(first["block_time"]) == 3 + 3  # embeddings, first layer, norm; three second layers
    finally:
        shutil.rmtree(hub_root / "d3org", ignore_errors=True)


@pytest.mark.parametrize("family", ["Pvt", "PvtV2", "PoolFormer"])
def test_pyramid_vision_transformers_share_their_stages_alike_in_every_strategy(hub, hub_root, tmp_path, family):
    """PVT, PVT v2 and PoolFormer embed patches anew at every stage, and PVT's blocks read the token grid: the
    state carries it between blocks, and fine-tunes of the last stage share the rest with their base."""
    import transformers

    from alsatian_hf.zoo import TransformersSource

    stages = dict(num_encoder_blocks=2, depths=[1, 2], hidden_sizes=[8, 16], strides=[4, 2], num_labels=3)
    if family == "PoolFormer":
        stages.update(patch_sizes=[7, 3], padding=[2, 1])
    else:
        stages.update(image_size=32, patch_sizes=[4, 2], sequence_reduction_ratios=[2, 1], num_attention_heads=[1, 2],
                      mlp_ratios=[2, 2])  # fmt: skip
    config = getattr(transformers, f"{family}Config")(**stages)
    processor = transformers.ViTImageProcessor(size={"height": 32, "width": 32})
    source = TransformersSource(config=config, processor=processor)
    org = f"pyr{family.lower()}"
    zoo = build_zoo(ZooSpec(org, source, num_models=3, seed=0), hub_root)
    try:
        first = _alike_in_alsatian_and_base(zoo.repo_ids, digits(num_items=80, seed=0), tmp_path, image_size=None)
        assert len(set(first["scores"].values())) == 3
    finally:
        shutil.rmtree(hub_root / org, ignore_errors=True)


@pytest.mark.parametrize("family", ["NomicBert", "Gte"])
def test_fused_qkv_checkpoints_are_fetched_as_saved_and_cut_into_their_layers(
    hub, hub_root, letters_tokenizer, tmp_path, family
):
    """nomic-embed-text (NomicBERT) and gte-*-v1.5 (GTE) save each layer's q, k and v as one fused tensor, which
    transformers cuts apart at load. The search fetches and hashes the fused tensor as saved, so fine-tunes share
    the base's layers, and ranks as `base` does."""
    import transformers

    from alsatian_hf.zoo import TransformersSource

    config = getattr(transformers, f"{family}Config")(vocab_size=57, hidden_size=32, num_hidden_layers=2,
                                                      num_attention_heads=2, intermediate_size=37,
                                                      max_position_embeddings=64, num_labels=3)  # fmt: skip
    source = TransformersSource(config=config, auto_class="AutoModelForSequenceClassification",
                                processor=letters_tokenizer, pipeline_tag="text-classification")  # fmt: skip
    zoo = build_zoo(ZooSpec(f"fused{family.lower()}", source, num_models=3, seed=0), hub_root)
    try:
        _alike_in_alsatian_and_base(zoo.repo_ids, _three_groups(), tmp_path, max_length=16)
        fused = "attn.Wqkv" if family == "NomicBert" else "attention.qkv_proj"
        assert any(fused in k for k in LocalBlockSource(hub_root / zoo.repo_ids[0]).keys())
    finally:
        shutil.rmtree(hub_root / f"fused{family.lower()}", ignore_errors=True)


# per image-text family: its config's text and vision parts, the name its vision tower's tensors carry, and its
# image processor
_IMAGE_TEXT = {
    "Gemma3": (
        dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=37, head_dim=8, max_position_embeddings=64, sliding_window=4),
        dict(vision_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                                image_size=16, patch_size=4), mm_tokens_per_image=4, image_token_index=60),
        "vision_tower",
        ("Gemma3ImageProcessor", {"size": {"height": 16, "width": 16}}),
    ),
    "Qwen3_5": (  # a Gated DeltaNet layer, then a full-attention one
        dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=40, head_dim=8, max_position_embeddings=64, full_attention_interval=2,
             linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8, linear_value_head_dim=8),
        dict(vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=32,
                                patch_size=4, spatial_merge_size=1, temporal_patch_size=1)),
        "visual",
        ("Qwen2VLImageProcessor", {}),
    ),
}  # fmt: skip


@pytest.mark.parametrize("family", list(_IMAGE_TEXT))
def test_image_text_models_are_searched_by_their_language_model_on_text(
    hub, hub_root, letters_tokenizer, tmp_path, family
):
    """google/gemma-3-4b-it and Qwen/Qwen3.5-* are image-text models, their repos have an image processor beside
    their tokenizer, and many text classifiers are fine-tuned from them. On a text dataset each is searched by its
    language model, as its `*ForSequenceClassification` runs it on text, sharing the base's layers with its
    fine-tunes; its vision tower is never fetched."""
    import transformers

    text, rest, tower, (processor, processor_kw) = _IMAGE_TEXT[family]

    def config(**kw):
        return getattr(transformers, f"{family}Config")(
            text_config=text, pad_token_id=letters_tokenizer.pad_token_id, **rest, **kw
        )

    torch.manual_seed(0)
    base = getattr(transformers, f"{family}ForConditionalGeneration")(config())
    org = f"{family.lower()}org"
    ids = [f"{org}/base", f"{org}/ft0", f"{org}/ft1"]
    try:
        for i, repo in enumerate(ids):
            model = (
                base if i == 0 else getattr(transformers, f"{family}ForSequenceClassification")(config(num_labels=3))
            )
            if i:
                model.model.load_state_dict(base.model.state_dict())
                with torch.no_grad():
                    for p in model.model.language_model.layers[1].parameters():
                        p.add_(0.05 * torch.randn_like(p))
            model.save_pretrained(hub_root / repo)
            letters_tokenizer.save_pretrained(hub_root / repo)
            getattr(transformers, processor)(**processor_kw).save_pretrained(hub_root / repo)
        hub.clear_log()
        first = _alike_in_alsatian_and_base(ids, _three_groups(), tmp_path, max_length=16)
        fetched = _fetched_tensors(hub, hub_root, ids[0])
        assert fetched and not [k for k in fetched if tower in k]
        assert any(tower in k for k in LocalBlockSource(hub_root / ids[0]).keys())
        assert len(set(first["scores"].values())) == 3
    finally:
        shutil.rmtree(hub_root / org, ignore_errors=True)


@pytest.mark.parametrize("family", ["Bart", "MBart"])
def test_bart_classifiers_are_searched_through_encoder_and_decoder_alike_in_every_strategy(
    hub, hub_root, letters_tokenizer, tmp_path, family
):
    """facebook/bart-large-mnli classifies the decoder's state at each text's last end token, the decoder reading
    the encoder's states: the state between blocks carries both, and fine-tunes of the top layers share the
    rest with their base. mBART's classifiers read alike, through each stack's final norm."""
    import transformers

    from alsatian_hf.zoo import TransformersSource

    tok = letters_tokenizer
    config = getattr(transformers, f"{family}Config")(
        vocab_size=57, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64, num_labels=3,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.sep_token_id)  # fmt: skip
    source = TransformersSource(config=config, auto_class="AutoModelForSequenceClassification", processor=tok,
                                pipeline_tag="text-classification")  # fmt: skip
    zoo = build_zoo(ZooSpec(f"{family.lower()}org", source, num_models=3, seed=0), hub_root)
    try:
        first = _alike_in_alsatian_and_base(zoo.repo_ids, _three_groups(), tmp_path, max_length=16)
        assert len(set(first["scores"].values())) == 3
    finally:
        shutil.rmtree(hub_root / f"{family.lower()}org", ignore_errors=True)


def test_t5_classifiers_read_the_decoder_and_share_the_encoder_of_their_flan_t5_base(
    hub, hub_root, letters_tokenizer, tmp_path
):
    """A `T5ForSequenceClassification` fine-tuned from a flan-t5 classifies the decoder's state at each text's
    last end token; its base, a `T5ForConditionalGeneration`, is read at its encoder's mean and its decoder is
    never fetched. The encoder's blocks are the same in both, so the base's are computed once for all three."""
    from transformers import T5Config, T5ForConditionalGeneration, T5ForSequenceClassification

    tok = letters_tokenizer
    config = dict(vocab_size=57, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                  relative_attention_num_buckets=8, pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id,
                  decoder_start_token_id=tok.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    base = T5ForConditionalGeneration(T5Config(**config))
    ids = ["t5org/base", "t5org/ft0", "t5org/ft1"]
    try:
        for i, repo in enumerate(ids):
            model = base
            if i:  # the decoder fine-tuned (its embeddings are the encoder's, frozen with it)
                model = T5ForSequenceClassification(T5Config(**config, num_labels=3))
                model.transformer.load_state_dict(base.state_dict(), strict=False)
                with torch.no_grad():
                    for p in [
                        *model.transformer.decoder.block.parameters(),
                        model.transformer.decoder.final_layer_norm.weight,
                    ]:
                        p.add_(0.05 * torch.randn_like(p))
            model.save_pretrained(hub_root / repo)
            tok.save_pretrained(hub_root / repo)
        hub.clear_log()
        first = _alike_in_alsatian_and_base(ids, _three_groups(), tmp_path, max_length=16)
        fetched = _fetched_tensors(hub, hub_root, ids[0])
        assert "encoder.final_layer_norm.weight" in fetched and not [k for k in fetched if "decoder" in k]
        assert len(set(first["scores"].values())) == 3
        # embeddings and two encoder blocks once; the base's read-out; each classifier's decoder (embeddings, two
        # blocks, read-out), its embeddings shared: 11 blocks, each run once per batch
        runs = {count for count, _ in first["block_time"].values()}
        assert len(first["block_time"]) == 11 and len(runs) == 1
    finally:
        shutil.rmtree(hub_root / "t5org", ignore_errors=True)


@pytest.mark.parametrize("family", ["Mixtral", "Qwen3Moe"])
def test_mixtures_of_experts_merge_their_experts_at_load_and_share_their_base_layers(
    hub, hub_root, letters_tokenizer, tmp_path, family
):
    """Mixtral, Qwen3-30B-A3B and the other mixtures of experts save one tensor per expert (Mixtral its gate and
    up projections apart too), which transformers stacks into one model tensor at load. A block fetches and
    hashes the experts as saved and merges them as transformers does, so fine-tunes of the top layer share the
    rest with their base and rank as `base` does. A checkpoint short of an expert is skipped, saying so."""
    import transformers
    from safetensors.torch import load_file, save_file

    tok = letters_tokenizer
    experts = {"num_local_experts": 4} if family == "Mixtral" else {"num_experts": 4, "head_dim": 8}
    config = getattr(transformers, f"{family}Config")(
        vocab_size=57, hidden_size=32, intermediate_size=40, moe_intermediate_size=16, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_experts_per_tok=2, max_position_embeddings=64,
        num_labels=3, pad_token_id=tok.pad_token_id, **experts)  # fmt: skip
    cls = getattr(transformers, f"{family}ForSequenceClassification")
    torch.manual_seed(0)
    base = cls(config)
    org = f"moe{family.lower()}"
    ids = [f"{org}/base", f"{org}/ft0", f"{org}/ft1"]
    try:
        for i, repo in enumerate(ids):
            model = base
            if i:  # the top layer and the final norm fine-tuned, its experts included, and a head of its own
                model = cls(config)
                model.load_state_dict(base.state_dict())
                with torch.no_grad():
                    for p in [
                        *model.model.layers[1].parameters(),
                        *model.model.norm.parameters(),
                        *model.score.parameters(),
                    ]:
                        p.add_(0.05 * torch.randn_like(p))
            model.save_pretrained(hub_root / repo)
            tok.save_pretrained(hub_root / repo)
        saved = LocalBlockSource(hub_root / ids[0]).keys()
        per_expert = [k for k in saved if ".experts.3." in k and "layers.0." in k]
        assert per_expert, "the checkpoint holds each expert's tensors apart"
        hub.clear_log()
        first = _alike_in_alsatian_and_base(ids, _three_groups(), tmp_path, max_length=16)
        assert set(per_expert) <= _fetched_tensors(hub, hub_root, ids[0])
        assert len(set(first["scores"].values())) == 3
        # embeddings and layer 0 once; each model's layer 1 and read-out: 8 blocks, each run once per batch
        runs = {count for count, _ in first["block_time"].values()}
        assert len(first["block_time"]) == 8 and len(runs) == 1

        short = hub_root / org / "short"  # expert 3 of layer 0 left out of the checkpoint
        shutil.copytree(hub_root / ids[1], short)
        tensors = load_file(short / "model.safetensors")
        save_file({k: v for k, v in tensors.items() if k not in per_expert}, short / "model.safetensors",
                  metadata={"format": "pt"})  # fmt: skip
        args = _args(tmp_path, result_size=1, scorer="knn", scorer_kwargs={}, max_length=16,
                     store_dir=str(tmp_path / "short-store"))  # fmt: skip
        res = ModelSearcher([ids[0], f"{org}/short"], train_dataset=_three_groups(), args=args).search()
        assert list(res.skipped) == [f"{org}/short"]
        assert "(the experts) make [3, " in res.skipped[f"{org}/short"], res.skipped
    finally:
        shutil.rmtree(hub_root / org, ignore_errors=True)


def _cli_search(tmp_path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`alsatian-hf search` over org `tiny` and the dataset saved in tmp_path/ds."""
    cmd = [sys.executable, "-m", "alsatian_hf.cli", "search", "--author", "tiny", "--dataset", str(tmp_path / "ds"),
           "--result-size", "2", "--image-size", "32", "--store-dir", str(tmp_path / "store"), *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env or os.environ.copy())


def test_cli_ranking_matches_api(hub, tiny_zoo, tmp_path):
    ds = digits(num_items=100, seed=0)
    ds.save_to_disk(str(tmp_path / "ds"))
    api = ModelSearcher.from_hub(author="tiny", train_dataset=ds, args=_args(tmp_path)).search()
    out = _cli_search(tmp_path, "--batch-size", "32", "--scorer-kwargs", '{"epochs": 20}', "--output-dir",
                      str(tmp_path / "cli-out"))  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert SearchResult.load(tmp_path / "cli-out").models == api.models
    for model in api.models:
        assert model in out.stdout


@pytest.mark.parametrize(
    "case",
    ["missing split", "missing dataset", "missing hub root", "unknown architecture", "store is a file"],
)
def test_the_cli_reports_bad_input_as_one_line_without_a_traceback(tmp_path, case):
    from datasets import DatasetDict

    DatasetDict(test=digits(num_items=20, seed=0)).save_to_disk(str(tmp_path / "ds"))
    (tmp_path / "a-file").write_text("x")
    argv, message = {
        "missing split": (None, f"{tmp_path / 'ds'} has splits ['test'], not 'train'; pick one with `--split`."),
        "missing dataset": (["search", "--models", "a/b", "--dataset", str(tmp_path / "nowhere")],
                            f"--dataset {tmp_path / 'nowhere'}: no such folder."),
        "missing hub root": (["serve-hub", str(tmp_path / "nowhere"), "--port", "0"],
                             f"{tmp_path / 'nowhere'} is not a folder; pass the one that holds <org>/<name> repos."),
        "unknown architecture": (["build-zoo", str(tmp_path / "zoo"), "--org", "x", "--arch", "resnet_nope"],
                                 "--arch 'resnet_nope' is not a timm architecture (or `efficientnet-lite0`); "
                                 "`timm.list_models('resnet*')` lists the near ones."),
        "store is a file": (["store", "info", "--store-dir", str(tmp_path / "a-file")],
                            f"The block store {tmp_path / 'a-file'} is a file; pass a folder (created if missing)."),
    }[case]  # fmt: skip
    if argv is None:
        out = _cli_search(tmp_path)
    else:
        out = subprocess.run([sys.executable, "-m", "alsatian_hf.cli", *argv], capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == f"alsatian-hf: error: {message}"
    assert "Traceback" not in out.stderr and not (tmp_path / "nowhere").exists()


@pytest.mark.slow
def test_make_demo_writes_the_report(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "alsatian_hf.demo",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--output-dir",
            str(tmp_path / "demo-output"),
            "--models",
            "8",
            "--items",
            "300",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in ("HF_ENDPOINT", "HF_HOME")},
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "same ranking: True" in out.stdout
    assert (tmp_path / "demo-output" / "summary.md").is_file()


# -- bad input: a clear error or a recorded skip, one test each ------------------------------------------------
def _image_ds(n=40, classes=4):
    ds = digits(num_items=n, seed=0)
    return ds.map(lambda ex: {"label": ex["label"] % classes}).cast_column(
        "label", ClassLabel(names=[str(i) for i in range(classes)])
    )


def test_missing_label_column_lists_columns(tiny_zoo, tmp_path):
    ds = _image_ds().rename_column("label", "target")
    with pytest.raises(DatasetError, match=r"\['image', 'target'\]"):
        ModelSearcher(tiny_zoo.repo_ids, train_dataset=ds, args=_args(tmp_path), label_column="label")


def test_ambiguous_input_column(tiny_zoo, tmp_path):
    ds = _image_ds().add_column("caption", ["x"] * 40)
    with pytest.raises(DatasetError, match="image_column"):
        ModelSearcher(tiny_zoo.repo_ids, train_dataset=ds, args=_args(tmp_path))


def test_one_class_dataset(tiny_zoo, tmp_path):
    ds = _image_ds(classes=1)
    with pytest.raises(DatasetError, match="1 class"):
        ModelSearcher(tiny_zoo.repo_ids, train_dataset=ds, args=_args(tmp_path)).search()


def test_too_few_items_per_class(tiny_zoo, tmp_path):
    ds = digits(num_items=15, seed=0)  # 10 classes, 15 items
    with pytest.raises(DatasetError, match="at least 20"):
        ModelSearcher(tiny_zoo.repo_ids, train_dataset=ds, args=_args(tmp_path)).search()


def test_a_split_dict_a_stream_or_a_dataframe_is_refused_with_its_conversion(tiny_zoo, tmp_path):
    from datasets import DatasetDict

    ds = _image_ds()
    for given, fix in [
        (
            DatasetDict(train=ds, test=ds),
            r"splits \['train', 'test'\]; pass one split, e.g. `train_dataset=ds\['train'\]`",
        ),
        (ds.to_iterable_dataset(), r"IterableDataset .* `datasets.Dataset.from_generator"),
        (ds.to_pandas(), r"got DataFrame; convert it with `datasets.Dataset.from_pandas\(df\)`"),
    ]:
        with pytest.raises(DatasetError, match=fix):
            ModelSearcher(tiny_zoo.repo_ids, train_dataset=given, args=_args(tmp_path))
    with pytest.raises(DatasetError, match="`eval_dataset` is a DatasetDict"):
        ModelSearcher(tiny_zoo.repo_ids, train_dataset=ds, eval_dataset=DatasetDict(test=ds), args=_args(tmp_path))


def test_unlabelled_or_empty_items_are_refused_before_any_request(hub, tiny_zoo, tmp_path):
    from datasets import Value

    ds = _image_ds()
    unlabelled = ds.cast_column("label", Value("int64")).map(lambda r, i: {"label": -1 if i < 3 else r["label"]},
                                                               with_indices=True)  # fmt: skip
    none_label = ds.cast_column("label", Value("int64")).map(lambda r, i: {"label": None if i < 2 else r["label"]},
                                                             with_indices=True)  # fmt: skip
    none_image = ds.map(lambda r, i: {"image": None if i == 5 else r["image"]}, with_indices=True)
    cases = [
        (
            dict(train_dataset=unlabelled),
            r"`train_dataset` has 3 items labelled \[-1\] in `label`.*row\['label'\] >= 0",
        ),
        (dict(train_dataset=none_label), r"`train_dataset` has 2 items with no label.*is not None"),
        (dict(train_dataset=none_image), r"`train_dataset` has 1 item with no image \(None in `image`\)"),
        (dict(train_dataset=ds, eval_dataset=unlabelled), r"`eval_dataset` has 3 items labelled \[-1\]"),
    ]
    for datasets_given, message in cases:
        with pytest.raises(DatasetError, match=message):
            ModelSearcher.from_hub(author="tiny", args=_args(tmp_path), **datasets_given).search()
    paths = {r.path.split("?")[0] for r in hub.requests()}
    assert paths == {"/api/models"}  # each search listed its candidates, and stopped before opening one


def test_columns_that_cannot_be_the_input_or_match_are_refused(tiny_zoo, tmp_path):
    import numpy as np

    ds = _image_ds()
    pixels = [np.asarray(im) for im in ds["image"]]
    for column, message in [
        ([p / 255.0 for p in pixels], r"holds List\(List\(Value\('float64'\)\)\); images must be .* 0-255"),
        ([np.stack([p] * 3) for p in pixels], r"of shape \(3, 8, 8\); .*transpose\(1, 2, 0\)"),
        ([p.astype(np.int64) * 16 for p in pixels], r"range over 0\.\.\d+, outside 0-255"),
    ]:
        arrays = ds.remove_columns("image").add_column("pixels", [a.tolist() for a in column])
        with pytest.raises(DatasetError, match=message):
            ModelSearcher(tiny_zoo.repo_ids, train_dataset=arrays, image_column="pixels", args=_args(tmp_path))
    paths = ds.add_column("path", [f"/data/{i}.png" for i in range(len(ds))])
    with pytest.raises(
        DatasetError, match=r"holds Value\('string'\), not images.*cast_column\('path', datasets.Image\(\)\)"
    ):
        ModelSearcher(tiny_zoo.repo_ids, train_dataset=paths, image_column="path", args=_args(tmp_path))
    with pytest.raises(DatasetError, match=r"Text column `label` holds ClassLabel.*not strings"):
        ModelSearcher(tiny_zoo.repo_ids, train_dataset=ds, text_column="label", args=_args(tmp_path))
    with pytest.raises(DatasetError, match=r"`eval_dataset` lacks \['label'\].*its columns are \['image'\]"):
        ModelSearcher(
            tiny_zoo.repo_ids, train_dataset=ds, eval_dataset=ds.remove_columns("label"), args=_args(tmp_path)
        )


def test_a_dataset_left_in_a_training_format_searches_as_its_rows(hub, tiny_zoo, tmp_path):
    """`set_format("torch")` and friends present the same rows; they used to skip every candidate ("'Tensor'
    object has no attribute 'convert'"). A transform that replaces the images is refused with the fix."""
    import torchvision.transforms.functional as F

    ds = _image_ds(60)
    ids = tiny_zoo.repo_ids[:3]
    scores = lambda res: [it["scores"] for it in res.iterations]  # noqa: E731
    reference = scores(ModelSearcher(ids, train_dataset=ds, args=_args(tmp_path, feature_cache=False)).search())
    for formatted in (ds.with_format("torch"), ds.with_format("numpy"), ds.with_format(None, columns=["label"])):
        res = ModelSearcher(ids, train_dataset=formatted, args=_args(tmp_path, feature_cache=False)).search()
        assert scores(res) == reference and not res.skipped
    tensors = ds.with_transform(lambda b: {**b, "image": [F.to_tensor(im) for im in b["image"]]})
    with pytest.raises(DatasetError, match=r"transform .* gives `image` as Tensor; .* `ds.with_format\(None\)`"):
        ModelSearcher(ids, train_dataset=tensors, args=_args(tmp_path))


def test_an_image_that_cannot_be_decoded_is_named_by_its_row(hub, tiny_zoo, tmp_path):
    """A truncated PNG fails its whole batch with "cannot identify image file <_io.BytesIO ...>", naming no item;
    the search stops with the row to drop instead."""
    import io

    from datasets import Dataset, Features, Image

    ds = _image_ds(60)

    def png(image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    rows = [{"bytes": png(im), "path": None} for im in ds["image"]]
    for bad in (7, 41):
        broken = [*rows[:bad], {"bytes": rows[bad]["bytes"][:40], "path": None}, *rows[bad + 1 :]]
        data = Dataset.from_dict({"image": broken, "label": ds["label"]},
                                 features=Features({"image": Image(), "label": ds.features["label"]}))  # fmt: skip
        with pytest.raises(DatasetError, match=rf"^Row {bad} of the target dataset .* cannot be read as images "
                                               r"\(UnidentifiedImageError"):  # fmt: skip
            ModelSearcher(tiny_zoo.repo_ids[:4], train_dataset=data, args=_args(tmp_path, result_size=1)).search()


def test_uint8_pixel_arrays_search_as_the_same_images_do(hub, tiny_zoo, tmp_path):
    """Images given as pixel arrays (a list column, or `Array3D`) are turned into the images `datasets.Image`
    decodes, so every score equals the `Image` column's."""
    import numpy as np
    from datasets import Array3D, Dataset, Features

    ds = _image_ds(60)
    gray = [np.asarray(im) for im in ds["image"]]
    rgb = [np.asarray(im.convert("RGB")) for im in ds["image"]]
    as_rgb = Dataset.from_dict({"image": [im.convert("RGB") for im in ds["image"]], "label": ds["label"]},
                               features=ds.features)  # fmt: skip
    as_array3d = Dataset.from_dict(
        {"pixels": rgb, "label": ds["label"]},
        features=Features({"pixels": Array3D((8, 8, 3), "uint8"), "label": ds.features["label"]}),
    )
    as_lists = ds.remove_columns("image").add_column("pixels", [a.tolist() for a in gray])
    ids = tiny_zoo.repo_ids[:3]
    scores = lambda res: [it["scores"] for it in res.iterations]  # noqa: E731
    reference = ModelSearcher(ids, train_dataset=ds, args=_args(tmp_path)).search()
    lists = ModelSearcher(ids, train_dataset=as_lists, image_column="pixels", args=_args(tmp_path)).search()
    assert scores(lists) == scores(reference) and not lists.skipped
    rgb_reference = ModelSearcher(ids, train_dataset=as_rgb, args=_args(tmp_path)).search()
    array3d = ModelSearcher(ids, train_dataset=as_array3d, image_column="pixels", args=_args(tmp_path)).search()
    assert scores(array3d) == scores(rgb_reference) and not array3d.skipped


def test_candidates_that_cannot_be_reached_are_skipped_with_what_to_check(hub, hub_root, tiny_zoo, tmp_path,
                                                                         monkeypatch):  # fmt: skip
    import shutil

    monkeypatch.setenv("HOME", str(tmp_path))  # `~/base` below is a copy of the base repo's folder
    shutil.copytree(hub_root / tiny_zoo.repo_ids[0], tmp_path / "base")
    gone = str(tmp_path / "no" / "such-model")
    ids = ["~/base", tiny_zoo.repo_ids[1], "tiny/does-not-exist", f"{tiny_zoo.repo_ids[2]}@deadbeef", gone]
    res = ModelSearcher(ids, train_dataset=_image_ds(), args=_args(tmp_path, result_size=1)).search()
    assert res.skipped == {
        "tiny/does-not-exist": f"no such repo on {hub.url}: check the id (and HF_ENDPOINT); a private repo also "
        "needs a login (HF_TOKEN).",
        tiny_zoo.repo_ids[2]: "no such revision: check the `@revision` in the id, or `SearchArguments.revision`.",
        gone: f"no such folder ({gone}), and not a repo id (`org/name`).",
    }
    assert sorted(res.iterations[0]["scores"]) == sorted(["~/base", tiny_zoo.repo_ids[1]])  # the folder under ~


def test_label_ids_with_gaps_score_as_their_classes(hub, tiny_zoo, tmp_path):
    """Label ids such as 7, 1024, 90000 are classes 0..K-1 in sorted order: probes are sized by the largest
    index, so an id of 90000 used to give every probe 90001 outputs, and other scores."""
    from datasets import Value

    ds = _image_ds(60)
    ids = ds.cast_column("label", Value("int64")).map(lambda r: {"label": [7, 1024, 5000, 90000][r["label"]]})
    args = _args(tmp_path, scorer="linear", feature_cache=False)
    compact = ModelSearcher(tiny_zoo.repo_ids[:3], train_dataset=ds, args=args).search()
    gapped = ModelSearcher(tiny_zoo.repo_ids[:3], train_dataset=ids, args=args).search()
    assert [it["scores"] for it in gapped.iterations] == [it["scores"] for it in compact.iterations]
    assert gapped.dataset["classes"] == 4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_checkpoints_score_as_their_float32_upcast(hub, hub_root, tiny_zoo, tmp_path, dtype):
    """Hub checkpoints are often saved in float16 or bfloat16. Their blocks run in the model's float32, an exact
    upcast, so they score as float32 checkpoints of the same values do (they used to fail the search:
    "Input type (float) and bias type (c10::Half) should be the same")."""
    from safetensors.torch import load_file, save_file

    tag = str(dtype).removeprefix("torch.")
    orgs = {f"half-{tag}": dtype, f"upcast-{tag}": torch.float32}
    for org, stored in orgs.items():
        for repo in tiny_zoo.repo_ids[:3]:
            folder = hub_root / org / repo.split("/")[1]
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(hub_root / repo, folder)
            card = folder / "README.md"  # its lineage within the new org, so `tiny`'s fine-tunes stay `tiny`'s
            card.write_text(card.read_text().replace("tiny/", f"{org}/"))
            tensors = load_file(folder / "model.safetensors")
            rounded = {k: v.to(dtype).to(stored) if v.is_floating_point() else v for k, v in tensors.items()}
            save_file(rounded, folder / "model.safetensors", metadata={"format": "pt"})
    scores = {}
    for org in orgs:
        for strategy in ("alsatian", "base"):
            res = ModelSearcher.from_hub(author=org, train_dataset=_image_ds(), args=_args(tmp_path, strategy=strategy,
                                                                                          feature_cache=False)).search()  # fmt: skip
            assert not res.skipped
            scores[org, strategy] = [{m.split("/")[1]: v for m, v in it["scores"].items()} for it in res.iterations]
    assert len({json.dumps(s, sort_keys=True) for s in scores.values()}) == 1, scores


def test_an_unusable_folder_or_device_is_refused_before_any_candidate_opens(hub, tiny_zoo, tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    cases = [
        (dict(output_dir=str(afile)), r"`output_dir` '.*a-file' is a file; pass a folder"),
        (dict(store_dir=str(afile)), r"The block store .*a-file is a file; pass a folder"),
    ]
    if not torch.cuda.is_available():
        cases.append((dict(device="cuda"), r"`device` 'cuda': torch finds no cuda device here"))
    for fields, message in cases:
        with pytest.raises(ConfigurationError, match=message):
            ModelSearcher.from_hub(author="tiny", train_dataset=_image_ds(), args=_args(tmp_path, **fields)).search()
    assert {r.path.split("?")[0] for r in hub.requests()} == {"/api/models"}  # listed, and no candidate opened


def test_a_candidate_whose_features_are_not_finite_is_dropped_and_the_search_goes_on(hub, tiny_zoo, diverged,
                                                                                      tmp_path):  # fmt: skip
    """A diverged fine-tune with NaN weights used to end the whole search in the scorer ("features contain NaN
    or inf"), naming no model. It is dropped in the iteration that meets it, with the reason, in every strategy
    alike, and a repeat search restored from the feature cache still reports it."""
    broken = diverged
    ids, ds = [*tiny_zoo.repo_ids, str(broken)], digits(num_items=100, seed=0)
    runs = {}
    for strategy in ("alsatian", "base", "alsatian"):  # the second alsatian run restores from the feature cache
        res = ModelSearcher(ids, train_dataset=ds, args=_args(tmp_path, strategy=strategy)).search()
        assert (
            list(res.skipped) == [str(broken)]
            and "not finite (NaN or infinite) in iteration 1" in res.skipped[str(broken)]
        )
        assert res.iterations[0]["failed"] == res.skipped and str(broken) not in res.iterations[0]["scores"]
        runs.setdefault(strategy, []).append([(it["scores"], it["survivors"]) for it in res.iterations])
    assert runs["alsatian"][0] == runs["base"][0] == runs["alsatian"][1]
    assert res.iterations[0]["restored"]


def test_a_candidate_whose_block_fails_on_some_rows_is_dropped_where_those_rows_count(hub, hub_root, minilm_zoo,
                                                                                     tmp_path):  # fmt: skip
    """A fine-tune whose embedding matrix has fewer rows than its tokenizer's vocabulary fails only on texts with
    the missing tokens: it used to end the whole search mid-run. Its block's error drops it, with the rows,
    in the iteration that first scores them, in every strategy alike, and the others are ranked."""
    import random

    from datasets import ClassLabel, Dataset, Features, Value
    from safetensors.torch import load_file, save_file

    shrunk = tmp_path / "shrunk-vocab"
    shutil.copytree(hub_root / minilm_zoo.repo_ids[1], shrunk)
    tensors = load_file(shrunk / "model.safetensors")
    key = next(k for k in tensors if k.endswith("word_embeddings.weight"))
    tensors[key] = tensors[key][:5000].clone()  # words past the 5000 first ids have no row
    save_file(tensors, shrunk / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((shrunk / "config.json").read_text())
    (shrunk / "config.json").write_text(json.dumps({**config, "vocab_size": 5000}))
    rng = random.Random(0)
    common = {0: ["the", "of", "and", "to", "in"], 1: ["is", "it", "was", "for", "on"]}  # ids below 2100
    texts = [" ".join(rng.choice(common[i % 2]) for _ in range(10)) for i in range(140)]
    texts[-3] += " zebra"  # one row the shrunk model cannot embed: an eval row, so every search scores it
    features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b"])})
    rows = {"text": texts, "label": [i % 2 for i in range(140)]}
    ds = Dataset.from_dict({k: v[:100] for k, v in rows.items()}, features=features)
    held = Dataset.from_dict({k: v[100:] for k, v in rows.items()}, features=features)
    ids, runs = [*minilm_zoo.repo_ids, str(shrunk)], {}
    for strategy in ("alsatian", "base", "shift"):
        args = _args(tmp_path, strategy=strategy, result_size=1, max_length=24, feature_cache=False)
        res = ModelSearcher(ids, train_dataset=ds, eval_dataset=held, args=args).search()
        assert list(res.skipped) == [str(shrunk)], res.skipped
        assert (
            "raised IndexError: index out of range in self, on the target dataset's row 137 "
            in res.skipped[str(shrunk)]
        )
        runs[strategy] = [(it["scores"], it["survivors"], it["failed"]) for it in res.iterations]
        assert res.iterations[0]["failed"] == res.skipped and len(res.iterations[0]["scores"]) == len(ids) - 1
    assert runs["alsatian"] == runs["base"] == runs["shift"]


def test_a_report_that_cannot_be_written_at_the_end_keeps_the_result(hub, tiny_zoo, tmp_path, caplog):
    out = tmp_path / "out"
    (out / "result.json").mkdir(parents=True)  # the report's file name is taken by a folder
    with caplog.at_level("ERROR", logger="alsatian_hf"):
        res = ModelSearcher(
            tiny_zoo.repo_ids[:3], train_dataset=_image_ds(), args=_args(tmp_path, output_dir=str(out))
        ).search()
    assert len(res.models) == 2
    assert f"the result was not written to {out}" in caplog.text and "result.save" in caplog.text


def test_result_size_not_below_candidates_scores_everything_once(hub, tiny_zoo, tmp_path):
    res = ModelSearcher(tiny_zoo.repo_ids[:3], train_dataset=_image_ds(), args=_args(tmp_path, result_size=5)).search()
    assert len(res.iterations) == 1 and sorted(res.models) == sorted(tiny_zoo.repo_ids[:3])


def test_empty_candidate_list(tmp_path):
    with pytest.raises(ConfigurationError, match="empty"):
        ModelSearcher([], train_dataset=_image_ds(), args=_args(tmp_path)).search()
    with pytest.raises(ConfigurationError, match="empty"):
        ModelSearcher.from_hub(author="nobody-here", train_dataset=_image_ds(), args=_args(tmp_path)).search()


def test_image_models_on_text_dataset_are_skipped(hub, tiny_zoo, minilm_zoo, tmp_path):
    ds = newsgroups(num_items=60, seed=0, categories=["sci.space", "rec.autos"])
    res = ModelSearcher(
        [tiny_zoo.repo_ids[0], minilm_zoo.repo_ids[0], minilm_zoo.repo_ids[1]],
        train_dataset=ds,
        args=_args(tmp_path, max_length=32, scorer="knn", scorer_kwargs={}),
    ).search()
    assert "dataset is text" in res.skipped[tiny_zoo.repo_ids[0]] or "text" in res.skipped[tiny_zoo.repo_ids[0]]
    assert sorted(res.models) == sorted(minilm_zoo.repo_ids[:2])
    with pytest.raises(
        ConfigurationError, match=r"^No candidate can be scored: all 3 were skipped as 'an image model"
    ):
        ModelSearcher(tiny_zoo.repo_ids[:3], train_dataset=ds, args=_args(tmp_path, max_length=32)).search()


def test_missing_preprocessor_config_is_skipped(hub, hub_root, vit_zoo, tmp_path):
    import shutil

    broken = hub_root / "vitorg" / "vit-noproc"
    shutil.copytree(hub_root / vit_zoo.repo_ids[1], broken)
    (broken / "preprocessor_config.json").unlink()
    try:
        res = ModelSearcher(
            [vit_zoo.repo_ids[0], vit_zoo.repo_ids[2], "vitorg/vit-noproc"],
            train_dataset=digits(num_items=60),
            args=_args(tmp_path, result_size=1, image_size=None),
        ).search()
    finally:  # a fine-tune of the ViT base left in the session hub would join other tests' lineage queries
        shutil.rmtree(broken)
    assert "preprocessor_config.json" in res.skipped["vitorg/vit-noproc"]
    assert len(res.models) == 1


def test_search_arguments_validation_names_the_field():
    for kwargs, name in [
        ({"result_size": 0}, "result_size"),
        ({"strategy": "fast"}, "strategy"),
        ({"cache_budget": -1}, "cache_budget"),
        ({"scorer": "svm"}, "scorer"),
        ({"test_size": 1.5}, "test_size"),
        ({"scorer_kwargs": "{bad"}, "scorer_kwargs"),
        ({"scorer": "knn", "scorer_kwargs": {"epochs": 3}}, "scorer_kwargs"),
        ({"min_items_per_class": 0}, "min_items_per_class"),
        ({"torch_compile_mode": "fast"}, "torch_compile_mode"),
    ]:
        with pytest.raises(ConfigurationError, match=f"`{name}`"):
            SearchArguments(**kwargs)


def test_eval_dataset_serves_as_test_split(hub, tiny_zoo, tmp_path):
    train, test = _image_ds(60), _image_ds(24)
    res = ModelSearcher(tiny_zoo.repo_ids[:3], train_dataset=train, args=_args(tmp_path), eval_dataset=test).search()
    assert res.dataset["test_items"] == 24 and res.dataset["items"] == 84


def test_an_eval_split_with_its_class_names_in_another_order_is_read_by_name(hub, tiny_zoo, tmp_path):
    """Casting ClassLabel to ClassLabel keeps ids, so an eval split named ["3", "2", "1", "0"] had each label read
    as another class by a train split named ["0", "1", "2", "3"]; it is renumbered by name now."""
    from datasets import Value

    train, test = _image_ds(60), _image_ds(24)
    names = test.features["label"].names
    reversed_ids = test.cast_column("label", Value("int64")).map(lambda r: {"label": 3 - r["label"]})
    renamed = reversed_ids.cast_column("label", ClassLabel(names=names[::-1]))  # the same classes, ids reversed
    assert [renamed.features["label"].int2str(i) for i in renamed["label"]] == [names[i] for i in test["label"]]
    runs = [
        ModelSearcher(
            tiny_zoo.repo_ids[:3], train_dataset=train, eval_dataset=held, args=_args(tmp_path, feature_cache=False)
        ).search()
        for held in (test, renamed)
    ]
    assert [it["scores"] for it in runs[1].iterations] == [it["scores"] for it in runs[0].iterations]
    extra = renamed.cast_column("label", ClassLabel(names=[*names[::-1], "4"]))
    with pytest.raises(DatasetError, match=r"`eval_dataset`'s `label` has classes \['4'\] that `train_dataset`'s"):
        ModelSearcher(tiny_zoo.repo_ids[:3], train_dataset=train, eval_dataset=extra, args=_args(tmp_path)).search()


class _NearestMean:
    """A user's scorer that follows the documented protocol: a pure `score` that takes `device`."""

    def __init__(self):
        self.devices = []

    def score(self, *, train_features, train_labels, test_features, test_labels, device="cpu"):
        self.devices.append(str(device))
        classes = train_labels.unique()
        means = torch.stack([train_features[train_labels == c].mean(0) for c in classes])
        pred = classes[torch.cdist(test_features.float(), means.float()).argmin(1)]
        return float((pred == test_labels).float().mean())


def test_a_scorer_object_ranks_alike_in_every_strategy_and_gets_the_device(hub, tiny_zoo, tmp_path):
    ds = digits(num_items=80, seed=0)
    results = {}
    for strategy in ("alsatian", "shift", "base"):
        scorer = _NearestMean()
        results[strategy] = ModelSearcher(
            tiny_zoo.repo_ids,
            train_dataset=ds,
            args=_args(tmp_path, strategy=strategy, scorer_kwargs={}),
            scorer=scorer,
        ).search()
        assert scorer.devices and set(scorer.devices) == {results[strategy].device}
    assert results["alsatian"].models == results["shift"].models == results["base"].models
    assert results["alsatian"].arguments["scorer"] == "_NearestMean"


def test_a_scorer_object_without_the_protocol_is_refused_with_the_fix(tiny_zoo, tmp_path):
    class NoDevice:
        def score(self, *, train_features, train_labels, test_features, test_labels):
            return 0.0

    with pytest.raises(ConfigurationError, match="`device`"):
        ModelSearcher(tiny_zoo.repo_ids, train_dataset=_image_ds(), args=_args(tmp_path), scorer=NoDevice())
    with pytest.raises(ConfigurationError, match="Scorer"):
        ModelSearcher(tiny_zoo.repo_ids, train_dataset=_image_ds(), args=_args(tmp_path), scorer=object())
    with pytest.raises(ConfigurationError, match="ModelSearcher\\(scorer=...\\)"):
        SearchArguments(scorer=_NearestMean())


def test_entry_point_is_keyword_only_and_rejects_duplicates(tiny_zoo, tmp_path):
    with pytest.raises(TypeError):
        ModelSearcher(tiny_zoo.repo_ids, _image_ds())  # the dataset must be passed by name
    with pytest.raises(ConfigurationError, match="more than once"):
        ModelSearcher([tiny_zoo.repo_ids[0]] * 2, train_dataset=_image_ds(), args=_args(tmp_path))


def test_hf_argument_parser_offers_the_literal_choices():
    from transformers import HfArgumentParser

    parser = HfArgumentParser(SearchArguments)
    actions = {a.dest: a for a in parser._actions}
    assert tuple(actions["strategy"].choices) == ("alsatian", "shift", "base")
    assert tuple(actions["scorer"].choices) == ("linear", "knn", "logme", "hscore", "head")
    assert "reduce-overhead" in actions["torch_compile_mode"].choices
    (args,) = parser.parse_args_into_dataclasses(["--strategy", "shift", "--test_size", "200"])
    assert args.strategy == "shift" and args.test_size == 200 and isinstance(args.test_size, int)
    with pytest.raises(SystemExit):
        parser.parse_args_into_dataclasses(["--strategy", "fast"])


def test_the_console_shows_one_bar_per_phase(hub, tiny_zoo, tmp_path):
    """With progress bars on, a search draws its own phase bars and no per-candidate download bar."""
    ds = digits(num_items=60, seed=0)
    ds.save_to_disk(str(tmp_path / "ds"))
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    env["HF_HOME"] = str(tmp_path / "fresh-hf-home")  # a cold HF cache: every candidate's small files download
    out = _cli_search(tmp_path, "--scorer", "knn", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "listing candidates" in out.stderr and "preparing candidates" in out.stderr
    assert "Fetching" not in out.stderr and "Download complete" not in out.stderr


class _Constant:
    """A proxy that cannot tell models apart: every cut is a tie."""

    def score(self, *, train_features, train_labels, test_features, test_labels, device="cpu"):
        return 0.5


def test_ties_at_the_cut_are_reported_in_the_result_and_the_log(hub, tiny_zoo, tmp_path, caplog):
    ds = digits(num_items=80, seed=0)
    with caplog.at_level("WARNING", logger="alsatian_hf"):
        result = ModelSearcher(
            tiny_zoo.repo_ids, train_dataset=ds, args=_args(tmp_path, scorer_kwargs={}), scorer=_Constant()
        ).search()
    first = result.iterations[0]
    assert result.ties[1] == tiny_zoo.repo_ids  # all six tie at 0.5 across the 6 -> 3 cut
    assert first["survivors"] == tiny_zoo.repo_ids[:3]  # the tie rule: input order
    assert "tie exactly at score 0.5" in caplog.text and "input order chose" in caplog.text
    assert "## Ties at the cut" in result.summary()
    untied = ModelSearcher(tiny_zoo.repo_ids, train_dataset=ds, args=_args(tmp_path, scorer="logme", scorer_kwargs={}))
    assert untied.search().ties == {}


def test_tied_at_cut_ignores_ties_on_one_side_of_the_cut():
    from alsatian_hf.search.halving import tied_at_cut

    scores = {"a": 3.0, "b": 2.0, "c": 2.0, "d": 1.0}
    assert tied_at_cut(list(scores), scores, ["a", "b", "c"]) == []  # b and c both survive
    assert tied_at_cut(list(scores), scores, ["a", "b"]) == ["b", "c"]  # b kept, c pruned on input order
    assert tied_at_cut(list(scores), scores, list(scores)) == []  # nothing pruned


def test_a_search_leaves_the_heap_it_found_out_of_gc_scans_and_hands_it_back(hub, tiny_zoo, tmp_path):
    """The objects that predate a search are frozen while it runs (its collections scan only its own), then
    unfrozen: garbage from before the search is still collected after it, and a caller's own freeze stays."""
    import gc
    import weakref

    class Cycle:
        pass

    frozen_during = []

    class Watcher(SearchCallback):
        def on_iteration_end(self, *, iteration, scores, survivors):
            frozen_during.append(gc.get_freeze_count())

    ds = digits(num_items=80, seed=0)
    args = _args(tmp_path, feature_cache=False)  # the second search runs its iterations, not restores them
    old = Cycle()
    old.me = old  # garbage only a collection frees
    dead_before = weakref.ref(old)
    del old
    assert gc.get_freeze_count() == 0
    ModelSearcher(tiny_zoo.repo_ids, train_dataset=ds, args=args, callbacks=[Watcher()]).search()
    assert frozen_during and min(frozen_during) > 10_000  # the imported libraries' objects, at least
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert dead_before() is None  # handed back to the collector, not kept alive

    gc.freeze()  # a pre-fork server's own freeze: the search neither adds to it nor undoes it
    try:
        theirs = gc.get_freeze_count()
        frozen_during.clear()
        ModelSearcher(tiny_zoo.repo_ids, train_dataset=ds, args=args, callbacks=[Watcher()]).search()
        # frozen objects that die leave the count, none join it; unfrozen, it would be 0 after the search
        assert frozen_during and max(frozen_during) <= theirs and theirs // 2 < gc.get_freeze_count() <= theirs
    finally:
        gc.unfreeze()
