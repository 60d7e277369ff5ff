"""k-nearest-neighbour proxy: test top-1 accuracy of a kNN vote over the train features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ConfigurationError
from ._base import Device, validate


@dataclass
class KNN:
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

    def score(self, *, train_features, train_labels, test_features, test_labels, device: Device = "cpu") -> float:
        xtr, ytr, xte, yte = validate(train_features, train_labels, test_features, test_labels, device)
        xtr, xte = xtr.double(), xte.double()
        if self.metric == "cosine":
            xtr = torch.nn.functional.normalize(xtr, dim=1)
            xte = torch.nn.functional.normalize(xte, dim=1)
            dist = -(xte @ xtr.T)
        else:
            dist = torch.cdist(xte, xtr)
        k = min(self.k, xtr.shape[0])
        # stable sort: equal distances keep train order, so the result is deterministic
        nearest = torch.sort(dist, dim=1, stable=True).indices[:, :k]
        labels = ytr[nearest]
        num_classes = int(max(ytr.max().item(), yte.max().item())) + 1
        votes = torch.zeros(xte.shape[0], num_classes, dtype=torch.float64, device=xte.device)
        weights = torch.linspace(
            1.0, 0.5, k, dtype=torch.float64, device=xte.device
        )  # nearer neighbours weigh a hair more: ties go near
        votes.scatter_add_(1, labels, torch.ones_like(labels, dtype=torch.float64) + 1e-6 * weights)
        pred = votes.argmax(1)
        return float((pred == yte).double().mean().item())
