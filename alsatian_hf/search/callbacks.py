"""Callbacks in the style of transformers' `TrainerCallback`: subclass and override what you need."""

from __future__ import annotations

import logging


logger = logging.getLogger("alsatian_hf")


class SearchCallback:
    def on_search_begin(self, *, candidates: list[str], args) -> None:
        pass

    def on_candidate_skipped(self, *, model_id: str, reason: str) -> None:
        pass

    def on_iteration_end(self, *, iteration: int, scores: dict[str, float], survivors: list[str]) -> None:
        """Every halving iteration, in order, also those a repeated or resumed search restored from the feature
        cache instead of scoring again (`SearchResult.iterations[i]["restored"]` tells which)."""

    def on_search_end(self, *, result) -> None:
        pass


class LoggingCallback(SearchCallback):
    """Logs skips (WARNING) and iterations (INFO) to the `alsatian_hf` logger; always installed."""

    def on_candidate_skipped(self, *, model_id: str, reason: str) -> None:
        logger.warning("skipping %s: %s", model_id, reason)

    def on_iteration_end(self, *, iteration: int, scores: dict[str, float], survivors: list[str]) -> None:
        logger.info("iteration %d: kept %s", iteration, survivors)
