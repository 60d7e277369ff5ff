"""One speedup computation for every cell type: measured ratios next to the two sharing bounds."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Speedup:
    """A strategy's runs against a reference strategy's runs of the same cell.

    Args:
        ratio: the reference's median end-to-end seconds over this strategy's.
        inference_ratio: the same for inference time alone.
        ideal: the FLOP-weighted sharing bound: the reference's compute cost over this strategy's.
        time_ideal: the bound in time (see `time_ideal`), or None when it cannot be priced.
    """

    strategy: str
    reference: str
    seconds: float
    search_seconds: float
    inference: float
    ratio: float
    inference_ratio: float
    ideal: float
    time_ideal: float | None

    @property
    def of_ideal(self) -> float | None:
        """The measured ratio as a share of the FLOP bound (None against itself)."""
        return self.ratio / self.ideal if self.strategy != self.reference else None

    @property
    def of_time_ideal(self) -> float | None:
        if self.strategy == self.reference or not self.time_ideal:
            return None
        return self.ratio / self.time_ideal


def _median_seconds(results: list[Any]) -> float:
    return statistics.median(r.seconds for r in results)


def _median_inference(results: list[Any]) -> float:
    return statistics.median(sum(it["seconds"]["inference"] for it in r.iterations) for r in results)


def _compute_cost(results: list[Any]) -> float:
    return sum(it["compute_cost"] for it in results[0].iterations)


def speedup(runs: dict[str, list[Any]], strategy: str, *, reference: str) -> Speedup:
    """`strategy`'s speedup over `reference` in one cell, from every repeat's `SearchResult` of each."""
    own, ref = runs[strategy], runs[reference]
    seconds, inference = _median_seconds(own), _median_inference(own)
    return Speedup(
        strategy=strategy,
        reference=reference,
        seconds=seconds,
        search_seconds=statistics.median(r.seconds - r.setup_seconds for r in own),
        inference=inference,
        ratio=_median_seconds(ref) / seconds,
        inference_ratio=_median_inference(ref) / max(inference, 1e-12),
        ideal=1.0 if strategy == reference else _compute_cost(ref) / _compute_cost(own),
        time_ideal=1.0 if strategy == reference else time_ideal(ref, own),
    )


def time_ideal(reference: list[Any], runs: list[Any]) -> float | None:
    """The sharing bound in time: the reference's block time over `runs`' block executions priced at it.

    Each block's time per item comes from the reference strategy's own runs (all repeats, all iterations), so
    this is the speedup `runs`' strategy would reach if it ran every block as fast as the reference does and
    spent nothing else; unlike the FLOP-weighted ideal, it holds whatever each block's time per FLOP. None when
    a block of `runs` never ran in the reference.
    """

    def per_block(results: list[Any]) -> dict[str, list]:
        out: dict[str, list] = {}
        for res in results:
            for it in res.iterations:
                for h, (n, t) in it.get("block_time", {}).items():
                    entry = out.setdefault(h, [0, 0.0])
                    entry[0] += n
                    entry[1] += t
        return out

    ref_all, ref_one, own = per_block(reference), per_block(reference[:1]), per_block(runs[:1])
    if not ref_all or not own or not own.keys() <= ref_all.keys():
        return None
    rate = {h: t / n for h, (n, t) in ref_all.items() if n}
    priced = sum(n * rate[h] for h, (n, _) in own.items())
    return sum(n * rate[h] for h, (n, _) in ref_one.items()) / priced if priced else None


def rounded(value: float | None, digits: int = 3) -> float | None:
    return round(value, digits) if value is not None else None
