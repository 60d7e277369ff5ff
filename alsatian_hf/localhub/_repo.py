"""A Hub repository backed by a plain folder: files, content hashes, a stable commit sha and card metadata.

Nothing here imports huggingface_hub, so the server can start before `HF_ENDPOINT` is set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ConfigurationError


# Files the Hub would store through LFS; everything else is a regular git blob.
LFS_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pth",
    ".pt",
    ".ckpt",
    ".h5",
    ".onnx",
    ".msgpack",
    ".parquet",
    ".arrow",
    ".npz",
)
LFS_MIN_SIZE = 10 * 1024 * 1024
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RepoFile:
    path: str  # posix, relative to the repo folder
    size: int
    sha256: str
    git_oid: str  # sha1 of the git blob (of the LFS pointer for LFS files)
    lfs: bool

    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


_hash_cache: dict[tuple[str, int, int], tuple[str, str]] = {}
_hash_lock = threading.Lock()
_indexes: dict[Path, "_HashIndex | None"] = {}


class _HashIndex:
    """File hashes kept in `ROOT/.localhub/hashes.sqlite`, so a restarted server does not re-read every file
    (a model store of 100 GB took minutes to list after a restart)."""

    def __init__(self, root: Path):
        folder = root / ".localhub"
        folder.mkdir(exist_ok=True)
        self._db = sqlite3.connect(folder / "hashes.sqlite", timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS hashes (path TEXT, size INTEGER, mtime_ns INTEGER, "
                         "sha256 TEXT, git_oid TEXT, PRIMARY KEY (path, size, mtime_ns))")  # fmt: skip
        self._db.commit()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, int]) -> tuple[str, str] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sha256, git_oid FROM hashes WHERE path=? AND size=? AND mtime_ns=?", key
            ).fetchone()
        return tuple(row) if row else None

    def put(self, key: tuple[str, int, int], value: tuple[str, str]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?)", (*key, *value))
            self._db.commit()


def _index(root: Path) -> _HashIndex | None:
    """The root's persistent hash index, or None where ROOT is read-only (hashes then live in memory only)."""
    with _hash_lock:
        if root not in _indexes:
            try:
                _indexes[root] = _HashIndex(root)
            except (OSError, sqlite3.Error):
                _indexes[root] = None
        return _indexes[root]


def _file_hashes(path: Path, size: int, root: Path | None = None) -> tuple[str, str]:
    """sha256 and git-blob sha1 of a file, cached on (path, size, mtime), in memory and under `root`."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        hit = _hash_cache.get(key)
    if hit:
        return hit
    index = _index(root) if root is not None else None
    stored = index.get(key) if index is not None else None
    if stored is not None:
        with _hash_lock:
            _hash_cache[key] = stored
        return stored
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha256.update(chunk)
            blob.update(chunk)
    result = (sha256.hexdigest(), blob.hexdigest())
    with _hash_lock:
        _hash_cache[key] = result
    if index is not None:
        index.put(key, result)
    return result


def _is_lfs(path: str, size: int) -> bool:
    return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE


PULLS = ".pulls"  # ROOT/<org>/<name>/.pulls/<num>/{discussion.json, tree/}: a repo's pull requests


@dataclass(frozen=True)
class PullRequest:
    """A pull request as `discussion.json` describes it; its files are the folder `tree/` beside it."""

    num: int
    title: str
    author: str
    status: str  # "open", "closed", "merged" or "draft"
    parent: str  # the commit of main it was opened on


class FolderRepo:
    """One repo: `ROOT/<org>/<name>` (models) or `ROOT/datasets/<org>/<name>` (datasets).

    Its main branch is the folder itself. `pull(pr)` is the same repo as pull request `pr` sees it (`refs/pr/N`),
    a folder of its own whose unchanged files may be links into main's.
    """

    def __init__(self, root: Path, repo_type: str, repo_id: str):
        self.root = root
        self.repo_type = repo_type
        self.repo_id = repo_id
        self.home = (root / "datasets" / repo_id) if repo_type == "dataset" else (root / repo_id)
        self.folder = self.home
        self.pr: PullRequest | None = None

    def exists(self) -> bool:
        return self.folder.is_dir()

    def pull_requests(self) -> list[PullRequest]:
        """The repo's pull requests, by number (a malformed `discussion.json` hides its pull request)."""
        out = []
        folder = self.home / PULLS
        for entry in folder.iterdir() if folder.is_dir() else ():
            try:
                meta = json.loads((entry / "discussion.json").read_text())
                pr = PullRequest(int(entry.name), str(meta["title"]), str(meta["author"]),
                                 str(meta.get("status", "open")), str(meta["parent"]))  # fmt: skip
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if (entry / "tree").is_dir():
                out.append(pr)
        return sorted(out, key=lambda pr: pr.num)

    def pull(self, pr: PullRequest) -> "FolderRepo":
        """The repo as pull request `pr` sees it."""
        view = FolderRepo(self.root, self.repo_type, self.repo_id)
        view.folder, view.pr = self.home / PULLS / str(pr.num) / "tree", pr
        return view

    def safe_path(self, rel: str) -> Path | None:
        """Resolve `rel` inside the repo, refusing traversal and symlinks that leave ROOT."""
        if not rel or rel.startswith("/") or "\\" in rel or any(p in ("..", "") for p in rel.split("/")):
            return None
        candidate = (self.folder / rel).resolve()
        try:
            candidate.relative_to(self.root.resolve())
            candidate.relative_to(self.home.resolve())  # a pull request's unchanged files link into main's
        except ValueError:
            return None
        return candidate

    def files(self) -> list[RepoFile]:
        out = []
        root = self.root.resolve()
        for dirpath, dirnames, filenames in os.walk(self.folder, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # hidden files are no repo files
            for name in sorted(filenames):
                full = Path(dirpath) / name
                # A symlink that points out of ROOT is invisible, as if it did not exist. Only links are resolved:
                # resolving every path (a realpath per component) was most of a `resolve` request's time.
                real = full.resolve() if full.is_symlink() else full
                if not real.is_file() or (real is not full and not real.is_relative_to(root)):
                    continue
                rel = full.relative_to(self.folder).as_posix()
                if rel.startswith(".") or "/." in rel:
                    continue
                size = real.stat().st_size
                sha256, git_oid = _file_hashes(real, size, root)
                lfs = _is_lfs(rel, size)
                if lfs:
                    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
                    git_oid = hashlib.sha1(f"blob {len(pointer)}\0{pointer}".encode()).hexdigest()
                out.append(RepoFile(rel, size, sha256, git_oid, lfs))
        return out

    def commit_sha(self, files: list[RepoFile] | None = None) -> str:
        """A 40-hex sha that depends only on the files' paths and contents (and a pull request's parent)."""
        files = self.files() if files is None else files
        h = hashlib.sha1(b"alsatian-localhub-commit\0")
        if self.pr is not None:
            h.update(f"parent {self.pr.parent}\n".encode())
        for f in files:
            h.update(f"{f.path}\0{f.sha256}\n".encode())
        return h.hexdigest()

    def card_data(self) -> dict:
        readme = self.folder / "README.md"
        if not readme.is_file():
            return {}
        text = readme.read_text(encoding="utf-8", errors="replace")
        if not text.startswith("---"):
            return {}
        parts = text.split("\n---", 1)
        try:
            data = yaml.safe_load(parts[0][3:]) or {}
        except yaml.YAMLError:
            return {}
        return data if isinstance(data, dict) else {}

    def config(self) -> dict:
        path = self.folder / "config.json"
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except ValueError:
            return {}

    def tags(self, card: dict, files: list[RepoFile]) -> list[str]:
        """Tags as the Hub derives them: card tags, library, pipeline, lineage and file formats."""
        tags: list[str] = []
        for t in card.get("tags") or []:
            tags.append(str(t))
        for key in ("library_name", "pipeline_tag"):
            if card.get(key):
                tags.append(str(card[key]))
        model_type = self.config().get("model_type")
        if model_type:
            tags.append(str(model_type))
        bases = card.get("base_model") or []
        bases = [bases] if isinstance(bases, str) else list(bases)
        relation = card.get("base_model_relation") or "finetune"
        for base in bases:
            tags += [f"base_model:{base}", f"base_model:{relation}:{base}"]
        if any(f.path.endswith(".safetensors") for f in files):
            tags.append("safetensors")
        if card.get("license"):
            tags.append(f"license:{card['license']}")
        seen: set[str] = set()
        return [t for t in tags if not (t in seen or seen.add(t))]


def list_repos(root: Path, repo_type: str) -> list[FolderRepo]:
    base = root / "datasets" if repo_type == "dataset" else root
    if not base.is_dir():
        return []
    repos = []
    for org in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if repo_type == "model" and org.name == "datasets":
            continue
        for name in sorted(p for p in org.iterdir() if p.is_dir() and not p.name.startswith(".")):
            repos.append(FolderRepo(root, repo_type, f"{org.name}/{name.name}"))
    return repos


def open_pull_request(root: str | Path, repo_id: str, files: dict[str, str | Path | bytes], *, title: str,
                      author: str, repo_type: str = "model") -> int:  # fmt: skip
    """Open a pull request on a local hub's repo, as a user or a bot of the Hub would, and return its number.

    Its tree is main's files with `files` (repo path -> a file to copy, or bytes) added or replaced; main's
    others are linked, not copied. `parent` is main's commit now: main may move on, the pull request does not.

    Raises:
        ConfigurationError: when `repo_id` is no repo under `root`.

    Example:
        >>> open_pull_request(root, "my-org/bert-ft", {"model.safetensors": path},  # doctest: +SKIP
        ...                   title="Adding `safetensors` variant of this model", author="SFconvertbot")
        1
    """
    root = Path(root)
    repo = FolderRepo(root, repo_type, repo_id)
    if not repo.exists():
        raise ConfigurationError(f"{repo.home} is no repo of the local hub at {root}: create the repo first.")
    main = repo.files()
    num = 1 + max((int(p.name) for p in (repo.home / PULLS).glob("*") if p.name.isdigit()), default=0)
    tree = repo.home / PULLS / str(num) / "tree"
    for f in main:
        if f.path not in files:
            link = tree / f.path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(repo.home / f.path, link.parent))
    for rel, content in files.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            shutil.copyfile(content, path)
    meta = {"title": title, "author": author, "status": "open", "parent": repo.commit_sha(main)}
    (tree.parent / "discussion.json").write_text(json.dumps(meta, indent=2))
    return num
