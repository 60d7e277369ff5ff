"""Engine benchmark: wall-time ratios of alsatian vs shift vs base, in one process, against the sharing bound.

    python -m benchmarks.engine [--models 35] [--items 2000] [--image-size 32] [--repeats 1]

For each distribution it builds a resnet18 zoo (paper §6, M_syn), runs the strategies in alternating order
on a Fashion-MNIST subset upsampled to `--image-size`, and prints the median wall time of each, the ratios,
and the compute-weighted ideal ratio: sum over executed blocks of FLOPs x items, shift over alsatian.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from alsatian_hf.candidates import LocalBlockSource, ShapeProbe, build_candidate
from alsatian_hf.plan import make_schedule
from alsatian_hf.scoring import LinearProbe
from alsatian_hf.search.halving import run_halving
from alsatian_hf.zoo import TimmSource, ZooSpec, build_zoo
from alsatian_hf.zoo.data import fashion_mnist


def pixels(num_items: int, size: int, seed: int = 0):
    ds = fashion_mnist(num_items=num_items, seed=seed)
    x = torch.tensor(np.stack([np.array(im.resize((size, size))) for im in ds["image"]]), dtype=torch.float32)
    return ((x / 255.0 - 0.5) / 0.5)[:, None].repeat(1, 3, 1, 1).contiguous(), list(ds["label"])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--models", type=int, default=35)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--result-size", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--epochs", type=int, default=100, help="linear-probe epochs (SHiFT: 100)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--distributions", nargs="+", default=["top_50", "top_25", "top_layers"])
    p.add_argument("--work-dir", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device={name} torch={torch.__version__} threads={torch.get_num_threads()} arch={args.arch} "
        f"models={args.models} items={args.items} image={args.image_size}px batch={args.batch_size}"
    )
    x, labels = pixels(args.items, args.image_size)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="alsatian-bench-"))
    print(
        f"{'distribution':<12} {'alsatian':>9} {'shift':>9} {'base':>9} {'vs shift':>9} {'vs base':>9} "
        f"{'ideal':>7} {'of ideal':>9}"
    )
    for dist in args.distributions:
        root = work / dist
        if not (root / "z").exists():
            build_zoo(
                ZooSpec(
                    "z",
                    TimmSource(args.arch, model_args={"num_classes": 10}),
                    num_models=args.models,
                    distribution=dist,
                    seed=0,
                ),
                root,
            )
        probe = ShapeProbe()
        cands = [
            build_candidate(
                f"z/{d.name}",
                d,
                LocalBlockSource(d),
                input_key=f"px{args.image_size}",
                probe_inputs={"pixel_values": x[:1]},
                probe=probe,
            )[0]
            for d in sorted((root / "z").iterdir())
        ]
        sched = make_schedule(labels, num_candidates=len(cands), result_size=args.result_size, seed=0)
        times: dict[str, list[float]] = {"alsatian": [], "shift": [], "base": []}
        cost: dict[str, float] = {}
        rankings = {}
        for r in range(args.repeats):
            order = ["alsatian", "shift", "base"] if r % 2 == 0 else ["base", "shift", "alsatian"]
            for strategy in order:
                start = time.perf_counter()
                out = run_halving(
                    cands,
                    labels,
                    sched,
                    prepare=lambda k, items: {"pixel_values": x[list(items)]},
                    scorer=LinearProbe(epochs=args.epochs, device=device),
                    strategy=strategy,
                    batch_size=args.batch_size,
                    device=device,
                )
                times[strategy].append(time.perf_counter() - start)
                cost[strategy] = sum(it.counters.compute_cost for it in out.iterations)
                rankings[strategy] = out.ranking
        med = {s: statistics.median(v) for s, v in times.items()}
        ideal = cost["shift"] / cost["alsatian"]
        vs_shift = med["shift"] / med["alsatian"]
        same = rankings["alsatian"] == rankings["shift"] == rankings["base"]
        print(
            f"{dist:<12} {med['alsatian']:>8.1f}s {med['shift']:>8.1f}s {med['base']:>8.1f}s {vs_shift:>8.2f}x "
            f"{med['base'] / med['alsatian']:>8.2f}x {ideal:>6.2f}x {vs_shift / ideal:>8.0%}"
            f"{'' if same else '  RANKINGS DIFFER'}"
        )


if __name__ == "__main__":
    main()
