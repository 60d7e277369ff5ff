"""Candidate proxies under evaluation: kept here until the benchmark shows one beats the library's scorers beyond
the ground truth's noise floor (then it moves to `alsatian_hf.scoring`).

GBC (Pándy et al., "Transferability Estimation using Bhattacharyya Class Separability", CVPR 2022): the
negated sum over class pairs of the Bhattacharyya coefficient between per-class Gaussians with diagonal
covariance. Features are first projected on their top `components` principal directions (the paper reduces
dimension too), which keeps the per-class variances estimable on the first iterations' few items.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alsatian_hf.scoring import GroupedScorer


@dataclass
class GBC(GroupedScorer):
    components: int = 64

    def _group_scores(self, xtr, ytr, xte, yte) -> list[float]:
        f = xtr.double()
        f = f - f.mean(1, keepdim=True)
        k = min(self.components, f.shape[1] - 1, f.shape[2])
        _, _, vh = torch.linalg.svd(f, full_matrices=False)  # (M, min(N, D), D)
        z = f @ vh[:, :k].transpose(1, 2)  # (M, N, k)
        classes = torch.unique(ytr)
        mu = torch.stack([z[:, ytr == c].mean(1) for c in classes], 1)  # (M, C, k)
        var = torch.stack([z[:, ytr == c].var(1, unbiased=False) for c in classes], 1) + 1e-6
        vi, vj = var[:, :, None], var[:, None, :]  # (M, C, 1, k), (M, 1, C, k)
        v = (vi + vj) / 2
        diff = mu[:, :, None] - mu[:, None, :]
        db = (diff * diff / v).sum(-1) / 8 + 0.5 * (torch.log(v) - 0.5 * (torch.log(vi) + torch.log(vj))).sum(-1)
        bc = torch.exp(-db)  # (M, C, C)
        off = ~torch.eye(len(classes), dtype=torch.bool, device=bc.device)
        return (-(bc * off).sum((1, 2))).tolist()
