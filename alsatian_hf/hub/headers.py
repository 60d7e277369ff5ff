"""Safetensors headers read by Range (8-byte length, then the JSON header), for single and sharded checkpoints."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass

from .._safetensors import read_header
from ..errors import NoSafetensorsError, SafetensorsHeaderError
from .ranges import RangeReader


SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
# a PEFT adapter repo holds these instead of a checkpoint (see `candidates.lora`)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


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


def is_adapter(files) -> bool:
    """Whether a repo or folder holding `files` is a PEFT adapter rather than a full checkpoint."""
    return ADAPTER_CONFIG in files and "config.json" not in files


def checkpoint_files(siblings: list[str]) -> list[str] | None:
    """[SINGLE] or [INDEX] when present, else None."""
    if SINGLE in siblings:
        return [SINGLE]
    if INDEX in siblings:
        return [INDEX]
    return None


def read_file_header(reader: RangeReader, repo_id: str, filename: str, revision: str,
                     size: int | None = None) -> dict[str, TensorLocation]:  # fmt: skip
    """Every tensor's location in one safetensors file, from two Range requests (length, then JSON).

    Args:
        size: the file's size, if the Hub listed it: no tensor may run past it.

    Raises:
        SafetensorsHeaderError: when the header is malformed, or a tensor runs past the end of the file.
    """
    header, base = read_header(
        lambda start, end: reader.read(repo_id, filename, revision, start, end, header=True),
        name=f"{repo_id}/{filename}",
    )
    layout = {
        name: TensorLocation(
            filename,
            meta["dtype"],
            tuple(meta["shape"]),
            base + meta["data_offsets"][0],
            base + meta["data_offsets"][1],
        )
        for name, meta in header.items()
    }
    past = [(k, loc.end) for k, loc in layout.items() if size is not None and loc.end > size]
    if past:
        raise SafetensorsHeaderError(
            f"{repo_id}/{filename}: tensor {past[0][0]!r} ends at byte {past[0][1]}, past the end of the "
            f"{size}-byte file; the header does not describe this file."
        )
    return layout


def read_layout(reader: RangeReader, repo_id: str, revision: str, siblings: list[str],
                sizes: dict[str, int] | None = None) -> dict[str, TensorLocation]:  # fmt: skip
    """Every tensor's location in the repo's safetensors checkpoint, read by Range, no weights downloaded.

    Args:
        sizes: file sizes as the Hub lists them; a header whose tensors run past its file is refused.

    Raises:
        NoSafetensorsError: when the repo has no safetensors checkpoint.
    """
    files = checkpoint_files(siblings)
    if files is None:
        raise NoSafetensorsError(
            f"{repo_id} has no model.safetensors or {INDEX}; weights load only from safetensors "
            "(a .bin checkpoint is never unpickled)."
        )
    if files == [INDEX]:
        from huggingface_hub import hf_hub_download

        index = json.loads(open(hf_hub_download(repo_id, INDEX, revision=revision)).read())
        files = sorted(set(index["weight_map"].values()))
    layout: dict[str, TensorLocation] = {}
    for filename in files:
        layout.update(read_file_header(reader, repo_id, filename, revision, (sizes or {}).get(filename)))
    return layout


def layout_to_json(layout: dict[str, TensorLocation]) -> str:
    return json.dumps({k: asdict(v) for k, v in layout.items()})


@functools.lru_cache(maxsize=256)
def layout_from_json(text: str) -> dict[str, TensorLocation]:
    """A stored layout, parsed once per process and shared by every caller, who must not change it: fine-tunes of
    one architecture store the same text, and the base model's is every fine-tune's Xet reference. Parsing
    a ViT's was 0.25 ms a candidate at every set-up."""
    return {
        k: TensorLocation(v["filename"], v["dtype"], tuple(v["shape"]), v["start"], v["end"])
        for k, v in json.loads(text).items()
    }
