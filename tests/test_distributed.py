"""Several processes under torchrun (gloo on CPU): every rank ends with the ranking and scores one process
finds, every block runs on all the items, and the ranks together do less than each doing it all."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.zoo.data import digits


SCRIPT = """
import json, os, sys
from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.candidates import CandidateAssembler
from alsatian_hf.errors import CandidateSkipped
from alsatian_hf.search.callbacks import SearchCallback
from alsatian_hf.zoo.data import digits
repos, store, out, strategy, fault = json.loads(sys.argv[1])
rank = int(os.environ["RANK"])
if fault == "skip" and rank == 1:  # this rank alone cannot prepare the second candidate
    assemble = CandidateAssembler.assemble
    def failing(self, spec, model_id, opened):
        if model_id == repos[1]:
            raise CandidateSkipped(model_id, "rank 1 cannot read it")
        return assemble(self, spec, model_id, opened)
    CandidateAssembler.assemble = failing
class Dies(SearchCallback):
    def on_iteration_end(self, *, iteration, scores, survivors):
        if fault == "die" and rank == 1:
            os._exit(9)  # as a SIGKILL: no clean-up, no goodbye to the other ranks
# a cached run pins the layout: "auto" times it per thread count, and the ranks' one thread may time it otherwise
# than the process that filled the cache (the layout is part of a feature's key)
args = SearchArguments(result_size=1, image_size=32, scorer="knn", batch_size=16, store_dir=store,
                       feature_cache=fault == "cached", strategy=strategy,
                       channels_last="true" if fault == "cached" else "auto",
                       rank_timeout=float(os.environ.get("TEST_RANK_TIMEOUT", "1800")))
res = ModelSearcher(repos, train_dataset=digits(num_items=80, seed=0), args=args, callbacks=[Dies()]).search()
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"models": res.models, "iterations": res.iterations, "skipped": res.skipped}, f)
with open(os.path.join(out, f"summary{rank}.md"), "w") as f:  # apart: its seconds are each rank's own
    f.write(res.summary())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(tmp_path, world: int, payload, timeout: float = 600, script_text: str = SCRIPT):
    """`script_text` (a search by default) under torchrun on `world` ranks of 1 thread, with `payload` as its one
    argument, in JSON."""
    script = tmp_path / "search.py"
    script.write_text(script_text)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}  # torchrun's own temp folders too
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={world}",
                f"--master_port={_free_port()}"]  # fmt: skip
    return subprocess.run([*torchrun, str(script), json.dumps(payload)], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _search(repos, store, strategy):
    args = SearchArguments(result_size=1, image_size=32, scorer="knn", batch_size=16, store_dir=str(store),
                           feature_cache=False, strategy=strategy)  # fmt: skip
    return ModelSearcher(repos, train_dataset=digits(num_items=80, seed=0), args=args).search()


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_ranks_under_torchrun_rank_as_one_process(hub, tiny_zoo, tmp_path, world):
    one = _search(tiny_zoo.repo_ids, tmp_path / "store", "alsatian")
    base = _search(tiny_zoo.repo_ids, tmp_path / "store", "base")
    done = _torchrun(tmp_path, world, [tiny_zoo.repo_ids, str(tmp_path / "store"), str(tmp_path), "alsatian", None])
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    assert all(r == ranks[0] for r in ranks)  # every rank ends with the same result
    result = ranks[0]
    assert result["models"] == one.models == base.models
    for got, want in zip(result["iterations"], one.iterations):
        assert got["survivors"] == want["survivors"]
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)
        assert len(got["rank_block_executions"]) == world and sum(got["rank_block_executions"]) == got[
            "block_executions"]  # fmt: skip
        # each rank's seconds per phase; the iteration's are the slowest rank's
        assert len(got["rank_seconds"]) == world and not want["rank_seconds"]
        assert got["seconds"] == {p: max(r[p] for r in got["rank_seconds"]) for p in got["seconds"]}
        # every task-tree node ran on all the iteration's items (split by batches), some on several ranks (a
        # batch spread by models computes the prefixes its shares have in common on each), never more
        spread, single = got["node_items"], want["node_items"]
        assert spread.keys() == single.keys()
        assert all(single[n] <= spread[n] <= world * single[n] for n in single)
        spread, single = got["block_time"], want["block_time"]  # and so every block, by its items
        assert spread.keys() == single.keys()
        assert all(single[h][0] <= spread[h][0] <= world * single[h][0] for h in single)
        assert sum(got["rank_block_executions"]) < world * want["block_executions"]
    # the summary's table of ranks: each rank's block executions over the search
    table = (tmp_path / "summary0.md").read_text().split("## Ranks\n\n")[1].split("\n\n")[0].splitlines()
    work = [sum(it["rank_block_executions"][r] for it in result["iterations"]) for r in range(world)]
    assert [row.split(" | ")[:2] for row in table[2:]] == [[f"| {r}", str(n)] for r, n in enumerate(work)]
    assert "## Ranks" not in one.summary()


@pytest.mark.slow
def test_base_under_torchrun_runs_every_model_once_on_every_item(hub, tiny_zoo, tmp_path):
    """`base` extracts every item in its first iteration; its later ones find the features at the rank that
    scores each model, so the ranks together run exactly the blocks one process runs, never again."""
    one = _search(tiny_zoo.repo_ids, tmp_path / "store", "base")
    done = _torchrun(tmp_path, 2, [tiny_zoo.repo_ids, str(tmp_path / "store"), str(tmp_path), "base", None])
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1] and ranks[0]["models"] == one.models
    for got, want in zip(ranks[0]["iterations"], one.iterations):
        assert got["survivors"] == want["survivors"]
        assert sum(got["rank_block_executions"]) == got["block_executions"] == want["block_executions"]
    assert one.iterations[0]["block_executions"] > 0 and one.iterations[-1]["block_executions"] == 0


@pytest.mark.slow
def test_ranks_score_what_the_feature_cache_holds_and_run_no_block(hub, tiny_zoo, tmp_path):
    """`base` in one process leaves every model's features on every item in the feature cache; ranks searching
    with another scorer (so no iteration is restored) read them all: nothing runs, every iteration reports
    every candidate as cached, and the ranking is the one a search without the cache returns."""
    repos, store = tiny_zoo.repo_ids, tmp_path / "store"
    args = SearchArguments(result_size=1, image_size=32, scorer="linear", batch_size=16, store_dir=str(store),
                           strategy="base", channels_last="true")  # fmt: skip
    ModelSearcher(repos, train_dataset=digits(num_items=80, seed=0), args=args).search()
    done = _torchrun(tmp_path, 2, [repos, str(store), str(tmp_path), "alsatian", "cached"])
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    clean = _search(repos, tmp_path / "clean", "alsatian")
    assert ranks[0]["models"] == clean.models
    for got, want in zip(ranks[0]["iterations"], clean.iterations, strict=True):
        assert not got["restored"] and got["survivors"] == want["survivors"]
        assert got["cached"] == got["candidates"] and got["block_executions"] == 0
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)


def test_an_iteration_combines_into_what_each_rank_did(tmp_path):
    """`Ranks.combine` in a group of one: the scores come back bit for bit (a negative zero and a NaN too), the
    sets as sets, and the counters as `merge_counters` has them, a block outside the given lists included."""
    import math

    import torch.distributed as dist

    from alsatian_hf.engine import Counters
    from alsatian_hf.search.distributed import Ranks, Share, merge_counters

    alive = ["a", "b", "c", "d"]
    counters = Counters(
        block_executions=12,
        compute_cost=3.5,
        cache_peak=7,
        chunks=2,
        block_time={"h1": [8, 0.25], "h2": [4, 0.125], "other": [1, 0.5]},
        node_items={"n1": 8},
    )
    share = Share({"a": -0.0, "b": 0.1 + 0.2, "c": math.nan, "d": -3e-300}, ["b"], {"a", "c"}, ["d"], counters, True)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        total = Ranks(0, 1).combine(share, alive, blocks=["h1", "h2", "h3"], nodes=["n0", "n1"])
    finally:
        dist.destroy_process_group()
    assert list(total.scores) == alive
    assert [math.copysign(1, total.scores["a"]), total.scores["b"], total.scores["d"]] == [-1, 0.1 + 0.2, -3e-300]
    assert math.isnan(total.scores["c"])
    assert (total.cached, total.extracted, total.held) == ({"b"}, {"a", "c"}, {"d"})
    assert total.counters == merge_counters([counters]) and total.rank_block_executions == [12]
    assert total.unique_edges


EXCHANGE = """
import json, os, sys
import torch
from alsatian_hf.search.distributed import Ranks
out = json.loads(sys.argv[1])
ranks = Ranks.current()
gen = torch.Generator().manual_seed(ranks.rank)
parts = []
for to in range(ranks.world):  # for each receiver its own tensors: other names, dtypes and sizes
    named = {"f32": torch.randn(3 + ranks.rank + to, 5, generator=gen), "bf16": torch.randn(4, generator=gen).bfloat16(),
             ("i64", f"from {ranks.rank}", to): torch.arange(7) * ranks.rank}  # a tuple name, as the features have
    if ranks.rank == 1:
        named = {"only": named["f32"][:, ::2]}  # a non-contiguous view, fewer bytes than the others send
    if (ranks.rank, to) == (2, 0):
        named = {}  # nothing for rank 0
    parts.append(named)
got = ranks.send_tensors(parts)
def as_json(named):
    assert all(type(k) in (str, tuple) for k in named)  # names come back as they were sent
    return [[k, str(t.dtype), list(t.shape), t.float().tolist()] for k, t in named.items()]
with open(os.path.join(out, f"rank{ranks.rank}.json"), "w") as f:
    json.dump({"got": [as_json(named) for named in got], "sent": [as_json(n) for n in parts]}, f)
"""


@pytest.mark.slow
def test_ranks_send_each_rank_its_own_named_tensors_of_any_dtype_and_size(tmp_path):
    """`send_tensors` (the features' exchange) delivers to each rank what every rank sent it, and only that:
    names (strings and tuples), dtypes, shapes and values, with unequal byte counts and an empty part."""
    done = _torchrun(tmp_path, 3, str(tmp_path), timeout=300, script_text=EXCHANGE)
    assert done.returncode == 0, done.stderr[-3000:]
    out = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(3)]
    for r in range(3):
        assert out[r]["got"] == [out[s]["sent"][r] for s in range(3)]  # its own part too, as given
    assert out[0]["got"][2] == [] and out[2]["got"][1][0][:3] == ["only", "torch.float32", [6, 3]]
    assert out[1]["got"][0][1][:2] == ["bf16", "torch.bfloat16"]
    assert out[1]["got"][2][2][0] == ["i64", "from 2", 1] and out[1]["got"][2][2][3] == [0, 2, 4, 6, 8, 10, 12]


EXITS = """
import atexit, json, os, sys
import torch.distributed as dist
out, starter = json.loads(sys.argv[1])
def after():  # registered first, so it runs after the library's own exit handler
    with open(os.path.join(out, f"exit{os.environ['RANK']}"), "w") as f:
        f.write(str(dist.is_initialized()))
    if dist.is_initialized():
        dist.destroy_process_group()  # the caller's group: the caller destroys it
atexit.register(after)
if starter == "caller":  # as a script that makes its `Accelerator` first
    from accelerate import PartialState
    PartialState(cpu=True)
from alsatian_hf.search.distributed import Ranks
ranks = Ranks.current(60)
ranks.gather(ranks.rank)
"""


@pytest.mark.slow
@pytest.mark.parametrize("starter", ["search", "caller"])
def test_the_group_a_search_started_is_destroyed_at_exit(tmp_path, starter):
    """Left to interpreter finalization, a gloo group can abort its rank after a search that succeeded (7 of 16
    launches of 3 ranks exchanging tensors did), and the launcher then fails the whole run. The group the search
    started is destroyed at exit, while the interpreter is whole; one the caller started is the caller's."""
    done = _torchrun(tmp_path, 3, [str(tmp_path), starter], timeout=300, script_text=EXITS)
    assert done.returncode == 0, done.stderr[-3000:]
    still_up = [(tmp_path / f"exit{r}").read_text() for r in range(3)]
    assert still_up == (["False"] * 3 if starter == "search" else ["True"] * 3)


@pytest.mark.slow
def test_a_candidate_one_rank_cannot_prepare_is_skipped_on_every_rank(hub, tiny_zoo, tmp_path):
    repos = tiny_zoo.repo_ids
    done = _torchrun(tmp_path, 2, [repos, str(tmp_path / "store"), str(tmp_path), "alsatian", "skip"])
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    assert ranks[0]["skipped"] == {repos[1]: "rank 1 cannot read it"}
    without = _search([r for r in repos if r != repos[1]], tmp_path / "store", "alsatian")
    assert ranks[0]["models"] == without.models
    assert [it["survivors"] for it in ranks[0]["iterations"]] == [it["survivors"] for it in without.iterations]


@pytest.mark.slow
def test_a_rank_that_dies_stops_the_others_with_an_error(hub, tiny_zoo, tmp_path):
    """Rank 1 dies after iteration 1 (os._exit, as a SIGKILL); rank 0 must not wait for it forever: the
    launcher stops it and fails, naming the rank that died, well within the test's timeout."""
    started = time.perf_counter()
    done = _torchrun(tmp_path, 2, [tiny_zoo.repo_ids, str(tmp_path / "store"), str(tmp_path), "alsatian", "die"],
                     timeout=300)  # fmt: skip
    assert done.returncode != 0 and time.perf_counter() - started < 300
    assert "rank" in done.stderr and "exitcode" in done.stderr
    assert not (tmp_path / "rank0.json").exists() and not (tmp_path / "rank1.json").exists()


@pytest.mark.slow
def test_accelerate_launch_runs_the_cli_search_on_two_processes(hub, tiny_zoo, tmp_path):
    """`accelerate launch --num_processes 2 -m alsatian_hf search ...` ranks as one process does; rank 0 alone
    prints the ranking and writes `output_dir`."""
    data = tmp_path / "digits"
    digits(num_items=80, seed=0).save_to_disk(str(data))
    one = _search(tiny_zoo.repo_ids, tmp_path / "store", "alsatian")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port())]  # fmt: skip
    search = ["-m", "alsatian_hf", "search", "--models", ",".join(tiny_zoo.repo_ids), "--dataset", str(data),
              "--result_size", "1", "--image_size", "32", "--scorer", "knn", "--batch_size", "16",
              "--store_dir", str(tmp_path / "store"), "--feature_cache", "false",
              "--output_dir", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run([*launch, *search], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(one.best) == 1  # the ranking is printed once, by rank 0, and names the same model
    written = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert [r["model"] for r in written["ranking"]] == one.models


@pytest.mark.slow
def test_without_a_launcher_a_dead_rank_stops_the_others_with_rank_lost_error(hub, tiny_zoo, tmp_path):
    """Ranks started by hand (the env a launcher would set, no launcher to kill the rest): rank 1 dies after
    iteration 1 and rank 0 stops with `RankLostError` naming `rank_timeout`, instead of hanging."""
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    port = str(_free_port())
    payload = json.dumps([tiny_zoo.repo_ids, str(tmp_path / "store"), str(tmp_path), "alsatian", "die"])
    started = time.perf_counter()
    procs = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": port, "TEST_RANK_TIMEOUT": "30"}  # fmt: skip
        procs.append(subprocess.Popen([sys.executable, str(script), payload], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))  # fmt: skip
    _, err0 = procs[0].communicate(timeout=300)
    procs[1].communicate(timeout=60)
    assert procs[1].returncode == 9  # it died as told
    assert procs[0].returncode not in (0, None) and time.perf_counter() - started < 300
    assert "RankLostError" in err0 and "rank_timeout" in err0
    assert not (tmp_path / "rank0.json").exists()


TEXT_SCRIPT = """
import json, os, sys
from datasets import load_from_disk
from alsatian_hf import ModelSearcher, SearchArguments
candidates, data, out, args = json.loads(sys.argv[1])
res = ModelSearcher(candidates, train_dataset=load_from_disk(data), args=SearchArguments(**args)).search()
with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as f:
    json.dump({"iterations": res.iterations, "skipped": res.skipped}, f)
"""


@pytest.mark.slow
def test_a_block_that_fails_on_some_rows_drops_its_candidate_on_every_rank_as_one_process_does(
    hub, hub_root, tiny_bert_repo, tmp_path
):
    """A fine-tune whose embedding matrix lacks the row of one token fails on the one text that has it. The rank
    that runs it tells the others, and every rank drops it in the iteration one process drops it in (the
    second: `base` met the row in its first, on one rank, and did not send the rows it lacks); it used to end
    a distributed search."""
    import random

    from datasets import ClassLabel, Dataset, Features, Value, load_from_disk
    from safetensors.torch import load_file, save_file

    shrunk = tmp_path / "shrunk-vocab"
    shutil.copytree(hub_root / tiny_bert_repo.repo_ids[1], shrunk)
    for shard in shrunk.glob("*.safetensors"):
        tensors = load_file(shard)
        for key in [k for k in tensors if k.endswith("word_embeddings.weight")]:
            tensors[key] = tensors[key][:30].clone()  # "z" (id 30) and every "##" piece have no row
        save_file(tensors, shard, metadata={"format": "pt"})
    config = json.loads((shrunk / "config.json").read_text())
    (shrunk / "config.json").write_text(json.dumps({**config, "vocab_size": 30}))
    rng = random.Random(0)
    texts = [" ".join(rng.choice("abcdefghijklmno"[(i % 2) * 7 :][:8]) for _ in range(8)) for i in range(120)]
    texts[20] += " z"  # a row of the second iteration's slice
    features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b"])})
    Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(120)]}, features=features).save_to_disk(
        str(tmp_path / "ds")
    )
    candidates = [str(shrunk), *tiny_bert_repo.repo_ids]
    for strategy in ("alsatian", "base"):
        args = dict(strategy=strategy, result_size=1, scorer="logme", batch_size=8, max_length=16,
                    feature_cache=False, store_dir=str(tmp_path / "store"))  # fmt: skip
        one = ModelSearcher(
            candidates, train_dataset=load_from_disk(str(tmp_path / "ds")), args=SearchArguments(**args)
        ).search()
        assert list(one.skipped) == [str(shrunk)] and one.iterations[1]["failed"] == one.skipped
        done = _torchrun(tmp_path, 2, [candidates, str(tmp_path / "ds"), str(tmp_path), args], script_text=TEXT_SCRIPT)
        _assert_ranks_drop_as(one, done, tmp_path)


@pytest.mark.slow
def test_a_candidate_whose_features_are_not_finite_is_dropped_on_every_rank_as_one_process_does(
    hub, tiny_zoo, diverged, tmp_path
):
    """A diverged fine-tune (NaN weights) gets a NaN score on the rank that scores it; the sum over ranks keeps
    the NaN, so every rank drops it with one process's reason."""
    broken = diverged
    repos = [*tiny_zoo.repo_ids, str(broken)]
    one = _search(repos, tmp_path / "store", "alsatian")
    assert list(one.skipped) == [str(broken)] and one.iterations[0]["failed"] == one.skipped
    done = _torchrun(tmp_path, 2, [repos, str(tmp_path / "store"), str(tmp_path), "alsatian", None])
    _assert_ranks_drop_as(one, done, tmp_path)


def _assert_ranks_drop_as(one, done, tmp_path) -> None:
    """Both ranks of `done` ended with one process's result `one`: the same candidates dropped, with the same
    reasons, in the same iterations, and the same survivors and scores."""
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1] and ranks[0]["skipped"] == one.skipped
    for got, want in zip(ranks[0]["iterations"], one.iterations, strict=True):
        assert (got["survivors"], got["failed"]) == (want["survivors"], want["failed"])
        assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)
