"""Test set-up: a private HF_HOME and a session-wide local hub, configured *before* any Hugging Face import.

Any attempt to resolve a host other than this machine fails at once, so a test that would try the real Hub
errors instead of hanging on DNS retries.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path


_SESSION_DIR = Path(tempfile.mkdtemp(prefix="alsatian-tests-"))
os.environ["HF_HOME"] = str(_SESSION_DIR / "hf_home")
# torch.compile's kernels and Triton's, which default to /tmp/torchinductor_$USER, go with the session
os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(_SESSION_DIR / "torchinductor")
os.environ["TRITON_CACHE_DIR"] = str(_SESSION_DIR / "triton")
# and so does what the processes that tests start write to their temp folder, such as the precompiled C++
# headers of the smoke benchmark's torch.compile (158 MB, named by the checkout's path, so that each fresh
# clone's run left one in /tmp/torchinductor_$USER); this process's own: `compile_headers_in_session`
(_SESSION_DIR / "tmp").mkdir()
os.environ["TMPDIR"] = str(_SESSION_DIR / "tmp")
os.environ.pop("HF_HUB_DISABLE_XET", None)  # the session hub speaks Xet, so downloads go through hf_xet
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("HF_TOKEN", None)

from alsatian_hf.localhub.server import HubServer  # noqa: E402  (imports no Hugging Face code)


_HUB = HubServer(_SESSION_DIR / "hub").start()
os.environ["HF_ENDPOINT"] = _HUB.url

_real_getaddrinfo = socket.getaddrinfo
_LOCAL = {"127.0.0.1", "localhost", "::1", "0.0.0.0", None}


def _local_only_getaddrinfo(host, *args, **kwargs):
    if host not in _LOCAL and not str(host).startswith("127."):
        raise socket.gaierror(socket.EAI_NONAME, f"tests may only reach this machine, not {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _local_only_getaddrinfo

import pytest  # noqa: E402


@pytest.fixture()
def hub():
    """The session's local hub; its fault settings and request log are reset around each test."""
    _HUB.faults.reset()
    _HUB.clear_log()
    yield _HUB
    _HUB.faults.reset()
    _HUB.clear_log()


@pytest.fixture(scope="session")
def compile_headers_in_session():
    """Where torch.compile puts its precompiled C++ headers in this process: with the session's kernels.
    torch (2.14) puts them in `tempfile.gettempdir()`/torchinductor_$USER whatever TORCHINDUCTOR_CACHE_DIR
    says, and this process read its temp folder before the session set TMPDIR for the processes it starts."""
    import torch._inductor.codecache as codecache

    folder = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]) / "precompiled_headers"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codecache, "_HEADER_DIR", str(folder))
        patch.setattr(codecache, "_HEADER_LOCK_DIR", str(folder / "locks"))
        yield folder


@pytest.fixture(scope="session")
def hub_root() -> Path:
    return _HUB.root


def pytest_sessionfinish(session, exitstatus):
    """Stop the hub and drop its ~400 MB of zoos after a passing run; a failing run keeps them to look at."""
    from alsatian_hf.candidates import wait_prepared

    wait_prepared()  # no background write of a prepared block may recreate a folder after it is removed
    _HUB.stop()
    if exitstatus == 0:
        shutil.rmtree(_SESSION_DIR, ignore_errors=True)
    else:
        print(f"\nthe session's local hub and HF_HOME are kept in {_SESSION_DIR}")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_zoo(hub_root):
    """Six timm `test_resnet` models (a base and five fine-tunes) in org `tiny`, served by the session hub."""
    from alsatian_hf.zoo import TimmSource, ZooSpec, build_zoo

    return build_zoo(
        ZooSpec(
            "tiny",
            TimmSource("test_resnet", model_args={"num_classes": 10}),
            num_models=6,
            distribution="top_25",
            seed=1,
        ),
        hub_root,
    )


@pytest.fixture(scope="session")
def vit_zoo(hub_root):
    """Tiny transformers ViTs with an image processor, for the image path through AutoImageProcessor."""
    from transformers import ViTConfig, ViTImageProcessor

    from alsatian_hf.zoo import TransformersSource, ZooSpec, build_zoo

    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
        num_labels=10,
    )
    proc = ViTImageProcessor(size={"height": 32, "width": 32})
    return build_zoo(
        ZooSpec(
            "vitorg",
            TransformersSource(config=config, processor=proc),
            num_models=5,
            distribution="top_50",
            seed=0,
            name="vit",
        ),
        hub_root,
    )


@pytest.fixture()
def diverged(hub_root, tiny_zoo, tmp_path) -> Path:
    """A local copy of a `tiny_zoo` fine-tune whose layer4 conv1 weights are NaN, as a diverged fine-tune's are."""
    import torch
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "diverged"
    shutil.copytree(hub_root / tiny_zoo.repo_ids[1], broken)
    tensors = load_file(broken / "model.safetensors")
    key = next(k for k in sorted(tensors) if k.startswith("layer4") and k.endswith("conv1.weight"))
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    return broken


@pytest.fixture(scope="session")
def letters_tokenizer(hub_root):
    """`zoo.letters_tokenizer`: words spelt out letter by letter, for tiny text models (vocab_size 57)."""
    from alsatian_hf.zoo import letters_tokenizer

    return letters_tokenizer(hub_root.parent)


@pytest.fixture(scope="session")
def tiny_bert_repo(hub_root, letters_tokenizer):
    """A tiny random BERT classifier saved by `save_pretrained` in 3+ shards, with `letters_tokenizer`."""
    from transformers import BertConfig

    from alsatian_hf.zoo import TransformersSource, ZooSpec, build_zoo

    tokenizer = letters_tokenizer
    config = BertConfig(
        vocab_size=57,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=3,
    )
    source = TransformersSource(
        config=config,
        auto_class="AutoModelForSequenceClassification",
        processor=tokenizer,
        pipeline_tag="text-classification",
    )
    return build_zoo(ZooSpec("tinybert", source, num_models=2, seed=0, shard_size=20_000), hub_root)


@pytest.fixture(scope="session")
def digits_dataset_repo(hub_root):
    """scikit-learn's digits as a Hub dataset repo (`datasets/tiny/digits`) in parquet."""
    from alsatian_hf.zoo.data import digits

    folder = hub_root / "datasets" / "tiny" / "digits" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    ds = digits(num_items=200, seed=0)
    ds.to_parquet(str(folder / "train-00000-of-00001.parquet"))
    return "tiny/digits", ds
