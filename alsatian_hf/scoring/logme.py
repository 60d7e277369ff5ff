"""LogME (You et al., ICML 2021): the log marginal evidence of a Bayesian linear model on the features.

It follows the authors' fixed-point algorithm in float64, averaged over one-vs-rest label targets, on the
train features only (the test arguments are validated and ignored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._base import Device, validate


@dataclass
class LogME:
    max_iter: int = 11
    tol: float = 0.01

    def score(self, *, train_features, train_labels, test_features, test_labels, device: Device = "cpu") -> float:
        xtr, ytr, _, _ = validate(train_features, train_labels, test_features, test_labels, device)
        fh = xtr.double()  # (N, D)
        f = fh.T  # (D, N)
        d, n = f.shape
        v, s, vh = torch.linalg.svd(f @ fh, full_matrices=True)
        eps = 1e-5
        scores = []
        for c in torch.unique(ytr):
            y = (ytr == c).double()
            alpha, beta = 1.0, 1.0
            lam = alpha / beta
            tmp = vh @ (f @ y)
            for _ in range(self.max_iter):
                gamma = float((s / (s + lam)).sum())
                m = v @ (tmp * beta / (alpha + beta * s))
                alpha_de = float((m * m).sum())
                alpha = gamma / (alpha_de + eps)
                beta_de = float(((y - fh @ m) ** 2).sum())
                beta = (n - gamma) / (beta_de + eps)
                new_lam = alpha / beta
                if abs(new_lam - lam) / lam < self.tol:
                    break
                lam = new_lam
            evidence = (
                d / 2.0 * math.log(alpha)
                + n / 2.0 * math.log(beta)
                - 0.5 * float(torch.log(alpha + beta * s).sum())
                - beta / 2.0 * (beta_de + eps)
                - alpha / 2.0 * (alpha_de + eps)
                - n / 2.0 * math.log(2 * math.pi)
            )
            scores.append(evidence / n)
        return float(sum(scores) / len(scores))
