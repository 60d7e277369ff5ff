"""What a model computes that its weights do not say: the part of its config that shapes its blocks.

Two checkpoints with the same tensors compute different features when their configs differ in, say, timm's
`global_pool` or `act_layer`, or transformers' `hidden_act`, `layer_norm_eps`, `is_decoder` or `rope_parameters`.
The task tree shares a node between blocks with equal hashes behind equal prefixes, so a block's identity there
carries this signature too (`candidates.build`); without it, one such checkpoint read out the other's features
and a search ranked otherwise than running each model alone.

What is left out is what fine-tunes of one base change without changing a block's computation: labels, names,
versions, dtypes, dropout, initialisation, caching and output flags, special token ids (but the padding id where
positions are numbered from it, as RoBERTa's are), and keys that neither the config class nor the modeling code
names. So they keep one signature and keep sharing. Any other key counts, so an unknown difference costs
sharing, never exactness. Keys only the read-out reads (pooling) salt the read-out alone, so the blocks before
it still share.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import sys
from dataclasses import dataclass, field

from torch import nn

from ._base import Adapter, SplitModel


# transformers' bookkeeping and what only training or generation reads
_IGNORED = frozenset({
    "_name_or_path", "architectures", "id2label", "label2id", "num_labels", "problem_type", "finetuning_task",
    "task_specific_params", "transformers_version", "dtype", "torch_dtype", "use_cache", "return_dict",
    "output_hidden_states", "output_attentions", "output_router_logits", "output_past", "torchscript",
    "tokenizer_class", "prefix", "init_std",
    "chunk_size_feed_forward", "tie_word_embeddings", "gradient_checkpointing", "max_length",
    # timm: the head's size; its pretrained_cfg describes preprocessing, which the task tree's root already keys
    "num_classes", "num_features", "pretrained_cfg",
})  # fmt: skip
_IGNORED_PARTS = ("dropout", "pdrop", "drop_rate", "drop_path", "layerdrop", "drop_block")
# what transformers' layers call on to build masks and rotary embeddings, reading config keys by name
_SHARED_CODE = ("transformers.masking_utils", "transformers.modeling_rope_utils")
_READOUT_KEYS = frozenset({"global_pool", "classifier_pooling"})
_READOUT_PREFIXES = ("summary_", "pooler_", "classifier_")


def _ignored(key: str, code: str | None) -> bool:
    if key == "pad_token_id" and (code is None or "create_position_ids_from_input_ids" in code):
        return False  # RoBERTa's family numbers its positions from the padding index
    return (
        key in _IGNORED
        or any(part in key for part in _IGNORED_PARTS)
        or key.startswith("initializer")
        or key.endswith(("_token_id", "_token_ids"))
    )


def _readout_only(key: str) -> bool:
    return key in _READOUT_KEYS or key.startswith(_READOUT_PREFIXES)


@dataclass(frozen=True)
class Signature:
    """`body` salts every block of a model, `readout` its last block too. `values`: the config values they digest,
    by dotted key, to say where two signatures differ (`differing_keys`)."""

    body: str
    readout: str
    values: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def salt(self, index: int, num_blocks: int, block_salt: str = "") -> str:
        parts = [self.body, self.readout if index == num_blocks - 1 else "", block_salt]
        return "\0".join(parts) if any(parts) else ""


def _split(values: dict, code: str | None) -> tuple[dict, dict]:
    """(body, read-out) values: `values` (by dotted key) without the ignored keys, the read-out's apart."""
    body, readout = {}, {}
    for key, value in values.items():
        name = key.rsplit(".", 1)[-1]  # a sub-config's key is judged by its own name
        if not _ignored(name, code):
            (readout if _readout_only(name) else body)[key] = value
    return body, readout


def _digest(values: dict) -> str:
    if not values:
        return ""
    raw = json.dumps(values, sort_keys=True, default=_jsonable, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def _jsonable(value):
    """A config value JSON cannot write, written alike in every process (ranks must agree on every hash)."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def _timm_config(model: nn.Module) -> dict:
    try:
        from timm.models._input import get_model_args  # the arguments that rebuild it, its defaults filled in
    except ImportError:  # timm releases before it: the arguments it was created with
        args = dict(getattr(model, "_model_args", {}))
    else:
        args = get_model_args(model)
    return {"architecture": (getattr(model, "pretrained_cfg", None) or {}).get("architecture"), **args}


def _is_config(obj) -> bool:
    return hasattr(obj, "to_dict") and hasattr(obj, "model_type")


@functools.lru_cache(maxsize=None)
def _class_keys(cls) -> frozenset[str] | None:
    try:
        return frozenset(cls().to_dict())
    except Exception:  # a config class without defaults: every key counts
        return None


@functools.lru_cache(maxsize=None)
def _source(module: str) -> str | None:
    try:
        return inspect.getsource(sys.modules[module])
    except (KeyError, OSError, TypeError):  # no source to read (a frozen install)
        return None


def _read_keys(config, code: str | None, prefix: str = "") -> dict:
    """`config.to_dict()` by dotted key (a sub-config's keys under its name), without the keys its class does
    not define that no code running the blocks names.

    Configs carry keys older transformers releases wrote and today's ignore (bert-base-uncased has no
    `position_embedding_type`; its fine-tunes, saved by transformers 4, say "absolute"): counted, such a key would
    part a base from all its fine-tunes. A key the code names (`getattr(config, "sliding_window", None)`) counts.
    """
    known = _class_keys(type(config)) if code is not None else None  # without the code, every key counts
    values = {}
    for key, value in config.to_dict().items():
        sub = getattr(config, key, None)
        if _is_config(sub):
            values.update(_read_keys(sub, code, f"{prefix}{key}."))
        elif known is None or key in known or key in code:
            values[prefix + key] = value
    return values


def signature(split: SplitModel) -> Signature:
    """The signature of a skeleton built from its config.json (`skeleton.build_model`), as split: of the config
    its adapter runs (`Adapter.blocks_config`: a dual encoder's image tower reads its `vision_config` alone)."""
    adapter = split.adapter or Adapter()
    config = adapter.blocks_config(split.model)
    code = ""
    if _is_config(config):
        sources = [_source(m) for m in (type(split.model).__module__, *_SHARED_CODE)]
        code = None if sources[0] is None else "\n".join(c for c in sources if c)
        values = _read_keys(config, code)
    else:
        values = _timm_config(split.model)
    body, readout = _split(values, code)
    return Signature(_digest(body), _digest(readout), {**body, **readout})


def differing_keys(a: dict, b: dict) -> list[str]:
    """The keys of two signatures' `values` whose values differ (or that one lacks)."""
    missing = object()
    return sorted(k for k in a.keys() | b.keys() if a.get(k, missing) != b.get(k, missing))
