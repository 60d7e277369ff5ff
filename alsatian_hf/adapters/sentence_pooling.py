"""A sentence-transformers model's own read-out: its `Pooling`, `Dense` and `Normalize` modules over the token states.

A sentence-transformers repo is a transformers checkpoint plus `modules.json`, which lists the modules that turn
its token states into the sentence embedding it was trained to produce: typically the mean of the token states,
L2-normalised. Its transformers read-out (a pooler trained for pretraining, or [CLS]) is not that embedding, so a
search reads out as the repo's own modules do. The pooling equals `sentence_transformers`' `Pooling.forward` for
a padded batch (checked against sentence-transformers 6.3).

A repo may also name a prompt that `encode` puts before every text (`default_prompt_name` in
`config_sentence_transformers.json`: E5's "query: ", an instruction for a decoder embedder). A search prepends it
too (`sentence_prompt`; the text processor does), and where the pooling says `include_prompt: false` the pooling
skips the prompt's tokens, as sentence-transformers does.

After the pooling, `Dense` layers (LaBSE's, distiluse's) and a final `Normalize` run as sentence-transformers runs
them; a `Dense` layer's weights come from its folder's `model.safetensors` (never a `.bin`), and its identity
(their digest) is part of the read-out's. The modules stop at the first one that is none of these, or a `Dense`
without safetensors weights or with an activation not in `_ACTIVATIONS`: the features are what comes before it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UnsupportedArchitectureError
from ._base import SplitModel, State


logger = logging.getLogger("alsatian_hf")

# sentence-transformers' legacy `pooling_mode_*` keys, in the order it concatenates their outputs
_LEGACY_MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
MODES = tuple(_LEGACY_MODES.values())
_POOLING = ("sentence_transformers.models.Pooling", "sentence_transformers.sentence_transformer.modules.pooling")
_NORMALIZE = ("sentence_transformers.models.Normalize", "sentence_transformers.base.modules.normalize")
_TRANSFORMER = ("sentence_transformers.models.Transformer", "sentence_transformers.base.modules.transformer")
_DENSE = ("sentence_transformers.models.Dense", "sentence_transformers.base.modules.dense")
# the activations a `Dense` layer's config may name (as `torch.nn.modules.activation.Tanh`), which are run
_ACTIVATIONS = {"Tanh": torch.tanh, "Identity": lambda x: x, "ReLU": torch.relu, "Sigmoid": torch.sigmoid,
                "GELU": nn.functional.gelu, "SiLU": nn.functional.silu}  # fmt: skip


@dataclass(frozen=True, eq=False)
class Dense:
    """A sentence-transformers `Dense` layer: activation(x @ weight.T + bias) (+ x, with `use_residual`)."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    activation: str
    residual: bool
    digest: str  # of its weights and config: part of the read-out's identity

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(x.device, x.dtype)
        bias = self.bias.to(x.device, x.dtype) if self.bias is not None else None
        out = _ACTIVATIONS[self.activation](nn.functional.linear(x, weight, bias))
        return out + x if self.residual else out

    @classmethod
    def from_folder(cls, folder: Path) -> "Dense | None":
        """The layer saved in `folder`, or None (with the reason logged) where it cannot run here."""
        from safetensors.torch import load

        try:
            config = json.loads((folder / "config.json").read_text())
            weights = folder / "model.safetensors"
            if not weights.is_file():
                logger.info("%s: its Dense weights are not in safetensors: features stop before it", folder)
                return None
            raw = weights.read_bytes()  # once: for the tensors and for their digest
            tensors = load(raw)
            weight, bias = tensors["linear.weight"], tensors.get("linear.bias")
        except (OSError, ValueError, KeyError) as e:
            logger.info("%s: its Dense layer cannot be read (%s): features stop before it", folder, e)
            return None
        activation = str(config.get("activation_function") or "torch.nn.modules.linear.Identity")
        name = activation.rsplit(".", 1)[-1]
        residual = bool(config.get("use_residual"))
        if (
            not activation.startswith("torch.")
            or name not in _ACTIVATIONS
            or (residual and weight.shape[0] != weight.shape[1])
        ):
            logger.info("%s: its Dense layer (%s) does not run here: features stop before it", folder, activation)
            return None
        digest = hashlib.sha256(raw)
        digest.update(f"\0{name}\0{residual}".encode())
        return cls(weight, bias, name, residual, digest.hexdigest()[:16])


@dataclass(frozen=True)
class SentencePooling:
    """How a sentence-transformers repo reads out: pooling modes, concatenated in order, then L2 or not."""

    modes: tuple[str, ...]
    normalize: bool = False
    dense: tuple[Dense, ...] = ()  # run after the pooling, before the normalisation
    include_prompt: bool = True  # the pooling's `include_prompt`: False skips a prompt's tokens
    prompt_tokens: int = 0  # the prompt's tokens it skips (`with_prompt`)

    @property
    def signature(self) -> str:
        """Names the read-out: blocks with the same tensors but another read-out must not share a node."""
        dense = "".join(f":dense-{d.digest}" for d in self.dense)
        skips = f":skip-{self.prompt_tokens}" if self.prompt_tokens else ""
        return (
            "sentence-transformers:" + "+".join(self.modes) + skips + dense + (":normalize" if self.normalize else "")
        )

    def with_prompt(self, tokens: int) -> "SentencePooling":
        """This read-out of texts that start with a prompt of `tokens` tokens (its trailing special token not
        counted, as sentence-transformers counts it): skipped where the pooling does not include the prompt."""
        return dataclasses.replace(self, prompt_tokens=0 if self.include_prompt else tokens)

    @classmethod
    def from_folder(cls, folder: str | Path) -> "SentencePooling | None":
        """The read-out `modules.json` in `folder` describes, or None where there is none (or it does not start
        with a transformers model and a pooling)."""
        folder = Path(folder)
        try:
            modules = json.loads((folder / "modules.json").read_text())
            types = [str(m["type"]) for m in modules]
            if len(types) < 2 or not types[0].startswith(_TRANSFORMER) or not types[1].startswith(_POOLING):
                return None
            config = json.loads((folder / modules[1]["path"] / "config.json").read_text())
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None
        modes = config.get("pooling_mode")
        if modes is None:
            modes = tuple(mode for key, mode in _LEGACY_MODES.items() if config.get(key)) or ("mean",)
        modes = (modes,) if isinstance(modes, str) else tuple(modes)
        if not modes or any(mode not in MODES for mode in modes):
            logger.info("%s: pooling %s is not one sentence-transformers defines; its own read-out is used",
                        folder.name, modes)  # fmt: skip
            return None
        dense: list[Dense] = []
        at = 2
        while at < len(types) and types[at].startswith(_DENSE):
            layer = Dense.from_folder(folder / str(modules[at].get("path", "")))
            if layer is None:
                break
            dense.append(layer)
            at += 1
        normalize = at < len(types) and types[at].startswith(_NORMALIZE)
        rest = types[at + normalize :]
        if rest:
            logger.info("%s: features are its embeddings before its %s module(s)", folder.name,
                        ", ".join(t.rsplit(".", 1)[-1] for t in rest))  # fmt: skip
        return cls(modes, normalize, tuple(dense), include_prompt=config.get("include_prompt", True) is not False)

    def __call__(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The sentence embedding of token states (batch, tokens, width) under a 2-D attention mask."""
        padding = mask.to(torch.int32).argmax(dim=1)  # left padding: where each text's first token is
        if self.prompt_tokens:  # the prompt's tokens are not pooled; weightedmean's positions still count them
            at = torch.arange(mask.shape[1], device=mask.device).view(1, -1)
            mask = mask.masked_fill(at < padding.view(-1, 1) + self.prompt_tokens, 0)
        accumulate = torch.float32 if tokens.dtype in (torch.float16, torch.bfloat16) else tokens.dtype
        out = []
        mean_sum = mean_mask = None
        for mode in self.modes:
            if mode == "cls":  # the first token the mask keeps (left padding puts it later)
                first = mask.to(torch.int).argmax(dim=1)
                out.append(torch.gather(tokens, 1, first.view(-1, 1, 1).expand(-1, 1, tokens.shape[-1])).squeeze(1))
            elif mode == "max":
                keep = mask.unsqueeze(-1).expand_as(tokens).to(tokens.dtype)
                out.append(tokens.masked_fill(keep == 0, float("-inf")).max(dim=1).values)
            elif mode in ("mean", "mean_sqrt_len_tokens"):
                if mean_sum is None:
                    keep = mask.unsqueeze(-1).to(tokens.dtype)
                    mean_sum = (tokens * keep).sum(dim=1, dtype=accumulate)
                    mean_mask = torch.clamp(keep.sum(dim=1, dtype=accumulate), min=1e-9)
                out.append((mean_sum / (mean_mask if mode == "mean" else torch.sqrt(mean_mask))).to(tokens.dtype))
            elif mode == "weightedmean":  # position weights from the text's first token
                keep = mask.unsqueeze(-1).to(accumulate)
                weights = torch.arange(1, tokens.shape[1] + 1, device=tokens.device, dtype=accumulate).view(1, -1, 1)
                weighted = keep * (weights - padding.view(-1, 1, 1))
                total = (tokens * weighted).sum(dim=1)
                out.append((total / torch.clamp(weighted.sum(dim=1), min=1e-9)).to(tokens.dtype))
            else:  # lasttoken: the last token the mask keeps
                values, index = mask.flip(1).max(1)
                index = torch.where(values == 0, tokens.shape[1] - 1, index)
                gather = (tokens.shape[1] - index - 1).view(-1, 1, 1).expand(-1, 1, tokens.shape[-1])
                keep = mask.unsqueeze(-1).expand_as(tokens).to(tokens.dtype)
                out.append(torch.gather(tokens * keep, 1, gather).squeeze(1))
        embedding = torch.cat(out, dim=-1)
        for layer in self.dense:
            embedding = layer(embedding)
        return nn.functional.normalize(embedding, p=2, dim=-1) if self.normalize else embedding


def sentence_prompt(folder: str | Path, name: str | None = None) -> tuple[str, str] | None:
    """The prompt `encode` puts before every text of the sentence-transformers repo in `folder`, as (name, text):
    the one called `name` where the repo defines it, else its `default_prompt_name`'s. None where there is none,
    it is empty, or `name` is "" (no prompt)."""
    folder = Path(folder)
    if name == "" or not (folder / "modules.json").is_file():
        return None
    try:
        config = json.loads((folder / "config_sentence_transformers.json").read_text())
        prompts = config.get("prompts") or {}
        default = config.get("default_prompt_name")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(prompts, dict):
        return None
    chosen = name if name in prompts else default
    if name is not None and name not in prompts:
        instead = f"its default {default!r} is used" if chosen in prompts else "its texts go without one"
        logger.info("%s: it defines no %r prompt (it has %s); %s", folder.name, name, sorted(prompts) or "none",
                    instead)  # fmt: skip
    text = prompts.get(chosen) if isinstance(chosen, str) else None
    return (chosen, text) if isinstance(text, str) and text else None


def with_sentence_pooling(split: SplitModel, token_states, pooling: SentencePooling) -> SplitModel:
    """`split` with its read-out block's step replaced by `pooling` over the token states.

    Args:
        token_states: `(paths, step)` from the adapter: the module paths of what turns the read-out's input state
            into the model's token states (a final norm), and `step(model, state) -> (tokens, 2-D mask)`.

    The read-out keeps its tensors, a pooler it no longer reads included (BERT-base's is 0.5% of its bytes): the
    store indexes a checkpoint's blocks by position, so a block must own the same tensors however it is read
    out. It carries the pooling's signature as its `salt`, so it never shares a node with a read-out that has
    the same tensors but computes otherwise.
    """
    paths, tokens_of = token_states
    old = split.blocks[-1]
    outside = [p for p in paths if not any(mk.startswith(f"{p}.") for mk in old.model_keys.values())]
    if outside:  # the step would read weights the read-out block does not load
        raise UnsupportedArchitectureError(f"{split.family}: token states read {outside}, outside its read-out block.")

    def readout(m: nn.Module, s: State) -> State:
        return (pooling(*tokens_of(m, s)),)

    split.blocks = [*split.blocks[:-1], dataclasses.replace(old, step=readout, salt=pooling.signature)]
    return split
