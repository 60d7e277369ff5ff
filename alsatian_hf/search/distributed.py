"""Several processes (ranks) under `accelerate launch` or `torchrun`: what each rank extracts and scores, and
what ranks exchange so that every one selects the same survivors and ends with the same ranking.

Per iteration every rank computes the same `plan.partition.split_iteration` of the alive models' task tree
and the iteration's batches (deterministic, so nobody talks): mostly whole batches per rank, every model run
on them, and where batches run out, a batch spread by models. Each rank extracts its work and scores its
share of the models (`plan.partition.scoring_owners`: as many a rank, each kept where its features are).
In between, every rank sends the features it extracted to the rank that scores each model (`send_tensors`),
so that rank holds all of that model's features, as one process does; it keeps them for the next iteration,
and the others drop theirs. The scores are exchanged too, and selection runs on identical scores everywhere,
ties included. One process (no launcher) never touches torch.distributed.
"""

from __future__ import annotations

import atexit
import json
import math
import os
from collections.abc import Collection
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace

import torch

from ..engine import Counters
from ..errors import RankLostError
from ..plan import TaskTree
from ..plan.partition import scoring_owners, split_iteration


Name = str | tuple[str | int, ...]  # a tensor's name in `Ranks.send_tensors`: it travels as JSON


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    timeout: float | None = None  # seconds an exchange waits for the other ranks (None: torch's default)

    @classmethod
    def current(cls, timeout: float | None = None) -> "Ranks":
        """This process's rank under a launcher (`WORLD_SIZE` > 1), through accelerate's `PartialState`, which
        starts the process group: gloo on CPU, NCCL with one device per rank on GPUs. `timeout` bounds every
        exchange (it applies when this call starts the group)."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from datetime import timedelta

        from accelerate import PartialState

        kwargs = {} if timeout is None else {"timeout": timedelta(seconds=timeout)}
        started_here = not torch.distributed.is_initialized()
        state = PartialState(cpu=not torch.cuda.is_available(), **kwargs)
        if started_here:
            # Destroyed at exit while the interpreter is whole. Left to finalization, gloo's threads can still
            # hold work whose tensors need the GIL to be freed, and the rank aborts ("terminate called without
            # an active exception"), so the launcher fails a search that succeeded: 7 of 16 launches of 3 ranks
            # exchanging tensors did. A group the caller started (an `Accelerator` made first) is the caller's.
            atexit.register(state.destroy_process_group)
        return cls(state.process_index, state.num_processes, timeout)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order.

        Raises:
            RankLostError: when another rank died or did not reach the exchange within the timeout.
        """
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        with self._exchange():
            dist.all_gather_object(out, obj)
        return out

    def send_tensors(self, parts: list[dict[Name, torch.Tensor]]) -> list[dict[Name, torch.Tensor]]:
        """Sends `parts[r]`, named tensors, to rank r; returns what every rank sent this one, in rank order (this
        rank's own part as given). Names are strings, or tuples of strings and integers.

        Two `all_to_all_single` exchanges: first how many bytes each rank sends each other one, then the bytes,
        for each receiver its own header (names, dtypes and shapes, as JSON) and its tensors' bytes, never
        pickled. Each byte, headers included, reaches only the rank it is for, so what a rank receives does not
        grow with the number of ranks (the headers of one features' exchange, 64 ranks and 500 models: 71 kB a
        rank, against 1.2 MB when every rank received every pair's through `all_gather_object`). The first
        iteration's features (15 MB a rank, resnet18 on 2000 items) took 0.05 s so, headers, export and import
        included, against 0.33 s through an `all_gather` to every rank.

        Raises:
            RankLostError: as `gather`.
        """
        if not self.distributed:
            return [parts[0]]
        import torch.distributed as dist

        device = _collective_device()
        sizes, chunks = [], []  # per receiver: (header bytes, tensor bytes); their bytes, in rank order
        for r, tensors in enumerate(parts):
            if r == self.rank:
                sizes.append((0, 0))
                continue
            layout, data = _pack(tensors, device)
            header = _encode(layout).to(device or "cpu")
            sizes.append((header.numel(), data.numel()))
            chunks += [header, data]
        sent = torch.tensor(sizes, dtype=torch.int64, device=device)
        got = torch.empty_like(sent)
        with self._exchange():
            dist.all_to_all_single(got, sent)  # row r goes to rank r; row s comes from rank s
        incoming = got.sum(1).tolist()
        received = torch.empty(sum(incoming), dtype=torch.uint8, device=device)
        flat = torch.cat(chunks) if chunks else received[:0]
        with self._exchange():
            dist.all_to_all_single(received, flat, output_split_sizes=incoming, input_split_sizes=sent.sum(1).tolist())
        out, offset = [], 0
        for r, (head, size) in enumerate(got.tolist()):
            if r == self.rank:
                out.append(parts[r])
                continue
            layout = _decode(received[offset : offset + head])
            out.append(_unpack(layout, received[offset + head : offset + head + size]))
            offset += head + size
        return out

    def combine(self, share: "Share", alive: list[str], blocks: list[str], nodes: list[str]) -> "Combined":
        """Every rank's `share` of one iteration, added up on every rank alike.

        The models' scores and sets, and the counters per block and per task-tree node, are added by one
        `all_reduce` of a dense vector, indexed by `alive` and by `blocks` and `nodes` (every block and node
        the alive models can run, the same lists on every rank); the rest of the counters, a few numbers a
        rank, travel by `gather`. So what a rank receives grows with the models, not with models x ranks:
        gathering every rank's model names and per-block counters to every rank did. A score is added to -0.0
        on the other ranks, which leaves every float as it was, so every rank selects on the scorer's bits.

        Raises:
            RankLostError: as `gather`.
        """
        import torch.distributed as dist

        n, at = len(alive), {m: i for i, m in enumerate(alive)}
        at_block = {h: 4 * n + 2 * i for i, h in enumerate(blocks)}
        at_node = {k: 4 * n + 2 * len(blocks) + i for i, k in enumerate(nodes)}
        dense = torch.zeros(4 * n + 2 * len(blocks) + len(nodes), dtype=torch.float64)
        dense[:n] = -0.0
        index, values = [], []
        for m, score in share.scores.items():
            index.append(at[m])
            values.append(score)
        for k, models in enumerate((share.cached, share.extracted, share.held), start=1):
            for m in models:
                index.append(k * n + at[m])
                values.append(1.0)
        block_time, node_items = {}, {}  # outside the lists (none expected): sent as they are
        for h, (items, seconds) in share.counters.block_time.items():
            if h in at_block:
                index += [at_block[h], at_block[h] + 1]
                values += [items, seconds]
            else:
                block_time[h] = [items, seconds]
        for k, items in share.counters.node_items.items():
            if k in at_node:
                index.append(at_node[k])
                values.append(items)
            else:
                node_items[k] = items
        dense[torch.tensor(index, dtype=torch.int64)] = torch.tensor(values, dtype=torch.float64)
        parts = self.gather(
            (replace(share.counters, block_time=block_time, node_items=node_items), share.unique_edges)
        )
        dense = dense.to(_collective_device() or "cpu")
        with self._exchange():
            dist.all_reduce(dense)
        total = dense.tolist()
        counters = merge_counters([counters for counters, _ in parts])
        for h, i in at_block.items():
            if total[i]:
                counters.block_time[h] = [int(total[i]), total[i + 1]]
        for k, i in at_node.items():
            if total[i]:
                counters.node_items[k] = int(total[i])
        sets = [{m for m in alive if total[k * n + at[m]]} for k in (1, 2, 3)]
        return Combined(
            scores={m: total[i] for m, i in at.items()}, cached=sets[0], extracted=sets[1], held=sets[2],
            counters=counters, rank_block_executions=[c.block_executions for c, _ in parts],
            rank_seconds=[dict(c.seconds) for c, _ in parts], unique_edges=any(counted for _, counted in parts),
        )  # fmt: skip

    @contextmanager
    def _exchange(self):
        """Around one collective: its failure (gloo: a closed connection, or the timeout) as `RankLostError`."""
        import torch.distributed as dist

        try:
            yield
        except (RuntimeError, dist.DistError) as e:
            wait = f"{self.timeout:g}s" if self.timeout is not None else "torch's default"
            raise RankLostError(
                f"rank {self.rank}: the exchange with the other {self.world - 1} rank(s) failed ({e}). A rank died, "
                f"or did not reach the exchange within `rank_timeout` ({wait}); this rank stops too. Rerun the "
                "search: with the feature cache, finished iterations are not recomputed."
            ) from e

    def work(self, tree: TaskTree, batches: list[tuple[int, ...]]) -> list[tuple[list[tuple[int, ...]], list[str]]]:
        """This rank's (batches, models) groups of one iteration whose models' task tree is `tree`."""
        split = split_iteration(tree, [len(b) for b in batches], self.world)
        return [([batches[i] for i in idx], list(models)) for idx, models in split.work[self.rank]]

    def owners(self, models: list[str], holders: dict[str, int]) -> dict[str, int]:
        """The rank that scores each of `models` this iteration, and keeps its features (`scoring_owners`)."""
        return scoring_owners(models, holders, self.world)


@dataclass
class Share:
    """What one rank did in an iteration that every rank must know (`Ranks.combine`)."""

    scores: dict[str, float]  # of the models this rank scored
    cached: Collection[str]  # models whose features it read from the feature cache
    extracted: Collection[str]  # models it ran blocks for
    held: Collection[str]  # models whose next iteration's features it holds already
    counters: Counters
    unique_edges: bool  # it counted the tree's edges


@dataclass
class Combined:
    """Every rank's `Share` added up: every alive model's score (in `alive` order), the unions of the sets, the
    counters merged (`merge_counters`), and each rank's block executions and seconds per phase."""

    scores: dict[str, float]
    cached: set[str]
    extracted: set[str]
    held: set[str]
    counters: Counters
    rank_block_executions: list[int] = field(default_factory=list)
    rank_seconds: list[dict[str, float]] = field(default_factory=list)  # each rank's seconds per phase
    unique_edges: bool = False


def _collective_device() -> torch.device | None:
    """Where collectives move tensors: NCCL on the rank's GPU, gloo on the CPU (None)."""
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None


def _pack(tensors: dict[Name, torch.Tensor], device) -> tuple[list[tuple[Name, str, tuple]], torch.Tensor]:
    """Named tensors as (names, dtypes and shapes; their bytes in one flat uint8 tensor on `device`)."""
    layout = [(name, str(t.dtype).removeprefix("torch."), tuple(t.shape)) for name, t in tensors.items()]
    flat = []
    for t in tensors.values():
        raw = t.detach().to(device or "cpu").contiguous().reshape(-1).view(torch.uint8)
        # each tensor starts at a multiple of 16 bytes, so its bytes can be viewed back as its dtype
        flat.append(torch.nn.functional.pad(raw, (0, -raw.numel() % 16)) if raw.numel() % 16 else raw)
    return layout, torch.cat(flat) if flat else torch.empty(0, dtype=torch.uint8, device=device)


def _encode(layout: list[tuple[Name, str, tuple]]) -> torch.Tensor:
    """A header as JSON bytes, padded to a multiple of 16 so that the tensors' bytes after it stay aligned."""
    raw = json.dumps(layout, separators=(",", ":")).encode()
    return torch.frombuffer(bytearray(raw + b" " * (-len(raw) % 16)), dtype=torch.uint8)


def _decode(header: torch.Tensor) -> list[tuple[Name, str, tuple]]:
    """`_encode`'s layout back, names and shapes as tuples again."""
    layout = json.loads(header.cpu().numpy().tobytes())
    return [(tuple(name) if isinstance(name, list) else name, dtype, tuple(shape)) for name, dtype, shape in layout]


def _unpack(layout: list[tuple[Name, str, tuple]], data: torch.Tensor) -> dict[Name, torch.Tensor]:
    """`_pack`'s tensors back, as views of `data`."""
    named, offset = {}, 0
    for name, dtype, shape in layout:
        dt = getattr(torch, dtype)
        nbytes = math.prod(shape) * dt.itemsize
        named[name] = data[offset : offset + nbytes].view(dt).reshape(shape)
        offset += nbytes + -nbytes % 16
    return named


def merge_counters(parts: list[Counters]) -> Counters:
    """One iteration's counters over all ranks: work adds up, seconds and peaks are the slowest rank's."""
    merged = Counters()
    for f in fields(Counters):
        values = [getattr(p, f.name) for p in parts]
        if f.name == "seconds":
            merged.seconds = {k: max(v.get(k, 0.0) for v in values) for k in merged.seconds}
        elif f.name in ("cache_peak", "c_min", "chunks"):
            setattr(merged, f.name, max(values))
        elif f.name == "cache_tier_peaks":
            merged.cache_tier_peaks = {k: max(v.get(k, 0) for v in values) for v in values for k in v}
        elif f.name == "block_time":
            for v in values:
                for h, (n, t) in v.items():
                    entry = merged.block_time.setdefault(h, [0, 0.0])
                    entry[0] += n
                    entry[1] += t
        elif f.name == "node_items":
            for v in values:
                for node, n in v.items():
                    merged.node_items[node] = merged.node_items.get(node, 0) + n
        else:
            setattr(merged, f.name, sum(values))
    return merged
