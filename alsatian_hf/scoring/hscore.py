"""H-score (Bao et al., ICIP 2019): tr(cov(f)^+ cov(E[f | y])) on the train features (test ignored)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from ._base import Device, score_groups


@dataclass
class HScore:
    """Args:
    max_group_bytes: `score_many` runs equally wide feature sets as one batched computation, in groups of at most
        this many train-feature bytes.
    """

    max_group_bytes: int = field(default=256 << 20, repr=False)  # memory, not results: not in the repr

    def score(self, *, train_features, train_labels, test_features, test_labels, device: Device = "cpu") -> float:
        return self.score_many(
            train_features=[train_features],
            train_labels=train_labels,
            test_features=[test_features],
            test_labels=test_labels,
            device=device,
        )[0]

    def score_many(
        self,
        *,
        train_features: Sequence[torch.Tensor],
        train_labels,
        test_features: Sequence[torch.Tensor],
        test_labels,
        device: Device = "cpu",
    ) -> list[float]:
        """One H-score per feature set; equally wide sets share one batched covariance and pseudo-inverse."""
        return score_groups(
            self._hscore,
            train_features=train_features,
            train_labels=train_labels,
            test_features=test_features,
            test_labels=test_labels,
            device=device,
            max_group_bytes=self.max_group_bytes,
        )

    @staticmethod
    def _hscore(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor) -> list[float]:
        f = xtr.double()  # (M, N, D)
        f = f - f.mean(1, keepdim=True)
        cov_f = f.transpose(1, 2) @ f / f.shape[1]
        onehot = (ytr[:, None] == torch.unique(ytr)[None, :]).double()  # (N, C)
        means = onehot.T @ f / onehot.sum(0)[:, None]  # (M, C, D): each class's mean feature
        g = onehot @ means  # (M, N, D): every item's class mean
        cov_g = g.transpose(1, 2) @ g / f.shape[1]
        return torch.diagonal(torch.linalg.pinv(cov_f, hermitian=True) @ cov_g, dim1=1, dim2=2).sum(1).tolist()
