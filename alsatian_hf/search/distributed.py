"""Several processes (ranks) under `accelerate launch` or `torchrun`: which models each rank extracts and
scores, and what ranks exchange so that every one selects the same survivors and ends with the same ranking.

Per iteration every rank computes the same `plan.partition` of the alive models' task tree (deterministic,
so nobody talks), extracts and scores its share, and then all ranks exchange (`all_gather_object`, small):
the scores, the features of their survivors for every item scored so far (the next split may give a
survivor to another rank) and their counters. Selection then runs on identical scores everywhere, ties
included. One process (no launcher) never touches torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

import torch

from ..engine import Counters
from ..plan import TaskTree
from ..plan.partition import partition


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> "Ranks":
        """This process's rank under a launcher (`WORLD_SIZE` > 1), through accelerate's `PartialState`, which
        starts the process group: gloo on CPU, NCCL with one device per rank on GPUs."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())
        return cls(state.process_index, state.num_processes)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order (a rank that died makes this raise after the group's timeout)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def share(self, tree: TaskTree, models: list[str]) -> list[str]:
        """This rank's share of `models` (whose task tree is `tree`), in their order."""
        if not self.distributed:
            return list(models)
        mine = set(partition(tree, self.world).models_of(self.rank))
        return [m for m in models if m in mine]


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
