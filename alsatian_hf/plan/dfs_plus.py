"""DFS+ execution plans (paper §5.2–§5.4).

The planner works on the task tree with chains folded: a node is *materialised* (kept in the cache) only
where it branches or holds some model's features; the blocks between two materialised nodes run as one
`BlockInference` step, batch by batch, without caching what lies between them.

Cache requirements follow the paper's three traversals, on sizes per item:
1. top-down, accumulate the sizes along each path (`acc`);
2. bottom-up, propagate each subtree's maximum (`req`);
3. top-down, subtract a node's size from everything strictly below its child with the largest `req`,
   since the node is released as soon as that child (visited last) exists.
C_min is the largest adjusted value. Children are visited in increasing `req` (ties by key).

Features (a model's last output) move to the feature store as soon as they exist: they count while they
are produced and are then accounted separately, not in C_min. Inputs come from the data store (root size 0).
When C_min × items exceeds the budget, the iteration's new items are split into the fewest chunks of whole
batches that fit (§5.4); every chunk runs the same plan, and scoring happens after the last chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from ..errors import PlanningError
from .task_tree import Node, TaskTree


@dataclass(frozen=True)
class BlockInference:
    """Run blocks `start..stop-1` of `model` on the cached `input` (or a root's raw inputs) into `output`."""

    model: str
    start: int
    stop: int
    input: str
    output: str
    block_hashes: tuple[str, ...]
    features_of: tuple[str, ...] = ()  # models whose features `output` is (copied to the feature store)


@dataclass(frozen=True)
class ScoreModel:
    models: tuple[str, ...]
    features: str  # node key


@dataclass(frozen=True)
class ModifyCache:
    node: str
    action: Literal["release"] = "release"


Step = Union[BlockInference, ScoreModel, ModifyCache]


@dataclass
class Plan:
    steps: list[Step]
    c_min_per_item: int  # bytes of cache per item of a chunk
    node_bytes_per_item: dict[str, int]
    visit_order: list[str]  # materialised node keys in DFS+ order
    chunks: list[list[tuple[int, ...]]] = field(default_factory=list)  # batches per chunk
    budget: int | None = None
    roots: dict[str, str] = field(default_factory=dict)  # root node key -> its input key

    @property
    def num_chunks(self) -> int:
        return max(1, len(self.chunks))

    def block_executions_per_item(self) -> int:
        return sum(s.stop - s.start for s in self.steps if isinstance(s, BlockInference))

    def c_min(self, items: int) -> int:
        return self.c_min_per_item * items


@dataclass(eq=False)
class _MNode:
    """A materialised node of the folded tree."""

    node: Node
    parent: "_MNode | None"
    children: list["_MNode"] = field(default_factory=list)
    acc: int = 0
    req: int = 0
    adj: int = 0

    @property
    def size(self) -> int:
        return 0 if self.node.is_root else self.node.bytes_per_item

    @property
    def key(self) -> str:
        return self.node.key


def _fold(tree: TaskTree) -> list[_MNode]:
    """Materialised forest: roots, branching nodes and feature nodes; chains in between are folded."""

    def materialise(node: Node, parent: _MNode | None) -> _MNode:
        m = _MNode(node, parent)
        for key in sorted(node.children):
            child = node.children[key]
            while len(child.children) == 1 and not child.leaf_models:
                child = next(iter(child.children.values()))
            m.children.append(materialise(child, m))
        return m

    return [materialise(tree.roots[k], None) for k in sorted(tree.roots)]


def _steps(roots: list[_MNode]) -> tuple[list[Step], list[str]]:
    steps: list[Step] = []
    visit: list[str] = []

    def visit_node(m: _MNode) -> None:
        visit.append(m.key)
        node = m.node
        if node.leaf_models:
            steps.append(ScoreModel(tuple(sorted(node.leaf_models)), node.key))
        for i, c in enumerate(m.children):
            rep = c.node.representative()
            path = _path_hashes(m.node, c.node)
            features = tuple(sorted(c.node.leaf_models))
            steps.append(BlockInference(rep, m.node.depth, c.node.depth, m.key, c.key, path, features))
            if i == len(m.children) - 1 and not m.node.is_root:
                steps.append(ModifyCache(m.key))  # DFS+: release the parent once its last child exists
            visit_node(c)
        if not m.children and not m.node.is_root:
            steps.append(ModifyCache(m.key))  # features moved to the feature store

    for r in roots:
        visit_node(r)
    return steps, visit


def _path_hashes(top: Node, bottom: Node) -> tuple[str, ...]:
    hashes = []
    node = bottom
    while node is not top:
        hashes.append(node.block_hash)
        node = node.parent
    return tuple(reversed(hashes))


def plan_iteration(tree: TaskTree) -> Plan:
    """DFS+ plan for one iteration over the current tree (sizes per item; chunks come from `fit_budget`)."""
    roots = _fold(tree)
    c_min = _cache_requirements(roots)
    steps, visit = _steps(roots)
    sizes = {n.key: n.bytes_per_item for n in tree.nodes()}
    roots_of = {r.key: r.node.input_key for r in roots}
    return Plan(steps=steps, c_min_per_item=c_min, node_bytes_per_item=sizes, visit_order=visit, roots=roots_of)


def _cache_requirements(roots: list[_MNode]) -> int:
    """The three traversals of §5.3 on the folded tree; returns C_min per item."""
    # 1. top-down: accumulate sizes along each path
    preorder: list[_MNode] = []
    stack = list(reversed(roots))
    while stack:
        m = stack.pop()
        m.acc = (m.parent.acc if m.parent else 0) + m.size
        preorder.append(m)
        stack.extend(reversed(m.children))
    # 2. bottom-up: each subtree's maximum; DFS+ visits children in increasing requirement
    for m in reversed(preorder):
        m.req = max([m.acc] + [c.req for c in m.children])
        m.children.sort(key=lambda c: (c.req, c.key))
    # 3. top-down: a parent is released once its last child exists, so everything strictly below that
    # child holds `released` bytes less. `released` of a child = its parent's + the grandparent's size
    # when the parent is the grandparent's last child.
    c_min = 0
    stack2: list[tuple[_MNode, int, bool]] = [(r, 0, False) for r in reversed(roots)]
    while stack2:
        m, released, is_last = stack2.pop()
        m.adj = m.acc - released
        c_min = max(c_min, m.adj)
        below = released + (m.parent.size if is_last and m.parent is not None else 0)
        for i, c in enumerate(m.children):
            stack2.append((c, below, i == len(m.children) - 1))
    return c_min


def simulate_peak(plan: Plan, items: int = 1) -> int:
    """Replays the plan's cache effects and returns the largest cache content (bytes), as a check on C_min."""
    cache: dict[str, int] = {}
    peak = 0
    for step in plan.steps:
        if isinstance(step, BlockInference):
            cache[step.output] = plan.node_bytes_per_item[step.output] * items
            peak = max(peak, sum(cache.values()))
        elif isinstance(step, ModifyCache):
            cache.pop(step.node, None)
    return peak


def fit_budget(plan: Plan, batches: list[tuple[int, ...]], budget: int | None) -> Plan:
    """Split the iteration's new batches into the fewest chunks whose C_min fits `budget` (§5.4).

    Raises:
        PlanningError: when one batch alone does not fit.
    """
    plan.budget = budget
    total = sum(len(b) for b in batches)
    if budget is None or plan.c_min(total) <= budget:
        plan.chunks = [list(batches)]
        return plan
    per_item = max(plan.c_min_per_item, 1)
    capacity = budget // per_item
    biggest = max(len(b) for b in batches)
    if capacity < biggest:
        raise PlanningError(
            f"`cache_budget` of {budget} bytes cannot hold one batch: DFS+ needs {per_item * biggest} bytes for "
            f"{biggest} items ({per_item} bytes per item). Raise `cache_budget` or lower `batch_size`."
        )
    chunks: list[list[tuple[int, ...]]] = [[]]
    used = 0
    for b in batches:
        if used + len(b) > capacity:
            chunks.append([])
            used = 0
        chunks[-1].append(b)
        used += len(b)
    plan.chunks = chunks
    return plan
