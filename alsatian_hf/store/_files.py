"""How the store writes files: whole or not at all, so a reader never sees a torn one, and temporary files
that a killed writer left behind are swept by `gc`."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable


TEMP_PREFIX = ".tmp-"
STALE_TEMP_SECONDS = 60  # a live writer renames or removes its temporary file within seconds


def age(path: Path) -> float:
    """Seconds since `path` changed; 0 for a file another process renamed or removed meanwhile."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def write_atomic(target: Path, blob: bytes, *, write: Callable, fsync: bool = False, suffix: str = "") -> None:
    """Write `blob` to a temporary file beside `target` through `write(file, blob)`, then rename it over
    `target`; on any failure the temporary file is removed and the error raised."""
    for attempt in range(3):  # a concurrent `gc` may remove an empty folder between mkdir and mkstemp
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX, suffix=suffix)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    try:
        with os.fdopen(fd, "wb") as f:
            write(f, blob)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sweep_temp_files(paths: Iterable[Path]) -> int:
    """Remove the stale temporary files among `paths`; returns how many."""
    removed = 0
    for tmp in paths:
        if age(tmp) > STALE_TEMP_SECONDS:
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed
