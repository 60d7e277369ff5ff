"""Block identity: a content hash per block and the chained prefix hash of the task tree.

The content hash is sha256 over each tensor's block-relative name, safetensors dtype, shape and raw bytes,
in name order. Hashing the bytes of a Hub safetensors shard and hashing the same tensors in memory give the
same value, so a block is recognised wherever it comes from.
"""

from __future__ import annotations

import hashlib
from typing import Iterable


# torch dtype name -> safetensors dtype tag
_SAFETENSORS_DTYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}


def content_hash(tensors: Iterable[tuple[str, str, list[int] | tuple[int, ...], bytes | memoryview]]) -> str:
    """sha256 over (relative name, dtype tag, shape, bytes) of each tensor, sorted by name."""
    h = hashlib.sha256(b"alsatian-block-v1\0")
    for name, dtype, shape, data in sorted(tensors, key=lambda t: t[0]):
        h.update(f"{name}\0{dtype}\0{','.join(str(d) for d in shape)}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def prefix_hash(parent: str, block_hash: str) -> str:
    """h_i = H(h_{i-1}, content_hash(block_i)): equal blocks behind equal prefixes share a task-tree node."""
    return hashlib.sha256(f"{parent}\0{block_hash}".encode()).hexdigest()


def root_key(input_key: str) -> str:
    """The task tree's root for one preprocessing: where every prefix chain starts."""
    return f"root:{input_key}"


def prefix_chain(input_key: str, block_hashes) -> list[str]:
    """The node keys along a model's path: [root, after block 1, after block 2, ...]."""
    chain = [root_key(input_key)]
    for block_hash in block_hashes:
        chain.append(prefix_hash(chain[-1], block_hash))
    return chain


def safetensors_dtype(dtype) -> str:
    return _SAFETENSORS_DTYPES[str(dtype).removeprefix("torch.")]


def tensor_content_hash(block, state: dict) -> str:
    """Content hash of `block` (an adapters.Block) from a model's in-memory state dict."""

    import torch

    apart = {k: t for m, merge in block.merges.items() for k, t in merge.split(state[m].detach().cpu()).items()}

    def items():
        for key in block.keys:
            if key in block.chunks:  # a fused checkpoint tensor: its parts joined
                t = torch.cat([state[m].detach().cpu() for m in block.targets(key)], block.chunks[key][0])
            elif key in apart:  # an expert's tensor, as the checkpoint holds it apart
                t = apart[key].contiguous()
            else:
                t = state[block.model_key(key)].detach().cpu().contiguous()
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
            yield block.relative_name(key), safetensors_dtype(t.dtype), list(t.shape), raw

    return content_hash(items())


def empty_block_hash(family: str, name: str) -> str:
    """Identity of a block without weights (a pooling read-out): its adapter family and name."""
    return hashlib.sha256(f"alsatian-empty-block\0{family}\0{name}".encode()).hexdigest()


def salted(block_hash: str, salt: str) -> str:
    """A block's identity in the task tree: its content hash, or, where its step computes what its tensors do not
    say (its model's config signature, `adapters.signature`, and `Block.salt`), both. Stored tensors keep the
    unsalted hash: they are the same bytes."""
    if not salt:
        return block_hash
    return hashlib.sha256(f"alsatian-salted-block\0{block_hash}\0{salt}".encode()).hexdigest()
