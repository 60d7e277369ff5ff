"""H-score (Bao et al., ICIP 2019): tr(cov(f)^+ cov(E[f | y])) on the train features (test ignored)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._base import Device, validate


@dataclass
class HScore:
    def score(self, *, train_features, train_labels, test_features, test_labels, device: Device = "cpu") -> float:
        xtr, ytr, _, _ = validate(train_features, train_labels, test_features, test_labels, device)
        f = xtr.double()
        f = f - f.mean(0, keepdim=True)
        cov_f = f.T @ f / f.shape[0]
        g = torch.zeros_like(f)
        for c in torch.unique(ytr):
            mask = ytr == c
            g[mask] = f[mask].mean(0)
        cov_g = g.T @ g / f.shape[0]
        return float(torch.trace(torch.linalg.pinv(cov_f, hermitian=True) @ cov_g).item())
