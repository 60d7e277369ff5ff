"""Hostile repos in a search are skipped with a reason, before they can cost time or memory, and the other
candidates rank exactly as they do alone.

Each hostile repo is a copy of a real tiny fine-tune with one thing made wrong, served by the session hub.
"""

from __future__ import annotations

import json
import shutil
import struct

import pytest

from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.zoo.data import digits


def _copy(hub_root, source: str, name: str):
    target = hub_root / "hostile" / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(hub_root / source, target)
    (target / "README.md").write_text("---\nlibrary_name: timm\n---\n")  # no lineage: other tests list the zoo's
    return target


def _edit_config(folder, **model_args) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["model_args"] = {**config.get("model_args", {}), **model_args}
    (folder / "config.json").write_text(json.dumps(config))


def _edit_header(folder, edit) -> None:
    """Rewrite model.safetensors' header with `edit(header)`, keeping the data bytes."""
    path = folder / "model.safetensors"
    blob = path.read_bytes()
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + length])
    edit(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + blob[8 + length :])


def _tensors(header):
    return sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def _overlap(header):
    a, b = [k for k in _tensors(header) if header[k]["dtype"] == "F32"][-2:]
    header[b]["data_offsets"] = [header[a]["data_offsets"][0], header[a]["data_offsets"][0]
                                 + header[b]["data_offsets"][1] - header[b]["data_offsets"][0]]  # fmt: skip


def _past_the_end(header):  # a tensor of 10^12 elements whose bytes would run far past the file
    last = _tensors(header)[-1]
    start = header[last]["data_offsets"][0]
    header[last].update(dtype="F32", shape=[10**6, 10**6], data_offsets=[start, start + 4 * 10**12])


def _wrong_byte_count(header):
    key = _tensors(header)[-1]
    header[key]["shape"] = [2 * d for d in header[key]["shape"]] or [2]


@pytest.fixture(scope="module")
def hostile(hub_root, tiny_zoo, tiny_bert_repo):
    good = tiny_zoo.repo_ids[:4]
    source = tiny_zoo.repo_ids[1]
    cases = {}
    cases["config-disagrees"] = _copy(hub_root, source, "config-disagrees")
    _edit_config(cases["config-disagrees"], channels=[32, 48, 48, 128])
    cases["million-layers"] = _copy(hub_root, source, "million-layers")
    _edit_config(cases["million-layers"], layers=[10**6, 1, 1, 1])
    for name, edit in [("overlapping-offsets", _overlap), ("past-the-end", _past_the_end),
                       ("wrong-byte-count", _wrong_byte_count)]:  # fmt: skip
        cases[name] = _copy(hub_root, source, name)
        _edit_header(cases[name], edit)
    bert = cases["million-layer-bert"] = _copy(hub_root, tiny_bert_repo.repo_ids[0], "million-layer-bert")
    config = json.loads((bert / "config.json").read_text())
    (bert / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 10**6}))
    quantized = cases["gptq-bert"] = _copy(hub_root, tiny_bert_repo.repo_ids[0], "gptq-bert")
    config = json.loads((quantized / "config.json").read_text())
    gptq = {"quant_method": "gptq", "bits": 4, "group_size": 128}
    (quantized / "config.json").write_text(json.dumps({**config, "quantization_config": gptq}))
    remote = cases["remote-code"] = _copy(hub_root, source, "remote-code")
    marker = hub_root / "hostile" / "remote-code-ran"
    (remote / "config.json").write_text(json.dumps({
        "model_type": "hostile-net", "architectures": ["HostileNet"],
        "auto_map": {"AutoConfig": "modeling_hostile.HostileConfig", "AutoModel": "modeling_hostile.HostileNet"},
    }))  # fmt: skip
    (remote / "modeling_hostile.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return good, [f"hostile/{name}" for name in cases], marker


def _search(repos, tmp_path):
    args = SearchArguments(
        result_size=2, image_size=32, scorer="knn", store_dir=str(tmp_path / "store"), batch_size=32
    )
    return ModelSearcher(repos, train_dataset=digits(num_items=60, seed=0), args=args).search()


def test_hostile_repos_are_skipped_with_reasons_and_change_no_ranking(hub, hostile, tmp_path):
    good, bad, marker = hostile
    alone = _search(good, tmp_path / "alone")
    mixed = _search(good + bad, tmp_path / "mixed")
    assert mixed.models == alone.models
    assert [r["score"] for r in mixed.ranking] == [r["score"] for r in alone.ranking]
    assert sorted(mixed.skipped) == sorted(bad)
    reasons = mixed.skipped
    assert "disagrees with the checkpoint" in reasons["hostile/config-disagrees"]
    assert "parameter tensors" in reasons["hostile/million-layers"]
    assert "parameter tensors" in reasons["hostile/million-layer-bert"]
    assert "overlap" in reasons["hostile/overlapping-offsets"]
    assert "past the end" in reasons["hostile/past-the-end"]
    assert "spans" in reasons["hostile/wrong-byte-count"]
    assert "the repo's own code (its `auto_map`), which a search never runs" in reasons["hostile/remote-code"]
    assert "quantized (gptq)" in reasons["hostile/gptq-bert"]
    assert not marker.exists()  # the repo's code never ran


def test_a_config_that_is_the_repos_own_code_is_refused_without_asking(hub_root, hostile, monkeypatch):
    """transformers asks on stdin, for 15 s, whether to run a repo's own code when nobody said: a notebook
    searching an org with one such repo stopped at a prompt. A search never runs it and never asks."""
    from alsatian_hf.adapters.skeleton import build_model
    from alsatian_hf.errors import UnsupportedArchitectureError

    asked = []
    monkeypatch.setattr("builtins.input", lambda *args: asked.append(args) or "n")
    with pytest.raises(UnsupportedArchitectureError, match="own code"):
        build_model(hub_root / "hostile" / "remote-code", device="meta")
    assert not asked
