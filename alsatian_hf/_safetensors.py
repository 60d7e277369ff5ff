"""The safetensors format in one place: the header (8-byte little-endian length, then JSON) and block files.

Every reader of a header (the Hub client by Range, the local Hub from disk, the block store, benchmarks and
tests) goes through `read_header`, so a malformed file is rejected the same way everywhere. Nothing here
imports a Hugging Face library: the local Hub uses it before `HF_ENDPOINT` is set.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Callable

from .errors import SafetensorsHeaderError


MAX_HEADER = 100 * 1024 * 1024  # the format's own limit

# bytes per element of the dtypes whose byte count can be checked against the shape
DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
    "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip

Header = dict[str, dict[str, Any]]  # tensor name -> {"dtype", "shape", "data_offsets"}, `__metadata__` dropped
Tensors = list[tuple[str, str, tuple[int, ...], bytes]]  # (name, dtype tag, shape, raw bytes)


def read_header(
    read: Callable[[int, int], bytes], *, name: str = "file", with_metadata: bool = False
) -> tuple[Header, int]:
    """Parse a safetensors header through `read(start, end) -> bytes`.

    Args:
        read: returns bytes [start, end) of the file (a Range request, a slice, a file read).
        name: how errors name the file.
        with_metadata: keep the `__metadata__` entry (a server passes the header on as it is).

    Returns:
        The tensors' entries and the absolute offset where the data begins (`data_offsets` are relative to it).

    Raises:
        SafetensorsHeaderError: when the length, the JSON or an entry is not valid safetensors.

    Example:
        >>> blob = encode([("w", "F32", (2,), bytes(8))])
        >>> header, start = read_header(lambda a, b: blob[a:b])
        >>> header["w"]["data_offsets"], start
        ([0, 8], 64)
    """
    prefix = read(0, 8)
    if len(prefix) != 8:
        raise SafetensorsHeaderError(f"{name}: {len(prefix)} bytes is too short for a safetensors file.")
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_HEADER:
        raise SafetensorsHeaderError(f"{name}: a safetensors header of {length} bytes is not plausible.")
    try:
        header = json.loads(read(8, 8 + length))
    except ValueError as e:
        raise SafetensorsHeaderError(f"{name}: the safetensors header is not valid JSON ({e}).") from e
    if not isinstance(header, dict):
        raise SafetensorsHeaderError(f"{name}: the safetensors header is not a JSON object.")
    metadata = header.pop("__metadata__", None)
    for key, meta in header.items():
        _check_entry(name, key, meta)
    _check_disjoint(name, header)
    if with_metadata and metadata is not None:
        header["__metadata__"] = metadata
    return header, 8 + length


def _check_entry(name: str, key: str, meta: Any) -> None:
    try:
        begin, end = (int(x) for x in meta["data_offsets"])
        shape = [int(d) for d in meta["shape"]]
        dtype = str(meta["dtype"])
    except (KeyError, TypeError, ValueError) as e:
        raise SafetensorsHeaderError(f"{name}: tensor {key!r} has a malformed header entry ({e!r}).") from e
    if not 0 <= begin <= end or any(d < 0 for d in shape):
        raise SafetensorsHeaderError(f"{name}: tensor {key!r} has offsets {begin}-{end} and shape {shape}.")
    if dtype in DTYPE_SIZES:
        numel = 1
        for d in shape:
            numel *= d
        if numel * DTYPE_SIZES[dtype] != end - begin:
            raise SafetensorsHeaderError(
                f"{name}: tensor {key!r} ({dtype}, shape {shape}) spans {end - begin} "
                f"bytes, not {numel * DTYPE_SIZES[dtype]}."
            )


def _check_disjoint(name: str, header: Header) -> None:
    """Tensors may not share bytes: a crafted header could otherwise make two tensors (or two blocks) alias."""
    spans = sorted((int(m["data_offsets"][0]), int(m["data_offsets"][1]), k) for k, m in header.items())
    for (_, end, first), (begin, next_end, second) in zip(spans, spans[1:]):
        if begin < end and next_end > begin:
            raise SafetensorsHeaderError(f"{name}: tensors {first!r} and {second!r} overlap (bytes {begin}-{end}).")


def read_file_header(path: str | Path, *, with_metadata: bool = False) -> tuple[Header, int]:
    """`read_header` of a local file."""
    with open(path, "rb") as f:

        def read(start: int, end: int) -> bytes:
            f.seek(start)
            return f.read(end - start)

        return read_header(read, name=str(path), with_metadata=with_metadata)


def encode(tensors: Tensors, *, metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file of raw tensors, sorted by name, with the 8-byte alignment safetensors writes."""
    header, offset, chunks = ({"__metadata__": metadata} if metadata else {}), 0, []
    for name, dtype, shape, data in sorted(tensors, key=lambda t: t[0]):
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        chunks.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(chunks)


def decode(blob: bytes, *, name: str = "blob") -> Tensors:
    """The raw tensors of a safetensors file held in memory (the inverse of `encode`).

    Raises:
        SafetensorsHeaderError: when the header is malformed or an entry runs past the end.
    """
    header, start = read_header(lambda a, b: blob[a:b], name=name)
    out = []
    for key, m in header.items():
        begin, end = m["data_offsets"]
        if start + end > len(blob):
            raise SafetensorsHeaderError(f"{name}: tensor {key!r} runs past the end of the file.")
        out.append((key, m["dtype"], tuple(m["shape"]), blob[start + begin : start + end]))
    return out
