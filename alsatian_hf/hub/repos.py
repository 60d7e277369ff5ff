"""Open a model repo for block access: its small files locally, its weights as a lazy block source."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BlockFetchError
from ..store.block_store import BlockStore
from .headers import SINGLE, layout_from_json, layout_to_json, read_layout
from .ranges import RangeReader
from .source import HubBlockSource, files_identity

# Everything but weights: configs, processors, tokenizers, the card. Weights come block by block.
SMALL_FILES = ["*.json", "*.txt", "*.model", "README.md"]


@dataclass
class OpenedRepo:
    repo_id: str
    revision: str
    folder: Path  # config.json, processor and tokenizer files
    source: object  # a TensorSource


def open_local(folder: str | Path):
    from ..search.candidates import LocalSafetensors

    folder = Path(folder)
    return OpenedRepo(str(folder), "local", folder, LocalSafetensors(folder))


def open_hub(repo_id: str, revision: str | None, *, store: BlockStore, reader: RangeReader) -> OpenedRepo:
    """Download the repo's small files (never its weights), and read its safetensors layout by Range.

    With HF_HUB_OFFLINE=1 everything comes from the HF cache and the block store's index.

    Raises:
        NoSafetensorsError, huggingface_hub errors (RepositoryNotFoundError, GatedRepoError, ...).
    """
    from huggingface_hub import HfApi, constants, snapshot_download

    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE") == "1"
    files_sha = None
    siblings: list[str] = []
    if not offline:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
        revision = info.sha
        siblings = [s.rfilename for s in info.siblings or []]
        lfs = {s.rfilename: (s.lfs.sha256 if s.lfs else None) for s in info.siblings or []}
        weights = [f for f in siblings if f == SINGLE or (f.startswith("model-") and f.endswith(".safetensors"))]
        files_sha = files_identity([lfs.get(f) for f in weights])
    folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=SMALL_FILES))
    if revision is None or len(revision) != 40:
        revision = folder.name  # the snapshot folder is named after the commit
    cached = store.load_layout(repo_id, revision)
    if cached is not None:
        layout = layout_from_json(cached)
    else:
        if offline:
            raise BlockFetchError(f"HF_HUB_OFFLINE is set and the block store has no layout of {repo_id}@"
                                  f"{revision[:8]}. Run the search once online to fill the store.")
        layout = read_layout(reader, repo_id, revision, siblings)
        store.save_layout(repo_id, revision, layout_to_json(layout))
    return OpenedRepo(repo_id, revision, folder, HubBlockSource(repo_id, revision, layout, store, reader, files_sha))
