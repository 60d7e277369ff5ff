"""How fast the data store prepares images, by image size and preprocessing threads (`num_workers`), on this
machine.

    python -m benchmarks.preprocess_speed [--sizes 32 128 224] [--workers 0 2] [--items 512] [--repeats 3]

It prepares the first `items` Fashion-MNIST images of the resnet18 benchmark dataset for timm's resnet18 at each
size, in the engine's batches of 64, through `PreparedData` (decoding, timm's transform, stacking), each time
into a new store, alternating the worker counts. It prints the median milliseconds per image and each worker
count's speed-up over the first; the tensors must be equal at every worker count.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from .suites import dataset


def main(argv: list[str] | None = None) -> int:
    import timm

    from alsatian_hf.candidates import timm_processor
    from alsatian_hf.search.data import PreparedData

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 128, 224])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--items", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    ds = dataset("resnet18", args.items)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, {args.items} images")
    print(f"{'px':>4} {'workers':>7} {'ms/image':>9} {'speed-up':>9}")
    for size in args.sizes:
        processor = timm_processor(model, size)

        def prepare(workers: int) -> tuple[float, list[torch.Tensor]]:
            data = PreparedData(ds, "image", num_workers=workers)
            key = data.add(processor)
            start = time.perf_counter()
            out = [
                data(key, tuple(range(s, min(s + 64, args.items))))["pixel_values"] for s in range(0, args.items, 64)
            ]
            return time.perf_counter() - start, out

        _, want = prepare(args.workers[0])  # warm-up: first calls
        seconds: dict[int, list[float]] = {w: [] for w in args.workers}
        for _ in range(args.repeats):
            for workers in args.workers:
                took, got = prepare(workers)
                seconds[workers].append(took)
                if not all(torch.equal(g, w) for g, w in zip(got, want)):
                    raise AssertionError(f"{workers} workers prepared other tensors at {size} px")
                del got
        first = statistics.median(seconds[args.workers[0]])
        for workers in args.workers:
            median = statistics.median(seconds[workers])
            print(f"{size:>4} {workers:>7} {median / args.items * 1e3:>9.3f} {first / median:>8.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
