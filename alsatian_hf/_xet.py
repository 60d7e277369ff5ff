"""The Xet storage format in one place: content-defined chunks, their hashes, Merkle roots and xorb bytes.

The local Hub serves files through a Xet CAS with these, and the client proves block identity from them
(`../shared/reference/xet-notes.md` has the protocol). Every hash here equals hf_xet's: the tests check
`file_hash` against `hf_xet.hash_files` on empty, tiny, random, repeated, all-zero and real checkpoint files.
Nothing here imports a Hugging Face library.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np

from ._xet_gear import GEAR_TABLE
from .errors import XorbFormatError


TARGET_CHUNK = 65536
MIN_CHUNK = 8192
MAX_CHUNK = 131072
MASK = 0xFFFF000000000000
WINDOW = 64  # the gear hash depends on the last 64 bytes only (each step shifts the older ones out)
XORB_MAX_BYTES = 64 << 20
XORB_MAX_CHUNKS = 8192
DATA_KEY = bytes([102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28, 157, 228, 33, 16, 155,
                  235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41])  # fmt: skip
INTERNAL_NODE_KEY = bytes([1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230, 93, 221, 83, 111,
                           55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63])  # fmt: skip
_GEAR = np.array(GEAR_TABLE, dtype=np.uint64)
_SCAN_BLOCK = 8 << 20  # bytes scanned per numpy pass: bounds the memory of chunking a large file


@dataclass(frozen=True)
class Chunk:
    hash: bytes  # 32 bytes
    start: int  # offset in the file
    size: int


def hash_hex(digest: bytes) -> str:
    """Xet's hex form of a hash: the 32 bytes as four little-endian u64 words, 16 hex digits each."""
    return "".join(f"{w:016x}" for w in struct.unpack("<4Q", digest))


def hash_from_hex(text: str) -> bytes:
    return struct.pack("<4Q", *(int(text[i : i + 16], 16) for i in range(0, 64, 16)))


def _keyed(key: bytes, data: bytes) -> bytes:
    from blake3 import blake3

    return blake3(data, key=key).digest()


def chunk_hash(data: bytes | memoryview) -> bytes:
    return _keyed(DATA_KEY, bytes(data))


def _window_hashes(data: np.ndarray) -> np.ndarray:
    """The gear hash at every position, over the 64 bytes ending there (fewer at the start of `data`).

    Six doubling steps: a window of 2m bytes is the window of m bytes m positions back, shifted by m, plus
    the window of m bytes here; all in wrapping u64 arithmetic, as the Rust chunker's `(h << 1) + T[b]`.
    """
    h = _GEAR[data]
    width = 1
    while width < WINDOW:
        h[width:] += h[:-width] << np.uint64(width)  # the shifted operand is a new array: no aliasing
        width *= 2
    return h


def _candidates(read: BinaryIO) -> Iterator[np.ndarray]:
    """Positions (absolute, in ascending blocks) whose 64-byte window hash passes the mask."""
    offset, tail = 0, b""
    mask = np.uint64(MASK)
    while True:
        block = read.read(_SCAN_BLOCK)
        if not block:
            return
        data = np.frombuffer(tail + block, dtype=np.uint8)
        hits = np.flatnonzero((_window_hashes(data) & mask) == 0)
        hits = hits[hits >= len(tail)]  # positions in the carried tail were reported with the last block
        yield hits + (offset - len(tail))
        offset += len(block)
        tail = block[-(WINDOW - 1) :] if len(block) >= WINDOW - 1 else (tail + block)[-(WINDOW - 1) :]


def chunk_boundaries(read: BinaryIO, size: int) -> list[tuple[int, int]]:
    """Xet's content-defined chunks of a stream of `size` bytes, as (start, end) offsets.

    A chunk ends right after the first byte where it is at least MIN_CHUNK long and the window hash passes
    the mask, or at MAX_CHUNK bytes; the stream's end closes the last chunk. Window hashes before a chunk's
    first MIN_CHUNK bytes are never consulted, so hashing only the last 64 bytes (instead of resetting at each
    boundary, as the Rust code does) gives the same cuts.
    """
    hits = np.concatenate(list(_candidates(read)) or [np.zeros(0, dtype=np.int64)])
    cuts, start = [], 0
    while start < size:
        # the first candidate i with i + 1 - start >= MIN_CHUNK
        k = int(np.searchsorted(hits, start + MIN_CHUNK - 1))
        end = int(hits[k]) + 1 if k < len(hits) and hits[k] + 1 - start <= MAX_CHUNK else start + MAX_CHUNK
        end = min(end, size)
        cuts.append((start, end))
        start = end
    return cuts


def chunk_file(path, *, buffer: int = _SCAN_BLOCK) -> list[Chunk]:
    """The chunks of a file with their hashes."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(0)
        bounds = chunk_boundaries(f, size)
        chunks = []
        for start, end in bounds:
            f.seek(start)
            chunks.append(Chunk(chunk_hash(f.read(end - start)), start, end - start))
    return chunks


def chunk_bytes(data: bytes) -> list[Chunk]:
    """The chunks of bytes held in memory, with their hashes."""
    import io

    view = memoryview(data)
    return [Chunk(chunk_hash(view[s:e]), s, e - s) for s, e in chunk_boundaries(io.BytesIO(data), len(data))]


def _next_cut(nodes: list[tuple[bytes, int]]) -> int:
    """How many of `nodes` the next Merkle group takes: up to the first node from the third on whose last u64
    word is divisible by 4, else at most 9."""
    if len(nodes) <= 2:
        return len(nodes)
    end = min(9, len(nodes))
    for i in range(2, end):
        if struct.unpack_from("<Q", nodes[i][0], 24)[0] % 4 == 0:
            return i + 1
    return end


def merkle_root(nodes: list[tuple[bytes, int]]) -> bytes:
    """The Xet aggregated hash of (hash, size) leaves: the xorb hash over a xorb's chunks."""
    if not nodes:
        return bytes(32)
    level = list(nodes)
    while len(level) > 1:
        parents, i = [], 0
        while i < len(level):
            group = level[i : i + _next_cut(level[i:])]
            text = "".join(f"{hash_hex(h)} : {s}\n" for h, s in group).encode()
            parents.append((_keyed(INTERNAL_NODE_KEY, text), sum(s for _, s in group)))
            i += len(group)
        level = parents
    return level[0][0]


def file_hash(chunks: list[Chunk]) -> bytes:
    """A file's Xet hash: its chunks' Merkle root, keyed once more with a zero salt; an empty file's is zeros."""
    if not chunks:
        return bytes(32)
    return _keyed(bytes(32), merkle_root([(c.hash, c.size) for c in chunks]))


# -- xorbs -------------------------------------------------------------------------------------------------
_HEADER = struct.Struct("<B3sB3s")  # version, compressed length (3 bytes LE), scheme, uncompressed length


def encode_xorb_chunk(data: bytes) -> bytes:
    """One chunk in a xorb: the 8-byte header (version 0, no compression), then its bytes."""
    n = len(data).to_bytes(3, "little")
    return _HEADER.pack(0, n, 0, n) + data


def decode_xorb(blob: bytes) -> list[bytes]:
    """The chunks of uncompressed xorb bytes (scheme 0, as `encode_xorb_chunk` writes them).

    Raises:
        XorbFormatError: for a truncated blob or a compressed chunk.
    """
    out, pos = [], 0
    while pos < len(blob):
        if pos + _HEADER.size > len(blob):
            raise XorbFormatError(f"xorb truncated in a chunk header at byte {pos}")
        version, clen, scheme, ulen = _HEADER.unpack_from(blob, pos)
        clen, ulen = int.from_bytes(clen, "little"), int.from_bytes(ulen, "little")
        if version != 0 or scheme != 0 or clen != ulen:
            raise XorbFormatError(f"xorb chunk at byte {pos}: version {version}, scheme {scheme} is not plain")
        pos += _HEADER.size
        if pos + clen > len(blob):
            raise XorbFormatError(f"xorb truncated in a chunk body at byte {pos}")
        out.append(blob[pos : pos + clen])
        pos += clen
    return out
