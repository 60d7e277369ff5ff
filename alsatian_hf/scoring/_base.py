"""The proxy-score interface: `score(*, train_features, train_labels, test_features, test_labels) -> float`.

Higher is better for every scorer. Equal inputs give bit-equal scores (seeded, deterministic kernels).
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch

from ..errors import ConfigurationError

Scorer_T = Literal["linear", "knn", "logme", "hscore"]


class Scorer(Protocol):
    def score(self, *, train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
              test_labels: torch.Tensor) -> float: ...


def validate(train_features, train_labels, test_features, test_labels) -> tuple[torch.Tensor, ...]:
    """Checks shapes and dtypes; returns float32 features and int64 labels on the CPU or their device.

    Raises:
        ConfigurationError: naming the argument that is wrong.
    """
    out = []
    for name, t, want_dim in (("train_features", train_features, 2), ("train_labels", train_labels, 1),
                              ("test_features", test_features, 2), ("test_labels", test_labels, 1)):
        if not isinstance(t, torch.Tensor):
            t = torch.as_tensor(t)
        if t.dim() != want_dim:
            raise ConfigurationError(f"`{name}` must be {want_dim}-D, got shape {tuple(t.shape)}.")
        out.append(t)
    xtr, ytr, xte, yte = out
    if xtr.shape[0] != ytr.shape[0]:
        raise ConfigurationError(f"`train_labels` has {ytr.shape[0]} items but `train_features` has {xtr.shape[0]}.")
    if xte.shape[0] != yte.shape[0]:
        raise ConfigurationError(f"`test_labels` has {yte.shape[0]} items but `test_features` has {xte.shape[0]}.")
    if xtr.shape[1] != xte.shape[1]:
        raise ConfigurationError(f"`test_features` has dimension {xte.shape[1]}, `train_features` {xtr.shape[1]}.")
    if xtr.shape[0] == 0:
        raise ConfigurationError("`train_features` is empty.")
    if not torch.isfinite(xtr).all() or not torch.isfinite(xte).all():
        raise ConfigurationError("features contain NaN or inf; the candidate's blocks produced non-finite values.")
    return xtr.float(), ytr.long(), xte.float(), yte.long()


def score_all(scorer: Scorer, *, train_features: list, train_labels, test_features: list, test_labels) -> list[float]:
    """One score per feature set on one split; scorers with a `score_many` (the linear probe) batch them."""
    many = getattr(scorer, "score_many", None)
    if many is not None:
        return [float(s) for s in many(train_features=train_features, train_labels=train_labels,
                                       test_features=test_features, test_labels=test_labels)]
    return [float(scorer.score(train_features=xtr, train_labels=train_labels, test_features=xte,
                               test_labels=test_labels)) for xtr, xte in zip(train_features, test_features)]
