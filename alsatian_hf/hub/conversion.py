"""A `.bin`-only checkpoint's safetensors twin: the pull request the Hub's conversion bot opened on its commit.

Weights load only from safetensors, and many older fine-tunes have only `pytorch_model.bin` on main. The Hub's
conversion bot has opened a pull request on most of them that adds the same weights as safetensors. transformers
loads those (`safetensors_conversion.auto_conversion`), with the same rules as here:
- the pull request is open, titled as the bot titles it, and opened by the bot (in a private repo, where only
  members can open one, by anyone);
- its parent is the commit being searched, so it converts these weights and not older ones.
Unlike transformers, a search never asks the conversion Space to open one: that would write to the user's repo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .headers import checkpoint_files
from .ranges import with_retries


logger = logging.getLogger("alsatian_hf")

CONVERSION_TITLE = "Adding `safetensors` variant of this model"
CONVERSION_BOT = "SFconvertbot"
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class Conversion:
    num: int  # the pull request: `refs/pr/{num}`
    commit: str  # its head, the commit whose weights are searched

    @property
    def ref(self) -> str:
        return f"refs/pr/{self.num}"


def has_pickled_checkpoint(siblings) -> bool:
    """Whether a repo's files include a `.bin` checkpoint that a conversion pull request may have converted."""
    return any(name in siblings for name in PICKLED)


def pickled_only(siblings) -> bool:
    """Whether a repo's checkpoint is a `.bin` one alone: what it searches is its conversion, if it has one."""
    return checkpoint_files(list(siblings)) is None and has_pickled_checkpoint(siblings)


def find_conversion(repo_id: str, commit: str, *, private: bool = False) -> Conversion | None:
    """The newest open safetensors conversion of `commit`, or None (one listing request, then one per match).

    Args:
        private: whether the repo is private, where the pull request may be by any member.

    Raises:
        HfHubHTTPError: when the repo's pull requests cannot be listed: 403 where its owner turned discussions off
            (then no conversion can be opened either), 404 on a Hub without discussions.
    """
    from huggingface_hub import HfApi

    api = HfApi()
    discussions = with_retries(
        lambda: list(api.get_repo_discussions(repo_id, discussion_type="pull_request", discussion_status="open"))
    )
    for pr in sorted(discussions, key=lambda d: -d.num):
        if pr.title != CONVERSION_TITLE or not pr.is_pull_request or not (private or pr.author == CONVERSION_BOT):
            continue
        commits = with_retries(lambda ref=pr.git_reference: api.list_repo_commits(repo_id, revision=ref))
        if len(commits) >= 2 and commits[1].commit_id == commit:
            return Conversion(pr.num, commits[0].commit_id)
        logger.info(
            "%s: conversion pull request #%d was opened on another commit than %s", repo_id, pr.num, commit[:8]
        )
    return None
