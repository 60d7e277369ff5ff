"""One training loop for timm and transformers classifiers: AdamW, linear warm-up then cosine decay.

It builds the zoo (a fine-tune on a source task, with its lower blocks frozen) and the ground truth (a full
fine-tune on a target). Inputs go through the same preprocessing the search uses (`timm_processor`, the
candidate's tokenizer at `MAX_LENGTH`), so the ground truth ranks what the search sees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


MAX_LENGTH = 64  # tokens: the search runs with the same max_length
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SEED_OFFSET = 1000  # ground-truth seeds 0, 1, 2 never coincide with the zoo's


@dataclass(frozen=True)
class Recipe:
    lr: float
    epochs: int
    batch_size: int = 32
    weight_decay: float = 0.05
    warmup: float = 0.1  # fraction of the steps
    # The fresh head starts at zero (as MAE and BEiT fine-tune): the backbone gets no gradient from a random head
    # in the first steps, and the seed changes only the data order. timm draws a new Linear head U(±1/sqrt(classes))
    # (0.32 for 10 classes, ~10x PyTorch's default), which cost lite0 5 points on Fashion-MNIST and was most of
    # the seed-to-seed noise of the image ground truth.
    zero_head: bool = False


def is_timm(model: nn.Module) -> bool:
    return hasattr(model, "pretrained_cfg")


def prepare(model: nn.Module, ds, tokenizer=None) -> dict[str, torch.Tensor]:
    """The dataset's inputs as tensors, through the search's own processors (the tokenizer's from the folder it
    was loaded from)."""
    from alsatian_hf.candidates.processors import text_processor, timm_processor

    if is_timm(model):
        fn = timm_processor(model, None).fn
        parts = [fn(ds[i : i + 256]["image"])["pixel_values"] for i in range(0, len(ds), 256)]
        return {"pixel_values": torch.cat(parts).contiguous(memory_format=torch.channels_last)}
    return text_processor(Path(tokenizer.name_or_path), MAX_LENGTH).fn(list(ds["text"]))


def _logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    batch = {k: v.to(DEVICE, non_blocking=True) for k, v in batch.items()}
    return model(batch["pixel_values"]) if is_timm(model) else model(**batch).logits


def _items(inputs: dict[str, torch.Tensor]) -> int:
    return next(iter(inputs.values())).shape[0]


def freeze(model: nn.Module, keys: list[str]) -> None:
    """No gradient for these parameters; `train` also keeps their BatchNorm statistics as they are, so frozen
    blocks stay bit-identical and the zoo shares them as real partial fine-tunes do."""
    frozen = set(keys)
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)


def head(model: nn.Module) -> nn.Linear:
    return model.get_classifier() if is_timm(model) else model.classifier


def train(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor, recipe: Recipe, seed: int) -> None:
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    if recipe.zero_head:
        with torch.no_grad():
            for p in head(model).parameters():
                p.zero_()
    model.to(DEVICE)
    labels = labels.to(DEVICE)
    n = _items(inputs)
    steps_per_epoch = (n + recipe.batch_size - 1) // recipe.batch_size
    total = steps_per_epoch * recipe.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, int(recipe.warmup * total), total)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for m in model.modules():  # frozen BatchNorm layers keep their running statistics
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None and not m.weight.requires_grad:
            m.eval()
    for _ in range(recipe.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            loss = nn.functional.cross_entropy(_logits(model, {k: v[idx] for k, v in inputs.items()}), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


@torch.inference_mode()
def accuracy(model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> float:
    model.eval().to(DEVICE)
    labels = labels.to(DEVICE)
    n = _items(inputs)
    correct = 0
    for start in range(0, n, 256):
        batch = {k: v[start : start + 256] for k, v in inputs.items()}
        correct += int((_logits(model, batch).argmax(1) == labels[start : start + 256]).sum())
    return correct / n


def fine_tune_and_test(
    model, train_inputs, train_labels, test_inputs, test_labels, recipe, seed
) -> tuple[float, float]:
    """(test accuracy, seconds) of one full fine-tune."""
    start = time.perf_counter()
    train(model, train_inputs, train_labels, recipe, seed)
    return accuracy(model, test_inputs, test_labels), time.perf_counter() - start
