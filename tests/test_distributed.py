"""Several processes under torchrun (gloo on CPU): every rank ends with the ranking and scores one process
finds, and no block is computed more often than once per rank."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.zoo.data import digits


SCRIPT = """
import json, os, sys
from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.zoo.data import digits
repos, store, out, strategy = json.loads(sys.argv[1])
args = SearchArguments(result_size=1, image_size=32, scorer="knn", batch_size=16, store_dir=store,
                       feature_cache=False, strategy=strategy)
res = ModelSearcher(repos, train_dataset=digits(num_items=80, seed=0), args=args).search()
with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as f:
    json.dump({"models": res.models, "iterations": res.iterations}, f)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _search(repos, store, strategy):
    args = SearchArguments(result_size=1, image_size=32, scorer="knn", batch_size=16, store_dir=str(store),
                           feature_cache=False, strategy=strategy)  # fmt: skip
    return ModelSearcher(repos, train_dataset=digits(num_items=80, seed=0), args=args).search()


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_ranks_under_torchrun_rank_as_one_process(hub, tiny_zoo, tmp_path, world):
    one = _search(tiny_zoo.repo_ids, tmp_path / "store", "alsatian")
    base = _search(tiny_zoo.repo_ids, tmp_path / "store", "base")
    payload = json.dumps([tiny_zoo.repo_ids, str(tmp_path / "store"), str(tmp_path), "alsatian"])
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={world}",
                f"--master_port={_free_port()}"]  # fmt: skip
    done = subprocess.run([*torchrun, str(script), payload], env=env, capture_output=True, text=True, timeout=600)
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
        # each task-tree node ran on the iteration's items as in one process, once on every rank that needed it
        spread, single = got["node_items"], want["node_items"]
        assert spread.keys() == single.keys()
        assert all(spread[n] % single[n] == 0 and spread[n] <= world * single[n] for n in single)
