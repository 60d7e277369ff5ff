"""LoRA adapters against the same models merged and pushed whole: what a cold search fetches, how long it takes,
and whether it scores them alike.

An org that fine-tunes with PEFT pushes adapters (a few hundred KB each); one that merges first pushes whole
models. They are the same candidates, so a search must score each adapter exactly as its merged model; the
adapters should cost a fraction of the transfer. The zoo: the real all-MiniLM-L6-v2 as base and N LoRA
adapters of it (r=8 on the query and value of every layer for half of them, of the last two layers for the
other half), with random updates (what is fetched, shared and timed does not depend on training). The merged
copies are uploaded with Xet dedup, as the Hub stores them: their unchanged bytes are the base's chunks, so a
search proves those blocks identical without fetching them.

Each set is searched from a cold block store twice, alternating, after one warm-up search of each that fills
the HF cache with the small files (configs, tokenizer, cards); the adapters' weights are dropped from it before
every search, so each cold search downloads them. The table gives the median.

    python -m benchmarks.lora_adapters [--num-models 34] [--items 200] [--tiny] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path


ORG = "lora"
ROUNDS = 2


def _base(root: Path, tiny: bool) -> str:
    """The base model's repo id: the real MiniLM, or (tiny) a 2-layer BERT with a letters vocabulary."""
    from alsatian_hf.zoo import TransformersSource, ZooSpec, build_zoo

    if tiny:
        from transformers import BertConfig

        from alsatian_hf.zoo import letters_tokenizer

        config = BertConfig(vocab_size=57, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=37, max_position_embeddings=64, num_labels=4)  # fmt: skip
        source = TransformersSource(config=config, auto_class="AutoModelForSequenceClassification",
                                    processor=letters_tokenizer(root.parent), pipeline_tag="text-classification")  # fmt: skip
    else:
        from alsatian_hf.zoo.minilm import minilm_source

        source = minilm_source(num_labels=4)
    spec = ZooSpec(ORG, source, num_models=1, seed=0, name="bert" if tiny else "minilm")
    return build_zoo(spec, root, xet_upload="dedup").repo_ids[0]


def _zoo(root: Path, base: str, num_models: int) -> tuple[list[str], list[str]]:
    """`num_models` adapters of `base` and their merged copies (repo ids, in the same order)."""
    import torch
    from safetensors.torch import load_file, save_file

    from alsatian_hf.zoo.builder import save_state, xet_upload_repo

    state = load_file(root / base / "model.safetensors")
    targets = {}  # layer -> [checkpoint key of its query and value weights]
    for key in state:
        m = re.search(r"\.layer\.(\d+)\.attention\.self\.(query|value)\.weight$", key)
        if m:
            targets.setdefault(int(m[1]), []).append(key)
    layers = sorted(targets)
    g = torch.Generator().manual_seed(0)
    adapters, merged = [], []
    for i in range(num_models):
        chosen = layers if i % 2 == 0 else layers[-2:]
        lora, deltas = {}, {}
        for key in (k for layer in chosen for k in targets[layer]):
            out_f, in_f = state[key].shape
            a, b = torch.randn(8, in_f, generator=g) * 0.05, torch.randn(out_f, 8, generator=g) * 0.05
            module = key.removesuffix(".weight")
            lora[f"base_model.model.{module}.lora_A.weight"] = a
            lora[f"base_model.model.{module}.lora_B.weight"] = b
            deltas[key] = (b @ a) * (16 / 8)
        name = f"{ORG}/adapter-{i:03d}"
        folder = root / name
        folder.mkdir(parents=True)
        save_file(lora, folder / "adapter_model.safetensors", metadata={"format": "pt"})
        config = {"peft_type": "LORA", "base_model_name_or_path": base, "r": 8, "lora_alpha": 16,
                  "target_modules": ["query", "value"], "revision": None}  # fmt: skip
        (folder / "adapter_config.json").write_text(json.dumps(config))
        (folder / "README.md").write_text(f"---\nbase_model: {base}\nbase_model_relation: adapter\n---\n")
        adapters.append(name)
        name = f"{ORG}/merged-{i:03d}"
        folder = root / name
        shutil.copytree(root / base, folder, ignore=shutil.ignore_patterns("*.safetensors", "README.md"))
        save_state({k: v + deltas[k] if k in deltas else v for k, v in state.items()}, folder)
        (folder / "README.md").write_text(f"---\nbase_model: {base}\n---\n")
        xet_upload_repo(root, name, "dedup")
        merged.append(name)
    return adapters, merged


def _drop_cached_adapter_weights(hf_home: Path) -> None:
    for link in hf_home.glob(f"hub/models--{ORG}--adapter-*/snapshots/*/adapter_model.safetensors"):
        link.resolve().unlink()
        link.unlink()


def _search(ids: list[str], data, store: Path, *, max_length: int):
    from alsatian_hf import ModelSearcher, SearchArguments

    args = SearchArguments(result_size=1, max_length=max_length, store_dir=str(store), feature_cache=False)
    return ModelSearcher(ids, train_dataset=data, args=args).search()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-models", type=int, default=34, help="adapters (and as many merged copies)")
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--max-length", type=int, default=32)
    p.add_argument("--tiny", action="store_true", help="a 2-layer BERT and 4 adapters: the suite's run")
    p.add_argument("--work-dir", type=Path, default=None, help="default: a temporary folder, removed after")
    a = p.parse_args(argv)
    if a.tiny:
        a.num_models, a.items = 4, 60
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    work = Path(tempfile.mkdtemp(prefix="lora-", dir=a.work_dir))
    try:
        return _run(a, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(a, work: Path) -> int:
    os.environ["HF_HOME"] = str(work / "hf_home")  # the small files' cache: this run's own
    logging.getLogger("alsatian_hf").setLevel(logging.ERROR)  # ties at the cut of random adapters: expected
    from alsatian_hf.localhub import HubServer, use_endpoint
    from alsatian_hf.zoo.data import newsgroups

    server = HubServer(work / "hub").start()
    try:
        use_endpoint(server.url)
        base = _base(work / "hub", a.tiny)
        adapters, merged = _zoo(work / "hub", base, a.num_models)
        groups = ["comp.graphics", "rec.sport.hockey", "sci.space", "talk.politics.guns"]
        data = newsgroups(num_items=a.items, seed=0, categories=groups)
        sets = {"adapters": [base, *adapters], "merged": [base, *merged]}
        runs: dict[str, list] = {name: [] for name in sets}
        for round_ in range(ROUNDS + 1):  # round 0 fills the HF cache with the small files
            for name, ids in sets.items():
                _drop_cached_adapter_weights(work / "hf_home")  # they are weights: each cold search fetches them
                res = _search(ids, data, work / f"store-{name}-{round_}", max_length=a.max_length)
                shutil.rmtree(work / f"store-{name}-{round_}")
                if res.skipped:
                    print(f"{name}: skipped {res.skipped}", file=sys.stderr)
                    return 1
                if round_:
                    runs[name].append(res)
        first = {name: runs[name][0].iterations[0]["scores"] for name in sets}
        same = all(first["adapters"][ad] == first["merged"][me] for ad, me in zip(adapters, merged))
        same = same and first["adapters"][base] == first["merged"][base]
        print(f"{a.num_models} LoRA adapters of {base} against their merged copies, {a.items} items, cold store:")
        print(f"{'set':<10}{'MB fetched':>12}{'requests':>10}{'set-up s':>10}{'search s':>10}  top-1")
        for name, results in runs.items():
            mb = statistics.median(r.bytes_fetched for r in results) / 1e6
            reqs = statistics.median(r.requests for r in results)
            setup = statistics.median(r.setup_seconds for r in results)
            total = statistics.median(r.seconds for r in results)
            print(f"{name:<10}{mb:>12.2f}{reqs:>10.0f}{setup:>10.2f}{total:>10.2f}  {results[0].best}")
        picks = [runs[name][0].best.replace("merged-", "adapter-") for name in sets]
        print(f"every adapter scored exactly as its merged copy: {same}; the same pick: {picks[0] == picks[1]}")
        return 0 if same and picks[0] == picks[1] else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
