"""Prove that a block's bytes equal a stored block's before downloading them, from Xet reconstruction terms.

For a candidate's block and a reference (a stored block at the same index of the same family, from the
base model first), each run of the block's tensors that is contiguous in both files with one offset `d` is a
span. Xorbs are immutable, so a term of the candidate's span (xorb X, chunks [i, j) at offset p) is proven
equal to the reference's bytes at p + d when the reference file has X's chunk i starting exactly at p + d and
running through chunk j - 1. What no term proves (the span's edges, where the two files' chunkers were not
yet in step, and any changed region) is fetched and compared with the reference's local bytes. The block's
bytes are then the reference's bytes with the fetched ranges put in: identical when nothing fetched differs,
a new block otherwise. Different terms never prove different bytes; identity is only ever claimed on proof.

Terms come from one reconstruction of each whole file, so a file costs one metadata request however many
blocks it holds (the base's answer serves every fine-tune), and a small tensor inside a long shared term is
proven at no extra cost. A block with no chunk of its own that both files cut alike (a small block at a
boundary, or a changed one) is fetched and compared: the rule for blocks with no interior chunk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from ..hub import RangeReader, TensorLocation, merge_ranges
from ..hub.xet import Segment, XetReader


logger = logging.getLogger("alsatian_hf")

MAX_PROBES_PER_SPAN = 6  # ranged reconstructions of the reference to align terms inside its long ones


@dataclass(frozen=True)
class XetFile:
    """One side of a proof: a repo file at a commit with its Xet hash and layout."""

    repo_id: str
    revision: str
    file_hashes: dict[str, str]  # filename -> Xet hash
    layout: dict[str, TensorLocation]


@dataclass(frozen=True)
class Span:
    filename: str  # in the candidate
    start: int
    end: int
    ref_filename: str
    shift: int  # reference offset minus candidate offset
    keys: tuple[str, ...]


@dataclass
class Outcome:
    raw: dict[str, bytes]  # the candidate block's tensors, by checkpoint key (empty when identical)
    identical: bool  # equal to the reference block, byte for byte
    proven_bytes: int  # bytes proven by terms alone


NOTHING_PROVEN = Outcome({}, False, 0)


def spans(keys: tuple[str, ...], cand: XetFile, ref: XetFile) -> list[Span] | None:
    """The block's tensors grouped into runs contiguous in both files at one shift; None when the reference's
    tensors differ in name, dtype or shape."""
    out: list[Span] = []
    for key in sorted(keys, key=lambda k: (cand.layout[k].filename, cand.layout[k].start)):
        c, r = cand.layout[key], ref.layout.get(key)
        if r is None or (r.dtype, r.shape) != (c.dtype, c.shape):
            return None
        last = out[-1] if out else None
        if (last and last.filename == c.filename and last.ref_filename == r.filename and last.end == c.start
                and last.shift == r.start - c.start):  # fmt: skip
            out[-1] = Span(c.filename, last.start, c.end, r.filename, last.shift, (*last.keys, key))
        else:
            out.append(Span(c.filename, c.start, c.end, r.filename, r.start - c.start, (key,)))
    return out


def prove(*, keys: tuple[str, ...], cand: XetFile, ref: XetFile, ref_raw: Callable[[], dict[str, bytes]], rel_name,
          xet: XetReader, reader: RangeReader) -> Outcome | None:  # fmt: skip
    """The candidate block's bytes from proofs against `ref` plus fetched unproven ranges; None when no proof
    can be tried (no Xet hashes, a layout mismatch, or Xet metadata that failed); `NOTHING_PROVEN` when no term
    is shared with `ref` (a changed block): then it is fetched as usual, in few Range requests, and hashed."""
    groups = spans(keys, cand, ref)
    if groups is None:
        return None
    proofs = []
    for span in groups:
        c_hash, r_hash = cand.file_hashes.get(span.filename), ref.file_hashes.get(span.ref_filename)
        if not c_hash or not r_hash:
            return None
        proven = _proven(span, c_hash, r_hash, cand, ref, xet)
        if proven is None:
            return None
        proofs.append(proven)
    if not any(proofs):  # a changed block: comparing its bytes with the reference's would only cost copies
        return NOTHING_PROVEN
    identical, proven_total, fetched_bytes, raw_ref = True, 0, 0, ref_raw()
    assembled: list[tuple[Span, bytes | bytearray]] = []  # each span's bytes: the reference, or a patched copy
    for span, proven in zip(groups, proofs):
        reference = b"".join(raw_ref[rel_name(k)] for k in span.keys)
        data: bytes | bytearray = reference
        for start, end in _gaps(proven, span.start, span.end):
            fetched = reader.read(cand.repo_id, span.filename, cand.revision, start, end)
            fetched_bytes += len(fetched)
            a, b = start - span.start, end - span.start
            if memoryview(reference)[a:b] != fetched:  # compared in place: most blocks are identical
                identical = False
                data = data if isinstance(data, bytearray) else bytearray(reference)
                data[a:b] = fetched
        proven_total += sum(e - s for s, e in proven)
        assembled.append((span, data))
    if identical:  # what was fetched only confirmed the proof's edges
        reader.stats.record_edges(fetched_bytes)
        return Outcome({}, True, proven_total)  # the block is the reference: no tensor bytes are needed
    raw = {key: bytes(data[cand.layout[key].start - span.start : cand.layout[key].end - span.start])
           for span, data in assembled for key in span.keys}  # fmt: skip
    return Outcome(raw, identical, proven_total)


def _proven(span: Span, c_hash: str, r_hash: str, cand: XetFile, ref: XetFile,
            xet: XetReader) -> list[tuple[int, int]] | None:  # fmt: skip
    """Candidate byte ranges of the span proven equal to the reference's by terms; None if metadata failed."""
    d = span.shift
    mine = xet.file_segments(cand.repo_id, cand.revision, c_hash)
    theirs = xet.file_segments(ref.repo_id, ref.revision, r_hash)
    if mine is None or theirs is None:
        return None
    mine = _within(_coalesce(mine), span.start, span.end)
    theirs = _within(_coalesce(theirs), span.start + d, span.end + d)
    their_xorbs = {t.xorb for t in theirs}
    proven: list[tuple[int, int]] = []
    probes = 0
    for seg in mine:
        if seg.xorb not in their_xorbs:
            continue  # chunks the reference does not hold at all: new bytes, or unshared edges
        if not any(_aligned(seg, t, d) for t in theirs):
            if probes == MAX_PROBES_PER_SPAN:
                continue
            probes += 1  # the chunk may sit inside a longer term of the reference: ask from the aligned offset
            probe = xet.segments(ref.repo_id, ref.revision, r_hash, seg.start + d, seg.start + d + seg.length)
            if not probe or not _aligned(seg, _coalesce(probe)[0], d):
                continue
        proven.append((max(seg.start, span.start), min(seg.start + seg.length, span.end)))
    return merge_ranges(proven)


def _coalesce(segments: list[Segment]) -> list[Segment]:
    """Adjacent terms that continue one xorb's chunks merged into one: together they are that chunk range."""
    out: list[Segment] = []
    for seg in segments:
        last = out[-1] if out else None
        if last and last.xorb == seg.xorb and last.end == seg.first and last.start + last.length == seg.start:
            out[-1] = Segment(seg.xorb, last.first, seg.end, last.start, last.length + seg.length)
        else:
            out.append(seg)
    return out


def _within(segments: list[Segment], start: int, end: int) -> list[Segment]:
    """The terms overlapping bytes [start, end), whole (a term is proven or not as one chunk range)."""
    return [s for s in segments if s.start < end and s.start + s.length > start]


def _aligned(seg: Segment, theirs: Segment, d: int) -> bool:
    """The reference term starts with the same chunk of the same xorb at the shifted offset and runs at least
    as far: then the candidate term's bytes are the reference's bytes at that offset."""
    return theirs.xorb == seg.xorb and theirs.first == seg.first and theirs.start == seg.start + d and (
        theirs.end >= seg.end)  # fmt: skip


def _gaps(proven: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    gaps, pos = [], start
    for s, e in proven:
        if s > pos:
            gaps.append((pos, s))
        pos = max(pos, e)
    if pos < end:
        gaps.append((pos, end))
    return gaps
