"""The one safetensors header reader: valid files parse the same everywhere, malformed ones are named errors."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from alsatian_hf._safetensors import decode, encode, read_file_header, read_header
from alsatian_hf.errors import SafetensorsHeaderError


def _blob(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _read(blob: bytes):
    return read_header(lambda a, b: blob[a:b], name="x.safetensors")


def test_a_real_file_reads_like_safetensors_writes_it(tmp_path):
    tensors = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4, dtype=torch.bfloat16)}
    save_file(tensors, tmp_path / "m.safetensors", metadata={"format": "pt"})
    header, start = read_file_header(tmp_path / "m.safetensors")
    assert set(header) == {"a", "b"} and header["a"]["shape"] == [2, 3]
    assert "__metadata__" in read_file_header(tmp_path / "m.safetensors", with_metadata=True)[0]
    raw = (tmp_path / "m.safetensors").read_bytes()
    begin, end = header["a"]["data_offsets"]
    assert torch.equal(
        torch.frombuffer(bytearray(raw[start + begin : start + end]), dtype=torch.float32), tensors["a"].flatten()
    )


def test_encode_and_decode_round_trip():
    tensors = [("w", "F32", (2,), bytes(8)), ("b", "U8", (3,), b"abc")]
    assert sorted(decode(encode(tensors))) == sorted(tensors)


@pytest.mark.parametrize(
    "blob, match",
    [
        (b"\x01\x02", "too short"),
        (struct.pack("<Q", 1 << 40), "not plausible"),
        (struct.pack("<Q", 5) + b"{nope", "not valid JSON"),
        (_blob([1, 2]), "not a JSON object"),
        (_blob({"w": {"dtype": "F32", "shape": [2]}}), "malformed"),
        (_blob({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}), "offsets"),
        (_blob({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}), "spans 8 bytes, not 12"),
        (_blob({"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 8]}}), "not 4000000000000"),
        (
            _blob(
                {
                    "a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
                    "b": {"dtype": "U8", "shape": [8], "data_offsets": [4, 12]},
                }
            ),
            "overlap",
        ),  # fmt: skip
    ],
)
def test_malformed_headers_are_named_errors(blob, match):
    with pytest.raises(SafetensorsHeaderError, match=match):
        _read(blob)
    assert issubclass(SafetensorsHeaderError, ValueError)


def test_an_entry_past_the_end_of_a_blob_is_refused():
    blob = _blob({"w": {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]}}, b"short")
    with pytest.raises(SafetensorsHeaderError, match="past the end"):
        decode(blob)
