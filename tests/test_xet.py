"""The Xet format: chunking and hashing equal to hf_xet's own (`hf_xet.hash_files`, which needs no network)."""

from __future__ import annotations

import os
import random

import hf_xet
import pytest

from alsatian_hf import _xet
from alsatian_hf.errors import XorbFormatError


def _cases(tmp_path):
    rng = random.Random(0)
    cases = {
        "empty": b"",
        "under_8k": rng.randbytes(5000),
        "random_1m": rng.randbytes(1 << 20),
        "random_20m": rng.randbytes(20 << 20),
        "repeated": rng.randbytes(1000) * 3000,
        "zeros": bytes(3 << 20),
    }
    paths = {}
    for name, data in cases.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    from alsatian_hf.zoo.minilm import minilm_dir

    paths["minilm_checkpoint"] = minilm_dir() / "model.safetensors"  # a real 90 MB safetensors file
    return paths


def test_file_hashes_equal_hf_xet(tmp_path):
    paths = _cases(tmp_path)
    oracle = hf_xet.hash_files([str(p) for p in paths.values()])
    for (name, path), expected in zip(paths.items(), oracle):
        chunks = _xet.chunk_file(path)
        assert _xet.hash_hex(_xet.file_hash(chunks)) == expected.hash, name
        assert sum(c.size for c in chunks) == os.path.getsize(path) == expected.file_size
        sizes = [c.size for c in chunks]
        assert all(_xet.MIN_CHUNK <= s <= _xet.MAX_CHUNK for s in sizes[:-1]), name  # only the last may be short


def test_chunking_in_memory_equals_chunking_the_file_and_is_content_defined(tmp_path):
    rng = random.Random(1)
    data = rng.randbytes(3 << 20)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert _xet.chunk_bytes(data) == _xet.chunk_file(path)
    # a prefix inserted before the same bytes: after the first common boundary the chunks are the same
    shifted = _xet.chunk_bytes(rng.randbytes(12345) + data)
    ours = {c.hash for c in _xet.chunk_bytes(data)}
    assert len(ours & {c.hash for c in shifted}) >= len(ours) - 3


def test_hex_form_round_trips_and_xorbs_decode():
    digest = bytes(range(32))
    assert _xet.hash_from_hex(_xet.hash_hex(digest)) == digest
    assert _xet.hash_hex(digest).startswith("0706050403020100")  # the first u64 word, little-endian
    chunks = [b"abc", bytes(70000), b""]
    blob = b"".join(_xet.encode_xorb_chunk(c) for c in chunks)
    assert _xet.decode_xorb(blob) == chunks
    with pytest.raises(XorbFormatError, match="truncated"):
        _xet.decode_xorb(blob[:-10])
