"""Progress bars through `huggingface_hub.utils.tqdm`, so `HF_HUB_DISABLE_PROGRESS_BARS` works as users expect."""

from __future__ import annotations

import functools
import os
from typing import Any


def progress_bar(**kwargs: Any):
    """A `huggingface_hub` tqdm bar (imported late: `HF_ENDPOINT` may not be set when alsatian_hf is imported)."""
    from huggingface_hub.utils import tqdm

    if int(os.environ.get("RANK", "0")) != 0:  # under a launcher, rank 0 alone draws
        kwargs["disable"] = True
    return tqdm(**kwargs)


@functools.cache
def silent_tqdm_class() -> type:
    """A tqdm class that never draws, for huggingface_hub calls made inside one of the search's phase bars
    (`snapshot_download`'s "Fetching N files" bar per candidate would scroll the search's own bars away)."""
    from huggingface_hub.utils import tqdm

    class SilentTqdm(tqdm):
        def __init__(self, *args: Any, **kwargs: Any):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return SilentTqdm
