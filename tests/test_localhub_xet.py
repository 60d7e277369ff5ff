"""The local Hub speaks Xet: the real hf_xet client downloads byte-identical files and ranges through its CAS."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import hf_xet
import pytest
import torch
from safetensors.torch import save_file

from alsatian_hf import _xet
from alsatian_hf.localhub import HubServer


def _checkpoint(folder: Path, seed: int, *, change: tuple[str, int] | None = None) -> Path:
    """A real safetensors file of a few MB; `change` alters one element of one tensor (a fine-tune)."""
    g = torch.Generator().manual_seed(0)
    tensors = {f"layer{i}.weight": torch.randn(256, 512, generator=g) for i in range(6)}
    tensors["head.weight"] = torch.randn(10, 512, generator=torch.Generator().manual_seed(seed))
    if change is not None:
        name, index = change
        tensors[name].view(-1)[index] += 1.0
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / "model.safetensors")
    (folder / "config.json").write_text("{}")
    return folder / "model.safetensors"


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def _token(hub: HubServer, repo: str) -> dict:
    return json.loads(_get(f"{hub.url}/api/models/{repo}/xet-read-token/main")[1])


@pytest.fixture()
def xet_hub(tmp_path):
    with HubServer(tmp_path / "root") as hub:
        yield hub


def test_real_client_downloads_byte_identical_files_through_xet(xet_hub, tmp_path):
    path = _checkpoint(xet_hub.root / "xorg" / "base", seed=1)
    script = (
        "from huggingface_hub import constants, hf_hub_download, snapshot_download\n"
        "assert not constants.HF_HUB_DISABLE_XET\n"
        "print(hf_hub_download('xorg/base', 'model.safetensors'))\n"
        "print(snapshot_download('xorg/base'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_XET"}
    env.update(HF_ENDPOINT=xet_hub.url, HF_HOME=str(tmp_path / "hf"))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    file_path, snapshot = out.stdout.split()
    assert Path(file_path).read_bytes() == path.read_bytes()
    assert (Path(snapshot) / "model.safetensors").read_bytes() == path.read_bytes()
    hf = Path(sys.executable).with_name("hf")  # the `hf download` command line, through hf_xet as well
    cli = [str(hf), "download", "xorg/base", "model.safetensors", "--local-dir", str(tmp_path / "cli")]
    out = subprocess.run(cli, env={**env, "HF_HOME": str(tmp_path / "hf2")}, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "cli" / "model.safetensors").read_bytes() == path.read_bytes()
    paths = [r.path for r in xet_hub.requests()]
    assert any("/cas/v1/reconstructions/" in p for p in paths) and any("/cas/xorbs/" in p for p in paths)
    assert not any(r.path.endswith("model.safetensors") and r.method == "GET" for r in xet_hub.requests())


def test_real_client_reads_a_byte_range_through_xet(xet_hub):
    path = _checkpoint(xet_hub.root / "xorg" / "base", seed=1)
    data = path.read_bytes()
    tok = _token(xet_hub, "xorg/base")
    file_hash = xet_hub.xet.file_hash(path)
    assert file_hash == hf_xet.hash_files([str(path)])[0].hash
    group = hf_xet.XetSession().new_download_stream_group(
        endpoint=tok["casUrl"], token=tok["accessToken"], token_expiry_unix_secs=tok["exp"]
    )
    start, end = 1_000_003, 2_500_001
    got = b"".join(group.download_stream(hf_xet.XetFileInfo(file_hash, len(data)), start=start, end=end))
    assert got == data[start:end]


def test_resolve_tree_and_paths_info_carry_the_xet_hash(xet_hub):
    path = _checkpoint(xet_hub.root / "xorg" / "base", seed=1)
    expected = hf_xet.hash_files([str(path)])[0].hash
    status, _, headers = _get(f"{xet_hub.url}/xorg/base/resolve/main/model.safetensors", {"Range": "bytes=0-7"})
    assert status == 206 and headers["X-Xet-Hash"] == expected
    assert 'rel="xet-auth"' in headers["Link"] and "xet-read-token" in headers["X-Xet-Refresh-Route"]
    tree = json.loads(_get(f"{xet_hub.url}/api/models/xorg/base/tree/main")[1])
    by_path = {e["path"]: e for e in tree}
    assert by_path["model.safetensors"]["xetHash"] == expected and "xetHash" not in by_path["config.json"]
    body = json.dumps({"paths": ["model.safetensors"]}).encode()
    req = urllib.request.Request(f"{xet_hub.url}/api/models/xorg/base/paths-info/main", data=body,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    assert json.load(urllib.request.urlopen(req))[0]["xetHash"] == expected


def test_cas_answers_like_the_real_one(xet_hub):
    path = _checkpoint(xet_hub.root / "xorg" / "base", seed=1)
    size, file_hash = path.stat().st_size, xet_hub.xet.file_hash(path)
    auth = {"Authorization": f"Bearer {_token(xet_hub, 'xorg/base')['accessToken']}"}
    cas = f"{xet_hub.url}/cas"
    assert _get(f"{cas}/v1/reconstructions/{file_hash}")[0] == 401  # no token
    assert _get(f"{cas}/v1/reconstructions/{file_hash}", {"Authorization": "Bearer nope"})[0] == 401
    assert _get(f"{cas}/v2/reconstructions/{file_hash}", auth)[0] == 404  # clients fall back to v1
    assert _get(f"{cas}/v1/reconstructions/{'0' * 64}", auth)[0] == 404
    assert _get(f"{cas}/v1/reconstructions/{file_hash}", {**auth, "Range": f"bytes={size}-{size + 9}"})[0] == 416
    status, body, _ = _get(f"{cas}/v1/reconstructions/{file_hash}", {**auth, "Range": "bytes=100000-100009"})
    plan = json.loads(body)
    assert status == 200 and len(plan["terms"]) == 1 and 0 < plan["offset_into_first_range"] <= 100000
    (term,) = plan["terms"]
    (info,) = plan["fetch_info"][term["hash"]]
    a, b = info["url_range"]["start"], info["url_range"]["end"]
    status, xorb, _ = _get(info["url"], {"Range": f"bytes={a}-{b}"})
    assert status == 206 and len(xorb) == b - a + 1
    chunk = b"".join(_xet.decode_xorb(xorb))
    assert len(chunk) == term["unpacked_length"]
    offset = plan["offset_into_first_range"]
    assert chunk[offset : offset + 10] == path.read_bytes()[100000:100010]
    assert _get(info["url"], {"Range": f"bytes={a}-{b + 1}"})[0] == 403  # only the signed range
    assert _get(info["url"].replace("sig=", "sig=0"), {"Range": f"bytes={a}-{b}"})[0] == 403
    assert _get(info["url"])[0] == 403


def test_an_expired_token_is_refused(tmp_path):
    with HubServer(tmp_path / "root", token_ttl=0.5) as hub:
        path = _checkpoint(hub.root / "xorg" / "base", seed=1)
        auth = {"Authorization": f"Bearer {_token(hub, 'xorg/base')['accessToken']}"}
        url = f"{hub.url}/cas/v1/reconstructions/{hub.xet.file_hash(path)}"
        assert _get(url, auth)[0] == 200
        time.sleep(0.6)
        assert _get(url, auth)[0] == 401


def _xorbs_of(hub: HubServer, repo: str, path: Path) -> list[str]:
    auth = {"Authorization": f"Bearer {_token(hub, repo)['accessToken']}"}
    plan = json.loads(_get(f"{hub.url}/cas/v1/reconstructions/{hub.xet.file_hash(path)}", auth)[1])
    return [t["hash"] for t in plan["terms"]]


@pytest.mark.parametrize("mode", ["dedup", "no-dedup"])
def test_upload_modes(tmp_path, mode):
    """dedup: a fine-tune's unchanged bytes reference the base's xorbs; no-dedup: it has xorbs of its own."""
    with HubServer(tmp_path / "root", upload_mode=mode) as hub:
        base = _checkpoint(hub.root / "xorg" / "base", seed=1)
        tuned = _checkpoint(hub.root / "xorg" / "tuned", seed=2, change=("layer3.weight", 70_000))
        base_xorbs = set(_xorbs_of(hub, "xorg/base", base))
        tuned_xorbs = _xorbs_of(hub, "xorg/tuned", tuned)
        if mode == "dedup":
            assert set(tuned_xorbs) & base_xorbs and len(set(tuned_xorbs) - base_xorbs) >= 1
        else:
            assert not set(tuned_xorbs) & base_xorbs


def test_a_restart_does_not_rechunk_and_a_changed_file_is_rechunked(tmp_path):
    root = tmp_path / "root"
    with HubServer(root) as hub:
        path = _checkpoint(root / "xorg" / "base", seed=1)
        first = hub.xet.file_hash(path)
        assert hub.xet.files_chunked == 1
    with HubServer(root) as hub:
        assert hub.xet.file_hash(path) == first and hub.xet.files_chunked == 0
        _checkpoint(root / "xorg" / "base", seed=3)  # the repo changes
        assert hub.xet.file_hash(path) != first and hub.xet.files_chunked == 1


def _downloaded(hub: HubServer, repo: str, hf_home: Path) -> Path:
    """`model.safetensors` of `repo` as the real client downloads it, in a fresh process (its own Xet session)."""
    out = subprocess.run([sys.executable, "-c", "from huggingface_hub import hf_hub_download; "
                          f"print(hf_hub_download({repo!r}, 'model.safetensors'))"],
                         env={**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(hf_home)},
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return Path(out.stdout.strip().splitlines()[-1])


def test_deleting_the_repo_that_owns_shared_xorbs_leaves_the_others_served(tmp_path):
    """A repo whose bytes reference xorbs another repo's file owns is chunked anew when that repo is deleted
    from the served folder; it used to drop every request for the file (FileNotFoundError in the handler)."""
    with HubServer(tmp_path / "root") as hub:
        first = _checkpoint(hub.root / "xorg" / "first", seed=1)
        copy = _checkpoint(hub.root / "xorg" / "copy", seed=1)
        owned = set(_xorbs_of(hub, "xorg/first", first))
        assert set(_xorbs_of(hub, "xorg/copy", copy)) <= owned  # the copy's chunks are the first's
        shutil.rmtree(hub.root / "xorg" / "first")
        status, body, headers = _get(f"{hub.url}/xorg/copy/resolve/main/model.safetensors", {"Range": "bytes=0-7"})
        assert status == 206 and headers["X-Xet-Hash"] == hub.xet.file_hash(copy) and len(body) == 8
        assert _downloaded(hub, "xorg/copy", tmp_path / "hf").read_bytes() == copy.read_bytes()


def test_deleting_an_identical_copy_leaves_the_original_served(tmp_path):
    """Identical files share a Xet hash; the CAS served a hash from the file last asked about, so deleting that
    copy (a pull request's, a test's) made every download of the original 404."""
    with HubServer(tmp_path / "root") as hub:
        original = _checkpoint(hub.root / "xorg" / "original", seed=1)
        copy = _checkpoint(hub.root / "xorg" / "copy", seed=1)
        for repo in ("xorg/original", "xorg/copy"):  # the copy is the file last asked about
            assert _get(f"{hub.url}/{repo}/resolve/main/model.safetensors", {"Range": "bytes=0-7"})[0] == 206
        shutil.rmtree(copy.parent)
        assert _downloaded(hub, "xorg/original", tmp_path / "hf").read_bytes() == original.read_bytes()


def test_without_xet_the_hub_serves_plain_http(tmp_path):
    with HubServer(tmp_path / "root", xet=False) as hub:
        _checkpoint(hub.root / "xorg" / "base", seed=1)
        _, _, headers = _get(f"{hub.url}/xorg/base/resolve/main/model.safetensors", {"Range": "bytes=0-7"})
        assert "X-Xet-Hash" not in headers
        assert _get(f"{hub.url}/api/models/xorg/base/xet-read-token/main")[0] == 404
        assert "xetHash" not in json.loads(_get(f"{hub.url}/api/models/xorg/base/tree/main")[1])[0]
        assert not (hub.root / ".xet").exists()


def test_zero_and_repeated_content_round_trip_through_the_cas(xet_hub):
    folder = xet_hub.root / "xorg" / "zeros"
    folder.mkdir(parents=True)
    data = bytes(1 << 20) + random.Random(0).randbytes(4096) * 200 + bytes(300_000)
    (folder / "model.safetensors").write_bytes(data)
    file_hash = xet_hub.xet.file_hash(folder / "model.safetensors")
    assert file_hash == hf_xet.hash_files([str(folder / "model.safetensors")])[0].hash
    tok = _token(xet_hub, "xorg/zeros")
    group = hf_xet.XetSession().new_download_stream_group(
        endpoint=tok["casUrl"], token=tok["accessToken"], token_expiry_unix_secs=tok["exp"]
    )
    got = b"".join(group.download_stream(hf_xet.XetFileInfo(file_hash, len(data))))
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_build_zoo_uploads_into_the_xet_index_in_upload_order(tmp_path):
    from alsatian_hf.zoo import TimmSource, ZooSpec, build_zoo

    root = tmp_path / "root"
    spec = ZooSpec("zorg", TimmSource("test_resnet", model_args={"num_classes": 10}), num_models=3, seed=0)
    report = build_zoo(spec, root, xet_upload="no-dedup")
    with HubServer(root) as hub:
        for repo in report.repo_ids:
            path = root / repo / "model.safetensors"
            assert hub.xet.file_hash(path) == hf_xet.hash_files([str(path)])[0].hash
        assert hub.xet.files_chunked == 0  # the builder chunked every file as it wrote it
