"""How fast each built-in scorer scores a halving iteration's survivors, batched (`score_many`), on this machine.

    python -m benchmarks.scorer_speed [--threads 1] [--width 512] [--repeats 3]

The shapes are the iterations of the paper-cpu cells' search of 35 models on 2000 items, with 400 test items and
10 classes: the models halve while the train items double (35 x 25 up to 2 x 1600). 35 x 420 is a first iteration
on a larger dataset. Features are seeded random, so equal revisions score equal bits; run it at two revisions to
price a change to a scorer. It prints the median seconds per call and a digest of the scores, which must not
change when only speed should.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time

import torch

from alsatian_hf.scoring import SCORERS


SHAPES = [(35, 25), (18, 76), (9, 178), (5, 381), (3, 787), (2, 1600), (35, 420)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scorers", nargs="+", default=sorted(SCORERS), choices=sorted(SCORERS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), width {args.width}; median seconds per score_many")
    print(f"{'scorer':8} {'models x items':>15} {'seconds':>9}  scores digest")
    for name in args.scorers:
        scorer = SCORERS[name]()
        total = 0.0
        for models, items in SHAPES:
            gen = torch.Generator().manual_seed(models * 100_003 + items)
            case = dict(
                train_features=[torch.randn(items, args.width, generator=gen) for _ in range(models)],
                train_labels=torch.arange(items) % 10,
                test_features=[torch.randn(400, args.width, generator=gen) for _ in range(models)],
                test_labels=torch.arange(400) % 10,
            )
            scores = scorer.score_many(**case)  # warm-up: first calls, allocator
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                scorer.score_many(**case)
                seconds.append(time.perf_counter() - start)
            digest = hashlib.sha256(repr(scores).encode()).hexdigest()[:12]
            total += statistics.median(seconds)
            print(f"{name:8} {f'{models} x {items}':>15} {statistics.median(seconds):9.4f}  {digest}", flush=True)
        print(f"{name:8} {'all shapes':>15} {total:9.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
