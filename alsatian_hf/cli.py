"""The `alsatian-hf` command line.

alsatian-hf search (--author ORG | --base-model ID | --models A,B) --dataset PATH_OR_REPO [--result-size 3] ...
alsatian-hf serve-hub ROOT [--host 127.0.0.1] [--port 8000] [--no-xet] [--upload-mode dedup|no-dedup]
                      [--bandwidth 100MB/s]
alsatian-hf build-zoo ROOT --org ORG --arch resnet18 [--num-models 35] [--distribution top_layers] [--seed 0]
                      [--xet-upload dedup|no-dedup|none]
alsatian-hf store {info,gc} [--store-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AlsatianError, ConfigurationError, DatasetError


def _serve_hub(args: argparse.Namespace) -> int:
    from ._units import parse_bytes
    from .localhub import HubServer

    if not Path(args.root).is_dir():  # a mistyped root would be created, and served empty
        raise ConfigurationError(f"{args.root} is not a folder; pass the one that holds <org>/<name> repos.")
    bandwidth = parse_bytes(args.bandwidth.lower().removesuffix("/s")) if args.bandwidth else None
    hub = HubServer(args.root, host=args.host, port=args.port, xet=not args.no_xet, upload_mode=args.upload_mode,
                    bandwidth=bandwidth)  # fmt: skip
    hint = f"export HF_ENDPOINT={hub.url}" + (" HF_HUB_DISABLE_XET=1" if args.no_xet else "")
    print(f"Serving {hub.root} at {hub.url}  ({hint})", flush=True)
    try:
        hub.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        hub.httpd.server_close()
    return 0


def _build_zoo(args: argparse.Namespace) -> int:
    import timm

    from .zoo import TimmSource, ZooSpec, build_zoo

    if args.arch != "efficientnet-lite0" and not timm.is_model(args.arch):
        raise ConfigurationError(
            f"--arch {args.arch!r} is not a timm architecture (or `efficientnet-lite0`); "
            f"`timm.list_models('{args.arch.split('_')[0]}*')` lists the near ones."
        )
    source = TimmSource(args.arch, model_args={"num_classes": args.num_classes})
    if args.arch == "efficientnet-lite0":
        from .zoo.efficientnet_lite import efficientnet_lite0_source

        source = efficientnet_lite0_source(args.num_classes)
    report = build_zoo(
        ZooSpec(
            args.org,
            source,
            num_models=args.num_models,
            distribution=args.distribution,
            seed=args.seed,
            name=args.name,
        ),
        args.root,
        overwrite=args.overwrite,
        xet_upload=None if args.xet_upload == "none" else args.xet_upload,
    )
    print(
        f"{len(report.repo_ids)} repos under {args.root}/{args.org}: {report.unique_blocks} unique blocks, "
        f"{report.bytes_written / 1e6:.1f} MB"
    )
    return 0


def _store(args: argparse.Namespace) -> int:
    from .store.block_store import BlockStore
    from .store.feature_cache import FeatureCache

    store = BlockStore(args.store_dir)
    features = FeatureCache(store.root / "features", budget=0)  # the budget applies when a search evicts
    if args.action == "info":
        info, cached = store.info(), features.info()
        print(
            f"store: {info.path}\nblocks: {info.blocks}\nbytes: {info.bytes}\nmodels indexed: {info.models}\n"
            f"logical bytes: {info.logical_bytes}\ndedup ratio: {info.dedup_ratio:.2f}\n"
            f"prepared blocks: {info.prepared_bytes} bytes\n"
            "block identity: " + (", ".join(f"{m} {n}" for m, n in sorted(info.identity.items())) or "none") + "\n"
            f"feature cache: {cached.models} models, {cached.segments} segments, {cached.bytes} bytes; "
            f"{cached.states} shared states, {cached.state_bytes} bytes"
        )
    else:
        removed = store.gc(verify=args.verify)
        removed.update({f"feature_{k}": v for k, v in features.gc(verify=args.verify).items()})
        print("\n".join(f"{k}: {v}" for k, v in removed.items()))
    return 0


@dataclass
class SearchCliArguments:
    """What to search and on which data; the rest of `alsatian-hf search`'s options come from SearchArguments."""

    dataset: str = field(metadata={"help": "A `save_to_disk` folder, an imagefolder, or a dataset repo on the Hub."})
    author: str | None = field(default=None, metadata={"help": "Search this organisation's models."})
    filter: str | None = field(default=None, metadata={"help": "Hub tag filter(s), comma separated."})
    search: str | None = field(default=None, metadata={"help": "Substring of the model ids."})
    base_model: str | None = field(
        default=None, metadata={"help": "All fine-tunes, adapters and merges of this model (lineage tags)."}
    )
    max_params: int | None = field(default=None, metadata={"help": "Keep models with at most this many parameters."})
    limit: int | None = field(default=None, metadata={"help": "At most this many candidates."})
    models: str | None = field(
        default=None, metadata={"help": "Comma-separated repo ids or folders instead of a query."}
    )
    split: str = field(default="train", metadata={"help": "Dataset split."})
    label_column: str | None = field(default=None, metadata={"help": "Label column (auto-detected by default)."})
    image_column: str | None = field(default=None, metadata={"help": "Image column (auto-detected by default)."})
    text_column: str | None = field(
        default=None,
        metadata={"help": "Text column (auto-detected by default), or two, comma separated, for sentence pairs."},
    )
    max_items: int | None = field(default=None, metadata={"help": "Use a seeded random subset of this many items."})


def load_target_dataset(path_or_repo: str, split: str = "train"):
    """A `save_to_disk` folder, an imagefolder (class sub-folders), or a dataset repo on the configured Hub.

    Raises:
        DatasetError: when none of them is found, or it has no such split.
    """
    import datasets

    path = Path(path_or_repo).expanduser()
    if path.is_dir():
        if (
            (path / "dataset_info.json").is_file()
            or (path / "state.json").is_file()
            or (path / "dataset_dict.json").is_file()
        ):
            ds = datasets.load_from_disk(str(path))
            if not isinstance(ds, datasets.DatasetDict):
                return ds
            if split not in ds:
                raise DatasetError(f"{path} has splits {list(ds)}, not {split!r}; pick one with `--split`.")
            return ds[split]
        name, kwargs = "imagefolder", {"data_dir": str(path)}
    elif path_or_repo.startswith((".", "/", "~")):
        raise DatasetError(f"--dataset {path_or_repo}: no such folder.")
    else:
        name, kwargs = path_or_repo, {}
    try:
        return datasets.load_dataset(name, split=split, **kwargs)
    except (FileNotFoundError, ValueError, ConnectionError) as e:  # no data, repo, split or Hub: in its words
        raise DatasetError(f"--dataset {path_or_repo}: {e}") from e


def _search(argv: list[str]) -> int:
    from transformers import HfArgumentParser

    from .search import ModelSearcher, SearchArguments

    parser = HfArgumentParser(
        (SearchCliArguments, SearchArguments),
        prog="alsatian-hf search",
        description="Rank candidate models for a labelled dataset (successive halving).",
    )
    cli, args = parser.parse_args_into_dataclasses(argv)
    ds = load_target_dataset(cli.dataset, cli.split)
    if cli.max_items is not None and cli.max_items < len(ds):
        ds = ds.shuffle(seed=args.seed).select(range(cli.max_items))
    texts = cli.text_column.split(",") if cli.text_column and "," in cli.text_column else cli.text_column
    columns = dict(image_column=cli.image_column, text_column=texts, label_column=cli.label_column)
    if cli.models:
        searcher = ModelSearcher(
            [m.strip() for m in cli.models.split(",") if m.strip()], train_dataset=ds, args=args, **columns
        )
    else:
        filters = [f.strip() for f in cli.filter.split(",")] if cli.filter else None
        searcher = ModelSearcher.from_hub(
            author=cli.author,
            filter=filters,
            search=cli.search,
            base_model=cli.base_model,
            max_params=cli.max_params,
            limit=cli.limit,
            train_dataset=ds,
            args=args,
            **columns,
        )
    result = searcher.search()
    if int(os.environ.get("RANK", "0")) != 0:  # under `accelerate launch` / `torchrun`, rank 0 alone prints
        return 0
    print(result.to_pandas().to_string())
    for model, reason in result.skipped.items():
        print(f"skipped {model}: {reason}")
    if args.output_dir:
        print(f"report written to {args.output_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alsatian-hf", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("search", help="Rank candidate models for a dataset (`alsatian-hf search --help`).")

    p = sub.add_parser("serve-hub", help="Serve a folder of repos as a Hub-compatible endpoint.")
    p.add_argument("root", help="Folder with <org>/<name> model repos and datasets/<org>/<name> dataset repos.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port.")
    p.add_argument("--no-xet", action="store_true", help="Serve plain HTTP only: no Xet hashes, tokens or CAS.")
    p.add_argument("--bandwidth", help="Bytes per second for file and xorb bytes, over all connections (100MB/s).")
    p.add_argument("--upload-mode", default="dedup", choices=["dedup", "no-dedup"],
                   help="How files not chunked yet get their xorbs: `dedup` references chunks earlier files stored, "
                        "`no-dedup` gives each file its own.")  # fmt: skip
    p.set_defaults(func=_serve_hub)

    p = sub.add_parser("build-zoo", help="Write a synthetic zoo of fine-tunes (paper §6, M_syn).")
    p.add_argument("root")
    p.add_argument("--org", required=True)
    p.add_argument("--arch", default="resnet18", help="A timm architecture, or `efficientnet-lite0` (real weights).")
    p.add_argument("--name", default="model")
    p.add_argument("--num-models", type=int, default=35)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--distribution", default="top_layers", choices=["top_50", "top_25", "top_layers"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--xet-upload", default="dedup", choices=["dedup", "no-dedup", "none"],
                   help="Chunk each repo into the local Hub's Xet index as it is written (`none`: on first use).")  # fmt: skip
    p.set_defaults(func=_build_zoo)

    p = sub.add_parser("store", help="Inspect or clean the block store.")
    p.add_argument("action", choices=["info", "gc"])
    p.add_argument("--store-dir", default=None, help="Default: $ALSATIAN_STORE or $HF_HOME/alsatian/store.")
    p.add_argument("--verify", action="store_true", help="gc: also re-hash every block and drop corrupt ones.")
    p.set_defaults(func=_store)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["search"]:  # generated from SearchArguments by HfArgumentParser
            return _search(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except AlsatianError as e:  # its message says what was wrong and what to do; a traceback would bury that
        print(f"alsatian-hf: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
