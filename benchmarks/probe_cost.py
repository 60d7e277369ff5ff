"""What the shape probe costs a decoder's first set-up: its measurement now (each block on zeros the OS never
writes), against the same on zeros written into memory (the probe before), and against building the random-init
copy of the whole model it ran before that (`candidates.probe._measure`).

Each side runs in a fresh process, so its peak RSS is its own; the ratios come from one run. The `moe` size is a
two-layer Mixtral-8x7B (its real widths and 8 experts), whose random-init copy (13 GB) is not built.

    python -m benchmarks.probe_cost [--size 0.5b|moe|tiny]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


# Classifiers from their configs alone (random weights: nothing is downloaded): Qwen2.5-0.5B-sized, a two-layer
# Mixtral-8x7B, and a tiny one for tests
SIZES = {
    "0.5b": ("Qwen2", dict(vocab_size=151936, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                           num_key_value_heads=2, intermediate_size=4864, max_position_embeddings=32768)),
    "moe": ("Mixtral", dict(vocab_size=32000, hidden_size=4096, num_hidden_layers=2, num_attention_heads=32,
                            num_key_value_heads=8, intermediate_size=14336, num_local_experts=8,
                            num_experts_per_tok=2)),
    "tiny": ("Qwen2", dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, intermediate_size=37, max_position_embeddings=64)),
}  # fmt: skip

_CHILD = """
import json, resource, sys, time
import torch
from alsatian_hf.adapters.skeleton import build_model
from alsatian_hf.candidates import probe
folder, side = sys.argv[1], sys.argv[2]
state = (torch.randint(0, 60, (1, 128)), torch.ones(1, 128, dtype=torch.long))
if side == "probe on written zeros":
    probe._untouched_zeros = lambda shape, dtype: torch.zeros(shape, dtype=dtype)
start = time.perf_counter()
if side.startswith("probe"):
    probe._measure(folder, state)
else:
    build_model(folder, device="cpu")
print(json.dumps([time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]))
"""


def largest_block_bytes(folder: str) -> int:
    """The fp32 bytes of the largest block's parameters: what zeros written into memory held at once."""
    from alsatian_hf.adapters import split_model
    from alsatian_hf.adapters.skeleton import build_model

    model = build_model(folder, device="meta", shared=False)
    params = dict(model.named_parameters())
    return max(sum(params[k].numel() * 4 for k in b.model_tensors() if k in params) for b in split_model(model).blocks)


def measure(size: str) -> tuple[dict[str, tuple[float, int]], int]:
    """(seconds, peak RSS bytes) of each side, each in a fresh process; and the largest block's fp32 bytes."""
    import transformers

    family, kwargs = SIZES[size]
    classifier = [f"{family}ForSequenceClassification"]
    config = getattr(transformers, f"{family}Config")(**kwargs, num_labels=3, pad_token_id=0, architectures=classifier)
    sides = ["probe", "probe on written zeros"] + (["random-init copy"] if size != "moe" else [])
    with tempfile.TemporaryDirectory() as tmp:
        config.save_pretrained(tmp)
        out = {}
        for side in sides:
            run = subprocess.run([sys.executable, "-c", _CHILD, tmp, side], capture_output=True, text=True, check=True)
            seconds, rss = json.loads(run.stdout.strip().splitlines()[-1])
            out[side] = (seconds, int(rss))
        return out, largest_block_bytes(tmp)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="0.5b")
    size = parser.parse_args(argv).size
    out, block = measure(size)
    print(f"| {size} decoder | seconds | peak RSS (GB) |\n|---|---:|---:|")
    for side, (seconds, rss) in out.items():
        print(f"| {side} | {seconds:.2f} | {rss / 1e9:.2f} |")
    print(f"largest block's parameters in fp32: {block / 1e9:.2f} GB")
    probe, written = out["probe"], out["probe on written zeros"]
    print(f"the probe took {probe[0] / written[0]:.2f}x the time and {probe[1] / written[1]:.2f}x the peak RSS of "
          "the probe on written zeros")  # fmt: skip
    if "random-init copy" in out:
        print(
            f"the probe in all took {probe[0] / out['random-init copy'][0]:.2f}x the time of building the copy alone"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
