"""BatchNorm folding: found where a BatchNorm consumes a convolution's output, refused where folding would
change the block's result, and equal to the unfolded block within float rounding."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import timm
import torch
from torch import nn

from alsatian_hf.adapters import split_model
from alsatian_hf.candidates.batchnorm import FoldPair, find_pairs, fold_module, folded


class _Net(nn.Module):
    def __init__(self, leak: bool):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=True), nn.BatchNorm2d(8)
        self.leak = leak  # conv2's output also feeds the residual sum: folding bn2 into it would change that

    def forward(self, x):
        y = self.conv2(torch.relu(self.bn1(self.conv1(x))))
        return self.bn2(y) + (y if self.leak else 0)


@dataclass
class _Block:  # one block running the whole net, as an adapter's block runs its part of a model
    def step(self, model, state):
        return (model(state[0]),)


@dataclass
class _Split:
    blocks: list


@pytest.mark.parametrize("leak", [False, True])
def test_pairs_are_found_and_a_pair_whose_conv_output_is_reused_is_refused(leak):
    model = _Net(leak).eval()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    (pairs,) = find_pairs(model, _Split([_Block()]), (x,))
    assert pairs == ([] if leak else [FoldPair("conv1", "bn1"), FoldPair("conv2", "bn2")])


class _Reused(nn.Module):
    """A conv output dropped within the block; the next tensor Python allocates may take its id (DenseNet's
    concatenations did)."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        x = self.conv(x).mean(1, keepdim=True)
        return self.bn(torch.cat([x] * 4, 1))


@pytest.mark.parametrize("arch", ["reused", "densenet121"])
def test_a_batchnorm_fed_by_a_tensor_that_took_a_dropped_conv_outputs_id_is_not_paired_with_that_conv(arch):
    if arch == "reused":
        model, split = _Reused().eval(), _Split([_Block()])
        x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    else:
        model = timm.create_model(arch, num_classes=10, growth_rate=8, block_config=(2, 2, 2, 2)).eval()
        split = split_model(model)
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    pairs = [p for block in find_pairs(model, split, (x,)) for p in block]
    for p in pairs:
        assert model.get_submodule(p.conv).out_channels == model.get_submodule(p.bn).num_features, p
    assert arch == "reused" or pairs  # DenseNet's transitions and stem fold


def test_folded_timm_resnet_equals_the_unfolded_one():
    model = timm.create_model("test_resnet", num_classes=10).eval()
    split = split_model(model)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    pairs = find_pairs(model, split, split.adapter.initial_state({"pixel_values": x}))  # randomises BN stats
    flat = [p for block in pairs for p in block]
    assert len(flat) >= 4
    assert all(isinstance(model.get_submodule(p.conv), nn.Conv2d) for p in flat)
    assert all(isinstance(model.get_submodule(p.bn), nn.BatchNorm2d) for p in flat)
    with torch.inference_mode():
        want = model.forward_features(x)
        biases = {}
        for p in flat:
            w, biases[p.conv] = fold_module(model.get_submodule(p.conv), model.get_submodule(p.bn))
            model.get_submodule(p.conv)._parameters["weight"] = nn.Parameter(w, requires_grad=False)
        with folded(model, flat, biases):
            got = model.forward_features(x)
            assert all(type(model.get_submodule(p.bn)).__name__ in ("Identity", "Sequential") for p in flat)
    assert all(isinstance(model.get_submodule(p.bn), nn.BatchNorm2d) for p in flat)  # restored
    assert model.get_submodule(flat[0].conv).bias is None
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
