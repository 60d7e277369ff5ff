"""Every exception alsatian_hf raises.

Each one inherits from `AlsatianError` and from the stdlib class a caller would naturally catch, and its
message says what was wrong and how to fix it.
"""

from __future__ import annotations


class AlsatianError(Exception):
    """Base class of all alsatian_hf errors."""


class ConfigurationError(AlsatianError, ValueError):
    """An argument or setting is invalid."""


class DatasetError(AlsatianError, ValueError):
    """The target dataset cannot be used for a search (missing columns, too few items, ...)."""


class UnsupportedArchitectureError(AlsatianError, NotImplementedError):
    """No adapter can split this model class into blocks."""


class RankLostError(AlsatianError, RuntimeError):
    """Another rank of a distributed search stopped answering: it died, or it took longer than `rank_timeout`."""


class CandidateSkipped(AlsatianError):
    """A candidate cannot be scored; the search records `reason` and goes on without it."""

    def __init__(self, candidate: str, reason: str):
        super().__init__(f"{candidate}: {reason}")
        self.candidate = candidate
        self.reason = reason


class BlockFailedError(AlsatianError, RuntimeError):
    """A block raised on some rows: every candidate whose path runs that block after the same prefix fails alike.

    The executor records them (`Executor.failed`); the alsatian strategy catches this, drops them and plans the
    rest again, and the search reports them as skipped with `reason`.
    """

    def __init__(self, models: list[str], reason: str):
        super().__init__(reason)
        self.models = models
        self.reason = reason


class PlanningError(AlsatianError, RuntimeError):
    """No valid execution plan exists (e.g. a single item does not fit the cache budget)."""


class BlockFetchError(AlsatianError, OSError):
    """A block's bytes could not be fetched from the Hub."""


class BlockIntegrityError(AlsatianError, OSError):
    """A stored block does not match its content hash."""


class StoreFullError(AlsatianError, OSError):
    """The block store's disk is full: the search stops, since every later block would fail the same way."""


class FeatureIntegrityError(AlsatianError, OSError):
    """A feature-cache segment does not match its digest (it is deleted and its items recomputed)."""


class StateLostError(FeatureIntegrityError):
    """A stored state a plan starts from is gone or corrupt; the search plans again without it."""

    def __init__(self, key: str):
        super().__init__(f"stored state {key[:16]} is missing or corrupt; it is recomputed")
        self.key = key


class SafetensorsHeaderError(AlsatianError, ValueError):
    """A safetensors header is malformed: implausible length, invalid JSON, or entries that disagree with
    their byte counts."""


class NoSafetensorsError(AlsatianError, FileNotFoundError):
    """A repo or folder has no safetensors checkpoint (a .bin checkpoint is never unpickled)."""


class CacheKeyError(AlsatianError, KeyError):
    """An activation-cache entry was written twice: a plan that does not match its task tree."""


class MissingDependencyError(AlsatianError, ImportError):
    """An optional dependency is not installed; the message names the pip extra that brings it."""


class DataNotInstalledError(AlsatianError, FileNotFoundError):
    """The offline weights or data a zoo or example needs are not installed; the message says how."""


class ConversionError(AlsatianError, ValueError):
    """A shipped checkpoint does not convert onto its timm architecture (key order or shape mismatch)."""


class ZooExistsError(AlsatianError, FileExistsError):
    """A zoo folder exists already; pass `overwrite=True` to rebuild it."""


class XorbFormatError(AlsatianError, ValueError):
    """Xorb bytes from a CAS are truncated or use a chunk encoding this client does not read."""
