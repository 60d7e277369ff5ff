"""`alsatian_hf.scoring`: proxy scores over extracted features. No model code, no Hub."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError
from ._base import BatchScorer, GroupedScorer, Scorer, Scorer_T, check_scorer, score_all, score_groups, validate
from .head import HeadProbe
from .hscore import HScore
from .knn import KNN
from .linear import LinearProbe
from .logme import LogME


SCORERS: dict[str, type] = {"linear": LinearProbe, "knn": KNN, "logme": LogME, "hscore": HScore, "head": HeadProbe}


def get_scorer(scorer: Scorer_T | Scorer, **kwargs: Any) -> Scorer:
    """A scorer by name with its keyword arguments, or a scorer object checked against the `Scorer` protocol.

    Example:
        >>> get_scorer("knn", k=3)
        KNN(k=3, metric='cosine')

    Raises:
        ConfigurationError: for an unknown name, keyword arguments that don't fit, or an object that does not
            follow the protocol.
    """
    if not isinstance(scorer, str):
        if kwargs:
            raise ConfigurationError(
                "`scorer_kwargs` apply to a scorer given by name; configure a scorer object "
                "in its constructor instead."
            )
        check_scorer(scorer)
        return scorer
    if scorer not in SCORERS:
        raise ConfigurationError(f"`scorer` must be one of {sorted(SCORERS)}, got {scorer!r}.")
    try:
        return SCORERS[scorer](**kwargs)
    except TypeError as e:
        raise ConfigurationError(f"`scorer_kwargs` do not fit scorer {scorer!r}: {e}") from e


__all__ = [
    "BatchScorer",
    "GroupedScorer",
    "HScore",
    "HeadProbe",
    "KNN",
    "LinearProbe",
    "LogME",
    "SCORERS",
    "Scorer",
    "Scorer_T",
    "check_scorer",
    "get_scorer",
    "score_all",
    "score_groups",
    "validate",
]
