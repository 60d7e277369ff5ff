"""Turn a model repo (its config.json and a tensor source) into an engine candidate.

The tensor source is either a local safetensors checkpoint (`LocalSafetensors`) or the Hub block store,
which fetches blocks lazily by byte range. Output sizes and per-block FLOPs come from one real item run
through a randomly initialised copy of the architecture (`ShapeProbe`), once per architecture and input.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from pathlib import Path
from typing import Protocol

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..adapters import SplitModel, check_coverage, load_block, split_model, unload_block
from ..adapters.skeleton import build_model
from ..engine import EngineBlock, EngineCandidate, state_nbytes
from ..store.identity import content_hash, empty_block_hash, safetensors_dtype


class TensorSource(Protocol):
    def keys(self) -> list[str]: ...

    def block_hash(self, split: SplitModel, index: int) -> str: ...

    def load_tensors(self, split: SplitModel, index: int) -> dict[str, torch.Tensor]: ...


class LocalSafetensors:
    """A local `model.safetensors` or sharded `model.safetensors.index.json` checkpoint, read memory-mapped."""

    def __init__(self, folder: str | Path):
        from safetensors import safe_open

        self.folder = Path(folder)
        index = self.folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
        elif (self.folder / "model.safetensors").is_file():
            with safe_open(self.folder / "model.safetensors", framework="pt") as f:
                weight_map = {k: "model.safetensors" for k in f.keys()}
        else:
            raise FileNotFoundError(f"{self.folder} has no model.safetensors; weights load only from safetensors.")
        self.weight_map: dict[str, str] = weight_map
        self._handles: dict[str, object] = {}

    def keys(self) -> list[str]:
        return list(self.weight_map)

    def _tensor(self, key: str) -> torch.Tensor:
        from safetensors import safe_open

        shard = self.weight_map[key]
        if shard not in self._handles:
            self._handles[shard] = safe_open(self.folder / shard, framework="pt")
        return self._handles[shard].get_tensor(key)

    def block_hash(self, split: SplitModel, index: int) -> str:
        block = split.blocks[index]
        if not block.keys:
            return empty_block_hash(split.family, block.name)

        def items():
            for key in block.keys:
                t = self._tensor(key).contiguous()
                yield (block.relative_name(key), safetensors_dtype(t.dtype), list(t.shape),
                       t.reshape(-1).view(torch.uint8).numpy().tobytes())

        return content_hash(items())

    def load_tensors(self, split: SplitModel, index: int) -> dict[str, torch.Tensor]:
        return {k: self._tensor(k) for k in split.blocks[index].keys}


class ShapeProbe:
    """Output bytes per item and FLOPs of every block, from one real item through a random-init copy."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    def measure(self, config_dir: Path, input_key: str, state: tuple[torch.Tensor, ...]) -> tuple[list[int], list[float]]:
        config = (Path(config_dir) / "config.json").read_bytes()
        key = (hashlib.sha256(config).hexdigest(), input_key)
        if key not in self._cache:
            model = build_model(config_dir, device="cpu")
            split = split_model(model)
            sizes, flops = [], []
            with torch.inference_mode():
                for block in split.blocks:
                    counter = FlopCounterMode(display=False)
                    with counter:
                        state = block.step(model, state)
                    sizes.append(state_nbytes(state) // max(state[0].shape[0], 1))
                    flops.append(float(counter.get_total_flops()) / max(state[0].shape[0], 1))
            self._cache[key] = (sizes, flops)
        return self._cache[key]


def build_candidate(model_id: str, config_dir: str | Path, source: TensorSource, *, input_key: str,
                    probe_inputs: dict[str, torch.Tensor], probe: ShapeProbe,
                    skeleton: torch.nn.Module | None = None) -> tuple[EngineCandidate, SplitModel]:
    """An engine candidate whose blocks load their tensors from `source` on demand.

    Candidates with one config share one meta skeleton (`build_model` caches it), so a block's loaded
    tensors are kept with the block and assigned into the skeleton right before each run; assignment is a
    few attribute writes, far cheaper than a skeleton per candidate.

    Args:
        probe_inputs: one prepared item (batched tensors), to measure output sizes and FLOPs per block.
        skeleton: the model built on the meta device from `config_dir`, if the caller has it already.

    Raises:
        UnsupportedArchitectureError: when no adapter splits the model or the split misses checkpoint keys.
    """
    skeleton = skeleton if skeleton is not None else build_model(config_dir, device="meta")
    split = split_model(skeleton, checkpoint_keys=source.keys())
    check_coverage(split, source.keys())
    sizes, flops = probe.measure(Path(config_dir), input_key, split.adapter.initial_state(probe_inputs))
    blocks = []
    for i, block in enumerate(split.blocks):
        loaded: dict[str, torch.Tensor] = {}

        def load(device, _i=i, _loaded=loaded):
            if not _loaded:
                _loaded.update({k: v.to(device) for k, v in source.load_tensors(split, _i).items()})

        def unload(_b=block, _loaded=loaded):
            _loaded.clear()
            unload_block(split, _b)

        def run(state, _b=block, _loaded=loaded):
            load_block(split, _b, _loaded)  # the shared skeleton may hold another candidate's weights here
            return _b.step(split.model, state)

        param_bytes = sum(_tensor_bytes(skeleton, block.model_key(k)) for k in block.keys)
        blocks.append(EngineBlock(content_hash=source.block_hash(split, i), param_bytes=param_bytes,
                                  bytes_per_item=sizes[i], load=load, unload=unload, run=run, cost=flops[i] or 1.0))
    return EngineCandidate(model_id, input_key, blocks, split.adapter.initial_state), split


_TENSOR_BYTES: "weakref.WeakKeyDictionary[torch.nn.Module, dict[str, int]]" = weakref.WeakKeyDictionary()


def _tensor_bytes(model: torch.nn.Module, key: str) -> int:
    """Bytes of one parameter or buffer; the table is built once per (shared) skeleton."""
    sizes = _TENSOR_BYTES.get(model)
    if sizes is None:
        named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
        sizes = _TENSOR_BYTES[model] = {k: t.numel() * t.element_size() for k, t in named}
    if key in sizes:
        return sizes[key]
    path, _, attr = key.rpartition(".")
    t = getattr(model.get_submodule(path) if path else model, attr)
    return t.numel() * t.element_size()
