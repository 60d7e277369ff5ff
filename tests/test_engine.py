"""The engine end to end on real (tiny or small) zoos: same answers for every strategy, work at the bound,
small budgets, spilling tiers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from alsatian_hf.candidates import LocalBlockSource, ShapeProbe, build_candidate
from alsatian_hf.engine import Tier, TieredCache
from alsatian_hf.errors import ConfigurationError, PlanningError
from alsatian_hf.plan import make_schedule
from alsatian_hf.scoring import KNN, LinearProbe
from alsatian_hf.search.halving import run_halving
from alsatian_hf.zoo import TimmSource, ZooSpec, build_zoo
from alsatian_hf.zoo.data import digits


@pytest.fixture(scope="module")
def pixels():
    ds = digits(num_items=240, seed=0)
    x = torch.tensor(np.stack([np.array(im.resize((32, 32))) for im in ds["image"]]), dtype=torch.float32)
    x = ((x / 255.0 - 0.5) / 0.5)[:, None].repeat(1, 3, 1, 1)
    return x, list(ds["label"])


def _candidates(root, org, x, input_key="px32"):
    probe = ShapeProbe()
    out = []
    for folder in sorted((root / org).iterdir()):
        cand, _ = build_candidate(
            f"{org}/{folder.name}",
            folder,
            LocalBlockSource(folder),
            input_key=input_key,
            probe_inputs={"pixel_values": x[:1]},
            probe=probe,
        )
        out.append(cand)
    return out


def _search(cands, x, labels, strategy, **kw):
    sched = make_schedule(labels, num_candidates=len(cands), result_size=kw.pop("result_size", 2), seed=0)
    return run_halving(
        cands,
        labels,
        sched,
        prepare=lambda key, items: {"pixel_values": x[list(items)]},
        scorer=kw.pop("scorer", LinearProbe(epochs=10)),
        strategy=strategy,
        batch_size=kw.pop("batch_size", 32),
        **kw,
    )


@pytest.fixture(scope="module", params=["top_50", "top_25", "top_layers"])
def resnet18_zoo(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"zoo-{request.param}")
    report = build_zoo(
        ZooSpec(
            "r18",
            TimmSource("resnet18", model_args={"num_classes": 10}),
            num_models=16,
            distribution=request.param,
            seed=3,
        ),
        root,
    )
    return root, report


@pytest.mark.slow
def test_strategies_agree_on_resnet18_zoos(resnet18_zoo, pixels):
    root, _ = resnet18_zoo
    x, labels = pixels
    cands = _candidates(root, "r18", x)
    outs = {s: _search(cands, x, labels, s) for s in ("alsatian", "shift", "base")}
    a, s, b = outs["alsatian"], outs["shift"], outs["base"]
    assert a.ranking == s.ranking == b.ranking and len(a.ranking) == 2
    assert a.survivors == s.survivors == b.survivors
    for ra, rs, rb in zip(a.iterations, s.iterations, b.iterations):
        for m in ra.scores:
            assert abs(ra.scores[m] - rs.scores[m]) <= 1e-4 and abs(ra.scores[m] - rb.scores[m]) <= 1e-4
    # work at the bound: every unique edge once per new item
    bound = sum(r.unique_edges * r.new_items for r in a.iterations)
    assert sum(r.counters.block_executions for r in a.iterations) == bound
    assert sum(r.counters.block_executions for r in a.iterations) < sum(
        r.counters.block_executions for r in s.iterations
    )
    # shift runs every surviving model whole on the new items
    assert [r.counters.block_executions for r in s.iterations] == [r.naive_edges * r.new_items for r in a.iterations]
    # per-block time: every execution counted under its content hash, within the inference time; alsatian runs
    # only blocks shift runs too, each at most as often
    for outcome in (a, s, b):
        for r in outcome.iterations:
            c = r.counters
            assert sum(n for n, _ in c.block_time.values()) == c.block_executions
            assert (0 < sum(t for _, t in c.block_time.values()) <= c.seconds["inference"]) == (
                c.block_executions > 0
            )  # base runs everything in its first iteration, nothing after
    for ra, rs in zip(a.iterations, s.iterations):
        assert all(n <= rs.counters.block_time[h][0] for h, (n, _) in ra.counters.block_time.items())


def test_fine_tunes_share_one_split_and_each_runs_its_own_weights(tiny_zoo, hub_root, pixels):
    """Candidates of one config share one skeleton split (set-up splits once per architecture); each candidate
    still computes what its own checkpoint loaded into a fresh timm model computes."""
    import timm
    from safetensors.torch import load_file

    x, _ = pixels
    folders = sorted((hub_root / "tiny").iterdir())
    probe = ShapeProbe()
    built = [
        build_candidate(
            f.name, f, LocalBlockSource(f), input_key="px32", probe_inputs={"pixel_values": x[:1]}, probe=probe
        )
        for f in folders
    ]
    assert all(split is built[0][1] for _, split in built)
    hashes = [[b.content_hash for b in cand.blocks] for cand, _ in built]
    assert len({tuple(h) for h in hashes}) == len(folders)  # fine-tunes: their blocks differ somewhere
    for folder, (cand, _) in zip(folders, built):
        model = timm.create_model("test_resnet", pretrained=False, num_classes=10).eval()
        model.load_state_dict(load_file(folder / "model.safetensors"))
        with torch.no_grad():
            want = model.forward_head(model.forward_features(x[:8]), pre_logits=True)
            state = cand.initial_state({"pixel_values": x[:8]})
            for block in cand.blocks:
                block.load(torch.device("cpu"))
                state = block.run(state)
        torch.testing.assert_close(state[0], want, rtol=1e-4, atol=1e-5)
        for block in cand.blocks:
            block.unload()


def test_interleaved_runs_and_reloads_on_the_shared_skeleton_keep_each_candidates_weights(tiny_zoo, hub_root, pixels):
    """A block resolves its skeleton slots (and folded BatchNorm swaps) once per load: runs of candidates that
    alternate on the shared skeleton, and a block unloaded and loaded again between runs, still compute each
    candidate's own outputs."""
    x, _ = pixels
    folders = sorted((hub_root / "tiny").iterdir())[:3]
    probe = ShapeProbe()
    cands = [
        build_candidate(
            f.name, f, LocalBlockSource(f), input_key="px32", probe_inputs={"pixel_values": x[:1]}, probe=probe
        )[0]
        for f in folders
    ]
    assert any("bn_folded" in c.numerics for c in cands)  # the swaps are exercised too
    cpu = torch.device("cpu")

    def forward(cand):
        with torch.inference_mode():
            state = cand.initial_state({"pixel_values": x[:8]})
            for block in cand.blocks:
                state = block.run(state)
        return state[0]

    try:
        for cand in cands:
            for block in cand.blocks:
                block.load(cpu)
        alone = [forward(c) for c in cands]
        assert not torch.equal(alone[0], alone[1])
        for _ in range(2):  # interleaved, with one candidate's blocks dropped and loaded again in between
            for i, cand in enumerate(cands):
                assert torch.equal(forward(cand), alone[i])
            for block in cands[1].blocks:
                block.unload()
                block.load(cpu)
    finally:
        for cand in cands:
            for block in cand.blocks:
                block.unload()


def test_a_probe_with_a_store_measures_once_per_store(tiny_zoo, hub_root, pixels, tmp_path, monkeypatch):
    """A new process (a new store object, an empty in-process cache) reads the shape probe's measurement from the
    store's index instead of building and running the random-init copy; another input is measured anew."""
    from alsatian_hf.candidates import probe as probe_module
    from alsatian_hf.store.block_store import BlockStore

    x, _ = pixels
    folder = sorted((hub_root / "tiny").iterdir())[0]
    first = ShapeProbe(BlockStore(tmp_path / "store")).measure(folder, "px32-stored", (x[:1],))
    assert first.sizes and any(first.fold_pairs)
    monkeypatch.setattr(probe_module, "_MEASURED", type(probe_module._MEASURED)())  # as in a new process

    def tripwire(*args):
        raise AssertionError("the random-init copy ran")

    monkeypatch.setattr(probe_module, "_measure", tripwire)
    assert ShapeProbe(BlockStore(tmp_path / "store")).measure(folder, "px32-stored", (x[:1],)) == first
    with pytest.raises(AssertionError, match="copy ran"):
        ShapeProbe(BlockStore(tmp_path / "store")).measure(folder, "px32-stored", (x[:1, :, :16, :16],))


def test_blocks_in_mixed_layouts_compute_what_one_layout_does(tiny_zoo, hub_root, pixels):
    """A candidate whose conv blocks run some channels-last and some not (as `channels_last="auto"` may choose)
    hands each conv block its input in that block's layout, and computes the features either layout does."""
    x, _ = pixels
    folder = sorted((hub_root / "tiny").iterdir())[1]
    probe = ShapeProbe()

    def build(channels_last):
        cand, _ = build_candidate(
            "mixed", folder, LocalBlockSource(folder), input_key="px32", probe_inputs={"pixel_values": x[:1]},
            probe=probe, channels_last=channels_last,
        )  # fmt: skip
        return cand

    n = len(build(False).blocks)
    pattern = [i % 2 == 0 for i in range(n)]
    outs, layouts = {}, {}
    for name, channels_last in (("nchw", False), ("nhwc", True), ("mixed", pattern)):
        cand = build(channels_last)
        layouts[name] = cand.numerics
        with torch.inference_mode():
            state = cand.initial_state({"pixel_values": x[:8]})
            for i, block in enumerate(cand.blocks):
                block.load(torch.device("cpu"))
                state = block.run(state)
                block.unload()
                if name == "mixed" and state[0].dim() == 4 and state[0].shape[-1] > 1:
                    assert state[0].is_contiguous(memory_format=torch.channels_last) == pattern[i], i
        outs[name] = state[0]
    assert layouts["mixed"].startswith("channels_last=10") and layouts["nhwc"].startswith("channels_last+")
    torch.testing.assert_close(outs["mixed"], outs["nchw"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs["nhwc"], outs["nchw"], rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigurationError, match="layouts for"):
        build([True])


def test_layouts_are_measured_once_per_store(tiny_zoo, hub_root, pixels, tmp_path, monkeypatch):
    """`channels_last="auto"`'s measurement: a layout per block, False where a block has no convolution, read
    back from the store by a new process instead of timed again."""
    from alsatian_hf.candidates import probe as probe_module
    from alsatian_hf.candidates.layout import conv_weights
    from alsatian_hf.store.block_store import BlockStore

    x, _ = pixels
    folder = sorted((hub_root / "tiny").iterdir())[0]
    cand, split = build_candidate(
        "auto", folder, LocalBlockSource(folder), input_key="px32-layout", probe_inputs={"pixel_values": x[:1]},
        probe=ShapeProbe(BlockStore(tmp_path / "store")), channels_last="auto",
    )  # fmt: skip
    first = ShapeProbe(BlockStore(tmp_path / "store")).layouts(folder, "px32-layout", (x[:1],))
    assert len(first) == len(split.blocks) and all(isinstance(v, bool) for v in first)
    convs = [bool(conv_weights(split.model, b)) for b in split.blocks]
    assert not convs[-1] and not first[-1]  # the read-out has no convolution
    assert not any(v and not c for v, c in zip(first, convs))
    assert "channels_last" in cand.numerics or not any(first)
    monkeypatch.setattr(probe_module, "_MEASURED", type(probe_module._MEASURED)())  # as in a new process

    def tripwire(*args, **kwargs):
        raise AssertionError("the layouts were timed")

    monkeypatch.setattr(probe_module, "measure_layouts", tripwire)
    assert ShapeProbe(BlockStore(tmp_path / "store")).layouts(folder, "px32-layout", (x[:1],)) == first
    # a fine-tune whose config differs in its bytes only shares the blocks, so it shares the answer untimed
    relabelled = tmp_path / "relabelled"
    shutil.copytree(folder, relabelled)
    config = json.loads((folder / "config.json").read_text())
    (relabelled / "config.json").write_text(json.dumps(config, indent=7))
    assert ShapeProbe(BlockStore(tmp_path / "store")).layouts(relabelled, "px32-layout", (x[:1],)) == first
    # another store that kept another answer (another process timed it) gets its own, not this process's
    measured = ShapeProbe().measure(folder, "px32-layout", (x[:1],))
    key = probe_module._layouts_key(measured, "px32-layout", (x[:1],))
    flipped = [not v and c for v, c in zip(first, convs)]
    BlockStore(tmp_path / "other").save_measurement(key, flipped)
    assert ShapeProbe(BlockStore(tmp_path / "other")).layouts(folder, "px32-layout", (x[:1],)) == flipped


def test_small_budget_chunks_and_keeps_results(tiny_zoo, hub_root, pixels):
    x, labels = pixels
    cands = _candidates(hub_root, "tiny", x)
    full = _search(cands, x, labels, "alsatian", result_size=1)
    c_min_per_item = max(r.counters.c_min / r.new_items for r in full.iterations)
    budget = int(c_min_per_item * 40)  # about 40 items per chunk, far below an iteration's items
    small = _search(cands, x, labels, "alsatian", result_size=1, cache_budget=budget)
    assert small.ranking == full.ranking and small.survivors == full.survivors
    assert any(r.counters.chunks > 1 for r in small.iterations)
    for r in small.iterations:
        assert r.counters.cache_peak <= budget
    shift = _search(cands, x, labels, "shift", result_size=1)
    assert shift.ranking == small.ranking


def test_budget_below_one_batch_is_a_clear_error(tiny_zoo, hub_root, pixels):
    x, labels = pixels
    cands = _candidates(hub_root, "tiny", x)
    with pytest.raises(PlanningError, match="batch_size"):
        _search(cands, x, labels, "alsatian", cache_budget=1000)


def test_cache_spills_to_disk_tier_with_same_results(tiny_zoo, hub_root, pixels, tmp_path):
    x, labels = pixels
    cands = _candidates(hub_root, "tiny", x)
    ram_only = _search(cands, x, labels, "alsatian", result_size=1)
    tiers = [Tier("cpu", 64 * 1024), Tier("disk", 1 << 40)]
    spilled = _search(cands, x, labels, "alsatian", result_size=1, tiers=tiers, cache_dir=str(tmp_path))
    assert spilled.ranking == ram_only.ranking
    assert spilled.iterations[0].counters.cache_tier_peaks["disk"] > 0
    assert all(r.counters.cache_tier_peaks["cpu"] <= 64 * 1024 for r in spilled.iterations)
    assert not list(tmp_path.rglob("*.safetensors"))  # cleaned up


def test_result_size_at_least_candidates_scores_everything_once(tiny_zoo, hub_root, pixels):
    x, labels = pixels
    cands = _candidates(hub_root, "tiny", x)
    out = _search(cands, x, labels, "alsatian", result_size=len(cands) + 2, scorer=KNN())
    assert len(out.iterations) == 1 and len(out.ranking) == len(cands)
    scores = [out.scores[m] for m in out.ranking]
    assert scores == sorted(scores, reverse=True)


def test_tiered_cache_budget_and_spill():
    cache = TieredCache(1000, [Tier("cpu", 300), Tier("disk", 1000)])
    assert cache.reserve("a", 200) == "cpu"
    assert cache.reserve("b", 200) == "disk"
    cache.append("a", (torch.zeros(50),))
    cache.append("b", (torch.ones(50),))
    assert torch.equal(next(cache.batches("b"))[0], torch.ones(50))
    with pytest.raises(PlanningError):
        cache.reserve("c", 700)
    cache.release("a")
    assert cache.used == 200 and cache.peak == 400
    cache.clear()


def test_cache_budget_validation():
    from alsatian_hf.engine import resolve_budget

    with pytest.raises(ConfigurationError, match="cache_budget"):
        resolve_budget(-1, torch.device("cpu"))
    assert resolve_budget("auto", torch.device("cpu")) > 0


@pytest.mark.gpu
def test_strategies_agree_on_cuda(tiny_zoo, hub_root, pixels):
    x, labels = pixels
    cands = _candidates(hub_root, "tiny", x)
    outs = {s: _search(cands, x, labels, s, device="cuda", result_size=1) for s in ("alsatian", "shift", "base")}
    assert outs["alsatian"].ranking == outs["shift"].ranking == outs["base"].ranking
    assert outs["alsatian"].survivors == outs["shift"].survivors
    # intermediates that spill from device memory to pinned RAM come back as they went
    tiers = [Tier("cuda", 64 * 1024), Tier("cpu", 1 << 40), Tier("disk", 1 << 40)]
    spilled = _search(cands, x, labels, "alsatian", device="cuda", result_size=1, tiers=tiers)
    assert spilled.ranking == outs["alsatian"].ranking and spilled.scores == outs["alsatian"].scores


def test_layout_timings_size_each_block_s_batch_by_its_own_input(tiny_zoo, hub_root, monkeypatch):
    """Each conv block is timed on as many items as hold `BATCH_VALUES` of its own input, so the late blocks'
    small maps get the larger batches they run at, not the few items the image's size allows."""
    from alsatian_hf.candidates import layout
    from alsatian_hf.candidates.layout import measure_layouts

    folder = sorted((hub_root / "tiny").iterdir())[0]
    timed, seconds = [], layout._seconds

    def spy(model, block, convs, state, *, channels_last):
        timed.append((sum(t[0].numel() for t in state), state[0].shape[0]))
        assert all(t.shape[0] == state[0].shape[0] for t in state)
        return seconds(model, block, convs, state, channels_last=channels_last)

    monkeypatch.setattr(layout, "_seconds", spy)
    measure_layouts(folder, (torch.randn(2, 3, 96, 96),))
    assert timed and all(n == layout._batch(values) for values, n in timed)
    assert timed[0][1] == layout.BATCH_RANGE[0] < timed[-1][1]  # the image's size alone would time all on 8


def test_blocks_on_one_by_one_maps_stay_channels_last_untimed(tiny_zoo, hub_root, pixels, monkeypatch):
    """On 1x1 maps both layouts are the same bytes and the strides alone pick the kernel, which a block timed
    alone does not meet as the engine's do: such blocks stay channels-last, and only the others are timed."""
    from alsatian_hf.adapters import split_model
    from alsatian_hf.adapters.skeleton import build_model
    from alsatian_hf.candidates import layout
    from alsatian_hf.candidates.layout import conv_weights, measure_layouts

    x, _ = pixels
    folder = sorted((hub_root / "tiny").iterdir())[0]
    small = (x[:1, :, :8, :8],)  # late blocks see 1x1 maps
    model = build_model(folder, device="cpu")
    split = split_model(model)
    inputs, state = [], small
    with torch.inference_mode():
        for block in split.blocks:
            inputs.append([tuple(t.shape) for t in state])
            state = block.step(model, state)
    one_by_one = [bool(conv_weights(model, b)) and all(s[-2:] == (1, 1) for s in shapes if len(s) == 4)
                  for b, shapes in zip(split.blocks, inputs)]  # fmt: skip
    larger = [bool(conv_weights(model, b)) and not o for b, o in zip(split.blocks, one_by_one)]
    assert any(one_by_one) and any(larger)
    timed, seconds = [], layout._seconds

    def spy(model, block, convs, state, *, channels_last):
        timed.append(tuple(state[0].shape[-2:]))
        return seconds(model, block, convs, state, channels_last=channels_last)

    monkeypatch.setattr(layout, "_seconds", spy)
    out = measure_layouts(folder, small, batch=8)
    assert all(out[i] for i, o in enumerate(one_by_one) if o)
    assert (1, 1) not in timed and len(timed) == 2 * sum(larger)  # each other conv block, in both layouts


@pytest.mark.parametrize("kind", ["bert", "llama", "vit", "mixtral"])
def test_a_model_without_batchnorm_is_probed_on_zeros_with_the_random_copys_figures(kind, tmp_path, monkeypatch):
    """Sizes and FLOPs depend on shapes alone: probed block by block on zeros (no random-init copy of the whole
    model, which for a 7B decoder would take 28 GB), they equal a random-init copy's. A mixture of experts routes
    zeros to its first experts, random inputs elsewhere: the same number of tokens per expert slot. Its grouped
    experts count as the same products in a loop (torch's counter left them at 0)."""
    import transformers as T
    from torch.utils.flop_counter import FlopCounterMode

    from alsatian_hf.adapters import split_model, state_nbytes
    from alsatian_hf.adapters.skeleton import build_model

    text = dict(vocab_size=31, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    model, state = {
        "bert": (T.BertModel(T.BertConfig(**text)), (torch.randint(3, 30, (1, 9)), torch.ones(1, 9, dtype=torch.long),
                                                      torch.zeros(1, 9, dtype=torch.long))),
        "llama": (T.LlamaForSequenceClassification(T.LlamaConfig(**text, num_key_value_heads=2, pad_token_id=0)),
                  (torch.randint(3, 30, (1, 9)), torch.tensor([[1] * 6 + [0] * 3]))),
        # grouped experts take rows of a multiple of 16 bytes (intermediate_size=40)
        "mixtral": (T.MixtralForSequenceClassification(T.MixtralConfig(**{**text, "intermediate_size": 40},
                                                                      num_key_value_heads=2, pad_token_id=0,
                                                                      num_local_experts=4, num_experts_per_tok=2)),
                    (torch.randint(3, 30, (1, 9)), torch.tensor([[1] * 6 + [0] * 3]))),
        "vit": (T.ViTModel(T.ViTConfig(**{k: v for k, v in text.items() if k != "vocab_size"}, image_size=32,
                                       patch_size=8)), (torch.randn(1, 3, 32, 32),)),
    }[kind]  # fmt: skip
    model.save_pretrained(tmp_path)
    from alsatian_hf.candidates import probe as probe_module

    built, build = [], probe_module.build_model
    monkeypatch.setattr(probe_module, "build_model", lambda *a, **kw: built.append(kw["device"]) or build(*a, **kw))
    probed = ShapeProbe().measure(tmp_path, f"probe-{kind}", state)
    assert built == ["meta", "meta"]  # the shared skeleton, then the private copy run on zeros: no random-init copy
    copy = build_model(tmp_path, device="cpu")
    if kind == "mixtral":  # transformers' loop over the experts (F.linear), which torch's counter counts
        assert copy.config._experts_implementation == "grouped_mm"  # what the probe ran: its counter needs our formula
        copy.config._experts_implementation = "eager"
    sizes, flops = [], []
    with torch.inference_mode():
        for block in split_model(copy).blocks:
            with FlopCounterMode(display=False) as counter:
                state = block.step(copy, state)
            sizes.append(state_nbytes(state))
            flops.append(float(counter.get_total_flops()))
    assert probed.sizes == sizes and probed.flops == flops and not any(probed.fold_pairs)


class _Halving(torch.nn.Module):
    """A timm model without BatchNorm whose forward halves the features between its blocks, in no module: the
    blocks a discovery finds on its skeleton look whole, and compute otherwise."""

    def __init__(self, num_classes: int = 7, **kwargs):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 4, stride=4)
        self.blocks = torch.nn.Sequential(*(torch.nn.Conv2d(8, 8, 3, padding=1) for _ in range(2)))
        self.num_classes, self.num_features = num_classes, 8
        self.head = torch.nn.Linear(8, num_classes)

    def forward_features(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x) * 0.5
        return x

    def forward_head(self, x, pre_logits: bool = False):
        x = x.mean((-2, -1))
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _halving_net(pretrained=False, pretrained_cfg=None, **kwargs):
    """`_Halving` as timm builds it by name, from its config (`timm.models.register_model`)."""
    model = _Halving(**kwargs)
    model.pretrained_cfg = model.default_cfg = {
        "architecture": "test_halving_net", "input_size": (3, 32, 32), "num_classes": model.num_classes,
        "classifier": "head", "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bilinear", "crop_pct": 1.0,
    } | dict(pretrained_cfg or {})  # fmt: skip
    return model


def test_the_probe_validates_a_discovered_split_without_batchnorm(tmp_path):
    """A discovered split is checked against the model's own features only on the probe's random-init copy (a
    candidate's skeleton has no values). A model without BatchNorm (CrossViT, before its adapter) once skipped that
    copy, so a split that does not reproduce its features was searched; the probe builds it for every discovered
    split."""
    import timm
    from timm.models._hub import save_for_hf

    from alsatian_hf.errors import UnsupportedArchitectureError

    if not timm.is_model("test_halving_net"):
        _halving_net.__name__ = "test_halving_net"
        timm.models.register_model(_halving_net)
    save_for_hf(timm.create_model("test_halving_net", num_classes=7), tmp_path, safe_serialization=True)
    with pytest.raises(UnsupportedArchitectureError, match="_Halving.*do not reproduce its own features"):
        ShapeProbe().measure(tmp_path, "px32-halving", (torch.randn(1, 3, 32, 32),))
