"""Would fine-tuning a candidate's last blocks rank it better than a probe on its features? A measurement, not a
scorer: `python -m benchmarks.ranking_quality.tail_probe` (about 20 minutes on 2 cores, after `--build`).

The issue's candidate proxy: run the candidate up to its last `k` blocks with weights once (the inputs the engine
would cache), then train those blocks (and a parameter-free read-out after them) and a fresh head on the search's
D_train and score test accuracy on its D_test. `k=0` trains the head alone by the same recipe, so the columns
differ only by the blocks trained; the library's `linear` probe on the same features is printed beside them.
Per target: the weighted tau of the scores against the ground truth's mean accuracies, and the regret of the
top-scored candidate, averaged over split seeds.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alsatian_hf.scoring.head import cosine_decay

from .._tables import read_rows
from .finetune import prepare
from .quality import weighted_tau
from .tasks import TARGETS, target_datasets
from .truth import mean_accuracy, measured_recipe
from .zoo import load_candidate


HERE = Path(__file__).resolve().parent.parent
BUILD = HERE / "results" / "ranking-quality"
HUB = HERE / ".work" / "ranking-quality" / "hub"
HEAD_LR = 1e-2  # the fresh head starts at zero; the tail blocks train at the ground truth's tuned lr


def _states(split, inputs: dict[str, torch.Tensor], stop: int) -> tuple[torch.Tensor, ...]:
    """The state entering block `stop`, for every item (in batches of 128)."""
    n = next(iter(inputs.values())).shape[0]
    parts = []
    with torch.inference_mode():
        for i in range(0, n, 128):
            batch = {k: v[i : i + 128] for k, v in inputs.items()}
            parts.append(split.run(split.adapter.initial_state(batch), 0, stop))
    return tuple(torch.cat([p[j] for p in parts]) for j in range(len(parts[0])))


def _train_tail(split, blocks, train: tuple, ytr, test: tuple, yte, num_classes: int, lr: float, epochs: int) -> float:
    """Test accuracy after training `blocks` (from their weights) and a zero head on the cached `train` states."""
    torch.manual_seed(0)
    trained = {split.model_key(k) for b in blocks for k in b.keys}
    tail = [p for n, p in split.model.named_parameters() if n in trained]
    for n, p in split.model.named_parameters():
        p.requires_grad_(n in trained)

    def forward(state):
        for block in blocks:
            state = block.step(split.model, state)
        return state[0].flatten(1)

    split.model.eval()
    with torch.no_grad():
        width = forward(tuple(t[:2] for t in train)).shape[1]
    head = nn.Linear(width, num_classes)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    groups = [{"params": head.parameters(), "lr": HEAD_LR}] + ([{"params": tail, "lr": lr}] if tail else [])
    opt = torch.optim.AdamW(groups, weight_decay=0.05)
    n, batch = len(ytr), 32
    total = epochs * math.ceil(n / batch)
    sched = cosine_decay(opt, total)
    gen = torch.Generator().manual_seed(0)
    split.model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            loss = nn.functional.cross_entropy(head(forward(tuple(t[idx] for t in train))), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    split.model.eval()
    with torch.no_grad():
        return float((head(forward(test)).argmax(1) == yte).float().mean())


def measure(target: str, tails: list[int], splits: int, epochs: int) -> dict[str, list[tuple[float, float]]]:
    """column -> [(weighted tau, regret points)] per split."""
    from alsatian_hf.adapters import split_model
    from alsatian_hf.plan.schedule import stratified_split
    from alsatian_hf.scoring import LinearProbe

    task = TARGETS[target]
    truth = mean_accuracy(read_rows(BUILD / f"ground_truth_{task.modality}.csv"), target)
    lr = measured_recipe(BUILD, task.modality).lr
    train_ds, _ = target_datasets(target)
    labels = torch.tensor(train_ds["label"])
    models = sorted(truth)
    draws = [stratified_split(labels.tolist(), test_size=0.2, max_test_items=1000, seed=s) for s in range(splits)]
    scores: dict[str, list[list[float]]] = {}  # column -> split -> per model
    for model_id in models:
        model, tokenizer = load_candidate(HUB / model_id, task.num_classes)
        split = split_model(model.eval())
        inputs = prepare(model, train_ds, tokenizer)
        depth = len(split.blocks)
        weighted = [i for i, b in enumerate(split.blocks) if b.keys]  # a parameter-free read-out trains nothing
        for k in sorted(tails, reverse=True):
            cut = weighted[-k] if k else depth  # the last k blocks with weights, and the parameter-free ones after
            states = _states(split, inputs, cut)
            for s, (tr, te) in enumerate(draws):
                if k == 0:
                    probe = LinearProbe().score(train_features=states[0][tr].flatten(1), train_labels=labels[tr],
                                                test_features=states[0][te].flatten(1), test_labels=labels[te])  # fmt: skip
                    scores.setdefault("linear", [[] for _ in draws])[s].append(probe)
                fresh = copy.deepcopy(split) if k else split  # training changes the blocks: each from its weights
                acc = _train_tail(fresh, fresh.blocks[cut:], tuple(t[tr] for t in states), labels[tr],
                                  tuple(t[te] for t in states), labels[te], task.num_classes, lr, epochs)  # fmt: skip
                scores.setdefault(f"tail {k}", [[] for _ in draws])[s].append(acc)
        print(f"  {target} {model_id}", flush=True)
    accs = [truth[m][0] for m in models]
    out = {}
    for column, per_split in scores.items():
        out[column] = []
        for values in per_split:
            out[column].append((weighted_tau(values, accs), max(accs) - accs[int(np.argmax(values))]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ranking_quality.tail_probe", description=__doc__)
    p.add_argument("--targets", nargs="+", default=list(TARGETS))
    p.add_argument("--tail", nargs="+", type=int, default=[0, 1, 2], help="blocks trained (0: the head alone)")
    p.add_argument("--splits", type=int, default=2, help="draws of D_test (the search's seed 0, 1, ...)")
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args(argv)
    results = {t: measure(t, args.tail, args.splits, args.epochs) for t in args.targets}
    columns = list(next(iter(results.values())))
    print(f"\nweighted tau / regret (points), mean over {args.splits} splits, {args.epochs} epochs:")
    print("| target | " + " | ".join(columns) + " |")
    for target, by_column in results.items():
        cells = [f"{np.mean([w for w, _ in by_column[c]]):.2f} / {np.mean([r for _, r in by_column[c]]):.2f}"
                 for c in columns]  # fmt: skip
        print(f"| {target} | " + " | ".join(cells) + " |")
    means = [
        f"{np.nanmean([w for t in results for w, _ in results[t][c]]):.3f} / "
        f"{np.mean([r for t in results for _, r in results[t][c]]):.2f}"
        for c in columns
    ]
    print("| mean | " + " | ".join(means) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
