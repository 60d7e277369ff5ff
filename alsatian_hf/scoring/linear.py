"""Linear probe: a fully connected layer trained on the features; the score is test top-1 accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._base import validate


@dataclass
class LinearProbe:
    """SHiFT's proxy (Renggli et al.): SGD, lr 0.1, 100 epochs, cross-entropy, test top-1 accuracy.

    Args:
        lr, epochs, batch_size, momentum, weight_decay: the SGD recipe (SHiFT's defaults).
        normalize: standardise features with the train mean/std first, which keeps lr 0.1 stable across
            feature scales.
        seed: seeds the layer's initialisation and the shuffling, so equal inputs give bit-equal scores.
        device: where to train (the engine passes its own device).
    """

    lr: float = 0.1
    epochs: int = 100
    batch_size: int = 64
    momentum: float = 0.0
    weight_decay: float = 0.0
    normalize: bool = True
    seed: int = 0
    device: str | torch.device = "cpu"

    def score(self, *, train_features, train_labels, test_features, test_labels) -> float:
        xtr, ytr, xte, yte = validate(train_features, train_labels, test_features, test_labels)
        dev = torch.device(self.device)
        xtr, ytr, xte, yte = (t.to(dev) for t in (xtr, ytr, xte, yte))
        if self.normalize:
            mean, std = xtr.mean(0, keepdim=True), xtr.std(0, keepdim=True, unbiased=False).clamp_min(1e-6)
            xtr, xte = (xtr - mean) / std, (xte - mean) / std
        num_classes = int(max(ytr.max().item(), yte.max().item() if yte.numel() else 0)) + 1
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        bound = 1.0 / max(xtr.shape[1], 1) ** 0.5
        weight = torch.empty(num_classes, xtr.shape[1]).uniform_(-bound, bound, generator=gen).to(dev)
        bias = torch.empty(num_classes).uniform_(-bound, bound, generator=gen).to(dev)
        vel_w, vel_b = torch.zeros_like(weight), torch.zeros_like(bias)
        n = xtr.shape[0]
        # Softmax cross-entropy with its closed-form gradient: the same updates as nn.Linear + CrossEntropyLoss
        # + optim.SGD, without autograd's per-step overhead (scoring runs for every candidate and iteration).
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=gen).to(dev)
            for start in range(0, n, self.batch_size):
                idx = order[start: start + self.batch_size]
                xb = xtr[idx]
                grad = torch.softmax(xb @ weight.T + bias, dim=1)
                grad[torch.arange(len(idx), device=dev), ytr[idx]] -= 1.0
                grad /= len(idx)
                g_w, g_b = grad.T @ xb, grad.sum(0)
                if self.weight_decay:
                    g_w += self.weight_decay * weight
                    g_b += self.weight_decay * bias
                if self.momentum:
                    vel_w.mul_(self.momentum).add_(g_w)
                    vel_b.mul_(self.momentum).add_(g_b)
                    g_w, g_b = vel_w, vel_b
                weight -= self.lr * g_w
                bias -= self.lr * g_b
        pred = (xte @ weight.T + bias).argmax(1)
        return float((pred == yte).float().mean().item()) if yte.numel() else 0.0
