"""Linear probe: a fully connected layer trained on the features; the score is test top-1 accuracy (with
`tie_break`, ties within it ordered by the probe's confidence in the true classes)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._base import GroupedScorer, break_ties


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
        """Probes for (models, items, width) stacks of train and test features, one per model. The stacks are
        `score_groups`' own copies, so they are standardised in place (the same operations, without two more
        copies of the test features: 28 MB each at 35 models x 400 items)."""
        dev = xtr_b.device  # `validate` put everything on the search's device
        if self.normalize:
            mean = xtr_b.mean(1, keepdim=True)
            std = xtr_b.std(1, keepdim=True, unbiased=False).clamp_min(1e-6)
            xtr_b.sub_(mean).div_(std)
            xte_b.sub_(mean).div_(std)
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
        # Late halving iterations train few probes on many items, where a step is a dozen small operators and
        # their dispatch is most of its time, so a step dispatches as few as give the same bits:
        # - its tensors are written into buffers made once per batch size (a full batch and the remainder), with
        #   the transposed views the products read made once too;
        # - the epoch's batches are views from one `split`, not two slices a step;
        # - dividing the gradient by a power-of-two batch is exact in either place, so there the division is
        #   folded into the step size (plain SGD only: momentum and weight decay add to the mean gradient).
        buffers: dict[int, tuple] = {}
        fold = not (self.momentum or self.weight_decay)
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=gen).to(dev)
            y_epoch = onehot.index_select(1, order)
            for rows, y_batch in zip(order.split(self.batch_size), y_epoch.split(self.batch_size, 1)):
                b = rows.shape[0]
                bufs = buffers.get(b)
                if bufs is None:
                    xb_buf = xtr_items.new_empty(b, num_models, width)
                    xb = xb_buf.transpose(0, 1)  # (models, batch, width)
                    exact = fold and b & (b - 1) == 0
                    bufs = buffers[b] = (
                        xb_buf, xb, xb.transpose(1, 2), weight.new_empty(num_models, num_classes, b),
                        torch.empty_like(weight), torch.empty_like(bias), self.lr / b if exact else None,
                    )  # fmt: skip
                xb_buf, xb, xb_t, logits, g_w, g_b, step = bufs
                torch.index_select(xtr_items, 0, rows, out=xb_buf)
                grad = torch.softmax(torch.baddbmm(bias, weight, xb_t, out=logits), dim=1).sub_(y_batch)
                if step is None:
                    grad.div_(b)
                torch.bmm(grad, xb, out=g_w)
                torch.sum(grad, 2, keepdim=True, out=g_b)
                if step is None:
                    step = self.lr
                    if self.weight_decay:
                        g_w += self.weight_decay * weight
                        g_b += self.weight_decay * bias
                    if self.momentum:
                        vel_w.mul_(self.momentum).add_(g_w)
                        vel_b.mul_(self.momentum).add_(g_b)
                        g_w, g_b = vel_w, vel_b
                weight.sub_(g_w, alpha=step)
                bias.sub_(g_b, alpha=step)
        bias = bias.transpose(1, 2)  # (models, 1, classes), added to the test logits' rows
        if not yte.numel():
            return [0.0] * num_models
        logits = torch.baddbmm(bias, xte_b, weight.transpose(1, 2))
        accuracy = (logits.argmax(2) == yte).float().mean(1)
        return break_ties(accuracy, logits, yte) if self.tie_break else accuracy.tolist()
