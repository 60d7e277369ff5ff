"""`alsatian_hf.engine`: executes plans with a tiered cache, a block LRU and a feature store."""

from .blocks import BlockLRU
from .cache import AUTO_BUDGET_FRACTION, Tier, TieredCache, default_tiers, resolve_budget
from .executor import PHASES, Counters, Executor
from .features import FeatureStore


__all__ = [
    "AUTO_BUDGET_FRACTION",
    "BlockLRU",
    "Counters",
    "Executor",
    "FeatureStore",
    "PHASES",
    "Tier",
    "TieredCache",
    "default_tiers",
    "resolve_budget",
]
