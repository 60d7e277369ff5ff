"""Per-block throughput (`block_speed`): each engine block's items/s on 1 thread, with the engine's fast paths
(BatchNorm folded into convolutions, channels-last layout where this CPU measured it faster) against neither,
in one run.

The blocks are the engine's own (`build_candidate` over the zoo's base model, loaded as a search loads them),
so the table measures what a search runs. Both layouts run alternately per repeat on the same batch.

Each row also prices the block against the core: its FLOPs per item (the shape probe's count, 2 per
multiply-add), the GFLOP/s it reaches on the fast path, and a large fp32 matmul's GFLOP/s on the same threads
in the same run (`peak_gflops`, its best sample before and after the blocks), the practical ceiling of a
compute-bound block. A block near that ceiling can only get faster by doing less arithmetic or by lower
precision.

Lower precision is the `bf16` columns: the fast path under `SearchArguments(precision="bf16")` (autocast),
opt-in because it rounds the features differently (`precision` measures what that does to a search). They are
measured only where bf16 runs natively (CUDA, or a CPU with AVX512-BF16/AMX): emulated, it is many times slower
and no guide.
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
    channels_last: bool  # the layout the fast path measured faster for this block (False: no convolution)
    bf16_items_per_second: float | None  # the fast path in opt-in bf16 (None where bf16 is emulated)
    bf16_speedup: float | None  # plain's seconds / bf16's, as `speedup`
    bf16_max_abs_diff: float | None  # between the bf16 and the plain block outputs (fed the same input)
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
        # the engine's defaults: channels-last where this CPU measured it faster (`candidates.layout`), at the
        # threads the blocks are timed on
        modes = {"plain": ("fp32", False), "fast": ("fp32", "auto")}
        if native_bf16():
            modes["bf16"] = ("bf16", "auto")
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            probe = ShapeProbe()
            candidates = {}
            for mode, (precision, layout) in modes.items():
                candidates[mode], _ = build_candidate(
                    f"{arch}-{mode}", folder, LocalBlockSource(folder), input_key=f"px{size}",
                    probe_inputs={"pixel_values": x[:1]}, probe=probe, channels_last=layout,
                    fold_batchnorm=layout is not False, precision=precision,
                )  # fmt: skip
            layouts = probe.layouts(folder, f"px{size}", candidates["fast"].initial_state({"pixel_values": x[:1]}))
            peak = matmul_gflops(repeats)
            seconds, diffs = _time_blocks(candidates, x, repeats)
            peak = max(peak, matmul_gflops(repeats))  # before and after: a ceiling is its least disturbed sample
        finally:
            torch.set_num_threads(previous)
        flops = [b.cost for b in candidates["fast"].blocks]
        for i, (secs, diff) in enumerate(zip(seconds, diffs)):
            plain, fast, bf16 = secs["plain"], secs["fast"], secs.get("bf16")
            table.add(BlockSpeedRow(
                suite=run.suite_name, architecture=arch, image_size=size, block=i, batch_size=batch,
                threads=threads, plain_items_per_second=round(batch / plain, 1),
                fast_items_per_second=round(batch / fast, 1), speedup=round(plain / fast, 3),
                max_abs_diff=float(f"{diff['fast']:.3g}"), channels_last=layouts[i],
                bf16_items_per_second=round(batch / bf16, 1) if bf16 else None,
                bf16_speedup=round(plain / bf16, 3) if bf16 else None,
                bf16_max_abs_diff=float(f"{diff['bf16']:.3g}") if bf16 else None,
                gflop_per_item=float(f"{flops[i] / 1e9:.4g}"),
                fast_gflops=round(flops[i] * batch / fast / 1e9, 2), peak_gflops=round(peak, 2), **run.env,
            ))  # fmt: skip
        plain_total, fast_total = (sum(s[mode] for s in seconds) for mode in ("plain", "fast"))
        achieved = sum(flops) * batch / fast_total / 1e9
        print(f"  block speed {arch} {size}px, {threads} thread: {batch / plain_total:.0f} -> "
              f"{batch / fast_total:.0f} items/s through all blocks ({plain_total / fast_total:.2f}x); "
              f"{achieved:.1f} GFLOP/s, {achieved / peak:.0%} of a matmul's {peak:.1f}"
              + (f"; bf16 {batch / sum(s['bf16'] for s in seconds):.0f} items/s" if "bf16" in modes else ""),
              flush=True)  # fmt: skip


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


def _time_blocks(candidates, x, repeats: int) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Per block, median seconds per mode and the largest difference between each mode's output and plain's. Every
    mode's block is fed the plain layout's previous output (so all time the same input values), in an order that
    alternates per repeat."""
    import torch

    for c in candidates.values():
        for b in c.blocks:
            b.load(torch.device("cpu"))
    modes = list(candidates)
    state = candidates["plain"].initial_state({"pixel_values": x})
    seconds, diffs = [], []
    with torch.inference_mode():
        for blocks in zip(*(c.blocks for c in candidates.values())):
            times: dict[str, list[float]] = {m: [] for m in modes}
            outs = {}
            for r in range(repeats + 1):  # the first round warms up (oneDNN primitive creation)
                for mode, block in list(zip(modes, blocks))[:: -1 if r % 2 else 1]:
                    start = time.perf_counter()
                    outs[mode] = block.run(state)
                    if r:
                        times[mode].append(time.perf_counter() - start)
            seconds.append({m: statistics.median(t) for m, t in times.items()})
            diffs.append({
                m: max((a.float() - b.float()).abs().max().item() for a, b in zip(outs["plain"], outs[m]))
                for m in modes
            })  # fmt: skip
            state = outs["plain"]
    for c in candidates.values():
        for b in c.blocks:
            b.unload()
    return seconds, diffs


def native_bf16() -> bool:
    """Whether this CPU (the benchmark's device) runs bf16 natively: AVX512-BF16 or AMX."""
    from alsatian_hf.candidates.precision import _cpu_has_bf16

    return _cpu_has_bf16()
