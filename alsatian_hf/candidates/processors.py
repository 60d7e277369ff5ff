"""Processors: how a candidate turns dataset items into its input tensors.

A processor is timm's `resolve_data_config` + `create_transform`, transformers' `AutoImageProcessor`, or
`AutoTokenizer` at a fixed `max_length`. Its config is hashed into an `input_key`; candidates with equal keys
share prepared inputs (and a task-tree root).
"""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from .._digest_cache import DigestCache
from ..adapters.skeleton import library_of
from ..errors import CandidateSkipped


logger = logging.getLogger("alsatian_hf")

Modality_T = Literal["image", "text"]


@dataclass
class Processor:
    key: str  # the input key: a hash of the processor config
    kind: Modality_T
    fn: Callable[[list[Any]], dict[str, torch.Tensor]]
    prompt_tokens: int = 0  # a text prompt's tokens before each text, its trailing special token not counted


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Tokenizers and image processors by the digest of their files: loading one tokenizer per candidate was most
# of a 35-model text search's set-up (35 x ~50 ms).
_LOADED = DigestCache()


# timm processors by model: candidates of one config share one skeleton (`adapters.build_model`), and building
# the transform anew was a third of each warm candidate's set-up
_TIMM: "weakref.WeakKeyDictionary[torch.nn.Module, dict[int | None, Processor]]" = weakref.WeakKeyDictionary()


def timm_processor(model, image_size: int | None) -> Processor:
    """The eval preprocessing timm resolves for `model` (its `pretrained_cfg`), at `image_size` if given."""
    by_size = _TIMM.setdefault(model, {})
    if image_size not in by_size:
        by_size[image_size] = _timm_processor(model, image_size)
    return by_size[image_size]


def _timm_processor(model, image_size: int | None) -> Processor:
    from timm.data import create_transform, resolve_data_config
    from torchvision import transforms as T

    cfg = resolve_data_config({}, model=model)
    if image_size is not None:
        cfg = {**cfg, "input_size": (3, image_size, image_size), "crop_pct": 1.0}
    transform = create_transform(**cfg, is_training=False)
    split = _tensor_tail(transform)
    # Resize and crop treat every band alike, so on an "L" image they commute with the RGB conversion (which
    # copies the band); any other step might not.
    geometric = split is not None and all(type(t) in (T.Resize, T.CenterCrop) for t in split[0].transforms)

    def fn(images):
        if split is None:
            return {"pixel_values": torch.stack([transform(im.convert("RGB")) for im in images])}
        head, to_tensor, normalize = split
        if geometric:  # grayscale: resampled as one band, then copied to three (bit-equal, a third of the work)
            heads = [head(im).convert("RGB") if im.mode == "L" else head(im.convert("RGB")) for im in images]
        else:
            heads = [head(im.convert("RGB")) for im in images]
        return {"pixel_values": _to_normalized_batch(heads, to_tensor, normalize)}

    return Processor(_key(["timm", cfg]), "image", fn)


def _tensor_tail(transform) -> tuple[Callable, Callable, Any] | None:
    """(the per-image PIL steps, the ToTensor, the Normalize) when a torchvision Compose ends in ToTensor,
    Normalize, as timm's eval transform does; None for any other transform."""
    from timm.data.transforms import MaybeToTensor
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", []))
    if len(steps) < 2 or type(steps[-2]) not in (T.ToTensor, MaybeToTensor):
        return None
    if type(steps[-1]) is not T.Normalize or steps[-1].inplace:
        return None
    return T.Compose(steps[:-2]), steps[-2], steps[-1]


def _to_normalized_batch(images: list, to_tensor: Callable, normalize) -> torch.Tensor:
    """ToTensor then Normalize on the whole batch at once: the same float operations as per image (uint8 / 255,
    then - mean, / std), so the result is bit-equal, without three small tensor ops per image (at 32 px they
    were most of the preprocessing). Mixed sizes or modes fall back to per image.

    The float batch is this function's own, so it is converted from the NHWC bytes in one pass and then scaled
    and normalised in place: at 224 px a batch of 64 is 38 MB, and each fresh copy of it cost as much as
    resizing the images."""
    import numpy as np
    import torchvision.transforms.functional as F

    if len({(im.size, im.mode) for im in images}) != 1 or images[0].mode != "RGB":
        return torch.stack([normalize(to_tensor(im)) for im in images])
    nhwc = torch.from_numpy(np.stack([np.asarray(im) for im in images]))
    batch = nhwc.permute(0, 3, 1, 2).to(torch.get_default_dtype(), memory_format=torch.contiguous_format)
    return F.normalize(batch.div_(255), normalize.mean, normalize.std, inplace=True)


def image_processor(config_dir: Path, image_size: int | None) -> Processor:
    from transformers import AutoImageProcessor

    path = config_dir / "preprocessor_config.json"
    if not path.is_file():
        raise CandidateSkipped(str(config_dir), "no preprocessor_config.json: the image preprocessing is unknown.")
    spec = json.loads(path.read_text())
    spec.pop("processor_class", None)
    proc = _LOADED.get(
        "image-" + _key([spec, _model_type(config_dir)]),
        lambda: _no_custom_code(
            config_dir, lambda: AutoImageProcessor.from_pretrained(config_dir, trust_remote_code=False)
        ),
    )
    kwargs = _square(proc, image_size) if image_size is not None else {}

    def fn(images):
        out = proc(images=[im.convert("RGB") for im in images], return_tensors="pt", **kwargs)
        return {k: out[k] for k in _IMAGE_INPUTS if k in out}

    return Processor(_key(["hf-image", spec, kwargs]), "image", fn)


# what an image processor hands the model: the pixels, and for SigLIP 2's patches (NaFlex) their mask and grid
_IMAGE_INPUTS = ("pixel_values", "pixel_attention_mask", "spatial_shapes")


def _square(proc, image_size: int) -> dict[str, Any]:
    """The call arguments that make `proc` output image_size x image_size. ConvNeXt's processor (also
    microsoft/resnet-*'s) takes only a shortest edge and a `crop_pct`, and failed on a height and width ("'SizeDict'
    object has no attribute 'keys'"); the rest resize to a height and width without their center crop. A NaFlex
    processor (SigLIP 2's) keeps each image's aspect ratio within a patch budget: a square image is
    image_size x image_size under a budget of (image_size / patch)^2 patches."""
    if getattr(proc, "max_num_patches", None) and getattr(proc, "patch_size", None):
        return {"max_num_patches": max(1, image_size // proc.patch_size) ** 2}
    size = proc.size
    edge = size.get("shortest_edge") if isinstance(size, dict) else getattr(size, "shortest_edge", None)
    if edge and hasattr(proc, "crop_pct"):
        return {"size": {"shortest_edge": image_size}, "crop_pct": 1.0}
    return {"size": {"height": image_size, "width": image_size}, "do_center_crop": False}


def _searched_by(config_dir: Path) -> str | None:
    """The modality the adapter registered for the repo's model type searches it by (`Adapter.modality`), if
    it says."""
    from ..adapters import find_adapter
    from ..errors import UnsupportedArchitectureError

    try:
        return find_adapter(_model_type(config_dir)).modality
    except UnsupportedArchitectureError:  # discovered, or refused later with its reason
        return None


def _model_type(config_dir: Path) -> str:
    """What else Auto* classes read: config.json's model_type picks the class when the processor files don't."""
    path = config_dir / "config.json"
    return str(json.loads(path.read_text()).get("model_type", "")) if path.is_file() else ""


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "special_tokens_map.json",
    "spiece.model",  # T5, ALBERT
    "sentencepiece.bpe.model",  # XLM-R, CamemBERT
    "spm.model",  # DeBERTa-v2/v3
    "tokenizer.model",  # Llama-style
)


def text_processor(config_dir: Path, max_length: int, *, sentence_limit: bool = False, prompt: str = "") -> Processor:
    """`sentence_limit`: also cut texts at a sentence-transformers repo's `max_seq_length`, as its own
    `Transformer` module does (`sentence_bert_config.json`). `prompt`: put before every text (a pair's first), as
    sentence-transformers' `encode` puts a repo's prompt (`adapters.sentence_prompt`); it counts toward the cut."""
    files = [config_dir / f for f in TOKENIZER_FILES if (config_dir / f).is_file()]
    if not files:
        raise CandidateSkipped(str(config_dir), "no tokenizer files: the text preprocessing is unknown.")
    digest = hashlib.sha256(_model_type(config_dir).encode())
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    tok = _LOADED.get("text-" + digest.hexdigest(), lambda: _tokenizer(config_dir))
    # a longer input would index past the position embeddings (a 512-position BERT fails at 700); a
    # sentence-transformers repo's own modules cut shorter where they say so
    limits = [
        (n, why)
        for n, why in (
            (_max_tokens(config_dir, tok), "its {} positions"),
            (_sentence_max_tokens(config_dir) if sentence_limit else None,
             "the {} tokens its sentence-transformers modules take"),
        )
        if n is not None and n < max_length
    ]  # fmt: skip
    if limits:
        cut, why = min(limits, key=lambda limit: limit[0])  # the positions', where both cut alike
        if (digest.hexdigest(), max_length, cut) not in _CUT_SHORT:
            _CUT_SHORT.add((digest.hexdigest(), max_length, cut))
            logger.info("%s: `max_length` %d is more than %s; its texts are cut at %d.",
                        config_dir.name, max_length, why.format(cut), cut)  # fmt: skip
        max_length = cut

    def fn(texts):
        texts = list(texts)
        pairs = {}
        if texts and isinstance(texts[0], tuple):  # sentence pairs: [CLS] a [SEP] b [SEP], b's token types 1
            texts, pairs = [t[0] for t in texts], {"text_pair": [t[1] for t in texts]}
        texts = [prompt + t for t in texts] if prompt else texts
        enc = tok(texts, **pairs, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    key = f"text-{digest.hexdigest()[:16]}-{max_length}"
    if not prompt:
        return Processor(key, "text", fn)
    return Processor(f"{key}-{_key(prompt)[:8]}", "text", fn, prompt_tokens=_prompt_tokens(tok, prompt, max_length))


def _prompt_tokens(tok, prompt: str, max_length: int) -> int:
    """The prompt's tokens at the start of a prompted text, counted as sentence-transformers counts them for
    `include_prompt: false`: the prompt tokenized alone, less a trailing special token ([SEP], EOS)."""
    ids = tok(prompt, truncation=True, max_length=max_length)["input_ids"]
    return len(ids) - (1 if ids and ids[-1] in tok.all_special_ids else 0)


def _no_custom_code(config_dir: Path, load):
    """`load()`, called with `trust_remote_code=False`: a search never runs a repo's own code, and never lets
    transformers ask whether to (its prompt waits 15 s). A processor that fails to load where the repo names its
    own code for it (`auto_map`) is skipped saying so."""
    try:
        return load()
    except Exception as e:
        if "trust_remote_code" not in str(e) and not _names_own_code(config_dir):
            raise
        raise CandidateSkipped(
            str(config_dir), "its preprocessing is the repo's own code (`auto_map`), which a search never runs."
        ) from e


def _names_own_code(config_dir: Path) -> bool:
    """Whether a processor file of the repo maps an Auto class to the repo's own code (`auto_map`)."""
    for name in ("tokenizer_config.json", "preprocessor_config.json", "processor_config.json"):
        try:
            if "auto_map" in json.loads((config_dir / name).read_text()):
                return True
        except (OSError, ValueError):  # absent, or not JSON: transformers' own error says so
            continue
    return False


def _tokenizer(config_dir: Path):
    """AutoTokenizer's tokenizer, or a skip that names the packages a SentencePiece model alone needs: without
    them transformers falls back to reading it as a tiktoken file and says to install `tiktoken`, which does not
    help."""
    from transformers import AutoTokenizer
    from transformers.utils import is_protobuf_available, is_sentencepiece_available

    try:
        tok = _no_custom_code(config_dir, lambda: AutoTokenizer.from_pretrained(config_dir, trust_remote_code=False))
    except CandidateSkipped:
        raise
    except Exception as e:
        spm = sorted(f.name for f in config_dir.glob("*.model"))
        readable = is_sentencepiece_available() and is_protobuf_available()
        if spm and not (config_dir / "tokenizer.json").is_file() and not readable:
            raise CandidateSkipped(
                str(config_dir),
                f"its tokenizer is a SentencePiece model ({spm[0]}) without a tokenizer.json, which transformers "
                "converts only with the `sentencepiece` and `protobuf` packages: `pip install sentencepiece "
                "protobuf`, then search again.",
            ) from e
        raise
    if tok.pad_token is None and tok.eos_token is not None:
        # a decoder's tokenizer often has no padding token (Llama 3's); the attention mask marks the padding, and
        # the end-of-text token is what fine-tuning scripts pad with
        tok.pad_token = tok.eos_token
    return tok


_CUT_SHORT: set[tuple[str, int, int]] = set()  # (tokenizer digest, max_length, cut) already logged


# RoBERTa-style models number positions from pad_token_id + 1, so that many of their position embeddings are
# never a token's (RoBERTa: 514 positions, 512 tokens)
_PADDED_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm", "data2vec-text"}


def _sentence_max_tokens(config_dir: Path) -> int | None:
    """A sentence-transformers repo's `max_seq_length`, where it has `modules.json` and sets one."""
    if not (config_dir / "modules.json").is_file():
        return None
    try:
        limit = json.loads((config_dir / "sentence_bert_config.json").read_text()).get("max_seq_length")
    except (OSError, ValueError, AttributeError):
        return None
    return limit if isinstance(limit, int) and limit > 0 else None


def _max_tokens(config_dir: Path, tokenizer) -> int | None:
    """The most tokens the model takes: the smaller of what its position embeddings index (`max_position_embeddings`,
    less RoBERTa's offset) and the tokenizer's `model_max_length`, where each is set; None when neither."""
    path = config_dir / "config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and config.get("model_type") in _PADDED_POSITIONS:
        positions -= int(config.get("pad_token_id") or 0) + 1
    declared = getattr(tokenizer, "model_max_length", None)
    limits = [n for n in (positions, declared) if isinstance(n, int) and 0 < n < 1_000_000]  # unset: 1e30
    return min(limits) if limits else None


def processor_for(
    config_dir: Path,
    skeleton: torch.nn.Module,
    *,
    modality: Modality_T,
    image_size: int | None,
    max_length: int,
    sentence_limit: bool = False,
    prompt: str = "",
) -> Processor:
    """The processor of the model in `config_dir` for a dataset of `modality` (`sentence_limit` and `prompt`: see
    `text_processor`).

    Raises:
        CandidateSkipped: when the model's modality differs from the dataset's, or its preprocessing is unknown.
    """
    config_dir = Path(config_dir)
    if library_of(json.loads((config_dir / "config.json").read_text())) == "timm":
        if modality == "text":
            raise CandidateSkipped(str(config_dir), "an image model (timm), but the dataset is text.")
        return timm_processor(skeleton, image_size)
    has_text = any((config_dir / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"))
    reads_text = has_text and _searched_by(config_dir) == "text"  # an image-text LM searched by its text (Gemma 3)
    if ((config_dir / "preprocessor_config.json").is_file() or not has_text) and not reads_text:
        if modality == "text":  # a CLIP or SigLIP dual encoder has a tokenizer too, but its image tower is searched
            raise CandidateSkipped(str(config_dir), "an image model, but the dataset is text.")
        return image_processor(config_dir, image_size)
    if modality == "image":
        raise CandidateSkipped(str(config_dir), "a text model, but the dataset is images.")
    return text_processor(config_dir, max_length, sentence_limit=sentence_limit, prompt=prompt)
