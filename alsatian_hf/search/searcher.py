"""`ModelSearcher`: a Trainer-like entry point over `datasets` objects and Hub (or local) candidates."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

import torch

from ..errors import AlsatianError, CandidateSkipped, ConfigurationError, DatasetError
from ..plan import make_schedule
from ..scoring import get_scorer
from .arguments import SearchArguments
from .callbacks import LoggingCallback, SearchCallback
from .candidates import ShapeProbe, build_candidate
from .data import PreparedData, Processor, check_labels, detect_columns, image_processor, labels_of, text_processor, \
    timm_processor
from .halving import run_halving
from .result import SearchResult

logger = logging.getLogger("alsatian_hf")


def _tqdm(**kwargs):
    from huggingface_hub.utils import tqdm

    return tqdm(**kwargs)


def _candidate_id(spec) -> str:
    """The id a candidate is reported under: its repo id (without `@revision`) or its folder."""
    if hasattr(spec, "repo_id"):
        return spec.repo_id
    spec = str(spec)
    return spec if Path(spec).is_dir() else spec.partition("@")[0]


class ModelSearcher:
    """Find the best base model among candidates for a labelled dataset.

    Args:
        candidates: repo ids on the configured Hub (`org/name` or `org/name@revision`), local model folders,
            or `hub.Candidate`s from `list_candidates`.
        train_dataset: a `datasets.Dataset` with an image or text column and a label column.
        args: `SearchArguments`.
        eval_dataset: used as D_test when given (otherwise D_test is split off `train_dataset`).
        callbacks: `SearchCallback`s.
        image_column, text_column, label_column: override the auto-detection by feature type.

    Example:
        >>> searcher = ModelSearcher.from_hub(author="my-org", train_dataset=ds,  # doctest: +SKIP
        ...                                   args=SearchArguments(result_size=3))
        >>> result = searcher.search()  # doctest: +SKIP
        >>> result.to_pandas()  # doctest: +SKIP
    """

    def __init__(self, candidates: Iterable, train_dataset, args: SearchArguments | None = None, eval_dataset=None,
                 callbacks: list[SearchCallback] | None = None, *, image_column: str | None = None,
                 text_column: str | None = None, label_column: str | None = None):
        self.args = args or SearchArguments()
        self.candidates = list(candidates)
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.callbacks = [LoggingCallback(), *(callbacks or [])]
        self.columns = detect_columns(train_dataset, image_column=image_column, text_column=text_column,
                                      label_column=label_column)
        self.skipped: dict[str, str] = {}
        self.listing_seconds = 0.0

    @classmethod
    def from_hub(cls, *, author: str | None = None, filter: str | Iterable[str] | None = None,
                 search: str | None = None, base_model: str | None = None, max_params: int | None = None,
                 limit: int | None = None, pipeline_tag: str | None = None, library: str | None = None,
                 train_dataset, args: SearchArguments | None = None, **kwargs) -> "ModelSearcher":
        """Candidates from a Hub query (paper §4.1's metadata query), pinned to the commits seen now."""
        from ..hub import list_candidates

        start = time.perf_counter()
        listed = list(_tqdm(iterable=list_candidates(author=author, filter=filter, search=search,
                                                    base_model=base_model, library=library, pipeline_tag=pipeline_tag,
                                                    max_params=max_params, limit=limit),
                            desc="listing candidates", unit="model"))
        searcher = cls(listed, train_dataset, args, **kwargs)
        searcher.listing_seconds = time.perf_counter() - start
        return searcher

    # -- helpers -----------------------------------------------------------------------------------------------
    def _skip(self, model_id: str, reason: str) -> None:
        self.skipped[model_id] = reason
        for cb in self.callbacks:
            cb.on_candidate_skipped(model_id=model_id, reason=reason)

    def _device(self) -> torch.device:
        if self.args.device:
            return torch.device(self.args.device)
        from accelerate import PartialState

        return PartialState().device

    def _dataset(self):
        """The target dataset (train, then eval rows), its labels, and D_test's indices when eval is given."""
        ds = self.train_dataset
        test_items = None
        if self.eval_dataset is not None:
            from datasets import concatenate_datasets

            eval_ds = self.eval_dataset.cast(ds.features) if self.eval_dataset.features != ds.features else \
                self.eval_dataset
            test_items = list(range(len(ds), len(ds) + len(eval_ds)))
            ds = concatenate_datasets([ds, eval_ds])
        if len(ds) == 0:
            raise DatasetError("`train_dataset` is empty.")
        labels = labels_of(ds, self.columns.label)
        check_labels(labels[: len(self.train_dataset)])
        return ds, labels, test_items

    def _processor(self, library: str, skeleton, folder: Path) -> Processor:
        if library == "timm":
            if self.columns.kind == "text":
                raise CandidateSkipped(str(folder), "an image model (timm), but the dataset is text.")
            return timm_processor(skeleton, self.args.image_size)
        has_text = any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"))
        if (folder / "preprocessor_config.json").is_file() or not has_text:
            if self.columns.kind == "text" and not has_text:
                raise CandidateSkipped(str(folder), "an image model, but the dataset is text.")
            return image_processor(folder, self.args.image_size)
        if self.columns.kind == "image":
            raise CandidateSkipped(str(folder), "a text model, but the dataset is images.")
        return text_processor(folder, self.args.max_length)

    def _open(self, spec, store, reader):
        from ..hub import Candidate, open_hub, open_local

        if isinstance(spec, Candidate):
            if spec.skip_reason:
                raise CandidateSkipped(spec.repo_id, spec.skip_reason)
            return open_hub(spec.repo_id, self.args.revision or spec.revision, store=store, reader=reader)
        spec = str(spec)
        if Path(spec).is_dir():
            return open_local(spec)
        repo_id, _, revision = spec.partition("@")
        return open_hub(repo_id, revision or self.args.revision, store=store, reader=reader)

    # -- the search -------------------------------------------------------------------------------------------
    def search(self) -> SearchResult:
        """Runs successive halving with the configured strategy and returns the ranking.

        Raises:
            ConfigurationError: when no candidate is left to score.
            DatasetError: for unusable datasets (one class, too few items, missing columns).
        """
        from huggingface_hub.errors import HfHubHTTPError

        from ..adapters.skeleton import build_model, library_of
        from ..hub import FetchStats, RangeReader
        from ..hub.headers import NoSafetensorsError
        from ..store.block_store import BlockStore

        start = time.perf_counter()
        args = self.args
        if not self.candidates:
            raise ConfigurationError("No candidates to search: the candidate list is empty. Check the Hub query "
                                     "(`author`, `filter`, ...) or pass repo ids / model folders.")
        dataset, labels, test_items = self._dataset()
        device = self._device()
        stats = FetchStats()
        reader = RangeReader(allow_full_download=args.allow_full_download, stats=stats)
        store = BlockStore(args.store_dir)
        data = PreparedData(dataset, self.columns.input, num_workers=args.num_workers)

        def schedule_for(num_candidates: int):
            return make_schedule(labels, num_candidates=num_candidates, result_size=args.result_size,
                                 test_size=args.test_size if args.test_size < 1 else int(args.test_size),
                                 max_test_items=args.max_test_items, max_train_items=args.max_train_items,
                                 seed=args.seed, test_items=test_items)

        schedule = schedule_for(max(len(self.candidates), 1))
        probe_item = (schedule.train_slices[0].items[0],)
        probe = ShapeProbe()
        engine_candidates, revisions = [], {}
        ids = [_candidate_id(c) for c in self.candidates]
        for cb in self.callbacks:
            cb.on_search_begin(candidates=ids, args=args)
        fetch_bar = _tqdm(desc="fetching blocks", unit="B", unit_scale=True, total=None)
        for spec, model_id in zip(_tqdm(iterable=self.candidates, desc="reading headers", unit="model"), ids):
            before = stats.bytes
            try:
                repo = self._open(spec, store, reader)
                library = library_of(json.loads((repo.folder / "config.json").read_text()))
                skeleton = build_model(repo.folder, device="meta")
                processor = self._processor(library, skeleton, repo.folder)
                key = data.add(processor)
                cand, _ = build_candidate(model_id, repo.folder, repo.source, input_key=key,
                                          probe_inputs=data(key, probe_item), probe=probe, skeleton=skeleton)
            except CandidateSkipped as e:
                self._skip(model_id, e.reason)
                continue
            except (AlsatianError, NoSafetensorsError, HfHubHTTPError, OSError) as e:
                self._skip(model_id, f"{type(e).__name__}: {e}")
                continue
            except Exception as e:  # anything else this one candidate raises must not end the search
                logger.debug("candidate %s failed during set-up", model_id, exc_info=True)
                self._skip(model_id, f"could not be prepared: {type(e).__name__}: {e}")
                continue
            finally:
                fetch_bar.update(stats.bytes - before)
            engine_candidates.append(cand)
            revisions[model_id] = repo.revision
        fetch_bar.close()
        if not engine_candidates:
            raise ConfigurationError(f"No candidate can be scored; skipped: {self.skipped}.")
        if len(engine_candidates) != len(self.candidates):  # the schedule depends on how many are left
            schedule = schedule_for(len(engine_candidates))
        setup_seconds = time.perf_counter() - start + self.listing_seconds
        scorer = get_scorer(args.scorer, **args.scorer_kwargs)
        if hasattr(scorer, "device"):
            scorer.device = device
        from ..engine import resolve_budget

        budget = resolve_budget(args.cache_budget, device)

        def on_iteration_end(record):
            for cb in self.callbacks:
                cb.on_iteration_end(iteration=record.iteration, scores=record.scores, survivors=record.survivors)

        outcome = run_halving(engine_candidates, labels, schedule, prepare=data, scorer=scorer,
                              strategy=args.strategy, batch_size=args.batch_size, cache_budget=budget, device=device,
                              on_iteration_end=on_iteration_end)
        info = store.info()
        result = SearchResult(
            ranking=[{"rank": i + 1, "model": m, "score": outcome.scores[m], "revision": revisions.get(m)}
                     for i, m in enumerate(outcome.ranking)],
            iterations=[r.to_dict() for r in outcome.iterations],
            skipped=dict(self.skipped),
            strategy=args.strategy,
            arguments=args.to_dict(),
            seconds=time.perf_counter() - start + self.listing_seconds,
            setup_seconds=setup_seconds,
            bytes_fetched=stats.bytes,
            requests=stats.requests,
            store={**asdict(info), "dedup_ratio": info.dedup_ratio},
            plan={"unique_blocks": len({b.content_hash for c in engine_candidates for b in c.blocks}),
                  "total_blocks": sum(len(c.blocks) for c in engine_candidates),
                  "chunks": max((r.counters.chunks for r in outcome.iterations), default=0),
                  "input_keys": sorted({c.input_key for c in engine_candidates})},
            dataset={"items": len(dataset), "test_items": len(schedule.test.items), "modality": self.columns.kind,
                     "classes": len(set(labels))},
            device=str(device),
        )
        if args.output_dir:
            result.save(args.output_dir)
        for cb in self.callbacks:
            cb.on_search_end(result=result)
        return result
