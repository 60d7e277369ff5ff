"""`python -m benchmarks.ranking_quality [--build]`: see the package docstring."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from .tasks import FULL, TINY


HERE = Path(__file__).resolve().parent.parent
BUILD = HERE / "results" / "ranking-quality"  # the zoo's and the ground truth's tables (hours to remake)
CARD = HERE / "results" / "paper-cpu"  # the benchmark card that gets the `ranking_quality` config
WORK = HERE / ".work" / "ranking-quality"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ranking_quality", description=__doc__)
    p.add_argument("--build", action="store_true", help="build the zoo and the ground truth (resumes)")
    p.add_argument("--modality", choices=["image", "text"], action="append", help="default: both")
    p.add_argument("--out", type=Path, default=BUILD, help="the build's tables (ground truth, tuning, zoo)")
    p.add_argument("--card-dir", type=Path, default=CARD, help="the card folder the search side writes to")
    p.add_argument("--no-card", action="store_true", help="write the tables without regenerating the card")
    p.add_argument("--work-dir", type=Path, default=WORK, help="the zoo's hub folder and the block stores")
    p.add_argument(
        "--reverse",
        action="store_true",
        help="--build: the ground truth's runs in reverse order, so a "
        "second process building the same modality meets the first in the middle",
    )
    p.add_argument("--tiny", action="store_true", help="a minute-long run of the same code (the test suite's)")
    p.add_argument("--scorers", nargs="+", help="default: every scorer under test")
    p.add_argument("--targets", nargs="+", help="default: every target of the profile")
    p.add_argument(
        "--splits-only",
        action="store_true",
        help="the search side's all-data scores over the split seeds alone (ranking_split_scores.csv); the "
        "other tables keep their rows",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = TINY if args.tiny else FULL
    if args.targets:
        profile = replace(profile, targets=tuple(args.targets))
    modalities = args.modality or (["image"] if args.tiny else ["image", "text"])
    args.out.mkdir(parents=True, exist_ok=True)
    hub_root = args.work_dir / "hub"
    start = time.perf_counter()
    if args.build:
        from .truth import ground_truth, record_zoo
        from .zoo import build_zoo, org_of

        for modality in modalities:
            org = org_of(modality, profile)
            record_zoo(args.out, modality, org, build_zoo(hub_root, org, profile, reverse=args.reverse))
            ground_truth(hub_root, args.out, modality, profile, reverse=args.reverse)
        print(f"built in {time.perf_counter() - start:.0f}s", flush=True)
        return 0
    from .quality import run_quality

    run_quality(hub_root, args.work_dir, args.card_dir, modalities, build_dir=args.out, profile=profile,
                scorer_names=args.scorers, splits_only=args.splits_only)  # fmt: skip
    if not args.no_card:
        from ..report import write_report
        from ..suites import SUITES

        write_report(
            args.card_dir,
            suite_name=args.card_dir.name,
            suite=SUITES.get(args.card_dir.name, SUITES["paper-cpu"]),
            seconds=0,
        )
    print(f"search side in {time.perf_counter() - start:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
