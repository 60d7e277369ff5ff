"""Time and FLOPs of each engine block (`block_times`): where time per FLOP departs from even.

The FLOP-weighted sharing bound holds as a time ratio only where every block takes the same time per FLOP;
this table shows which blocks do not, at each image size of the input-size cells.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from ._tables import Table
from .suites import Run, ensure_zoo


@dataclass(kw_only=True)
class BlockTimesRow:
    suite: str
    architecture: str
    image_size: int
    block: int
    name: str
    output_shape: str
    batch_size: int
    ms_per_batch: float
    time_share: float
    flop_share: float
    device: str
    torch_version: str
    code_revision: str


def run_block_times(run: Run, *, batch: int = 64, repeats: int = 5) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from alsatian_hf.adapters import split_model
    from alsatian_hf.adapters.skeleton import build_model

    table = Table(run.out / "block_times.csv", BlockTimesRow)
    for arch, dist, _, image_sizes in run.suite.scaling:
        org = ensure_zoo(run, arch=arch, dist=dist)
        model = build_model(run.hub.root / org / "model-base", device="cpu", shared=False)
        split = split_model(model)
        for size in image_sizes:
            if not run.force and table.has(architecture=arch, image_size=size):
                continue
            table.drop(architecture=arch, image_size=size)
            state = split.adapter.initial_state({"pixel_values": torch.randn(batch, 3, size, size)})
            rows = []
            with torch.inference_mode():
                for i, block in enumerate(split.blocks):
                    counter = FlopCounterMode(display=False)
                    with counter:
                        out_state = block.step(model, state)
                    times = []
                    for _ in range(repeats):
                        start = time.perf_counter()
                        block.step(model, state)
                        times.append(time.perf_counter() - start)
                    shape = "x".join(map(str, out_state[0].shape[1:]))
                    rows.append((i, block.name, shape, statistics.median(times), counter.get_total_flops()))
                    state = out_state
            total_t, total_f = sum(r[3] for r in rows), max(sum(r[4] for r in rows), 1)
            for i, name, shape, t, f in rows:
                table.add(BlockTimesRow(
                    suite=run.suite_name, architecture=arch, image_size=size, block=i, name=name, output_shape=shape,
                    batch_size=batch, ms_per_batch=round(t * 1000, 3), time_share=round(t / total_t, 4),
                    flop_share=round(f / total_f, 4), **run.env,
                ))  # fmt: skip
            worst = max(rows, key=lambda r: r[3] / total_t - r[4] / total_f)
            print(f"  blocks {arch} {size}px: {total_t * 1000:.0f} ms per batch of {batch}; most over its FLOP "
                  f"share: {worst[1]} ({worst[3] / total_t:.0%} of time, {worst[4] / total_f:.0%} of FLOPs)",
                  flush=True)  # fmt: skip
