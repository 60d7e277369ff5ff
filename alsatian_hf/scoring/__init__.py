"""`alsatian_hf.scoring`: proxy scores over extracted features. No model code, no Hub."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError
from ._base import Scorer, Scorer_T, score_all, validate
from .hscore import HScore
from .knn import KNN
from .linear import LinearProbe
from .logme import LogME

SCORERS: dict[str, type] = {"linear": LinearProbe, "knn": KNN, "logme": LogME, "hscore": HScore}


def get_scorer(name: Scorer_T | Scorer, **kwargs: Any) -> Scorer:
    """A scorer by name (`linear`, `knn`, `logme`, `hscore`) with its keyword arguments, or pass one through."""
    if not isinstance(name, str):
        return name
    if name not in SCORERS:
        raise ConfigurationError(f"`scorer` must be one of {sorted(SCORERS)}, got {name!r}.")
    try:
        return SCORERS[name](**kwargs)
    except TypeError as e:
        raise ConfigurationError(f"`scorer_kwargs` do not fit scorer {name!r}: {e}") from e


__all__ = ["HScore", "KNN", "LinearProbe", "LogME", "SCORERS", "Scorer", "Scorer_T", "get_scorer", "score_all", "validate"]
