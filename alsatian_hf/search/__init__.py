"""`alsatian_hf.search`: successive halving, the strategies, `ModelSearcher` and `SearchResult`."""

from .arguments import SearchArguments
from .callbacks import LoggingCallback, SearchCallback
from .halving import STRATEGIES, HalvingOutcome, IterationRecord, run_halving
from .result import SearchResult
from .searcher import ModelSearcher

__all__ = [
    "HalvingOutcome",
    "IterationRecord",
    "LoggingCallback",
    "ModelSearcher",
    "STRATEGIES",
    "SearchArguments",
    "SearchCallback",
    "SearchResult",
    "run_halving",
]
