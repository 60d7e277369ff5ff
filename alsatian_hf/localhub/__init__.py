"""`alsatian_hf.localhub`: a Hub-compatible server over a folder, and the client switch that points at it."""

from __future__ import annotations

import os
import sys

from ._repo import open_pull_request
from .server import Faults, HubServer, LoggedRequest, serve_hub


def use_endpoint(url: str) -> None:
    """Point every Hugging Face client in this process at `url`.

    `HF_ENDPOINT` is read when huggingface_hub (and datasets) are imported, so set it before those imports
    when you can; this also patches the module constants of libraries that are already imported.
    """
    url = url.rstrip("/")
    os.environ["HF_ENDPOINT"] = url
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.ENDPOINT = url
        constants.HUGGINGFACE_CO_URL_TEMPLATE = url + "/{repo_id}/resolve/{revision}/{filename}"
    ds_config = sys.modules.get("datasets.config")
    if ds_config is not None:
        ds_config.HF_ENDPOINT = url
        ds_config.HUB_DATASETS_URL = url + "/datasets/{repo_id}/resolve/{revision}/{path}"
        ds_config.HUB_DATASETS_HFFS_URL = "hf://datasets/{repo_id}@{revision}/{path}"


__all__ = ["Faults", "HubServer", "LoggedRequest", "open_pull_request", "serve_hub", "use_endpoint"]
