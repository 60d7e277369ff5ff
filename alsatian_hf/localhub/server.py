"""A Hub-compatible HTTP server over a folder of repos.

It speaks enough of the Hub's REST API for the unmodified `huggingface_hub` client (and transformers,
timm and datasets on top of it): listing, repo info, trees, paths-info, `resolve` with byte ranges, and
safetensors metadata. It also serves as a company-internal model store (`alsatian-hf serve-hub ROOT`).

For tests it keeps a request log and can be told to misbehave (`HubServer.faults`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .._safetensors import read_file_header
from ..errors import SafetensorsHeaderError
from ._repo import FolderRepo, RepoFile, list_repos
from ._xet_cas import UploadMode_T, XetIndex


logger = logging.getLogger("alsatian_hf.localhub")

PAGE_SIZE = 50
LOG_WAIT_S = 10.0  # how long a log reader waits for requests still in flight
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc).isoformat().replace("+00:00", ".000Z")


@dataclass
class Faults:
    """Ways to make the server misbehave, for fault tests: `resolve` requests, and the CAS's reconstructions."""

    ignore_range: bool = False  # answer 200 with the whole file to a Range request
    truncate: int | None = None  # send at most this many body bytes, but announce the full length
    fail_requests: set[int] = field(default_factory=set)  # 1-based resolve-request numbers answered 500
    fail_every: int | None = None  # answer 500 to every n-th resolve request
    delay: float = 0.0  # seconds to sleep before answering
    # The Xet CAS's reconstructions: answer this status, or cut the JSON after this many bytes
    cas_status: int | None = None
    cas_truncate: int | None = None
    expire_tokens: bool = False  # every access token is refused as expired
    refuse_xorbs: bool = False  # every xorb GET is answered 403, signed or not
    # The Hub's rate limits: bucket ("api": /api/..., "resolvers": file downloads) -> (requests, window seconds).
    # Past its quota in a fixed window, a bucket answers 429 with the Hub's `RateLimit` headers until it resets.
    rate_limits: dict[str, tuple[int, float]] = field(default_factory=dict)
    # repos whose owners turned discussions off: listing their discussions is refused (403), as on the Hub
    discussions_off: set[str] = field(default_factory=set)
    # bucket -> (its window's start, requests in it): state, not a setting, so `reset` starts every quota whole
    windows: dict[str, tuple[float, int]] = field(default_factory=dict, repr=False)

    def reset(self) -> None:
        self.__init__()


@dataclass
class LoggedRequest:
    method: str
    path: str
    range: str | None
    status: int
    bytes_sent: int


class HubServer:
    """Serves `root` on `host:port` (port 0 picks a free port) in a background thread.

    Example:
        >>> import tempfile, urllib.request, json
        >>> with tempfile.TemporaryDirectory() as root, HubServer(root) as hub:
        ...     json.load(urllib.request.urlopen(hub.url + "/api/models"))
        []
    """

    def __init__(self, root: str | Path, *, host: str = "127.0.0.1", port: int = 0, page_size: int = PAGE_SIZE,
                 xet: bool = True, upload_mode: UploadMode_T = "dedup", token_ttl: float = 3600.0,
                 bandwidth: float | None = None):  # fmt: skip
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.page_size = page_size
        # Xet: LFS files are served through a CAS at /cas as well (`xet=False` serves plain HTTP only)
        self.xet = XetIndex(self.root, upload_mode) if xet else None
        self.token_ttl = token_ttl
        self._tokens: dict[str, float] = {}  # access token -> expiry (unix seconds)
        self._signing_key = secrets.token_bytes(32)
        # file and xorb bytes share this many bytes per second over all connections (None: unlimited), so
        # a cold search's transfer time is what it would be on a real link
        self.throttle = _Throttle(bandwidth) if bandwidth else None
        self.faults = Faults()
        self.log: list[LoggedRequest] = []
        self._resolve_count = 0
        self._lock = threading.Lock()
        # A request is logged after its last byte went out, so a client can hold the response before the entry
        # exists; readers of the log wait until no request is in flight.
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubServer":
        if self._thread is None:
            self._thread = threading.Thread(target=self.httpd.serve_forever, name="localhub", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.server_close()
        if self.xet is not None:
            self.xet.close()

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- request log -------------------------------------------------------------------------------------
    def clear_log(self) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=LOG_WAIT_S)
            self.log.clear()

    def requests(self, *, kind: str | None = None) -> list[LoggedRequest]:
        """Logged requests, including every one whose response a client has received; `kind="resolve"` keeps
        file downloads only."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=LOG_WAIT_S)
            log = list(self.log)
        if kind == "resolve":
            log = [r for r in log if "/resolve/" in r.path]
        return log

    def _begin(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _record(self, entry: LoggedRequest) -> None:
        with self._idle:
            self.log.append(entry)
            self._in_flight -= 1
            self._idle.notify_all()

    # -- Xet access tokens and signed xorb ranges -----------------------------------------------------------
    def issue_token(self) -> tuple[str, int]:
        token, expiry = secrets.token_urlsafe(24), time.time() + self.token_ttl
        with self._lock:
            self._tokens[token] = expiry
        return token, int(expiry)

    def token_valid(self, authorization: str | None) -> bool:
        if self.faults.expire_tokens:
            return False
        token = (authorization or "").removeprefix("Bearer ").strip()
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.time()

    def sign(self, xorb: str, start: int, end: int) -> str:
        return hmac.new(self._signing_key, f"{xorb}:{start}-{end}".encode(), hashlib.sha256).hexdigest()

    def rate_limited(self, bucket: str) -> dict[str, str] | None:
        """The 429 headers for a request in `bucket` past its quota (`Faults.rate_limits`), or None to serve it."""
        limit = self.faults.rate_limits.get(bucket)
        if limit is None:
            return None
        quota, window = limit
        now = time.monotonic()
        windows = self.faults.windows
        with self._lock:
            start, used = windows.get(bucket, (now, 0))
            if now - start >= window:
                start, used = now, 0
            windows[bucket] = (start, used + 1)
        if used < quota:
            return None
        reset = max(1, math.ceil(start + window - now))
        return {
            "RateLimit": f'"{bucket}";r=0;t={reset}',
            "RateLimit-Policy": f'"fixed window";"{bucket}";q={quota};w={math.ceil(window)}',
        }

    def _next_resolve(self) -> int:
        with self._lock:
            self._resolve_count += 1
            return self._resolve_count


@contextlib.contextmanager
def serve_hub(root: str | Path, *, host: str = "127.0.0.1", port: int = 0, xet: bool = True) -> Iterator[str]:
    """Serve `root` in-process and yield the base URL (bind port 0 for a free port)."""
    with HubServer(root, host=host, port=port, xet=xet) as hub:
        yield hub.url


class _Throttle:
    """A token bucket shared by every connection: at most `rate` bytes per second, bursts of 1/20 s."""

    def __init__(self, rate: float):
        self.rate = float(rate)
        self.burst = max(self.rate / 20, 1 << 16)
        self.tokens = self.burst
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def take(self, n: int) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            self.tokens -= n
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait:
            time.sleep(wait)


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def _not_found(code: str, message: str) -> _HttpError:
    return _HttpError(404, message, code)


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; Nagle + delayed ACK would add 40 ms each
    server_version = "alsatian-localhub/0.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s - %s", self.address_string(), format % args)

    # -- plumbing ------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        self._sent = 0
        self._status = 0
        self._body_read = False
        split = urlsplit(self.path)
        self._query = parse_qs(split.query, keep_blank_values=True)
        path = split.path
        self.hub._begin()  # paired with _record in `finally`
        try:
            self._route(method, path)
        except _HttpError as e:
            if not self._body_read:  # a POST refused before its body was read: left unread, it would be taken
                self._body()  # for the next request line on this keep-alive connection
            self._send_json(
                {"error": e.message},
                status=e.status,
                headers={**({"X-Error-Code": e.code} if e.code else {}), **e.headers},
                error_message=e.message,
            )
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self.hub._record(LoggedRequest(method, self.path, self.headers.get("Range"), self._status, self._sent))

    def _body(self) -> bytes:
        self._body_read = True
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _body_form(self) -> dict[str, list[str]]:
        raw = self._body()
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            data = json.loads(raw or b"{}")
            return {k: (v if isinstance(v, list) else [v]) for k, v in data.items()}
        return parse_qs(raw.decode(), keep_blank_values=True)

    def _send_json(self, payload, *, status: int = 200, headers: dict | None = None, error_message: str | None = None):
        body = json.dumps(payload).encode()
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if error_message:
            self.send_header("X-Error-Message", error_message)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            self._sent = len(body)

    # -- routing -------------------------------------------------------------------------------------------
    def _route(self, method: str, path: str) -> None:
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        resolve = parts[2:3] == ["resolve"] or (parts[:1] == ["datasets"] and parts[3:4] == ["resolve"])
        bucket = "api" if parts[:1] == ["api"] else "resolvers" if resolve else None
        limited = self.hub.rate_limited(bucket) if bucket else None
        if limited:
            raise _HttpError(429, "You have been rate-limited; you can retry this action in a few minutes.",
                             headers=limited)  # fmt: skip
        if parts[:1] == ["api"]:
            return self._route_api(method, parts[1:])
        if parts[:1] == ["cas"] and self.hub.xet is not None and method == "GET":
            return self._route_cas(parts[1:])
        # /{org}/{name}/resolve/{rev}/{path} and /datasets/{org}/{name}/resolve/{rev}/{path}
        repo_type = "model"
        if parts[:1] == ["datasets"]:
            repo_type, parts = "dataset", parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            repo = self._repo(repo_type, f"{parts[0]}/{parts[1]}")
            return self._resolve(method, repo, parts[3], "/".join(parts[4:]))
        raise _HttpError(404, f"Not found: {path}")

    def _route_api(self, method: str, parts: list[str]) -> None:
        if not parts:
            raise _HttpError(404, "Not found")
        kind = parts[0]
        if kind == "whoami-v2":
            raise _HttpError(401, "The local hub has no users.")
        if kind not in ("models", "datasets"):
            raise _HttpError(404, f"The local hub does not serve /api/{kind}.")
        repo_type = kind[:-1]
        rest = parts[1:]
        if not rest:
            return self._list(repo_type)
        if len(rest) < 2:
            raise _not_found("RepoNotFound", f"Repository {rest[0]!r} not found (ids are 'org/name').")
        repo = self._repo(repo_type, f"{rest[0]}/{rest[1]}")
        rest = rest[2:]
        if not rest:
            return self._info(repo, None)
        op = rest[0]
        if op == "revision" and len(rest) >= 2:
            return self._info(repo, "/".join(rest[1:]))
        if op == "tree" and len(rest) >= 2:
            return self._tree(repo, rest[1], "/".join(rest[2:]))
        if op == "paths-info" and len(rest) >= 2 and method == "POST":
            return self._paths_info(repo, "/".join(rest[1:]))
        if op == "refs":
            refs = {
                "branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.commit_sha()}],
                "converts": [],
                "tags": [],
            }
            if self._query.get("include_prs"):
                refs["pullRequests"] = [
                    {
                        "name": f"refs/pr/{pr.num}",
                        "ref": f"refs/pr/{pr.num}",
                        "targetCommit": repo.pull(pr).commit_sha(),
                    }
                    for pr in repo.pull_requests()
                ]
            return self._send_json(refs)
        if op == "commits" and len(rest) >= 2:
            view, _, sha = self._at(repo, "/".join(rest[1:]))
            commits = [{"id": sha, "title": "Snapshot", "message": "", "authors": [], "date": _EPOCH}]
            if view.pr is not None:  # a pull request's head, then the commit of main it was opened on
                commits[0]["title"] = view.pr.title
                commits.append(
                    {"id": view.pr.parent, "title": "Snapshot", "message": "", "authors": [], "date": _EPOCH}
                )
            return self._send_json(commits)
        if op == "discussions" and len(rest) == 1:
            return self._discussions(repo)
        if op == "xet-read-token" and len(rest) >= 2 and self.hub.xet is not None:
            return self._xet_read_token(repo, "/".join(rest[1:]))
        if op == "safetensors-metadata" and repo_type == "model":
            return self._safetensors_metadata(repo, "/".join(rest[1:]) or "model.safetensors.index.json")
        raise _HttpError(404, f"The local hub does not serve /api/{kind}/{repo.repo_id}/{'/'.join(rest)}.")

    # -- helpers -------------------------------------------------------------------------------------------
    def _repo(self, repo_type: str, repo_id: str) -> FolderRepo:
        org, _, name = repo_id.partition("/")
        bad = not org or not name or any(p in ("", ".", "..") or p.startswith(".") for p in (org, name))
        repo = FolderRepo(self.hub.root, repo_type, repo_id)
        if bad or not repo.exists() or (repo_type == "model" and org == "datasets"):
            raise _not_found("RepoNotFound", f"Repository Not Found for url: {self.path}.")
        return repo

    def _at(self, repo: FolderRepo, revision: str | None) -> tuple[FolderRepo, list[RepoFile], str]:
        """The repo as `revision` sees it, its files and its commit: main (`main`, `refs/heads/main` or its sha,
        and None) or a pull request (`refs/pr/N` or its head's sha)."""
        files = repo.files()
        sha = repo.commit_sha(files)
        if revision in (None, "main", "refs/heads/main", sha):
            return repo, files, sha
        for pr in repo.pull_requests():
            view = repo.pull(pr)
            if revision == f"refs/pr/{pr.num}" or (len(revision) == 40 and revision == view.commit_sha()):
                files = view.files()
                return view, files, view.commit_sha(files)
        raise _not_found("RevisionNotFound", f"Invalid rev id: {revision}")

    # -- endpoints -----------------------------------------------------------------------------------------
    def _list(self, repo_type: str) -> None:
        q = self._query
        author = (q.get("author") or [None])[0]
        search = ((q.get("search") or [""])[0]).lower()
        filters = [f for v in q.get("filter", []) for f in v.split(",") if f]
        pipeline = (q.get("pipeline_tag") or [None])[0]
        limit = int((q.get("limit") or [0])[0] or 0)
        cursor = int((q.get("cursor") or [0])[0] or 0)
        expand = q.get("expand")
        full = bool(q.get("full")) or bool(filters)
        matches = []
        for repo in list_repos(self.hub.root, repo_type):
            if author and repo.repo_id.split("/")[0] != author:
                continue
            if search and search not in repo.repo_id.lower():
                continue
            files = repo.files()
            card = repo.card_data()
            tags = repo.tags(card, files)
            if pipeline and card.get("pipeline_tag") != pipeline:
                continue
            if any(f not in tags and f != repo.repo_id for f in filters):
                continue
            matches.append((repo, files, card, tags))
        page = self.hub.page_size if not limit else min(limit, self.hub.page_size)
        chunk = matches[cursor : cursor + page]
        payload = [self._info_payload(r, f, c, t, full=full, expand=expand, listing=True) for r, f, c, t in chunk]
        headers = {}
        if cursor + page < len(matches) and (not limit or cursor + page < limit):
            query = {k: v for k, v in self._query.items() if k != "cursor"}
            qs = "&".join(f"{quote(k)}={quote(x)}" for k, vs in query.items() for x in vs)
            nxt = f"{self.hub.url}/api/{repo_type}s?{qs}{'&' if qs else ''}cursor={cursor + page}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        self._send_json(payload, headers=headers)

    def _info(self, repo: FolderRepo, revision: str | None) -> None:
        repo, files, _ = self._at(repo, revision)
        card = repo.card_data()
        blobs = bool(self._query.get("blobs"))
        payload = self._info_payload(
            repo, files, card, repo.tags(card, files), full=True, expand=self._query.get("expand"), blobs=blobs
        )
        self._send_json(payload)

    def _info_payload(
        self,
        repo: FolderRepo,
        files: list[RepoFile],
        card: dict,
        tags: list[str],
        *,
        full: bool,
        expand: list[str] | None = None,
        blobs: bool = False,
        listing: bool = False,
    ) -> dict:
        sha = repo.commit_sha(files)
        siblings = []
        for f in files:
            s: dict = {"rfilename": f.path}
            if blobs:
                s["size"] = f.size
                s["blobId"] = f.git_oid
                if f.lfs:
                    s["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": 134}
            siblings.append(s)
        props = {
            "author": repo.repo_id.split("/")[0],
            "sha": sha,
            "lastModified": _EPOCH,
            "createdAt": _EPOCH,
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": tags,
            "cardData": card,
            "siblings": siblings,
        }
        if repo.repo_type == "model":
            props["library_name"] = card.get("library_name")
            props["pipeline_tag"] = card.get("pipeline_tag")
            props["config"] = repo.config()
            st = _safetensors_summary(repo, files)
            if st:
                props["safetensors"] = st
        if expand:
            keep = set(expand)
            chosen = {k: v for k, v in props.items() if k in keep}
        elif listing and not full:
            chosen = {k: props[k] for k in ("author", "tags", "downloads", "likes", "private", "createdAt")}
            for k in ("library_name", "pipeline_tag"):
                if k in props:
                    chosen[k] = props[k]
        else:
            chosen = props
        return {"_id": sha[:24], "id": repo.repo_id, "modelId": repo.repo_id, **chosen}

    def _discussions(self, repo: FolderRepo) -> None:
        """A page of the repo's discussions: here, its pull requests (`get_repo_discussions`)."""
        if repo.repo_id in self.hub.faults.discussions_off:
            return self._send_json({"error": "Discussions are disabled for this repo"}, status=403)
        q = self._query
        kind, status, author = ((q.get(k) or [None])[0] for k in ("type", "status", "author"))
        prs = [] if kind == "discussion" else repo.pull_requests()
        prs = [pr for pr in prs if (status in (None, "all") or pr.status == status) and author in (None, pr.author)]
        start = int((q.get("p") or [0])[0] or 0) * PAGE_SIZE
        page = [
            {
                "num": pr.num,
                "title": pr.title,
                "status": pr.status,
                "isPullRequest": True,
                "createdAt": _EPOCH,
                "author": {"name": pr.author},
                "repo": {"name": repo.repo_id, "type": repo.repo_type},
            }  # fmt: skip
            for pr in sorted(prs, key=lambda pr: -pr.num)[start : start + PAGE_SIZE]
        ]
        closed = sum(pr.status in ("closed", "merged") for pr in prs)
        self._send_json({"discussions": page, "count": len(prs), "start": start, "numClosedDiscussions": closed})

    def _tree_entries(self, repo: FolderRepo, files: list[RepoFile], base: str, recursive: bool) -> list[dict]:
        prefix = f"{base}/" if base else ""
        dirs: dict[str, None] = {}
        entries = []
        for f in files:
            if not f.path.startswith(prefix):
                continue
            rest = f.path[len(prefix) :]
            if "/" in rest:
                segs = rest.split("/")
                upto = len(segs) - 1 if recursive else 1
                for i in range(1, upto + 1):
                    dirs.setdefault(prefix + "/".join(segs[:i]), None)
                if not recursive:
                    continue
            entries.append(self._file_entry(repo, f))
        dir_entries = [{"type": "directory", "oid": "0" * 40, "path": d} for d in dirs]
        return sorted(dir_entries + entries, key=lambda e: e["path"])

    def _tree(self, repo: FolderRepo, revision: str, base: str) -> None:
        repo, files, _ = self._at(repo, revision)
        base = base.strip("/")
        if base and not any(f.path.startswith(base + "/") for f in files):
            if any(f.path == base for f in files):
                return self._send_json([])
            raise _not_found("EntryNotFound", f"{base} does not exist on {revision}")
        recursive = (self._query.get("recursive") or ["false"])[0].lower() in ("1", "true")
        entries = self._tree_entries(repo, files, base, recursive)
        cursor = int((self._query.get("cursor") or [0])[0] or 0)
        page = 1000
        headers = {}
        if cursor + page < len(entries):
            nxt = f"{self.hub.url}{urlsplit(self.path).path}?recursive={str(recursive).lower()}&cursor={cursor + page}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        self._send_json(entries[cursor : cursor + page], headers=headers)

    def _paths_info(self, repo: FolderRepo, revision: str) -> None:
        form = self._body_form()
        repo, files, _ = self._at(repo, revision)
        paths = [p for v in form.get("paths", []) for p in (v if isinstance(v, list) else [v])]
        by_path = {f.path: f for f in files}
        dirs = {"/".join(f.path.split("/")[:i]) for f in files for i in range(1, f.path.count("/") + 1)}
        out = []
        for p in paths:
            p = str(p).strip("/")
            if p in by_path:
                out.append(self._file_entry(repo, by_path[p]))
            elif p in dirs:
                out.append({"type": "directory", "oid": "0" * 40, "path": p})
        self._send_json(out)

    def _safetensors_metadata(self, repo: FolderRepo, filename: str) -> None:
        index_path = repo.safe_path(filename)
        if index_path is None or not index_path.is_file():
            raise _not_found("EntryNotFound", f"{filename} not found in {repo.repo_id}")
        index = json.loads(index_path.read_text())
        headers = {}
        for shard in sorted(set(index.get("weight_map", {}).values())):
            shard_path = repo.safe_path(shard)
            if shard_path is None or not shard_path.is_file():
                raise _not_found("EntryNotFound", f"shard {shard} not found in {repo.repo_id}")
            headers[shard] = read_file_header(shard_path, with_metadata=True)[0]
        self._send_json({"index": {k: v for k, v in index.items() if k != "weight_map"}, "headers": headers})

    def _resolve(self, method: str, repo: FolderRepo, revision: str, rel: str) -> None:
        repo, files, sha = self._at(repo, revision)
        target = repo.safe_path(rel)
        entry = next((f for f in files if f.path == rel), None)
        if target is None or entry is None or not target.is_file():
            raise _not_found("EntryNotFound", f"Entry not found: {rel} in {repo.repo_id}")
        faults = self.hub.faults
        n = self.hub._next_resolve()
        if faults.delay:
            time.sleep(faults.delay)
        if n in faults.fail_requests or (faults.fail_every and n % faults.fail_every == 0):
            raise _HttpError(500, f"Injected failure on resolve request #{n}")
        size = entry.size
        start, end = 0, size - 1
        status = 200
        range_header = self.headers.get("Range")
        if range_header and not faults.ignore_range:
            m = _RANGE_RE.match(range_header.strip())
            if not m or (not m.group(1) and not m.group(2)):
                return self._send_416(size)
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start = max(size - int(m.group(2)), 0)
            if start >= size or start > end:
                return self._send_416(size)
            status = 206
        length = end - start + 1
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("X-Repo-Commit", sha)
        self.send_header("ETag", f'"{entry.etag()}"')
        if entry.lfs:
            self.send_header("X-Linked-Etag", f'"{entry.sha256}"')
            self.send_header("X-Linked-Size", str(size))
            xet_hash = self._xet_hash(repo, entry)
            if xet_hash is not None:
                refresh = f"{self.hub.url}/api/{repo.repo_type}s/{repo.repo_id}/xet-read-token/{sha}"
                self.send_header("X-Xet-Hash", xet_hash)
                self.send_header("X-Xet-Refresh-Route", refresh)
                self.send_header("Link", f'<{refresh}>; rel="xet-auth"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if method == "HEAD":
            return
        to_send = length if faults.truncate is None else min(length, faults.truncate)
        with open(target, "rb") as f:
            f.seek(start)
            remaining = to_send
            while remaining > 0:
                chunk = f.read(min(1 << 20, remaining))
                if not chunk:
                    break
                self._write_data(chunk)
                remaining -= len(chunk)
        if to_send < length:
            self.close_connection = True

    # -- Xet ----------------------------------------------------------------------------------------------
    def _xet_hash(self, repo: FolderRepo, f: RepoFile) -> str | None:
        """The Xet hash of an LFS file (chunked on first use of this version), or None without Xet."""
        if self.hub.xet is None or not f.lfs:
            return None
        path = repo.folder / f.path
        return self.hub.xet.file_hash(path.resolve() if path.is_symlink() else path)  # a pull request's link: main's

    def _file_entry(self, repo: FolderRepo, f: RepoFile) -> dict:
        entry = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.path}
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            xet_hash = self._xet_hash(repo, f)
            if xet_hash is not None:
                entry["xetHash"] = xet_hash
        return entry

    def _xet_read_token(self, repo: FolderRepo, revision: str) -> None:
        self._at(repo, revision)
        token, expiry = self.hub.issue_token()
        cas = f"{self.hub.url}/cas"
        headers = {"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(expiry)}
        self._send_json({"accessToken": token, "exp": expiry, "casUrl": cas}, headers=headers)

    def _route_cas(self, parts: list[str]) -> None:
        """/cas/v1/reconstructions/{file_hash} and /cas/xorbs/{xorb}?sig=...; v2 answers 404 (clients fall back)."""
        if parts[:2] == ["v1", "reconstructions"] and len(parts) == 3:
            if not self.hub.token_valid(self.headers.get("Authorization")):
                raise _HttpError(401, "Missing, unknown or expired Xet access token.")
            return self._reconstruction(parts[2])
        if parts[:1] == ["xorbs"] and len(parts) == 2:
            return self._xorb(parts[1])
        raise _HttpError(404, f"The local CAS does not serve /cas/{'/'.join(parts)}.")

    def _reconstruction(self, file_hash: str) -> None:
        faults, index = self.hub.faults, self.hub.xet
        if faults.cas_status:
            raise _HttpError(faults.cas_status, "Injected CAS failure")
        terms = index.terms(file_hash)
        if terms is None:
            raise _not_found("FileNotFound", f"No file with Xet hash {file_hash}.")
        size = sum(t.nbytes for t in terms)
        first, last = 0, size - 1
        range_header = self.headers.get("Range")
        if range_header:
            m = _RANGE_RE.match(range_header.strip())
            if not m or not m.group(1):
                return self._send_416(size)
            first = int(m.group(1))
            last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            if first >= size or first > last:
                return self._send_416(size)
        offset, kept = index.reconstruction(file_hash, first, last) if size else (0, [])
        # Per xorb, the union of the terms' chunk ranges as disjoint runs: each term lies inside exactly one
        # fetch range, as the real CAS answers (overlapping entries make hf_xet refuse the reconstruction).
        runs: dict[str, list[list[int]]] = {}
        for t in sorted(kept, key=lambda t: (t.xorb, t.start)):
            merged = runs.setdefault(t.xorb, [])
            if merged and t.start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], t.end)
            else:
                merged.append([t.start, t.end])
        fetch_info: dict[str, list[dict]] = {}
        for xorb, merged in runs.items():
            offsets = index.xorb_offsets(xorb)
            for i, j in merged:
                a, b = offsets[i], offsets[j] - 1
                fetch_info.setdefault(xorb, []).append({
                    "range": {"start": i, "end": j}, "url_range": {"start": a, "end": b},
                    "url": f"{self.hub.url}/cas/xorbs/{xorb}?sig={self.hub.sign(xorb, a, b)}",
                })  # fmt: skip
        terms_json = [{"hash": t.xorb, "unpacked_length": t.nbytes, "range": {"start": t.start, "end": t.end}}
                      for t in kept]  # fmt: skip
        payload = {"offset_into_first_range": offset, "terms": terms_json, "fetch_info": fetch_info}
        if faults.cas_truncate is not None:  # a body cut short, with the full length announced
            body = json.dumps(payload).encode()
            self._status = 200
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: faults.cas_truncate])
            self._sent = min(len(body), faults.cas_truncate)
            self.close_connection = True
            return
        self._send_json(payload)

    def _xorb(self, xorb: str) -> None:
        """Xorb bytes: only the exact range the signed URL was issued for."""
        m = _RANGE_RE.match((self.headers.get("Range") or "").strip())
        sig = (self._query.get("sig") or [""])[0]
        if self.hub.faults.refuse_xorbs:
            raise _HttpError(403, "Injected refusal of a xorb range")
        if not m or not m.group(1) or not m.group(2):
            raise _HttpError(403, "A xorb is served by signed range only; send the url_range as Range.")
        start, end = int(m.group(1)), int(m.group(2))
        if not hmac.compare_digest(sig, self.hub.sign(xorb, start, end)):
            raise _HttpError(403, "The signature does not grant this xorb range.")
        if self.hub.xet.xorb(xorb) is None:
            raise _not_found("XorbNotFound", f"No xorb {xorb}.")
        body = self.hub.xet.read_xorb(xorb, start, end)
        self._status = 206
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{self.hub.xet.xorb_offsets(xorb)[-1]}")
        self.end_headers()
        for i in range(0, len(body), 1 << 16):
            self._write_data(body[i : i + (1 << 16)])

    def _write_data(self, data: bytes) -> None:
        """File or xorb bytes, within the hub's bandwidth."""
        throttle = self.hub.throttle
        for i in range(0, len(data), 1 << 16):
            piece = data[i : i + (1 << 16)]
            if throttle is not None:
                throttle.take(len(piece))
            self.wfile.write(piece)
            self._sent += len(piece)

    def _send_416(self, size: int) -> None:
        self._status = 416
        self.send_response(416)
        self.send_header("Content-Range", f"bytes */{size}")
        self.send_header("Content-Length", "0")
        self.end_headers()


def _safetensors_summary(repo: FolderRepo, files: list[RepoFile]) -> dict | None:
    """Parameter counts per dtype, as the Hub's `safetensors` model-info field reports them."""
    counts: dict[str, int] = {}
    for f in files:
        if not f.path.endswith(".safetensors"):
            continue
        try:
            header, _ = read_file_header(repo.folder / f.path)
        except SafetensorsHeaderError:
            continue  # a malformed file: clients that read it get the error; the repo still lists
        for meta in header.values():
            numel = 1
            for d in meta["shape"]:
                numel *= d
            counts[meta["dtype"]] = counts.get(meta["dtype"], 0) + numel
    if not counts:
        return None
    return {"parameters": counts, "total": sum(counts.values())}


__all__ = ["HubServer", "Faults", "LoggedRequest", "serve_hub"]
