"""Extracted features, per model and item, kept in RAM (the baselines too) and reused across iterations."""

from __future__ import annotations

import torch


class FeatureStore:
    def __init__(self) -> None:
        self._rows: dict[str, dict[int, tuple[torch.Tensor, int]]] = {}  # model -> item -> (batch tensor, row)

    def add(self, model_id: str, items: tuple[int, ...], features: torch.Tensor) -> None:
        features = features.detach().to("cpu").float().flatten(1)
        rows = self._rows.setdefault(model_id, {})
        for row, item in enumerate(items):
            rows[item] = (features, row)

    def has(self, model_id: str, items) -> bool:
        rows = self._rows.get(model_id, {})
        return all(i in rows for i in items)

    def get(self, model_id: str, items) -> torch.Tensor:
        rows = self._rows[model_id]
        return torch.stack([rows[i][0][rows[i][1]] for i in items])

    def nbytes(self) -> int:
        seen = {id(t): t.numel() * t.element_size() for rows in self._rows.values() for t, _ in rows.values()}
        return sum(seen.values())

    def drop(self, model_ids) -> None:
        for m in model_ids:
            self._rows.pop(m, None)
