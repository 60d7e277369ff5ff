"""What an adapter yields, and the registry that finds one for a model.

An adapter splits a model into the ordered blocks of its feature extractor. Each block owns a set of
checkpoint keys and a step function `state -> state`, where a *state* is a tuple of tensors carried between
blocks (hidden states, attention masks, ...). The last block is the feature read-out, so running every block
gives the same features as the library's own pre-logits forward.

Blocks run against one *skeleton* model per candidate, built on the meta device; the engine materialises
only the tensors of the blocks it needs (`load_block`) and drops them again (`unload_block`).
"""

from __future__ import annotations

import copy
import fnmatch
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..errors import UnsupportedArchitectureError


State = tuple[torch.Tensor, ...]  # what blocks pass on: hidden states, attention masks, ...
StepFn = Callable[[nn.Module, State], State]


@dataclass(frozen=True)
class Merge:
    """Checkpoint tensors that `from_pretrained` merges into one model tensor: a mixture-of-experts layer's
    experts, stored one tensor per expert (and Mixtral's gate and up projections apart) but held stacked, as
    `experts.gate_up_proj` and `experts.down_proj`; or stored stacked but transposed (Qwen3-VL's).

    Args:
        keys: (checkpoint key, the converter's source pattern it matched), in the order `from_pretrained` collects
            them (natural key order, so expert 10 follows expert 9).
        converter: transformers' own `WeightConverter` for them, which `join` runs as `from_pretrained` does.
    """

    keys: tuple[tuple[str, str], ...]
    converter: Any
    model: Any = field(default=None, compare=False, repr=False)  # its shapes decide a `Transpose(check_dims=True)`

    def join(self, model_key: str, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model tensor at `model_key`, from the checkpoint tensors in `tensors` (a copy of them)."""
        converter = copy.deepcopy(self.converter)  # it collects the tensors: one instance per model tensor
        for key, pattern in self.keys:
            converter.add_tensor(model_key, key, pattern, tensors[key])
        joined = converter.convert(model_key, model=self.model)[model_key]
        return joined[0] if isinstance(joined, list) else joined

    def split(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """The checkpoint tensors `join` made `tensor` from (views of it): its concatenation cut back into one
        part per source pattern, each part's stack unbound into its experts."""
        from transformers.core_model_loading import Concatenate, Transpose

        patterns = [p for p in self.converter.source_patterns if any(p == q for _, q in self.keys)]
        groups = [[k for k, q in self.keys if q == p] for p in patterns]  # each in the order it was stacked in
        parts = [tensor]
        for op in reversed(self.converter.operations):  # `MergeModulelist`, `Concatenate`, `Transpose` (`_merging`)
            if isinstance(op, Concatenate):
                parts = [c for t in parts for c in t.chunk(len(groups), op.dim)]
            elif isinstance(op, Transpose):  # as `save_pretrained` writes it: in the model's shape where checked
                parts = parts if op.check_dims else [t.transpose(op.dim0, op.dim1) for t in parts]
            else:
                parts = [u for t in parts for u in t.unbind(op.dim)]
        return dict(zip([k for group in groups for k in group], parts, strict=True))


@dataclass
class Block:
    """One block of a feature extractor.

    Args:
        name: a readable name (`"layer1.0"`, `"stem"`, `"readout"`).
        keys: the parameter and buffer names it owns, in checkpoint key space.
        step: runs the block on the skeleton model: `step(model, state) -> state`.
        prefix: the common module prefix of `keys`, stripped to form block-relative names for hashing.
        model_keys: checkpoint key -> the model's own state-dict key (they differ when a library renames
            keys at load time).
        shared: checkpoint key -> its name in the block, for the keys of `keys` that other blocks list too
            (DeBERTa's relative-position embeddings, which every layer reads). Each such block hashes, stores
            and loads its own copy, so a block's hash still names everything it computes with; the name is the
            same in every block and in bare and head-ful checkpoints.
        salt: what the step computes that its tensors do not say, where a block with the same tensors computes
            otherwise (a sentence-transformers read-out, `sentence_pooling`); part of the block's identity in
            the task tree, not of its stored tensors.
        chunks: checkpoint key -> (dim, model keys): a fused checkpoint tensor (NomicBERT's and GTE's qkv) that
            the library cuts into equal parts along `dim` at load; the parts are assigned as views of it.
        merges: model key -> the checkpoint tensors merged into it at load (`Merge`: a mixture of experts). Each of
            them is in `keys`, and `model_keys` maps it to the merged tensor.
    """

    name: str
    keys: tuple[str, ...]
    step: StepFn
    prefix: str = ""
    model_keys: dict[str, str] = field(default_factory=dict)
    shared: dict[str, str] = field(default_factory=dict)
    salt: str = ""
    chunks: dict[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)
    merges: dict[str, Merge] = field(default_factory=dict)

    def model_key(self, key: str) -> str:
        return self.model_keys.get(key, key)

    def targets(self, key: str) -> tuple[str, ...]:
        """The model keys checkpoint tensor `key` is assigned to: its own, or a fused tensor's parts."""
        return self.chunks[key][1] if key in self.chunks else (self.model_key(key),)

    def model_tensors(self) -> tuple[str, ...]:
        """The model keys of the tensors the block assigns, each once (a merge's once for all its sources)."""
        return tuple(dict.fromkeys(t for key in self.keys for t in self.targets(key)))

    def parts(self, key: str, tensor):
        """(model key, tensor) of what checkpoint tensor `key` holds: itself, or a fused tensor's parts (views)."""
        if key not in self.chunks:
            return [(self.model_key(key), tensor)]
        dim, targets = self.chunks[key]
        return list(zip(targets, tensor.chunk(len(targets), dim)))

    def joined(self, tensors: dict) -> dict:
        """`tensors` (checkpoint keys) with each merge's sources replaced by its merged tensor, held under
        `("merged", model key)`: a key no checkpoint key can be, since a merged tensor may bear its one source's
        name (Qwen3-VL's transposed experts). As it is where they are merged already."""
        if not self.merges or all(("merged", k) in tensors for k in self.merges):
            return tensors
        sources = {key for merge in self.merges.values() for key, _ in merge.keys}
        out = {k: v for k, v in tensors.items() if k not in sources}
        return out | {
            ("merged", model_key): merge.join(model_key, tensors) for model_key, merge in self.merges.items()
        }

    def assigned(self, tensors: dict):
        """(model key, tensor) of everything the block assigns, from its checkpoint tensors (`tensors`), merged
        or not yet."""
        tensors = self.joined(tensors)
        for key in self.keys:
            if self.model_key(key) not in self.merges:
                yield from self.parts(key, tensors[key])
        yield from ((model_key, tensors["merged", model_key]) for model_key in self.merges)

    def relative_name(self, key: str) -> str:
        if key in self.shared:
            return self.shared[key]
        return key[len(self.prefix) :] if self.prefix and key.startswith(self.prefix) else key


@dataclass
class SplitModel:
    """A model split into blocks. `model` is the skeleton the blocks' step functions run on."""

    model: nn.Module
    blocks: list[Block]
    head_keys: tuple[str, ...]
    family: str
    adapter: "Adapter | None" = None
    head_model_keys: dict[str, str] = field(default_factory=dict)
    ignored_keys: tuple[str, ...] = ()  # checkpoint keys the model does not load (e.g. legacy `position_ids`)

    def model_key(self, checkpoint_key: str) -> str:
        for block in self.blocks:
            if checkpoint_key in block.model_keys:
                return block.model_keys[checkpoint_key]
        return self.head_model_keys.get(checkpoint_key, checkpoint_key)

    def run(self, state: State, start: int = 0, stop: int | None = None) -> State:
        for block in self.blocks[start:stop]:
            state = block.step(self.model, state)
        return state


class Adapter:
    """Base class: subclasses implement `split` for one model family."""

    family: str = ""
    # the data an image-text checkpoint is searched by, where its repo has processors for both ("image": CLIP's
    # tower; "text": Gemma 3's language model); None: the processor files alone decide
    modality: str | None = None

    def split(self, model: nn.Module, checkpoint_keys: Iterable[str] | None = None) -> SplitModel:
        """Split `model`; `checkpoint_keys` (e.g. from a Hub header) fixes the checkpoint key space."""
        raise NotImplementedError

    def blocks_config(self, model: nn.Module):
        """The transformers config whose keys decide what the blocks compute (`adapters.signature`); None for
        timm, whose model arguments do."""
        return getattr(model, "config", None)

    def initial_state(self, inputs: dict[str, torch.Tensor]) -> State:
        """Turns a batch of preprocessed inputs into the state block 0 consumes."""
        return (inputs["pixel_values"],)


_REGISTRY: dict[str, Adapter] = {}


def register_adapter(*names: str) -> Callable[[type[Adapter]], type[Adapter]]:
    """Class decorator: registers an adapter under transformers `model_type`s or timm `architecture`s.

    timm models are looked up as `timm:<ModelClass>` first and by their exact `architecture` name before that.
    Registering a name again replaces the earlier adapter, with a warning.

    Example:
        >>> from alsatian_hf.adapters import Adapter, list_adapters, register_adapter
        >>> @register_adapter("my_arch")
        ... class MyAdapter(Adapter):
        ...     family = "my-family"
        ...     def split(self, model, checkpoint_keys=None):
        ...         ...  # return a SplitModel with the feature extractor's blocks
        >>> list_adapters("my_*")
        ['my_arch']
    """

    def wrap(cls: type[Adapter]) -> type[Adapter]:
        instance = cls()
        for name in names:
            if name in _REGISTRY and type(_REGISTRY[name]) is not cls:
                warnings.warn(
                    f"register_adapter: {name!r} was registered to {type(_REGISTRY[name]).__name__}; "
                    f"{cls.__name__} replaces it.",
                    stacklevel=2,
                )
            _REGISTRY[name] = instance
        return cls

    return wrap


def list_adapters(filter: str | Iterable[str] = "") -> list[str]:
    """Registered names, sorted, optionally matching shell-style patterns (like `timm.list_models`).

    Example:
        >>> list_adapters("timm:Eff*")
        ['timm:EfficientNet']
    """
    patterns = [filter] if isinstance(filter, str) else list(filter)
    names = sorted(_REGISTRY)
    if not any(patterns):
        return names
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns if p)]


def find_adapter(*names: str | None, model_class: str = "?") -> Adapter:
    """The first registered adapter among `names` (most specific first).

    Raises:
        UnsupportedArchitectureError: when none is registered.
    """
    for name in names:
        if name and name in _REGISTRY:
            return _REGISTRY[name]
    tried = ", ".join(repr(n) for n in names if n) or "no name"
    raise UnsupportedArchitectureError(
        f"No block adapter for {model_class} (looked up {tried}). Register one with "
        "`@alsatian_hf.adapters.register_adapter('<model_type or timm architecture>')` on an `Adapter` subclass "
        "whose `split(model)` returns the feature extractor's blocks."
    )


def grid_state(hidden: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A token grid's height and width per item, as a (batch, 2) tensor: state, since a state holds tensors only
    (Swin's, PVT's, XCiT's blocks read the grid their input was cut into)."""
    return torch.tensor([[h, w]], device=hidden.device).expand(hidden.shape[0], 2)


def grid_size(grid: torch.Tensor) -> tuple[int, int]:
    """(height, width) of a `grid_state`."""
    return int(grid[0, 0]), int(grid[0, 1])


def grid_map(hidden: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Tokens (batch, h * w, channels) back to a feature map (batch, channels, h, w), `grid` (a `grid_state`)
    giving h and w: what a pyramid transformer's next stage embeds."""
    h, w = grid_size(grid)
    return hidden.reshape(hidden.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous()


def state_nbytes(state: State) -> int:
    """Bytes held by a state's tensors."""
    return sum(t.numel() * t.element_size() for t in state)


def base_model(model: nn.Module) -> tuple[nn.Module, str]:
    """The model's base (backbone) module and its key prefix: transformers' `base_model` under
    `base_model_prefix`, or the model itself (timm) with an empty prefix."""
    base = getattr(model, "base_model", model)
    return base, ("" if base is model else f"{model.base_model_prefix}.")


# -- helpers shared by the family modules -------------------------------------------------------------------
def state_keys(module: nn.Module, prefix: str) -> tuple[str, ...]:
    """Persistent parameter and buffer names of `module`, as seen from its root model under `prefix`."""
    return tuple(prefix + k for k in module.state_dict(keep_vars=True).keys())


def check_coverage(split: SplitModel, checkpoint_keys: Iterable[str]) -> None:
    """Every checkpoint key belongs to exactly one block or to the head, or to the blocks that each list it as
    `shared`.

    Raises:
        UnsupportedArchitectureError: naming the keys that are missing or claimed twice.
    """
    seen: dict[str, bool] = {}  # key -> whether every block so far lists it as shared
    double = []
    for block in split.blocks:
        for key in block.keys:
            if key in seen and not (seen[key] and key in block.shared):
                double.append(key)
            seen[key] = key in block.shared
    for key in split.head_keys:
        if key in seen:
            double.append(key)
        seen[key] = False
    wanted = set(checkpoint_keys) - set(split.ignored_keys)
    missing = sorted(wanted - set(seen))
    extra = sorted(set(seen) - wanted)
    if missing or extra or double:
        raise UnsupportedArchitectureError(
            f"{split.family} adapter does not cover the checkpoint exactly: missing={missing[:5]}, "
            f"unknown={extra[:5]}, claimed twice={double[:5]}."
        )
