"""Task tree, DFS+ and the data schedule: pure Python, milliseconds."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alsatian_hf.errors import PlanningError
from alsatian_hf.plan import (
    BlockInference,
    BlockInfo,
    ModifyCache,
    ScoreModel,
    TaskTree,
    fit_budget,
    make_schedule,
    num_iterations,
    plan_iteration,
    simulate_peak,
    stratified_split,
)


def _blocks(*names, size=1):
    return [BlockInfo(n, size) for n in names]


def test_plan_package_imports_no_torch():
    code = "import sys, alsatian_hf.plan; print('torch' in sys.modules, 'huggingface_hub' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_fig7_add_and_fig8_prune():
    t = TaskTree()
    t.add_model("M1", "img", _blocks("B1", "B2", "B3", "B4", "B5", "B6"))
    t.add_model("M2", "img", _blocks("B1", "B2", "B7", "B8", "B9", "B10"))
    assert t.num_edges() == 10  # M2 shares B1, B2
    t.add_model("M3", "img", _blocks("B1", "B2", "B7", "B8", "B11", "B12"))
    assert t.num_edges() == 12  # M3 adds only B11, B12
    assert t.naive_edges() == 18
    b7 = t.model_paths["M3"][2]
    assert b7.block_hash == "B7" and b7.models == {"M2", "M3"}
    t.prune(["M2"])
    assert t.num_edges() == 10
    assert b7.models == {"M3"}
    assert all("M2" not in n.models for n in t.nodes())
    assert sorted(n.block_hash for n in t.nodes()) == sorted(
        ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12"]
    )


def test_equal_blocks_behind_different_prefixes_do_not_share():
    t = TaskTree()
    t.add_model("a", "img", _blocks("X", "S"))
    t.add_model("b", "img", _blocks("Y", "S"))
    assert t.num_edges() == 4


def test_different_inputs_form_a_forest():
    t = TaskTree()
    t.add_model("a", "img224", _blocks("B1", "B2"))
    t.add_model("b", "img160", _blocks("B1", "B2"))
    assert len(t.roots) == 2 and t.num_edges() == 4
    t.prune(["a"])
    assert list(t.roots) == ["img160"]


def _fig9_tree() -> tuple[TaskTree, dict[str, str]]:
    """Paper Fig. 9: intermediates 1..7 with sizes 9, 6, 4, 4, 2, 2, 2 (0 is the input)."""
    t = TaskTree()
    t.add_model("m7", "x", [BlockInfo("b1", 9), BlockInfo("b3", 4), BlockInfo("b7", 2)])
    t.add_model("m6", "x", [BlockInfo("b1", 9), BlockInfo("b3", 4), BlockInfo("b6", 2)])
    t.add_model("m5", "x", [BlockInfo("b1", 9), BlockInfo("b2", 6), BlockInfo("b5", 2)])
    t.add_model("m4", "x", [BlockInfo("b1", 9), BlockInfo("b2", 6), BlockInfo("b4", 4)])
    names = {n.key: n.block_hash[1:] for n in t.nodes()}
    names[t.roots["x"].key] = "0"
    return t, names


def test_fig9_visit_order_and_c_min():
    t, names = _fig9_tree()
    plan = plan_iteration(t)
    order = [names[k] for k in plan.visit_order]
    assert order[:3] == ["0", "1", "3"]
    assert set(order[3:5]) == {"7", "6"}  # equal requirements (15): the tie goes by node key
    assert order[5:] == ["2", "5", "4"]
    # the paper's 15, not the reference code's 19: leaf features are accounted separately
    assert plan.c_min_per_item == 15
    assert simulate_peak(plan) == 15
    assert simulate_peak(plan, items=10) == plan.c_min(10) == 150


def test_every_edge_executed_once_and_every_leaf_scored_once():
    t, _ = _fig9_tree()
    plan = plan_iteration(t)
    executed = [h for s in plan.steps if isinstance(s, BlockInference) for h in s.block_hashes]
    assert Counter(executed) == Counter(n.block_hash for n in t.nodes())
    assert plan.block_executions_per_item() == t.num_edges()
    scored = [m for s in plan.steps if isinstance(s, ScoreModel) for m in s.models]
    assert sorted(scored) == t.models


def test_chains_are_folded_into_one_step():
    t = TaskTree()
    t.add_model("a", "x", _blocks("B1", "B2", "B3", "B4"))
    t.add_model("b", "x", _blocks("B1", "B2", "B5", "B6"))
    plan = plan_iteration(t)
    bis = [s for s in plan.steps if isinstance(s, BlockInference)]
    assert [s.block_hashes for s in bis] == [("B1", "B2"), ("B3", "B4"), ("B5", "B6")] or [
        s.block_hashes for s in bis
    ] == [("B1", "B2"), ("B5", "B6"), ("B3", "B4")]
    assert {s.features_of for s in bis[1:]} == {("a",), ("b",)}


def test_chunking_when_budget_is_too_small():
    t, _ = _fig9_tree()
    plan = plan_iteration(t)
    batches = [tuple(range(i, min(i + 4, 30))) for i in range(0, 30, 4)]  # 30 items, batches of 4
    fit_budget(plan, batches, budget=15 * 30)
    assert plan.num_chunks == 1
    fit_budget(plan, batches, budget=15 * 10)
    # capacity 10 items per chunk -> whole batches of 4: 8 + 8 + 8 + 6 -> 4 chunks
    assert plan.num_chunks == 4
    assert all(sum(len(b) for b in chunk) * 15 <= 150 for chunk in plan.chunks)
    assert [i for chunk in plan.chunks for b in chunk for i in b] == list(range(30))
    with pytest.raises(PlanningError, match="batch_size"):
        fit_budget(plan, batches, budget=15 * 3)


@st.composite
def _trees(draw):
    num_models = draw(st.integers(1, 12))
    depth = draw(st.integers(1, 6))
    t = TaskTree()
    for m in range(num_models):
        shared = draw(st.integers(0, depth - 1))
        parent = draw(st.integers(0, max(0, m - 1)))
        blocks = []
        for j in range(depth):
            name = f"b{parent}-{j}" if (j < shared and m > 0) else f"b{m}-{j}"
            blocks.append(BlockInfo(name, draw(st.integers(1, 50))))
        # sizes depend on the block only, as they do for real models
        blocks = [BlockInfo(b.content_hash, hash(b.content_hash) % 50 + 1) for b in blocks]
        root = draw(st.sampled_from(["a", "b"]))
        t.add_model(f"m{m}", root, blocks)
    return t


@settings(max_examples=150, deadline=None)
@given(tree=_trees(), items=st.integers(1, 40), batch=st.integers(1, 8), budget_frac=st.floats(0.05, 1.5))
def test_property_peak_within_budget_and_leaves_scored_once(tree, items, batch, budget_frac):
    plan = plan_iteration(tree)
    assert simulate_peak(plan) == plan.c_min_per_item
    batches = [tuple(range(i, min(i + batch, items))) for i in range(0, items, batch)]
    budget = max(1, int(plan.c_min(items) * budget_frac))
    try:
        fit_budget(plan, batches, budget)
    except PlanningError:
        assert plan.c_min_per_item * batch > budget
        return
    for chunk in plan.chunks:
        assert simulate_peak(plan, items=sum(len(b) for b in chunk)) <= budget
    scored = [m for s in plan.steps if isinstance(s, ScoreModel) for m in s.models]
    assert sorted(scored) == tree.models
    executed = [h for s in plan.steps if isinstance(s, BlockInference) for h in s.block_hashes]
    assert len(executed) == tree.num_edges()
    released = [s.node for s in plan.steps if isinstance(s, ModifyCache)]
    assert len(released) == len(set(released))


def test_schedule_iterations_and_doubling_slices():
    labels = [i % 5 for i in range(500)]
    s = make_schedule(labels, num_candidates=16, result_size=2, seed=0)
    assert s.num_iterations == 3 == math.ceil(math.log2(16 / 2))
    sizes = [len(u.items) for u in s.train_slices]
    assert sum(sizes) == 400 and len(s.test.items) == 100
    assert sizes[1] in (2 * sizes[0] - 1, 2 * sizes[0], 2 * sizes[0] + 1)
    assert sizes[2] in (2 * sizes[1] - 1, 2 * sizes[1], 2 * sizes[1] + 1)
    assert s.train_items(3) == tuple(i for u in s.train_slices for i in u.items)
    assert set(s.train_items(3)).isdisjoint(s.test.items)
    assert [u.name for u in s.new_units(1)] == ["test", "train_1"] and [u.name for u in s.new_units(2)] == ["train_2"]
    assert Counter(labels[i] for i in s.test.items) == Counter({c: 20 for c in range(5)})  # stratified
    assert make_schedule(labels, num_candidates=16, result_size=2, seed=0) == s  # seeded
    assert make_schedule(labels, num_candidates=16, result_size=2, seed=1) != s


def test_schedule_when_n_le_k_scores_everything_once():
    labels = [i % 3 for i in range(60)]
    s = make_schedule(labels, num_candidates=3, result_size=5)
    assert s.num_iterations == 1 and num_iterations(3, 5) == 1
    assert len(s.train_slices[0].items) == 60 - len(s.test.items)


def test_survivor_counts():
    labels = [i % 2 for i in range(100)]
    s = make_schedule(labels, num_candidates=10, result_size=3)
    assert s.num_iterations == 2
    assert s.survivors_after(1, 10) == 5 and s.survivors_after(2, 5) == 3


def test_stratified_split_caps_and_keeps_every_class_in_train():
    labels = [0] * 50 + [1] * 3
    train, test = stratified_split(labels, test_size=0.5, max_test_items=10, seed=0)
    assert len(test) == 10 and sorted(train + test) == list(range(53))
    assert any(labels[i] == 1 for i in train)


def test_planner_scales_to_5000_models():
    import random

    rng = random.Random(0)
    t = TaskTree()
    for i in range(5000):
        cut = 20 - rng.randrange(1, 5)
        t.add_model(f"m{i}", "x", [BlockInfo(f"b{j}" if j < cut else f"b{j}-{i}", 1000) for j in range(20)])
    plan = plan_iteration(t)
    assert simulate_peak(plan) == plan.c_min_per_item
    assert plan.block_executions_per_item() == t.num_edges()


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(20, 400),
    classes=st.integers(2, 12),
    candidates=st.integers(2, 40),
    per_class=st.integers(1, 30),
    seed=st.integers(0, 3),
)
def test_min_items_per_class_front_loads_the_first_slice(n, classes, candidates, per_class, seed):
    """D_1 holds min(per_class, the class's train items) of every class; the slices still partition D_train,
    grow after D_1, and the option off is the paper's schedule."""
    labels = [(i * 7 + i // 3) % classes for i in range(n)]
    paper = make_schedule(labels, num_candidates=candidates, result_size=1, seed=seed)
    front = make_schedule(labels, num_candidates=candidates, result_size=1, seed=seed, min_items_per_class=per_class)
    assert (
        make_schedule(labels, num_candidates=candidates, result_size=1, seed=seed, min_items_per_class=None) == paper
    )
    train = [i for u in paper.train_slices for i in u.items]
    assert sorted(i for u in front.train_slices for i in u.items) == sorted(train)
    assert front.test == paper.test and front.num_iterations == paper.num_iterations
    in_train = Counter(labels[i] for i in train)
    wanted = sum(min(per_class, k) for k in in_train.values())
    if front.num_iterations > 1 and wanted <= len(train) - (front.num_iterations - 1):  # room for later slices
        first = Counter(labels[i] for i in front.train_slices[0].items)
        assert all(first[c] >= min(per_class, in_train[c]) for c in in_train)
        assert len(front.train_slices[0].items) >= len(paper.train_slices[0].items)
    assert all(len(u.items) >= 1 for u in front.train_slices)
