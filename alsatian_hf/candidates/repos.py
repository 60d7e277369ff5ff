"""Open a candidate: its small files locally, its weights as a lazy block source."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from .._progress import silent_tqdm_class
from ..errors import BlockFetchError, CandidateSkipped
from ..hub import Candidate, RangeReader
from ..hub.conversion import Conversion, find_conversion, pickled_only
from ..hub.headers import SINGLE, layout_from_json, layout_to_json, read_layout
from ..hub.listing import card_base_model
from ..hub.ranges import with_retries
from ..hub.xet import XetReader
from ..store.block_store import BlockStore
from .lora import ADAPTER_WEIGHTS, LoraBlockSource, base_specs, is_adapter, read_adapter_config
from .sources import HubBlockSource, LocalBlockSource, TensorSource, files_identity


logger = logging.getLogger("alsatian_hf")

# A repo id on the configured Hub (`org/name` or `org/name@revision`), a local model folder, or a listed Candidate.
CandidateSpec = Union[str, Path, Candidate]

_COMMIT = re.compile(r"[0-9a-f]{40}")  # a commit sha: what it names never changes

# Everything but the checkpoint: configs, processors, tokenizers, the card, and a sentence-transformers read-out's
# Dense layers (`adapters.sentence_pooling`; a few MB at most). The checkpoint's weights come block by block.
SMALL_FILES = ["*.json", "*.txt", "*.model", "README.md", "*_Dense/model.safetensors"]


@dataclass
class OpenedRepo:
    repo_id: str
    revision: str
    folder: Path  # config.json, processor and tokenizer files
    source: TensorSource
    base: str | None = None  # a LoRA adapter's: the base `repo@commit` (or folder) it is merged onto
    weights_from: str | None = None  # a `.bin`-only commit's: the safetensors conversion searched (`refs/pr/N`)


def candidate_id(spec: CandidateSpec) -> str:
    """The id a candidate is reported under: its repo id (without `@revision`) or its folder."""
    if isinstance(spec, Candidate):
        return spec.repo_id
    spec = str(spec)
    return spec if Path(spec).expanduser().is_dir() else spec.partition("@")[0]


def open_repo(spec: CandidateSpec, *, revision: str | None, store: BlockStore, reader: RangeReader,
              xet: XetReader | None = None, via: tuple[str, ...] = ()) -> OpenedRepo:  # fmt: skip
    """Open a listed candidate, a local folder, or a repo id (`revision` pins Hub repos unless the spec does).
    A PEFT LoRA adapter opens as its base model with the adapter merged in (see `candidates.lora`).

    Args:
        via: the adapters whose base this is, innermost last (a chain of adapters must end in a model).

    Raises:
        CandidateSkipped: for a listed candidate that carries a skip reason, or an adapter that cannot be merged.
    """
    repo_id, pinned = _hub_target(spec, revision)
    if repo_id is None:
        return open_local(Path(str(spec)).expanduser(), store=store, reader=reader, xet=xet, via=via)
    return open_hub(repo_id, pinned, store=store, reader=reader, xet=xet, via=via)


def opens_offline(spec: CandidateSpec, *, revision: str | None, store: BlockStore) -> bool:
    """Whether `open_repo(spec, ...)` sends no request: a local folder, a listed skip, or a repo pinned to a
    commit sha whose metadata `store` keeps (its small files then come from the HF cache too, see
    `_cached_snapshot`, unless the user cleared it)."""
    try:
        repo_id, pinned = _hub_target(spec, revision)
    except CandidateSkipped:
        return True
    if repo_id is None:
        return True
    return bool(pinned and _COMMIT.fullmatch(pinned)) and store.load_commit(repo_id, pinned) is not None


def _hub_target(spec: CandidateSpec, revision: str | None) -> tuple[str | None, str | None]:
    """The (repo id, revision) that `spec` opens on the Hub (`revision` unless the spec pins one), or (None, None)
    for a local folder.

    Raises:
        CandidateSkipped: for a listed candidate that carries a skip reason, or a path that is no folder.
    """
    if isinstance(spec, Candidate):
        if spec.skip_reason:
            raise CandidateSkipped(spec.repo_id, spec.skip_reason)
        return spec.repo_id, revision or spec.revision
    spec = str(spec)
    if Path(spec).expanduser().is_dir():
        return None, None
    repo_id, _, pinned = spec.partition("@")
    if repo_id.startswith((".", "/", "~")) or repo_id.count("/") > 1 or "\\" in repo_id:  # no repo id looks so
        raise CandidateSkipped(
            spec, f"no such folder ({Path(spec).expanduser().absolute()}), and not a repo id (`org/name`)."
        )
    return repo_id, pinned or revision


def open_local(folder: str | Path, *, store: BlockStore | None = None, reader: RangeReader | None = None,
               xet: XetReader | None = None, via: tuple[str, ...] = ()) -> OpenedRepo:  # fmt: skip
    """Open a local checkpoint folder (`store`, `reader` and `xet` open the base of an adapter folder)."""
    folder = Path(folder)
    files = {p.name for p in folder.iterdir()}
    if is_adapter(files):
        from huggingface_hub.repocard import metadata_load

        card_base = card_base_model(metadata_load(folder / "README.md") if "README.md" in files else None)
        weights = folder / ADAPTER_WEIGHTS if ADAPTER_WEIGHTS in files else None
        return open_adapter(str(folder), "local", folder, weights, card_base, store=store, reader=reader, xet=xet,
                            via=via)[0]  # fmt: skip
    return OpenedRepo(str(folder), "local", folder, LocalBlockSource(folder))


def open_adapter(name: str, revision: str, folder: Path, weights: Path | None, card_base: str | None, *,
                 store: BlockStore | None, reader: RangeReader | None, xet: XetReader | None,
                 via: tuple[str, ...], pinned: tuple[str, str] | None = None
                 ) -> tuple[OpenedRepo, tuple[str, str]]:  # fmt: skip
    """A LoRA adapter (`folder` holds its config, `weights` its tensors) as its base model with it merged in,
    and the base it opened (spec, revision). The base's config and processor serve the adapter.

    Args:
        pinned: the base (spec, revision) an earlier search of this adapter commit opened; without it, the bases
            `adapter_config.json` and the card name are tried in turn, at the revision `adapter_config.json` names
            (most name none: the base's main branch).

    Raises:
        CandidateSkipped: an adapter that cannot be merged, or whose base cannot be opened, with the reason.
    """
    from safetensors.torch import load_file

    from ..errors import AlsatianError, UnsupportedArchitectureError

    config = read_adapter_config(name, folder)
    if weights is None:
        raise CandidateSkipped(
            name, f"a PEFT adapter without {ADAPTER_WEIGHTS} (an adapter_model.bin is never unpickled). Save it "
            "with `save_pretrained(..., safe_serialization=True)`."
        )  # fmt: skip
    specs = [pinned[0]] if pinned else base_specs(name, config, card_base)
    if any(base in via or base == name for base in specs) or len(via) >= 4:
        raise CandidateSkipped(name, f"its base models form a loop or a chain too long: {' -> '.join((*via, name))}.")
    if store is None or reader is None:
        raise CandidateSkipped(name, "a PEFT adapter folder opened without a block store to open its base from.")
    failures = []
    for base in specs:
        try:
            opened = open_repo(base, revision=pinned[1] if pinned else config.get("revision"), store=store,
                               reader=reader, xet=xet, via=(*via, name))  # fmt: skip
            break
        except CandidateSkipped as e:
            failures.append(f"its base model {base}: {e.reason}")
        except (AlsatianError, OSError, ValueError) as e:  # huggingface_hub's errors are OSErrors or ValueErrors
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            failures.append(f"its base model {base} cannot be opened ({type(e).__name__}: {first})")
    else:
        raise CandidateSkipped(name, "; ".join(failures) + ".")
    try:
        source = LoraBlockSource(opened.source, load_file(weights), config, name)
    except UnsupportedArchitectureError as e:
        raise CandidateSkipped(name, str(e).removeprefix(f"{name}: ")) from e
    base_id = base if opened.revision == "local" else f"{opened.repo_id}@{opened.revision}"
    return OpenedRepo(name, revision, opened.folder, source, base=base_id), (base, opened.revision)


def open_hub(repo_id: str, revision: str | None, *, store: BlockStore, reader: RangeReader,
             xet: XetReader | None = None, via: tuple[str, ...] = ()) -> OpenedRepo:  # fmt: skip
    """Download the repo's small files (never its weights), and read its safetensors layout by Range.

    With `xet`, the checkpoint files' Xet hashes are read too (one paths-info request), so blocks can be proven
    identical to stored ones before they are downloaded. A commit's metadata never changes, so a repo pinned to
    a commit sha (every listed candidate is) that the block store has opened before sends no request at all;
    with HF_HUB_OFFLINE=1 everything comes from the HF cache and the block store's index.

    Raises:
        NoSafetensorsError, huggingface_hub errors (RepositoryNotFoundError, GatedRepoError, ...).
    """
    from huggingface_hub import HfApi, constants, snapshot_download

    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE") == "1"
    files_sha, base_model, private = None, None, False
    siblings: list[str] = []
    sizes: dict[str, int] = {}
    known = store.load_commit(repo_id, revision) if revision is not None and _COMMIT.fullmatch(revision) else None
    if known is not None:
        siblings, sizes, files_sha, base_model = (known[k] for k in ("siblings", "sizes", "files_sha", "base_model"))
        private = known.get("private", False)
    elif not offline:
        info = with_retries(lambda: HfApi().model_info(repo_id, revision=revision, files_metadata=True))
        revision = info.sha
        siblings = [s.rfilename for s in info.siblings or []]
        sizes = {s.rfilename: s.size for s in info.siblings or [] if s.size is not None}
        lfs = {s.rfilename: (s.lfs.sha256 if s.lfs else None) for s in info.siblings or []}
        weights = [f for f in siblings if f == SINGLE or (f.startswith("model-") and f.endswith(".safetensors"))]
        files_sha = files_identity([lfs.get(f) for f in weights])
        base_model = card_base_model(info.card_data)
        private = bool(info.private)
        # kept once: a record may hold what later set-up learnt, such as a `.bin` commit's conversion
        if revision is not None and _COMMIT.fullmatch(revision) and store.load_commit(repo_id, revision) is None:
            commit = {"siblings": siblings, "sizes": sizes, "files_sha": files_sha, "base_model": base_model}
            store.save_commit(repo_id, revision, {**commit, "private": private} if private else commit)
    if pickled_only(siblings) and not is_adapter(siblings):
        return _open_conversion(repo_id, revision, private, store=store, reader=reader, xet=xet, via=via)
    folder = _cached_snapshot(repo_id, revision, siblings) if known is not None else None
    if folder is None:
        # the search shows one bar per phase; snapshot_download's own "Fetching N files" bar would nest in it
        folder = Path(
            with_retries(
                lambda: snapshot_download(
                    repo_id, revision=revision, allow_patterns=SMALL_FILES, tqdm_class=silent_tqdm_class()
                ),
                transport=False,
            )
        )
    if revision is None or len(revision) != 40:
        revision = folder.name  # the snapshot folder is named after the commit
    if is_adapter(siblings or {p.name for p in folder.iterdir()}):
        weights = None
        if ADAPTER_WEIGHTS in siblings or offline:
            from huggingface_hub import hf_hub_download, try_to_load_from_cache

            in_cache = isinstance(try_to_load_from_cache(repo_id, ADAPTER_WEIGHTS, revision=revision), str)
            weights = Path(with_retries(lambda: hf_hub_download(repo_id, ADAPTER_WEIGHTS, revision=revision),
                                        transport=False))  # fmt: skip
            if not in_cache:  # the whole file, in one request: counted with the block bytes a search fetches
                reader.stats.record(repo_id, weights.stat().st_size)
        # an adapter's commit is searched with the base commit it first opened with: a repeated search then sends
        # no request for either, and the base's main branch moving on does not change the adapter's scores
        record = store.load_commit(repo_id, revision) if _COMMIT.fullmatch(revision) else None
        pinned = tuple(record["adapter_base"]) if record and record.get("adapter_base") else None
        opened, base = open_adapter(repo_id, revision, folder, weights, base_model, store=store, reader=reader,
                                    xet=xet, via=via, pinned=pinned)  # fmt: skip
        if record is not None and pinned is None and _COMMIT.fullmatch(base[1]):
            store.save_commit(repo_id, revision, {**record, "adapter_base": list(base)})
        return opened
    cached = store.load_layout(repo_id, revision)
    if cached is not None:
        layout = layout_from_json(cached)
    else:
        if offline:
            raise BlockFetchError(
                f"HF_HUB_OFFLINE is set and the block store has no layout of {repo_id}@"
                f"{revision[:8]}. Run the search once online to fill the store."
            )
        layout = read_layout(reader, repo_id, revision, siblings, sizes)
        store.save_layout(repo_id, revision, layout_to_json(layout))
    xet_hashes = _xet_hashes(repo_id, revision, sorted({loc.filename for loc in layout.values()}), store, reader)
    source = HubBlockSource(repo_id, revision, layout, store, reader, files_sha, xet=xet,
                            xet_hashes=xet_hashes if xet is not None else None, base_model=base_model)  # fmt: skip
    source.read_index()
    return OpenedRepo(repo_id, revision, folder, source)


def _open_conversion(repo_id: str, commit: str, private: bool, *, store: BlockStore, reader: RangeReader,
                     xet: XetReader | None, via: tuple[str, ...]) -> OpenedRepo:  # fmt: skip
    """A `.bin`-only commit opened as its safetensors conversion (`hub.conversion`), which the store then
    remembers: a repeated search sends no request for either commit.

    Raises:
        CandidateSkipped: when the commit has no open conversion pull request (or, offline, none in the store),
            or its pull requests cannot be listed.
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    record = store.load_commit(repo_id, commit) if _COMMIT.fullmatch(commit) else None
    found = (record or {}).get("conversion")
    if found is not None:
        conversion = Conversion(*found)
    elif constants.HF_HUB_OFFLINE:
        raise CandidateSkipped(
            repo_id, f"only a .bin checkpoint (never unpickled), and HF_HUB_OFFLINE is set: the store knows no "
            f"safetensors conversion of commit {commit[:8]}. Run the search once online to look for it."
        )  # fmt: skip
    else:
        try:
            conversion = find_conversion(repo_id, commit, private=private)
        except HfHubHTTPError as e:
            raise CandidateSkipped(
                repo_id, f"only a .bin checkpoint (never unpickled), and its pull requests, where the Hub's bot puts "
                f"safetensors conversions, cannot be listed ({_refusal(e)}). Ask its owner to push the weights with "
                "`save_pretrained(...)`, which writes safetensors."
            ) from e  # fmt: skip
        if conversion is None:
            raise CandidateSkipped(
                repo_id, "only a .bin checkpoint (never unpickled), and no open safetensors conversion pull request "
                f"on commit {commit[:8]}. Open one at https://huggingface.co/spaces/safetensors/convert, or push the "
                "weights with `save_pretrained(...)`, which writes safetensors."
            )  # fmt: skip
    logger.info("%s: only a .bin checkpoint; searching its safetensors conversion %s", repo_id, conversion.ref)
    opened = open_hub(repo_id, conversion.commit, store=store, reader=reader, xet=xet, via=via)
    if record is not None and found is None:
        store.save_commit(repo_id, commit, {**record, "conversion": [conversion.num, conversion.commit]})
    return dataclasses.replace(opened, weights_from=conversion.ref)


def _refusal(error) -> str:
    """An HfHubHTTPError in a few words: its status and the Hub's own message."""
    status = error.response.status_code if error.response is not None else None
    if status is None:
        return str(error).splitlines()[0]
    said = (getattr(error, "server_message", None) or "").strip()
    return f"HTTP {status}: {said}" if said else f"HTTP {status}"


def _cached_snapshot(repo_id: str, commit: str, siblings: list[str]) -> Path | None:
    """The HF cache's snapshot folder of `commit` when it holds every small file the commit lists, else None.

    For a commit sha that is cached, `snapshot_download` sends no request either, but it still reads the tree
    cache and starts a pool of threads per repo: 1 ms a candidate, and those threads contended for the GIL
    with the search's main thread. A few `stat`s answer the same question.
    """
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import filter_repo_objects

    wanted = list(filter_repo_objects(siblings, allow_patterns=SMALL_FILES))
    if not wanted:
        return None
    paths = [try_to_load_from_cache(repo_id, f, revision=commit) for f in wanted]
    if not all(isinstance(p, str) for p in paths):
        return None
    return Path(paths[0]).parents[len(Path(wanted[0]).parts) - 1]


def _xet_hashes(repo_id: str, revision: str, files: list[str], store: BlockStore, reader: RangeReader
                ) -> dict[str, str]:  # fmt: skip
    """The checkpoint files' Xet hashes, from the store or one paths-info request ({} where the Hub has none).

    They are kept in the store even when this search proves nothing, because later candidates use this
    checkpoint as their reference.
    """
    from huggingface_hub import HfApi, constants

    known = store.xet_hashes(repo_id, revision)
    if set(files) <= set(known) or constants.HF_HUB_OFFLINE:
        return known
    try:
        entries = with_retries(lambda: HfApi().get_paths_info(repo_id, files, revision=revision))
    except Exception as e:  # Xet hashes only enable proofs: without them, blocks are fetched as before
        logger.info("%s: no Xet hashes (%s: %s); its blocks are fetched", repo_id, type(e).__name__, e)
        return known
    reader.stats.record_metadata(0)
    found = {e.path: e.xet_hash for e in entries if getattr(e, "xet_hash", None)}
    if found:
        store.save_xet_hashes(repo_id, revision, found)
    return {**known, **found}
