"""Offline datasets and the data store: features, stratification, preprocessing once per processor."""

from __future__ import annotations

import PIL.Image
import pytest
import timm
import torch
from datasets import ClassLabel, Image, Value

from alsatian_hf.candidates import timm_processor
from alsatian_hf.search.data import PreparedData
from alsatian_hf.search.target import detect_columns
from alsatian_hf.zoo.data import digits, fashion_mnist, newsgroups


def test_fashion_mnist_and_digits_are_image_classlabel_datasets():
    for ds in (fashion_mnist(num_items=50, seed=0), digits(num_items=50, seed=0)):
        assert isinstance(ds.features["image"], Image) and isinstance(ds.features["label"], ClassLabel)
        assert ds.num_rows == 50 and len(set(ds["label"])) == 10  # a balanced subset keeps every class
    assert fashion_mnist(num_items=20, seed=3)["label"] == fashion_mnist(num_items=20, seed=3)["label"]
    assert fashion_mnist(num_items=10, split="test")[0]["image"].size == (28, 28)


def test_newsgroups_reads_the_tab_files_without_importing_orange():
    import sys

    ds = newsgroups(num_items=40, seed=0, categories=["sci.space", "rec.autos"])
    assert isinstance(ds.features["text"], Value) and ds.features["label"].names == ["rec.autos", "sci.space"]
    assert ds.num_rows == 40 and all(isinstance(t, str) and t for t in ds["text"])
    # (its .pth file may register an empty `orangecontrib` namespace at start-up; none of its code is imported)
    assert not any(name.startswith(("orangecontrib.", "Orange")) for name in sys.modules)


def test_column_detection():
    cols = detect_columns(digits(num_items=10))
    assert (cols.kind, cols.input, cols.label) == ("image", "image", "label")
    trainer_style = digits(num_items=10).cast_column("label", Value("int64")).rename_column("label", "labels")
    assert detect_columns(trainer_style).label == "labels"  # no ClassLabel: `labels`, as Trainer's datasets name it
    cols = detect_columns(newsgroups(num_items=10, categories=["sci.space", "rec.autos"]))
    assert (cols.kind, cols.input) == ("text", "text")


def test_preprocessing_is_cached_and_threads_give_the_same_tensors():
    ds = digits(num_items=30, seed=0)
    proc = timm_processor(timm.create_model("test_resnet"), image_size=32)
    calls = []
    fn = proc.fn
    proc.fn = lambda values: calls.append(len(values)) or fn(values)
    plain = PreparedData(ds, "image")
    key = plain.add(proc)
    first = plain(key, tuple(range(30)))
    again = plain(key, (3, 1, 2))
    assert calls == [30] and torch.equal(again["pixel_values"], first["pixel_values"][[3, 1, 2]])
    threaded = PreparedData(ds, "image", num_workers=3)
    threaded.add(proc)
    assert torch.equal(threaded(key, tuple(range(30)))["pixel_values"], first["pixel_values"])
    assert first["pixel_values"].shape == (30, 3, 32, 32)


def test_prepared_inputs_are_kept_up_to_the_budget_and_the_first_prepared_stay():
    """Searches read the same items again in one order (every model in `shift` and `base`): the first items
    prepared are kept within `budget`, later ones are prepared on every read and dropped, and every read returns
    what an unbounded store returns."""
    ds = digits(num_items=30, seed=0)
    proc = timm_processor(timm.create_model("test_resnet"), image_size=32)
    calls = []
    fn = proc.fn
    proc.fn = lambda values: calls.append(len(values)) or fn(values)
    item_bytes = 3 * 32 * 32 * 4
    bounded = PreparedData(ds, "image", budget=10 * item_bytes)
    key = bounded.add(proc)
    unbounded = PreparedData(ds, "image")
    unbounded.add(proc)
    want = unbounded(key, tuple(range(30)))["pixel_values"]
    calls.clear()
    for prefix in (10, 20, 20, 30):
        got = bounded(key, tuple(reversed(range(prefix))))["pixel_values"]
        assert torch.equal(got, want[list(reversed(range(prefix)))])
    # 0-9 were prepared once and kept; 10-19 three times, 20-29 once; the kept bytes are 0-9's
    assert calls == [10, 10, 10, 20] and bounded.nbytes == 10 * item_bytes


def test_text_processors_share_a_tokenizer_only_when_its_files_match(tmp_path):
    """Fine-tunes with the same tokenizer files get one input key (and one loaded tokenizer); a changed
    vocabulary is a different processor with different ids, and so is a changed SentencePiece model (DeBERTa-v3's
    `spm.model`)."""
    import json
    import shutil

    from alsatian_hf.candidates import text_processor
    from alsatian_hf.zoo.minilm import minilm_dir

    folders = []
    for name in ("a", "b", "changed"):
        folder = tmp_path / name
        folder.mkdir()
        for f in ("config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(minilm_dir() / f, folder / f)
        folders.append(folder)
    vocab = (folders[2] / "vocab.txt").read_text().splitlines()
    swap = vocab.index("hello"), vocab.index("world")
    vocab[swap[0]], vocab[swap[1]] = vocab[swap[1]], vocab[swap[0]]
    (folders[2] / "vocab.txt").write_text("\n".join(vocab) + "\n")
    assert json.loads((folders[0] / "config.json").read_text())["model_type"] == "bert"
    a, b, changed = (text_processor(f, max_length=8) for f in folders)
    assert a.key == b.key != changed.key
    ids = [p.fn(["hello world"])["input_ids"][0].tolist() for p in (a, b, changed)]
    assert ids[0] == ids[1] and ids[0][1:3] == list(swap) and ids[2][1:3] == list(reversed(swap))
    keys = []
    for name in ("spm-1", "spm-2"):
        shutil.copytree(folders[0], tmp_path / name)
        (tmp_path / name / "spm.model").write_bytes(name.encode())
        keys.append(text_processor(tmp_path / name, max_length=8).key)
    assert len({a.key, *keys}) == 3


def test_a_sentencepiece_tokenizer_that_cannot_be_read_names_the_packages_it_needs(tmp_path):
    """DeBERTa-v3's base ships `spm.model` and no tokenizer.json; without sentencepiece and protobuf,
    transformers falls back to tiktoken and says to install `tiktoken`. The skip names what does help."""
    from transformers.utils import is_protobuf_available, is_sentencepiece_available

    from alsatian_hf.candidates import text_processor
    from alsatian_hf.errors import CandidateSkipped

    if is_sentencepiece_available() and is_protobuf_available():
        pytest.skip("sentencepiece and protobuf are installed: transformers reads the model itself")
    (tmp_path / "config.json").write_text('{"model_type": "deberta-v2"}')
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "DebertaV2Tokenizer"}')
    (tmp_path / "spm.model").write_bytes(b"a SentencePiece model")
    with pytest.raises(
        CandidateSkipped, match=r"SentencePiece model \(spm.model\).*pip install sentencepiece protobuf"
    ):
        text_processor(tmp_path, max_length=8)


def test_a_dual_encoder_with_a_tokenizer_is_an_image_model_to_a_text_dataset(tmp_path):
    """CLIP and SigLIP repos ship a tokenizer beside their image processor, but their image tower is what is
    searched: a text dataset skips them as image models, instead of feeding text to the image processor."""
    import shutil

    from transformers import CLIPImageProcessor

    from alsatian_hf.candidates.processors import processor_for
    from alsatian_hf.errors import CandidateSkipped
    from alsatian_hf.zoo.minilm import minilm_dir

    (tmp_path / "config.json").write_text('{"model_type": "clip", "architectures": ["CLIPModel"]}')
    CLIPImageProcessor().save_pretrained(tmp_path)
    for f in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(minilm_dir() / f, tmp_path / f)
    with pytest.raises(CandidateSkipped, match="an image model, but the dataset is text"):
        processor_for(tmp_path, None, modality="text", image_size=None, max_length=8)
    assert processor_for(tmp_path, None, modality="image", image_size=None, max_length=8).kind == "image"


def test_a_tokenizer_that_is_the_repos_own_code_is_skipped_without_asking(tmp_path, monkeypatch):
    """A tokenizer_config whose `auto_map` names the repo's own class: transformers would ask on stdin whether to
    run it; the search skips the candidate, says why, and runs nothing."""
    import json
    import shutil

    from alsatian_hf.candidates import text_processor
    from alsatian_hf.errors import CandidateSkipped
    from alsatian_hf.zoo.minilm import minilm_dir

    shutil.copy(minilm_dir() / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "HostileTokenizer", "auto_map": {"AutoTokenizer": ["tok_hostile.HostileTokenizer", None]}}
    ))  # fmt: skip
    marker = tmp_path / "ran"
    (tmp_path / "tok_hostile.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    asked = []
    monkeypatch.setattr("builtins.input", lambda *args: asked.append(args) or "n")
    with pytest.raises(CandidateSkipped, match="the repo's own code"):
        text_processor(tmp_path, max_length=8)
    assert not asked and not marker.exists()


def test_fast_image_preprocessing_equals_the_per_image_path(tmp_path):
    """timm: ToTensor and Normalize run once on the stacked batch, bit-equal to timm's transform per image (mixed
    sizes fall back to it). transformers: the default torchvision-backed image processor agrees with the PIL one
    within transformers' own fast-vs-slow tolerance."""
    from timm.data import create_transform, resolve_data_config
    from transformers import AutoImageProcessor, ViTImageProcessor

    from alsatian_hf.candidates.processors import image_processor

    images = list(fashion_mnist(num_items=40, seed=0)["image"])  # grayscale ("L")
    mixed = images[:5] + [images[5].resize((40, 30))]
    gen = torch.Generator().manual_seed(0)
    rgb = [PIL.Image.fromarray(torch.randint(0, 256, (28, 28, 3), generator=gen, dtype=torch.uint8).numpy())
           for _ in range(4)]  # fmt: skip
    modes = images[:3] + rgb  # resized as one band or as three, in one batch
    for name, size in (("test_resnet", 32), ("test_vit", 48), ("test_resnet", None)):
        model = timm.create_model(name, num_classes=10)
        cfg = resolve_data_config({}, model=model)
        if size is not None:
            cfg = {**cfg, "input_size": (3, size, size), "crop_pct": 1.0}
        transform = create_transform(**cfg, is_training=False)
        for batch in (images, mixed, rgb, modes):
            want = torch.stack([transform(im.convert("RGB")) for im in batch])
            assert torch.equal(timm_processor(model, size).fn(batch)["pixel_values"], want)

    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "vit"}')
    fast = image_processor(tmp_path, 32).fn(images)["pixel_values"]
    pil = AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    slow = pil(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(fast, slow, atol=1e-1, rtol=1e-3)  # transformers' fast-vs-slow test tolerance
    assert (fast - slow).abs().mean() < 5e-3


def test_image_size_gives_square_inputs_whatever_the_processor_takes(tmp_path):
    """`image_size` used to pass a height and width to every transformers processor; ConvNeXt's, which
    microsoft/resnet-* use too, takes only a shortest edge and skipped every such candidate ("'SizeDict' object
    has no attribute 'keys'"). Each processor kind now gets its own arguments, and all give N x N."""
    from transformers import BitImageProcessor, ConvNextImageProcessor, ViTImageProcessor

    from alsatian_hf.candidates.processors import image_processor

    wide = [PIL.Image.fromarray(torch.randint(0, 256, (40, 56, 3), dtype=torch.uint8).numpy()) for _ in range(3)]
    for kind, processor in [
        ("convnext", ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875)),
        ("resnet", ConvNextImageProcessor(size={"shortest_edge": 224})),
        ("bit", BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224})),
        ("vit", ViTImageProcessor(size={"height": 224, "width": 224})),
    ]:
        folder = tmp_path / kind
        processor.save_pretrained(folder)
        (folder / "config.json").write_text(f'{{"model_type": "{kind}"}}')
        assert image_processor(folder, 32).fn(wide)["pixel_values"].shape == (3, 3, 32, 32), kind


def test_max_length_is_cut_to_the_tokens_a_model_takes(tmp_path):
    """What the position embeddings index (RoBERTa numbers positions from pad_token_id + 1: 514 positions take
    512 tokens; a 66-position one with pad 0 failed mid-search at 66 tokens) and the tokenizer's own limit."""
    import json

    from transformers import BertTokenizerFast

    from alsatian_hf.candidates.processors import text_processor

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]))
    cases = [
        ({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}, None, 512),
        ({"model_type": "roberta", "max_position_embeddings": 66, "pad_token_id": 0}, None, 65),
        ({"model_type": "bert", "max_position_embeddings": 64}, None, 64),
        ({"model_type": "bert", "max_position_embeddings": 512}, 32, 32),
        ({"model_type": "bert"}, None, 1024),  # nothing says: as asked
    ]
    for i, (config, declared, expected) in enumerate(cases):
        folder = tmp_path / str(i)
        tokenizer = BertTokenizerFast(vocab=str(vocab))
        if declared is not None:
            tokenizer.model_max_length = declared
        tokenizer.save_pretrained(folder)
        (folder / "config.json").write_text(json.dumps(config))
        processor = text_processor(folder, 1024)
        assert processor.key.endswith(f"-{expected}"), (config, processor.key)
        assert processor.fn(["a b " * 600])["input_ids"].shape == (1, expected)
