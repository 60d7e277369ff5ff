"""Per-block throughput (`block_speed`): each engine block's items/s on 1 thread, with the engine's fast paths
(channels-last convolutions, BatchNorm folded into them) against neither, in one run.

The blocks are the engine's own (`build_candidate` over the zoo's base model, loaded as a search loads them),
so the table measures what a search runs. Both layouts run alternately per repeat on the same batch.

Each row also prices the block against the core: its FLOPs per item (the shape probe's count, 2 per
multiply-add), the GFLOP/s it reaches on the fast path, and a large fp32 matmul's GFLOP/s on the same threads
in the same run (`peak_gflops`, its best sample before and after the blocks), the practical ceiling of a
compute-bound block. A block near that ceiling can only get faster by doing less arithmetic or by lower
precision.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from ._tables import Table
from .suites import Run, ensure_zoo


@dataclass(kw_only=True)
class BlockSpeedRow:
    suite: str
    architecture: str
    image_size: int
    block: int
    batch_size: int
    threads: int
    plain_items_per_second: float  # channels_last=False, fold_batchnorm=False: the engine before the fast paths
    fast_items_per_second: float  # the engine's defaults
    speedup: float
    max_abs_diff: float  # between the two layouts' block outputs
    gflop_per_item: float  # the block's FLOPs per item / 1e9 (FlopCounterMode: 2 per multiply-add)
    fast_gflops: float  # GFLOP/s the fast path reaches
    peak_gflops: float  # a 2048^3 fp32 matmul's best GFLOP/s on the same threads, before and after the blocks
    device: str
    torch_version: str
    code_revision: str


def run_block_speed(run: Run, *, batch: int = 64, repeats: int = 5, threads: int = 1) -> None:
    import torch

    from alsatian_hf.candidates import LocalBlockSource, ShapeProbe, build_candidate

    table = Table(run.out / "block_speed.csv", BlockSpeedRow)
    for arch, dist, size in run.suite.speed:
        if not run.force and table.has(architecture=arch, image_size=size):
            continue
        table.drop(architecture=arch, image_size=size)
        folder = run.hub.root / ensure_zoo(run, arch=arch, dist=dist) / "model-base"
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
        candidates = {}
        for fast in (False, True):
            candidates[fast], _ = build_candidate(
                f"{arch}-{fast}", folder, LocalBlockSource(folder), input_key=f"px{size}",
                probe_inputs={"pixel_values": x[:1]}, probe=ShapeProbe(), channels_last=fast, fold_batchnorm=fast,
            )  # fmt: skip
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            peak = matmul_gflops(repeats)
            seconds, diffs = _time_blocks(candidates, x, repeats)
            peak = max(peak, matmul_gflops(repeats))  # before and after: a ceiling is its least disturbed sample
        finally:
            torch.set_num_threads(previous)
        flops = [b.cost for b in candidates[True].blocks]
        for i, (plain, fast) in enumerate(seconds):
            table.add(BlockSpeedRow(
                suite=run.suite_name, architecture=arch, image_size=size, block=i, batch_size=batch,
                threads=threads, plain_items_per_second=round(batch / plain, 1),
                fast_items_per_second=round(batch / fast, 1), speedup=round(plain / fast, 3),
                max_abs_diff=float(f"{diffs[i]:.3g}"), gflop_per_item=float(f"{flops[i] / 1e9:.4g}"),
                fast_gflops=round(flops[i] * batch / fast / 1e9, 2), peak_gflops=round(peak, 2), **run.env,
            ))  # fmt: skip
        plain_total, fast_total = sum(s[0] for s in seconds), sum(s[1] for s in seconds)
        achieved = sum(flops) * batch / fast_total / 1e9
        print(f"  block speed {arch} {size}px, {threads} thread: {batch / plain_total:.0f} -> "
              f"{batch / fast_total:.0f} items/s through all blocks ({plain_total / fast_total:.2f}x); "
              f"{achieved:.1f} GFLOP/s, {achieved / peak:.0%} of a matmul's {peak:.1f}", flush=True)  # fmt: skip


def matmul_gflops(repeats: int, n: int = 2048) -> float:
    """GFLOP/s of an n^3 fp32 matmul on the current threads, the best of `repeats` after one warm-up: what this
    core's BLAS reaches on the most favourable shape when nothing else runs."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    times = []
    for r in range(repeats + 1):
        start = time.perf_counter()
        torch.mm(a, b)
        if r:
            times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def _time_blocks(candidates, x, repeats: int) -> tuple[list[tuple[float, float]], list[float]]:
    """Median seconds per block for (plain, fast), each block fed the plain layout's previous output (so both
    time the same input values), and the largest difference between their outputs."""
    import torch

    for c in candidates.values():
        for b in c.blocks:
            b.load(torch.device("cpu"))
    plain, fast = candidates[False], candidates[True]
    state = plain.initial_state({"pixel_values": x})
    seconds, diffs = [], []
    with torch.inference_mode():
        for pb, fb in zip(plain.blocks, fast.blocks):
            times: dict[bool, list[float]] = {False: [], True: []}
            outs = {}
            for r in range(repeats + 1):  # the first round warms up (oneDNN primitive creation)
                for fast_path, block in ((False, pb), (True, fb)) if r % 2 else ((True, fb), (False, pb)):
                    start = time.perf_counter()
                    outs[fast_path] = block.run(state)
                    if r:
                        times[fast_path].append(time.perf_counter() - start)
            seconds.append((statistics.median(times[False]), statistics.median(times[True])))
            diffs.append(max((a.float() - b.float()).abs().max().item() for a, b in zip(outs[False], outs[True])))
            state = outs[False]
    for c in candidates.values():
        for b in c.blocks:
            b.unload()
    return seconds, diffs
