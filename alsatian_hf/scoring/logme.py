"""LogME (You et al., ICML 2021): the log marginal evidence of a Bayesian linear model on the features.

It follows the authors' fixed-point algorithm in float64, averaged over one-vs-rest label targets, on the
train features only (the test arguments are validated and ignored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._base import GroupedScorer


@dataclass
class LogME(GroupedScorer):
    """Args:
    max_iter, tol: the fixed-point iteration's limit and relative tolerance on alpha / beta (the authors').
    eps: added to both residuals, as the authors' code does (it keeps alpha and beta finite on separable
        features, and lowers the score slightly: 0 gives the exact maximised evidence).
    """

    max_iter: int = 11
    tol: float = 0.01
    eps: float = 1e-5

    def _group_scores(self, xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor) -> list[float]:
        fh = xtr.double()  # (M, N, D)
        f = fh.transpose(1, 2)  # (M, D, N)
        _, d, n = f.shape
        v, s, vh = torch.linalg.svd(f @ fh, full_matrices=True)  # (M, D, D), (M, D)
        eps = self.eps
        y = (ytr[None, :] == torch.unique(ytr)[:, None]).double().T  # (N, C): one-vs-rest targets
        tmp = vh @ (f @ y)  # (M, D, C)
        shape = (f.shape[0], y.shape[1])
        alpha = torch.ones(shape, dtype=torch.float64, device=f.device)
        beta, lam = torch.ones_like(alpha), torch.ones_like(alpha)
        alpha_de, beta_de = torch.zeros_like(alpha), torch.zeros_like(alpha)
        running = torch.ones(shape, dtype=torch.bool, device=f.device)
        s3 = s[:, :, None]  # (M, D, 1)
        for _ in range(self.max_iter):
            # Each (model, class) pair makes the authors' updates until its own tolerance stops it; a stopped
            # pair keeps the values it stopped with, as the per-class loop's `break` does.
            gamma = (s3 / (s3 + lam[:, None, :])).sum(1)
            m = v @ (tmp * beta[:, None, :] / (alpha[:, None, :] + beta[:, None, :] * s3))
            new_alpha_de = (m * m).sum(1)
            new_alpha = gamma / (new_alpha_de + eps)
            new_beta_de = ((y - fh @ m) ** 2).sum(1)
            new_beta = (n - gamma) / (new_beta_de + eps)
            alpha = torch.where(running, new_alpha, alpha)
            beta = torch.where(running, new_beta, beta)
            alpha_de = torch.where(running, new_alpha_de, alpha_de)
            beta_de = torch.where(running, new_beta_de, beta_de)
            new_lam = alpha / beta
            converged = (new_lam - lam).abs() / lam < self.tol
            lam = torch.where(running & ~converged, new_lam, lam)
            running &= ~converged
            if not running.any():
                break
        evidence = (
            d / 2.0 * torch.log(alpha)
            + n / 2.0 * torch.log(beta)
            - 0.5 * torch.log(alpha[:, None, :] + beta[:, None, :] * s3).sum(1)
            - beta / 2.0 * (beta_de + eps)
            - alpha / 2.0 * (alpha_de + eps)
            - n / 2.0 * math.log(2 * math.pi)
        )
        return (evidence / n).mean(1).tolist()
