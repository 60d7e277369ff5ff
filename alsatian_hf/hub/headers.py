"""Safetensors headers read by Range (8-byte length, then the JSON header), for single and sharded checkpoints."""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass

from .ranges import RangeReader

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
MAX_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit


class NoSafetensorsError(FileNotFoundError):
    """The repo has no safetensors checkpoint (we never unpickle .bin files)."""


@dataclass(frozen=True)
class TensorLocation:
    filename: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in `filename`
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def checkpoint_files(siblings: list[str]) -> list[str] | None:
    """[SINGLE] or [INDEX] when present, else None."""
    if SINGLE in siblings:
        return [SINGLE]
    if INDEX in siblings:
        return [INDEX]
    return None


def read_file_header(reader: RangeReader, repo_id: str, filename: str, revision: str) -> dict[str, TensorLocation]:
    (length,) = struct.unpack("<Q", reader.read(repo_id, filename, revision, 0, 8, header=True))
    if length > MAX_HEADER:
        raise ValueError(f"{repo_id}/{filename}: safetensors header of {length} bytes is not plausible.")
    header = json.loads(reader.read(repo_id, filename, revision, 8, 8 + length, header=True))
    base = 8 + length
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        begin, finish = meta["data_offsets"]
        out[name] = TensorLocation(filename, meta["dtype"], tuple(meta["shape"]), base + begin, base + finish)
    return out


def read_layout(reader: RangeReader, repo_id: str, revision: str, siblings: list[str]) -> dict[str, TensorLocation]:
    """Every tensor's location in the repo's safetensors checkpoint, read by Range, no weights downloaded.

    Raises:
        NoSafetensorsError: when the repo has no safetensors checkpoint.
    """
    files = checkpoint_files(siblings)
    if files is None:
        raise NoSafetensorsError(f"{repo_id} has no model.safetensors or {INDEX}; weights load only from safetensors "
                                 "(a .bin checkpoint is never unpickled).")
    if files == [INDEX]:
        from huggingface_hub import hf_hub_download

        index = json.loads(open(hf_hub_download(repo_id, INDEX, revision=revision)).read())
        files = sorted(set(index["weight_map"].values()))
    layout: dict[str, TensorLocation] = {}
    for filename in files:
        layout.update(read_file_header(reader, repo_id, filename, revision))
    return layout


def layout_to_json(layout: dict[str, TensorLocation]) -> str:
    return json.dumps({k: asdict(v) for k, v in layout.items()})


def layout_from_json(text: str) -> dict[str, TensorLocation]:
    return {k: TensorLocation(v["filename"], v["dtype"], tuple(v["shape"]), v["start"], v["end"])
            for k, v in json.loads(text).items()}
