"""One iteration's work split across workers (ranks) to minimise the makespan, along two axes.

`split_iteration` splits the iteration's batches: a rank given a whole batch runs every model on it, so no
block is computed twice and only features travel. Where batches run out (the last short one, an iteration
of one batch) a batch is spread by models along the task tree with `partition`; with more ranks than
batches, or the batches left over when they don't divide among the ranks, within gangs of a few ranks, so
that a shared trunk is computed once per gang, not on every rank.

`partition` splits the tree. A worker scores the models assigned to it and computes the union of their
root-to-leaf paths, so its load is the cost of that union (block cost per item; every model of an iteration
runs on the same items). Keeping a subtree on one worker computes its prefix once; splitting it lets more
workers share its leaves, at the price of computing the prefix on each of them. The lower bound is
max(unique cost / workers, longest path).

Two ways are tried and the smaller makespan kept. *Runs*: the models in depth-first order cut into at most
one contiguous run per worker, the cut found by bisection on the largest run's load; runs keep lineages
together, so a trunk is computed by as few workers as its share of the work needs. *Jobs*: subtrees (or the
models whose features a split node itself is), cut from the roots down until none costs more than a
threshold, assigned longest first, each to the worker where the load it adds (its subtree plus whatever of
its prefix the worker lacks) leaves the smaller total; several thresholds are tried.

The bound max(unique / workers, longest path) is not reachable where models share long trunks (a base's
frozen blocks under top-layer fine-tunes): every worker that scores one of them computes the trunk.
`trunk_bound` counts that for the trunks below the roots, and `tree_bound` at every node; the `partition`
table of the benchmark card reports the makespan against all three.

Pure Python and deterministic (keys, never ids or hashing order, break ties), so every rank computes the same
split without talking.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from ..errors import ConfigurationError
from .task_tree import Node, TaskTree


# thresholds tried, as fractions of the lower bound: 1.0 splits least, the smaller ones balance more finely
THRESHOLDS = (1.0, 0.7, 0.5, 0.35, 0.25, 0.15)
# What a pass of a rank over some models (an extraction group) costs besides their FLOPs per item, in FLOPs
# per byte of their weights. On this project's 2-core CPU (resnet18 top_layers at 32 px, 1 thread a rank), a
# pass of n models over a batch of 3 to 45 items took 9 ms + 4.5 ms x n beyond its FLOPs: about 45 FLOPs a
# byte. It is what spreading a short batch by models costs besides the shared prefix computed twice: a
# further pass over a share of the models on every rank (a spread batch of 16 items: 0.10 s for 18 models).
WEIGHT_COST_PER_BYTE = 40.0


@dataclass(frozen=True)
class Partition:
    """Which worker scores which model, and what each computes.

    Args:
        assignment: model id -> worker (rank).
        loads: each worker's cost per item: the union of its models' paths.
        unique_cost: the whole tree's cost per item (each edge once).
        bound: max(unique_cost / workers, longest root-to-leaf path).
        trunk_bound: the tighter bound where all models share a trunk (`trunk_bound`).
    """

    assignment: dict[str, int]
    loads: list[float]
    unique_cost: float
    bound: float
    trunk_bound: float = 0.0
    workers: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "workers", len(self.loads))

    @property
    def makespan(self) -> float:
        return max(self.loads, default=0.0)

    @property
    def duplicated(self) -> float:
        """Cost per item computed on more than one worker."""
        return sum(self.loads) - self.unique_cost

    def models_of(self, rank: int) -> list[str]:
        return sorted(m for m, r in self.assignment.items() if r == rank)


def lower_bound(tree: TaskTree, workers: int) -> float:
    """max(unique cost / workers, the longest root-to-leaf path): no partition does better."""
    return max(sum(n.cost for n in tree.nodes()) / workers, _longest_path(tree))


def _longest_path(tree: TaskTree) -> float:
    return max((sum(n.cost for n in path) for path in tree.model_paths.values()), default=0.0)


def _lineages(tree: TaskTree) -> list[tuple[float, float]]:
    """(trunk, rest) per subtree below a root: the trunk is its chain down to the first branch or features,
    which every model of the subtree runs."""
    out = []
    for root in tree.roots.values():
        for top in root.children.values():
            node, trunk, stack, total = top, top.cost, [top], 0.0
            while len(node.children) == 1 and not node.leaf_models:
                node = next(iter(node.children.values()))
                trunk += node.cost
            while stack:
                n = stack.pop()
                total += n.cost
                stack.extend(n.children.values())
            out.append((trunk, total - trunk))
    return out


def trunk_bound(tree: TaskTree, workers: int) -> float:
    """A tighter lower bound: every worker that scores a model of a subtree computes that subtree's trunk. A
    makespan M then needs ceil(rest / (M - trunk)) workers on each subtree, and all the work they do,
    sum(trunk x workers + rest), must fit in workers x M; the least such M, by bisection."""
    return _trunk_bounds(tree)(workers)


def _trunk_bounds(tree: TaskTree):
    """`trunk_bound` as a function of the worker count, the tree walked once."""
    lineages = _lineages(tree)
    longest, unique = _longest_path(tree), sum(n.cost for n in tree.nodes())

    def feasible(m: float, workers: int) -> bool:
        need = 0.0
        for trunk, rest in lineages:
            if rest > 0 and m <= trunk:
                return False
            need += trunk * (max(1, math.ceil(rest / (m - trunk) - 1e-12)) if rest > 0 else 1) + rest
        return need <= workers * m * (1 + 1e-12)

    def bound(workers: int) -> float:
        low = max(unique / workers, longest)  # the plain bound: trunks computed once
        high = max(low, sum(trunk + rest for trunk, rest in lineages))  # one worker does it all
        return _least_feasible(lambda m: feasible(m, workers), low, high)

    return bound


def _least_feasible(feasible, low: float, high: float) -> float:
    """The least makespan M in [low, high] that `feasible` (false below some M, true from there on) accepts,
    by bisection to a relative 1e-9; `high` must be feasible."""
    if feasible(low):
        return low
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (low, mid) if feasible(mid) else (mid, high)
        if high - low <= 1e-9 * high:
            break
    return high


def tree_bound(tree: TaskTree, workers: int) -> float:
    """The trunk bound applied at every node, not just the trunks below the roots: still a lower bound, and
    never below `trunk_bound`.

    Every worker that scores a model below node n computes n's path (cost P_n), and the subtree strictly below
    n (cost B_n) is computed by those workers, at most M - P_n each: so at least ceil(B_n / (M - P_n)) of them
    compute n, and at least as many as compute any child of n. The work all workers compute, the sum over
    nodes of cost x that count, must fit in workers x M; the least such M, by bisection. Walks every node once
    per step, so it is for reporting (`partition` does not call it): up to 0.6 s for 5000 M_syn models.
    """
    order = list(tree.nodes())  # depth first: parents before children, the roots left out
    index = {id(n): i for i, n in enumerate(order)}
    parent = [index.get(id(n.parent), -1) for n in order]  # -1: a child of a root
    cost = [n.cost for n in order]
    path, below = [0.0] * len(order), [0.0] * len(order)
    for i, p in enumerate(parent):
        path[i] = (path[p] if p >= 0 else 0.0) + cost[i]
    for i in reversed(range(len(order))):
        if parent[i] >= 0:
            below[parent[i]] += below[i] + cost[i]
    inner = [i for i in range(len(order)) if below[i] > 0]

    def feasible(m: float) -> bool:
        count = [1] * len(order)
        for i in inner:
            if m <= path[i]:
                return False
            count[i] = max(1, math.ceil(below[i] / (m - path[i]) - 1e-12))
        for i in reversed(range(len(order))):  # children before parents
            if parent[i] >= 0 and count[i] > count[parent[i]]:
                count[parent[i]] = count[i]
        return math.fsum(c * k for c, k in zip(cost, count)) <= workers * m * (1 + 1e-12)

    low = max(math.fsum(cost) / workers, max(path, default=0.0))  # the plain bound
    return _least_feasible(feasible, low, max(low, math.fsum(cost)))


def _path_nodes(tree: TaskTree, models) -> set[Node]:
    """The union of `models`' paths. Nodes hash by identity, so it iterates in memory-address order, which
    differs between ranks: whatever is summed over it must come out the same in any order."""
    return {n for m in models for n in tree.model_paths[m]}


def path_load(tree: TaskTree, models) -> float:
    """The cost of the union of `models`' paths: what a worker scoring them computes.

    Summed with `math.fsum`, which rounds the exact sum once: a plain `sum` in the set's order gave two ranks
    loads that differed in the last bits, broke a tie differently and assigned different work
    (`test_the_split_is_the_same_in_every_process`).
    """
    return math.fsum(n.cost for n in _path_nodes(tree, models))


def path_weights(tree: TaskTree, models) -> float:
    """What a pass over the union of `models`' paths costs besides its FLOPs (loading and reading the weights,
    starting each block), in the units of `cost`. The bytes are integers, so their sum is exact in any order."""
    return WEIGHT_COST_PER_BYTE * sum(n.param_bytes for n in _path_nodes(tree, models))


@dataclass(eq=False)
class _Job:
    node: Node
    whole: bool  # the subtree below `node`; else only the models whose features `node` is
    cost: float  # alone: prefix above `node` + what the job computes at and below it
    own: float  # what the job computes at and below `node`

    def sort_key(self) -> tuple:
        return (-self.cost, self.node.key, self.whole)


class _Costs:
    """Per node: the cost of the path down to it, and of its subtree."""

    def __init__(self, tree: TaskTree):
        self.path: dict[int, float] = {}
        self.subtree: dict[int, float] = {}
        order = [*(tree.roots[k] for k in sorted(tree.roots)), *tree.nodes()]  # parents before children
        for node in order:
            self.path[id(node)] = (self.path[id(node.parent)] if node.parent else 0.0) + node.cost
        for node in reversed(order):  # sums in key order: the same floats whatever order models were added in
            self.subtree[id(node)] = node.cost + sum(self.subtree[id(node.children[k])] for k in sorted(node.children))

    def whole(self, node: Node) -> _Job:
        return _Job(node, True, self.path[id(node)] - node.cost + self.subtree[id(node)], self.subtree[id(node)])

    def leaves_only(self, node: Node) -> _Job:
        return _Job(node, False, self.path[id(node)], node.cost)


def _jobs(tree: TaskTree, costs: _Costs, threshold: float) -> list[_Job]:
    """Subtree jobs from the roots down, the costliest split first, until none above `threshold` can split."""
    heap: list[tuple[tuple, int, _Job]] = []
    done: list[_Job] = []
    counter = 0
    for root in (tree.roots[k] for k in sorted(tree.roots)):
        for key in sorted(root.children):
            job = costs.whole(root.children[key])
            heapq.heappush(heap, (job.sort_key(), counter, job))
            counter += 1
    while heap:
        _, _, job = heapq.heappop(heap)
        if job.cost <= threshold or not job.whole or not job.node.children:
            done.append(job)
            continue
        parts = [costs.whole(job.node.children[k]) for k in sorted(job.node.children)]
        if job.node.leaf_models:
            parts.append(costs.leaves_only(job.node))
        for part in parts:
            heapq.heappush(heap, (part.sort_key(), counter, part))
            counter += 1
    return sorted(done, key=_Job.sort_key)


def _assign(jobs: list[_Job], workers: int) -> tuple[list[float], list[list[_Job]]]:
    """Longest job first, to the worker where it leaves the smaller load (ties: the lower rank)."""
    loads = [0.0] * workers
    held: list[set[int]] = [set() for _ in range(workers)]  # ids of prefix nodes each worker computes
    holders: dict[int, set[int]] = {}  # prefix node id -> workers computing it
    placed: list[list[_Job]] = [[] for _ in range(workers)]

    def missing(worker: int, job: _Job) -> tuple[float, list[Node]]:
        """What of the job's prefix (and, for a leaves-only job, its node) the worker lacks."""
        nodes, node = [], job.node if not job.whole else job.node.parent
        while node is not None and not node.is_root and id(node) not in held[worker]:
            nodes.append(node)
            node = node.parent
        extra = sum(n.cost for n in nodes) + (job.own if job.whole else 0.0)
        return extra, nodes

    for job in jobs:
        anchor = job.node if not job.whole else job.node.parent
        options = set(holders.get(id(anchor), ())) | {min(range(workers), key=lambda w: (loads[w], w))}
        best = None
        for worker in sorted(options):
            extra, nodes = missing(worker, job)
            if best is None or (loads[worker] + extra, worker) < (best[0], best[1]):
                best = (loads[worker] + extra, worker, nodes)
        total, worker, nodes = best
        loads[worker] = total
        placed[worker].append(job)
        for n in nodes:
            held[worker].add(id(n))
            holders.setdefault(id(n), set()).add(worker)
    return loads, placed


def _models(job: _Job) -> list[str]:
    if not job.whole:
        return sorted(job.node.leaf_models)
    out, stack = [], [job.node]
    while stack:
        node = stack.pop()
        out.extend(node.leaf_models)
        stack.extend(node.children.values())
    return out


def _dfs_segments(tree: TaskTree, workers: int, bound: float) -> list[list[str]]:
    """The models in depth-first order, cut into at most `workers` contiguous runs with the smallest largest
    run. A run's load is the union of its models' paths, which in depth-first order grows by each model's
    path below where it meets the previous one's; for a given cap the greedy cut (each run as long as it
    fits) needs the fewest runs, so a bisection on the cap finds the best cut."""
    models: list[str] = []
    stack = [tree.roots[k] for k in sorted(tree.roots, reverse=True)]
    while stack:
        node = stack.pop()
        models.extend(sorted(node.leaf_models))
        stack.extend(node.children[k] for k in sorted(node.children, reverse=True))
    full, inc, previous = [], [], []
    for m in models:
        path = tree.model_paths[m]
        shared = 0
        while shared < min(len(path), len(previous)) and path[shared] is previous[shared]:
            shared += 1
        full.append(sum(n.cost for n in path))
        inc.append(sum(n.cost for n in path[shared:]))
        previous = path

    def cut(cap: float) -> list[int] | None:
        starts, load = [0], full[0] if models else 0.0
        for i in range(1, len(models)):
            if load + inc[i] <= cap:
                load += inc[i]
            else:
                starts.append(i)
                load = full[i]
                if len(starts) > workers:
                    return None
        return starts

    low, high = max([bound, *full]), sum(inc) if models else 0.0
    best = cut(high)
    for _ in range(60):
        if high - low <= 1e-9 * max(high, 1.0):
            break
        mid = (low + high) / 2
        starts = cut(mid)
        if starts is None:
            low = mid
        else:
            high, best = mid, starts
    bounds = [*best, len(models)]
    return [models[a:b] for a, b in zip(bounds, bounds[1:])]


def partition(tree: TaskTree, workers: int) -> Partition:
    """Assign every model of `tree` to one of `workers` ranks, minimising the largest rank's load.

    Raises:
        ConfigurationError: for fewer than one worker.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigurationError(f"`workers` must be a positive integer, got {workers!r}.")
    costs = _Costs(tree)
    bound = lower_bound(tree, workers)
    unique = sum(n.cost for n in tree.nodes())
    options = [_dfs_segments(tree, workers, bound)]  # runs of leaves: keeps lineages together
    for fraction in THRESHOLDS if workers > 1 else ():  # subtree jobs, longest first: balances odd shapes
        _, placed = _assign(_jobs(tree, costs, bound * fraction), workers)
        options.append([[m for job in jobs for m in _models(job)] for jobs in placed])
    best: tuple | None = None
    for groups in options:
        loads = [path_load(tree, g) for g in groups] + [0.0] * (workers - len(groups))
        score = (max(loads, default=0.0), sum(loads))  # then the least duplicated work
        if best is None or score < best[0]:
            best = (score, loads, groups)
    _, loads, groups = best
    assignment = {m: w for w, group in enumerate(groups) for m in group}
    return Partition(
        assignment=assignment, loads=loads, unique_cost=unique, bound=bound, trunk_bound=trunk_bound(tree, workers)
    )


@dataclass(frozen=True)
class IterationSplit:
    """One iteration's work on `workers` ranks, in cost x items.

    Args:
        work: per rank, its (batch indices, models) groups: it runs those models on those batches, a pass each.
        loads: each rank's cost x items, plus `path_weights` of each of its passes after the first.
        bound: the whole tree's cost x all items / workers: no split does better.
        unique: the whole tree's cost x all items: what one process computes, in one pass.
    """

    work: list[list[tuple[tuple[int, ...], tuple[str, ...]]]]
    loads: list[float]
    bound: float
    unique: float

    @property
    def makespan(self) -> float:
        return max(self.loads, default=0.0)

    @property
    def duplicated(self) -> float:
        """Cost x items computed on more than one rank (prefixes of batches spread by models)."""
        return sum(self.loads) - self.unique


def split_iteration(tree: TaskTree, batch_sizes: list[int], workers: int) -> IterationSplit:
    """Split one iteration, whose batches hold `batch_sizes` items, across `workers` ranks.

    A batch given whole to one rank runs every model there: nothing is computed twice, and only its features travel
    to the others afterwards (small next to the compute). Spreading a batch by models along `partition` computes
    shared prefixes on several ranks, but it fills the gaps whole batches leave: the last, short batch, an iteration
    of one batch, more ranks than batches. So the largest batches go whole, each to the least loaded rank, and the k
    smallest are spread, each with the heaviest share of the tree going to the least loaded rank; every k is tried.
    When the batches don't divide among the ranks, gangs are tried too for the remainder (`_gang_split`, all the
    batches where there are fewer than ranks): the ranks in groups of a few, each group running its batches spread
    over its own members only, so a trunk is computed once per group, not once per rank. The smallest makespan (then
    the least work) is kept. A rank runs its whole batches in one pass over its models and each spread pattern in
    another, and every further pass costs its models' weights again (`path_weights`): for a short batch that costs
    more than its FLOPs, so it is spread only where that still pays. Batches keep their items, so every rank
    computes the bits one process computes.

    Raises:
        ConfigurationError: for fewer than one worker.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigurationError(f"`workers` must be a positive integer, got {workers!r}.")
    models = tuple(tree.models)
    unique = sum(n.cost for n in tree.nodes())
    order = sorted(range(len(batch_sizes)), key=lambda b: (-batch_sizes[b], b))
    shares = _Shares(tree, unique)
    part = shares.of(workers) if workers > 1 and order else None
    heaviest = sorted(range(workers), key=lambda s: (-part.loads[s], s)) if part is not None else []
    members = part.members if part is not None else []  # each share's, sorted
    share_weights = [shares.weights(workers, s) for s in range(len(members))]

    def plan(spread_count: int):
        loads, whole = _deal_whole(order[: len(order) - spread_count], batch_sizes, workers, unique)
        spread: dict[tuple[int, ...], list[int]] = {}  # the partition share of every rank -> batches so spread
        passes = [int(bool(batches)) for batches in whole]
        for b in order[len(order) - spread_count :]:
            by_rank = [0] * workers
            for r, s in zip(sorted(range(workers), key=lambda r: (loads[r], r)), heaviest):
                by_rank[r] = s
                loads[r] += part.loads[s] * batch_sizes[b]
            if tuple(by_rank) not in spread:  # a pass of its own on every rank with models in its share
                for r, s in enumerate(by_rank):
                    if members[s]:
                        loads[r] += share_weights[s] if passes[r] else 0.0
                        passes[r] += 1
            spread.setdefault(tuple(by_rank), []).append(b)
        work: list[list[tuple[tuple[int, ...], tuple[str, ...]]]] = []
        for r in range(workers):
            groups = [(tuple(sorted(whole[r])), models)] if whole[r] else []
            for by_rank, batches in spread.items():
                if members[by_rank[r]]:
                    groups.append((tuple(sorted(batches)), tuple(members[by_rank[r]])))
            work.append(groups)
        return (max(loads, default=0.0), sum(loads), spread_count), loads, work

    options = [plan(k) for k in range(len(order) + 1 if part is not None else 1)]
    tail = len(order) % workers  # with fewer batches than ranks, all of them
    if part is not None and tail:
        options.append(_gang_split(batch_sizes, order, workers, shares, tail))
    _, loads, work = min(options, key=lambda p: p[0])
    return IterationSplit(
        work=work, loads=loads, bound=unique * sum(batch_sizes) / workers, unique=unique * sum(batch_sizes)
    )


def _deal_whole(batches: list[int], batch_sizes: list[int], workers: int, unique: float):
    """Each batch whole to the least loaded rank, ties to the lowest: (loads in cost x items, each rank's
    batches)."""
    loads, whole = [0.0] * workers, [[] for _ in range(workers)]
    for b in batches:
        w = min(range(workers), key=lambda r: (loads[r], r))
        loads[w] += unique * batch_sizes[b]
        whole[w].append(b)
    return loads, whole


@dataclass(frozen=True)
class _Share:
    loads: list[float]  # each worker's cost per item (`Partition.loads`)
    members: list[list[str]]  # each worker's models, sorted

    @property
    def makespan(self) -> float:
        return max(self.loads)


class _Shares:
    """`partition` of one tree for each worker count asked, computed once, its shares' weights, and its
    trunk-bound estimate."""

    def __init__(self, tree: TaskTree, unique: float):
        self.tree, self.unique = tree, unique
        self._of: dict[int, _Share] = {}
        self._weights: dict[tuple[int, int], float] = {}
        self._estimates: dict[int, float] = {}
        self._bound = None

    def of(self, workers: int) -> _Share:
        if workers not in self._of:
            if workers == 1:  # it runs everything
                self._of[1] = _Share([self.unique], [list(self.tree.models)])
            else:
                part = partition(self.tree, workers)
                self._of[workers] = _Share(part.loads, [part.models_of(s) for s in range(workers)])
        return self._of[workers]

    def weights(self, workers: int, share: int) -> float:
        """`path_weights` of one share of `of(workers)`: what a further pass over its models costs. Computed
        where first asked: a gang layout asks it of the same share for each gang of its size."""
        if (workers, share) not in self._weights:
            self._weights[workers, share] = path_weights(self.tree, self.of(workers).members[share])
        return self._weights[workers, share]

    def estimate(self, workers: int) -> float:
        """What `of(workers).makespan` will be, without partitioning: the trunk bound, or the exact figure
        where it is known already."""
        if workers in self._of or workers == 1:
            return self.of(workers).makespan
        if workers not in self._estimates:
            self._bound = self._bound or _trunk_bounds(self.tree)
            self._estimates[workers] = self._bound(workers)
        return self._estimates[workers]


# how many gang layouts, the best on the estimate, are partitioned for real and compared
GANG_CANDIDATES = 2


def _gang_split(batch_sizes: list[int], order: list[int], workers: int, shares: _Shares, tail: int):
    """The last `tail` batches of `order` (fewer than the ranks) in gangs; the others whole, each to the least
    loaded rank, in a pass of their own.

    The ranks form G gangs of g or g + 1 consecutive ranks. Each tail batch is dealt (the largest first) to the
    gang where it ends soonest, and each gang runs its batches spread over its own ranks along
    `partition(tree, its size)`: one pass a rank for them, and every shared prefix computed once per gang,
    where spreading every batch over all ranks computes it on every rank. G is chosen on the trunk-bound
    estimate of each gang size's makespan, then the best few layouts are partitioned and compared.
    """
    spread = order[len(order) - tail :]
    base, own = _deal_whole(order[: len(order) - tail], batch_sizes, workers, shares.unique)

    def layout(gangs: int, speed) -> tuple[float, list[int], list[list[int]]]:
        sizes = [workers // gangs + (j < workers % gangs) for j in range(gangs)]
        starts = [max(base[sum(sizes[:j]) : sum(sizes[: j + 1])]) for j in range(gangs)]
        items, dealt = [0] * gangs, [[] for _ in range(gangs)]
        for b in spread:
            j = min(range(gangs), key=lambda j: (starts[j] + (items[j] + batch_sizes[b]) * speed(sizes[j]), j))
            items[j] += batch_sizes[b]
            dealt[j].append(b)
        return max(starts[j] + items[j] * speed(sizes[j]) for j in range(gangs)), sizes, dealt

    counts = sorted({min(tail, workers // size) for size in range(1, workers + 1)})  # distinct gang counts
    estimated = sorted((layout(n, shares.estimate)[0], n) for n in counts)
    models = tuple(shares.tree.models)
    best = None
    for _, gangs in estimated[:GANG_CANDIDATES]:
        _, sizes, dealt = layout(gangs, lambda g: shares.of(g).makespan)
        loads, work = [], []
        for size, batches in zip(sizes, dealt):
            share = shares.of(size)
            items = sum(batch_sizes[b] for b in batches)
            for s in range(size):
                r = len(loads)
                groups = [(tuple(sorted(own[r])), models)] if own[r] else []
                load = base[r] + share.loads[s] * items
                if batches and share.members[s]:
                    groups.append((tuple(sorted(batches)), tuple(share.members[s])))
                    if own[r]:  # a second pass: its models' weights again
                        load += shares.weights(size, s)
                loads.append(load)
                work.append(groups)
        option = ((max(loads), sum(loads), len(order) + 1), loads, work)
        if best is None or option[0] < best[0]:
            best = option
    return best


def scoring_owners(models: list[str], holders: dict[str, int], workers: int) -> dict[str, int]:
    """Which worker scores each of `models` in an iteration, and so keeps its features for the next one.

    Each worker scores as many models as the others, give or take one. A model stays with the worker in
    `holders` that kept its features from earlier iterations wherever that balance allows (the workers that
    hold the most take the odd models), so that only the models pruning left on crowded workers travel again;
    models held nowhere (the first iteration, a restored one) are dealt round-robin in `models` order.

    Raises:
        ConfigurationError: for fewer than one worker, or a holder that is not a worker.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigurationError(f"`workers` must be a positive integer, got {workers!r}.")
    held = [0] * workers
    for m in models:
        if m in holders:
            if not 0 <= holders[m] < workers:
                raise ConfigurationError(f"{m!r} is held by worker {holders[m]}, not one of the {workers} workers.")
            held[holders[m]] += 1
    quota = [0] * workers
    for i, w in enumerate(sorted(range(workers), key=lambda w: (-held[w], w))):
        quota[w] = len(models) // workers + (i < len(models) % workers)
    owners, movers = {}, []
    for m in models:
        w = holders.get(m)
        if w is not None and quota[w] > 0:
            owners[m] = w
            quota[w] -= 1
        else:
            movers.append(m)
    free = [w for k in range(max(quota)) for w in range(workers) if quota[w] > k]  # round-robin over what is left
    owners.update(zip(movers, free))
    return owners
