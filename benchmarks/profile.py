"""Where one search's time goes: its phases, the Python functions (cProfile) and the torch operators.

    python -m benchmarks.profile --arch resnet18 --distribution top_layers --items 2000 [--strategy alsatian]
                                 [--image-size 32] [--precision fp32] [--top 25] [--callers NAME] [--work-dir benchmarks/.work/paper-cpu]

It builds (or reuses) the paper-cpu zoo in the work dir, runs one untimed warm-up search (imports, first
calls), then the same search twice: under cProfile, and under `torch.profiler`. It prints the phase times of
both, the functions with the most cumulative and own time, and the operators with the most self CPU time.
For a sampling view of the same run, without cProfile's per-call overhead, use py-spy (`pip install py-spy`):

    py-spy record -o profile.svg -- python -m benchmarks.profile --arch resnet18 --items 2000 --no-torch
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
from pathlib import Path

from alsatian_hf.localhub import HubServer, use_endpoint

from .suites import ARCHS, HERE, SUITES, Run, dataset, ensure_zoo, provenance, search


def _phases(res) -> str:
    phases = res.phase_seconds()
    return ", ".join(f"{p} {s:.2f}s" for p, s in phases.items()) + f"; total {res.seconds:.2f}s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=sorted(ARCHS), default="resnet18")
    p.add_argument("--distribution", choices=["top_50", "top_25", "top_layers"], default="top_layers")
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--strategy", choices=["alsatian", "shift", "base"], default="alsatian")
    p.add_argument("--image-size", type=int)
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--no-torch", action="store_true", help="skip the torch.profiler run")
    p.add_argument("--callers", metavar="NAME", help="also print who calls the functions matching NAME")
    p.add_argument("--work-dir", type=Path, default=HERE / ".work" / "paper-cpu")
    args = p.parse_args(argv)

    args.work_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HOME", str(args.work_dir / "hf-home"))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    suite = SUITES["paper-cpu"]
    with HubServer(args.work_dir / "hub") as hub:
        use_endpoint(hub.url)
        run = Run("paper-cpu", suite, args.work_dir, args.work_dir, hub, False, provenance())
        org = ensure_zoo(run, arch=args.arch, dist=args.distribution)
        ds = dataset(args.arch, args.items)

        def once():
            return search(
                run, org=org, ds=ds, strategy=args.strategy, image_size=args.image_size, precision=args.precision
            )

        warm = once()  # fills the block store, pays imports and first calls
        from alsatian_hf.candidates import wait_prepared

        wait_prepared()  # and its prepared blocks, which it writes in the background
        print(f"{org}, {args.items} items, {args.strategy}: warm-up {_phases(warm)}")

        prof = cProfile.Profile()
        res = prof.runcall(once)
        print(f"\nunder cProfile: {_phases(res)}")
        for key in ("cumulative", "tottime"):
            text = io.StringIO()
            pstats.Stats(prof, stream=text).strip_dirs().sort_stats(key).print_stats(args.top)
            body = text.getvalue()
            print(f"\n## functions by {key} time\n" + body[body.find("   ncalls") :])
        if args.callers:
            text = io.StringIO()
            pstats.Stats(prof, stream=text).strip_dirs().sort_stats("tottime").print_callers(args.callers)
            print(f"\n## callers of {args.callers}\n" + text.getvalue())

        if not args.no_torch:
            import torch
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
            with profile(activities=activities) as tprof:
                res = once()
            print(f"\nunder torch.profiler: {_phases(res)}")
            sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
            print(tprof.key_averages().table(sort_by=sort, row_limit=args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
