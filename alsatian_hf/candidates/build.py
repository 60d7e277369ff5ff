"""Build an engine candidate: a split skeleton whose blocks load their tensors from a block source on demand.

`CandidateAssembler` is the whole step from a candidate spec (repo id, folder or listed `Candidate`) to an
`EngineCandidate`: open the repo, pick its processor, split the skeleton, hash the blocks, probe the shapes.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..adapters import (
    SentencePooling,
    SplitModel,
    assign,
    bind_block,
    check_coverage,
    sentence_prompt,
    split_model,
    state_nbytes,
    unload_block,
)
from ..adapters.signature import Signature, signature
from ..adapters.skeleton import build_model
from ..errors import ConfigurationError, UnsupportedArchitectureError
from ..hub import RangeReader
from ..hub.xet import XetReader
from ..store.block_store import BlockStore
from ..store.identity import salted
from .batchnorm import FoldPair, fold, fold_swaps, swapped
from .candidate import EngineBlock, EngineCandidate
from .compiled import check_compile_mode, compiled_step
from .layout import as_layout, conv_weights
from .precision import check_precision, precision_context
from .prepared import keep, pack, recipe, unpack
from .probe import ShapeProbe
from .processors import Modality_T, Processor, processor_for
from .repos import CandidateSpec, OpenedRepo, open_repo, opens_offline
from .sources import HubBlockSource, TensorSource


logger = logging.getLogger("alsatian_hf")


def build_candidate(
    model_id: str,
    config_dir: str | Path,
    source: TensorSource,
    *,
    input_key: str,
    probe_inputs: dict[str, torch.Tensor],
    probe: ShapeProbe,
    skeleton: torch.nn.Module | None = None,
    channels_last: bool | str | Sequence[bool] = True,
    fold_batchnorm: bool = True,
    precision: str = "fp32",
    prepared_store: BlockStore | None = None,
    compile_mode: str | None = None,
    pooling: SentencePooling | None = None,
) -> tuple[EngineCandidate, SplitModel]:
    """An engine candidate whose blocks load their tensors from `source` on demand.

    Candidates with one config share one meta skeleton (`build_model` caches it), so a block's loaded
    tensors are kept with the block and assigned into the skeleton right before each run; assignment is a
    few attribute writes, far cheaper than a skeleton per candidate.

    Args:
        probe_inputs: one prepared item (batched tensors), to measure output sizes and FLOPs per block.
        skeleton: the model built on the meta device from `config_dir`, if the caller has it already.
        channels_last: load Conv2d weights in channels-last layout, the one cuDNN and (mostly) oneDNN are fastest
            in: True in every block, False in none, "auto" in the blocks where this CPU measured it faster
            (`probe.layouts`, see `candidates.layout`), or one bool per block. Each block with a convolution gets
            its input in its own layout; the results differ by float rounding only.
        fold_batchnorm: run each eval-mode BatchNorm2d that follows a Conv2d folded into it (see
            `candidates.batchnorm`); the folded weights are computed at load (or memory-mapped from
            `prepared_store`), the stored block stays as it is.
        precision: "fp32" (exact; TF32 off on CUDA), "tf32" or "bf16" (autocast); see `candidates.precision`.
        prepared_store: where each block's prepared form (folded, channels-last) is kept and memory-mapped from
            (see `candidates.prepared`); None prepares it at every load.
        compile_mode: run each block's step through `torch.compile` in this mode (see `candidates.compiled`);
            None runs it eagerly.
        pooling: a sentence-transformers repo's read-out (`SentencePooling.from_folder(config_dir)`), which
            replaces the adapter's.

    Raises:
        UnsupportedArchitectureError: when no adapter splits the model or the split misses checkpoint keys.
    """
    check_precision(precision)
    if compile_mode is not None:
        check_compile_mode(compile_mode)
    skeleton = skeleton if skeleton is not None else build_model(config_dir, device="meta")
    plan = _split_plan(skeleton, source.keys(), pooling)
    split = plan.split
    check_coverage(split, source.keys())
    _check_shapes(split, skeleton, source)
    source.prepare(split)
    first = split.adapter.initial_state(probe_inputs)
    measured = probe.measure(Path(config_dir), input_key, first, pooling)
    sizes, flops = measured.sizes, measured.flops
    blocks = []
    if channels_last == "auto":
        cl = probe.layouts(Path(config_dir), input_key, first, measured) if any(plan.conv_weights) else []
    elif isinstance(channels_last, bool):
        cl = [channels_last] * len(split.blocks)
    else:
        cl = list(channels_last)
        if len(cl) != len(split.blocks):
            raise ConfigurationError(
                f"`channels_last` has {len(cl)} layouts for the {len(split.blocks)} blocks of {model_id}: pass one "
                "bool per block, or True, False or 'auto'."
            )
    layout = {i: plan.conv_weights[i] if cl and cl[i] else set() for i in range(len(split.blocks))}
    conv_blocks = [bool(layout[i]) for i, keys in enumerate(plan.conv_weights) if keys]
    # only a candidate that mixes layouts converts states between blocks; in one layout, a convolution with a
    # channels-last operand writes channels-last outputs by itself
    mixed = len(set(conv_blocks)) > 1
    folds = {
        i: _fold_keys(block, measured.fold_pairs[i]) if fold_batchnorm else {} for i, block in enumerate(split.blocks)
    }
    for i, block in enumerate(split.blocks):
        loaded: dict[str, torch.Tensor] = {}
        biases: dict[str, torch.Tensor] = {}  # conv path -> folded bias, while loaded
        bound: list = []  # after the first run since a load: the skeleton slots and BatchNorm swaps (unload drops them)

        def load(device, _i=i, _loaded=loaded, _biases=biases, _conv=layout[i], _folds=folds[i]):
            if not _loaded:
                tensors, folded_biases = _prepared(source, split, _i, skeleton, _folds, _conv, prepared_store)
                _biases.update({conv: bias.to(device) for conv, bias in folded_biases.items()})
                # a mixture of experts' tensors merged here, once a load, rather than at every bind
                _loaded.update(split.blocks[_i].joined({k: _to(v, device, channels_last=k in _conv)
                                                        for k, v in tensors.items()}))  # fmt: skip

        def unload(_b=block, _loaded=loaded, _biases=biases, _bound=bound):
            _loaded.clear()
            _biases.clear()
            _bound.clear()
            unload_block(split, _b)

        def run(
            state, _b=block, _loaded=loaded, _biases=biases, _bound=bound, _pairs=list(folds[i]),
            _convert=mixed and bool(plan.conv_weights[i]), _cl=bool(layout[i]),
        ):  # fmt: skip
            if not _bound:
                _bound += [bind_block(split, _b, _loaded), fold_swaps(split.model, _pairs, _biases)]
            slots, swaps = _bound
            assign(slots)  # the shared skeleton may hold another candidate's weights here
            if _convert:  # the block before may have run in the other layout
                state = as_layout(state, _cl)
            step = compiled_step(_b.step, state[0].device.type, compile_mode) if compile_mode else _b.step
            with precision_context(precision, state[0].device.type):
                if not swaps:
                    return step(split.model, state)
                with swapped(swaps):
                    return step(split.model, state)

        tensor_hash = source.block_hash(split, i)
        blocks.append(
            EngineBlock(
                content_hash=salted(tensor_hash, plan.signature.salt(i, len(split.blocks), block.salt)),
                tensor_hash=tensor_hash,
                param_bytes=plan.param_bytes[i],
                bytes_per_item=sizes[i],
                load=load,
                unload=unload,
                run=run,
                cost=flops[i] or 1.0,
            )
        )
    numerics = "+".join(
        name
        for name, used in (
            ("channels_last", all(conv_blocks) and any(conv_blocks)),
            # mixed: which conv blocks, in order, ran channels-last (1) or not (0)
            ("channels_last=" + "".join("01"[c] for c in conv_blocks), mixed),
            ("bn_folded", any(folds.values())),
            (precision, precision != "fp32"),
            (f"compiled-{compile_mode}", compile_mode is not None),
        )
        if used
    )
    input_bytes = state_nbytes(first) // max(first[0].shape[0], 1)
    candidate = EngineCandidate(model_id, input_key, blocks, split.adapter.initial_state, numerics, input_bytes,
                                plan.signature.values)  # fmt: skip
    return candidate, split


@dataclass
class _SplitPlan:
    """What splitting a skeleton for one set of checkpoint keys tells every candidate that has them."""

    split: SplitModel
    conv_weights: list[set[str]]  # per block: its checkpoint keys that are Conv2d weights
    param_bytes: list[int]  # per block
    signature: Signature  # what the skeleton's config makes its blocks compute, beyond their tensors


# skeleton -> checkpoint keys -> plan. Fine-tunes of one base share their skeleton and their keys, so a search
# splits once per architecture instead of once per candidate (a split and its per-block tables took ~5 ms of
# each candidate's ~16 ms of warm set-up); the split holds no candidate's weights, so sharing it is safe.
_SPLITS: "weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[str, ...], _SplitPlan]]" = weakref.WeakKeyDictionary()


def _split_plan(skeleton: torch.nn.Module, checkpoint_keys: list[str], pooling: SentencePooling | None = None
                ) -> _SplitPlan:  # fmt: skip
    """The skeleton split for `checkpoint_keys` (and `pooling`), and its per-block tables, computed once per
    (skeleton, keys, pooling).

    Raises:
        UnsupportedArchitectureError: when no adapter splits the model.
    """
    plans = _SPLITS.setdefault(skeleton, {})
    key = (*checkpoint_keys, pooling.signature if pooling is not None else "")
    plan = plans.get(key)
    if plan is None:
        split = split_model(skeleton, checkpoint_keys=list(checkpoint_keys), pooling=pooling)
        plan = plans[key] = _SplitPlan(
            split,
            [conv_weights(skeleton, block) for block in split.blocks],
            [sum(_tensor_bytes(skeleton, t) for t in block.model_tensors()) for block in split.blocks],
            signature(split),
        )
    return plan


def _fold_keys(block, pairs: list[FoldPair]) -> dict[FoldPair, dict[str, str]]:
    """Per pair whose tensors all lie in this block: `fold`'s argument name -> checkpoint key (the conv's bias
    only where it has one)."""
    by_model_key = {block.model_key(k): k for k in block.keys}
    out = {}
    for pair in pairs:
        roles = {"conv_weight": f"{pair.conv}.weight", "conv_bias": f"{pair.conv}.bias", "gamma": f"{pair.bn}.weight"}
        roles |= {"beta": f"{pair.bn}.bias", "mean": f"{pair.bn}.running_mean", "var": f"{pair.bn}.running_var"}
        keys = {role: by_model_key[mk] for role, mk in roles.items() if mk in by_model_key}
        if set(keys) >= {"conv_weight", "gamma", "beta", "mean", "var"}:
            out[pair] = keys
    return out


def _prepared(source: TensorSource, split: SplitModel, index: int, skeleton: torch.nn.Module,
              folds: dict[FoldPair, dict[str, str]], conv: set[str],
              store: BlockStore | None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:  # fmt: skip
    """The block's tensors as inference runs them (by checkpoint key) and its folded biases (by conv path):
    memory-mapped from `store`'s prepared block, or prepared here and then kept there."""
    block = split.blocks[index]
    name = None
    if store is not None and block.keys:
        name = recipe(block, folds, {p: skeleton.get_submodule(p.bn).eps for p in folds}, conv)
    if name is not None:
        block_hash = source.block_hash(split, index)
        stored = store.prepared(block_hash, name)
        if stored is not None:
            return unpack(block, stored, folds, conv)
    tensors = _in_model_dtypes(skeleton, block, source.load_tensors(split, index))  # a copy: folds replace some
    biases = {}
    for pair, keys in folds.items():
        layout = torch.channels_last if keys["conv_weight"] in conv else torch.preserve_format
        tensors[keys["conv_weight"]], biases[pair.conv] = _folded(skeleton, pair, keys, tensors, layout)
    if name is None:
        return tensors, biases
    tensors = {k: _to(v, torch.device("cpu"), channels_last=k in conv) for k, v in tensors.items()}
    keep(store, block_hash, name, pack(block, tensors, biases, folds, conv))
    return tensors, biases


def _in_model_dtypes(skeleton: torch.nn.Module, block, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The block's floating tensors in the dtypes of the model that runs them (float32): many Hub checkpoints
    are saved in float16 or bfloat16, and a float32 input into such a weight fails ("Input type (float) and
    bias type (c10::Half) should be the same"), where `from_pretrained` would have upcast it. Like that upcast,
    it is exact. Integer buffers stay as they are."""
    out = {}
    for key, tensor in tensors.items():
        dtype = _skeleton_tensor(skeleton, block.model_key(key)).dtype
        out[key] = tensor.to(dtype) if tensor.is_floating_point() and dtype.is_floating_point else tensor
    return out


def _folded(skeleton, pair: FoldPair, keys: dict[str, str], tensors: dict[str, torch.Tensor],
            memory_format: torch.memory_format):  # fmt: skip
    """The pair's folded conv (weight, bias), computed in float32 and returned in the weight's dtype, the
    weight in `memory_format` (channels-last: `_to` then has nothing left to copy)."""
    f32 = {"conv_bias": None} | {role: tensors[k].float() for role, k in keys.items()}
    weight, bias = fold(**f32, eps=skeleton.get_submodule(pair.bn).eps, memory_format=memory_format)
    dtype = tensors[keys["conv_weight"]].dtype
    return weight.to(dtype), bias.to(dtype)


def _to(tensor: torch.Tensor, device: torch.device, *, channels_last: bool) -> torch.Tensor:
    """On `device`, in channels-last layout if asked (a no-op for a weight `_folded` wrote so)."""
    tensor = tensor.to(device)
    return tensor.contiguous(memory_format=torch.channels_last) if channels_last else tensor


_TENSORS: "weakref.WeakKeyDictionary[torch.nn.Module, dict[str, torch.Tensor]]" = weakref.WeakKeyDictionary()


def _skeleton_tensor(model: torch.nn.Module, key: str) -> torch.Tensor:
    """One parameter or buffer of the skeleton; the table is built once per (shared) skeleton."""
    named = _TENSORS.get(model)
    if named is None:
        pairs = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
        named = _TENSORS[model] = dict(pairs)
    if key in named:
        return named[key]
    path, _, attr = key.rpartition(".")
    return getattr(model.get_submodule(path) if path else model, attr)


def _tensor_bytes(model: torch.nn.Module, key: str) -> int:
    t = _skeleton_tensor(model, key)
    return t.numel() * t.element_size()


def _checkpoint_shape(skeleton: torch.nn.Module, block, key: str) -> tuple[int, ...]:
    """The shape the model expects checkpoint tensor `key` in: its model tensor's, or its parts' joined."""
    shape = tuple(_skeleton_tensor(skeleton, block.model_key(key)).shape)
    if key not in block.chunks:
        return shape
    dim, parts = block.chunks[key]
    return (*shape[:dim], shape[dim] * len(parts), *shape[dim + 1 :])


def _check_shapes(split: SplitModel, skeleton: torch.nn.Module, source: TensorSource) -> None:
    """Every block tensor of the checkpoint has the shape the config's model expects.

    Raises:
        UnsupportedArchitectureError: when config.json disagrees with the weights (found before any block
            is fetched, instead of failing mid-search when the tensors are assigned).
    """
    for block in split.blocks:
        for key in block.keys:
            if block.model_key(key) in block.merges:
                continue
            expected, got = _checkpoint_shape(skeleton, block, key), source.shape(key)
            if expected != got:
                raise UnsupportedArchitectureError(
                    f"config.json disagrees with the checkpoint: {key} is {list(got)} in the weights but "
                    f"{list(expected)} in the model the config builds."
                )
        for model_key, merge in block.merges.items():  # merged on the meta device, as at load
            expected = list(_skeleton_tensor(skeleton, model_key).shape)
            shapes = {k: source.shape(k) for k, _ in merge.keys}
            try:
                got = list(merge.join(model_key, {k: torch.empty(v, device="meta") for k, v in shapes.items()}).shape)
            except RuntimeError:  # experts of unequal shapes
                got = sorted(set(shapes.values()))
            if expected != got:
                raise UnsupportedArchitectureError(
                    f"config.json disagrees with the checkpoint: its {len(merge.keys)} tensors merged into "
                    f"{model_key} (the experts) make {got}, but the model the config builds has {expected}."
                )


@dataclass
class AssembledCandidate:
    candidate: EngineCandidate
    revision: str
    processor: Processor
    base: str | None = None  # a LoRA adapter's base `repo@commit`
    weights_from: str | None = None  # a `.bin`-only commit's safetensors conversion (`refs/pr/N`)
    prompt: str | None = None  # the sentence-transformers prompt put before every text


class CandidateAssembler:
    """Turns candidate specs into engine candidates, sharing one block store, range reader and shape probe.

    Args:
        store: where Hub blocks are hashed and kept once.
        reader: the Range reader for Hub files (it counts requests and bytes).
        xet: reads Xet reconstructions, to prove blocks identical before fetching them; None fetches every
            block not in the store.
        modality: the dataset's ("image" or "text"); candidates of the other are skipped.
        inputs_for: one prepared item (batched tensors) in a processor's input, for the shape probe.
        revision: pins every Hub candidate to this branch or commit.
        image_size, max_length: overrides of the processors' image size and token length.
        channels_last: Conv2d weights in channels-last layout: True, False or "auto" (see `build_candidate`).
        fold_batchnorm: BatchNorms folded into their convolutions (see `build_candidate`).
        precision: the float precision blocks run in (see `build_candidate`).
        prepared_blocks: keep each block's prepared form in `store` and memory-map it (see `build_candidate`).
        compile_mode: the torch.compile mode blocks run in, or None for eager (see `build_candidate`).
        sentence_pooling: read out a sentence-transformers repo as its own `Pooling` and `Normalize` modules do
            (`adapters.sentence_pooling`), instead of as its transformers model does, and put its prompt before
            every text as its `encode` does.
        sentence_prompt: the name of the prompt to put before a sentence-transformers repo's texts where it
            defines one by that name; None: its `default_prompt_name`'s; "": none (`adapters.sentence_prompt`).
    """

    def __init__(
        self,
        *,
        store: BlockStore,
        reader: RangeReader,
        modality: Modality_T,
        inputs_for: Callable[[Processor], dict[str, torch.Tensor]],
        revision: str | None = None,
        image_size: int | None = None,
        max_length: int = 128,
        xet: XetReader | None = None,
        channels_last: bool | str = True,
        fold_batchnorm: bool = True,
        precision: str = "fp32",
        prepared_blocks: bool = True,
        compile_mode: str | None = None,
        sentence_pooling: bool = True,
        sentence_prompt: str | None = None,
    ):
        self.store = store
        self.reader = reader
        self.xet = xet
        self.modality = modality
        self.inputs_for = inputs_for
        self.revision = revision
        self.image_size = image_size
        self.max_length = max_length
        self.probe = ShapeProbe(store)
        self.channels_last = channels_last
        self.fold_batchnorm = fold_batchnorm
        self.precision = check_precision(precision)
        self.prepared_blocks = prepared_blocks
        self.compile_mode = compile_mode
        self.sentence_pooling = sentence_pooling
        self.sentence_prompt = sentence_prompt

    def open(self, spec: CandidateSpec) -> OpenedRepo:
        """The candidate's small files and block source (no weights yet). Thread-safe: a search opens the next
        candidates while it assembles one, so their requests overlap.

        Raises:
            CandidateSkipped, NoSafetensorsError, BlockFetchError, and huggingface_hub errors.
        """
        return open_repo(spec, revision=self.revision, store=self.store, reader=self.reader, xet=self.xet)

    def opens_offline(self, spec: CandidateSpec) -> bool:
        """Whether `open(spec)` sends no request (see `repos.opens_offline`)."""
        return opens_offline(spec, revision=self.revision, store=self.store)

    def assemble(self, spec: CandidateSpec, model_id: str, opened: OpenedRepo | None = None) -> AssembledCandidate:
        """`opened` is `open(spec)`'s result, if the caller opened the candidate ahead.

        Raises:
            CandidateSkipped: the candidate cannot be scored (listed skip reason, modality, preprocessing).
            UnsupportedArchitectureError, NoSafetensorsError, BlockFetchError, and huggingface_hub errors.
        """
        repo = opened if opened is not None else self.open(spec)
        # a model has about as many parameters as its checkpoint has tensors (ties add a few): a config that
        # builds far more does not describe these weights, and may be crafted to exhaust the machine
        skeleton = build_model(repo.folder, device="meta", max_parameters=2 * len(repo.source.keys()) + 64)
        # a sentence-transformers repo's texts start with its prompt, as its `encode` puts it
        reads_text = self.sentence_pooling and self.modality == "text"
        prompt = sentence_prompt(repo.folder, self.sentence_prompt) if reads_text else None
        processor = processor_for(
            repo.folder, skeleton, modality=self.modality, image_size=self.image_size, max_length=self.max_length,
            sentence_limit=self.sentence_pooling, prompt=prompt[1] if prompt else "",
        )  # fmt: skip
        pooling = (
            SentencePooling.from_folder(repo.folder) if self.sentence_pooling and processor.kind == "text" else None
        )
        candidate, _ = build_candidate(
            model_id,
            repo.folder,
            repo.source,
            input_key=processor.key,
            probe_inputs=self.inputs_for(processor),
            probe=self.probe,
            skeleton=skeleton,
            channels_last=self.channels_last,
            fold_batchnorm=self.fold_batchnorm,
            precision=self.precision,
            # a local checkpoint's blocks are not in the store (its gc would drop their prepared forms)
            prepared_store=self.store if self.prepared_blocks and isinstance(repo.source, HubBlockSource) else None,
            compile_mode=self.compile_mode,
            pooling=pooling.with_prompt(processor.prompt_tokens) if pooling is not None else None,
        )
        if prompt:
            logger.info("%s: its texts start with its sentence-transformers prompt %r (%r), as its `encode` does",
                        model_id, *prompt)  # fmt: skip
        return AssembledCandidate(
            candidate, repo.revision, processor, repo.base, repo.weights_from, prompt[1] if prompt else None
        )
