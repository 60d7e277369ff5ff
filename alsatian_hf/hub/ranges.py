"""HTTP byte-range reads from a Hub `resolve` URL: exact, retried, and never a silent whole-file download."""

from __future__ import annotations

import functools
import importlib
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from ..errors import BlockFetchError


logger = logging.getLogger("alsatian_hf")

RETRY_STATUSES = {429, 500, 502, 503, 504}
T = TypeVar("T")


@dataclass
class FetchStats:
    """What a search asked of the Hub; safe to update from the threads that fetch blocks in parallel."""

    requests: int = 0  # Range requests on `resolve` (headers and weights)
    bytes: int = 0
    header_bytes: int = 0
    edge_bytes: int = 0  # of `bytes`: fetched to confirm the unproven edges of blocks proven identical
    metadata_requests: int = 0  # Xet tokens and reconstructions
    metadata_bytes: int = 0
    retries: int = 0
    full_downloads: int = 0
    refetched_blocks: int = 0  # stored blocks found corrupt or missing when loaded, fetched again
    per_repo: dict[str, list[int]] = field(default_factory=dict)  # repo -> [requests, bytes]
    # how each block's identity was established this search: xet-proof, lfs-sha, bytes, or stored (known already)
    identity: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_identity(self, method: str) -> None:
        with self._lock:
            self.identity[method] = self.identity.get(method, 0) + 1

    def record_metadata(self, nbytes: int) -> None:
        """A Xet metadata request (token or reconstruction), counted apart from weight bytes."""
        with self._lock:
            self.metadata_requests += 1
            self.metadata_bytes += nbytes

    def record_edges(self, nbytes: int) -> None:
        with self._lock:
            self.edge_bytes += nbytes

    def record(self, repo_id: str, nbytes: int, *, header: bool = False) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += nbytes
            if header:
                self.header_bytes += nbytes
            entry = self.per_repo.setdefault(repo_id, [0, 0])
            entry[0] += 1
            entry[1] += nbytes


def merge_ranges(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge [start, end) spans that touch or overlap, so contiguous tensors come in one request."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


@functools.cache
def transport_errors() -> tuple[type[Exception], ...]:
    """The transient failures of huggingface_hub's HTTP client: its `TransportError` (httpx's, or that of the
    httpx fork the client is built on), so a bug in our own code is never retried as if it were the network."""
    from huggingface_hub import get_session

    client_module = importlib.import_module(type(get_session()).__module__.partition(".")[0])
    return (client_module.TransportError,)


def backoff_delay(base: float, attempt: int) -> float:
    """Exponential backoff with jitter: threads that failed together must not retry in lockstep (against a
    server that fails every n-th request, lockstep made one thread's every attempt land on a failure)."""
    return base * 2**attempt * random.uniform(0.5, 1.5)


class RateLimitWait:
    """Waits out the Hub's rate limits: a 429 that says when its window resets (the `RateLimit` header's `t`, or
    `Retry-After`) is waited for, as huggingface_hub's own backoff does, instead of being retried within seconds
    and failing; a search over hundreds of candidates can spend an anonymous user's quota of API requests.

    The waits do not count as attempts; in all they are bounded by `patience` seconds per request.
    """

    patience: float = 900.0
    # threads limited in one window log one warning: until this monotonic time, another wait logs at debug level
    _quiet_until: float = 0.0
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.waited = 0.0

    def __call__(self, response, what: str) -> bool:
        """Whether `response` was a rate limit now waited out (then retry at once), or not (retry as usual)."""
        seconds = reset_in(response)
        if seconds is None or self.waited + seconds > self.patience:
            return False
        from huggingface_hub import get_token

        cls = type(self)
        with cls._lock:
            level = logging.WARNING if time.monotonic() >= cls._quiet_until else logging.DEBUG
            if level == logging.WARNING:
                cls._quiet_until = time.monotonic() + seconds
        logger.log(
            level, "The Hub rate-limited %s: waiting %d s for its window to reset.%s", what, seconds,
            "" if get_token() else " A token (`hf auth login`, or HF_TOKEN) raises the limit.",
        )  # fmt: skip
        self.waited += seconds
        time.sleep(seconds + random.uniform(0, 1))  # threads limited together must not all return at once
        return True

    def served(self, send: Callable[[], T], what: str) -> T:
        """`send()`'s response, sent again after each rate limit it answered and this waited out."""
        response = send()
        while self(response, what):
            response = send()
        return response


def reset_in(response) -> int | None:
    """Seconds until a 429's rate-limit window resets, where the answer says; None for any other answer."""
    if response is None or response.status_code != 429:
        return None
    from huggingface_hub.utils import parse_ratelimit_headers

    info = parse_ratelimit_headers(response.headers)
    if info is not None and info.remaining == 0:
        return info.reset_in_seconds
    after = response.headers.get("Retry-After", "").strip()
    return int(after) if after.isdigit() else None


def with_retries(call: Callable[[], T], *, transport: bool = True, retries: int = 4, backoff: float = 0.2) -> T:
    """`call()`, retried with exponential backoff on 429/5xx answers and (with `transport`) transport errors only;
    a rate limit that says when it resets is waited out (`RateLimitWait`).

    For huggingface_hub calls that do not retry a 500 themselves (`model_info`, `snapshot_download`). Pass
    `transport=False` for downloads, which huggingface_hub already retries on connection errors.
    """
    transient = transport_errors() if transport else ()
    from huggingface_hub.errors import HfHubHTTPError

    wait = RateLimitWait()
    for attempt in range(retries + 1):
        try:
            return _waited(call, wait)
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else None
            if status not in RETRY_STATUSES or attempt == retries:
                raise
            logger.info("retrying after %s (attempt %d of %d)", status, attempt + 1, retries)
        except transient as e:
            if attempt == retries:
                raise
            logger.info("retrying after %s (attempt %d of %d)", type(e).__name__, attempt + 1, retries)
        time.sleep(backoff_delay(backoff, attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def _waited(call: Callable[[], T], wait: RateLimitWait) -> T:
    """`call()`, called again after each rate limit `wait` waits out."""
    from huggingface_hub.errors import HfHubHTTPError

    while True:
        try:
            return call()
        except HfHubHTTPError as e:
            if not wait(e.response, str(e.response.url) if e.response is not None else "a request"):
                raise


class RangeReader:
    """Reads byte ranges of repo files through huggingface_hub's HTTP session.

    Args:
        allow_full_download: when a server ignores `Range`, download the whole file once (with a warning)
            instead of failing. Off by default: the head must never be fetched.
        retries: attempts for transient failures (5xx, 429, truncated bodies, connection errors), with
            exponential backoff starting at `backoff` seconds.
    """

    def __init__(
        self,
        *,
        allow_full_download: bool = False,
        retries: int = 4,
        backoff: float = 0.2,
        timeout: float = 60.0,
        stats: FetchStats | None = None,
    ):
        self.allow_full_download = allow_full_download
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.stats = stats or FetchStats()
        self._full_files: dict[str, bytes] = {}

    def read(
        self,
        repo_id: str,
        filename: str,
        revision: str,
        start: int,
        end: int,
        *,
        header: bool = False,
    ) -> bytes:
        """Bytes [start, end) of the file, exactly.

        Raises:
            BlockFetchError: after the retries, or at once when the server ignores Range (unless allowed).
        """
        from huggingface_hub import constants, get_session, hf_hub_url
        from huggingface_hub.utils import build_hf_headers

        if constants.HF_HUB_OFFLINE:
            raise BlockFetchError(
                f"HF_HUB_OFFLINE is set and {repo_id}/{filename}@{revision[:8]} bytes "
                f"{start}-{end} are not in the block store. Run once online to fill it."
            )
        url = hf_hub_url(repo_id, filename, revision=revision)
        key = f"{repo_id}@{revision}/{filename}"
        if key in self._full_files:
            return self._full_files[key][start:end]
        want = end - start
        last_error: Exception | None = None
        wait = RateLimitWait()
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                time.sleep(backoff_delay(self.backoff, attempt - 1))
            headers = {**build_hf_headers(), "Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
            try:
                response = wait.served(
                    lambda: get_session().get(url, headers=headers, timeout=self.timeout, follow_redirects=True), url
                )
            except transport_errors() as e:  # connection reset, truncated body, timeout: all transient
                last_error = e
                continue
            if response.status_code in RETRY_STATUSES:
                last_error = BlockFetchError(f"{url} answered {response.status_code}")
                continue
            if response.status_code == 200:
                return self._whole_file(key, url, response, start, end)
            if response.status_code != 206:
                raise BlockFetchError(
                    f"{url} answered {response.status_code} to a Range request for bytes "
                    f"{start}-{end - 1}; expected 206."
                )
            body = response.content
            self.stats.record(repo_id, len(body), header=header)
            if len(body) != want:
                last_error = BlockFetchError(f"{url} sent {len(body)} bytes for a {want}-byte range.")
                continue
            return body
        raise BlockFetchError(
            f"Could not fetch bytes {start}-{end - 1} of {url} after {self.retries + 1} attempts: {last_error}"
        ) from last_error

    def _whole_file(self, key: str, url: str, response, start: int, end: int) -> bytes:
        if not self.allow_full_download:
            raise BlockFetchError(
                f"{url} ignored the Range header and answered 200 with the whole file. Block fetching needs "
                "byte ranges; pass `allow_full_download=True` to download whole checkpoints instead (heads included)."
            )
        body = response.content
        logger.warning("%s ignores Range requests: downloaded the whole file (%d bytes) instead.", url, len(body))
        repo_id = key.split("@", 1)[0]
        self.stats.record(repo_id, len(body))
        self.stats.full_downloads += 1
        self._full_files[key] = body
        return body[start:end]
