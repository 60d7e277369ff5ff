"""Xet metadata of Hub files: read tokens and ranged reconstructions (terms only, never xorb bytes).

A reconstruction describes file bytes as terms (xorb hash, chunk range, length). Xorbs are immutable and
content-addressed, so the same chunks of the same xorb at aligned offsets of two files are the same bytes:
`candidates.xet_identity` proves block identity from that before downloading. Every failure here (a 5xx, a
truncated answer, a refused or expired token) returns None after the retries, and the caller falls back to
fetching bytes; it is logged, and nothing is lost.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from .ranges import RETRY_STATUSES, FetchStats, RateLimitWait, backoff_delay, transport_errors


logger = logging.getLogger("alsatian_hf")


@dataclass(frozen=True)
class Segment:
    """One reconstruction term, placed in the file: bytes [start, start + length) are chunks [first, end) of
    `xorb`, in order."""

    xorb: str
    first: int
    end: int
    start: int
    length: int


class XetReader:
    """Reconstruction terms of Hub files over byte ranges, with one access token per repo revision.

    Args:
        stats: counts every request and byte here as metadata (`metadata_requests`, `metadata_bytes`).
        retries: attempts for transient failures (5xx, 429, transport errors, truncated JSON).
    """

    def __init__(self, *, stats: FetchStats, retries: int = 2, backoff: float = 0.2, timeout: float = 30.0):
        self.stats = stats
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._tokens: dict[tuple[str, str], tuple[str, float, str]] = {}  # (repo, rev) -> (token, exp, cas url)
        # answers by (file hash, start, end): a base model is the reference of every fine-tune's proofs
        self._answers: OrderedDict[tuple[str, int, int], list[Segment]] = OrderedDict()
        self._lock = threading.Lock()
        self._token_lock = threading.Lock()
        # whole-file answers by file hash, each requested once: every block of a file is proven from one answer
        self._files: dict[str, list[Segment] | None] = {}
        self._file_locks: dict[str, threading.Lock] = {}

    def _get(self, url: str, headers: dict[str, str]):
        from huggingface_hub import get_session

        response = get_session().get(url, headers=headers, timeout=self.timeout)
        self.stats.record_metadata(len(response.content))
        return response

    def _token(self, repo_id: str, revision: str, *, renew: bool = False) -> tuple[str, str] | None:
        from huggingface_hub import constants
        from huggingface_hub.utils import build_hf_headers

        key = (repo_id, revision)
        with self._token_lock:  # threads establishing one candidate's blocks wait for one token request
            cached = self._tokens.get(key)
            if cached and not renew and cached[1] > time.time() + 5:
                return cached[0], cached[2]
            url = f"{constants.ENDPOINT}/api/models/{repo_id}/xet-read-token/{revision}"
            _, body = self._json(url, build_hf_headers(), what=f"a Xet token for {repo_id}")
            if body is None:
                return None
            self._tokens[key] = (body["accessToken"], float(body["exp"]), body["casUrl"])
            return body["accessToken"], body["casUrl"]

    def _json(self, url: str, headers: dict[str, str], *, what: str) -> tuple[int, dict | None]:
        """(status, parsed body); transient failures and truncated bodies are retried, then (0, None)."""
        last = ""
        wait = RateLimitWait()
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(backoff_delay(self.backoff, attempt - 1))
            try:
                response = wait.served(lambda: self._get(url, headers), url)
            except transport_errors() as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if response.status_code in RETRY_STATUSES:
                last = f"HTTP {response.status_code}"
                continue
            if response.status_code != 200:
                return response.status_code, None
            try:
                return 200, json.loads(response.content)
            except ValueError as e:  # a truncated or garbled answer
                last = f"invalid JSON ({e})"
        logger.warning("Xet: could not get %s (%s); falling back to bytes", what, last)
        return 0, None

    def segments(self, repo_id: str, revision: str, file_hash: str, start: int, end: int) -> list[Segment] | None:
        """The terms covering file bytes [start, end) placed at their file offsets, or None (fall back)."""
        key = (file_hash, start, end)  # a file hash names immutable content: its answers never change
        with self._lock:
            lock = self._file_locks.setdefault(f"{file_hash}:{start}:{end}", threading.Lock())
        with lock:  # threads asking the same range wait for one request
            with self._lock:
                if key in self._answers:
                    self._answers.move_to_end(key)
                    return self._answers[key]
            found = self._segments(repo_id, revision, file_hash, start, end)
            if found is not None:
                with self._lock:
                    self._answers[key] = found
                    while len(self._answers) > 4096:
                        self._answers.popitem(last=False)
            return found

    def file_segments(self, repo_id: str, revision: str, file_hash: str) -> list[Segment] | None:
        """Every term of the file, placed at its offset, from one reconstruction (or None: fall back).

        One request per file instead of one per block: a fine-tune's answer is a few terms (the runs of the
        base's xorb it kept, and its new xorbs), and the base's answer is every fine-tune's reference.
        """
        with self._lock:
            lock = self._file_locks.setdefault(file_hash, threading.Lock())
        with lock:  # the threads establishing one file's blocks wait for one request
            if file_hash not in self._files:
                self._files[file_hash] = self._segments(repo_id, revision, file_hash, None, None)
            return self._files[file_hash]

    def _segments(self, repo_id: str, revision: str, file_hash: str, start: int | None,
                  end: int | None) -> list[Segment] | None:  # fmt: skip
        """A reconstruction of bytes [start, end), or of the whole file when `start` is None."""
        for renew in (False, True):  # a token that expired mid-search is renewed once
            token = self._token(repo_id, revision, renew=renew)
            if token is None:
                return None
            access, cas = token
            headers = {"Authorization": f"Bearer {access}"}
            what = f"the reconstruction of {repo_id} {file_hash[:12]}"
            if start is not None:
                headers["Range"] = f"bytes={start}-{end - 1}"
                what += f" bytes {start}-{end - 1}"
            status, body = self._json(f"{cas}/v1/reconstructions/{file_hash}", headers, what=what)
            if status == 401 and not renew:
                continue
            if body is None:
                if status:
                    logger.info("Xet: %s answered %s; falling back to bytes", what, status)
                return None
            return _place(body, start or 0)
        return None


def _place(body: dict, start: int) -> list[Segment] | None:
    try:
        pos = start - int(body["offset_into_first_range"])
        out = []
        for term in body["terms"]:
            length = int(term["unpacked_length"])
            out.append(Segment(term["hash"], int(term["range"]["start"]), int(term["range"]["end"]), pos, length))
            pos += length
        return out
    except (KeyError, TypeError, ValueError) as e:
        logger.warning("Xet: a reconstruction answer is malformed (%r); falling back to bytes", e)
        return None
