"""Build zoos of model repos laid out the way the Hub lays them out.

A zoo repo holds `config.json`, `model.safetensors` (sharded on request), the preprocessing files and a
`README.md` model card whose YAML names `base_model`, `library_name` and `pipeline_tag`. Serve the folder
with `alsatian-hf serve-hub` (or `HubServer`) and every Hub client sees an organisation of fine-tunes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import nn

from ..adapters import Block, SplitModel, split_model
from ..errors import ZooExistsError
from ..localhub._xet_cas import UploadMode_T
from ..store.identity import tensor_content_hash
from ._recipe import Distribution_T, ZooEntry, expected_unique_blocks, plan_zoo


# fine_tune(model, split, blocks_to_change, generator): mutate `model` in place. The default re-initialises.
FineTuneFn = Callable[[nn.Module, SplitModel, list[Block], torch.Generator], None]


@dataclass
class TimmSource:
    """A timm architecture, randomly initialised or loaded from a safetensors state dict."""

    architecture: str
    weights: dict[str, torch.Tensor] | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    library: Literal["timm"] = "timm"
    pipeline_tag: str = "image-classification"

    def build(self) -> nn.Module:
        import timm

        model = timm.create_model(self.architecture, pretrained=False, **self.model_args)
        if self.weights is not None:
            model.load_state_dict(self.weights)
        return model.eval()

    def save(self, model: nn.Module, state: dict[str, torch.Tensor], folder: Path, shard_size: int | None) -> None:
        from timm.models._hub import save_config_for_hf

        save_state(state, folder, shard_size)
        save_config_for_hf(model, folder / "config.json", model_config={"num_classes": model.num_classes})


@dataclass
class TransformersSource:
    """A transformers config (random init) or a folder with real weights, with its processor files."""

    config: Any = None  # a PretrainedConfig
    pretrained_dir: str | Path | None = None
    auto_class: str = "AutoModelForImageClassification"
    processor: Any = None  # anything with save_pretrained(folder): image processor or tokenizer
    library: Literal["transformers"] = "transformers"
    pipeline_tag: str = "image-classification"

    def build(self) -> nn.Module:
        import transformers

        cls = getattr(transformers, self.auto_class)
        if self.pretrained_dir is not None:
            kwargs = {"config": self.config} if self.config is not None else {}
            model = cls.from_pretrained(self.pretrained_dir, **kwargs)
        else:
            model = cls.from_config(self.config)
        return model.eval()

    def save(self, model: nn.Module, state: dict[str, torch.Tensor], folder: Path, shard_size: int | None) -> None:
        model.load_state_dict(state)
        kwargs = {"max_shard_size": shard_size} if shard_size else {}
        model.save_pretrained(folder, **kwargs)
        if self.processor is not None:
            self.processor.save_pretrained(folder)


def letters_tokenizer(folder: str | Path):
    """A BERT tokenizer for tiny random text models (vocab_size 57) that spells words out letter by letter: ids
    5-30 start a word, 31-56 continue one. Its vocabulary is written to `folder/vocab.txt`."""
    from transformers import BertTokenizerFast

    letters = [chr(c) for c in range(97, 123)]
    vocab = Path(folder) / "vocab.txt"
    vocab.parent.mkdir(parents=True, exist_ok=True)
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *("##" + c for c in letters)]))
    return BertTokenizerFast(vocab=str(vocab))  # transformers 5 ignores `vocab_file=`: every token would be [UNK]


Source = TimmSource | TransformersSource


@dataclass
class ZooSpec:
    """What to build.

    Args:
        org: the namespace of every repo.
        source: the base model.
        num_models: models in the zoo, the base included.
        distribution: how many trailing blocks a fine-tune changes (`top_50`, `top_25`, `top_layers`).
        seed: the same seed gives the same repos and commit shas.
        name: repo name prefix (`<org>/<name>-base`, `<org>/<name>-ft001`, ...).
        shard_size: bytes per safetensors shard, or None for a single file.
        fine_tune: the change applied to the chosen blocks; the default re-initialises them (paper's M_syn).
            Pass a real fine-tuning function to build an M_train-like zoo.
    """

    org: str
    source: Source
    num_models: int
    distribution: Distribution_T = "top_layers"
    seed: int = 0
    name: str = "model"
    shard_size: int | None = None
    fine_tune: FineTuneFn | None = None


@dataclass
class ZooReport:
    repo_ids: list[str]
    entries: list[ZooEntry]
    num_blocks: int  # blocks of one model that a fine-tune may change (the read-out excluded when it has no weights)
    unique_blocks: int  # distinct block content hashes among the written models
    expected_unique_blocks: int  # what the recipe predicts: the base's blocks plus every re-initialised one
    bytes_written: int


def reinitialize(model: nn.Module, split: SplitModel, blocks: list[Block], generator: torch.Generator) -> None:
    """Re-initialise the blocks' modules, then jitter every float tensor so no two re-inits coincide.

    Tensors a block shares with others (`Block.shared`) stay: a fine-tune of the top blocks leaves the ones below
    as they were."""
    for block in blocks:
        _reset(model, [t for k in block.keys if k not in block.shared for t in block.targets(k)], generator)


def _reset(model: nn.Module, keys: tuple[str, ...] | list[str], generator: torch.Generator) -> None:
    state = model.state_dict(keep_vars=True)
    paths = {k.rpartition(".")[0] for k in keys}
    with torch.no_grad():
        for path in sorted(paths):
            module = model.get_submodule(path) if path else None
            if module is not None and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for key in keys:
            t = state[key]
            if t.is_floating_point():
                t.add_(torch.randn(t.shape, generator=generator, dtype=t.dtype) * 0.02)
                if key.endswith("running_var"):
                    t.abs_()


def build_zoo(
    spec: ZooSpec, root: str | Path, *, overwrite: bool = False, xet_upload: UploadMode_T | None = None
) -> ZooReport:
    """Write `spec.num_models` repos under `root/<org>/` following the M_syn recipe.

    Args:
        xet_upload: chunk each repo's LFS files into the local Hub's Xet index as it is written, as an upload
            would: `dedup` references chunks earlier repos stored (the base's, for a fine-tune), `no-dedup` gives
            each file xorbs of its own. None leaves chunking to the server's first use of each file.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as root:
        ...     report = build_zoo(ZooSpec("demo", TimmSource("test_resnet"), num_models=4), root)
        >>> report.repo_ids
        ['demo/model-base', 'demo/model-ft001', 'demo/model-ft002', 'demo/model-ft003']
    """
    root = Path(root)
    fine_tune = spec.fine_tune or reinitialize
    torch.manual_seed(spec.seed)  # the base model's random init
    template = spec.source.build()
    split = split_model(template)
    trainable = [b for b in split.blocks if b.keys]
    entries = plan_zoo(spec.num_models, len(trainable), spec.distribution, spec.seed)
    states: list[dict[str, torch.Tensor]] = []
    repo_ids: list[str] = []
    written = 0
    head_keys = [split.model_key(k) for k in split.head_keys]
    hashes: set[str] = set()
    for entry in entries:
        repo_name = f"{spec.name}-base" if entry.parent is None else f"{spec.name}-ft{entry.index:03d}"
        repo_id = f"{spec.org}/{repo_name}"
        if entry.parent is not None:
            template.load_state_dict(states[entry.parent])
            gen = torch.Generator().manual_seed(
                int(hashlib.sha256(f"{spec.seed}:{entry.index}".encode()).hexdigest()[:8], 16)
            )
            fine_tune(template, split, trainable[len(trainable) - entry.num_reinit :], gen)
            if head_keys:  # a fine-tune always brings its own head
                _reset(template, head_keys, gen)
        state = {k: v.detach().clone().contiguous() for k, v in template.state_dict().items()}
        states.append(state)
        hashes.update(tensor_content_hash(b, state) for b in trainable)
        folder = root / repo_id
        if folder.exists():
            if not overwrite:
                raise ZooExistsError(f"{folder} exists; pass `overwrite=True` to rebuild the zoo.")
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        spec.source.save(template, state, folder, spec.shard_size)
        parent_id = None if entry.parent is None else repo_ids[entry.parent]
        _write_card(folder, repo_id, spec, entry, parent_id)
        written += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        repo_ids.append(repo_id)
        if xet_upload is not None:
            xet_upload_repo(root, repo_id, xet_upload)
    expected = expected_unique_blocks(entries, len(trainable))
    return ZooReport(repo_ids, entries, len(trainable), len(hashes), expected, written)


def xet_upload_repo(root: Path, repo_id: str, mode: UploadMode_T) -> None:
    """Chunk the repo's LFS files into the local hub's Xet store, as an upload to the Hub would (`dedup`: bytes
    already stored, such as a base model's, are referenced, not stored again)."""
    from ..localhub._repo import FolderRepo
    from ..localhub._xet_cas import XetIndex

    index = XetIndex(root, mode)
    try:
        repo = FolderRepo(root, "model", repo_id)
        index.index_files([repo.folder / f.path for f in repo.files() if f.lfs])
    finally:
        index.close()


def save_state(state: dict[str, torch.Tensor], folder: Path, shard_size: int | None = None) -> None:
    """A checkpoint as `save_pretrained` writes it: `model.safetensors`, or shards of `shard_size` bytes."""
    from huggingface_hub import save_torch_state_dict

    save_torch_state_dict(state, folder, max_shard_size=shard_size or 10**15, metadata={"format": "pt"})


def _write_card(folder: Path, repo_id: str, spec: ZooSpec, entry: ZooEntry, parent_id: str | None) -> None:
    meta: dict[str, Any] = {
        "library_name": spec.source.library,
        "pipeline_tag": spec.source.pipeline_tag,
        "license": "apache-2.0",
        "tags": ["alsatian-zoo", f"zoo-{spec.distribution.replace('_', '-')}"],
    }
    if parent_id is not None:
        meta["base_model"] = parent_id
    if parent_id is None:
        text = "Base model of a synthetic zoo (paper §6, M_syn)."
    else:
        text = (
            f"Synthetic fine-tune of [{parent_id}](../{parent_id.split('/')[1]}): its last "
            f"{entry.num_reinit} block(s) and its head were re-initialised."
        )
    write_card(folder, meta, repo_id, text)


def write_card(folder: Path, meta: dict[str, Any], repo_id: str, text: str) -> None:
    """`README.md`: YAML front matter (`meta`, each value as JSON, which YAML reads), the repo id, `text`."""
    lines = ["---"] + [f"{k}: {json.dumps(v)}" for k, v in meta.items()] + ["---", "", f"# {repo_id}", "", text]
    (folder / "README.md").write_text("\n".join(lines) + "\n")
