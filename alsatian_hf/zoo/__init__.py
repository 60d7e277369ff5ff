"""`alsatian_hf.zoo`: build zoos of model repos (paper §6, M_syn) and load the offline real data."""

from ._recipe import DISTRIBUTIONS, Distribution_T, ZooEntry, expected_unique_blocks, plan_zoo, sample_num_reinit
from .builder import (
    FineTuneFn,
    TimmSource,
    TransformersSource,
    ZooReport,
    ZooSpec,
    build_zoo,
    letters_tokenizer,
    reinitialize,
)


__all__ = [
    "DISTRIBUTIONS",
    "Distribution_T",
    "FineTuneFn",
    "TimmSource",
    "TransformersSource",
    "ZooEntry",
    "ZooReport",
    "ZooSpec",
    "build_zoo",
    "expected_unique_blocks",
    "letters_tokenizer",
    "plan_zoo",
    "reinitialize",
    "sample_num_reinit",
]
