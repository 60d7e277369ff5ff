"""`SearchResult`: the ranking, every iteration's scores and survivors, skips, timings, bytes and cache stats."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..engine import PHASES
from ..errors import MissingDependencyError


APART_SHOWN = 5  # pairs of candidates computed apart that the summary lists; the plan keeps them all


@dataclass(repr=False)
class SearchResult:
    """What a search returns.

    `ModelSearcher.search` returns one; `SearchResult.load` reads a saved one back.

    Example:
        >>> result = SearchResult(ranking=[{"rank": 1, "model": "org/a", "score": 0.91, "revision": None},
        ...                                {"rank": 2, "model": "org/b", "score": 0.87, "revision": None}])
        >>> result.best, result.models
        ('org/a', ['org/a', 'org/b'])
        >>> result
        SearchResult(best='org/a', models=['org/a', 'org/b'], strategy='alsatian', searched=2, skipped=0, seconds=0.0)
        >>> result.to_pandas()["model"].tolist()
        ['org/a', 'org/b']
    """

    # [{"rank", "model", "score", "revision"[, "base"][, "weights"][, "prompt"]}], best first. "base": an adapter's
    # base `repo@commit`; "weights": the safetensors conversion (`refs/pr/N`) searched for a `.bin`-only commit, whose
    # head is "revision"; "prompt": the sentence-transformers prompt its texts started with (encode with it too)
    ranking: list[dict[str, Any]]
    iterations: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    strategy: str = "alsatian"
    arguments: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    setup_seconds: float = 0.0  # listing, headers, block fetching and hashing, before the first iteration
    bytes_fetched: int = 0  # every byte of Range requests: headers, weights and edge bytes
    requests: int = 0
    # header_bytes, edge_bytes, Xet metadata_requests / metadata_bytes, and `identity`: how many blocks were
    # established this search by xet-proof, lfs-sha or bytes
    fetch: dict[str, Any] = field(default_factory=dict)
    store: dict[str, Any] = field(default_factory=dict)
    # the persistent feature cache: hit_items / miss_items ((model, item) rows), bytes_read / bytes_written,
    # corrupt segments, and `cached`: the candidates whose features some iteration read instead of computing
    feature_cache: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"

    def __repr__(self) -> str:  # the dataclass's own printed every iteration's per-block timings: pages of them
        searched = len(self.iterations[0]["candidates"]) if self.iterations else len(self.ranking)
        return (
            f"SearchResult(best={self.best!r}, models={self.models}, strategy={self.strategy!r}, "
            f"searched={searched}, skipped={len(self.skipped)}, seconds={self.seconds:.1f})"
        )

    def _repr_markdown_(self) -> str:
        """A notebook shows a result as its summary: the ranking, iterations, time by phase, ties and skips."""
        return self.summary()

    @property
    def best(self) -> str | None:
        return self.ranking[0]["model"] if self.ranking else None

    @property
    def models(self) -> list[str]:
        return [r["model"] for r in self.ranking]

    @property
    def ties(self) -> dict[int, list[str]]:
        """iteration -> the candidates that tied exactly at its cut (input order chose among them)."""
        return {it["iteration"]: it["ties"] for it in self.iterations if it.get("ties")}

    def phase_seconds(self) -> dict[str, float]:
        return {p: sum(it["seconds"][p] for it in self.iterations) for p in PHASES}

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(self.ranking).set_index("rank")

    def iterations_frame(self):
        import pandas as pd

        rows = []
        for it in self.iterations:
            for model, score in it["scores"].items():
                rows.append(
                    {
                        "iteration": it["iteration"],
                        "model": model,
                        "score": score,
                        "survived": model in it["survivors"],
                    }
                )
        return pd.DataFrame(rows)

    def plot(self, path: str | Path | None = None):
        """Scores and survivors per iteration, and the time breakdown per iteration; saved as PNG if `path`.

        Raises:
            MissingDependencyError: without matplotlib (`pip install 'alsatian-hf[plot]'`).
        """
        try:
            import matplotlib
        except ImportError as e:
            raise MissingDependencyError("SearchResult.plot needs matplotlib: pip install 'alsatian-hf[plot]'") from e

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        for it in self.iterations:
            for model, score in it["scores"].items():
                kept = model in it["survivors"]
                ax1.scatter(it["iteration"], score, c="tab:green" if kept else "tab:gray", s=18 if kept else 10)
        for r in self.ranking:
            xs = [it["iteration"] for it in self.iterations if r["model"] in it["scores"]]
            ys = [it["scores"][r["model"]] for it in self.iterations if r["model"] in it["scores"]]
            ax1.plot(xs, ys, label=r["model"])
        ax1.set_xlabel("iteration")
        ax1.set_ylabel("proxy score")
        ax1.set_title("scores (green: survived)")
        if self.ranking:
            ax1.legend(fontsize=7)
        bottom = [0.0] * len(self.iterations)
        xs = [it["iteration"] for it in self.iterations]
        for phase in PHASES:
            vals = [it["seconds"][phase] for it in self.iterations]
            ax2.bar(xs, vals, bottom=bottom, label=phase)
            bottom = [b + v for b, v in zip(bottom, vals)]
        for x, it in zip(xs, self.iterations):
            ax2.annotate(
                f"{len(it['candidates'])}→{len(it['survivors'])}",
                (x, bottom[xs.index(x)]),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax2.set_xlabel("iteration")
        ax2.set_ylabel("seconds")
        ax2.set_title(f"time by phase ({self.strategy})")
        ax2.legend(fontsize=7)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig

    def summary(self) -> str:
        lines = [
            f"# Model search ({self.strategy})",
            "",
            f"{len(self.ranking)} model(s) returned; {self.seconds:.1f}s in total "
            f"({self.setup_seconds:.1f}s setup) on {self.device}.",
            "",
            "| rank | model | score |",
            "|---:|---|---:|",
        ]
        for r in self.ranking:
            converted = f" (safetensors from {r['weights']})" if r.get("weights") else ""
            prompted = f" (prompt {r['prompt']!r})" if r.get("prompt") else ""
            lines.append(f"| {r['rank']} | {r['model']}{converted}{prompted} | {r['score']:.4f} |")
        lines += [
            "",
            "## Iterations",
            "",
            "| iteration | candidates | survivors | new items | block executions | "
            "chunks | cache peak (bytes) | seconds |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for it in self.iterations:
            lines.append(
                f"| {it['iteration']} | {len(it['candidates'])} | {len(it['survivors'])} | {it['new_items']} "
                f"| {it['block_executions']} | {it['chunks']} | {it['cache_peak']} | "
                f"{sum(it['seconds'].values()):.2f} |"
            )
        phases = self.phase_seconds()
        lines += ["", "## Time by phase", ""] + [f"- {p}: {s:.2f}s" for p, s in phases.items()]
        ran = [it for it in self.iterations if it.get("rank_seconds")]  # several ranks ran them
        if ran:
            world = len(ran[0]["rank_seconds"])
            lines += ["", "## Ranks", "", "| rank | block executions | " + " | ".join(PHASES) + " |",
                      "|---:|---:|" + "---:|" * len(PHASES)]  # fmt: skip
            for r in range(world):
                work = sum(it["rank_block_executions"][r] for it in ran)
                secs = [sum(it["rank_seconds"][r].get(p, 0.0) for it in ran) for p in PHASES]
                lines.append(f"| {r} | {work} | " + " | ".join(f"{x:.2f}s" for x in secs) + " |")
        lines += ["", f"Bytes fetched: {self.bytes_fetched} in {self.requests} requests."]
        if self.plan.get("batch_size"):
            tuning = self.plan.get("batch_size_tuning")
            how = "as given"
            if tuning:
                how = {
                    "measured": f"measured in {tuning['seconds']:.1f}s",
                    "store": "an earlier search's measurement, from the store",
                    "one size": "the only size that fits",
                    "fallback": "the measurement failed; see the log",
                }.get(tuning["source"], tuning["source"])
            lines.append(f"Execution batch size: {self.plan['batch_size']} ({how}).")
        if self.plan.get("precision", "fp32") != "fp32":
            lines.append(f"Precision: {self.plan['precision']} (opt-in: the features' rounding differs from exact "
                         "fp32, and so may the ranking).")  # fmt: skip
        apart = self.plan.get("computed_apart") or []
        for pair in apart[:APART_SHOWN]:
            lines.append(f"{' and '.join(pair['models'])} hold the same tensors in {pair['blocks']} blocks but compute "
                         f"them apart: {pair['why']}.")  # fmt: skip
        if len(apart) > APART_SHOWN:
            lines.append(f"... and {len(apart) - APART_SHOWN} more such pairs (`plan['computed_apart']`).")
        if self.fetch.get("identity"):
            methods = ", ".join(f"{m} {n}" for m, n in sorted(self.fetch["identity"].items()))
            lines.append(f"Block identity established this search: {methods}; Xet metadata: "
                         f"{self.fetch.get('metadata_requests', 0)} requests, {self.fetch.get('metadata_bytes', 0)} "
                         f"bytes; edge bytes compared: {self.fetch.get('edge_bytes', 0)}.")  # fmt: skip
        if self.store:
            lines.append(
                f"Block store: {self.store.get('blocks')} blocks, {self.store.get('bytes')} bytes, dedup "
                f"ratio {self.store.get('dedup_ratio', 1.0):.2f}."
            )
        fc = self.feature_cache
        if fc.get("hit_items") or fc.get("miss_items"):
            restored = sum(1 for it in self.iterations if it.get("restored"))
            lines.append(
                f"Feature cache: {fc['hit_items']} (model, item) rows read, {fc['miss_items']} computed; "
                f"{len(fc.get('cached', []))} candidate(s) served from disk, {restored} iteration(s) restored"
                + (f"; {fc['corrupt']} corrupt segment(s) recomputed." if fc.get("corrupt") else ".")
            )
        ties = [it for it in self.iterations if it.get("ties")]
        if ties:
            lines += ["", "## Ties at the cut", ""] + [
                f"- iteration {it['iteration']}: {', '.join(it['ties'])} scored exactly "
                f"{it['scores'][it['ties'][0]]!r}; input order chose who survived."
                for it in ties
            ]
        if self.skipped:
            lines += ["", "## Skipped candidates", ""] + [f"- {m}: {r}" for m, r in self.skipped.items()]
        return "\n".join(lines) + "\n"

    def save(self, directory: str | Path) -> Path:
        """Writes `result.json`, `result.png` and `summary.md` into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "result.json").write_text(json.dumps(asdict(self), indent=2, default=str))
        (directory / "summary.md").write_text(self.summary())
        try:
            fig = self.plot(directory / "result.png")
        except ImportError as e:
            logging.getLogger("alsatian_hf").warning("result.png not written: %s", e)
        else:
            import matplotlib.pyplot as plt

            plt.close(fig)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "SearchResult":
        data = json.loads((Path(directory) / "result.json").read_text())
        return cls(**data)
