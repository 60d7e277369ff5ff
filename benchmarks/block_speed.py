"""Per-block throughput (`block_speed`): each engine block's items/s on 1 thread, with the engine's fast paths
(channels-last convolutions, BatchNorm folded into them) against neither, in one run.

The blocks are the engine's own (`build_candidate` over the zoo's base model, loaded as a search loads them),
so the table measures what a search runs. Both layouts run alternately per repeat on the same batch.
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
            seconds, diffs = _time_blocks(candidates, x, repeats)
        finally:
            torch.set_num_threads(previous)
        for i, (plain, fast) in enumerate(seconds):
            table.add(BlockSpeedRow(
                suite=run.suite_name, architecture=arch, image_size=size, block=i, batch_size=batch,
                threads=threads, plain_items_per_second=round(batch / plain, 1),
                fast_items_per_second=round(batch / fast, 1), speedup=round(plain / fast, 3),
                max_abs_diff=float(f"{diffs[i]:.3g}"), **run.env,
            ))  # fmt: skip
        plain_total, fast_total = sum(s[0] for s in seconds), sum(s[1] for s in seconds)
        print(f"  block speed {arch} {size}px, {threads} thread: {batch / plain_total:.0f} -> "
              f"{batch / fast_total:.0f} items/s through all blocks ({plain_total / fast_total:.2f}x)",
              flush=True)  # fmt: skip


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
