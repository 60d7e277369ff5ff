"""Linear probe: a fully connected layer trained on the features; the score is test top-1 accuracy (with
`tie_break`, ties within it ordered by the probe's confidence in the true classes)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._base import GroupedScorer


@dataclass
class LinearProbe(GroupedScorer):
    """SHiFT's proxy (Renggli et al.): SGD, lr 0.1, 100 epochs, cross-entropy, test top-1 accuracy.

    Args:
        lr, epochs, batch_size, momentum, weight_decay: the SGD recipe (SHiFT's defaults).
        normalize: standardise features with the train mean/std first, which keeps lr 0.1 stable across
            feature scales.
        seed: seeds the layer's initialisation and the shuffling, so equal inputs give bit-equal scores.
        tie_break: add the mean probability the probe gives each test item's true class, scaled below half an
            accuracy step (0.5 / test items): the order by accuracy is kept, and equal accuracies, which a small
            D_test makes common, are ordered by confidence instead of by input order. Off by default: the
            score is then SHiFT's accuracy exactly.

    `score_many` trains the probes of equally wide features side by side, as one batched product per step: every
    probe sees the same initialisation and batch order, as if trained alone.
    """

    lr: float = 0.1
    epochs: int = 100
    batch_size: int = 64
    momentum: float = 0.0
    weight_decay: float = 0.0
    normalize: bool = True
    seed: int = 0
    tie_break: bool = False

    def _group_scores(
        self, xtr_b: torch.Tensor, ytr: torch.Tensor, xte_b: torch.Tensor, yte: torch.Tensor
    ) -> list[float]:
        """Probes for (models, items, width) stacks of train and test features, one per model."""
        dev = xtr_b.device  # `validate` put everything on the search's device
        if self.normalize:
            mean = xtr_b.mean(1, keepdim=True)
            std = xtr_b.std(1, keepdim=True, unbiased=False).clamp_min(1e-6)
            xtr_b, xte_b = (xtr_b - mean) / std, (xte_b - mean) / std
        num_models, n, width = xtr_b.shape
        # Items first, so a step's shuffled batch is one gather of whole rows (5x faster than gathering along
        # dim 1), and its (models, batch, width) view is what the batched products read. Gathered per step, the
        # batch is read back while still in cache: gathering a whole epoch first was 30% slower at 35 x 420.
        xtr_items = xtr_b.transpose(0, 1).contiguous()
        num_classes = int(max(ytr.max().item(), yte.max().item() if yte.numel() else 0)) + 1
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        bound = 1.0 / max(width, 1) ** 0.5
        weight = torch.empty(num_classes, width).uniform_(-bound, bound, generator=gen)
        bias = torch.empty(num_classes).uniform_(-bound, bound, generator=gen)
        # (models, classes, width) and (models, classes, 1): every probe starts from nn.Linear's seeded init.
        # Logits are kept as (models, classes, batch): both batched products then write rows of `width` or
        # `batch` outputs, which oneDNN runs several times faster than 10-column ones, and the softmax over
        # classes reads them in place.
        weight = weight.to(dev).expand(num_models, -1, -1).contiguous()
        bias = bias.to(dev).view(1, -1, 1).expand(num_models, -1, 1).contiguous()
        vel_w, vel_b = torch.zeros_like(weight), torch.zeros_like(bias)
        onehot = torch.nn.functional.one_hot(ytr, num_classes).to(xtr_b.dtype).t().contiguous()  # (classes, n)
        # Softmax cross-entropy with its closed-form gradient: the same updates as nn.Linear + CrossEntropyLoss
        # + optim.SGD, without autograd's per-step overhead (scoring runs for every candidate and iteration).
        # A step's tensors are written into buffers made once per batch size (a full batch and the remainder)
        # instead of allocated anew each step (the batch gather is several MB at 35 models): same bits, a few
        # percent less time per step.
        buffers: dict[int, tuple[torch.Tensor, ...]] = {}
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=gen).to(dev)
            y_epoch = onehot.index_select(1, order)
            for start in range(0, n, self.batch_size):
                rows = order[start : start + self.batch_size]
                b = rows.shape[0]
                if b not in buffers:
                    buffers[b] = (
                        xtr_items.new_empty(b, num_models, width),
                        weight.new_empty(num_models, num_classes, b),
                        torch.empty_like(weight),
                        torch.empty_like(bias),
                    )
                xb_buf, logits, g_w, g_b = buffers[b]
                xb = torch.index_select(xtr_items, 0, rows, out=xb_buf).transpose(0, 1)
                grad = torch.softmax(torch.baddbmm(bias, weight, xb.transpose(1, 2), out=logits), dim=1)
                grad.sub_(y_epoch[:, start : start + self.batch_size]).div_(b)
                torch.bmm(grad, xb, out=g_w)
                torch.sum(grad, 2, keepdim=True, out=g_b)
                if self.weight_decay:
                    g_w += self.weight_decay * weight
                    g_b += self.weight_decay * bias
                if self.momentum:
                    vel_w.mul_(self.momentum).add_(g_w)
                    vel_b.mul_(self.momentum).add_(g_b)
                    g_w, g_b = vel_w, vel_b
                weight.sub_(g_w, alpha=self.lr)
                bias.sub_(g_b, alpha=self.lr)
        bias = bias.transpose(1, 2)  # (models, 1, classes), added to the test logits' rows
        if not yte.numel():
            return [0.0] * num_models
        logits = torch.baddbmm(bias, xte_b, weight.transpose(1, 2))
        accuracy = (logits.argmax(2) == yte).float().mean(1)
        if not self.tie_break:
            return accuracy.tolist()
        # in float64, below half a step of 1 / test items: it orders equal accuracies and never unequal ones
        true = torch.softmax(logits.double(), 2).gather(2, yte.view(1, -1, 1).expand(num_models, -1, 1))
        return (accuracy.double() + true.squeeze(2).mean(1) * (0.5 / yte.numel())).tolist()
