"""PEFT LoRA adapters as candidates: the base model's blocks, with the adapter's low-rank updates merged in.

Many of an org's fine-tunes are LoRA adapters (`adapter_config.json` and `adapter_model.safetensors`, no
`config.json`). Such a candidate is its base model's checkpoint (config, processor, blocks) plus, per targeted
layer, W + scaling * B @ A, computed as PEFT's `merge_and_unload` computes it (same ops, same order, float32).

A block that no update touches keeps the base's content hash, so it is shared with the base and with every
other adapter of it: that is where the search saves its time. A touched block's hash is derived from the base
block's hash and the adapter tensors that touch it, so it is known without fetching the base block's bytes;
equal derived hashes mean equal merged tensors.

Supported: LoRA and DoRA on Linear, Conv and Embedding layers (rsLoRA, `alpha_pattern`, `fan_in_fan_out`,
`lora_bias`), and tensors saved whole (`bias="all"`, `modules_to_save`). Other PEFT methods, the LoRA variants
that do not merge so (`_VARIANTS`) and adapters stored only as `.bin` are skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from ..adapters import SplitModel
from ..errors import CandidateSkipped, UnsupportedArchitectureError
from ..hub.headers import ADAPTER_CONFIG, ADAPTER_WEIGHTS, is_adapter
from ..store.identity import safetensors_dtype
from .sources import TensorSource


__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "LoraBlockSource", "base_specs", "is_adapter", "read_adapter_config"]

_PREFIX = "base_model.model."  # what PeftModel puts before the wrapped model's own module paths
_LORA = re.compile(r"(?P<module>.+)\.(?P<part>lora_A\.weight|lora_B\.weight|lora_B\.bias|lora_embedding_A|"
                   r"lora_embedding_B|lora_magnitude_vector)(\.weight)?$")  # fmt: skip


# LoRA variants whose saved tensors do not merge as W + scaling * B @ A (or that change the architecture): the
# adapter_config.json field that turns each on, and what it is. Merging them as plain LoRA would be silently wrong.
_VARIANTS = {
    "use_qalora": "a QA-LoRA adapter",
    "use_bdlora": "a block-diagonal LoRA adapter",
    "alora_invocation_tokens": "an activated LoRA (aLoRA), which acts only after its invocation tokens",
    "velora_config": "a VeLoRA adapter",
    "monteclora_config": "a MonteCLoRA adapter",
    "kasa_config": "a KaSA adapter",
    "arrow_config": "an Arrow-routed set of LoRA adapters",
    "layer_replication": "a LoRA adapter with replicated layers (another architecture than its base)",
    "trainable_token_indices": "a LoRA adapter with trainable tokens",
    "target_parameters": "a LoRA adapter of parameters (such as MoE experts) rather than layers",
}
# initialisations that subtract the adapter's start from the base's weights (or quantize them), so an adapter saved
# without converting it is relative to a base that no repo holds
_BASE_CHANGING_INITS = ("pissa", "olora", "corda", "loftq")


def read_adapter_config(repo_id: str, folder: Path) -> dict:
    """`adapter_config.json`, checked to describe an adapter this module merges.

    Raises:
        CandidateSkipped: an unreadable config, another PEFT method, a LoRA variant (DoRA, ...), or an adapter
            relative to a base its initialisation changed (PiSSA, ...).
    """
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise CandidateSkipped(repo_id, f"{ADAPTER_CONFIG} cannot be read ({e}).") from e
    if not isinstance(config, dict):
        raise CandidateSkipped(repo_id, f"{ADAPTER_CONFIG} is not a JSON object.")
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "LORA":
        raise CandidateSkipped(
            repo_id, f"a PEFT {peft_type or 'untyped'} adapter; only LoRA adapters can be merged into their base. "
            "Merge it (`merge_and_unload()`) and push the full model to search it."
        )  # fmt: skip
    for field, what in _VARIANTS.items():
        if config.get(field):
            raise CandidateSkipped(
                repo_id, f"{what}; only plain LoRA can be merged here. Merge it (`merge_and_unload()`) and push the "
                "full model to search it."
            )  # fmt: skip
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.startswith(_BASE_CHANGING_INITS):
        raise CandidateSkipped(
            repo_id, f"a LoRA adapter initialised with {init!r}, which changes the base's weights: it is relative to "
            "that changed base, not to the one it names. Save it converted to plain LoRA "
            "(`save_pretrained(..., path_initial_model_for_weight_conversion=...)`) to search it."
        )  # fmt: skip
    return config


def base_specs(repo_id: str, config: dict, card_base: str | None) -> list[str]:
    """Where the adapter's base model may be, to try in order: `base_model_name_or_path` when it is a folder here
    or looks like a repo id, then the card's `base_model` (a path on the trainer's machine is common, and such a
    path may look like a repo id).

    Raises:
        CandidateSkipped: when neither names a base model that can be tried.
    """
    named = config.get("base_model_name_or_path")
    specs = []
    if isinstance(named, str) and named:
        if Path(named).expanduser().is_dir():
            specs.append(str(Path(named).expanduser()))
        elif re.fullmatch(r"[\w.-]+/[\w.-]+", named):
            specs.append(named)
    if card_base and card_base not in specs:
        specs.append(card_base)
    if not specs:
        raise CandidateSkipped(
            repo_id, f"its {ADAPTER_CONFIG} names no base model that can be opened (base_model_name_or_path: "
            f"{named!r}) and its card has no `base_model`. Set either to the base's repo id."
        )  # fmt: skip
    return specs


class LoraBlockSource:
    """A `TensorSource`: the base source's tensors, with the adapter's updates merged into the blocks they touch.

    An adapter names layers by their module paths in the model PEFT wrapped: the checkpoint's own names for
    adapters trained with transformers 4 (`vit.encoder.layer.0.attention.attention.query`), the renamed modules
    of transformers 5 (`vit.layers.0.attention.q_proj`), with or without a task head's prefix around the base.
    So updates are matched to a split's blocks, by checkpoint key or by model key, when a split is first seen.

    Args:
        base: the base model's block source.
        adapter: the adapter's tensors, as `adapter_model.safetensors` stores them.
        config: `adapter_config.json` (see `read_adapter_config`).
        name: the adapter's id, for error messages.

    Raises:
        UnsupportedArchitectureError: adapter tensors that are neither LoRA's nor DoRA's.
    """

    def __init__(self, base: TensorSource, adapter: dict[str, torch.Tensor], config: dict, name: str):
        self.base = base
        self.name = name
        self.fan_in_fan_out = bool(config.get("fan_in_fan_out", False))
        self._alpha = float(config.get("lora_alpha", 8))
        self._alpha_pattern = dict(config.get("alpha_pattern") or {})
        self._rslora = bool(config.get("use_rslora", False))
        self._lora: dict[str, dict[str, torch.Tensor]] = {}  # module path -> {part: tensor}
        self._whole: dict[str, torch.Tensor] = {}  # parameter path -> tensor saved whole (a trained bias, ...)
        for key, tensor in adapter.items():
            path = key.removeprefix(_PREFIX).replace(".base_layer.", ".")  # PEFT wraps a targeted layer
            m = _LORA.match(path)
            if m is not None:
                self._lora.setdefault(m["module"], {})[m["part"]] = tensor
            elif "lora_" in path:
                raise UnsupportedArchitectureError(
                    f"{self.name}: adapter tensor {key} is neither LoRA's nor DoRA's (a newer PEFT variant?); merge "
                    "the adapter (`merge_and_unload()`) and push the full model to search it."
                )
            else:  # `bias="all"/"lora_only"` or `modules_to_save`
                self._whole[path] = tensor
        for module, parts in self._lora.items():
            pairs = (
                ("lora_A.weight" in parts) + ("lora_B.weight" in parts),
                ("lora_embedding_A" in parts) + ("lora_embedding_B" in parts),
            )
            if sorted(pairs) != [0, 2]:
                raise UnsupportedArchitectureError(f"{self.name}: {module} does not have one lora_A and one lora_B.")
        # per split: the updates of its blocks' checkpoint keys (the split is held, so its id is not reused)
        self._bound: dict[int, tuple[SplitModel, _Bound]] = {}
        self._lock = threading.Lock()

    def _bind(self, split: SplitModel) -> "_Bound":
        """The updates by checkpoint key of `split`'s blocks (found once per split).

        Raises:
            UnsupportedArchitectureError: an update that matches several tensors, or one in another shape; or
                an adapter none of whose updates matches a tensor of the base.
        """
        with self._lock:
            held = self._bound.get(id(split))
            if held is None:
                held = self._bound[id(split)] = (split, self._match(split))
            return held[1]

    def _match(self, split: SplitModel) -> "_Bound":
        names: dict[str, set[str]] = {}  # checkpoint key or model key -> checkpoint keys
        fused: set[str] = set()  # the parts of fused checkpoint tensors (`Block.chunks`)
        for block in split.blocks:
            for k in block.keys:
                names.setdefault(k, set()).add(k)
                names.setdefault(block.model_key(k), set()).add(k)
                fused.update(block.targets(k) if k in block.chunks else ())
        checkpoint = set(self.base.keys())

        def resolve(path: str) -> str | None:
            if path in fused or any(_same_tail(path, part) for part in fused):
                raise UnsupportedArchitectureError(
                    f"{self.name}: adapter tensor {path} updates a part of a fused checkpoint tensor, which a "
                    "search does not merge into."
                )
            found = names.get(path) or {k for n, ks in names.items() if _same_tail(path, n) for k in ks}
            if len(found) > 1:
                raise UnsupportedArchitectureError(
                    f"{self.name}: adapter tensor {path} matches several tensors of the base ({sorted(found)})."
                )
            return next(iter(found), None)

        bound = _Bound()
        for path, tensor in self._whole.items():
            key = resolve(path)
            if key is not None:
                self._check_shape(key, tuple(tensor.shape), f"tensor {path}")
                bound.updates[key] = _Update(whole=tensor)
        matched = 0
        for module, parts in self._lora.items():
            key = resolve(module + ".weight")
            if key is None:  # a layer no block runs (a head)
                matched += any(_same_tail(module + ".weight", k) for k in checkpoint)
                continue
            matched += 1
            shape = tuple(self.base.shape(key))
            self._check_shape(key, _delta_shape(parts, shape, self.fan_in_fan_out), f"LoRA update of {module}")
            magnitude = parts.get("lora_magnitude_vector")
            outputs = (
                shape[1] if "lora_embedding_A" in parts or (len(shape) == 2 and self.fan_in_fan_out) else shape[0]
            )
            if magnitude is not None and magnitude.numel() != outputs:
                raise UnsupportedArchitectureError(
                    f"{self.name}: the DoRA magnitude of {module} has {magnitude.numel()} entries for {outputs} "
                    "outputs."
                )
            saved = bound.updates.get(key)
            bound.updates[key] = _Update(whole=saved.whole if saved else None, module=module, parts=parts)
            if "lora_B.bias" in parts:
                bias = resolve(module + ".bias")
                if bias is None:
                    raise UnsupportedArchitectureError(
                        f"{self.name}: {module} has a LoRA bias (`lora_bias`) but the base has no bias there."
                    )
                bound.bias_of[bias] = key
        if self._lora and not matched:
            raise UnsupportedArchitectureError(
                f"{self.name}: none of the adapter's {len(self._lora)} LoRA layers (such as "
                f"{next(iter(self._lora))}) is a layer of its base model; is it an adapter of another model?"
            )
        bound.digests = {key: self._digest(update) for key, update in bound.updates.items()}
        return bound

    def _check_shape(self, key: str, shape: tuple[int, ...], what: str) -> None:
        if shape != tuple(self.base.shape(key)):
            raise UnsupportedArchitectureError(
                f"{self.name}: the adapter's {what} is {list(shape)} but the base's {key} is "
                f"{list(self.base.shape(key))} (a resized vocabulary or another base model)."
            )

    def _scaling(self, module: str, rank: int) -> float:
        """PEFT's scaling: lora_alpha (or the first `alpha_pattern` entry matching the module) over r, or over
        sqrt(r) with rsLoRA. r is the adapter's rank, which `rank_pattern` may have set per module."""
        alpha = self._alpha
        for pattern, value in self._alpha_pattern.items():
            if re.match(rf"(.*\.)?({pattern})$", module):
                alpha = float(value)
                break
        return alpha / math.sqrt(rank) if self._rslora else alpha / rank

    def _digest(self, update: "_Update") -> str:
        """What an update is: its kind, its tensors and its scaling."""
        h = hashlib.sha256(b"alsatian-lora-update-v1\0")
        tensors = dict(update.parts or {})
        if update.parts is not None:
            h.update(f"lora\0{self._scaling(update.module, _rank(update.parts))!r}\0{self.fan_in_fan_out}\0".encode())
        if update.whole is not None:
            tensors["whole"] = update.whole
        for part, t in sorted(tensors.items()):
            t = t.contiguous()
            h.update(f"{part}\0{safetensors_dtype(t.dtype)}\0{list(t.shape)}\0".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    # TensorSource

    def keys(self) -> list[str]:
        return self.base.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        return self.base.shape(key)

    def prepare(self, split: SplitModel) -> None:
        self._bind(split)
        self.base.prepare(split)

    def block_hash(self, split: SplitModel, index: int) -> str:
        base_hash = self.base.block_hash(split, index)
        bound = self._bind(split)
        touched = bound.touched(split.blocks[index].keys)
        if not touched:
            return base_hash
        h = hashlib.sha256(f"alsatian-lora-block-v1\0{base_hash}\0".encode())
        for key in touched:
            parts = [bound.digests[key]] if key in bound.updates else []
            if key in bound.bias_of:
                parts.append("lora-bias-of:" + bound.digests[bound.bias_of[key]])
            h.update(f"{split.blocks[index].relative_name(key)}\0{':'.join(parts)}\0".encode())
        return h.hexdigest()

    def load_tensors(self, split: SplitModel, index: int) -> dict[str, torch.Tensor]:
        tensors = self.base.load_tensors(split, index)
        bound = self._bind(split)
        for key in bound.touched(split.blocks[index].keys):
            if key in bound.updates:
                tensors[key] = self._merged(bound.updates[key], tensors[key])
            if key in bound.bias_of:  # `lora_bias`: bias + lora_B.bias * scaling
                lora = bound.updates[bound.bias_of[key]]
                scaling = self._scaling(lora.module, _rank(lora.parts))
                tensors[key] = tensors[key].float() + lora.parts["lora_B.bias"].float() * scaling
        return tensors

    def _merged(self, update: "_Update", weight: torch.Tensor) -> torch.Tensor:
        """`weight` with its update, in float32, as PEFT's merge computes it (`get_delta_weight`, then +=)."""
        if update.parts is None:
            return update.whole.float()
        parts = update.parts
        weight = (update.whole if update.whole is not None else weight).float().clone()
        scaling = self._scaling(update.module, _rank(parts))
        if "lora_embedding_A" in parts:  # Embedding: transpose(B @ A, True)
            delta = (parts["lora_embedding_B"].float() @ parts["lora_embedding_A"].float()).T * scaling
        else:
            a, b = parts["lora_A.weight"].float(), parts["lora_B.weight"].float()
            if weight.dim() == 2:  # Linear: transpose(B @ A, fan_in_fan_out)
                delta = b @ a
                delta = (delta.T if self.fan_in_fan_out else delta) * scaling
            elif weight.dim() == 4 and weight.shape[2:4] == (1, 1):  # 1x1 Conv2d
                delta = (b.squeeze(3).squeeze(2) @ a.squeeze(3).squeeze(2)).unsqueeze(2).unsqueeze(3) * scaling
            else:  # ConvNd (groups=1, as `_delta_shape` checked)
                conv = {3: torch.nn.functional.conv1d, 4: torch.nn.functional.conv2d, 5: torch.nn.functional.conv3d}
                delta = conv[weight.dim()](a.transpose(0, 1), b).transpose(0, 1) * scaling
        magnitude = parts.get("lora_magnitude_vector")
        if magnitude is None:
            weight += delta
            return weight
        # DoRA: the merged direction rescaled to the learned magnitude, per output (`DoraLinearVariant.merge`)
        magnitude = magnitude.float()
        if "lora_embedding_A" in parts:  # the norm of each embedding dimension (`DoraEmbeddingVariant`)
            factor = (magnitude / torch.linalg.norm(weight.T + delta.T, dim=1)).view(1, -1)
        elif weight.dim() == 2:
            w, d = (weight.T, delta.T) if self.fan_in_fan_out else (weight, delta)
            factor = (magnitude / torch.linalg.norm(w + d, dim=1)).view(-1, 1)
            factor = factor.T if self.fan_in_fan_out else factor
        else:  # a convolution: the norm of each output channel's kernel (`_DoraConvNdLayer.get_weight_norm`)
            norm = (weight + delta).norm(p=2, dim=tuple(range(1, weight.dim())), keepdim=True).transpose(1, 0)
            factor = (magnitude / norm).view(-1, *[1] * (weight.dim() - 1))
        return factor * (weight + delta)


@dataclass
class _Update:
    """What an adapter does to one checkpoint tensor: replace it (`whole`, saved by `bias="all"` or
    `modules_to_save`), add a LoRA/DoRA update of `module` (`parts`: its lora_A, lora_B, ... tensors), or both."""

    whole: torch.Tensor | None = None
    module: str | None = None
    parts: dict[str, torch.Tensor] | None = None


class _Bound:
    """An adapter's updates matched to one split's checkpoint keys."""

    def __init__(self):
        self.updates: dict[str, _Update] = {}  # checkpoint key -> its update
        self.bias_of: dict[str, str] = {}  # bias key -> the weight key whose `lora_B.bias` updates it
        self.digests: dict[str, str] = {}

    def touched(self, keys) -> list[str]:
        return sorted(k for k in keys if k in self.updates or k in self.bias_of)


def _same_tail(a: str, b: str) -> bool:
    """Whether one dotted path ends with the other (a task head's prefix on one side only)."""
    return a.endswith("." + b) or b.endswith("." + a)


def _rank(parts: dict[str, torch.Tensor]) -> int:
    return parts.get("lora_A.weight", parts.get("lora_embedding_A")).shape[0]


def _delta_shape(parts: dict[str, torch.Tensor], base: tuple[int, ...], fan_in_fan_out: bool) -> tuple[int, ...]:
    """The shape of B @ A as `LoraBlockSource._merged` lays it out onto a base tensor of shape `base`.

    Raises:
        UnsupportedArchitectureError: a layer kind it cannot merge (a grouped convolution).
    """
    if "lora_embedding_A" in parts:
        return (parts["lora_embedding_A"].shape[1], parts["lora_embedding_B"].shape[0])
    a, b = parts["lora_A.weight"].shape, parts["lora_B.weight"].shape
    if len(base) == 2 and len(a) == len(b) == 2:
        return (a[1], b[0]) if fan_in_fan_out else (b[0], a[1])
    if len(base) in (3, 4, 5) and len(a) == len(b) == len(base) and b[1] == a[0]:
        return (b[0], a[1], *a[2:])
    raise UnsupportedArchitectureError(
        f"a LoRA update {list(a)} x {list(b)} onto a tensor of shape {list(base)} cannot be merged here (a grouped "
        "convolution, or an adapter of another base model)."
    )
