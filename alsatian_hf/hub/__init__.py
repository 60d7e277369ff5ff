"""`alsatian_hf.hub`: talk to a Hub: list candidates, read safetensors headers and byte ranges. No torch."""

from .headers import TensorLocation, read_layout
from .listing import Candidate, list_candidates
from .ranges import FetchStats, RangeReader, merge_ranges


__all__ = [
    "Candidate",
    "FetchStats",
    "RangeReader",
    "TensorLocation",
    "list_candidates",
    "merge_ranges",
    "read_layout",
]
