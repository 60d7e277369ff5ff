"""The local Hub's Xet storage: every LFS file chunked once, its chunks packed into xorbs, and reconstructions.

Xorbs are not written out: a xorb is a list of chunks, each a byte range of the repo file that first held it,
and its bytes (8-byte header + plain chunk, per chunk) are assembled when a client asks for a range of it.
So a Xet-served zoo takes no extra disk beyond the index, `ROOT/.xet/index.sqlite`, which keeps each file's
chunks and terms keyed by (path, size, mtime, inode): a restart does not rechunk an unchanged zoo.

Two upload modes, so both cases of the real Hub can be tested:
- `dedup` (default): a file's chunks already stored for an earlier file are referenced, not stored again, as
  an uploader that has the base model's chunks does; its new chunks go into xorbs of its own;
- `no-dedup`: each file gets its own xorbs (chunks repeated inside one file are still stored once, as every
  uploader does).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .. import _xet


UploadMode_T = Literal["dedup", "no-dedup"]
_HEADER_BYTES = 8  # per chunk in a xorb

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL, file_hash TEXT NOT NULL, terms TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS files_by_hash ON files (file_hash);
CREATE TABLE IF NOT EXISTS xorbs (xorb TEXT PRIMARY KEY, chunks TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (hash TEXT PRIMARY KEY, xorb TEXT NOT NULL, idx INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Term:
    """Chunks [start, end) of one xorb, `nbytes` of file data."""

    xorb: str
    start: int
    end: int
    nbytes: int


@dataclass(frozen=True)
class XorbChunk:
    path: str  # the repo file, relative to the hub root, that holds the chunk's bytes
    offset: int
    size: int


class XetIndex:
    """Chunks, xorbs and terms of the hub's LFS files, built on first use of each file version.

    Args:
        root: the hub root; the index lives in `root/.xet/`.
        mode: the upload mode of new files (a file keeps the xorbs it was indexed with).
    """

    def __init__(self, root: Path, mode: UploadMode_T = "dedup"):
        self.root = Path(root).resolve()
        self.mode = mode
        (self.root / ".xet").mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / ".xet" / "index.sqlite", check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()  # every use of the connection, and indexing (one file at a time)
        # Served from memory once read: a search asks for reconstructions hundreds of times a second.
        self._xorb_cache: dict[str, list[XorbChunk]] = {}
        self._entries: dict[str, tuple[tuple[int, int, int], str, list[Term]]] = {}  # rel -> stamp, hash, terms
        self._paths: dict[str, str] = {}  # file hash -> rel
        self.files_chunked = 0  # file versions chunked by this process (a restart over an indexed root: 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- indexing -----------------------------------------------------------------------------------------
    def file_hash(self, path: Path) -> str:
        """The file's Xet hash (hex), chunking it first if this version of it is not indexed yet."""
        return self._entry(path)[0]

    def terms(self, file_hash: str) -> list[Term] | None:
        """The terms of a file by its Xet hash (after re-indexing it if a file it shares xorbs with changed)."""
        remembered = self._paths.get(file_hash)
        terms = self._terms_at(remembered, file_hash) if remembered is not None else None
        if terms is not None:
            return terms
        # Identical files (a copy, a pull request's) share a hash: any of them still there and unchanged serves.
        with self._lock:
            rows = self._db.execute("SELECT path FROM files WHERE file_hash=?", (file_hash,)).fetchall()
        for (rel,) in rows:
            terms = self._terms_at(rel, file_hash) if rel != remembered else None
            if terms is not None:
                return terms
        return None

    def _terms_at(self, rel: str, file_hash: str) -> list[Term] | None:
        """The terms of the file at `rel`, if it is there and still has this hash."""
        if not (self.root / rel).is_file():
            return None
        current, terms = self._entry(self.root / rel)
        return terms if current == file_hash else None

    def index_files(self, paths: list[Path]) -> None:
        """Chunk files now, in this order (an upload's order: earlier files own the xorbs of shared chunks)."""
        for path in paths:
            self._entry(path)

    def _entry(self, path: Path) -> tuple[str, list[Term]]:
        rel = Path(os.path.relpath(os.path.abspath(path), self.root)).as_posix()
        stamp = _stamp(self.root / rel)
        hit = self._entries.get(rel)
        if hit is not None and hit[0] == stamp and self._intact({t.xorb for t in hit[2]}):
            return hit[1], hit[2]
        with self._lock:
            row = self._db.execute("SELECT size, mtime_ns, inode, file_hash, terms FROM files WHERE path=?",
                                   (rel,)).fetchone()  # fmt: skip
            if row is not None and tuple(row[:3]) == stamp:
                file_hash, terms = row[3], [Term(*t) for t in json.loads(row[4])]
                self._remember(rel, stamp, file_hash, terms)
                if self._intact({t.xorb for t in terms}):
                    return file_hash, terms
                # a file it shares chunks with changed since: its terms are stale, so it is chunked again
            file_hash, terms = self._index(self.root / rel, rel)
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                                 (rel, *stamp, file_hash, json.dumps([list(t.__dict__.values()) for t in terms])))  # fmt: skip
            self._remember(rel, stamp, file_hash, terms)
            return file_hash, terms

    def _remember(self, rel: str, stamp: tuple[int, int, int], file_hash: str, terms: list[Term]) -> None:
        self._entries[rel] = (stamp, file_hash, terms)
        self._paths[file_hash] = rel

    def _index(self, path: Path, rel: str) -> tuple[str, list[Term]]:
        chunks = _xet.chunk_file(path)
        self.files_chunked += 1
        located: dict[bytes, tuple[str, int]] = {}  # chunk hash -> (xorb, index), for this file's terms
        if self.mode == "dedup":
            for c in chunks:
                row = self._db.execute("SELECT xorb, idx FROM chunks WHERE hash=?", (c.hash.hex(),)).fetchone()
                if row is not None and self._intact({row[0]}):
                    located[c.hash] = (row[0], row[1])
        new: list[_xet.Chunk] = []
        seen = set(located)
        for c in chunks:
            if c.hash not in seen:
                seen.add(c.hash)
                new.append(c)
        with self._db:
            for xorb_chunks in _pack(new):
                xorb = _xet.hash_hex(_xet.merkle_root([(c.hash, c.size) for c in xorb_chunks]))
                stored = [XorbChunk(rel, c.start, c.size) for c in xorb_chunks]
                self._db.execute("INSERT OR REPLACE INTO xorbs VALUES (?, ?)",
                                 (xorb, json.dumps([list(x.__dict__.values()) for x in stored])))  # fmt: skip
                self._xorb_cache[xorb] = stored
                for i, c in enumerate(xorb_chunks):
                    located[c.hash] = (xorb, i)
                    if self.mode == "dedup":
                        self._db.execute("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?)", (c.hash.hex(), xorb, i))
        return _xet.hash_hex(_xet.file_hash(chunks)), _terms(chunks, located)

    def _intact(self, xorbs: set[str]) -> bool:
        """Whether the files these xorbs' chunks come from are still the versions that were indexed."""
        for path in {c.path for x in xorbs for c in self.xorb(x) or []}:
            indexed = self._entries.get(path)
            if indexed is None:
                with self._lock:
                    row = self._db.execute("SELECT size, mtime_ns, inode FROM files WHERE path=?", (path,)).fetchone()
                if row is None:
                    return False
                stamp = tuple(row)
            else:
                stamp = indexed[0]
            try:
                if _stamp(self.root / path) != stamp:
                    return False
            except FileNotFoundError:  # the repo that owned these xorbs was deleted: chunk the reader anew
                return False
        return True

    # -- serving ------------------------------------------------------------------------------------------
    def reconstruction(self, file_hash: str, first: int, last: int) -> tuple[int, list[Term]]:
        """The terms that cover file bytes [first, last] (inclusive), trimmed to the chunks that overlap them.

        Returns `offset_into_first_range` (`first` minus the first returned chunk's offset) and the terms.
        """
        out: list[Term] = []
        offset_into_first, pos = 0, 0
        for t in self.terms(file_hash) or []:
            if pos + t.nbytes <= first or pos > last:
                pos += t.nbytes
                continue
            sizes = [c.size for c in (self.xorb(t.xorb) or [])[t.start : t.end]]
            i, j, cpos = 0, len(sizes), pos
            while cpos + sizes[i] <= first:  # drop whole chunks before `first`
                cpos += sizes[i]
                i += 1
            if not out:
                offset_into_first = first - cpos
            end_pos = cpos
            for k in range(i, len(sizes)):  # keep chunks that start at or before `last`
                if end_pos > last:
                    j = k
                    break
                end_pos += sizes[k]
            out.append(Term(t.xorb, t.start + i, t.start + j, sum(sizes[i:j])))
            pos += t.nbytes
        return offset_into_first, out

    def xorb(self, xorb: str) -> list[XorbChunk] | None:
        if xorb not in self._xorb_cache:
            with self._lock:
                row = self._db.execute("SELECT chunks FROM xorbs WHERE xorb=?", (xorb,)).fetchone()
            if row is None:
                return None
            self._xorb_cache[xorb] = [XorbChunk(*c) for c in json.loads(row[0])]
        return self._xorb_cache[xorb]

    def xorb_offsets(self, xorb: str) -> list[int]:
        """Byte offset of each chunk's header in the xorb, and the xorb's length last."""
        offsets, pos = [], 0
        for c in self.xorb(xorb) or []:
            offsets.append(pos)
            pos += _HEADER_BYTES + c.size
        return offsets + [pos]

    def read_xorb(self, xorb: str, start: int, end: int) -> bytes:
        """Bytes [start, end] (inclusive) of the xorb as a CAS serves them: header and data per chunk."""
        chunks, offsets = self.xorb(xorb) or [], self.xorb_offsets(xorb)
        out = bytearray()
        for c, pos in zip(chunks, offsets):
            if pos + _HEADER_BYTES + c.size <= start or pos > end:
                continue
            with open(self.root / c.path, "rb") as f:
                f.seek(c.offset)
                data = f.read(c.size)
            out += _xet.encode_xorb_chunk(data)
        first = next(p for p, c in zip(offsets, chunks) if p + _HEADER_BYTES + c.size > start)
        return bytes(out[start - first : end - first + 1])


def _stamp(path: Path) -> tuple[int, int, int]:
    """A file version: size, modification time and inode."""
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def _pack(chunks: list[_xet.Chunk]) -> list[list[_xet.Chunk]]:
    """Chunks in order, cut into xorbs of at most 8192 chunks and 64 MiB."""
    xorbs: list[list[_xet.Chunk]] = []
    current: list[_xet.Chunk] = []
    nbytes = 0
    for c in chunks:
        if current and (len(current) == _xet.XORB_MAX_CHUNKS or nbytes + c.size > _xet.XORB_MAX_BYTES):
            xorbs.append(current)
            current, nbytes = [], 0
        current.append(c)
        nbytes += c.size
    if current:
        xorbs.append(current)
    return xorbs


def _terms(chunks: list[_xet.Chunk], located: dict[bytes, tuple[str, int]]) -> list[Term]:
    """The file as runs of consecutive chunks of one xorb."""
    terms: list[list] = []
    for c in chunks:
        xorb, i = located[c.hash]
        if terms and terms[-1][0] == xorb and terms[-1][2] == i:
            terms[-1][2] += 1
            terms[-1][3] += c.size
        else:
            terms.append([xorb, i, i + 1, c.size])
    return [Term(*t) for t in terms]
