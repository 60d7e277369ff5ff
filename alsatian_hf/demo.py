"""`make demo`: the main job on the embedded local Hub.

It builds the demo zoo once (the real ImageNet EfficientNet-Lite0 and synthetic top_25 fine-tunes of it),
serves it with the local hub, runs `ModelSearcher.from_hub(author="demo")` on a Fashion-MNIST subset with
`alsatian` and then `shift`, prints the ranking and both times, and writes the report to ./demo-output/.

    python -m alsatian_hf.demo [--models 16] [--items 600] [--image-size 64] [--output-dir demo-output]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .localhub import HubServer, use_endpoint


ORG = "demo"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run alsatian_hf's demo search on the embedded local Hub.")
    p.add_argument("--models", type=int, default=16)
    p.add_argument("--items", type=int, default=600)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--result-size", type=int, default=3)
    p.add_argument("--cache-dir", default=".cache/demo", help="zoo, HF cache and block store (kept between runs)")
    p.add_argument("--output-dir", default="demo-output")
    args = p.parse_args(argv)

    cache = Path(args.cache_dir).resolve()
    zoo_root = cache / "zoo"
    os.environ.setdefault("HF_HOME", str(cache / "hf-home"))
    hub = HubServer(zoo_root).start()  # before any Hugging Face import reads HF_ENDPOINT
    use_endpoint(hub.url)

    from .search import ModelSearcher, SearchArguments
    from .zoo import ZooSpec, build_zoo
    from .zoo.data import fashion_mnist
    from .zoo.efficientnet_lite import efficientnet_lite0_source

    if not (zoo_root / ORG).is_dir() or len(list((zoo_root / ORG).iterdir())) != args.models:
        start = time.perf_counter()
        report = build_zoo(
            ZooSpec(
                ORG,
                efficientnet_lite0_source(num_classes=10),
                num_models=args.models,
                distribution="top_25",
                seed=0,
                name="effnet-lite0",
            ),
            zoo_root,
            overwrite=True,
        )
        print(
            f"built the demo zoo: {len(report.repo_ids)} EfficientNet-Lite0 repos, {report.unique_blocks} unique "
            f"blocks, in {time.perf_counter() - start:.0f}s"
        )
    print(f"local hub serving {zoo_root} at {hub.url}")

    dataset = fashion_mnist(num_items=args.items, seed=0)
    results = {}

    def search(strategy: str, *, feature_cache: bool, output_dir: str | None = None):
        search_args = SearchArguments(
            result_size=args.result_size,
            strategy=strategy,
            image_size=args.image_size,
            output_dir=output_dir,
            feature_cache=feature_cache,
        )
        return ModelSearcher.from_hub(author=ORG, train_dataset=dataset, args=search_args).search()

    # the strategies compared from scratch: with the feature cache, the second would read the first's features
    results["alsatian"] = search("alsatian", feature_cache=False, output_dir=args.output_dir)
    results["shift"] = search("shift", feature_cache=False)
    search("alsatian", feature_cache=True)  # fills the feature cache (or finds it filled by an earlier demo)
    repeat = search("alsatian", feature_cache=True)
    hub.stop()

    a, s = results["alsatian"], results["shift"]
    print("\nranking (alsatian):")
    print(a.to_pandas().to_string())
    same = a.models == s.models
    ta, ts = a.seconds - a.setup_seconds, s.seconds - s.setup_seconds
    print(f"\nsearch time: alsatian {ta:.1f}s, shift {ts:.1f}s -> {ts / ta:.2f}x faster; same ranking: {same}")
    print(
        f"setup (listing, headers, block fetch): alsatian run {a.setup_seconds:.1f}s, fetched "
        f"{a.bytes_fetched / 1e6:.1f} MB; store dedup ratio {a.store.get('dedup_ratio', 1):.2f}"
    )
    executions = sum(it["block_executions"] for it in repeat.iterations)
    print(
        f"repeat search with the feature cache: {repeat.seconds:.1f}s, {executions} block executions, "
        f"{repeat.feature_cache.get('hit_items', 0)} feature rows read; same ranking: {repeat.models == a.models}"
    )
    print(f"report written to {Path(args.output_dir).resolve()}")
    return 0 if same and repeat.models == a.models else 1


if __name__ == "__main__":
    sys.exit(main())
