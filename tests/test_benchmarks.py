"""The benchmark harness keeps working (smoke suite), and its dataset cards load with huggingface_hub/datasets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from huggingface_hub import DatasetCard

ROOT = Path(__file__).resolve().parents[1]
CHECKED_IN = ROOT / "benchmarks" / "results" / "paper-cpu"


def _check_card(folder: Path) -> None:
    card = DatasetCard.load(folder / "README.md")
    configs = {c["config_name"]: c for c in card.data.configs}
    assert configs["end_to_end"].get("default") is True
    assert card.data.license == "apache-2.0" and "benchmark" in card.data.tags
    assert {i["config_name"] for i in card.data.dataset_info} == set(configs)
    assert "## Reproduce" in card.text and "python -m benchmarks.run" in card.text
    for name, info in ((i["config_name"], i) for i in card.data.dataset_info):
        ds = datasets.load_dataset(str(folder), name=name, split="train")
        assert ds.num_rows == info["splits"][0]["num_examples"] > 0
        assert ds.column_names == [f["name"] for f in info["features"]]


@pytest.mark.slow
def test_smoke_suite_writes_tables_plots_and_card(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmarks.run", "--suite", "smoke", "--out", str(tmp_path / "out"),
                          "--work-dir", str(tmp_path / "work")], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {f"{t}.csv" for t in ("end_to_end", "time_breakdown", "memory_budget", "input_scaling",
                                 "planner_scaling", "hub_fetch")} <= names
    assert {"end_to_end.png", "time_breakdown.png", "README.md"} <= names
    _check_card(tmp_path / "out")
    e2e = datasets.load_dataset(str(tmp_path / "out"), name="end_to_end", split="train")
    assert set(e2e["strategy"]) == {"alsatian", "shift", "base"} and all(e2e["same_ranking"])
    budget = datasets.load_dataset(str(tmp_path / "out"), name="memory_budget", split="train")
    assert all(budget["peak_within_budget"]) and all(budget["same_ranking"])
    scaling = datasets.load_dataset(str(tmp_path / "out"), name="input_scaling", split="train")
    assert sorted(zip(scaling["image_size"], scaling["strategy"])) == [
        (32, "alsatian"), (32, "shift"), (48, "alsatian"), (48, "shift")] and all(scaling["same_ranking"])
    assert all(0 < i <= s for i, s in zip(scaling["inference"], scaling["seconds"]))
    # resumable: a second run skips the cells whose rows exist
    again = subprocess.run([sys.executable, "-m", "benchmarks.run", "--suite", "smoke", "--out", str(tmp_path / "out"),
                            "--work-dir", str(tmp_path / "work"), "--skip", "memory", "planner"],
                           capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert again.returncode == 0 and "(done)" in again.stdout


@pytest.mark.skipif(not (CHECKED_IN / "README.md").is_file(), reason="no checked-in paper-cpu results")
def test_checked_in_results_card_loads():
    _check_card(CHECKED_IN)
