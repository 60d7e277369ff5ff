"""The data store: preprocessing once per distinct processor.

Candidates with equal input keys (see `candidates.processors`) share prepared inputs and a task-tree root.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from ..candidates.processors import Processor
from ..errors import DatasetError
from .target import holds_arrays, pixels_to_image


logger = logging.getLogger("alsatian_hf")


@dataclass
class PreparedData:
    """Prepared inputs per (input key, item), computed on first use: 'prepare data' happens once per processor.

    The same items are read again and again: by every model in `shift` and `base`, which run each model on its
    own, and by every plan step that starts at the inputs in `alsatian`, each time in the same order. So a
    prepared batch is kept while it fits in `budget` bytes, and a batch that does not fit is returned, dropped,
    and prepared again when read: with a budget smaller than the data (a 224 px image is 0.6 MB prepared), the
    batches kept serve every later pass, where a least-recently-used set would evict each batch just before the
    next pass reads it.
    """

    dataset: Any
    column: str | tuple[str, str]  # two: a sentence pair, prepared from (text, text_pair) tuples
    num_workers: int = 0  # >0: preprocess slices of a batch in that many threads
    budget: int = 2 << 30  # bytes of prepared inputs kept between the calls that read them
    processors: dict[str, Processor] = field(default_factory=dict)
    _rows: dict[str, dict[int, dict[str, torch.Tensor]]] = field(default_factory=dict)
    nbytes: int = field(default=0, init=False)  # of the prepared inputs kept

    def add(self, processor: Processor) -> str:
        self.processors.setdefault(processor.key, processor)
        return processor.key

    def __call__(self, input_key: str, items: tuple[int, ...]) -> dict[str, torch.Tensor]:
        rows = self._rows.setdefault(input_key, {})
        missing = [i for i in items if i not in rows]
        fresh: dict[int, dict[str, torch.Tensor]] = {}
        if missing:
            batch = self._prepare(input_key, missing)
            fresh = {item: {k: v[j] for k, v in batch.items()} for j, item in enumerate(missing)}
            size = sum(v.numel() * v.element_size() for v in batch.values())
            if self.nbytes + size <= self.budget:
                rows.update(fresh)
                self.nbytes += size
        picked = [rows[i] if i in rows else fresh[i] for i in items]
        return {k: torch.stack([row[k] for row in picked]) for k in picked[0]}

    def _prepare(self, input_key: str, items: list[int]) -> dict[str, torch.Tensor]:
        processor = self.processors[input_key]
        try:
            return self._prepare_batch(processor, items)
        except Exception as e:
            # a corrupt image fails its whole batch, and its error names no item ("cannot identify image file
            # <_io.BytesIO ...>"): find the rows, so the user can drop them. When every row fails alone too, the
            # fault is not in the data but in the candidate's processor (a tokenizer that cannot pad): its error
            # goes up, and the candidate is skipped with it. One row alone (the shape probe's) is judged by another.
            bad = [i for i in items if not self._readable(processor, i)]
            if not bad or (len(bad) == len(items) and (len(items) > 1 or not self._another_readable(processor, bad))):
                raise
            rows = f"Row {bad[0]}" if len(bad) == 1 else f"Rows {bad}"
            raise DatasetError(
                f"{rows} of the target dataset (`train_dataset`'s rows, then `eval_dataset`'s) cannot be read as "
                f"{processor.kind}s ({type(e).__name__}: {e}). Drop them (`ds.select(...)`) and search again."
            ) from e

    def _another_readable(self, processor: Processor, items: list[int]) -> bool:
        """Whether a row of the dataset other than `items` prepares (a dataset of those rows alone: no)."""
        other = next((i for i in range(min(len(self.dataset), len(items) + 1)) if i not in items), None)
        return other is not None and self._readable(processor, other)

    def _readable(self, processor: Processor, item: int) -> bool:
        try:
            self._prepare_batch(processor, [item])
        except Exception:
            return False
        return True

    def _prepare_batch(self, processor: Processor, items: list[int]) -> dict[str, torch.Tensor]:
        fn = processor.fn
        # one batched read of the column: iterating a selection formats and decodes row by row (1.8x slower)
        if isinstance(self.column, tuple):
            values = list(zip(*(self.dataset[c][items] for c in self.column)))
        else:
            values = list(self.dataset[self.column][items])
        if processor.kind == "image" and holds_arrays(self.dataset.features[self.column]):
            values = [pixels_to_image(v) for v in values]  # `check_image_column` let only (H, W[, C]) in
        if self.num_workers > 0 and len(values) > 1:
            from concurrent.futures import ThreadPoolExecutor

            step = -(-len(values) // self.num_workers)
            with ThreadPoolExecutor(self.num_workers) as pool:
                parts = list(pool.map(fn, [values[i : i + step] for i in range(0, len(values), step)]))
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return fn(values)
