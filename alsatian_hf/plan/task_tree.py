"""The task tree (paper §5.1).

Nodes are intermediate results; the edge into a node is one block inference and carries the set of models
that need it. Node identity along a path is the chained prefix hash h_i = H(h_{i-1}, content_hash(block_i)),
so equal blocks behind equal prefixes share a node. Models whose inputs differ (another preprocessing) hang
under another root: the tree is a forest. A model's features are the node its last block ends at; scoring
them is the proxy-score edge, recorded as `Node.leaf_models`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from ..errors import ConfigurationError
from ..store.identity import prefix_hash, root_key


@dataclass(frozen=True)
class BlockInfo:
    """What the planner knows of one block of one candidate."""

    content_hash: str
    bytes_per_item: int  # size of the block's output for one item
    cost: float = 1.0  # compute cost per item (FLOPs or measured seconds), for the ideal-speedup bound
    param_bytes: int = 0  # its weights, read once each time a rank runs it on a group of batches


@dataclass(eq=False)
class Node:
    key: str
    parent: "Node | None"
    depth: int  # blocks from the root; the root is depth 0
    block_hash: str | None = None
    bytes_per_item: int = 0
    cost: float = 0.0
    param_bytes: int = 0
    models: set[str] = field(default_factory=set)  # models whose path uses the edge into this node
    leaf_models: set[str] = field(default_factory=set)  # models whose features this node is
    children: dict[str, "Node"] = field(default_factory=dict)
    input_key: str = ""

    @property
    def is_root(self) -> bool:
        return self.parent is None

    def representative(self) -> str:
        """A model that runs the edge into this node (the smallest id, for determinism)."""
        return min(self.models)


class TaskTree:
    """A forest with one root per input (preprocessing) key.

    Example:
        >>> t = TaskTree()
        >>> t.add_model("m1", "img", [BlockInfo("b1", 4), BlockInfo("b2", 2)])
        >>> t.add_model("m2", "img", [BlockInfo("b1", 4), BlockInfo("b3", 2)])
        >>> t.num_edges(), t.naive_edges()
        (3, 4)
    """

    def __init__(self) -> None:
        self.roots: dict[str, Node] = {}
        self.model_paths: dict[str, list[Node]] = {}  # model id -> its nodes below the root, in order
        self._nodes: list[Node] | None = None  # `nodes()`, walked once until a model is added or pruned

    # -- building -----------------------------------------------------------------------------------------
    def add_model(self, model_id: str, input_key: str, blocks: Sequence[BlockInfo], *, depth: int = 0) -> None:
        """Add a model's path. `depth` > 0 hangs `blocks` (the model's blocks from there on) under a root that
        stands for a stored state after `depth` blocks; `input_key` then names that state."""
        if model_id in self.model_paths:
            raise ConfigurationError(f"model {model_id!r} is already in the task tree; pass each candidate once.")
        if not blocks:
            raise ConfigurationError(f"model {model_id!r} has no blocks; its adapter split off nothing.")
        self._nodes = None
        root = self.roots.get(input_key)
        if root is None:
            root = self.roots[input_key] = Node(key=root_key(input_key), parent=None, depth=depth, input_key=input_key)
        root.models.add(model_id)
        node, path = root, []
        for block in blocks:
            key = prefix_hash(node.key, block.content_hash)
            child = node.children.get(key)
            if child is None:
                child = Node(
                    key=key,
                    parent=node,
                    depth=node.depth + 1,
                    block_hash=block.content_hash,
                    bytes_per_item=int(block.bytes_per_item),
                    cost=float(block.cost),
                    param_bytes=int(block.param_bytes),
                    input_key=input_key,
                )
                node.children[key] = child
            child.models.add(model_id)
            path.append(child)
            node = child
        node.leaf_models.add(model_id)
        self.model_paths[model_id] = path

    def prune(self, model_ids: Iterable[str]) -> None:
        """Remove models: their ids leave every edge, and edges left without models are deleted."""
        self._nodes = None
        for model_id in list(model_ids):
            path = self.model_paths.pop(model_id, None)
            if path is None:
                continue
            path[-1].leaf_models.discard(model_id)
            root = path[0].parent
            root.models.discard(model_id)
            for node in reversed(path):
                node.models.discard(model_id)
                if not node.models:
                    del node.parent.children[node.key]
            if not root.models:
                del self.roots[root.input_key]

    # -- queries --------------------------------------------------------------------------------------------
    @property
    def models(self) -> list[str]:
        return sorted(self.model_paths)

    def nodes(self) -> Iterator[Node]:
        """Every non-root node, depth first. The walk is kept until the tree changes: the partitioner reads
        the nodes a dozen times to split one iteration (a 50k-node tree: 0.03 s a walk)."""
        if self._nodes is None:
            self._nodes = list(self._walk())
        return iter(self._nodes)

    def _walk(self) -> Iterator[Node]:
        stack = [r for _, r in sorted(self.roots.items(), reverse=True)]
        while stack:
            node = stack.pop()
            if not node.is_root:
                yield node
            stack.extend(node.children[k] for k in sorted(node.children, reverse=True))

    def num_edges(self) -> int:
        """Unique block-inference edges: block executions the tree needs per item."""
        return sum(1 for _ in self.nodes())

    def naive_edges(self) -> int:
        """Block executions per item without sharing (every model runs whole)."""
        return sum(len(p) for p in self.model_paths.values())
