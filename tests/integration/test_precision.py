"""`precision`: fp32 stays exact, and the opt-in modes are real, kept apart in the feature cache, and rank alike
in every strategy."""

from __future__ import annotations

import logging

import pytest
import torch

from alsatian_hf import ModelSearcher, SearchArguments
from alsatian_hf.candidates.precision import effective_precision, precision_context
from alsatian_hf.errors import ConfigurationError
from alsatian_hf.zoo.data import fashion_mnist


def _scores(res) -> dict[tuple[int, str], float]:
    return {(it["iteration"], m): s for it in res.iterations for m, s in it["scores"].items()}


def _search(tmp_path, precision: str, strategy: str = "alsatian", **kwargs):
    args = SearchArguments(
        result_size=2,
        strategy=strategy,
        image_size=32,
        batch_size=32,
        store_dir=str(tmp_path / "store"),
        scorer="logme",  # continuous: a change of rounding shows in it
        precision=precision,
        **kwargs,
    )
    return ModelSearcher.from_hub(
        author="tiny", train_dataset=fashion_mnist(num_items=120, seed=3), args=args
    ).search()


def test_bad_precision_names_the_choices():
    with pytest.raises(ConfigurationError, match=r"`precision` must be one of \['fp32', 'tf32', 'bf16'\]"):
        SearchArguments(precision="fp16")


def test_bf16_autocasts_a_block_and_fp32_leaves_it_alone():
    layer, x = torch.nn.Linear(8, 4), torch.randn(2, 8)
    with precision_context("bf16", "cpu"):
        assert layer(x).dtype == torch.bfloat16
    with precision_context("fp32", "cpu"):
        assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))


def test_cuda_modes_set_tf32_and_restore_the_users_flags():
    """The flags are process globals (settable without a GPU): cuDNN's default is TF32 *on*, so exact fp32 must
    turn it off while a block runs, and give the user back what they had."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, True
        with precision_context("fp32", "cuda"):
            assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        with precision_context("tf32", "cuda"):
            assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_tf32_on_cpu_warns_and_runs_fp32(caplog):
    with caplog.at_level(logging.WARNING, logger="alsatian_hf"):
        assert effective_precision("tf32", torch.device("cpu")) == "fp32"
    assert "CUDA devices only" in caplog.text


@pytest.mark.slow
def test_bf16_ranks_alike_in_every_strategy_and_keeps_its_own_features(hub, tiny_zoo, tmp_path):
    fp32 = _search(tmp_path, "fp32")  # writes fp32 features to the feature cache
    bf16 = {s: _search(tmp_path, "bf16", s) for s in ("alsatian", "base")}
    assert all(not r.skipped for r in (fp32, *bf16.values()))
    # the bf16 searches computed their own features: the fp32 ones in the cache have other numerics
    assert bf16["alsatian"].feature_cache["cached"] == []
    assert bf16["alsatian"].plan["precision"] == "bf16" and "Precision: bf16 (opt-in" in bf16["alsatian"].summary()
    assert len({tuple(r.models) for r in bf16.values()}) == 1
    scores = _scores(bf16["alsatian"])
    assert _scores(bf16["base"]) == scores  # same blocks under the same autocast: the same bits
    exact = _scores(fp32)
    common = scores.keys() & exact.keys()
    assert common
    # autocast really ran (bf16 keeps 8 mantissa bits), and the features stayed usable
    assert max(abs(scores[k] - exact[k]) for k in common) > 1e-6
    assert all(abs(scores[k] - exact[k]) < 0.5 for k in common), (scores, exact)
    # tf32 on CPU is fp32: it shares fp32's cached features and scores
    tf32 = _search(tmp_path, "tf32")
    assert tf32.plan["precision"] == "fp32" and "Precision:" not in tf32.summary()
    assert tf32.feature_cache["cached"] and _scores(tf32) == exact
