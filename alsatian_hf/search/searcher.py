"""`ModelSearcher`: a Trainer-like entry point over `datasets` objects and Hub (or local) candidates."""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import torch

from .._progress import progress_bar
from ..candidates import CandidateAssembler, CandidateSpec, EngineCandidate, candidate_id, computed_apart
from ..candidates.precision import effective_precision
from ..engine import resolve_budget
from ..engine.batch_size import BatchSizeChoice, tune_batch_size
from ..errors import AlsatianError, CandidateSkipped, ConfigurationError, DatasetError, StoreFullError
from ..hub import FetchStats, RangeReader
from ..hub.xet import XetReader
from ..plan import DataSchedule, make_schedule
from ..scoring import Scorer, Scorer_T, get_scorer
from ..store.block_store import BlockStore
from ..store.feature_cache import FeatureCache
from .arguments import SearchArguments
from .callbacks import LoggingCallback, SearchCallback
from .data import PreparedData
from .distributed import Ranks
from .halving import HalvingOutcome, run_halving
from .result import SearchResult
from .target import (
    check_dataset,
    check_has_columns,
    check_items,
    check_labels,
    check_transformed,
    detect_columns,
    labels_of,
    plain_rows,
    same_classes,
)


if TYPE_CHECKING:
    from datasets import Dataset
    from huggingface_hub.errors import HfHubHTTPError

logger = logging.getLogger("alsatian_hf")

OPEN_AHEAD = 4  # threads opening candidates ahead of the one being assembled


@dataclass
class _Prepared:
    """What set-up hands the run: the engine candidates with their commits, and the data they share."""

    candidates: list[EngineCandidate]
    revisions: dict[str, str]
    dataset: "Dataset"
    labels: list[int]
    schedule: DataSchedule
    data: PreparedData
    stats: FetchStats
    store: BlockStore
    device: torch.device
    feature_cache: FeatureCache | None = None
    precision: str = "fp32"  # what the blocks ran in on this device (`candidates.precision`)
    # fields of a candidate's ranking row beyond its score: where its weights come from, where not its own commit's
    # safetensors ("base", an adapter's base `repo@commit`; "weights", a `.bin` commit's conversion, `refs/pr/N`),
    # and "prompt", the sentence-transformers prompt its texts started with
    provenance: dict[str, dict[str, str]] = field(default_factory=dict)
    apart: list[dict] = field(default_factory=list)  # `candidates.computed_apart`


@contextmanager
def _heap_frozen():
    """The process's objects left out of the garbage collector's scans while a search runs.

    A full collection scans every tracked object: with torch, transformers and datasets imported that is some
    450k, 0.16-0.2 s on a CPU, and a search promotes enough short-lived objects to start one every second or
    third search, mid-phase. Frozen (`gc.freeze`), the objects that predate the search are skipped, so the
    collections a search starts scan only its own; `gc.unfreeze` hands them back to the oldest generation
    afterwards, so nothing is kept alive. A caller that froze the heap itself (pre-fork servers do) keeps
    its own freeze: the search leaves it alone.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _check_folder(path: str | None, name: str) -> None:
    """Raises ConfigurationError when `path` (a field of SearchArguments, None for none) cannot become a folder
    this process writes: it is a file, or its nearest existing parent is not writable. (The block store checks
    its own root when it opens, also before any candidate.)"""
    if path is None:
        return
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigurationError(f"`{name}` {path!r} is a file; pass a folder (it is created if missing).")
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigurationError(f"`{name}` {path!r} cannot be written: {existing} is not a writable folder.")


def _hub_refusal(error: "HfHubHTTPError") -> str:
    """A skip reason for a Hub error that says what to check. huggingface_hub's messages add a paragraph of
    generic advice (a repo-not-found skip took 8 lines); the full error goes to the debug log."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(error, GatedRepoError):
        return "gated repo: request access on the Hub, then log in (HF_TOKEN)."
    if isinstance(error, RepositoryNotFoundError):
        return (
            f"no such repo on {constants.ENDPOINT}: check the id (and HF_ENDPOINT); a private repo also needs a "
            "login (HF_TOKEN)."
        )
    if isinstance(error, RevisionNotFoundError):
        return "no such revision: check the `@revision` in the id, or `SearchArguments.revision`."
    status = getattr(error.response, "status_code", None)
    first_line = next((line for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}" + (f" (HTTP {status})" if status else "") + f": {first_line}"


class ModelSearcher:
    """Find the best base model among candidates for a labelled dataset.

    Args:
        candidates: repo ids on the configured Hub (`org/name` or `org/name@revision`), local model folders,
            or `hub.Candidate`s from `list_candidates`.
        train_dataset: a `datasets.Dataset` with an image or text column and a label column.
        args: `SearchArguments`.
        eval_dataset: used as D_test when given (otherwise D_test is split off `train_dataset`).
        callbacks: `SearchCallback`s.
        scorer: a scorer object following `alsatian_hf.scoring.Scorer`, or a name; it replaces `args.scorer`
            (as `Trainer(optimizers=...)` replaces `TrainingArguments.optim`).
        image_column, text_column, label_column: override the auto-detection by feature type. `text_column` may
            name two columns, a sentence pair (`("premise", "hypothesis")`), tokenized as `text_pair`.

    Raises:
        DatasetError: when the dataset's input or label column cannot be found.
        ConfigurationError: when a candidate is listed twice, or `scorer` does not follow the protocol.

    Example:
        >>> searcher = ModelSearcher.from_hub(author="my-org", train_dataset=ds,  # doctest: +SKIP
        ...                                   args=SearchArguments(result_size=3))
        >>> result = searcher.search()  # doctest: +SKIP
        >>> result.to_pandas()  # doctest: +SKIP
    """

    def __init__(
        self,
        candidates: Iterable[CandidateSpec],
        *,
        train_dataset: "Dataset",
        args: SearchArguments | None = None,
        eval_dataset: "Dataset | None" = None,
        callbacks: list[SearchCallback] | None = None,
        scorer: Scorer_T | Scorer | None = None,
        image_column: str | None = None,
        text_column: str | tuple[str, str] | None = None,
        label_column: str | None = None,
    ):
        self.args = args or SearchArguments()
        self.candidates = list(candidates)
        ids = [candidate_id(c) for c in self.candidates]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ConfigurationError(f"`candidates` lists {twice} more than once; pass each candidate once.")
        self.callbacks = [LoggingCallback(), *(callbacks or [])]
        self._ranks = Ranks()  # the launcher's, once `search` starts
        by_name = scorer is None or isinstance(scorer, str)
        self.scorer = get_scorer(
            scorer if scorer is not None else self.args.scorer, **(self.args.scorer_kwargs if by_name else {})
        )
        self._scorer_name = (scorer or self.args.scorer) if by_name else type(scorer).__name__
        # a scorer by name is known by its name and settings; an object's settings are not (nothing restored)
        self._scorer_key = (
            json.dumps([self._scorer_name, self.args.scorer_kwargs], sort_keys=True) if by_name else None
        )
        check_dataset(train_dataset)
        self.columns = detect_columns(
            train_dataset, image_column=image_column, text_column=text_column, label_column=label_column
        )
        self.train_dataset = plain_rows(train_dataset)  # the rows as a search reads them, whatever the format
        check_transformed(self.train_dataset, self.columns)
        self.eval_dataset = None
        if eval_dataset is not None:
            check_dataset(eval_dataset, name="eval_dataset")
            check_has_columns(eval_dataset, self.columns)
            self.eval_dataset = plain_rows(eval_dataset)
            check_transformed(self.eval_dataset, self.columns, name="eval_dataset")
        self.skipped: dict[str, str] = {}
        self.listing_seconds = 0.0

    @classmethod
    def from_hub(
        cls,
        *,
        train_dataset: "Dataset",
        author: str | None = None,
        filter: str | Iterable[str] | None = None,
        search: str | None = None,
        base_model: str | None = None,
        library: str | None = None,
        pipeline_tag: str | None = None,
        max_params: int | None = None,
        limit: int | None = None,
        args: SearchArguments | None = None,
        eval_dataset: "Dataset | None" = None,
        callbacks: list[SearchCallback] | None = None,
        scorer: Scorer_T | Scorer | None = None,
        image_column: str | None = None,
        text_column: str | tuple[str, str] | None = None,
        label_column: str | None = None,
    ) -> "ModelSearcher":
        """Candidates from a Hub query (paper §4.1's metadata query), pinned to the commits seen now.

        The query arguments are those of `alsatian_hf.hub.list_candidates`; the rest are the constructor's.
        """
        from ..hub import list_candidates

        start = time.perf_counter()
        query = list_candidates(
            author=author,
            filter=filter,
            search=search,
            base_model=base_model,
            library=library,
            pipeline_tag=pipeline_tag,
            max_params=max_params,
            limit=limit,
        )
        listed = list(progress_bar(iterable=query, desc="listing candidates", unit="model"))
        searcher = cls(
            listed,
            train_dataset=train_dataset,
            args=args,
            eval_dataset=eval_dataset,
            callbacks=callbacks,
            scorer=scorer,
            image_column=image_column,
            text_column=text_column,
            label_column=label_column,
        )
        searcher.listing_seconds = time.perf_counter() - start
        return searcher

    def search(self) -> SearchResult:
        """Runs successive halving with the configured strategy and returns the ranking.

        Raises:
            ConfigurationError: when no candidate is left to score.
            DatasetError: for unusable datasets (one class, too few items, missing columns).
        """
        with _heap_frozen():
            return self._search()

    def _search(self) -> SearchResult:
        start = time.perf_counter()
        # before the device: under a launcher this starts the process group
        self._ranks = Ranks.current(self.args.rank_timeout)
        if self._ranks.rank == 0:  # the rank that writes it: found unwritable now, not after the search
            _check_folder(self.args.output_dir, "output_dir")
        prepared = self._prepare()
        budget = resolve_budget(self.args.cache_budget, prepared.device)  # once: "auto" reads free memory
        batch = self._batch_size(prepared, budget)
        setup_seconds = time.perf_counter() - start + self.listing_seconds
        outcome = self._run(prepared, batch.size, budget)
        for model_id, reason in outcome.failed.items():  # dropped mid-search: skipped like a set-up failure
            self.skipped[model_id] = reason
            for cb in self.callbacks:
                cb.on_candidate_skipped(model_id=model_id, reason=reason)
        result = self._result(
            prepared, outcome, batch, seconds=time.perf_counter() - start + self.listing_seconds,
            setup_seconds=setup_seconds,
        )  # fmt: skip
        if prepared.feature_cache is not None:  # down to its budget, now that this search has written its features
            prepared.feature_cache.evict()
        if self.args.output_dir and self._ranks.rank == 0:  # every rank has the same result; one writes it
            try:
                result.save(self.args.output_dir)
            except OSError as e:  # a full disk, say: the search's result is still worth returning
                logger.error("the result was not written to %s (%s); save it with `result.save(...)`.",
                             self.args.output_dir, e)  # fmt: skip
        for cb in self.callbacks:
            cb.on_search_end(result=result)
        return result

    # -- phase 1: candidates, data and schedule ----------------------------------------------------------------
    def _prepare(self) -> _Prepared:
        args = self.args
        if not self.candidates:
            raise ConfigurationError(
                "No candidates to search: the candidate list is empty. Check the Hub query "
                "(`author`, `filter`, ...) or pass repo ids / model folders."
            )
        dataset, labels, test_items = self._dataset()
        stats = FetchStats()
        store = BlockStore(args.store_dir)
        column = self.columns.input if self.columns.pair is None else self.columns.inputs
        data = PreparedData(dataset, column, num_workers=args.num_workers)

        def schedule_for(num_candidates: int) -> DataSchedule:
            return make_schedule(
                labels,
                num_candidates=num_candidates,
                result_size=args.result_size,
                test_size=args.test_size,
                max_test_items=args.max_test_items,
                max_train_items=args.max_train_items,
                seed=args.seed,
                test_items=test_items,
                min_items_per_class=args.min_items_per_class,
            )

        schedule = schedule_for(len(self.candidates))
        probe_item = (schedule.train_slices[0].items[0],)
        device = self._device()
        assembler = CandidateAssembler(
            store=store,
            reader=RangeReader(allow_full_download=args.allow_full_download, stats=stats),
            modality=self.columns.kind,
            inputs_for=lambda processor: data(data.add(processor), probe_item),
            revision=args.revision,
            image_size=args.image_size,
            max_length=args.max_length,
            xet=XetReader(stats=stats) if args.xet_identity else None,
            # cuDNN's tensor cores want channels-last; oneDNN's kernels differ by CPU (`candidates.layout`)
            channels_last=True if args.channels_last == "auto" and device.type != "cpu" else args.channels_last,
            fold_batchnorm=args.fold_batchnorm,
            precision=effective_precision(args.precision, device),
            prepared_blocks=args.prepared_blocks,
            compile_mode=(args.torch_compile_mode or "default") if args.torch_compile else None,
            sentence_pooling=args.sentence_pooling,
            sentence_prompt=args.sentence_prompt,
        )
        ids = [candidate_id(c) for c in self.candidates]
        for cb in self.callbacks:
            cb.on_search_begin(candidates=ids, args=args)
        candidates, revisions, provenance = [], {}, {}
        bar = progress_bar(total=len(ids), desc="preparing candidates", unit="model")
        # Candidates that need the Hub (small files, layout, Xet hashes: a few requests each) are opened ahead, in
        # threads, while one is assembled; the others open in this thread, since threads that do not wait on
        # the network only contend for the GIL (a warm 35-model ViT-tiny set-up: 0.117 s with them, 0.096 s without).
        # Blocks are established in order, so a fine-tune finds its base in the store.
        with ThreadPoolExecutor(OPEN_AHEAD) as pool:
            opening = [
                None if assembler.opens_offline(spec) else pool.submit(assembler.open, spec)
                for spec in self.candidates
            ]
            for spec, model_id, opened in zip(self.candidates, ids, opening):
                assembled = self._assemble(assembler, spec, model_id, opened)
                if assembled is not None:
                    candidates.append(assembled.candidate)
                    revisions[model_id] = assembled.revision
                    fields = {"base": assembled.base, "weights": assembled.weights_from, "prompt": assembled.prompt}
                    if any(fields.values()):
                        provenance[model_id] = {k: v for k, v in fields.items() if v is not None}
                bar.set_postfix_str(f"{stats.bytes / 1e6:.1f} MB fetched", refresh=False)
                bar.update()
        bar.close()
        if self._ranks.distributed:  # ranks split one candidate list: a candidate skipped on any rank is on all
            for part in self._ranks.gather(dict(self.skipped)):
                for model_id, reason in part.items():
                    if model_id not in self.skipped:
                        self.skipped[model_id] = reason
                        for cb in self.callbacks:
                            cb.on_candidate_skipped(model_id=model_id, reason=reason)
            candidates = [c for c in candidates if c.model_id not in self.skipped]
        if not candidates:
            reasons = set(self.skipped.values())
            if len(reasons) == 1 and len(self.skipped) > 1:  # one cause, such as the dataset's modality: say it once
                raise ConfigurationError(
                    f"No candidate can be scored: all {len(self.skipped)} were skipped as {reasons.pop()!r}"
                )
            raise ConfigurationError(f"No candidate can be scored; skipped: {self.skipped}.")
        if len(candidates) != len(self.candidates):  # the schedule depends on how many are left
            schedule = schedule_for(len(candidates))
        feature_cache = None
        if args.feature_cache:
            feature_cache = FeatureCache(store.root / "features", budget=args.feature_cache_budget)
        apart = computed_apart(candidates)
        for pair in apart:
            logger.info("%s and %s hold the same tensors in %d blocks but compute them apart: %s.",
                        *pair["models"], pair["blocks"], pair["why"])  # fmt: skip
        return _Prepared(
            candidates, revisions, dataset, labels, schedule, data, stats, store, device, feature_cache,
            assembler.precision, provenance, apart,
        )  # fmt: skip

    def _assemble(self, assembler: CandidateAssembler, spec: CandidateSpec, model_id: str, opened: Future | None):
        """The assembled candidate, or None after recording why it is skipped (one candidate never ends a search).
        `opened` is the candidate's opening ahead, or None to open it here."""
        from huggingface_hub.errors import HfHubHTTPError

        try:
            return assembler.assemble(spec, model_id, opened.result() if opened is not None else None)
        except (StoreFullError, DatasetError):
            raise  # every later candidate would fail the same way: stop with the error that says what to do
        except CandidateSkipped as e:
            reason = e.reason
        except HfHubHTTPError as e:
            logger.debug("candidate %s: the Hub refused it", model_id, exc_info=True)
            reason = _hub_refusal(e)
        except (AlsatianError, OSError) as e:
            reason = f"{type(e).__name__}: {e}"
        except Exception as e:
            logger.debug("candidate %s failed during set-up", model_id, exc_info=True)
            reason = f"could not be prepared: {type(e).__name__}: {e}"
        self.skipped[model_id] = reason
        for cb in self.callbacks:
            cb.on_candidate_skipped(model_id=model_id, reason=reason)
        return None

    def _dataset(self):
        """The target dataset (train, then eval rows), its labels, and D_test's indices when eval is given."""
        ds = self.train_dataset
        check_items(ds, self.columns)
        test_items = None
        if self.eval_dataset is not None:
            check_items(self.eval_dataset, self.columns, name="eval_dataset")
            from datasets import concatenate_datasets

            eval_ds = same_classes(self.eval_dataset, ds, self.columns.label)
            eval_ds = eval_ds.cast(ds.features) if eval_ds.features != ds.features else eval_ds
            test_items = list(range(len(ds), len(ds) + len(eval_ds)))
            ds = concatenate_datasets([ds, eval_ds])
        if len(ds) == 0:
            raise DatasetError("`train_dataset` is empty.")
        labels = labels_of(ds, self.columns.label)
        check_labels(labels[: len(self.train_dataset)])
        return ds, labels, test_items

    def _device(self) -> torch.device:
        if self.args.device:
            device = torch.device(self.args.device)
            backend = getattr(torch, device.type, None) if device.type != "cpu" else None
            if backend is not None and hasattr(backend, "is_available") and not backend.is_available():
                raise ConfigurationError(
                    f"`device` {self.args.device!r}: torch finds no {device.type} device here. Leave `device` unset "
                    "to use CUDA when there is one and the CPU otherwise, or pass 'cpu'."
                )
            if (
                device.index is not None
                and hasattr(backend, "device_count")
                and device.index >= backend.device_count()
            ):
                raise ConfigurationError(
                    f"`device` {self.args.device!r}: torch finds {backend.device_count()} {device.type} device(s) "
                    f"here, numbered from 0."
                )
        else:
            from accelerate import PartialState

            device = PartialState(cpu=not torch.cuda.is_available()).device  # as `Ranks.current` starts it
        # a rank's CPU is `cpu:0`, and `tensor.to("cpu:0")` copies every `cpu` tensor (each block, each batch)
        return torch.device("cpu") if device.type == "cpu" else device

    def _batch_size(self, prepared: _Prepared, cache_budget: int) -> BatchSizeChoice:
        """The execution batch size: the one given, or under "auto" the store's choice for these architectures
        on this device, measured when there is none (`engine.batch_size`). Ranks use rank 0's choice."""
        if self.args.batch_size != "auto":
            return BatchSizeChoice(self.args.batch_size)
        from ..plan import plan_iteration
        from .strategies import task_tree

        schedule, device = prepared.schedule, prepared.device
        probe_item = (schedule.train_slices[0].items[0],)

        def inputs(candidate: EngineCandidate, size: int) -> tuple:
            one = prepared.data(candidate.input_key, probe_item)  # one real item, repeated: speed, not values
            batch = {k: v.expand(size, *v.shape[1:]).contiguous() for k, v in one.items()}
            return tuple(t.to(device) for t in candidate.initial_state(batch))

        choice = None
        if self._ranks.rank == 0:
            per_item = plan_iteration(task_tree(prepared.candidates)).c_min_per_item
            choice = tune_batch_size(
                prepared.candidates,
                inputs,
                device=device,
                largest=max(len(u.items) for u in (schedule.test, *schedule.train_slices)),
                capacity=cache_budget // max(per_item, 1),
                projected_items=len(schedule.test.items) + sum(len(u.items) for u in schedule.train_slices),
                store=prepared.store.root,
            )
        return self._ranks.gather(choice)[0]  # one process: its own

    # -- phase 2: successive halving ------------------------------------------------------------------------
    def _run(self, prepared: _Prepared, batch_size: int, cache_budget: int) -> HalvingOutcome:
        def on_iteration_end(record):
            for cb in self.callbacks:
                cb.on_iteration_end(iteration=record.iteration, scores=record.scores, survivors=record.survivors)

        return run_halving(
            prepared.candidates,
            prepared.labels,
            prepared.schedule,
            prepare=prepared.data,
            scorer=self.scorer,
            strategy=self.args.strategy,
            batch_size=batch_size,
            cache_budget=cache_budget,
            device=prepared.device,
            feature_cache=prepared.feature_cache,
            fingerprint=self._fingerprint(prepared.dataset),
            scorer_key=self._scorer_key,
            persist_states=self.args.persist_states,
            ranks=self._ranks,
            on_iteration_end=on_iteration_end,
        )

    def _fingerprint(self, dataset) -> str | None:
        """The dataset's name for the feature cache: `datasets`' fingerprint (it changes with the content and
        every transform) and the input column; None (nothing persisted) for data without one."""
        fp = getattr(dataset, "_fingerprint", None)
        return f"{fp}-{'+'.join(self.columns.inputs)}" if fp else None

    # -- phase 3: the result --------------------------------------------------------------------------------
    def _result(
        self, prepared: _Prepared, outcome: HalvingOutcome, batch: BatchSizeChoice, *, seconds: float,
        setup_seconds: float,
    ) -> SearchResult:  # fmt: skip
        info = prepared.store.info()
        candidates = prepared.candidates
        cache = prepared.feature_cache
        return SearchResult(
            ranking=[
                {
                    "rank": i + 1,
                    "model": m,
                    "score": outcome.scores[m],
                    "revision": prepared.revisions.get(m),
                    **prepared.provenance.get(m, {}),
                }  # fmt: skip
                for i, m in enumerate(outcome.ranking)
            ],
            iterations=[r.to_dict() for r in outcome.iterations],
            skipped=dict(self.skipped),
            strategy=self.args.strategy,
            arguments={**self.args.to_dict(), "scorer": self._scorer_name},
            seconds=seconds,
            setup_seconds=setup_seconds,
            bytes_fetched=prepared.stats.bytes,
            requests=prepared.stats.requests,
            fetch={
                "header_bytes": prepared.stats.header_bytes,
                "edge_bytes": prepared.stats.edge_bytes,
                "metadata_requests": prepared.stats.metadata_requests,
                "metadata_bytes": prepared.stats.metadata_bytes,
                "identity": dict(prepared.stats.identity),
                "refetched_blocks": prepared.stats.refetched_blocks,
                "retries": prepared.stats.retries,
            },  # fmt: skip
            store={**asdict(info), "dedup_ratio": info.dedup_ratio},
            feature_cache={
                **(cache.stats.to_dict() if cache else {}),
                "cached": sorted({m for r in outcome.iterations for m in r.cached}),
                **({"error": outcome.feature_cache_error} if outcome.feature_cache_error else {}),
            },
            plan={
                "unique_blocks": len({b.content_hash for c in candidates for b in c.blocks}),
                # candidates with the same tensors that configs part (`candidates.computed_apart`)
                "computed_apart": prepared.apart,
                "total_blocks": sum(len(c.blocks) for c in candidates),
                "chunks": max((r.counters.chunks for r in outcome.iterations), default=0),
                "input_keys": sorted({c.input_key for c in candidates}),
                "batch_size": batch.size,
                "precision": prepared.precision,
                "batch_size_tuning": batch.to_dict() if self.args.batch_size == "auto" else None,
            },
            dataset={
                "items": len(prepared.dataset),
                "test_items": len(prepared.schedule.test.items),
                "modality": self.columns.kind,
                "inputs": list(self.columns.inputs),  # two: a sentence pair
                "label": self.columns.label,
                "classes": len(set(prepared.labels)),
            },
            device=str(prepared.device),
        )
