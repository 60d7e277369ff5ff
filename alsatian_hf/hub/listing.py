"""List candidate models on a Hub: metadata only, pinned to the commit seen at listing time."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

from .conversion import find_conversion, has_pickled_checkpoint, pickled_only
from .headers import ADAPTER_WEIGHTS, checkpoint_files, is_adapter
from .ranges import with_retries


logger = logging.getLogger("alsatian_hf")

_EXPAND = ["sha", "siblings", "safetensors", "tags", "library_name", "pipeline_tag", "gated", "private", "config",
           "cardData"]  # fmt: skip


@dataclass
class Candidate:
    """A listed model. `skip_reason` is set when it cannot be scored (the search shows it)."""

    repo_id: str
    revision: str | None
    library: str | None = None
    pipeline_tag: str | None = None
    num_parameters: int | None = None
    siblings: tuple[str, ...] = ()
    skip_reason: str | None = None


def card_base_model(card) -> str | None:
    """The first model a card's metadata names as `base_model` (a repo id or a list of them), or None."""
    bases = card.get("base_model") if card else None
    return bases if isinstance(bases, str) else (bases[0] if bases else None)


def _to_candidate(info) -> Candidate:
    siblings = tuple(s.rfilename for s in (info.siblings or []))
    params = info.safetensors.total if info.safetensors is not None else None
    c = Candidate(info.id, info.sha, info.library_name, info.pipeline_tag, params, siblings)
    if info.gated:
        c.skip_reason = "gated repo: request access on the Hub, then log in (HF_TOKEN)."
    elif is_adapter(siblings):  # a PEFT adapter: searched merged into its base
        if ADAPTER_WEIGHTS not in siblings:
            c.skip_reason = f"a PEFT adapter without {ADAPTER_WEIGHTS} (an adapter_model.bin is never unpickled)."
    elif siblings and checkpoint_files(list(siblings)) is None and not has_pickled_checkpoint(siblings):
        c.skip_reason = "no safetensors weights."  # a .bin checkpoint's safetensors conversion is looked up on opening
    return c


def list_candidates(
    *,
    author: str | None = None,
    filter: str | Iterable[str] | None = None,
    search: str | None = None,
    base_model: str | None = None,
    library: str | None = None,
    pipeline_tag: str | None = None,
    max_params: int | None = None,
    limit: int | None = None,
    include_skipped: bool = True,
) -> Iterator[Candidate]:
    """Candidates matching a metadata query, lazily, as `HfApi.list_models` pages through them.

    Args:
        base_model: all fine-tunes, adapters and merges of this model, following the `base_model:<id>` tags down
            the tree (the base itself is not included). Quantized copies are left out: they are the base's
            weights, rounded.
        max_params: keep models with at most this many parameters (from safetensors metadata; no download). An
            adapter counts as its card's base model, whose size one more request reads.
        include_skipped: also yield candidates that cannot be scored, with `skip_reason` set.

    Example:
        >>> for c in list_candidates(author="my-org", pipeline_tag="image-classification"):  # doctest: +SKIP
        ...     print(c.repo_id, c.revision)
    """
    from huggingface_hub import HfApi

    api = HfApi()
    filters = [filter] if isinstance(filter, str) else list(filter or [])
    if library:
        filters.append(library)
    seen: set[str] = set()
    count = 0

    def from_tree() -> Iterator:
        queue = deque([base_model])
        while queue:
            parent = queue.popleft()
            for info in api.list_models(
                filter=filters + [f"base_model:{parent}"],
                author=author,
                search=search,
                pipeline_tag=pipeline_tag,
                expand=_EXPAND,
            ):
                if f"base_model:quantized:{parent}" in (info.tags or []):
                    continue
                if info.id not in seen and info.id != base_model:
                    queue.append(info.id)
                    yield info

    if base_model is not None:
        iterator = from_tree()
    else:
        iterator = api.list_models(
            author=author, filter=filters or None, search=search, pipeline_tag=pipeline_tag, expand=_EXPAND
        )
    base_sizes: dict[str, int | None] = {}

    def merged_size(info) -> int | None:
        """An adapter's size merged: its card's base model's (one metadata request per base)."""
        base = card_base_model(info.card_data)
        if base is None:
            return None
        if base not in base_sizes:
            try:
                found = with_retries(lambda: api.model_info(base, expand=["safetensors"])).safetensors
            except (OSError, ValueError) as e:  # missing, gated, offline: the adapter is skipped with the reason
                logger.debug("max_params: the size of %s, base of %s, is unknown (%s)", base, info.id, e)
                found = None
            base_sizes[base] = found.total if found is not None else None
        return base_sizes[base]

    def converted_size(info) -> int | None:
        """A `.bin`-only commit's size: its safetensors conversion's (`hub.conversion`; two or three requests)."""
        try:
            conversion = find_conversion(info.id, info.sha, private=bool(info.private))
            if conversion is None:
                return None
            found = with_retries(
                lambda: api.model_info(info.id, revision=conversion.commit, expand=["safetensors"])
            ).safetensors
        except (OSError, ValueError) as e:  # as for an adapter's base: skipped with the reason
            logger.debug("max_params: the size of %s's safetensors conversion is unknown (%s)", info.id, e)
            return None
        return found.total if found is not None else None

    for info in iterator:
        if info.id in seen:
            continue
        seen.add(info.id)
        cand = _to_candidate(info)
        if max_params is not None and cand.skip_reason is None and is_adapter(cand.siblings):
            cand.num_parameters = merged_size(info)  # the adapter's own parameters are a fraction of the search's
            if cand.num_parameters is None:
                cand.skip_reason = (
                    "a PEFT adapter whose card's `base_model` has no size to check `max_params` against."
                )
        elif max_params is not None and cand.skip_reason is None and pickled_only(cand.siblings):
            cand.num_parameters = converted_size(info)  # a `.bin`-only commit: the Hub has no size of its own
            if cand.num_parameters is None:
                cand.skip_reason = (
                    "only a .bin checkpoint, and no open safetensors conversion pull request whose size to check "
                    "`max_params` against."
                )
        if max_params is not None and cand.skip_reason is None:
            if cand.num_parameters is None:
                cand.skip_reason = "no safetensors metadata to check `max_params` against."
            elif cand.num_parameters > max_params:
                continue
        if cand.skip_reason and not include_skipped:
            continue
        yield cand
        count += 1
        if limit is not None and count >= limit:
            return
