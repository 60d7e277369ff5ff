"""The partitioner: every model scored once, every edge computed somewhere, loads as claimed, within 1.15x of
the lower bound on M_syn-like trees, and the same assignment on every call."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys

import pytest

from alsatian_hf.errors import ConfigurationError
from alsatian_hf.plan import BlockInfo, TaskTree
from alsatian_hf.plan.partition import (
    lower_bound,
    partition,
    path_load,
    path_weights,
    scoring_owners,
    split_iteration,
    tree_bound,
    trunk_bound,
)
from alsatian_hf.zoo._recipe import recipe_task_tree


msyn_tree = recipe_task_tree  # the M_syn recipe's zoos as task trees, without building them


def _check(tree: TaskTree, workers: int):
    part = partition(tree, workers)
    assert sorted(part.assignment) == tree.models  # every leaf scored exactly once
    assert set(part.assignment.values()) <= set(range(workers))
    by_rank = [part.models_of(r) for r in range(workers)]
    loads = [path_load(tree, models) for models in by_rank]
    assert loads == pytest.approx(part.loads)  # the loads it claims are what the ranks compute
    computed = {n for models in by_rank for m in models for n in tree.model_paths[m]}
    assert computed == set(tree.nodes())  # every edge on at least one rank
    assert part.makespan >= part.bound - 1e-9 and part.bound == pytest.approx(lower_bound(tree, workers))
    assert part.duplicated == pytest.approx(sum(loads) - sum(n.cost for n in tree.nodes()))
    return part


@pytest.mark.parametrize("distribution", ["top_layers", "top_25", "top_50"])
@pytest.mark.parametrize("workers", [2, 3, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partition_properties_on_msyn_trees(distribution, workers, seed):
    """Within 1.15x of the bound that counts the trunk every busy worker computes (the plain bound assumes the
    trunk computed once, which no split of 200 top-layer fine-tunes across 8 workers can do)."""
    tree = msyn_tree(200, 12, distribution, seed)
    part = _check(tree, workers)
    assert part.bound <= part.trunk_bound == pytest.approx(trunk_bound(tree, workers))
    assert part.makespan <= 1.15 * part.trunk_bound, (part.makespan, part.trunk_bound)
    assert part.trunk_bound - 1e-9 <= tree_bound(tree, workers) <= part.makespan + 1e-9


@pytest.mark.parametrize("workers", [2, 8])
def test_lineages_of_a_few_bases_balance_too(workers):
    part = _check(msyn_tree(300, 16, "top_layers", 5, bases=3), workers)
    assert part.bound <= part.trunk_bound and part.makespan <= 1.15 * part.trunk_bound


def test_the_trunk_bound_is_what_a_shared_trunk_forces():
    """Ten heads on one trunk of cost 10, on 5 workers: each busy worker computes the trunk, so no split beats
    10 + 10 / 5 = 12, which the partition reaches, while the plain bound says 11."""
    tree = TaskTree()
    for i in range(10):
        tree.add_model(f"m{i}", "x", [BlockInfo("t1", 1, 4.0), BlockInfo("t2", 1, 6.0), BlockInfo(f"h{i}", 1, 1.0)])
    part = _check(tree, 5)
    assert part.bound == pytest.approx(11.0) and part.trunk_bound == pytest.approx(12.0)
    assert part.makespan == pytest.approx(12.0)


def test_the_tree_bound_counts_the_trunks_below_a_branch():
    """One shared block (cost 1), then two sub-trunks (cost 10) with five heads (cost 1) each, on 4 workers. The
    trunk bound sees only the first block and says 12, the longest path. But a worker that scores a head of a
    sub-trunk computes 11 of path, so the five heads below it need ceil(5 / (M - 11)) workers: all the work
    fits in 4 x M from M = 13.5 on, and the best split (3 and 2 heads on each sub-trunk) reaches 14."""
    tree = TaskTree()
    for side in ("a", "b"):
        for i in range(5):
            tree.add_model(
                f"{side}{i}", "x", [BlockInfo("t", 1, 1.0), BlockInfo(side, 1, 10.0), BlockInfo(f"{side}{i}", 1, 1.0)]
            )
    part = _check(tree, 4)
    assert part.trunk_bound == pytest.approx(12.0) and tree_bound(tree, 4) == pytest.approx(13.5)
    assert part.makespan == pytest.approx(14.0)


@pytest.mark.parametrize("distribution", ["top_layers", "top_25", "top_50"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_no_split_beats_the_tree_bound(distribution, seed):
    """Every assignment of 7 models to 3 workers, tried: the best makespan is never below the tree bound."""
    tree = msyn_tree(7, 5, distribution, seed)
    models = tree.models
    best = min(
        max(path_load(tree, [m for m, w in zip(models, split) if w == r]) for r in range(3))
        for split in itertools.product(range(3), repeat=len(models))
    )
    assert trunk_bound(tree, 3) - 1e-9 <= tree_bound(tree, 3) <= best + 1e-9, (tree_bound(tree, 3), best)


def test_one_worker_gets_everything_and_more_workers_than_models_idle():
    tree = msyn_tree(5, 4, "top_25", 0)
    one = _check(tree, 1)
    assert set(one.assignment.values()) == {0} and one.makespan == pytest.approx(one.unique_cost)
    many = _check(tree, 16)
    assert many.makespan == pytest.approx(many.bound)  # the longest path: nothing can be faster


def test_a_prefix_is_computed_twice_only_where_that_lowers_the_makespan():
    """Two big subtrees under a cheap shared stem: split, with the stem on both ranks. A trunk whose one model
    goes on past the other's features: splitting cannot lower the makespan, so it stays on one rank."""
    tree = TaskTree()
    for side in ("a", "b"):
        for i in range(2):
            tree.add_model(f"{side}{i}", "x", [BlockInfo("stem", 1, 0.1), BlockInfo(f"{side}", 1, 10.0),
                                               BlockInfo(f"{side}{i}", 1, 1.0)])  # fmt: skip
    part = _check(tree, 2)
    assert part.duplicated == pytest.approx(0.1)  # only the stem
    assert part.models_of(0) in (["a0", "a1"], ["b0", "b1"])
    heavy_prefix = TaskTree()
    heavy_prefix.add_model("short", "x", [BlockInfo("trunk", 1, 10.0)])
    heavy_prefix.add_model("long", "x", [BlockInfo("trunk", 1, 10.0), BlockInfo("head", 1, 0.5)])
    kept = _check(heavy_prefix, 2)
    assert kept.duplicated == 0 and kept.makespan == pytest.approx(10.5)


def test_the_assignment_is_the_same_on_every_call_and_in_any_insertion_order():
    tree = msyn_tree(150, 10, "top_25", 3)
    again = TaskTree()
    for m in reversed(tree.models):
        path = tree.model_paths[m]
        again.add_model(m, "x", [BlockInfo(n.block_hash, n.bytes_per_item, n.cost) for n in path])
    first = partition(tree, 8)
    assert partition(tree, 8).assignment == first.assignment
    assert partition(again, 8).assignment == first.assignment


def _check_split(tree: TaskTree, sizes: list[int], workers: int):
    split = split_iteration(tree, sizes, workers)
    assert len(split.work) == workers
    runs = [(b, m) for groups in split.work for batches, models in groups for b in batches for m in models]
    assert sorted(runs) == sorted((b, m) for b in range(len(sizes)) for m in tree.models)  # each pair once
    loads = [sum(path_load(tree, models) * sum(sizes[b] for b in batches) + path_weights(tree, models) * (i > 0)
                 for i, (batches, models) in enumerate(groups)) for groups in split.work]  # fmt: skip
    assert loads == pytest.approx(split.loads)  # what it claims is what the ranks compute, and every further pass
    assert split.unique == pytest.approx(sum(n.cost for n in tree.nodes()) * sum(sizes))
    assert split.makespan >= split.bound * (1 - 1e-9) and split.duplicated >= -1e-9 * split.unique
    return split


@pytest.mark.parametrize("distribution", ["top_layers", "top_25", "top_50"])
@pytest.mark.parametrize("workers", [2, 3, 8])
def test_an_iteration_split_by_batches_and_by_models(distribution, workers):
    """Whole batches where they balance, the tree where they don't: never worse than the tree alone, and near
    the bound once there are a few batches per rank (a short last batch spread by models fills the gap)."""
    tree = msyn_tree(60, 12, distribution, 1)
    for sizes in ([64] * 12 + [45], [64] * 6 + [41], [51], [7, 64, 64]):
        split = _check_split(tree, sizes, workers)
        tree_only = partition(tree, workers).makespan * sum(sizes)
        assert split.makespan <= tree_only * (1 + 1e-9)
        if len(sizes) >= 4 * workers:
            assert split.makespan <= 1.05 * split.bound, (sizes, split.makespan / split.bound)
    one = _check_split(tree, [64, 64, 10], 1)
    assert one.work == [[((0, 1, 2), tuple(tree.models))]] and one.duplicated == 0


def test_whole_batches_duplicate_nothing_and_a_lone_batch_splits_like_the_tree():
    tree = msyn_tree(30, 8, "top_layers", 2)
    even = _check_split(tree, [64] * 4, 2)
    assert even.duplicated == 0 and even.makespan == pytest.approx(even.bound)
    assert [[len(b) for b, _ in groups] for groups in even.work] == [[2], [2]]
    lone = _check_split(tree, [50], 3)
    part = partition(tree, 3)
    assert sorted(lone.loads) == pytest.approx(sorted(load * 50 for load in part.loads))
    assert split_iteration(tree, [64] * 5 + [9], 3) == split_iteration(tree, [64] * 5 + [9], 3)


@pytest.mark.parametrize("distribution", ["top_layers", "top_25", "top_50"])
def test_fewer_batches_than_ranks_run_in_gangs(distribution):
    """32 batches on 64 ranks: spreading every batch over all 64 computes the base's trunk on every rank for
    every batch (2x the bound and more for top-layer fine-tunes). In gangs of two ranks, each gang spreading its
    own batch, the trunk runs twice per batch: near the bound, one pass a rank, each batch in one gang."""
    tree = msyn_tree(200, 12, distribution, 0)
    sizes = [64] * 31 + [16]
    split = _check_split(tree, sizes, 64)
    assert split.makespan <= 1.1 * split.bound, split.makespan / split.bound  # 32 items a rank, not 31.25
    assert split.makespan < partition(tree, 64).makespan * sum(sizes) / 1.1  # better than the tree alone
    assert all(len(groups) == 1 for groups in split.work)  # every rank busy, in one pass
    gangs = {}
    for groups in split.work:
        for batches, models in groups:
            gangs.setdefault(batches, []).extend(models)
    assert sorted(b for batches in gangs for b in batches) == list(range(len(sizes)))  # batches in one gang each
    assert all(sorted(models) == tree.models for models in gangs.values())  # which runs every model on them
    assert split_iteration(tree, sizes, 64) == split  # deterministic


def test_gangs_follow_the_batch_sizes():
    """Batches of 128, 64 and 64 items on 8 ranks: two gangs of four, one with the big batch, one with the two
    small ones, so each gang spreads 128 items; never a batch spread over all 8."""
    tree = msyn_tree(80, 12, "top_layers", 4)
    sizes = [128, 64, 64]
    split = _check_split(tree, sizes, 8)
    gangs = {}
    for groups in split.work:
        for batches, _ in groups:
            gangs[batches] = gangs.get(batches, 0) + 1
    assert sorted(gangs.items()) == [((0,), 4), ((1, 2), 4)]
    assert split.makespan < partition(tree, 8).makespan * sum(sizes)


def test_bad_worker_counts_are_clear_errors():
    with pytest.raises(ConfigurationError, match="workers"):
        partition(msyn_tree(3, 3, "top_25", 0), 0)
    with pytest.raises(ConfigurationError, match="workers"):
        split_iteration(msyn_tree(3, 3, "top_25", 0), [8], 0)


def _weighted_tree(param_bytes: int) -> TaskTree:
    """Ten top-layer fine-tunes: a shared trunk of four light blocks, then a block of each model's own, ten
    times their cost; every block has `param_bytes` of weights."""
    tree = TaskTree()
    trunk = [BlockInfo(f"t{j}", 4, 1.0, param_bytes) for j in range(4)]
    for m in range(10):
        tree.add_model(f"m{m}", "x", [*trunk, BlockInfo(f"top{m}", 4, 10.0, param_bytes)])
    return tree


def test_short_batches_go_whole_where_their_weights_outweigh_their_flops():
    """Spreading a short batch by models costs every rank a further pass over its share: with weightless blocks
    the short batches of [64] * 6 + [16, 25] are spread, with heavy weights every batch goes whole."""
    sizes, models = [64] * 6 + [16, 25], tuple(f"m{m}" for m in range(10))
    light = _check_split(_weighted_tree(0), sizes, 2)
    assert all(len(groups) > 1 for groups in light.work) and light.makespan <= light.bound * 1.01
    heavy = _check_split(_weighted_tree(100), sizes, 2)
    assert [[(len(batches), ms) for batches, ms in groups] for groups in heavy.work] == [[(4, models)]] * 2
    assert heavy.duplicated == pytest.approx(0.0)
    # a lone batch is still spread where its FLOPs outweigh the weights: every rank gets a share
    lone = _check_split(_weighted_tree(1), [512], 2)
    assert all(groups for groups in lone.work)


def test_scoring_owners_balance_and_keep_models_where_their_features_are():
    models = [f"m{i}" for i in range(35)]
    first = scoring_owners(models, {}, 2)
    assert first == {m: i % 2 for i, m in enumerate(models)}  # held nowhere: round-robin, as `models[r::2]`
    rng = random.Random(0)
    for workers in (2, 3, 8):
        alive, holders = list(models), {}
        while alive:
            owners = scoring_owners(alive, holders, workers)
            assert owners == scoring_owners(alive, holders, workers) and sorted(owners) == sorted(alive)
            counts = [list(owners.values()).count(w) for w in range(workers)]
            assert max(counts) - min(counts) <= 1 and set(owners.values()) <= set(range(workers))
            # only the models a crowded rank cannot keep move: the fewest any balanced assignment moves
            held = sorted((sum(holders.get(m) == w for m in alive) for w in range(workers)), reverse=True)
            quotas = [len(alive) // workers + (i < len(alive) % workers) for i in range(workers)]
            moved = sum(m in holders and owners[m] != holders[m] for m in alive)
            assert moved == sum(max(0, h - q) for h, q in zip(held, quotas))
            holders = owners
            alive = sorted(rng.sample(alive, len(alive) // 2), key=models.index)
    with pytest.raises(ConfigurationError, match="workers"):
        scoring_owners(models, {}, 0)
    with pytest.raises(ConfigurationError, match="worker 5"):
        scoring_owners(models, {"m0": 5}, 2)


@pytest.mark.parametrize("distribution", ["top_layers", "top_25"])
def test_batches_left_over_after_whole_ones_run_in_gangs(distribution):
    """100 batches on 64 ranks: each rank runs one whole, and the 36 left go to gangs, not two whole ones on
    36 ranks (1.28x the bound) nor 36 batches spread over all 64, each computing the trunk on every rank."""
    tree = msyn_tree(200, 12, distribution, 0)
    sizes = [64] * 100
    split = _check_split(tree, sizes, 64)
    assert split.makespan <= 1.1 * split.bound, split.makespan / split.bound
    whole = [groups[0][0] for groups in split.work]
    assert all(len(batches) == 1 for batches in whole) and len({b for (b,) in whole}) == 64  # one whole each
    assert all(groups[0][1] == tuple(tree.models) for groups in split.work)
    gangs = {}
    for groups in split.work:
        for batches, models in groups[1:]:
            gangs.setdefault(batches, []).extend(models)
    assert sorted(b for batches in gangs for b in batches) == sorted(set(range(100)) - {b for (b,) in whole})
    assert all(sorted(models) == tree.models for models in gangs.values())  # each left batch in one gang
    assert split_iteration(tree, sizes, 64) == split  # deterministic


_SPLITS_IN_A_PROCESS = """
from alsatian_hf.plan.partition import partition, split_iteration
from alsatian_hf.zoo._recipe import recipe_task_tree
for distribution, bases in (("top_layers", 1), ("top_25", 1), ("top_50", 1), ("top_layers", 4)):
    for models in (30, 120):
        tree = recipe_task_tree(models, 12, distribution, seed=1, bases=bases)
        for workers in (2, 3, 8, 17, 64):
            print(partition(tree, workers).assignment)
            for sizes in ([64] * 5, [64] * 12 + [45], [64] * 70 + [9], [128, 64, 64]):
                split = split_iteration(tree, sizes, workers)
                print(split.work, split.loads)
"""


def test_the_split_is_the_same_in_every_process():
    """Every rank computes the split on its own, so processes with their own memory layout and string hashing
    must agree to the last bit: nodes hash by identity, and a sum over a set of them once broke ties
    differently in different processes."""
    outputs = []
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", _SPLITS_IN_A_PROCESS], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout)
    assert outputs[0] and outputs[0] == outputs[1] == outputs[2]
