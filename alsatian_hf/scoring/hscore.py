"""H-score (Bao et al., ICIP 2019): tr(cov(f)^-1 cov(E[f | y])) on the train features (test ignored).

By default the feature covariance is shrunk towards a scaled identity with the Ledoit-Wolf weight, the
regularised H-score of Ibrahim et al. ("Newer is not always better", ECML PKDD 2022):

    H = tr( ((1 - a) cov(f) + a (tr cov(f) / D) I)^-1 (1 - a) cov(E[f | y]) )

Without shrinkage, with fewer items than feature dimensions (the first halving iterations, N < D), cov(f) is
singular and the pseudo-inverse form saturates at C - 1 for every model: all candidates tie, and pruning falls
back on input order. The shrunk covariance is positive definite, so the score stays defined and discriminative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ConfigurationError
from ._base import GroupedScorer


def ledoit_wolf_shrinkage(f: torch.Tensor, cov: torch.Tensor | None = None) -> torch.Tensor:
    """The Ledoit-Wolf weight of the scaled identity for each (M, N, D) stack of centred features, as
    `sklearn.covariance.ledoit_wolf_shrinkage` computes it (assume_centered=True). `cov`: their covariances,
    when the caller has them already."""
    n, d = f.shape[1], f.shape[2]
    if cov is None:
        cov = f.transpose(1, 2) @ f / n
    mu = torch.diagonal(cov, dim1=1, dim2=2).sum(1) / d
    cov_sq = (cov * cov).sum((1, 2))  # ||cov||_F^2
    beta = ((f * f).sum(2).pow(2).sum(1) / n - cov_sq) / (d * n)  # sum_i ||x_i||^4 = sum of <X^2.T, X^2>
    delta = (cov_sq - d * mu * mu) / d  # ||cov - mu I||_F^2 / D, as tr(cov) = D mu
    beta = torch.minimum(beta, delta)
    return torch.where(beta > 0, beta / delta.clamp_min(torch.finfo(f.dtype).tiny), torch.zeros_like(beta))


def solve_shrunk(cov: torch.Tensor, rhs: torch.Tensor, shrinkage: torch.Tensor) -> torch.Tensor:
    """`inv((1 - a) cov + a (tr cov / D) I) @ rhs` for each (M, D, D) covariance and its (M,) weight `a`."""
    d = cov.shape[-1]
    a = shrinkage[:, None, None]
    mu = torch.diagonal(cov, dim1=1, dim2=2).sum(1)[:, None, None] / d
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    shrunk = (1 - a) * cov + a * mu * eye
    # mu == 0 only for constant features: add a tiny ridge so the solve stays defined (the score is then 0).
    shrunk = shrunk + (mu == 0) * eye
    # The shrunk covariance is symmetric positive definite: a Cholesky solve, which is also what works here:
    # oneMKL's batched float64 LU solve fails on 2 threads ("DLASWP parameter 6") for well-conditioned inputs.
    return torch.cholesky_solve(rhs, torch.linalg.cholesky(shrunk))


@dataclass
class HScore(GroupedScorer):
    """Equally wide feature sets share one batched covariance and solve.

    Args:
        shrinkage: "ledoit-wolf" (default: the regularised H-score), a fixed weight in [0, 1), or None for the
            original pseudo-inverse H-score (degenerate when items < feature dimensions).
    """

    shrinkage: Literal["ledoit-wolf"] | float | None = "ledoit-wolf"

    def __post_init__(self):
        if self.shrinkage is not None and self.shrinkage != "ledoit-wolf":
            if isinstance(self.shrinkage, bool) or not isinstance(self.shrinkage, (int, float)):
                raise ConfigurationError(
                    f'`shrinkage` must be "ledoit-wolf", a float or None, got {self.shrinkage!r}.'
                )
            if not 0 <= self.shrinkage < 1:
                raise ConfigurationError(f"`shrinkage` must be in [0, 1), got {self.shrinkage}.")

    def _group_scores(self, xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor) -> list[float]:
        f = xtr.double()  # (M, N, D)
        f = f - f.mean(1, keepdim=True)
        n = f.shape[1]
        cov_f = f.transpose(1, 2) @ f / n
        onehot = (ytr[:, None] == torch.unique(ytr)[None, :]).double()  # (N, C)
        counts = onehot.sum(0)
        means = onehot.T @ f / counts[:, None]  # (M, C, D): each class's mean feature
        cov_g = means.transpose(1, 2) @ (means * (counts / n)[:, None])  # cov of every item's class mean
        if self.shrinkage is None:
            try:
                pinv = torch.linalg.pinv(cov_f, hermitian=True)
            except torch.linalg.LinAlgError:  # oneMKL's eigh can fail to converge on a sparse, singular cov(f)
                pinv = torch.linalg.pinv(cov_f)  # the same pseudo-inverse through the SVD
            inv_cov_g = pinv @ cov_g
            return torch.diagonal(inv_cov_g, dim1=1, dim2=2).sum(1).tolist()
        a = (
            ledoit_wolf_shrinkage(f, cov_f)
            if self.shrinkage == "ledoit-wolf"
            else torch.full((f.shape[0],), float(self.shrinkage), dtype=f.dtype)
        )
        a = a.to(f.device)
        solved = solve_shrunk(cov_f, (1 - a)[:, None, None] * cov_g, a)
        return torch.diagonal(solved, dim1=1, dim2=2).sum(1).tolist()
