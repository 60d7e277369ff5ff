"""The execution batch size, chosen by a short measurement (`batch_size="auto"`) and kept in the store.

Time per item falls with the batch while per-call costs dominate, then levels off. Where it levels off depends
on the architecture, the input size and the device, not on the data: at 32 px resnet18's last blocks see 1×1
maps, so the batch is their only large matrix dimension, and they run 2× faster per item at 256 than at 64,
while its stem is as fast at 64. What a search runs most is its unique blocks. So the measurement times every
block of one candidate per architecture at growing batch sizes, and weighs each block by how many unique
task-tree nodes sit at its depth (`estimate`): a zoo of top-layer fine-tunes weighs the top blocks, a zoo of
full fine-tunes weighs all of them alike.

The choice is kept per architecture set, input and device in `<store>/batch_sizes.json`. A repeated, resumed
or grown search reuses it, so it cuts its batches as before and finds its features and states in the feature
cache (both are stored per batch).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .._device import device_name
from ..candidates.candidate import EngineCandidate
from ..store._files import write_atomic
from ..store.identity import prefix_chain


logger = logging.getLogger("alsatian_hf")

SIZES = (32, 64, 128, 256, 512, 1024)
# sizes whose measured time per item is within this share of the fastest are alike to the measurement (noise
# on a shared machine is a few percent), and the largest of them is chosen: what the measurement leaves out
# (preprocessing, cache and feature-store writes, Python per block call) is paid per batch, so it only falls
# with larger batches (ViT-tiny top_layers ran 1.10x faster end to end at 128 than at 64 where the
# measurement found its blocks under 1% faster). Growing stops at the first size this much slower than the
# best: one that is merely not faster may be a disturbed sample (a run that stopped there chose 64 for
# resnet18 top_layers, where the card's `batch_size` table has 1024 1.58x faster end to end).
MIN_GAIN = 0.05
# the measurement stops growing the batch once it has taken this long, or this share of the time the search's
# inference is projected to take, whichever is more: it is paid once per store, not per search
MIN_TUNING_SECONDS = 2.0
TUNING_SHARE = 0.05
RECORD = "batch_sizes.json"
TIMED_PASSES = 2  # each block's time is its fastest timed pass: the least disturbed sample
FALLBACK = 64  # when the measurement fails: the default before `auto`


@dataclass
class BatchSizeChoice:
    """Args:
    size: the execution batch size.
    source: "measured"; "store" (an earlier search's measurement); "one size" (every unit fits one batch,
        or the cache budget allows one size); "fallback" (the measurement failed, see the log).
    seconds_per_item: per size measured, the estimated seconds of one item through the zoo's unique blocks.
    seconds: what the measurement took (0 unless measured).
    """

    size: int
    source: str = "measured"
    seconds_per_item: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds_per_item": {str(k): v for k, v in self.seconds_per_item.items()}}


def architectures(candidates: list[EngineCandidate]) -> dict[tuple, list[EngineCandidate]]:
    """Candidates grouped by what decides their speed: input, numerics and every block's shape signature."""
    groups: dict[tuple, list[EngineCandidate]] = {}
    for c in candidates:
        signature = tuple((b.bytes_per_item, round(b.cost)) for b in c.blocks)
        groups.setdefault((c.input_key, c.numerics, signature), []).append(c)
    return groups


def unique_per_depth(group: list[EngineCandidate]) -> list[int]:
    """How many distinct task-tree nodes the group's models have after each block (at each depth)."""
    chains = [prefix_chain(c.input_key, [b.content_hash for b in c.blocks])[1:] for c in group]
    return [len({chain[d] for chain in chains}) for d in range(len(chains[0]))]


def estimate(block_seconds: dict[int, list[float]], weights: list[int]) -> dict[int, float]:
    """Seconds per item of the weighted blocks at each batch size: `block_seconds[size][d]` is block d's time
    on one batch of `size` items, `weights[d]` how many unique nodes run block d's shape."""
    return {size: sum(w * s for w, s in zip(weights, secs)) / size for size, secs in block_seconds.items()}


def sizes(largest: int, capacity: int | None = None) -> list[int]:
    """The sizes worth trying: `SIZES` up to the first that holds `largest` items (the data schedule's largest
    unit) whole, since no batch spans two units, and none above `capacity` (what the cache budget holds)."""
    out = [s for s in SIZES if s < largest]
    out.append(next((s for s in SIZES if s >= largest), SIZES[-1]))
    fit = [s for s in out if capacity is None or s <= capacity]
    return fit or [max(1, min(capacity or 1, largest))]


def choose(seconds_per_item: dict[int, float], min_gain: float = MIN_GAIN) -> int:
    """The largest size within `min_gain` of the fastest (see `MIN_GAIN`)."""
    best = min(seconds_per_item.values())
    return max(size for size, s in seconds_per_item.items() if s <= best * (1 + min_gain))


def record_key(groups: dict[tuple, list[EngineCandidate]], device: torch.device) -> str:
    blob = json.dumps([sorted(map(repr, groups)), device_name(device), torch.__version__])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def read_choice(path: Path, key: str, usable: list[int]) -> BatchSizeChoice | None:
    """The stored choice for `key`, chosen again among the sizes this search can use; None when there is none,
    or when this search could use larger batches than the measurement tried and it had not stopped growing."""
    try:
        entry = json.loads(path.read_text()).get(key)
    except (OSError, ValueError):
        return None
    if not entry or (entry["limit"] < usable[-1] and not entry["stopped"]):
        return None
    measured = {int(k): float(v) for k, v in entry["seconds_per_item"].items() if int(k) in usable}
    return BatchSizeChoice(choose(measured), "store", measured) if measured else None


def write_choice(path: Path, key: str, choice: BatchSizeChoice, *, stopped: bool) -> None:
    """Record `choice`; `stopped`: the measurement stopped growing before the largest size it could try."""
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        records = {}
    records[key] = {
        "size": choice.size,
        "seconds_per_item": choice.to_dict()["seconds_per_item"],
        "limit": max(choice.seconds_per_item),
        "stopped": stopped,
    }
    try:
        write_atomic(path, json.dumps(records, indent=1).encode(), write=lambda f, b: f.write(b))
    except OSError as e:  # a read-only or full store costs the next search a measurement, not this one's result
        logger.warning("batch size: cannot record the choice in %s (%s)", path, e)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    groups: dict[tuple, list[EngineCandidate]],
    inputs: Callable[[EngineCandidate, int], tuple],
    *,
    device: torch.device,
    usable: list[int],
    projected_items: int,
) -> dict[int, float]:
    """Estimated seconds per item (`estimate`) at the `usable` sizes, growing until one is slower than the best
    so far by `MIN_GAIN`, memory runs out, or the measurement's time is up.

    Args:
        inputs: `inputs(candidate, size)`: a state of `size` items, on `device`, that block 0 consumes.
        projected_items: items the search will run, to bound the measurement's time by `TUNING_SHARE` of it.
    """
    start = time.perf_counter()
    plans = [(group[0], unique_per_depth(group)) for group in groups.values()]
    for representative, _ in plans:
        for block in representative.blocks:
            block.load(device)
    out: dict[int, float] = {}
    try:
        with torch.inference_mode():
            for size in usable:
                try:
                    total = 0.0
                    for representative, weights in plans:
                        secs = {size: _block_seconds(representative, inputs(representative, size), device)}
                        total += estimate(secs, weights)[size]
                except torch.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    break
                best = min(out.values(), default=float("inf"))
                out[size] = total
                if total > best * (1 + MIN_GAIN):
                    break  # clearly slower than a smaller batch: a larger one rarely is faster again
                if time.perf_counter() - start > max(MIN_TUNING_SECONDS, TUNING_SHARE * total * projected_items):
                    break
    finally:
        for representative, _ in plans:
            for block in representative.blocks:
                block.unload()
    return out


def _block_seconds(candidate: EngineCandidate, state, device: torch.device) -> list[float]:
    """Each block's seconds on `state`: the fastest of `TIMED_PASSES` passes after an untimed one (which builds
    kernels and primitives)."""
    first = state
    for block in candidate.blocks:
        state = block.run(state)
    secs = [float("inf")] * len(candidate.blocks)
    for _ in range(TIMED_PASSES):
        state = first
        for i, block in enumerate(candidate.blocks):
            _sync(device)
            t = time.perf_counter()
            state = block.run(state)
            _sync(device)
            secs[i] = min(secs[i], time.perf_counter() - t)
    return secs


def tune_batch_size(
    candidates: list[EngineCandidate],
    inputs: Callable[[EngineCandidate, int], tuple],
    *,
    device: torch.device,
    largest: int,
    capacity: int | None,
    projected_items: int,
    store: Path | None,
) -> BatchSizeChoice:
    """The execution batch size for these candidates on `device`: the stored choice, or a measured one.

    Args:
        inputs: `inputs(candidate, size)`: a state of `size` items on `device` that block 0 consumes.
        largest: items in the data schedule's largest unit (a batch never spans two units).
        capacity: the most items one batch may hold in the cache budget (None: no limit).
        projected_items: items the search runs, which bounds the measurement's time.
        store: the folder whose `batch_sizes.json` keeps the choice (None: measured every time).
    """
    usable = sizes(largest, capacity)
    if len(usable) == 1:
        return BatchSizeChoice(usable[0], "one size")
    groups = architectures(candidates)
    key = record_key(groups, device)
    path = store / RECORD if store is not None else None
    if path is not None and (stored := read_choice(path, key, usable)) is not None:
        return stored
    start = time.perf_counter()
    fallback = max((s for s in usable if s <= FALLBACK), default=usable[0])
    try:
        seconds_per_item = measure(groups, inputs, device=device, usable=usable, projected_items=projected_items)
    except Exception as e:  # an optimisation must not end the search: the search itself reports a bad candidate
        logger.warning("batch size: the measurement failed (%s: %s); running at %d", type(e).__name__, e, fallback)
        return BatchSizeChoice(fallback, "fallback", seconds=time.perf_counter() - start)
    if not seconds_per_item:  # out of accelerator memory at the smallest size: the search will say so itself
        return BatchSizeChoice(usable[0], "fallback", seconds=time.perf_counter() - start)
    choice = BatchSizeChoice(choose(seconds_per_item), "measured", seconds_per_item, time.perf_counter() - start)
    if path is not None:
        write_choice(path, key, choice, stopped=max(seconds_per_item) < usable[-1])
    logger.info(
        "batch size %d, measured in %.1fs (ms per item of unique work: %s)", choice.size, choice.seconds,
        ", ".join(f"{s}: {v * 1e3:.3g}" for s, v in seconds_per_item.items()),
    )  # fmt: skip
    return choice
