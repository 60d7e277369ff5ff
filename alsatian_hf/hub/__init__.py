"""`alsatian_hf.hub`: talk to a Hub: list candidates, read safetensors headers and block bytes by Range."""

from .headers import NoSafetensorsError, TensorLocation, read_layout
from .listing import Candidate, list_candidates
from .ranges import FetchStats, RangeReader, merge_ranges
from .repos import OpenedRepo, open_hub, open_local
from .source import HubBlockSource

__all__ = [
    "Candidate",
    "FetchStats",
    "HubBlockSource",
    "NoSafetensorsError",
    "OpenedRepo",
    "RangeReader",
    "TensorLocation",
    "list_candidates",
    "merge_ranges",
    "open_hub",
    "open_local",
    "read_layout",
]
