"""`.bin`-only fine-tunes are searched as the safetensors conversion the Hub's bot opened as a pull request on their
commit (`hub.conversion`), as transformers loads them; a pull request that is not that conversion is not trusted.

The `.bin` files here are written by `torch.save` and never read: a search that unpickled one would fail the
request-log assertions before it got that far.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.hub import list_candidates
from alsatian_hf.hub.conversion import CONVERSION_BOT, CONVERSION_TITLE, find_conversion
from alsatian_hf.localhub import open_pull_request
from alsatian_hf.zoo.data import digits


ORG = "binorg"


def _bin_only(hub_root, source: str, name: str) -> str:
    """A copy of `source` whose main branch holds its weights as `pytorch_model.bin` only, as older repos do."""
    folder = hub_root / ORG / name
    folder.mkdir(parents=True)
    for f in (hub_root / source).iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, folder / f.name)
    torch.save(load_file(hub_root / source / "model.safetensors"), folder / "pytorch_model.bin")
    return f"{ORG}/{name}"


def _convert(
    hub_root, repo_id: str, source: str, *, author: str = CONVERSION_BOT, title: str = CONVERSION_TITLE
) -> int:
    """The conversion pull request: main's files with `source`'s safetensors weights added."""
    weights = {"model.safetensors": hub_root / source / "model.safetensors"}
    return open_pull_request(hub_root, repo_id, weights, title=title, author=author)


@pytest.fixture()
def converted(hub_root, tiny_zoo):
    """`binorg/ft` (tiny_zoo's second fine-tune, `.bin` only, with the bot's conversion pull request) and
    `binorg/ft-unconverted` (no pull request); removed after."""
    source = tiny_zoo.repo_ids[2]
    repo = _bin_only(hub_root, source, "ft")
    _convert(hub_root, repo, source)
    _bin_only(hub_root, tiny_zoo.repo_ids[3], "ft-unconverted")
    yield {"repo": repo, "source": source}
    shutil.rmtree(hub_root / ORG)


def _search(candidates, store):
    args = SearchArguments(result_size=3, image_size=32, store_dir=str(store), batch_size=32,
                           scorer_kwargs={"epochs": 20})  # fmt: skip
    return ModelSearcher(candidates=candidates, train_dataset=digits(num_items=120, seed=0), args=args).search()


def test_a_bin_only_fine_tune_is_searched_as_its_conversion_pull_request(hub, hub_root, tiny_zoo, converted, tmp_path):
    repo, source = converted["repo"], converted["source"]
    listed = {c.repo_id: c for c in list_candidates(author=ORG)}
    assert listed[repo].skip_reason is None  # whether it converts is looked up on opening, not in the listing
    sized = {c.repo_id: c for c in list_candidates(author=ORG, max_params=10**9)}  # its size is its conversion's
    assert sized[repo].num_parameters == hub_api().model_info(source, expand=["safetensors"]).safetensors.total
    assert "no open safetensors conversion pull request" in sized[f"{ORG}/ft-unconverted"].skip_reason
    assert not list(list_candidates(author=ORG, max_params=sized[repo].num_parameters - 1, include_skipped=False))

    hub.clear_log()
    result = _search([tiny_zoo.repo_ids[0], source, repo, f"{ORG}/ft-unconverted"], tmp_path / "store")
    rows = {r["model"]: r for r in result.ranking}
    assert rows[repo]["score"] == rows[source]["score"]  # the same weights, read from the pull request's commit
    assert rows[repo]["weights"] == "refs/pr/1" and "weights" not in rows[source]
    head = [c.commit_id for c in hub_api().list_repo_commits(repo, revision="refs/pr/1")]
    assert rows[repo]["revision"] == head[0] and head[1] == listed[repo].revision
    assert "| binorg/ft (safetensors from refs/pr/1) |" in result.summary()
    reason = result.skipped[f"{ORG}/ft-unconverted"]
    assert "only a .bin checkpoint" in reason and "no open safetensors conversion pull request" in reason
    assert not [r for r in hub.requests() if r.path.endswith(".bin")]  # never downloaded, so never unpickled

    hub.clear_log()  # a repeated search opens the conversion from the store: no discussion or commit is asked for
    again = _search([tiny_zoo.repo_ids[0], source, repo], tmp_path / "store")
    assert [r["score"] for r in again.ranking if r["model"] == repo] == [rows[repo]["score"]]
    assert not [r for r in hub.requests() if "/discussions" in r.path or "/commits/" in r.path]

    # and with no Hub at all, from the pinned commits: the store knows the conversion, and that it knows none
    pinned = [f"{c.repo_id}@{c.revision}" for c in listed.values()]
    script = f"""
import json
from alsatian_hf.search import ModelSearcher, SearchArguments
from alsatian_hf.zoo.data import digits
res = ModelSearcher({pinned!r}, train_dataset=digits(num_items=120, seed=0),
                    args=SearchArguments(result_size=3, image_size=32, batch_size=32, scorer_kwargs={{"epochs": 20}},
                                         store_dir={str(tmp_path / "store")!r})).search()
print(json.dumps([res.ranking, res.skipped]))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (row,), skipped = json.loads(out.stdout.strip().splitlines()[-1])
    assert (row["model"], row["score"], row["weights"]) == (repo, rows[repo]["score"], "refs/pr/1")
    assert "HF_HUB_OFFLINE is set" in skipped[f"{ORG}/ft-unconverted"]


def hub_api():
    from huggingface_hub import HfApi

    return HfApi()


def test_only_the_bots_open_conversion_of_this_very_commit_is_trusted(hub, hub_root, tiny_zoo):
    source = tiny_zoo.repo_ids[1]
    try:
        by_user = _bin_only(hub_root, source, "by-user")
        _convert(hub_root, by_user, source, author="someone")  # anyone may open a pull request on a public repo
        retitled = _bin_only(hub_root, source, "retitled")
        _convert(hub_root, retitled, source, title="Add safetensors")
        stale = _bin_only(hub_root, source, "stale")
        _convert(hub_root, stale, source)
        (hub_root / stale / "README.md").write_text("---\nlicense: mit\n---\nRetrained.\n")  # main moved on
        closed = _bin_only(hub_root, source, "closed")
        meta = hub_root / closed / ".pulls" / str(_convert(hub_root, closed, source)) / "discussion.json"
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "status": "closed"}))
        newest = _bin_only(hub_root, source, "newest")
        _convert(hub_root, newest, source, author="someone")
        _convert(hub_root, newest, source)
        _convert(hub_root, newest, source)

        def found(repo_id, **kw):
            return find_conversion(repo_id, hub_api().model_info(repo_id).sha, **kw)

        assert found(by_user) is None and found(retitled) is None and found(stale) is None and found(closed) is None
        assert found(by_user, private=True).num == 1  # in a private repo only members open pull requests
        conversion = found(newest)
        assert conversion.num == 3 and conversion.ref == "refs/pr/3"
        assert conversion.commit == hub_api().model_info(newest, revision="refs/pr/3").sha
    finally:
        shutil.rmtree(hub_root / ORG, ignore_errors=True)


def test_a_bin_only_repo_whose_pull_requests_cannot_be_listed_is_skipped_saying_so(hub, hub_root, converted, tmp_path):
    """An owner can turn a repo's discussions off; the Hub then refuses to list its pull requests (403), and no
    conversion can be opened there either: the skip says so and points to the one fix left, not the conversion
    Space. The listing's `max_params` check cannot size it either."""
    repo = converted["repo"]
    hub.faults.discussions_off.add(repo)
    listed = {c.repo_id: c for c in list_candidates(author=ORG, max_params=10**9)}
    assert "no open safetensors conversion pull request whose size" in listed[repo].skip_reason
    result = _search([converted["source"], repo], tmp_path / "store")
    reason = result.skipped[repo]
    assert "cannot be listed (HTTP 403: Discussions are disabled for this repo)" in reason
    assert "Ask its owner to push the weights" in reason and "convert" not in reason.split("listed")[1]
    assert [r["model"] for r in result.ranking] == [converted["source"]]


def test_a_sharded_bin_checkpoint_is_searched_as_its_sharded_conversion(hub, hub_root, tiny_bert_repo, tmp_path):
    """`pytorch_model.bin.index.json` on main; the conversion's shards and `model.safetensors.index.json` in the
    pull request, as the bot converts sharded checkpoints."""
    from alsatian_hf.zoo.data import newsgroups

    source = tiny_bert_repo.repo_ids[1]
    folder = hub_root / ORG / "bert-sharded"
    folder.mkdir(parents=True)
    try:
        shards = {f.name: f for f in (hub_root / source).iterdir() if "safetensors" in f.name}
        for f in (hub_root / source).iterdir():
            if f.name not in shards:
                shutil.copy(f, folder / f.name)
        state = {k: v for f in shards.values() if f.suffix == ".safetensors" for k, v in load_file(f).items()}
        torch.save(state, folder / "pytorch_model-00001-of-00001.bin")
        index = {"metadata": {}, "weight_map": {k: "pytorch_model-00001-of-00001.bin" for k in state}}
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
        assert len(shards) > 2  # an index and several shards
        open_pull_request(hub_root, f"{ORG}/bert-sharded", shards, title=CONVERSION_TITLE, author=CONVERSION_BOT)
        args = SearchArguments(result_size=2, max_length=16, store_dir=str(tmp_path / "store"), batch_size=32,
                               scorer_kwargs={"epochs": 20})  # fmt: skip
        data = newsgroups(num_items=60, seed=0, categories=["sci.space", "rec.autos"])
        result = ModelSearcher(candidates=[source, f"{ORG}/bert-sharded"], train_dataset=data, args=args).search()
        rows = {r["model"]: r for r in result.ranking}
        assert rows[f"{ORG}/bert-sharded"]["score"] == rows[source]["score"] and not result.skipped
        assert rows[f"{ORG}/bert-sharded"]["weights"] == "refs/pr/1"
    finally:
        shutil.rmtree(hub_root / ORG)
