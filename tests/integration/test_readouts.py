"""Read-outs that the tensors do not decide: a sentence-transformers repo is searched by the embedding its own
modules produce (`adapters.sentence_pooling`), a checkpoint by the read-out its head class or config names; each
shares every block but the read-out with the same weights read out otherwise (`Block.salt`)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.zoo.data import newsgroups


MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


@pytest.fixture()
def sentence_repos(hub_root, tiny_bert_repo):
    """`storg/plain` (a BERT), and the same weights as sentence-transformers models: `storg/mean` and `storg/cls`
    (mean-pool, take [CLS]), and `storg/dense` (mean-pool, then a Dense layer to 8 features); all L2-normalised.
    Removed after."""
    import torch
    from safetensors.torch import save_file

    source = hub_root / tiny_bert_repo.repo_ids[0]
    for name, pooling in (("plain", None), ("mean", "mean"), ("cls", "cls"), ("dense", "mean")):
        folder = hub_root / "storg" / name
        shutil.copytree(source, folder)
        if pooling is None:
            continue
        modules = MODULES
        if name == "dense":
            dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
            modules = [MODULES[0], MODULES[1], dense, {**MODULES[2], "idx": 3, "name": "3", "path": "3_Normalize"}]
            (folder / "2_Dense").mkdir()
            (folder / "2_Dense" / "config.json").write_text(json.dumps({
                "in_features": 32, "out_features": 8, "bias": True,
                "activation_function": "torch.nn.modules.activation.Tanh"}))  # fmt: skip
            g = torch.Generator().manual_seed(0)
            layer = {"linear.weight": torch.randn(8, 32, generator=g), "linear.bias": torch.randn(8, generator=g)}
            save_file(layer, folder / "2_Dense" / "model.safetensors")
        (folder / "modules.json").write_text(json.dumps(modules))
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                                      "pooling_mode": pooling}))  # fmt: skip
    yield ["storg/plain", "storg/mean", "storg/cls", "storg/dense"]
    shutil.rmtree(hub_root / "storg")


def _search(repos, tmp_path, **kw):
    # LogME's evidence is continuous: three embeddings of one model score apart, where accuracies may tie
    args = SearchArguments(**{"result_size": 3, "max_length": 16, "store_dir": str(tmp_path / "store"),
                              "batch_size": 32, "scorer": "logme", **kw})  # fmt: skip
    data = newsgroups(num_items=60, seed=0, categories=["sci.space", "rec.autos", "talk.politics.guns"])
    return ModelSearcher(candidates=repos, train_dataset=data, args=args).search()


def test_a_sentence_transformers_repo_is_read_out_by_its_own_pooling(hub, sentence_repos, tmp_path):
    runs = {s: _search(sentence_repos, tmp_path / s, strategy=s) for s in ("alsatian", "shift", "base")}
    scores = {s: r.iterations[-1]["scores"] for s, r in runs.items()}
    assert scores["alsatian"] == scores["shift"] == scores["base"]
    first = runs["alsatian"].iterations[0]
    # four read-outs of one model: four embeddings (the Dense layer's weights came with the small files, by Xet)
    assert len(set(first["scores"].values())) == 4
    # every block but the read-out is computed once for the four: 1 + 2 layers + 4 read-outs, against 4 x 4
    assert first["block_executions"] < runs["base"].iterations[0]["block_executions"]
    assert len(first["block_time"]) == 3 + 4
    # and the search says the four part at the read-out alone, for their modules, not their configs
    apart = runs["alsatian"].plan["computed_apart"]
    assert [p["models"][0] for p in apart] == ["storg/plain"] * 3 and {p["blocks"] for p in apart} == {1}
    assert all(not p["keys"] and "read-outs differ" in p["why"] for p in apart)

    # read out as their transformers model does, the four are one model
    same = _search(sentence_repos, tmp_path / "off", sentence_pooling=False).iterations[0]["scores"]
    assert len(set(same.values())) == 1


def test_texts_are_cut_at_the_sentence_transformers_max_seq_length(hub, sentence_repos, tmp_path, caplog):
    """sentence-transformers cuts texts at `max_seq_length` (`sentence_bert_config.json`); so does the search, for
    a repo it reads out by its modules: scored as at that `max_length`."""
    (Path(hub.root) / "storg" / "mean" / "sentence_bert_config.json").write_text('{"max_seq_length": 8}')
    cut = "more than the 8 tokens its sentence-transformers modules take; its texts are cut at 8."
    with caplog.at_level(logging.INFO, logger="alsatian_hf"):
        long = _search(["storg/mean"], tmp_path / "long", max_length=16).iterations[0]["scores"]
        assert cut in caplog.text
        assert long == _search(["storg/mean"], tmp_path / "short", max_length=8).iterations[0]["scores"]
        caplog.clear()
        _search(["storg/mean"], tmp_path / "off", max_length=16, sentence_pooling=False)
        assert cut not in caplog.text  # read out as a transformers model, it takes its 64 positions


def test_a_sentence_transformers_repo_is_searched_with_its_default_prompt(hub, sentence_repos, tmp_path):
    """`encode` puts a repo's `default_prompt_name` prompt before every text; so does the search: a repo that names
    one scores as if the texts had been written with it, and its ranking row says which prompt. Where its pooling
    leaves the prompt out (`include_prompt: false`), the prompt's tokens are not pooled."""
    root = Path(hub.root) / "storg"
    prompts = {"query": "query: ", "classification": "classify the topic: "}
    for name, named in (("mean", prompts), ("cls", {"query": "query: "})):
        config = {"prompts": named, "default_prompt_name": "query"}
        (root / name / "config_sentence_transformers.json").write_text(json.dumps(config))
    data = newsgroups(num_items=60, seed=0, categories=["sci.space", "rec.autos", "talk.politics.guns"])

    def scores(repos, tmp, texts=data, **kw):
        args = SearchArguments(result_size=3, max_length=16, store_dir=str(tmp), batch_size=32, scorer="logme", **kw)
        return ModelSearcher(candidates=repos, train_dataset=texts, args=args).search()

    runs = {
        s: scores(["storg/plain", "storg/mean", "storg/cls"], tmp_path / s, strategy=s) for s in ("alsatian", "base")
    }
    assert runs["alsatian"].iterations[0]["scores"] == runs["base"].iterations[0]["scores"]
    prompted = runs["alsatian"]
    assert {r["model"]: r.get("prompt") for r in prompted.ranking} == {
        "storg/plain": None, "storg/mean": "query: ", "storg/cls": "query: "}  # fmt: skip
    assert "(prompt 'query: ')" in prompted.summary()
    # the prompt is the texts' prefix: scored as the prefixed texts without one
    by_hand = data.map(lambda row: {"text": "query: " + row["text"]})
    unprompted = scores(["storg/mean"], tmp_path / "by-hand", texts=by_hand, sentence_prompt="")
    assert prompted.iterations[0]["scores"]["storg/mean"] == unprompted.iterations[0]["scores"]["storg/mean"]
    assert "prompt" not in unprompted.ranking[0]
    # a named prompt where a repo defines it; the other keeps its default
    named = scores(["storg/mean", "storg/cls"], tmp_path / "named", sentence_prompt="classification")
    assert {r["model"]: r["prompt"] for r in named.ranking} == {
        "storg/mean": "classify the topic: ", "storg/cls": "query: "}  # fmt: skip
    assert named.iterations[0]["scores"]["storg/cls"] == prompted.iterations[0]["scores"]["storg/cls"]

    # a pooling that leaves the prompt out reads out otherwise, over the same prompted texts: in the same store
    # (whose feature cache holds the first read-out's features), it must not be taken for the first
    config = root / "mean" / "1_Pooling" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "include_prompt": False}))
    skipped = scores(["storg/mean"], tmp_path / "alsatian").iterations[0]["scores"]["storg/mean"]
    assert skipped != prompted.iterations[0]["scores"]["storg/mean"]
    assert skipped == scores(["storg/mean"], tmp_path / "fresh").iterations[0]["scores"]["storg/mean"]


def test_one_store_serves_a_repo_read_out_either_way(hub, hub_root, letters_tokenizer, tmp_path):
    """A pre-LayerNorm encoder's read-out holds its final norm and its pooler. Read out by its modules it reads the
    norm alone; the block must still own both, or the store's index of the repo's blocks (by position) gives the
    other read-out the wrong tensors."""
    from transformers import MegatronBertConfig, MegatronBertModel

    folder = hub_root / "storg" / "megatron"
    config = MegatronBertConfig(vocab_size=57, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=37, max_position_embeddings=64)  # fmt: skip
    MegatronBertModel(config).save_pretrained(folder)
    letters_tokenizer.save_pretrained(folder)
    (folder / "modules.json").write_text(json.dumps(MODULES))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32}))
    try:
        pooled = _search(["storg/megatron"], tmp_path / "shared").iterations[0]["scores"]
        again = _search(["storg/megatron"], tmp_path / "shared", sentence_pooling=False)
        fresh = _search(["storg/megatron"], tmp_path / "fresh", sentence_pooling=False).iterations[0]["scores"]
        assert not again.skipped and again.iterations[0]["scores"] == fresh != pooled
    finally:
        shutil.rmtree(hub_root / "storg")


def test_one_checkpoint_read_out_two_ways_by_its_head_class_shares_no_read_out(tmp_path):
    """facebook/dinov2-base is a bare `Dinov2Model` (read out as [CLS]); a head-only fine-tune of it is a
    `Dinov2ForImageClassification` (read out as [CLS] and the mean of the patches) with the same tensors. Their
    read-outs held the same tensors and shared a node, so one of them was scored on the other's features."""
    import torch
    from transformers import Dinov2Config, Dinov2ForImageClassification, Dinov2Model, ViTImageProcessor

    from alsatian_hf.zoo.data import digits

    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                          image_size=32, patch_size=8, num_labels=10)  # fmt: skip
    torch.manual_seed(0)
    base = Dinov2Model(config)
    tuned = Dinov2ForImageClassification(config)
    tuned.dinov2.load_state_dict(base.state_dict())  # a head-only fine-tune
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    for name, model in (("base", base), ("tuned", tuned)):
        model.save_pretrained(tmp_path / name)
        processor.save_pretrained(tmp_path / name)
    runs = {}
    for strategy in ("alsatian", "base"):
        args = SearchArguments(result_size=2, batch_size=32, scorer="logme", strategy=strategy,
                               store_dir=str(tmp_path / f"store-{strategy}"))  # fmt: skip
        candidates = [str(tmp_path / "base"), str(tmp_path / "tuned")]
        runs[strategy] = ModelSearcher(candidates, train_dataset=digits(num_items=60, seed=0), args=args).search()
    scores = runs["alsatian"].iterations[0]["scores"]
    assert scores == runs["base"].iterations[0]["scores"] and len(set(scores.values())) == 2
