"""Hub fetch benchmark: bytes and requests per model, and the block store's dedup ratio, per distribution.

    python -m benchmarks.hub_fetch [--arch resnet18] [--models 35]

For each distribution it builds a zoo (paper §6, M_syn), serves it with the local hub, runs one search with a
cold block store, and reads the hub's request log: weight bytes and requests per model, header bytes, the
candidates' feature-extractor bytes (the lower bound: every block of every candidate fetched once), and
the store's size against the bytes the candidates reference.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from alsatian_hf.localhub import HubServer, use_endpoint


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--models", type=int, default=35)
    p.add_argument("--items", type=int, default=64)
    p.add_argument("--work-dir", type=Path, default=None)
    args = p.parse_args(argv)
    if args.work_dir is not None:
        return _run(args, args.work_dir)
    with tempfile.TemporaryDirectory(prefix="alsatian-hub-fetch-") as work:  # zoos and stores: hundreds of MB
        return _run(args, Path(work))


def _run(args, work: Path) -> None:
    os.environ.setdefault("HF_HOME", str(work / "hf-home"))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    hub = HubServer(work / "hub").start()
    use_endpoint(hub.url)

    from alsatian_hf import ModelSearcher, SearchArguments
    from alsatian_hf.store.block_store import BlockStore
    from alsatian_hf.zoo import TimmSource, ZooSpec, build_zoo
    from alsatian_hf.zoo.data import fashion_mnist
    from benchmarks.run import _feature_extractor_bytes, header_bytes

    ds = fashion_mnist(num_items=args.items, seed=0)
    print(f"{args.models} x {args.arch}, cold store per distribution")
    print(
        f"{'distribution':<12} {'MB/model':>9} {'req/model':>10} {'header KB':>10} {'fetched/FE':>11} "
        f"{'store MB':>9} {'dedup':>6}"
    )
    for dist in ("top_50", "top_25", "top_layers"):
        org = f"fetch-{dist.replace('_', '-')}"
        build_zoo(
            ZooSpec(
                org,
                TimmSource(args.arch, model_args={"num_classes": 10}),
                num_models=args.models,
                distribution=dist,
                seed=0,
            ),
            hub.root,
            overwrite=True,
        )
        store = work / "stores" / org
        hub.clear_log()
        res = ModelSearcher.from_hub(
            author=org,
            train_dataset=ds,
            args=SearchArguments(result_size=1, image_size=32, store_dir=str(store), scorer="knn"),
        ).search()
        header = header_bytes(hub)
        fe = _feature_extractor_bytes(hub.root / org)
        info = BlockStore(store).info()
        print(
            f"{dist:<12} {res.bytes_fetched / args.models / 1e6:>9.2f} {res.requests / args.models:>10.1f} "
            f"{header / 1e3:>10.1f} {(res.bytes_fetched - header) / fe:>11.3f} {info.bytes / 1e6:>9.1f} "
            f"{info.dedup_ratio:>6.2f}"
        )
    hub.stop()


if __name__ == "__main__":
    main()
