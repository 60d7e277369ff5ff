"""A small in-process cache of objects built from files, keyed by a digest of those files' content."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable


class DigestCache:
    """Builds each object once per content digest and keeps the `size` most recently used.

    Fine-tunes of one base share configs, tokenizers and processors byte for byte; building those once per
    digest instead of once per candidate is most of a search's set-up saving.
    """

    def __init__(self, size: int = 16):
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()

    def get(self, digest: str, build: Callable[[], Any]) -> Any:
        if digest in self._items:
            self._items.move_to_end(digest)
            return self._items[digest]
        obj = self._items[digest] = build()
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return obj
