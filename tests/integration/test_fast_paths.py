"""The fast paths (channels-last convolutions, BatchNorm folded into them) and the opt-in compiled blocks keep
every search's result: the ranking equals `base`, and every score is within 1e-4 of a run without them."""

from __future__ import annotations

import pytest

from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.zoo import TimmSource, ZooSpec, build_zoo
from alsatian_hf.zoo.data import fashion_mnist, newsgroups


@pytest.fixture(scope="module")
def effnet_zoo(hub_root):
    """timm's test_efficientnet: depthwise and pointwise convolutions, squeeze-excite, BatchNorm."""
    spec = ZooSpec("effnetorg", TimmSource("test_efficientnet", model_args={"num_classes": 10}), num_models=4, seed=2)
    return build_zoo(spec, hub_root)


def _dataset(zoo: str):
    if zoo == "tiny_bert_repo":
        return newsgroups(num_items=60, seed=0, categories=["sci.space", "rec.sport.hockey"])
    return fashion_mnist(num_items=120, seed=3)


def _scores(res) -> dict[tuple[int, str], float]:
    return {(it["iteration"], m): s for it in res.iterations for m, s in it["scores"].items()}


@pytest.mark.slow
@pytest.mark.parametrize("zoo", ["tiny_zoo", "effnet_zoo", "vit_zoo", "tiny_bert_repo"])
def test_fast_paths_keep_rankings_and_scores(zoo, hub, tmp_path, request):
    org = request.getfixturevalue(zoo).repo_ids[0].split("/")[0]
    ds = _dataset(zoo)
    results = {}
    for fast in (True, False):
        for strategy in ("alsatian", "base"):
            args = SearchArguments(
                result_size=1,
                strategy=strategy,
                image_size=32,
                max_length=32,
                batch_size=32,
                store_dir=str(tmp_path / "store"),
                feature_cache=False,
                scorer="logme",  # a continuous score: float rounding shows, where an accuracy would hide it
                channels_last=fast,
                fold_batchnorm=fast,
            )
            results[fast, strategy] = ModelSearcher.from_hub(author=org, train_dataset=ds, args=args).search()
    assert all(not r.skipped for r in results.values())
    assert len({tuple(r.models) for r in results.values()}) == 1
    fast, slow = _scores(results[True, "alsatian"]), _scores(results[False, "alsatian"])
    assert fast.keys() == slow.keys() and len(fast) >= 2
    assert all(abs(fast[k] - slow[k]) <= 1e-4 for k in fast), (fast, slow)
    assert _scores(results[True, "base"]) == pytest.approx(fast, abs=1e-4)


def _search(org, ds, tmp_path, **kwargs):
    args = SearchArguments(
        result_size=1, image_size=32, max_length=32, batch_size=32, store_dir=str(tmp_path / "store"),
        scorer="logme", **kwargs,
    )  # fmt: skip
    return ModelSearcher.from_hub(author=org, train_dataset=ds, args=args).search()


@pytest.mark.slow
@pytest.mark.parametrize("zoo", ["tiny_zoo", "vit_zoo", "tiny_bert_repo"])
def test_compiled_blocks_keep_rankings_and_scores(zoo, hub, tmp_path, request, compile_headers_in_session):
    """torch.compile'd blocks (shared by every candidate of the architecture; batches of 32 and a remainder,
    so the batch dimension turns dynamic) rank as eager `base` and score within 1e-4 of eager alsatian. Their
    features are kept apart from eager ones in the feature cache: a compiled search after an eager one with the
    same store computes its own."""
    org = request.getfixturevalue(zoo).repo_ids[0].split("/")[0]
    ds = _dataset(zoo)
    from torch._dynamo.utils import counters

    eager = _search(org, ds, tmp_path, strategy="alsatian")
    base = _search(org, ds, tmp_path, strategy="base", feature_cache=False)
    graphs = counters["stats"]["unique_graphs"]
    compiled = _search(org, ds, tmp_path, strategy="alsatian", torch_compile=True)
    assert not compiled.skipped and compiled.arguments["torch_compile"]
    assert counters["stats"]["unique_graphs"] > graphs  # dynamo traced the blocks: they did not run eagerly
    assert compiled.models == eager.models == base.models
    assert compiled.feature_cache["hit_items"] == 0 and compiled.feature_cache["miss_items"] > 0
    got, want = _scores(compiled), _scores(eager)
    assert got.keys() == want.keys() and len(got) >= 2
    assert all(abs(got[k] - want[k]) <= 1e-4 for k in got), (got, want)
    assert any(compile_headers_in_session.glob("*.gch"))  # torch's headers are where the session cleans up


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_blocks_on_cuda_rank_as_on_cpu(mode, hub, tiny_zoo, tmp_path, compile_headers_in_session):
    """On CUDA, compiled blocks (`reduce-overhead`: replayed as CUDA graphs, their outputs copied out) rank as
    eager CPU `base` and score within 1e-4 of it."""
    ds = fashion_mnist(num_items=120, seed=3)
    cpu = _search("tiny", ds, tmp_path, strategy="base", device="cpu", feature_cache=False)
    cuda = _search("tiny", ds, tmp_path, strategy="alsatian", device="cuda", torch_compile_mode=mode,
                   feature_cache=False)  # fmt: skip
    assert cuda.device.startswith("cuda") and cuda.models == cpu.models
    assert _scores(cuda) == pytest.approx(_scores(cpu), abs=1e-4)


@pytest.mark.gpu
def test_a_search_on_cuda_ranks_as_on_cpu(hub, tiny_zoo, tmp_path):
    """fp32 on CUDA is exact: TF32, which cuDNN uses for fp32 convolutions by default, is off while blocks run
    (so the scores match the CPU's to 1e-4), and the user's flags are theirs again afterwards."""
    import torch

    torch.backends.cudnn.allow_tf32 = True  # torch's default, set here in case the session changed it
    ds = fashion_mnist(num_items=120, seed=3)
    runs = {}
    for device, strategy in (("cuda", "alsatian"), ("cuda", "base"), ("cpu", "base")):
        args = SearchArguments(
            result_size=2,
            strategy=strategy,
            device=device,
            image_size=32,
            batch_size=32,
            store_dir=str(tmp_path / "store"),
            feature_cache=False,
            scorer="logme",
        )
        runs[device, strategy] = ModelSearcher.from_hub(author="tiny", train_dataset=ds, args=args).search()
    assert runs["cuda", "alsatian"].device.startswith("cuda")
    assert len({tuple(r.models) for r in runs.values()}) == 1
    assert _scores(runs["cuda", "alsatian"]) == pytest.approx(_scores(runs["cpu", "base"]), abs=1e-4)
    assert torch.backends.cudnn.allow_tf32
