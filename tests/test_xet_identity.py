"""Block identity from Xet metadata: proven where it holds, never claimed where it does not, and faults fall back.

Each search here runs cold against the session hub, which speaks Xet. The check that matters: every block
hash the search stored equals the hash of that repo's real bytes (read locally, no Xet involved).
"""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf._safetensors import read_file_header
from alsatian_hf.adapters import split_model
from alsatian_hf.adapters.skeleton import build_model
from alsatian_hf.candidates import LocalBlockSource
from alsatian_hf.localhub._xet_cas import XetIndex
from alsatian_hf.store.block_store import BlockStore
from alsatian_hf.zoo import TimmSource, ZooSpec, build_zoo
from alsatian_hf.zoo.data import digits


def _variant(hub_root, base: str, name: str, edit) -> str:
    """A copy of `base` whose checkpoint `edit(tensors)` changed; its card names `base` as base_model."""
    org, _ = base.split("/")
    target = hub_root / org / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(hub_root / base, target)
    tensors = load_file(target / "model.safetensors")
    edit(tensors)
    save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})
    (target / "README.md").write_text(f"---\nbase_model: {base}\nlibrary_name: timm\n---\n")
    return f"{org}/{name}"


@pytest.fixture(scope="module")
def zoos(hub_root):
    """resnet18 zoos (multi-MB blocks) uploaded with and without dedup, plus hand-made hard cases."""
    spec = dict(source=TimmSource("resnet18", model_args={"num_classes": 10}), num_models=3, distribution="top_layers")
    dedup = build_zoo(ZooSpec("xdedup", **spec, seed=0), hub_root, overwrite=True, xet_upload="dedup")
    # another seed: a CAS keeps one reconstruction per file hash, so equal files would share the dedup terms
    plain = build_zoo(ZooSpec("xplain", **spec, seed=1), hub_root, overwrite=True, xet_upload="no-dedup")
    base = dedup.repo_ids[0]

    def one_element(t):  # one element in the middle of a 9.4 MB block
        t["layer4.1.conv2.weight"].view(-1)[1_000_000] += 1.0

    def moved(t):  # a bigger head sorts before the layers: every block moves, its neighbours change
        t["fc.weight"] = torch.randn(1000, 512, generator=torch.Generator().manual_seed(5))
        t["fc.bias"] = torch.zeros(1000)

    def zeros(t):
        for k in [k for k in t if k.startswith("layer3.1.")]:
            t[k] = torch.zeros_like(t[k])

    variants = [_variant(hub_root, base, n, f) for n, f in [("v-one-element", one_element), ("v-moved", moved),
                                                             ("v-zeros", zeros)]]  # fmt: skip
    index = XetIndex(hub_root, "dedup")  # uploaded after the base, so they reference its chunks
    index.index_files([hub_root / r / "model.safetensors" for r in variants])
    index.close()
    return {"dedup": dedup.repo_ids, "plain": plain.repo_ids, "variants": variants}


def _search(repos, tmp_path, **kw):
    args = SearchArguments(result_size=1, image_size=32, scorer="knn", store_dir=str(tmp_path / "store"),
                           batch_size=32, **kw)  # fmt: skip
    return ModelSearcher(repos, train_dataset=digits(num_items=60, seed=0), args=args).search()


def _assert_no_false_identity(hub_root, store_dir, repos):
    """Every stored (repo, block) hash equals the hash of that repo's real bytes."""
    store = BlockStore(store_dir)
    for repo in repos:
        folder = hub_root / repo
        source = LocalBlockSource(folder)
        split = split_model(build_model(folder, device="meta"), checkpoint_keys=source.keys())
        rows = _stored(store, repo, split.family)
        assert len(rows) == sum(1 for b in split.blocks if b.keys), repo
        for index, stored in rows:
            assert stored == source.block_hash(split, index), (repo, index)


def _stored(store: BlockStore, repo: str, family: str) -> list[tuple[int, str]]:
    with store._db() as db:
        return db.execute("SELECT block, hash FROM model_blocks WHERE repo=? AND family=?", (repo, family)).fetchall()


def test_dedup_zoo_proves_shared_blocks_and_fetches_only_what_is_unique(hub, hub_root, zoos, tmp_path):
    repos = zoos["dedup"] + zoos["variants"]
    res = _search(repos, tmp_path)
    ident = res.fetch["identity"]
    assert ident.get("xet-proof", 0) >= 20, ident  # the variants share almost every block with the base
    store = BlockStore(tmp_path / "store")
    unique = sum(p.stat().st_size for p in store.block_files())
    weights = res.bytes_fetched - res.fetch["header_bytes"]
    assert weights <= 1.05 * unique + 256 * 1024 * ident["xet-proof"]
    # per repo a token and one whole-file reconstruction, plus probes where offsets moved: fewer than blocks
    assert res.fetch["metadata_requests"] < sum(ident.values())
    _assert_no_false_identity(hub_root, tmp_path / "store", repos)
    assert store.gc(verify=True)["corrupt"] == 0
    plain = _search(repos, tmp_path / "plain", strategy="base", xet_identity=False)
    assert res.models == plain.models
    again = _search(repos, tmp_path)  # a repeat search fetches no weight byte
    assert again.bytes_fetched == 0 and not again.fetch["identity"]


def test_changed_moved_and_zero_blocks_get_their_own_hashes(hub, hub_root, zoos, tmp_path):
    base, (one, moved, zeros) = zoos["dedup"][0], zoos["variants"]
    res = _search([base, one, moved, zeros], tmp_path)
    _assert_no_false_identity(hub_root, tmp_path / "store", [base, one, moved, zeros])
    store = BlockStore(tmp_path / "store")
    fam = "timm-resnet"
    by = {r: dict(_stored(store, r, fam)) for r in (base, one, moved, zeros)}
    changed = [i for i in by[base] if by[one][i] != by[base][i]]
    assert len(changed) == 1  # one element changed: exactly one block differs, and it was detected
    assert by[moved] == by[base]  # the same bytes at other offsets, with other neighbours: identical
    assert sum(by[zeros][i] != by[base][i] for i in by[base]) == 1
    assert res.fetch["identity"].get("xet-proof", 0) > 0
    shared_moved = read_file_header(hub_root / moved / "model.safetensors")[1]
    assert shared_moved != read_file_header(hub_root / base / "model.safetensors")[1]  # the offsets did move


def test_no_dedup_upload_proves_nothing_and_fetches_like_before(hub, hub_root, zoos, tmp_path):
    repos = zoos["plain"]
    res = _search(repos, tmp_path)
    before = _search(repos, tmp_path / "before", xet_identity=False)
    assert "xet-proof" not in res.fetch["identity"]
    assert res.bytes_fetched <= 1.02 * before.bytes_fetched
    assert res.fetch["metadata_requests"] <= 3 * sum(res.fetch["identity"].values())
    _assert_no_false_identity(hub_root, tmp_path / "store", repos)
    assert res.models == before.models


@pytest.mark.parametrize("fault", ["cas_status", "cas_truncate", "expire_tokens"])
def test_cas_faults_fall_back_to_bytes_and_lose_nothing(hub, hub_root, zoos, tmp_path, caplog, fault):
    repos = [zoos["dedup"][0], *zoos["variants"][:2]]
    setattr(hub.faults, fault, {"cas_status": 500, "cas_truncate": 40, "expire_tokens": True}[fault])
    with caplog.at_level(logging.INFO, logger="alsatian_hf"):
        res = _search(repos, tmp_path)
    assert "xet-proof" not in res.fetch["identity"] and not res.skipped
    assert "falling back to bytes" in caplog.text
    _assert_no_false_identity(hub_root, tmp_path / "store", repos)
    hub.faults.reset()
    clean = _search(repos, tmp_path / "clean", strategy="base")
    assert res.models == clean.models


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_sharded_half_precision_checkpoints_are_proven_and_never_misclaimed(hub, hub_root, zoos, tmp_path, dtype):
    from huggingface_hub import save_torch_state_dict

    from alsatian_hf.candidates import open_hub
    from alsatian_hf.hub import FetchStats, RangeReader
    from alsatian_hf.hub.xet import XetReader

    base = zoos["dedup"][0]
    tag = str(dtype).removeprefix("torch.")
    repos = []
    for name, change in ((f"v-{tag}-base", False), (f"v-{tag}-one", True)):
        folder = hub_root / "xdedup" / name
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(hub_root / base, folder)
        tensors = {
            k: v.to(dtype) if v.is_floating_point() else v for k, v in load_file(folder / "model.safetensors").items()
        }
        if change:
            tensors["layer4.1.conv2.weight"].view(-1)[1_000_000] += 1.0
        (folder / "model.safetensors").unlink()
        save_torch_state_dict(tensors, folder, max_shard_size="8MB", metadata={"format": "pt"})
        card = (
            f"---\nbase_model: xdedup/v-{tag}-base\nlibrary_name: timm\n---\n"
            if change
            else "---\nlibrary_name: timm\n---\n"
        )
        (folder / "README.md").write_text(card)
        repos.append(f"xdedup/{name}")
    index = XetIndex(hub_root, "dedup")
    index.index_files([p for r in repos for p in sorted((hub_root / r).glob("*.safetensors"))])
    index.close()
    assert len(list((hub_root / repos[0]).glob("*.safetensors"))) > 2  # sharded

    store, stats = BlockStore(tmp_path / "store"), FetchStats()
    reader = RangeReader(stats=stats)
    for repo in repos:
        opened = open_hub(repo, None, store=store, reader=reader, xet=XetReader(stats=stats))
        split = split_model(build_model(opened.folder, device="meta"), checkpoint_keys=opened.source.keys())
        opened.source.prepare(split)
    assert stats.identity.get("xet-proof", 0) > 0, stats.identity
    _assert_no_false_identity(hub_root, tmp_path / "store", repos)
    by = [dict(_stored(store, r, "timm-resnet")) for r in repos]
    assert sum(by[0][i] != by[1][i] for i in by[0]) == 1


def test_refused_xorb_ranges_do_not_matter_to_proofs(hub, hub_root, zoos, tmp_path):
    """Proofs read reconstruction metadata only, never xorb bytes: refused xorbs change nothing."""
    repos = [zoos["dedup"][0], zoos["variants"][0]]
    hub.faults.refuse_xorbs = True
    res = _search(repos, tmp_path)
    assert res.fetch["identity"].get("xet-proof", 0) > 0 and not res.skipped
    assert not [r for r in hub.requests() if "/cas/xorbs/" in r.path]
    _assert_no_false_identity(hub_root, tmp_path / "store", repos)


def test_a_fine_tune_of_the_head_proves_every_layer_without_fetching_the_relative_embeddings(
    hub, hub_root, tmp_path, letters_tokenizer
):
    """Every DeBERTa layer lists the relative embeddings (2 MB here). A fine-tune of the head alone, uploaded with
    dedup after its base was searched, proves every block and fetches no weight: not even the shared embeddings
    that a cold checkpoint's blocks fetch once, up front."""
    from transformers import DebertaV2Config

    from alsatian_hf.zoo import TransformersSource
    from alsatian_hf.zoo.data import newsgroups

    config = DebertaV2Config(
        vocab_size=57, hidden_size=256, num_hidden_layers=3, num_attention_heads=4, intermediate_size=512,
        max_position_embeddings=64, relative_attention=True, position_buckets=1024, norm_rel_ebd="layer_norm",
        pos_att_type=["p2c", "c2p"], position_biased_input=False, type_vocab_size=0, num_labels=3,
    )  # fmt: skip
    source = TransformersSource(config=config, auto_class="AutoModelForSequenceClassification",
                                processor=letters_tokenizer, pipeline_tag="text-classification")  # fmt: skip
    try:
        base = build_zoo(ZooSpec("xdeberta", source, num_models=1, seed=0), hub_root, xet_upload="dedup").repo_ids[0]

        def head(t):
            t["classifier.weight"] = torch.randn(
                t["classifier.weight"].shape, generator=torch.Generator().manual_seed(1)
            )

        tuned = _variant(hub_root, base, "head-tuned", head)
        index = XetIndex(hub_root, "dedup")
        index.index_files([hub_root / tuned / "model.safetensors"])
        index.close()
        data = newsgroups(num_items=40, seed=0, categories=["sci.space", "rec.autos"])
        args = SearchArguments(result_size=1, scorer="knn", store_dir=str(tmp_path / "store"), max_length=16)
        ModelSearcher([base], train_dataset=data, args=args).search()
        res = ModelSearcher([tuned], train_dataset=data, args=args).search()
        assert not res.skipped and res.fetch["identity"] == {"xet-proof": 4}, res.fetch
        assert res.bytes_fetched - res.fetch["header_bytes"] < 1024 * 1024  # proofs read partial chunks at most
    finally:
        shutil.rmtree(hub_root / "xdeberta", ignore_errors=True)
