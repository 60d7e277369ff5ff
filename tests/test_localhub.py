"""The unmodified huggingface_hub client (and transformers, timm, datasets) against the local hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx2
import pytest
import torch
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from alsatian_hf.localhub import HubServer, serve_hub


@pytest.fixture()
def api(hub):
    return HfApi(endpoint=hub.url)


def test_list_models_author_search_filter_limit(api, tiny_zoo):
    ids = [m.id for m in api.list_models(author="tiny")]
    assert ids == tiny_zoo.repo_ids
    assert [m.id for m in api.list_models(author="tiny", search="ft00")] == tiny_zoo.repo_ids[1:]
    assert len(list(api.list_models(author="tiny", limit=2))) == 2
    assert [m.id for m in api.list_models(filter="library:nonexistent")] == []
    # lineage tags derived from the card's `base_model:`
    children = {tiny_zoo.repo_ids[i] for i, e in enumerate(tiny_zoo.entries) if e.parent == 0}
    by_finetune = {m.id for m in api.list_models(filter="base_model:finetune:tiny/model-base")}
    by_base = {m.id for m in api.list_models(filter="base_model:tiny/model-base")}
    assert by_finetune == by_base == children and children


def test_list_models_full_and_expand(api, tiny_zoo):
    full = list(api.list_models(author="tiny", full=True))
    assert all(m.sha and len(m.sha) == 40 and m.siblings for m in full)
    expanded = list(api.list_models(author="tiny", expand=["safetensors", "sha", "cardData"]))
    assert expanded[0].safetensors.total > 0
    assert expanded[1].card_data["base_model"] == "tiny/model-base"
    assert expanded[0].pipeline_tag is None  # not asked for


def test_list_models_paginates_with_link_header(hub, tiny_zoo, api):
    hub.page_size = 2
    try:
        ids = [m.id for m in api.list_models(author="tiny")]
    finally:
        hub.page_size = 50
    assert ids == tiny_zoo.repo_ids
    pages = [r for r in hub.requests() if r.path.startswith("/api/models?")]
    assert len(pages) == 3


def test_request_log_holds_every_answered_request(tmp_path):
    """The handler logs a request after its last byte went out; a reader of the log must still see every
    request whose response the client already holds (it did not, about once in 300 requests)."""
    with HubServer(tmp_path) as hub, httpx2.Client() as client:
        behind = 0
        for i in range(1000):
            client.get(hub.url + "/api/models?author=nobody")
            behind += len(hub.requests()) != i + 1
    assert behind == 0


def test_model_info_revision_and_files_metadata(api, tiny_zoo, hub_root):
    repo = tiny_zoo.repo_ids[1]
    info = api.model_info(repo, files_metadata=True)
    assert len(info.sha) == 40
    assert api.model_info(repo, revision=info.sha).sha == info.sha
    weights = next(s for s in info.siblings if s.rfilename == "model.safetensors")
    assert weights.size == (hub_root / repo / "model.safetensors").stat().st_size
    import hashlib

    assert weights.lfs.sha256 == hashlib.sha256((hub_root / repo / "model.safetensors").read_bytes()).hexdigest()
    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo, revision="0" * 40)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("tiny/does-not-exist")


def test_commit_sha_is_stable_content_hash(tmp_path, tiny_zoo, hub_root):
    import shutil

    from alsatian_hf.localhub._repo import FolderRepo

    repo = tiny_zoo.repo_ids[2]
    copy = tmp_path / "other" / "copy"
    shutil.copytree(hub_root / repo, copy)
    a = FolderRepo(hub_root, "model", repo).commit_sha()
    b = FolderRepo(tmp_path, "model", "other/copy").commit_sha()
    assert a == b
    (copy / "config.json").write_text("{}")
    assert FolderRepo(tmp_path, "model", "other/copy").commit_sha() != a


def test_tree_files_and_paths_info(api, tiny_zoo):
    repo = tiny_zoo.repo_ids[0]
    assert sorted(api.list_repo_files(repo)) == ["README.md", "config.json", "model.safetensors"]
    tree = {e.path: e for e in api.list_repo_tree(repo)}
    assert tree["model.safetensors"].lfs is not None and tree["config.json"].lfs is None
    info = api.get_paths_info(repo, ["config.json", "missing.txt"])
    assert [e.path for e in info] == ["config.json"]


def test_sharded_tree_listing_and_safetensors_metadata(api, tiny_bert_repo):
    repo = tiny_bert_repo.repo_ids[0]
    files = api.list_repo_files(repo)
    shards = [f for f in files if f.startswith("model-") and f.endswith(".safetensors")]
    assert len(shards) >= 2 and "model.safetensors.index.json" in files
    meta = api.get_safetensors_metadata(repo)
    assert meta.sharded and set(meta.files_metadata) == set(shards)
    assert sum(meta.parameter_count.values()) > 0
    sharded = api.get_sharded_safetensors_metadata(repo)  # one request for every shard header
    assert set(sharded.files_metadata) == set(shards)


def test_single_file_safetensors_metadata(api, tiny_zoo):
    meta = api.get_safetensors_metadata(tiny_zoo.repo_ids[0])
    assert not meta.sharded
    assert "fc.weight" in meta.files_metadata["model.safetensors"].tensors


def test_hf_hub_download_and_snapshot(tiny_zoo, hub_root):
    repo = tiny_zoo.repo_ids[3]
    path = hf_hub_download(repo, "config.json")
    assert json.loads(open(path).read()) == json.loads((hub_root / repo / "config.json").read_text())
    folder = snapshot_download(repo)
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors"]
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo, "nope.json")


def test_hf_file_system_seek_and_read(tiny_zoo, hub_root):
    repo = tiny_zoo.repo_ids[0]
    raw = (hub_root / repo / "model.safetensors").read_bytes()
    fs = HfFileSystem()
    with fs.open(f"{repo}/model.safetensors", "rb") as f:
        f.seek(100)
        assert f.read(50) == raw[100:150]


def test_library_loaders(tiny_zoo, tiny_bert_repo, digits_dataset_repo):
    import datasets
    import timm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = timm.create_model(f"hf-hub:{tiny_zoo.repo_ids[1]}", pretrained=True)
    assert model.num_classes == 10
    bert = AutoModelForSequenceClassification.from_pretrained(tiny_bert_repo.repo_ids[0])
    tok = AutoTokenizer.from_pretrained(tiny_bert_repo.repo_ids[0])
    assert bert.config.num_labels == 3 and tok("abc")["input_ids"][0] == tok.cls_token_id
    repo_id, local = digits_dataset_repo
    ds = datasets.load_dataset(repo_id, split="train")
    assert ds.num_rows == local.num_rows and ds["label"] == local["label"]


def test_range_read_is_exact(hub, tiny_zoo, hub_root):
    repo = tiny_zoo.repo_ids[0]
    raw = (hub_root / repo / "model.safetensors").read_bytes()
    url = f"{hub.url}/{repo}/resolve/main/model.safetensors"
    r = httpx2.get(url, headers={"Range": "bytes=10-99"})
    assert r.status_code == 206 and r.content == raw[10:100]
    assert r.headers["Content-Range"] == f"bytes 10-99/{len(raw)}"
    assert r.headers["Accept-Ranges"] == "bytes" and len(r.headers["X-Repo-Commit"]) == 40
    assert httpx2.get(url, headers={"Range": "bytes=-5"}).content == raw[-5:]
    assert httpx2.get(url, headers={"Range": f"bytes={len(raw)}-"}).status_code == 416
    assert httpx2.get(url, headers={"Range": "bytes=abc"}).status_code == 416
    head = httpx2.head(url)
    assert int(head.headers["Content-Length"]) == len(raw) and head.headers["ETag"]
    assert hub.requests(kind="resolve")[0].bytes_sent == 90


def test_path_traversal_is_refused(hub, tiny_zoo, hub_root, tmp_path):
    secret = hub_root.parent / "secret.txt"
    secret.write_text("top secret")
    (hub_root / tiny_zoo.repo_ids[0] / "leak.txt").symlink_to(secret)
    try:
        for path in [
            f"/{tiny_zoo.repo_ids[0]}/resolve/main/../../../secret.txt",
            f"/{tiny_zoo.repo_ids[0]}/resolve/main/%2e%2e/%2e%2e/%2e%2e/secret.txt",
            f"/{tiny_zoo.repo_ids[0]}/resolve/main//etc/passwd",
            f"/{tiny_zoo.repo_ids[0]}/resolve/main/leak.txt",
            "/../../secret.txt/resolve/main/x",
        ]:
            r = httpx2.get(hub.url + path)
            assert r.status_code in (400, 404), path
            assert b"top secret" not in r.content
    finally:
        (hub_root / tiny_zoo.repo_ids[0] / "leak.txt").unlink()


def test_fault_ignore_range_and_truncate(hub, tiny_zoo, hub_root):
    repo = tiny_zoo.repo_ids[0]
    size = (hub_root / repo / "model.safetensors").stat().st_size
    url = f"{hub.url}/{repo}/resolve/main/model.safetensors"
    hub.faults.ignore_range = True
    r = httpx2.get(url, headers={"Range": "bytes=0-9"})
    assert r.status_code == 200 and len(r.content) == size
    hub.faults.reset()
    hub.faults.truncate = 5
    with pytest.raises(httpx2.RemoteProtocolError):
        httpx2.get(url, headers={"Range": "bytes=0-99"})


def test_fault_500_makes_client_raise(hub, tiny_zoo):
    hub.faults.fail_every = 1
    with pytest.raises(Exception) as info:
        hf_hub_download(tiny_zoo.repo_ids[4], "config.json", force_download=True, etag_timeout=2)
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__
    http = [e for e in chain if isinstance(e, HfHubHTTPError)]
    assert http and http[0].response.status_code == 500


def test_fault_slow_server_times_out(hub, tiny_zoo):
    hub.faults.delay = 1.5
    start = time.monotonic()
    with pytest.raises(httpx2.TimeoutException):
        httpx2.get(f"{hub.url}/{tiny_zoo.repo_ids[0]}/resolve/main/config.json", timeout=0.3)
    assert time.monotonic() - start < 1.4


def test_context_manager_binds_free_port(tmp_path):
    (tmp_path / "o" / "m").mkdir(parents=True)
    (tmp_path / "o" / "m" / "a.txt").write_text("hi")
    with serve_hub(tmp_path) as url:
        assert httpx2.get(f"{url}/o/m/resolve/main/a.txt").text == "hi"
    with HubServer(tmp_path) as a, HubServer(tmp_path) as b:
        assert a.url != b.url


def test_cli_serve_hub(tmp_path):
    import socket

    (tmp_path / "o" / "m").mkdir(parents=True)
    (tmp_path / "o" / "m" / "a.txt").write_text("cli")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "alsatian_hf.cli", "serve-hub", str(tmp_path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(100):
            try:
                r = httpx2.get(f"http://127.0.0.1:{port}/o/m/resolve/main/a.txt")
                break
            except httpx2.ConnectError:
                time.sleep(0.1)
        assert r.text == "cli"
    finally:
        proc.terminate()
        proc.wait(10)


def test_weights_load_through_the_hub_equal_the_files(tiny_zoo, hub_root):
    import timm
    from safetensors.torch import load_file

    repo = tiny_zoo.repo_ids[2]
    model = timm.create_model(f"hf-hub:{repo}", pretrained=True)
    on_disk = load_file(hub_root / repo / "model.safetensors")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in on_disk.items())


def test_a_restarted_server_does_not_rehash_unchanged_files(tmp_path, monkeypatch):
    from alsatian_hf.localhub import _repo

    folder = tmp_path / "org" / "m"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(os.urandom(1 << 20))
    first = _repo.FolderRepo(tmp_path, "model", "org/m").files()
    monkeypatch.setattr(_repo, "_hash_cache", {})  # as in a new process: nothing in memory
    monkeypatch.setattr(_repo, "_indexes", {})

    def no_reading(*args, **kwargs):
        raise AssertionError("a file whose hashes are stored was read again")

    monkeypatch.setattr(_repo, "open", no_reading, raising=False)
    assert _repo.FolderRepo(tmp_path, "model", "org/m").files() == first
    monkeypatch.delattr(_repo, "open")
    (folder / "model.safetensors").write_bytes(os.urandom(1 << 20))  # changed: hashed again
    assert _repo.FolderRepo(tmp_path, "model", "org/m").files()[0].sha256 != first[0].sha256


def test_pull_requests_are_refs_with_their_own_files(tmp_path):
    from alsatian_hf.localhub import open_pull_request

    repo = tmp_path / "hub" / "org" / "m"
    repo.mkdir(parents=True)
    (repo / "config.json").write_text('{"model_type": "bert"}')
    (repo / "README.md").write_text("main's card")
    num = open_pull_request(tmp_path / "hub", "org/m", {"model.safetensors": b"weights", "README.md": b"the PR's card"},
                            title="Add weights", author="bot")  # fmt: skip
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (repo / ".pulls" / "1" / "tree" / "leak.txt").symlink_to(secret)  # a link out of the repo is no file of it
    with HubServer(tmp_path / "hub") as hub:
        api = HfApi(endpoint=hub.url)
        main = api.model_info("org/m")
        assert num == 1 and sorted(s.rfilename for s in main.siblings) == ["README.md", "config.json"]
        pr = api.model_info("org/m", revision="refs/pr/1")
        assert sorted(s.rfilename for s in pr.siblings) == ["README.md", "config.json", "model.safetensors"]
        assert api.model_info("org/m", revision=pr.sha).sha == pr.sha != main.sha
        assert [c.commit_id for c in api.list_repo_commits("org/m", revision="refs/pr/1")] == [pr.sha, main.sha]
        refs = api.list_repo_refs("org/m", include_pull_requests=True)
        assert [(r.ref, r.target_commit) for r in refs.pull_requests] == [("refs/pr/1", pr.sha)]
        (d,) = api.get_repo_discussions("org/m")
        assert (d.num, d.title, d.author, d.status, d.is_pull_request) == (1, "Add weights", "bot", "open", True)
        assert not list(api.get_repo_discussions("org/m", author="someone-else"))
        assert not list(api.get_repo_discussions("org/m", discussion_type="discussion"))
        assert not list(api.get_repo_discussions("org/m", discussion_status="closed"))
        cache = tmp_path / "cache"
        read = hf_hub_download("org/m", "README.md", revision="refs/pr/1", cache_dir=cache, endpoint=hub.url)
        assert open(read).read() == "the PR's card"
        assert open(hf_hub_download("org/m", "README.md", cache_dir=cache, endpoint=hub.url)).read() == "main's card"
        with pytest.raises(EntryNotFoundError):
            hf_hub_download("org/m", "model.safetensors", cache_dir=cache, endpoint=hub.url)
        with pytest.raises(RevisionNotFoundError):
            api.model_info("org/m", revision="refs/pr/2")
        r = httpx2.get(f"{hub.url}/org/m/resolve/refs%2Fpr%2F1/leak.txt")
        assert r.status_code == 404 and b"top secret" not in r.content
        for _ in range(50):  # the 51st is on the second page of discussions
            open_pull_request(tmp_path / "hub", "org/m", {}, title="Typo", author="someone")
        assert [d.num for d in api.get_repo_discussions("org/m")] == list(range(51, 0, -1))
