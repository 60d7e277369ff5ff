"""k-nearest-neighbour proxy: test top-1 accuracy of a kNN vote over the train features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ConfigurationError
from ._base import GroupedScorer


@dataclass
class KNN(GroupedScorer):
    """Args:
    k: neighbours per vote; ties go to the nearest neighbour's label.
    metric: "cosine" or "euclidean".
    """

    k: int = 5
    metric: Literal["cosine", "euclidean"] = "cosine"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigurationError(f"`k` must be >= 1, got {self.k}.")
        if self.metric not in ("cosine", "euclidean"):
            raise ConfigurationError(f"`metric` must be 'cosine' or 'euclidean', got {self.metric!r}.")

    def _group_scores(self, xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor) -> list[float]:
        xtr, xte = xtr.double(), xte.double()  # (models, items, width)
        if self.metric == "cosine":
            xtr = torch.nn.functional.normalize(xtr, dim=2)
            xte = torch.nn.functional.normalize(xte, dim=2)
            dist = -torch.bmm(xte, xtr.transpose(1, 2))
        else:
            dist = torch.cdist(xte, xtr)
        k = min(self.k, xtr.shape[1])
        # stable sort: equal distances keep train order, so the result is deterministic
        nearest = torch.sort(dist, dim=2, stable=True).indices[:, :, :k]
        labels = ytr[nearest]  # (models, test items, k)
        num_classes = int(max(ytr.max().item(), yte.max().item())) + 1
        votes = torch.zeros(*labels.shape[:2], num_classes, dtype=torch.float64, device=xte.device)
        # nearer neighbours weigh a hair more: ties go near
        weights = torch.linspace(1.0, 0.5, k, dtype=torch.float64, device=xte.device)
        votes.scatter_add_(2, labels, torch.ones_like(labels, dtype=torch.float64) + 1e-6 * weights)
        return (votes.argmax(2) == yte).double().mean(1).tolist()
