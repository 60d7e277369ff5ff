"""`SearchArguments`: every knob of a search, validated in one place; `HfArgumentParser` and the CLI read it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .._units import parse_bytes
from ..candidates.compiled import CompileMode_T, check_compile_mode
from ..candidates.precision import Precision_T, check_precision
from ..errors import ConfigurationError
from ..scoring import Scorer_T, get_scorer
from .strategies import STRATEGIES, Strategy_T


@dataclass
class SearchArguments:
    """Arguments of a model search.

    `scorer_kwargs` also takes a dict, and `cache_budget` an int; after validation they are a dict and an int
    number of bytes (or "auto"), `batch_size` is an int (or "auto"), `channels_last` a bool (or "auto"), and
    `test_size` is a fraction below 1 or an int count of items.

    Example:
        >>> args = SearchArguments(result_size=3, strategy="alsatian", cache_budget="2GB")
        >>> args.cache_budget
        2147483648
    """

    result_size: int = field(default=1, metadata={"help": "How many models to return (k)."})
    strategy: Strategy_T = field(
        default="alsatian",
        metadata={
            "help": "Execution strategy: `alsatian` (shared blocks, DFS+, caching), `shift` (successive halving, "
            "models run whole) or `base` (every model on all data). All return the same ranking."
        },
    )
    scorer: Scorer_T = field(
        # `head` ranks the card's real fine-tunes better than SHiFT's `linear` beyond the benchmark's noise, on
        # 12 targets (docs/concepts.md, "Choosing a scorer")
        default="head",
        metadata={
            "help": "Proxy score: head (a fresh linear head trained by AdamW, the default), linear (SHiFT's probe), "
            "knn, logme or hscore. A scorer object goes to `ModelSearcher(scorer=...)`."
        },
    )
    scorer_kwargs: str = field(
        default="{}",
        metadata={"help": "Keyword arguments of the scorer, as a dict or a JSON string (e.g. '{\"epochs\": 50}')."},
    )
    test_size: float = field(
        default=0.2, metadata={"help": "Fraction in (0, 1), or a whole number (>= 1) of items, held out as D_test."}
    )
    max_test_items: int | None = field(default=1000, metadata={"help": "Cap on D_test's size."})
    max_train_items: int | None = field(default=None, metadata={"help": "Cap on D_train's size (None: all)."})
    rank_timeout: float = field(
        default=1800,
        metadata={
            "help": "Under a launcher: seconds a rank waits for the others at an exchange before it stops with "
            "RankLostError (a rank died or hung). Above the longest per-iteration imbalance between ranks."
        },
    )
    min_items_per_class: int | None = field(
        default=None,
        metadata={
            "help": "The first iteration scores on at least this many items of every class (later ones double "
            "from there). Off by default: it changes the paper's schedule, whose first slice is |D_train| / "
            "(2^l - 1) items however many classes there are."
        },
    )
    batch_size: str = field(
        default="auto",
        metadata={
            "help": "Items per inference batch, or `auto`: measured once per architecture, input and device (a "
            "few passes of one candidate's blocks at growing sizes, weighted by the zoo's unique blocks) and "
            "kept in the store, so repeated and grown searches cut the same batches."
        },
    )
    num_workers: int = field(default=0, metadata={"help": "Threads for preprocessing (0: in the calling thread)."})
    cache_budget: str = field(
        default="auto",
        metadata={
            "help": "Bytes for cached intermediates (e.g. 2GB), or `auto`: half of free RAM plus free accelerator "
            "memory. Below the plan's C_min the data is chunked."
        },
    )
    device: str | None = field(default=None, metadata={"help": "cuda, cuda:1, cpu; default: CUDA when present."})
    seed: int = field(default=0, metadata={"help": "Seeds the split, the slices and the proxy."})
    image_size: int | None = field(
        default=None,
        metadata={"help": "Resize images to this square size instead of each model's own input size (faster on CPU)."},
    )
    max_length: int = field(
        default=128,
        metadata={"help": "Token length for text models (padded/truncated), cut to each model's positions."},
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Write the SearchResult (JSON, PNG, summary) here."}
    )
    revision: str | None = field(
        default=None,
        metadata={
            "help": "Pin candidates to this revision (a branch or commit); default: the commit seen at listing."
        },
    )
    allow_full_download: bool = field(
        default=False,
        metadata={"help": "If a server ignores Range requests, download whole checkpoints instead of failing."},
    )
    store_dir: str | None = field(default=None, metadata={"help": "Block store folder (default under HF_HOME)."})
    feature_cache: bool = field(
        default=True,
        metadata={
            "help": "Keep extracted features on disk beside the block store, so a repeat, resumed or incremental "
            "search computes no model's features twice (off: RAM only)."
        },
    )
    feature_cache_budget: str = field(
        default="10GB", metadata={"help": "Bytes of features kept on disk (e.g. 10GB); least recently used go first."}
    )
    persist_states: bool = field(
        default=True,
        metadata={
            "help": "With the feature cache (and the `alsatian` strategy): also keep on disk the outputs of block "
            "prefixes that several candidates share, and the preprocessed inputs, so a model seen later (a new "
            "fine-tune, a resumed search) computes only the blocks it does not share."
        },
    )
    xet_identity: bool = field(
        default=True,
        metadata={
            "help": "Prove blocks identical to stored ones from the Hub's Xet metadata before downloading them "
            "(only unproven edge bytes are fetched); off: fetch and hash every block not in the store."
        },
    )

    channels_last: str = field(
        default="auto",
        metadata={
            "help": "Run convolutions in channels-last layout: `true` in every block, `false` in none, or `auto`: "
            "everywhere on CUDA (cuDNN's fastest), and on a CPU in the blocks where a short measurement, once per "
            "architecture, input and CPU and kept in the store, found it faster (oneDNN's fastest layout depends "
            "on the CPU and the block's shape). The features differ between layouts by float rounding only."
        },
    )

    sentence_pooling: bool = field(
        default=True,
        metadata={
            "help": "Read out a sentence-transformers repo (one with `modules.json`) as its own Pooling and "
            "Normalize modules do: the sentence embedding it was trained to produce. False reads it out as its "
            "transformers model does (the pooler, or [CLS]), and sends no prompt."
        },
    )

    sentence_prompt: str | None = field(
        default=None,
        metadata={
            "help": "The sentence-transformers prompt put before every text, as `encode(prompt_name=...)` puts it: "
            "the one of this name (e.g. `classification`) in repos that define it; others use their "
            "`default_prompt_name`'s, as `encode` does by default (None: every repo's default). An empty string "
            "sends no prompt. A ranking row names the prompt its model was scored with."
        },
    )

    fold_batchnorm: bool = field(
        default=True,
        metadata={
            "help": "Fold each BatchNorm that follows a convolution into it for inference (computed at a block's first "
            "load and kept as its prepared block; the stored blocks stay as they are); the features differ by "
            "float rounding only."
        },
    )

    prepared_blocks: bool = field(
        default=True,
        metadata={
            "help": "Keep each block's prepared form (BatchNorm folded, channels-last) in the block store, so that "
            "later loads memory-map it instead of computing it into fresh memory, and processes on one machine "
            "share its pages. Same features; costs disk about the size of the conv blocks (`store gc` drops them "
            "with their block). Off: prepare at every load."
        },
    )

    precision: Precision_T = field(
        default="fp32",
        metadata={
            "help": "Float precision of the blocks: `fp32` (exact; TF32 off on CUDA, where cuDNN would otherwise "
            "use it), `tf32` (CUDA only) or `bf16` (autocast). The last two round the features differently and "
            "may change the ranking; measured in the card's `precision` table."
        },
    )

    torch_compile: bool = field(
        default=False,
        metadata={
            "help": "Run each block through torch.compile (compiled once per architecture and position, shared by "
            "every candidate). Off by default: on CPU it measured no faster than eager and the first search pays "
            "the compile time (the card's `precision` table, rows `fp32+compile`). The features differ by float "
            "rounding only."
        },
    )
    torch_compile_mode: CompileMode_T | None = field(
        default=None,
        metadata={
            "help": "torch.compile's mode: default, reduce-overhead (CUDA graphs on CUDA), max-autotune or "
            "max-autotune-no-cudagraphs. Setting it turns `torch_compile` on."
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.result_size, bool) or not isinstance(self.result_size, int) or self.result_size < 1:
            raise ConfigurationError(f"`result_size` must be a positive integer, got {self.result_size!r}.")
        if self.strategy not in STRATEGIES:
            raise ConfigurationError(f"`strategy` must be one of {list(STRATEGIES)}, got {self.strategy!r}.")
        if not isinstance(self.scorer, str):
            raise ConfigurationError(
                f"`scorer` names a scorer ({list(Scorer_T.__args__)}); pass a scorer object as "
                f"`ModelSearcher(scorer=...)` instead, got {type(self.scorer).__name__}."
            )
        if isinstance(self.scorer_kwargs, str):
            try:
                self.scorer_kwargs = json.loads(self.scorer_kwargs) if self.scorer_kwargs.strip() else {}
            except ValueError as e:
                raise ConfigurationError(f"`scorer_kwargs` is not valid JSON: {e}.") from e
        if not isinstance(self.scorer_kwargs, dict):
            raise ConfigurationError(f"`scorer_kwargs` must be a dict, got {type(self.scorer_kwargs).__name__}.")
        get_scorer(self.scorer, **self.scorer_kwargs)  # raises ConfigurationError naming `scorer` or `scorer_kwargs`
        if isinstance(self.test_size, bool) or not (
            0 < self.test_size < 1 or (self.test_size >= 1 and float(self.test_size).is_integer())
        ):
            raise ConfigurationError(
                f"`test_size` must be a fraction in (0, 1) or a whole number of items, got {self.test_size!r}."
            )
        if self.test_size >= 1:
            self.test_size = int(self.test_size)  # a count of items (the CLI parses "200" as 200.0)
        for name in ("max_test_items", "max_train_items", "min_items_per_class"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigurationError(f"`{name}` must be >= 1 or None, got {value!r}.")
        if not self.rank_timeout > 0:
            raise ConfigurationError(f"`rank_timeout` must be > 0 seconds, got {self.rank_timeout!r}.")
        self.batch_size = _batch_size(self.batch_size)
        self.channels_last = _channels_last(self.channels_last)
        if self.num_workers < 0:
            raise ConfigurationError(f"`num_workers` must be >= 0, got {self.num_workers}.")
        self.cache_budget = _bytes_field("cache_budget", self.cache_budget, example="2GB", auto=True, minimum=1)
        self.feature_cache_budget = _bytes_field("feature_cache_budget", self.feature_cache_budget, example="10GB")
        if self.image_size is not None and self.image_size < 8:
            raise ConfigurationError(f"`image_size` must be >= 8 pixels, got {self.image_size}.")
        if self.max_length < 2:
            raise ConfigurationError(f"`max_length` must be >= 2, got {self.max_length}.")
        check_precision(self.precision)
        if self.torch_compile_mode is not None:
            check_compile_mode(self.torch_compile_mode)
            self.torch_compile = True
        if self.device is not None:
            import torch

            try:
                torch.device(self.device)
            except RuntimeError as e:
                raise ConfigurationError(f"`device` {self.device!r} is not a torch device: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batch_size(value) -> int | str:
    """An int >= 1 (the CLI passes digits as text), or "auto"."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ConfigurationError(f"`batch_size` must be a number of items >= 1 or 'auto', got {value!r}.")


def _channels_last(value) -> bool | str:
    """True, False or "auto" (the CLI passes text)."""
    if isinstance(value, bool) or value == "auto":
        return value
    text = str(value).strip().lower()
    if text in ("true", "false", "auto"):
        return {"true": True, "false": False}.get(text, "auto")
    raise ConfigurationError(f"`channels_last` must be true, false or 'auto', got {value!r}.")


def _bytes_field(name: str, value, *, example: str, auto: bool = False, minimum: int = 0) -> int | str:
    """A byte size given as an int or text ("2GB"), or "auto" where `auto`.

    Raises:
        ConfigurationError: naming the field, what it got and what it takes.
    """
    takes = f"bytes (e.g. {example})" + (" or 'auto'" if auto else "") + f", at least {minimum}"
    try:
        size = parse_bytes(value)
    except ValueError as e:
        raise ConfigurationError(f"`{name}` must be {takes}; got {value!r}.") from e
    if size == "auto" and auto:
        return size
    if size == "auto" or size < minimum:
        raise ConfigurationError(f"`{name}` must be {takes}; got {value!r}.")
    return size
