"""Decoder-only classifiers searched end to end (Mistral: a sliding window in every layer; Qwen3-Next: Gated
DeltaNet layers and experts): a tokenizer without a padding token that pads on the left, as decoders' do, and the
same ranking in every strategy."""

from __future__ import annotations

import json
import shutil

import pytest

from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.zoo.data import newsgroups


def _decoder_tokenizer():
    """Letters as tokens, `<s>` first, no padding token, left padding: a decoder tokenizer in miniature."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    letters = [chr(c) for c in range(97, 123)]
    vocab = {"<unk>": 0, "</s>": 1, "<s>": 2, **{c: 3 + i for i, c in enumerate(letters)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   padding_side="left")  # fmt: skip


@pytest.fixture(scope="module")
def mistral_zoo(hub_root):
    from transformers import MistralConfig

    from alsatian_hf.zoo import TransformersSource, ZooSpec, build_zoo

    tokenizer = _decoder_tokenizer()
    assert tokenizer.pad_token is None
    config = MistralConfig(vocab_size=32, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=37, max_position_embeddings=64, num_labels=3,
                           sliding_window=4)  # fmt: skip
    source = TransformersSource(config=config, auto_class="AutoModelForSequenceClassification", processor=tokenizer,
                                pipeline_tag="text-classification")  # fmt: skip
    spec = ZooSpec("mistralorg", source, num_models=4, distribution="top_layers", seed=0, name="mistral")
    yield build_zoo(spec, hub_root)
    shutil.rmtree(hub_root / "mistralorg")


@pytest.fixture(scope="module")
def qwen3_next_zoo(hub_root):
    """Qwen3-Next: its left padding must stay out of the Gated DeltaNet layers' state, and its experts, saved one
    tensor apiece, are merged at load."""
    from transformers import Qwen3NextConfig

    from alsatian_hf.zoo import TransformersSource, ZooSpec, build_zoo

    config = Qwen3NextConfig(vocab_size=32, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                             num_key_value_heads=2, head_dim=8, intermediate_size=40, moe_intermediate_size=16,
                             num_experts=4, num_experts_per_tok=2, max_position_embeddings=64, num_labels=3,
                             layer_types=["linear_attention", "full_attention", "linear_attention"],
                             linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
                             linear_value_head_dim=8)  # fmt: skip
    source = TransformersSource(config=config, auto_class="AutoModelForSequenceClassification",
                                processor=_decoder_tokenizer(), pipeline_tag="text-classification")  # fmt: skip
    spec = ZooSpec("qwen3nextorg", source, num_models=4, distribution="top_layers", seed=0, name="qwen3next")
    yield build_zoo(spec, hub_root)
    shutil.rmtree(hub_root / "qwen3nextorg")


@pytest.mark.parametrize("zoo", ["mistral_zoo", "qwen3_next_zoo"])
def test_a_decoder_zoo_ranks_alike_in_every_strategy(hub, request, zoo, tmp_path):
    zoo = request.getfixturevalue(zoo)
    data = newsgroups(num_items=90, seed=0, categories=["sci.space", "rec.autos", "talk.politics.guns"])
    runs = {}
    for strategy in ("alsatian", "shift", "base"):
        args = SearchArguments(result_size=2, max_length=24, batch_size=32, strategy=strategy, scorer="logme",
                               store_dir=str(tmp_path / strategy))  # fmt: skip
        runs[strategy] = ModelSearcher(candidates=zoo.repo_ids, train_dataset=data, args=args).search()
    assert not runs["alsatian"].skipped  # padded with the end-of-text token where the tokenizer has no pad token
    scores = {s: [it["scores"] for it in r.iterations] for s, r in runs.items()}
    assert scores["alsatian"] == scores["shift"] == scores["base"]
    assert len(set(scores["alsatian"][0].values())) == 4
    # the fine-tunes changed only their top layers: the lower ones run once for the four
    assert runs["alsatian"].iterations[0]["block_executions"] < runs["base"].iterations[0]["block_executions"]


def test_a_tokenizer_that_cannot_pad_skips_its_candidate_only(hub, hub_root, mistral_zoo, tmp_path):
    """A tokenizer with neither a padding nor an end-of-text token fails every row. That used to be reported as the
    dataset's fault ("Row 78 ... cannot be read as texts") and ended the whole search."""
    broken = hub_root / "mistralorg" / "mistral-nopad"
    shutil.copytree(hub_root / mistral_zoo.repo_ids[1], broken)
    config = json.loads((broken / "tokenizer_config.json").read_text())
    (broken / "tokenizer_config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "eos_token"}))
    data = newsgroups(num_items=60, seed=0, categories=["sci.space", "rec.autos"])
    args = SearchArguments(result_size=1, max_length=24, batch_size=32, store_dir=str(tmp_path / "store"))
    result = ModelSearcher(
        [mistral_zoo.repo_ids[0], "mistralorg/mistral-nopad"], train_dataset=data, args=args
    ).search()
    assert result.models == [mistral_zoo.repo_ids[0]]
    assert "does not have a padding token" in result.skipped["mistralorg/mistral-nopad"]
