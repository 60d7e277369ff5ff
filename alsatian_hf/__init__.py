"""alsatian_hf: find the best base model for transfer learning among many Hub fine-tunes, fast.

Heavy submodules (torch, transformers, huggingface_hub) load lazily, so `import alsatian_hf` stays cheap
and never reads `HF_ENDPOINT` before you had a chance to set it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING


__version__ = "0.2.0.dev0"  # the one source: pyproject.toml reads it (`[tool.setuptools.dynamic]`)

# public name -> submodule that defines it
_LAZY = {
    "HubServer": "alsatian_hf.localhub",
    "serve_hub": "alsatian_hf.localhub",
    "use_endpoint": "alsatian_hf.localhub",
    "build_zoo": "alsatian_hf.zoo",
    "ZooSpec": "alsatian_hf.zoo",
    "ModelSearcher": "alsatian_hf.search",
    "SearchArguments": "alsatian_hf.search",
    "SearchResult": "alsatian_hf.search",
    "SearchCallback": "alsatian_hf.search",
    "list_candidates": "alsatian_hf.hub",
    "register_adapter": "alsatian_hf.adapters",
    "list_adapters": "alsatian_hf.adapters",
}

# The same names for type checkers and IDEs; a test checks that this block and `_LAZY` agree.
if TYPE_CHECKING:  # pragma: no cover
    from .adapters import list_adapters, register_adapter  # noqa: F401
    from .hub import list_candidates  # noqa: F401
    from .localhub import HubServer, serve_hub, use_endpoint  # noqa: F401
    from .search import ModelSearcher, SearchArguments, SearchCallback, SearchResult  # noqa: F401
    from .zoo import ZooSpec, build_zoo  # noqa: F401


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'alsatian_hf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = ["__version__", *_LAZY]
