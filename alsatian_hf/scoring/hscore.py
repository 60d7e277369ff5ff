"""H-score (Bao et al., ICIP 2019): tr(cov(f)^+ cov(E[f | y])) on the train features (test ignored)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._base import GroupedScorer


@dataclass
class HScore(GroupedScorer):
    """Equally wide feature sets share one batched covariance and pseudo-inverse."""

    def _group_scores(self, xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor) -> list[float]:
        f = xtr.double()  # (M, N, D)
        f = f - f.mean(1, keepdim=True)
        cov_f = f.transpose(1, 2) @ f / f.shape[1]
        onehot = (ytr[:, None] == torch.unique(ytr)[None, :]).double()  # (N, C)
        means = onehot.T @ f / onehot.sum(0)[:, None]  # (M, C, D): each class's mean feature
        g = onehot @ means  # (M, N, D): every item's class mean
        cov_g = g.transpose(1, 2) @ g / f.shape[1]
        return torch.diagonal(torch.linalg.pinv(cov_f, hermitian=True) @ cov_g, dim1=1, dim2=2).sum(1).tolist()
