"""The benchmark harness keeps working (smoke suite), and its dataset cards load with huggingface_hub/datasets."""

from __future__ import annotations

import csv
import itertools
import logging
import math
import subprocess
import sys
import warnings
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import DatasetCard


ROOT = Path(__file__).resolve().parents[1]
CHECKED_IN = ROOT / "benchmarks" / "results" / "paper-cpu"


def _check_card(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    card = DatasetCard.load(folder / "README.md")
    configs = {c["config_name"]: c for c in card.data.configs}
    assert configs["end_to_end"].get("default") is True
    assert card.data.license == "apache-2.0" and "benchmark" in card.data.tags
    assert {i["config_name"] for i in card.data.dataset_info} == set(configs)
    assert "## Reproduce" in card.text and "python -m benchmarks.run" in card.text
    from benchmarks._tables import dtypes
    from benchmarks.report import TABLES

    for name, info in ((i["config_name"], i) for i in card.data.dataset_info):
        with caplog.at_level(logging.WARNING, logger="datasets"):
            ds = datasets.load_dataset(str(folder), name=name, split="train")
        assert not [r for r in caplog.records if "dataset_info" in r.getMessage()], caplog.text
        assert ds.num_rows == info["splits"][0]["num_examples"] > 0
        assert ds.info.splits["train"].num_bytes == info["splits"][0]["num_bytes"] > 0
        assert ds.column_names == [f["name"] for f in info["features"]]
        # every column is typed as its row dataclass declares it (bools are bools, not "True" strings)
        assert {c: f.dtype for c, f in ds.features.items()} == dtypes(TABLES[name])


def _run_smoke(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "benchmarks.run", "--suite", "smoke", "--out", str(tmp_path / "out"),
           "--work-dir", str(tmp_path / "work"), *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)


@pytest.mark.slow
def test_smoke_suite_writes_tables_plots_and_card(tmp_path, caplog):
    out = _run_smoke(tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {
        f"{t}.csv"
        for t in (
            "end_to_end",
            "time_breakdown",
            "memory_budget",
            "input_scaling",
            "block_times",
            "planner_scaling",
            "hub_fetch",
            "xet_fetch",
            "cold_search",
            "block_speed",
            "batch_size",
            "precision",
            "partition",
            "distributed",
        )
    } <= names
    assert {"end_to_end.png", "time_breakdown.png", "README.md"} <= names
    _check_card(tmp_path / "out", caplog)
    e2e = datasets.load_dataset(str(tmp_path / "out"), name="end_to_end", split="train")
    assert set(e2e["strategy"]) == {"alsatian", "shift", "base"} and all(e2e["same_ranking"])
    # rows name the device they ran on, the CPU's model included, and the card lists them
    from alsatian_hf._device import cpu_model

    device = "cpu:" + cpu_model() if not torch.cuda.is_available() else "cuda:" + torch.cuda.get_device_name(0)
    assert set(e2e["device"]) == {device}
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"- devices of the rows (`device` column): {device} (" in card
    # the bound in time is measured for every row; base is its own reference
    assert all(t > 0 for t in e2e["time_ideal_speedup"])
    assert [t for s, t in zip(e2e["strategy"], e2e["time_ideal_speedup"]) if s == "base"] == [1.0]
    budget = datasets.load_dataset(str(tmp_path / "out"), name="memory_budget", split="train")
    assert all(budget["peak_within_budget"]) and all(budget["same_ranking"])
    fetch = datasets.load_dataset(str(tmp_path / "out"), name="hub_fetch", split="train")
    assert sorted(fetch["strategy"]) == ["alsatian", "base", "shift"]
    speed = datasets.load_dataset(str(tmp_path / "out"), name="block_speed", split="train")
    assert len(speed) > 1 and all(r > 0 for r in speed["fast_items_per_second"])
    assert max(speed["max_abs_diff"]) < 1e-3  # the layouts differ by float rounding only
    # from a cold store, each strategy fetches the headers and every feature-extractor byte once, never a head
    assert all(
        b - h == fe
        for b, h, fe in zip(fetch["bytes_fetched"], fetch["header_bytes"], fetch["feature_extractor_bytes"])
    )
    scaling = datasets.load_dataset(str(tmp_path / "out"), name="input_scaling", split="train")
    assert sorted(zip(scaling["image_size"], scaling["strategy"])) == [
        (32, "alsatian"),
        (32, "shift"),
        (48, "alsatian"),
        (48, "shift"),
    ] and all(scaling["same_ranking"])
    assert all(t > 0 for t in scaling["time_ideal_speedup"])
    assert all(0 < i <= s for i, s in zip(scaling["inference"], scaling["seconds"]))
    blocks = datasets.load_dataset(str(tmp_path / "out"), name="block_times", split="train").to_pandas()
    for _, one in blocks.groupby("image_size"):  # every engine block of the model, shares summing to one
        assert list(one["block"]) == list(range(len(one))) and len(one) > 2
        assert abs(one["time_share"].sum() - 1) < 0.01 and abs(one["flop_share"].sum() - 1) < 0.01
    part = datasets.load_dataset(str(tmp_path / "out"), name="partition", split="train")
    assert all(1 <= t <= b for t, b in zip(part["of_trunk_bound"], part["of_bound"]))
    assert all(1 <= t <= b for t, b in zip(part["of_tree_bound"], part["of_trunk_bound"]))  # the tightest bound
    assert set(part["workers"]) == {2, 8, 64}
    precision = datasets.load_dataset(str(tmp_path / "out"), name="precision", split="train").to_pandas()
    # the CPU's modes: tf32 is fp32 there, and reduce-overhead's CUDA graphs need CUDA
    assert list(precision["precision"]) == ["fp32", "bf16", "fp32+compile"]
    exact = precision.iloc[0]  # the reference against itself
    assert exact.speedup_vs_fp32 == 1.0 and exact.same_survivors and exact.kendall_tau == 1.0
    assert exact.max_abs_score_diff == 0.0
    assert -1 <= precision.iloc[1].kendall_tau <= 1
    compiled = precision.iloc[2]  # fp32 rounded by other kernels: the same search
    assert compiled.same_top1 and compiled.same_survivors and compiled.max_abs_score_diff <= 1e-4
    assert (precision["first_seconds"] > 0).all()
    spread = datasets.load_dataset(str(tmp_path / "out"), name="distributed", split="train")
    assert len(spread) == 1 and spread["same_ranking"] == [True]
    # launch to exit holds the search, and the start-up around it
    assert spread["two_ranks_wall_seconds"][0] > spread["two_ranks_seconds"][0]
    assert spread["two_threads_wall_seconds"][0] > spread["two_threads_seconds"][0]
    # resumable: a second run skips the cells whose rows exist
    again = _run_smoke(tmp_path, "--skip", "memory", "planner")
    assert again.returncode == 0 and "(done)" in again.stdout


def test_lora_adapters_fetch_less_than_their_merged_copies_and_score_alike(tmp_path):
    """The adapters benchmark on its tiny profile: each adapter scores exactly as its merged copy, the search
    picks alike, the adapters' cold search fetches less, and the run leaves nothing behind."""
    cmd = [sys.executable, "-m", "benchmarks.lora_adapters", "--tiny", "--work-dir", str(tmp_path)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "every adapter scored exactly as its merged copy: True; the same pick: True" in out.stdout
    rows = {
        line.split()[0]: line.split() for line in out.stdout.splitlines() if line.startswith(("adapters", "merged"))
    }
    assert 0 < float(rows["adapters"][1]) < float(rows["merged"][1])  # MB fetched
    assert not list(tmp_path.iterdir())


def test_architecture_coverage_tells_an_adapter_a_discovery_and_a_refusal_apart():
    """The coverage table on three of its rows: a registered adapter, a discovered timm family (checked against
    its own features) and a text family without an adapter."""
    cmd = [sys.executable, "-m", "benchmarks.architecture_coverage", "--only", "test_vit", "regnetx_002", "Funnel"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {line.split(" | ")[1]: line.split(" | ")[2] for line in out.stdout.splitlines()
            if line.startswith(("| timm ", "| transformers "))}  # fmt: skip
    assert rows == {"test_vit": "adapter", "regnetx_002": "discovered", "Funnel": "refused"}, out.stdout
    assert "timm: 2 architectures; 1 by an adapter, 1 discovered, 0 refused" in out.stdout


def test_timm_families_are_run_as_a_search_runs_them():
    """The per-module table on two modules: DenseNet built, probed, folded and run exactly as a search does (its
    BatchNorm tracing once failed), and TNT, which discovery refuses."""
    cmd = [sys.executable, "-m", "benchmarks.architecture_coverage", "--timm-families", "--only", "densenet", "tnt"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in out.stdout.splitlines()]
    assert {c[0]: c[2] for c in cells if c[0] in ("densenet", "tnt")} == {"densenet": "ok", "tnt": "refused"}, (
        out.stdout
    )
    assert "timm families: 2 modules; 1 searched exactly, 1 refused, 0 wrong, 0 failing" in out.stdout


def test_probe_cost_prints_both_sides_of_a_tiny_decoder():
    """The probe-cost table on a tiny decoder, so the script cannot rot unseen (its figures are not asserted)."""
    cmd = [sys.executable, "-m", "benchmarks.probe_cost", "--size", "tiny"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| probe |" in out.stdout and "| random-init copy |" in out.stdout and "x the time" in out.stdout


def test_kendall_tau_equals_scipys():
    import random

    from scipy.stats import kendalltau

    from benchmarks.precision import kendall_tau

    rng = random.Random(0)
    for _ in range(100):  # with ties in either list, where tau-b's correction matters
        n = rng.randint(2, 12)
        a = tuple(rng.choice([0.1, 0.2, rng.random()]) for _ in range(n))
        b = tuple(rng.choice([0.1, 0.2, rng.random()]) for _ in range(n))
        expected = kendalltau(a, b).statistic
        if expected == expected:  # scipy's NaN: a constant list
            assert kendall_tau(a, b) == pytest.approx(expected, abs=1e-12)
    assert kendall_tau((0.5, 0.5), (0.5, 0.5)) == 1.0 and kendall_tau((0.5, 0.5), (0.1, 0.2)) == 0.0


def test_archs_narrow_every_per_model_step():
    import copy

    from benchmarks.run import only_archs
    from benchmarks.suites import SUITES

    suite = copy.deepcopy(SUITES["paper-cpu"])
    only_archs(suite, ["resnet18"])
    assert suite.archs == ["resnet18"]
    per_model = suite.scaling + suite.speed + suite.batch + suite.precision
    assert per_model and {cell[0] for cell in per_model} == {"resnet18"}


@pytest.mark.skipif(not (CHECKED_IN / "README.md").is_file(), reason="no checked-in paper-cpu results")
def test_checked_in_results_card_loads(caplog):
    _check_card(CHECKED_IN, caplog)


def test_card_types_a_numeric_looking_sha_as_a_string(tmp_path, caplog):
    """A short sha of digits and one "e" ("069e395") is a float to pandas; the card's features keep it a string."""
    from benchmarks.report import write_report
    from benchmarks.suites import SUITES

    out = tmp_path / "card"
    out.mkdir()
    lines = (CHECKED_IN / "planner_scaling.csv").read_text().splitlines()
    header = lines[0].split(",")
    col = header.index("code_revision")
    rows = [line.split(",") for line in lines[1:3]]
    for row, sha in zip(rows, ("069e395", "1234567")):
        row[col] = sha
    (out / "planner_scaling.csv").write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    write_report(out, suite_name="paper-cpu", suite=SUITES["paper-cpu"], seconds=1.0)
    with caplog.at_level(logging.WARNING, logger="datasets"):
        ds = datasets.load_dataset(str(out), name="planner_scaling", split="train")
    assert not [r for r in caplog.records if "dataset_info" in r.getMessage()], caplog.text
    assert ds["code_revision"] == ["069e395", "1234567"]


@pytest.mark.slow
def test_revisions_compares_two_checkouts_each_with_its_own_store(tmp_path):
    """`benchmarks.revisions` checks a revision out beside the working tree, times each side's searches in its
    own process, each revision building its own block store, and compares the rankings (exit status 1 if they
    differ). `--batch-size default` hands each revision its library's default."""
    cmd = [sys.executable, "-m", "benchmarks.revisions", "HEAD", ".", "--arch", "test_resnet", "--items", "200",
           "--image-size", "48", "--batch-size", "default", "--rounds", "1", "--searches", "1",
           "--work-dir", str(tmp_path)]  # fmt: skip
    worktrees = ["git", "worktree", "list", "--porcelain"]
    before = subprocess.run(worktrees, capture_output=True, text=True, cwd=ROOT).stdout
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "200 items at 48 px, batch size default, alsatian" in done.stdout
    rows = {line.split(":")[0].strip() for line in done.stdout.splitlines() if "inference" in line and ":" in line}
    assert rows == {"HEAD", "."}, done.stdout
    assert done.stdout.rstrip().endswith("same ranking at both revisions: True")
    assert subprocess.run(worktrees, capture_output=True, text=True, cwd=ROOT).stdout == before  # checkout removed


def _ranking_quality_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.ranking_quality", "--tiny", "--threads", "1", *args]


def _ranking_quality(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_ranking_quality_cmd(*args), capture_output=True, text=True, timeout=900, cwd=ROOT)


@pytest.mark.slow
def test_ranking_quality_builds_and_searches_a_tiny_zoo(tmp_path):
    """The benchmark's whole pipeline on its tiny profile: a zoo of real EfficientNet-Lite0 fine-tunes, their
    ground truth over two seeds, and the search side through the local Hub, resumable, into a loadable card.
    Two processes build it at once, one in reverse (a fine-tune before its parent), each model exactly once."""
    from safetensors.torch import load_file

    from benchmarks._tables import read_rows
    from benchmarks.ranking_quality.zoo import TINY_ZOO, frozen_keys, load_candidate

    dirs = ["--out", str(tmp_path / "build"), "--work-dir", str(tmp_path / "work")]
    logs = [tmp_path / "forward.log", tmp_path / "reverse.log"]  # files, not pipes: a full pipe would stall one
    with open(logs[0], "w") as forward, open(logs[1], "w") as reverse:
        builders = [
            subprocess.Popen(
                _ranking_quality_cmd("--build", *dirs, *extra), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
            for out, extra in ((forward, []), (reverse, ["--reverse"]))
        ]
        codes = [b.wait(timeout=900) for b in builders]
    assert codes == [0, 0], [log.read_text()[-3000:] for log in logs]
    built_lines = [line.split()[1].rstrip(":") for log in logs for line in log.read_text().splitlines()
                   if line.startswith("  built ")]  # fmt: skip
    assert sorted(built_lines) == sorted(f"rq-tiny/{m.name}" for m in TINY_ZOO)
    truth = list(csv.DictReader(open(tmp_path / "build" / "ground_truth_image.csv")))
    assert sorted((r["model"], r["seed"]) for r in truth) == sorted(
        (f"rq-tiny/{m.name}", s) for m in TINY_ZOO for s in ("0", "1")
    )
    assert all(0 <= float(r["accuracy"]) <= 1 for r in truth)
    # a fine-tune's frozen blocks are bit-identical to its parent's, so the search shares them
    hub = tmp_path / "work" / "hub" / "rq-tiny"
    frozen = next(m for m in TINY_ZOO if m.frozen)
    model, _ = load_candidate(hub / frozen.name, 10)
    base, child = (
        load_file(hub / frozen.parent / "model.safetensors"),
        load_file(hub / frozen.name / "model.safetensors"),
    )
    keys = frozen_keys(model, frozen.frozen)
    assert keys and all(torch.equal(base[k], child[k]) for k in keys)
    assert not all(torch.equal(base[k], child[k]) for k in child if k not in keys and not k.startswith("classifier"))
    # the from-scratch candidate is no copy of the ImageNet base, and claims no lineage
    scratch = next(m for m in TINY_ZOO if m.source and not m.parent)
    own = load_file(hub / scratch.name / "model.safetensors")
    assert not torch.equal(own["conv_stem.weight"], base["conv_stem.weight"])
    assert "base_model" not in (hub / scratch.name / "README.md").read_text()
    again = _ranking_quality("--build", *dirs)  # resumes: nothing built or trained twice
    assert again.returncode == 0 and "built rq-tiny" not in again.stdout and "truth digits" not in again.stdout

    card = tmp_path / "card"
    searched = _ranking_quality(*dirs, "--card-dir", str(card), "--scorers", "linear", "hscore", "hscore-pinv")
    assert searched.returncode == 0, searched.stderr[-3000:]
    quality = datasets.load_dataset(str(card), name="ranking_quality", split="train")
    assert sorted(zip(quality["scorer"], quality["min_items_per_class"])) == [
        (s, m) for s in ("hscore", "hscore-pinv", "linear") for m in (0, 10)
    ]
    for row in quality:
        assert row["it1_items"] > 0 and row["search_seconds"] > 0
        assert row["candidates"] == 4 and row["seeds"] == 2 and row["pick"].startswith("rq-tiny/")
        assert 0 <= row["regret_points"] <= row["truth_spread_points"]
        assert -1 <= row["truth_seed_tau"] <= 1
    scores = datasets.load_dataset(str(card), name="ranking_scores", split="train")
    assert len(scores) == 12 and sum(scores["picked"]) == 3
    assert (card / "ranking_quality.png").is_file()
    assert "## Does it pick the right model?" in (card / "README.md").read_text()
    # the all-data scores again over a second draw of D_test (TINY's 2 splits); split 0 is `score_all`
    by_split = datasets.load_dataset(str(card), name="ranking_split_scores", split="train").to_list()
    assert len(by_split) == 3 * 2 * 4
    split0 = {(r["scorer"], r["model"]): r["score"] for r in by_split if r["split"] == 0}
    assert split0 == {(r["scorer"], r["model"]): r["score_all"] for r in scores}
    split1 = {(r["scorer"], r["model"]): r["score"] for r in by_split if r["split"] == 1}
    assert split1.keys() == split0.keys() and split1 != split0  # another D_test, other scores
    # --splits-only measures them alone, to the same bits, and keeps the other tables
    before = (card / "ranking_quality.csv").read_text()
    again = _ranking_quality(*dirs, "--card-dir", str(card), "--scorers", "linear", "--splits-only", "--no-card")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (card / "ranking_quality.csv").read_text() == before
    remeasured = read_rows(card / "ranking_split_scores.csv")
    assert sorted((r["scorer"], int(r["split"]), r["model"], float(r["score"])) for r in remeasured) == sorted(
        (r["scorer"], r["split"], r["model"], r["score"]) for r in by_split
    )


def test_zero_head_leaves_the_seed_as_the_only_randomness():
    """The ground truth's image recipe starts the fresh head at zero, so the head a candidate arrives with (timm
    draws it at random) changes nothing: two fine-tunes with the same seed end bit-identical, and another seed
    (another data order) does not."""
    import timm

    from benchmarks.ranking_quality.finetune import Recipe, train

    gen = torch.Generator().manual_seed(0)
    inputs = {"pixel_values": torch.randn(24, 3, 32, 32, generator=gen)}
    labels = torch.randint(0, 4, (24,), generator=gen)
    recipe = Recipe(lr=1e-3, epochs=2, batch_size=8, zero_head=True)

    def fine_tune(head_seed: int, seed: int, recipe: Recipe = recipe) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = timm.create_model("test_efficientnet", num_classes=4)
        torch.manual_seed(head_seed)
        model.reset_classifier(4)  # another random head on the same backbone
        train(model, inputs, labels, recipe, seed)
        return model.state_dict()

    a, b, other_seed = fine_tune(1, 7), fine_tune(2, 7), fine_tune(1, 8)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], other_seed[k]) for k in a)
    without = Recipe(lr=1e-3, epochs=2, batch_size=8)
    c, d = fine_tune(1, 7, without), fine_tune(2, 7, without)
    assert not all(torch.equal(c[k], d[k]) for k in c)  # the random head did reach the backbone


def test_separable_pairs_are_those_the_seeds_tell_apart():
    """Two candidates 5 points apart are told apart by three seeds whose runs vary by about 0.5 points, two 0.1
    points apart are not; the tau over separable pairs counts only the first kind, so a scorer that swaps only
    the near-equal pair still scores 1 there while its plain tau drops."""
    from benchmarks.ranking_quality.quality import _pair_tau, separable_pairs

    per_seed = [[80.0, 80.2, 85.0], [80.5, 79.8, 85.6], [79.6, 80.4, 84.5]]  # seeds x candidates
    pairs = separable_pairs(per_seed)
    assert pairs == [(0, 2), (1, 2)]
    accs = [sum(c) / 3 for c in zip(*per_seed)]
    swaps_near_pair = [2.0, 1.0, 3.0]  # ranks candidate 0 above 1, whose means are 80.03 and 80.13
    assert _pair_tau(swaps_near_pair, accs, pairs) == 1.0
    assert _pair_tau([3.0, 2.0, 1.0], accs, pairs) == -1.0
    assert _pair_tau([1.0, 1.0, 1.0], accs, pairs) == 0.0  # a constant scorer orders nothing
    assert separable_pairs(per_seed[:1]) == []  # one seed: no standard error, nothing is separable


def test_every_target_is_disjoint_in_items_from_every_source():
    """The ground truth and the search see no item a candidate was fine-tuned on: no target's image (by its
    pixels) or text is in any source of its modality, and a target's train and test items are disjoint.
    The targets' and sources' classes may overlap on purpose (an org's zoo has in-domain fine-tunes)."""
    import hashlib

    import numpy as np

    from benchmarks.ranking_quality.tasks import SOURCES, TARGETS, source_dataset, target_datasets

    def items(ds) -> list[str]:
        if "image" in ds.column_names:
            return [hashlib.sha1(np.asarray(im).tobytes()).hexdigest() for im in ds["image"]]
        return list(ds["text"])

    sources = {name: set(items(source_dataset(name))) for name in SOURCES}
    for target in TARGETS.values():
        train, test = (items(ds) for ds in target_datasets(target.name))
        assert (len(train), len(test)) == (target.train_items, target.test_items), target.name
        assert not set(train) & set(test), target.name
        for name, seen in sources.items():
            if SOURCES[name].modality == target.modality:
                assert not (set(train) | set(test)) & seen, (target.name, name)


def test_ground_truth_of_another_draw_or_recipe_is_dropped_by_the_build_and_refused_by_the_search(tmp_path):
    """A target whose items (a new draw, a filter) or recipe changed since its ground truth was measured: the
    search side refuses to run before writing anything, and the build drops just those runs, so they are
    measured anew."""
    from dataclasses import replace

    from benchmarks._tables import Table
    from benchmarks.ranking_quality.quality import run_quality
    from benchmarks.ranking_quality.tasks import TINY, items_digest, target_datasets
    from benchmarks.ranking_quality.truth import TruthRow, TuningRow, drop_stale_runs, measured_recipe, recipe_digest

    train, test = target_datasets("digits", profile=TINY)
    today = items_digest(train, test)
    assert today == items_digest(*target_datasets("digits", profile=TINY))
    assert today != items_digest(*target_datasets("digits", seed=1, profile=TINY))
    assert today != items_digest(train, test.select(range(1, len(test))))

    tuning = Table(tmp_path / "tuning_image.csv", TuningRow)
    for lr, acc in ((1e-3, 0.8), (3e-3, 0.7)):
        tuning.add(TuningRow(modality="image", target="digits", model="rq-tiny/lite0-base", lr=lr, val_accuracy=acc,
                             seconds=1.0))  # fmt: skip
    recipe = measured_recipe(tmp_path, "image", TINY)
    assert (recipe.lr, recipe.epochs) == (1e-3, TINY.epochs)
    ours, other = recipe_digest(recipe), recipe_digest(replace(recipe, zero_head=not recipe.zero_head))
    table = Table(tmp_path / "ground_truth_image.csv", TruthRow)
    runs = [("digits", 0, today, ours), ("digits", 1, "0" * 16, ours), ("digits", 2, "", ours),
            ("digits", 3, today, other), ("fashion-mnist", 0, "0" * 16, other)]  # fmt: skip
    for target, seed, data, recipe_key in runs:
        table.add(TruthRow(target=target, model="rq-tiny/lite0-base", seed=seed, lr=1e-3, epochs=1, batch_size=32,
                           recipe=recipe_key, test_items=len(test), data=data, accuracy=0.5, seconds=1.0))  # fmt: skip
    with pytest.raises(ValueError, match=r"\['digits'\].*--build"):
        run_quality(tmp_path / "hub", tmp_path / "work", tmp_path / "card", ["image"], build_dir=tmp_path,
                    profile=TINY)  # fmt: skip
    assert not (tmp_path / "card").exists()
    drop_stale_runs(table, {"digits": today}, {"digits": ours}, log=lambda _: None)
    kept = Table(tmp_path / "ground_truth_image.csv", TruthRow).rows
    assert [(r["target"], r["seed"]) for r in kept] == [("digits", "0"), ("fashion-mnist", "0")]


def test_a_scorer_beats_the_default_only_beyond_every_noise(tmp_path):
    """The paired comparison with the default: a scorer that orders every target's candidates as the ground truth
    does beats one that reverses them on every target; a scorer far ahead on one target and behind on the rest,
    or ahead in one draw of D_test and behind in another, is within noise, however small the ground truth's."""
    from benchmarks._tables import Table
    from benchmarks.ranking_quality.card import _paired_verdict, _verdict, fine_tune_wtau, paired_against_default
    from benchmarks.ranking_quality.quality import RankingScoreRow, RankingSplitRow, default_scorer
    from benchmarks.ranking_quality.truth import TruthRow

    default = default_scorer()  # the library's default scorer, under its name in the card's tables
    assert default == "head-probe"
    models = [f"org/m{i}" for i in range(6)]
    targets = ["t0", "t1", "t2"]
    truth, scores = (
        Table(tmp_path / "ground_truth.csv", TruthRow),
        Table(tmp_path / "ranking_scores.csv", RankingScoreRow),
    )
    gen = torch.Generator().manual_seed(0)
    for t, seed in itertools.product(targets, range(3)):
        for i, m in enumerate(models):
            acc = 0.5 + 0.05 * i + 0.01 * float(torch.rand((), generator=gen))  # a noise below the gaps
            truth.add(TruthRow(target=t, model=m, seed=seed, lr=1e-3, epochs=1, batch_size=8, recipe="", test_items=100,
                               data="", accuracy=acc, seconds=1.0))  # fmt: skip
    order = {default: -1.0, "truth-like": 1.0}
    for t, (scorer, sign), (i, m) in itertools.product(targets, order.items(), enumerate(models)):
        scores.add(RankingScoreRow(target=t, scorer=scorer, model=m, accuracy_mean=0.0, accuracy_se=0.0,
                                   score_it1=0.0, score_all=sign * i, picked=False))  # fmt: skip
    for t, (i, m) in itertools.product(targets, enumerate(models)):  # ahead on t0 alone
        scores.add(RankingScoreRow(target=t, scorer="one-target", model=m, accuracy_mean=0.0, accuracy_se=0.0,
                                   score_it1=0.0, score_all=i if t == "t0" else -i, picked=False))  # fmt: skip
    paired = paired_against_default(tmp_path)
    assert paired["truth-like"]["verdict"] == "better" and paired["truth-like"]["targets_better"] == 3
    assert paired["truth-like"]["delta"] == pytest.approx(2.0)  # weighted tau 1 against -1
    assert paired["one-target"]["verdict"] == "within noise"
    assert paired["one-target"]["seed_se"] < 1e-9 < paired["one-target"]["target_se"]
    assert paired["one-target"]["targets_better"] == 1
    # both verdicts hold without any one target; a lead of 1, 1 and 0.1 on three targets is "better" (0.7 against
    # a bar of 0.6) but not without the first or the second target (0.55 against 0.9)
    assert paired["truth-like"]["verdict_holds"] == 3 and paired["one-target"]["verdict_holds"] == 3
    lead = np.array([[1.0, 1.0, 0.1], [1.0, 1.0, 0.1]])[:, :, None] + np.array([0.0, 1e-3])[:, None, None]
    assert _verdict(*_paired_verdict(lead)[:2]) == "better"
    assert [_verdict(*_paired_verdict(np.delete(lead, t, axis=1))[:2]) for t in range(3)] == [
        "within noise", "within noise", "better"
    ]  # fmt: skip
    assert paired["truth-like"]["splits"] == 1  # no split table: split 0 (`score_all`) alone
    # fine-tuning's own weighted tau: the seeds agree on every order here; a seed that reverses one target lowers it
    assert fine_tune_wtau(tmp_path) == pytest.approx({t: 1.0 for t in targets})
    for i, m in enumerate(models):
        truth.add(TruthRow(target="t0", model=m, seed=3, lr=1e-3, epochs=1, batch_size=8, recipe="", test_items=100,
                           data="", accuracy=0.9 - 0.05 * i, seconds=1.0))  # fmt: skip
    by_target = fine_tune_wtau(tmp_path)
    assert by_target["t0"] == pytest.approx(0.5) and by_target["t1"] == pytest.approx(1.0)  # (1 + 1 + 1 - 1) / 4
    truth.drop(seed=3)

    # over two draws of D_test: a scorer ahead on every target in one draw and behind in the other is within
    # noise (the splits' SE), however steady it is over seeds and targets
    splits = Table(tmp_path / "ranking_split_scores.csv", RankingSplitRow)
    signs = {default: (-1.0, -1.0), "truth-like": (1.0, 1.0), "one-target": (1.0, -1.0), "one-split": (1.0, -1.0)}
    for t, (scorer, by_split), (i, m) in itertools.product(targets, signs.items(), enumerate(models)):
        for split, sign in enumerate(by_split):
            if scorer == "one-target" and t != "t0":
                sign = -1.0
            splits.add(RankingSplitRow(target=t, scorer=scorer, split=split, model=m, score=sign * i))
    for t, (i, m) in itertools.product(targets, enumerate(models)):
        scores.add(RankingScoreRow(target=t, scorer="one-split", model=m, accuracy_mean=0.0, accuracy_se=0.0,
                                   score_it1=0.0, score_all=i, picked=False))  # fmt: skip
    paired = paired_against_default(tmp_path)
    assert paired["truth-like"]["splits"] == 2 and paired["truth-like"]["verdict"] == "better"
    assert paired["one-split"]["verdict"] == "within noise" and paired["one-split"]["delta"] == pytest.approx(1.0)
    assert (
        paired["one-split"]["seed_se"] < 1e-9
        and paired["one-split"]["target_se"] < 1e-9 < paired["one-split"]["split_se"]
    )
    assert paired["one-split"]["wtau"] == pytest.approx(0.0) and paired["one-split"]["default_wtau"] == pytest.approx(
        -1.0
    )


def _sfda_reference(x: np.ndarray, y: np.ndarray) -> float:
    """SFDA as the authors formulate it: LDA through the generalised eigenproblem (S_b, shrunk S_w), in float64."""
    import scipy.linalg

    classes = np.unique(y)
    priors = np.array([(y == c).mean() for c in classes])

    def lda(x, shrinkage):
        means = np.stack([x[y == c].mean(0) for c in classes])
        sw = sum(p * np.cov(x[y == c].T, bias=True) for p, c in zip(priors, classes))
        if shrinkage is None:
            v = sw.sum(1)
            for _ in range(3):
                u = sw @ v / np.linalg.norm(sw @ v)
                v = sw @ u / np.linalg.norm(sw @ u)
            shrinkage = max(np.exp(-5 * v @ sw @ u), 1e-10)
        d = x.shape[1]
        shrink = lambda m: (1 - shrinkage) * m + shrinkage * np.trace(m) / d * np.eye(d)  # noqa: E731
        _, vecs = scipy.linalg.eigh(shrink(np.cov(x.T, bias=True)) - shrink(sw), shrink(sw))
        coef = means @ vecs @ vecs.T
        logits = x @ coef.T - 0.5 * np.diag(means @ coef.T) + np.log(priors)
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True), shrinkage

    prob, shrinkage = lda(x, None)
    prob = np.exp(prob) / np.exp(prob).sum(1, keepdims=True)
    means = np.stack([x[y == c].mean(0) for c in classes])
    others = (means.sum(0) - means) / (len(classes) - 1)
    own = prob[np.arange(len(y)), y][:, None]
    prob, _ = lda(own * x + (1 - own) * others[y], shrinkage)
    return float(prob[np.arange(len(y)), y].mean())


def test_sfda_equals_the_authors_eigenproblem_formulation():
    """The SFDA proxy solves S_w where the authors take every generalised eigenvector: the same score, on features
    whose within-class scale gives a real shrinkage (0.70, 0.28) and on ones that make it negligible (6e-6,
    the 1e-10 floor); and better-separated features score higher."""
    from benchmarks.ranking_quality.proxies import SFDA

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    for scale, separation in ((0.05, 0.01), (0.1, 0.03), (0.3, 0.2), (3.0, 1.0)):
        x = rng.normal(size=(60, 8)) * scale + rng.normal(size=(3, 8))[y] * separation
        x = x @ rng.normal(size=(8, 8))  # correlated dimensions
        ours = SFDA().score(train_features=torch.tensor(x, dtype=torch.float32), train_labels=torch.tensor(y),
                            test_features=torch.tensor(x[:3], dtype=torch.float32), test_labels=torch.tensor(y[:3]))  # fmt: skip
        assert ours == pytest.approx(_sfda_reference(x.astype(np.float32).astype(np.float64), y), rel=1e-6, abs=1e-9)
    for shrinkage in ("adaptive", "ledoit-wolf"):
        sep = [SFDA(shrinkage=shrinkage).score(train_features=torch.tensor(rng.normal(size=(60, 8)) + k * np.eye(8)[y],
               dtype=torch.float32), train_labels=torch.tensor(y), test_features=torch.zeros(3, 8),
               test_labels=torch.tensor([0, 1, 2])) for k in (0.5, 3.0)]  # fmt: skip
        assert sep[1] > sep[0], shrinkage


def test_ncti_ranks_separable_features_first_and_is_relative_to_the_set_scored():
    """NCTI's normalised terms: of three feature sets of growing class separation, the most separable scores
    highest; the score depends on the sets scored together (one alone scores 0); a first iteration with fewer
    items than PCA components is scored, not refused; and a class of one item scores without a warning."""
    from benchmarks.ranking_quality.proxies import NCTI

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    sets = [torch.tensor(rng.normal(size=(120, 96)) + k * np.eye(96)[y] * 3, dtype=torch.float32) for k in (0.1, 0.5, 2.0)]  # fmt: skip
    labels, test = torch.tensor(y), torch.zeros(4, 96)
    scores = NCTI().score_many(train_features=sets, train_labels=labels, test_features=[test] * 3,
                               test_labels=torch.arange(4))  # fmt: skip
    assert scores[2] == max(scores) and scores[0] == min(scores), scores
    assert all(-1.0 <= s <= 2.0 for s in scores)  # each term is min-max normalised over the three
    assert (
        NCTI().score(train_features=sets[2], train_labels=labels, test_features=test, test_labels=torch.arange(4))
        == 0.0
    )
    few = [s[::10] for s in sets]  # 12 items, fewer than 64 components
    assert len(set(NCTI().score_many(train_features=few, train_labels=labels[::10], test_features=[test] * 3,
                                     test_labels=torch.arange(4)))) == 3  # fmt: skip
    # and a class of one item, on features small enough for the shrinkage LDA, without scikit-learn's warning
    one = torch.tensor(y[::10].tolist() + [4])
    small = [torch.cat([f, f[:1] + 5]) * 0.05 for f in few]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = NCTI().score_many(train_features=small, train_labels=one,
                                   test_features=[test] * 3, test_labels=torch.arange(4))  # fmt: skip
    assert len(set(scores)) == 3 and all(math.isfinite(s) for s in scores), scores
