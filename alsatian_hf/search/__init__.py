"""`alsatian_hf.search`: successive halving, the execution strategies, `ModelSearcher` and `SearchResult`."""

from .arguments import SearchArguments
from .callbacks import LoggingCallback, SearchCallback
from .halving import HalvingOutcome, IterationRecord, run_halving, select
from .result import SearchResult
from .searcher import ModelSearcher
from .strategies import STRATEGIES, ExecutionStrategy, Strategy_T


__all__ = [
    "ExecutionStrategy",
    "HalvingOutcome",
    "IterationRecord",
    "LoggingCallback",
    "ModelSearcher",
    "STRATEGIES",
    "SearchArguments",
    "SearchCallback",
    "SearchResult",
    "Strategy_T",
    "run_halving",
    "select",
]
