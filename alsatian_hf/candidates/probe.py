"""Output bytes per item, FLOPs and foldable BatchNorms of every block, measured once per architecture and input;
and, on a CPU, which blocks run channels-last (`layout`)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
import mmap
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .._device import device_name
from .._digest_cache import DigestCache
from ..adapters import SentencePooling, State, split_model, state_nbytes
from ..adapters.skeleton import build_model
from ..store.block_store import BlockStore
from .batchnorm import FoldPair, find_pairs, foldable_bn
from .layout import MARGIN, RULES, measure_layouts


@dataclass
class Measured:
    sizes: list[int]  # output bytes per item, per block
    flops: list[float]  # FLOPs per item, per block
    fold_pairs: list[list[FoldPair]]  # per block, the BatchNorms that fold into their convolution


logger = logging.getLogger("alsatian_hf")

# Measurements by (config, input key, probe shapes): every search in a process (a notebook's, a benchmark's)
# builds and runs the random-init copy once per architecture, not once per search (~1 s for resnet18).
_MEASURED = DigestCache(size=64)


# How FLOPs are counted, raised when that changes within a version: a store's measurements under another are not
# reused (2: grouped matrix products, a mixture of experts' experts, are counted)
_COUNTING = 2


@functools.cache
def _versions() -> str:
    """What else decides a measurement: the model code that builds the blocks, and how FLOPs are counted."""
    from importlib.metadata import version

    from .. import __version__

    return f"torch {torch.__version__}, timm {version('timm')}, transformers {version('transformers')}, " + (
        f"alsatian_hf {__version__}, counting {_COUNTING}"
    )


class ShapeProbe:
    """Output bytes per item, FLOPs and foldable BatchNorms of every block, from one real item through a
    random-init copy; measured once per process for each config, input key and input shape, and, with a
    `store`, once per store: a new process (a CLI search, each rank of a distributed one) reads it back
    instead of building and running the copy (0.17 s of a fresh process's resnet18 set-up).

    `layouts` is the other measurement it keeps: which blocks run channels-last on this CPU.

    Args:
        store: the block store whose index keeps measurements, keyed by the config's bytes, the input key and
            shapes, and the library versions (`_versions`).
    """

    def __init__(self, store: BlockStore | None = None):
        self.store = store
        self._layouts: dict[str, list[bool]] = {}  # this probe's answers (its store's, where it has one)

    def measure(self, config_dir: Path, input_key: str, state: State, pooling: SentencePooling | None = None
                ) -> Measured:  # fmt: skip
        """`pooling`: the read-out of a sentence-transformers repo (its width may differ from the adapter's)."""
        key = _key(config_dir, input_key, state) + (f"\0{pooling.signature}" if pooling is not None else "")

        def measure() -> dict:
            return dataclasses.asdict(_measure(config_dir, state, pooling))

        value = _MEASURED.get(key, lambda: self._stored(key, measure))
        return Measured(
            value["sizes"], value["flops"], [[FoldPair(**p) for p in pairs] for pairs in value["fold_pairs"]]
        )

    def layouts(self, config_dir: Path, input_key: str, state: State, measured: Measured | None = None) -> list[bool]:
        """Per block, whether it runs channels-last on this CPU (`layout.measure_layouts`), kept like `measure`'s
        measurements, under the CPU's model, ISA and threads too. `measured` is `measure`'s answer for the same
        arguments, where the caller has it (it saves reading and hashing the config again).

        A timing may differ between processes, so with a store, the store's answer wins over this process's:
        every search on one store runs the same layouts, and finds the features it cached under them. For the
        same reason the answer is keyed by the blocks' measured shapes, not the config's bytes: fine-tunes whose
        configs differ only in their labels share blocks, so they must share one timing, or a shared block
        would be computed in one layout by `alsatian` and in two by `base`.
        """
        measured = measured if measured is not None else self.measure(config_dir, input_key, state)
        key = _layouts_key(measured, input_key, state)
        if key not in self._layouts:

            def measure() -> list[bool]:  # this process's timing, for a store that has none
                return _MEASURED.get(key, lambda: measure_layouts(Path(config_dir), state))

            self._layouts[key] = self._stored(key, measure)
        return self._layouts[key]

    def _stored(self, key: str, measure: Callable[[], Any]) -> Any:
        if self.store is None:
            return measure()
        value = self.store.load_measurement(key)
        if value is not None:
            return value
        value = measure()
        try:
            # the first process to keep a value wins, and every other uses it: ranks of a distributed search
            # that time layouts at once must still run alike
            value = self.store.save_measurement(key, value)
        except sqlite3.Error as e:  # a cache: an index that cannot take it costs the next process the probe only
            logger.debug("shape probe: measurement not kept in the store (%s)", e)
        return value


def _key(config_dir: Path, input_key: str, state: State) -> str:
    """Everything a shape measurement depends on: the config's bytes, the input and the library versions."""
    digest = hashlib.sha256((Path(config_dir) / "config.json").read_bytes())
    digest.update(f"\0{input_key}\0{[(tuple(t.shape), t.dtype) for t in state]}".encode())
    digest.update(f"\0{_versions()}".encode())
    return digest.hexdigest()


def _layouts_key(measured: Measured, input_key: str, state: State) -> str:
    """What a layout timing depends on: the blocks (their output sizes and FLOPs), the input, the library
    versions, the CPU's model, ISA and threads, and the margin NCHW must win by and the rules beside it
    (answers kept under others are not reused)."""
    blob = (
        f"layouts\0{MARGIN}\0{RULES}\0{input_key}\0{[(tuple(t.shape), t.dtype) for t in state]}\0{measured.sizes}\0{measured.flops}"
        f"\0{_versions()}\0{device_name(torch.device('cpu'))}"
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _measure(config_dir: Path, state: State, pooling: SentencePooling | None = None) -> Measured:
    """Sizes and FLOPs depend on shapes alone. Real values are needed only to check BatchNorm folds, and to
    validate a discovered split against the model's own features (`adapters.discovery.validate`, which this
    random-init copy is the only place to run): such a model is measured on that copy. Any other runs each block
    on zeros, materialised for that block alone and dropped after it: a random-init copy of a 7B decoder would
    take 28 GB and minutes to build."""
    # the candidates' shared skeleton (built already) says whether there is BatchNorm; a private copy is run
    real = any(foldable_bn(m) for m in build_model(config_dir, device="meta").modules())
    if not real:
        model = build_model(config_dir, device="meta", shared=False)
        split = split_model(model, pooling=pooling)
        real = split.family.startswith("discovered:")
    if real:
        model = build_model(config_dir, device="cpu")
        split = split_model(model, pooling=pooling)
    sizes, flops, first = [], [], state
    with torch.inference_mode():
        for block in split.blocks:
            zeroed = [] if real else _zeros(model, block)
            counter = FlopCounterMode(display=False, custom_mapping=_grouped_mm_formulas())
            with counter:
                state = block.step(model, state)
            sizes.append(state_nbytes(state) // max(state[0].shape[0], 1))
            flops.append(float(counter.get_total_flops()) / max(state[0].shape[0], 1))
            for module, name in zeroed:  # back on the meta device
                module._parameters[name] = nn.Parameter(module._parameters[name].to("meta"), requires_grad=False)
    return Measured(sizes, flops, find_pairs(model, split, first) if real else [[] for _ in split.blocks])


def _grouped_mm_flops(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of a grouped matrix product, which torch's counter leaves at 0: the experts of a mixture of experts in
    transformers (`grouped_mm` experts, its default), whose cost would be the attention's alone (a ninth of a
    Mixtral layer's). Each row of a 2-D `a` meets one group of a 3-D `b`, so it is a product of `a` and one group;
    two 3-D operands multiply group by group; two 2-D ones split their contraction into groups."""
    if len(a_shape) == 2 and len(b_shape) == 2:
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]
    return 2 * math.prod(out_shape) * a_shape[-1]


@functools.cache
def _grouped_mm_formulas() -> dict:
    """`_grouped_mm_flops` for torch's grouped product and transformers' fallback for it (an opaque custom op)."""
    ops = [torch.ops.aten._grouped_mm]
    try:
        import transformers.integrations.moe  # noqa: F401 (registers the fallback op)

        ops.append(torch.ops.transformers.grouped_mm_fallback)
    except (ImportError, AttributeError):  # a transformers without it: its experts run as torch's op or a loop
        pass
    return dict.fromkeys(ops, _grouped_mm_flops)


def _zeros(model: nn.Module, block) -> list[tuple[nn.Module, str]]:
    """The block's parameters as zeros on the CPU (its buffers are real already); returns where they went."""
    done = []
    for model_key in block.model_tensors():
        path, _, name = model_key.rpartition(".")
        module = model.get_submodule(path) if path else model
        param = module._parameters.get(name)
        if param is not None and param.is_meta:
            module._parameters[name] = nn.Parameter(_untouched_zeros(param.shape, param.dtype), requires_grad=False)
            done.append((module, name))
    return done


def _untouched_zeros(shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """Zeros in fresh anonymous memory, which the OS maps to its one zero page until written: a block's weights
    read as zeros without being resident. `torch.zeros` wrote every byte: a Mixtral-8x7B layer's experts are
    5.6 GB in fp32, a DeepSeek-V3 layer's 45 GB. Kernels that copy a weight (a transpose, a packed layout) make
    that one tensor resident, for that op alone."""
    nbytes = shape.numel() * dtype.itemsize
    if nbytes < mmap.PAGESIZE:  # a page per bias and norm would cost more than it saves
        return torch.zeros(shape, dtype=dtype)
    return torch.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype).view(shape)  # the tensor holds the mapping
