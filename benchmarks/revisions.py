"""One search's phases at two code revisions, side by side on this machine: the ratio of a change, measured within
one run (this machine is shared and noisy, so seconds from two runs do not compare).

    python -m benchmarks.revisions BASE [HEAD] [--arch resnet18] [--distribution top_layers] [--items 2000]
                                   [--image-size PX] [--batch-size 64] [--strategy alsatian] [--rounds 2]
                                   [--searches 5] [--threads N]

Each revision is checked out in a temporary git worktree. Per round, each revision's process runs one untimed
search (imports, first calls, the block store), then `searches` timed ones, all through that revision's
`benchmarks.suites.search`, as the end-to-end cells do; the rounds alternate the revisions. It prints each
process's median phase seconds, and per phase the median over rounds at each revision and their ratio. The fixed
costs are set-up, preprocessing and proxy scoring. HEAD may be `.`, the working tree as it is.

Both revisions search the same paper-cpu zoo, built by this checkout's code and served by its local Hub. Each
revision keeps its own block store, built by its own code in its first untimed search, so revisions whose store
formats differ compare too. The rankings are compared as well: a change meant to be faster only must not move
them.

`--batch-size default` gives each revision its library's own default (`SearchArguments.batch_size`: 64 before
`auto` existed), to compare what a user gets out of the box; the cells, and this script by default, pin 64.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from alsatian_hf.localhub import HubServer, use_endpoint

from .suites import ARCHS, HERE, SUITES, Run, ensure_zoo, provenance


PHASES = ("setup", "prepare_data", "prepare_model", "inference", "proxy_scoring", "total")

_CHILD = """
import json, statistics, sys
from pathlib import Path
import torch
from benchmarks.suites import SUITES, Run, dataset, search
spec = json.loads(sys.argv[1])
if spec["threads"]:
    torch.set_num_threads(spec["threads"])
ds = dataset(spec["arch"], spec["items"])
work = Path(spec["work"])
run = Run("paper-cpu", SUITES["paper-cpu"], work, work, None, False)  # the cells' search, this revision's code
batch = spec["batch_size"]
if batch == "default":  # this revision's library default
    from alsatian_hf import SearchArguments
    batch = SearchArguments.__dataclass_fields__["batch_size"].default
kw = dict(org=spec["org"], ds=ds, strategy=spec["strategy"], image_size=spec["image_size"], batch_size=batch)
search(run, **kw)
rows, models = [], None
for _ in range(spec["searches"]):
    res = search(run, **kw)
    rows.append({**res.phase_seconds(), "setup": res.setup_seconds, "total": res.seconds})
    models = res.models
print("RESULT " + json.dumps({"phases": {k: statistics.median(r[k] for r in rows) for k in rows[0]},
                              "models": models}))
"""


def _worktree(rev: str, parent: Path, root: Path) -> Path:
    if rev == ".":
        return root
    path = parent / rev.replace("/", "_")
    done = subprocess.run(["git", "worktree", "add", "--detach", "-f", str(path), rev], cwd=root,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"cannot check out `{rev}` ({done.stderr.strip()}); pass a commit, branch or tag, or `.`.")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base")
    p.add_argument("head", nargs="?", default=".")
    p.add_argument("--arch", choices=sorted(ARCHS), default="resnet18")
    p.add_argument("--distribution", choices=["top_50", "top_25", "top_layers"], default="top_layers")
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--image-size", type=int, default=None, help="pixels (default: the paper-cpu suite's)")
    p.add_argument("--batch-size", default="64", help="items per batch, `auto`, or `default` (each revision's own)")
    p.add_argument("--strategy", choices=["alsatian", "shift", "base"], default="alsatian")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--searches", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--work-dir", type=Path, default=HERE / ".work" / "paper-cpu")
    args = p.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` removes the checkouts, as Ctrl-C does
    root = HERE.parent
    args.work_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HOME", str(args.work_dir / "hf-home"))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    suite = SUITES["paper-cpu"]
    scratch = Path(tempfile.mkdtemp(prefix="alsatian-revisions-"))
    trees = {}
    try:
        with HubServer(args.work_dir / "hub") as hub:
            use_endpoint(hub.url)
            run = Run("paper-cpu", suite, args.work_dir, args.work_dir, hub, False, provenance())
            org = ensure_zoo(run, arch=args.arch, dist=args.distribution)
            trees = {rev: _worktree(rev, scratch, root) for rev in (args.base, args.head)}
            batch = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
            spec = dict(org=org, arch=args.arch, items=args.items, image_size=args.image_size, batch_size=batch,
                        strategy=args.strategy, threads=args.threads, searches=args.searches)  # fmt: skip
            script = scratch / "search.py"
            script.write_text(_CHILD)
            results: dict[str, list[dict]] = {rev: [] for rev in trees}
            px = args.image_size or suite.image_size
            print(
                f"{org}, {args.items} items at {px} px, batch size {args.batch_size}, {args.strategy}: "
                f"{args.rounds} rounds of {args.searches} searches"
            )
            for _ in range(args.rounds):
                for i, (rev, tree) in enumerate(trees.items()):
                    env = {**os.environ, "PYTHONPATH": str(tree)}
                    child = {**spec, "work": str(scratch / f"work-{i}")}  # its own block store, `stores/` in there
                    done = subprocess.run([sys.executable, str(script), json.dumps(child)], cwd=tree, env=env,
                                          capture_output=True, text=True)  # fmt: skip
                    if done.returncode != 0:
                        raise RuntimeError(f"the search at {rev} failed: {done.stderr[-2000:]}")
                    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
                    result = json.loads(line.removeprefix("RESULT "))
                    results[rev].append(result)
                    print(f"  {rev:>12}: " + ", ".join(f"{k} {result['phases'][k]:.3f}" for k in PHASES), flush=True)
    finally:
        for rev, tree in trees.items():
            if tree != root:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root, capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)

    base, head = (results[r] for r in (args.base, args.head))
    print(f"\nmedian over rounds (s)  {args.base:>12} {args.head:>12}  head/base")
    rows = {k: [statistics.median(r["phases"][k] for r in rs) for rs in (base, head)] for k in PHASES}
    rows["fixed"] = [sum(rows[k][i] for k in ("setup", "prepare_data", "proxy_scoring")) for i in (0, 1)]
    for k, (b, h) in rows.items():
        print(f"{k:22} {b:12.3f} {h:12.3f}  {h / b if b else float('nan'):9.3f}")
    same = len({tuple(r["models"]) for r in base + head}) == 1
    print(f"same ranking at both revisions: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
