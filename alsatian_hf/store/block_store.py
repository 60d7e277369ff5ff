"""A content-addressed store of blocks on disk, shared safely between processes.

- Each unique block is one safetensors file `blocks/<h[:2]>/<h>.safetensors`, keyed by its content hash and
  written atomically (temp file, fsync, rename). A file is re-hashed when first read and whenever its size,
  modification time or inode changes, so a damaged or replaced file is caught; the index remembers which
  file versions were verified, so repeat searches do not re-hash gigabytes (`store gc --verify` re-hashes all).
- An SQLite index maps (repo, commit, block index) to the content hash, remembers checkpoint layouts and each
  commit's Hub metadata (so a repeat search sends no request per candidate pinned to a commit, and works with
  HF_HUB_OFFLINE=1) and maps checkpoint LFS sha256s to block hashes (identical files need no fetch).
- Beside a block, its *prepared* form (BatchNorm folded, conv weights channels-last: `candidates.prepared`) is
  kept under `prepared/`, content-addressed and verified like a block, and indexed by (block, recipe). Later
  loads memory-map it instead of computing it into fresh memory, and processes share its pages.
- File locks make two processes that fill one store agree: a block is written once.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from filelock import FileLock

from .._safetensors import Tensors, decode, encode
from ..errors import BlockIntegrityError, ConfigurationError, SafetensorsHeaderError, StoreFullError
from ._files import TEMP_PREFIX, age, sweep_temp_files, write_atomic
from .identity import content_hash


_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (hash TEXT PRIMARY KEY, nbytes INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS model_blocks (repo TEXT NOT NULL, revision TEXT NOT NULL, block INTEGER NOT NULL,
    family TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (repo, revision, family, block));
CREATE TABLE IF NOT EXISTS layouts (repo TEXT NOT NULL, revision TEXT NOT NULL, layout TEXT NOT NULL,
    PRIMARY KEY (repo, revision));
CREATE TABLE IF NOT EXISTS file_blocks (files_sha TEXT NOT NULL, family TEXT NOT NULL, block INTEGER NOT NULL,
    hash TEXT NOT NULL, PRIMARY KEY (files_sha, family, block));
CREATE TABLE IF NOT EXISTS verified (hash TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS model_blocks_by_block ON model_blocks (family, block);
CREATE TABLE IF NOT EXISTS xet_files (repo TEXT NOT NULL, revision TEXT NOT NULL, filename TEXT NOT NULL,
    xet_hash TEXT NOT NULL, PRIMARY KEY (repo, revision, filename));
CREATE TABLE IF NOT EXISTS prepared (source TEXT NOT NULL, recipe TEXT NOT NULL, hash TEXT NOT NULL,
    PRIMARY KEY (source, recipe));
CREATE TABLE IF NOT EXISTS commits (repo TEXT NOT NULL, revision TEXT NOT NULL, info TEXT NOT NULL,
    PRIMARY KEY (repo, revision));
CREATE TABLE IF NOT EXISTS measurements (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_SCHEMA_VERSION = 2  # the index's `user_version` once `_SCHEMA` and the migrations ran: bump it when either changes

# How a block's identity was established: proven from Xet terms (and edge bytes), by an identical checkpoint's
# LFS sha256, or by hashing its bytes.
IDENTITY_METHODS = ("xet-proof", "lfs-sha", "bytes")


Kind_T = Literal["blocks", "prepared"]  # the store's two folders of safetensors files
logger = logging.getLogger("alsatian_hf")

RAW_CACHE_BYTES = 256 * 2**20  # see `BlockStore.raw`
UNREFERENCED_GRACE = 600.0  # seconds: `gc` keeps younger unreferenced blocks (a search may index them next)


def _write_file(f, blob: bytes) -> None:
    """Every block byte goes to disk through here (the fault tests make it fail as a full disk would)."""
    f.write(blob)


def default_store_dir() -> Path:
    """`$ALSATIAN_STORE`, else `$HF_HOME/alsatian/store` (HF_HOME as huggingface_hub resolves it)."""
    if os.environ.get("ALSATIAN_STORE"):
        return Path(os.environ["ALSATIAN_STORE"])
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "alsatian" / "store"


def _matches(path: Path, block_hash: str) -> bool:
    """Whether the block file's tensors hash to `block_hash` (a torn or malformed file does not)."""
    try:
        return content_hash(decode(path.read_bytes(), name=str(path))) == block_hash
    except (SafetensorsHeaderError, FileNotFoundError):  # malformed, or removed since it was listed
        return False


@dataclass
class StoreInfo:
    path: str
    blocks: int
    bytes: int  # physical bytes of block files
    logical_bytes: int  # bytes of all indexed (repo, revision, block) entries
    models: int
    identity: dict[str, int] = field(default_factory=dict)  # indexed blocks per identity method
    prepared_bytes: int = 0  # bytes of prepared blocks (derived from blocks; `gc` drops them with their block)

    @property
    def dedup_ratio(self) -> float:
        return self.logical_bytes / self.bytes if self.bytes else 1.0


class BlockStore:
    """Blocks on disk under `root` (default: `default_store_dir()`), with their SQLite index.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> store = BlockStore(tmp.name)
        >>> h = store.put([("weight", "F32", (2,), bytes(8))])
        >>> store.put([("weight", "F32", (2,), bytes(8))]) == h  # stored once
        True
        >>> store.get(h)["weight"]
        tensor([0., 0.])
        >>> tmp.cleanup()
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_store_dir()
        if self.root.exists() and not self.root.is_dir():
            raise ConfigurationError(f"The block store {self.root} is a file; pass a folder (created if missing).")
        (self.root / "blocks").mkdir(parents=True, exist_ok=True)
        self._verified: set[tuple[str, int, int, int]] = set()  # file versions known to match their hash
        self._local = threading.local()  # a connection per thread (sqlite3 connections are not shared)
        self._layouts: dict[tuple[str, str], str] = {}
        self._commits: dict[tuple[str, str], dict] = {}
        # raw bytes of recently read blocks: a base model's block is the reference of every fine-tune's proof
        self._raw: OrderedDict[str, dict[str, bytes]] = OrderedDict()
        self._raw_bytes = 0
        self._raw_lock = threading.Lock()
        self._lock_dir = self.root / "locks"
        self._lock_dir.mkdir(exist_ok=True)
        if self._schema_version() < _SCHEMA_VERSION:
            # one process at a time: processes opening a new store at once (ranks under a launcher) otherwise race
            # to switch it to WAL ("database is locked") and to add the same column
            with self.lock("index-setup"), self._db() as db:
                db.executescript(_SCHEMA)
                columns = {row[1] for row in db.execute("PRAGMA table_info(model_blocks)")}
                if "method" not in columns:  # stores written before identity methods were recorded
                    db.execute("ALTER TABLE model_blocks ADD COLUMN method TEXT NOT NULL DEFAULT 'bytes'")
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _schema_version(self) -> int:
        """The index's `user_version`, read without the set-up lock (0 for a new store): an up-to-date store is
        opened lock-free, which saved ranks starting together up to one 50 ms poll of the lock each."""
        path = self.root / "index.sqlite"
        if not path.is_file():
            return 0
        db = sqlite3.connect(path, timeout=60)  # a plain reader: it changes nothing, so it needs no lock
        try:
            return db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.close()

    # -- plumbing ------------------------------------------------------------------------------------------
    @contextmanager
    def _db(self):
        """One transaction on this thread's connection (opened once: a search makes thousands of index calls,
        and opening, committing with a full sync and closing each took ~2 ms). WAL with synchronous=NORMAL
        keeps every commit atomic; a power cut may lose the last ones, never corrupt the index."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.root / "index.sqlite", timeout=60)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield db
            db.commit()
        except BaseException:
            db.rollback()
            raise

    def path(self, block_hash: str, kind: Kind_T = "blocks") -> Path:
        return Path(self._file(block_hash, kind))

    def _file(self, block_hash: str, kind: Kind_T = "blocks") -> str:
        """`path` as a string: `has` asks it of every block of every candidate at set-up, where pathlib's
        joins were most of the cost."""
        return f"{self.root}/{kind}/{block_hash[:2]}/{block_hash}.safetensors"

    def lock(self, name: str) -> FileLock:
        """A lock shared by every process of this store. Names are hashed: truncating them made every block of
        a repo with a long id share one lock, so a candidate's blocks were established one at a time."""
        digest = hashlib.sha256(name.encode()).hexdigest()[:40]
        return FileLock(str(self._lock_dir / f"{digest}.lock"), timeout=600)

    # -- blocks --------------------------------------------------------------------------------------------
    def has(self, block_hash: str) -> bool:
        return os.path.isfile(self._file(block_hash))

    @staticmethod
    def _stamp(block_hash: str, path: Path) -> tuple[str, int, int, int]:
        st = path.stat()
        return block_hash, st.st_size, st.st_mtime_ns, st.st_ino

    def _mark_verified(self, stamp: tuple[str, int, int, int], db: sqlite3.Connection) -> None:
        self._verified.add(stamp)
        db.execute("INSERT OR REPLACE INTO verified VALUES (?, ?, ?, ?)", stamp)

    def _is_verified(self, stamp: tuple[str, int, int, int]) -> bool:
        if stamp in self._verified:
            return True
        with self._db() as db:
            row = db.execute("SELECT hash, size, mtime_ns, inode FROM verified WHERE hash=?", stamp[:1]).fetchone()
        if row is not None and tuple(row) == stamp:
            self._verified.add(stamp)
            return True
        return False

    def put(self, tensors: Tensors, expected_hash: str | None = None, *, kind: Kind_T = "blocks") -> str:
        """Store a block (or, with `kind="prepared"`, a prepared block) once; returns its content hash.

        Raises:
            BlockIntegrityError: when the bytes do not hash to `expected_hash`.
            StoreFullError: when the disk is full (the temporary file is removed; nothing half-written stays).
        """
        block_hash = content_hash(tensors)
        if expected_hash is not None and block_hash != expected_hash:
            raise BlockIntegrityError(f"block bytes hash to {block_hash[:12]}, expected {expected_hash[:12]}.")
        target = self.path(block_hash, kind)
        with self.lock(block_hash):
            if not target.is_file():
                blob = encode(tensors)
                try:
                    write_atomic(target, blob, write=_write_file, fsync=True, suffix=".safetensors")
                except OSError as e:
                    if e.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise StoreFullError(
                            f"No space left for blocks in the block store at {self.root} ({e.strerror}). Free "
                            "space (`alsatian-hf store gc` drops unreferenced blocks) or point `store_dir` / "
                            "ALSATIAN_STORE at a bigger disk; the store is consistent and keeps what it has."
                        ) from e
                    raise
                with self._db() as db:  # one transaction: the block and its verified file version
                    if kind == "blocks":
                        db.execute(
                            "INSERT OR IGNORE INTO blocks VALUES (?, ?, ?)", (block_hash, len(blob), time.time())
                        )
                    self._mark_verified(self._stamp(block_hash, target), db)  # these bytes hashed to block_hash
        return block_hash

    def discard(self, block_hash: str, kind: Kind_T = "blocks") -> None:
        """Remove a block file (a corrupt one, before it is fetched or prepared again); its index rows stay."""
        with self.lock(block_hash):
            self.path(block_hash, kind).unlink(missing_ok=True)
        with self._raw_lock:
            if block_hash in self._raw:
                self._raw_bytes -= sum(len(v) for v in self._raw.pop(block_hash).values())

    def get(self, block_hash: str):
        """The block's tensors (block-relative names), memory-mapped, after verifying the content hash.

        A file is re-hashed unless this file version (size, modification time, inode) was verified before, by
        any process; repeated loads of an unchanged file (a baseline reloading a model every iteration, a
        repeat search) skip the hashing, and a changed or replaced file is hashed again.

        Raises:
            BlockIntegrityError: when the file is missing or its bytes no longer match the hash.
        """
        from safetensors.torch import load_file

        return load_file(str(self._verified_path(block_hash)))

    def raw(self, block_hash: str) -> dict[str, bytes]:
        """The block's tensors as raw bytes by block-relative name, after the same verification as `get`.

        The last `RAW_CACHE_BYTES` are kept: blocks are immutable, and proofs read the same reference again."""
        with self._raw_lock:
            if block_hash in self._raw:
                self._raw.move_to_end(block_hash)
                return self._raw[block_hash]
        raw = {name: data for name, _, _, data in decode(self._verified_path(block_hash).read_bytes())}
        size = sum(len(v) for v in raw.values())
        with self._raw_lock:
            if size <= RAW_CACHE_BYTES and block_hash not in self._raw:
                self._raw[block_hash] = raw
                self._raw_bytes += size
                while self._raw_bytes > RAW_CACHE_BYTES:
                    _, old = self._raw.popitem(last=False)
                    self._raw_bytes -= sum(len(v) for v in old.values())
        return raw

    def _verified_path(self, block_hash: str, kind: Kind_T = "blocks") -> Path:
        path = self.path(block_hash, kind)
        if not path.is_file():
            raise BlockIntegrityError(f"block {block_hash[:12]} is not in the store at {self.root}.")
        stamp = self._stamp(block_hash, path)
        if not self._is_verified(stamp):
            if not _matches(path, block_hash):
                raise BlockIntegrityError(
                    f"block file {path} is corrupt (hash mismatch); run `alsatian-hf store gc --verify`."
                )
            with self._db() as db:
                self._mark_verified(stamp, db)
        return path

    # -- prepared blocks -----------------------------------------------------------------------------------
    def prepared(self, block_hash: str, recipe: str) -> dict | None:
        """The block prepared by `recipe` (`put_prepared`), memory-mapped and verified like a block; None when it
        was not stored, or its file is gone or damaged (then it is dropped, to be prepared again)."""
        from safetensors.torch import load_file

        with self._db() as db:
            row = db.execute("SELECT hash FROM prepared WHERE source=? AND recipe=?", (block_hash, recipe)).fetchone()
        if row is None:
            return None
        try:
            return load_file(str(self._verified_path(row[0], "prepared")))
        except (BlockIntegrityError, SafetensorsHeaderError, OSError) as e:
            logger.warning("block store: prepared block %s is unusable (%s); preparing it again", row[0][:12], e)
            self.discard(row[0], "prepared")
            with self._db() as db:
                db.execute("DELETE FROM prepared WHERE source=? AND recipe=?", (block_hash, recipe))
            return None

    def put_prepared(self, block_hash: str, recipe: str, tensors: Tensors) -> str:
        """Keep `tensors`, the block `block_hash` prepared by `recipe`; returns their content hash.

        Raises:
            StoreFullError: as `put`.
        """
        h = self.put(tensors, kind="prepared")
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO prepared VALUES (?, ?, ?)", (block_hash, recipe, h))
        return h

    # -- index ---------------------------------------------------------------------------------------------
    def index_model(self, repo: str, revision: str, family: str, hashes: dict[int, str], *,
                    method: str = "bytes") -> None:  # fmt: skip
        """Record which block each index of a checkpoint is, and how that was established (IDENTITY_METHODS)."""
        with self._db() as db:
            db.executemany(
                "INSERT OR REPLACE INTO model_blocks (repo, revision, block, family, hash, method) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(repo, revision, i, family, h, method) for i, h in hashes.items()],
            )

    def references(self, family: str, blocks: Iterable[int], *, exclude: str, prefer: str | None = None,
                   limit: int = 3) -> dict[int, list[tuple[str, str, str]]]:  # fmt: skip
        """(repo, revision, hash) of up to `limit` stored blocks at each index of this family from other repos:
        `prefer`'s first (the base model), then the newest. One query for all of a candidate's blocks."""
        wanted = set(blocks)
        out: dict[int, list[tuple[str, str, str]]] = {i: [] for i in wanted}
        with self._db() as db:
            rows = db.execute(
                "SELECT block, repo, revision, hash FROM model_blocks WHERE family=? AND repo!=? "
                "ORDER BY block, repo=? DESC, rowid DESC",
                (family, exclude, prefer or ""),
            ).fetchall()
        for block, repo, revision, h in rows:
            if block in wanted and len(out[block]) < limit and self.has(h):
                out[block].append((repo, revision, h))
        return out

    def identity_counts(self) -> dict[str, int]:
        with self._db() as db:
            rows = db.execute("SELECT method, COUNT(*) FROM model_blocks GROUP BY method").fetchall()
        return dict(rows)

    def save_xet_hashes(self, repo: str, revision: str, hashes: dict[str, str]) -> None:
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO xet_files VALUES (?, ?, ?, ?)",
                           [(repo, revision, f, h) for f, h in hashes.items()])  # fmt: skip

    def xet_hashes(self, repo: str, revision: str) -> dict[str, str]:
        with self._db() as db:
            rows = db.execute("SELECT filename, xet_hash FROM xet_files WHERE repo=? AND revision=?",
                              (repo, revision)).fetchall()  # fmt: skip
        return dict(rows)

    def model_hashes(self, repo: str, revision: str, family: str) -> dict[int, str]:
        """Block index -> content hash of the commit's blocks in `family` whose files are in the store."""
        return self.commit_hashes(repo, revision).get(family, {})

    def commit_hashes(self, repo: str, revision: str) -> dict[str, dict[int, str]]:
        """`model_hashes` of every family indexed for the commit, in one query."""
        with self._db() as db:
            rows = db.execute(
                "SELECT family, block, hash FROM model_blocks WHERE repo=? AND revision=?", (repo, revision)
            ).fetchall()
        out: dict[str, dict[int, str]] = {}
        for family, i, h in rows:
            if self.has(h):
                out.setdefault(family, {})[i] = h
        return out

    def index_files(self, files_sha: str, family: str, hashes: dict[int, str]) -> None:
        with self._db() as db:
            db.executemany(
                "INSERT OR REPLACE INTO file_blocks VALUES (?, ?, ?, ?)",
                [(files_sha, family, i, h) for i, h in hashes.items()],
            )

    def files_hashes(self, files_sha: str, family: str) -> dict[int, str]:
        with self._db() as db:
            rows = db.execute(
                "SELECT block, hash FROM file_blocks WHERE files_sha=? AND family=?", (files_sha, family)
            ).fetchall()
        return {i: h for i, h in rows if self.has(h)}

    def save_layout(self, repo: str, revision: str, layout_json: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO layouts VALUES (?, ?, ?)", (repo, revision, layout_json))

    def load_layout(self, repo: str, revision: str) -> str | None:
        """A checkpoint's layout (JSON); a commit's layout never changes, so it is read from disk once."""
        return self._read_once(
            self._layouts, "SELECT layout FROM layouts WHERE repo=? AND revision=?", (repo, revision)
        )

    def save_commit(self, repo: str, revision: str, info: dict) -> None:
        """What a candidate's set-up reads from the Hub's metadata of one commit (its files, their sizes and LFS
        hashes, the card's base model): JSON-serialisable, and never changing for a commit sha."""
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO commits VALUES (?, ?, ?)", (repo, revision, json.dumps(info)))
        self._commits[(repo, revision)] = info  # what set-up learnt later (a `.bin` commit's conversion) is seen

    def load_commit(self, repo: str, revision: str) -> dict | None:
        """`save_commit`'s info, read from disk once, like `load_layout`: set-up asks twice per candidate, to
        choose the thread that opens it (`candidates.repos.opens_offline`) and to open it. Callers only read it."""
        query = "SELECT info FROM commits WHERE repo=? AND revision=?"
        return self._read_once(self._commits, query, (repo, revision), json.loads)

    def _read_once(self, memo: dict, query: str, key: tuple[str, str], decode: Callable[[str], Any] = str) -> Any:
        """A commit's row of `query`, decoded, read from disk once into `memo`: what a commit sha names never
        changes. A row not stored yet is not remembered, so a later save is seen."""
        if key not in memo:
            with self._db() as db:
                row = db.execute(query, key).fetchone()
            if row is None:
                return None
            memo[key] = decode(row[0])
        return memo[key]

    def save_measurement(self, key: str, value: Any) -> Any:
        """Keep what a shape probe measured (`candidates.probe`) under `key`, which names everything it depends on:
        JSON-serialisable, so a new process reads it instead of building and running a random-init model.

        Returns:
            The value kept under `key`: `value`, or what another process kept first (timings differ by process).
        """
        with self._db() as db:
            db.execute("INSERT OR IGNORE INTO measurements VALUES (?, ?)", (key, json.dumps(value)))
            return json.loads(db.execute("SELECT value FROM measurements WHERE key=?", (key,)).fetchone()[0])

    def load_measurement(self, key: str) -> Any:
        with self._db() as db:
            row = db.execute("SELECT value FROM measurements WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row is not None else None

    # -- maintenance ---------------------------------------------------------------------------------------
    def block_files(self, kind: Kind_T = "blocks") -> Iterable[Path]:
        return (p for p in (self.root / kind).glob("*/*.safetensors") if not p.name.startswith("."))

    def info(self) -> StoreInfo:
        files = {p.stem: p.stat().st_size for p in self.block_files()}
        with self._db() as db:
            refs = db.execute("SELECT hash FROM model_blocks").fetchall()
            models = db.execute("SELECT COUNT(DISTINCT repo || '@' || revision) FROM model_blocks").fetchone()[0]
        logical = sum(files.get(h, 0) for (h,) in refs)
        prepared = sum(p.stat().st_size for p in self.block_files("prepared"))
        return StoreInfo(
            str(self.root), len(files), sum(files.values()), logical, models, self.identity_counts(), prepared
        )

    def gc(self, *, verify: bool = False) -> dict[str, int]:
        """Remove temp files, blocks no index entry references (older than `UNREFERENCED_GRACE`: a search
        running now may index a fresh one next), prepared blocks whose block goes or went, index rows whose block
        is gone, and (with `verify`) corrupt blocks. Safe to run while searches use the store."""
        removed = {"temp_files": 0, "unreferenced": 0, "corrupt": 0, "stale_rows": 0}
        removed["temp_files"] = sum(
            sweep_temp_files((self.root / kind).glob(f"*/{TEMP_PREFIX}*")) for kind in ("blocks", "prepared")
        )
        with self._db() as db:
            referenced = {h for (h,) in db.execute("SELECT hash FROM model_blocks UNION SELECT hash FROM file_blocks")}
            # a prepared block lives as long as the block it was prepared from
            prepared = db.execute("SELECT source, hash FROM prepared").fetchall()
        referenced_prepared = {h for source, h in prepared if source in referenced and self.has(source)}
        for kind, keep in (("blocks", referenced), ("prepared", referenced_prepared)):
            for path in list(self.block_files(kind)):
                h = path.stem
                if h not in keep and age(path) < UNREFERENCED_GRACE:
                    continue  # a running search stores a block a moment before it indexes it
                if h not in keep:
                    with self.lock(h):
                        path.unlink(missing_ok=True)
                    removed["unreferenced"] += 1
                elif verify and path.is_file() and not _matches(path, h):
                    path.unlink(missing_ok=True)
                    removed["corrupt"] += 1
        with self._db() as db:
            # Take the write lock first, then list the files: a search indexes a block only after writing its
            # file, so no row it adds meanwhile can name a file this listing missed. (A deferred transaction
            # that read first and wrote later failed with "database is locked" beside a running search.)
            db.execute("BEGIN IMMEDIATE")
            present = {p.stem for p in self.block_files()}
            present_prepared = {p.stem for p in self.block_files("prepared")}
            for table in ("model_blocks", "file_blocks"):
                rows = db.execute(f"SELECT rowid, hash FROM {table}").fetchall()
                stale = [(r,) for r, h in rows if h not in present]
                db.executemany(f"DELETE FROM {table} WHERE rowid=?", stale)
                removed["stale_rows"] += len(stale)
            rows = db.execute("SELECT rowid, source, hash FROM prepared").fetchall()
            stale = [(r,) for r, source, h in rows if source not in present or h not in present_prepared]
            db.executemany("DELETE FROM prepared WHERE rowid=?", stale)
            removed["stale_rows"] += len(stale)
            for table, keep in (("blocks", present), ("verified", present | present_prepared)):
                db.execute(
                    f"DELETE FROM {table} WHERE hash NOT IN (%s)" % ",".join("?" * len(keep))
                    if keep
                    else f"DELETE FROM {table}",
                    tuple(keep),
                )
        return removed
