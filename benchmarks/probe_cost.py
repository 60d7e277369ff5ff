"""What the shape probe costs a decoder's first set-up: its measurement now (each block on zeros), against
building the random-init copy of the whole model it ran before (`candidates.probe._measure`).

Each side runs in a fresh process, so its peak RSS is its own; the ratio of the two comes from one run.

    python -m benchmarks.probe_cost [--size 0.5b|tiny]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


# A Qwen2.5-0.5B-sized classifier (its config, random weights: nothing is downloaded), and a tiny one for tests
SIZES = {
    "0.5b": dict(vocab_size=151936, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, intermediate_size=4864, max_position_embeddings=32768),
    "tiny": dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=37, max_position_embeddings=64),
}  # fmt: skip

_CHILD = """
import json, resource, sys, time
import torch
from alsatian_hf.adapters.skeleton import build_model
from alsatian_hf.candidates.probe import _measure
folder, side = sys.argv[1], sys.argv[2]
state = (torch.randint(0, 60, (1, 128)), torch.ones(1, 128, dtype=torch.long))
start = time.perf_counter()
if side == "probe":
    _measure(folder, state)
else:
    build_model(folder, device="cpu")
print(json.dumps([time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]))
"""


def measure(size: str) -> dict[str, tuple[float, int]]:
    """(seconds, peak RSS bytes) of each side, each in a fresh process."""
    from transformers import Qwen2Config

    with tempfile.TemporaryDirectory() as tmp:
        Qwen2Config(**SIZES[size], num_labels=3, architectures=["Qwen2ForSequenceClassification"]).save_pretrained(tmp)
        out = {}
        for side in ("probe", "random-init copy"):
            run = subprocess.run([sys.executable, "-c", _CHILD, tmp, side], capture_output=True, text=True, check=True)
            seconds, rss = json.loads(run.stdout.strip().splitlines()[-1])
            out[side] = (seconds, int(rss))
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="0.5b")
    size = parser.parse_args(argv).size
    out = measure(size)
    print(f"| {size} decoder | seconds | peak RSS (GB) |\n|---|---:|---:|")
    for side, (seconds, rss) in out.items():
        print(f"| {side} | {seconds:.2f} | {rss / 1e9:.2f} |")
    probe, copy = out["probe"], out["random-init copy"]
    print(f"the probe in all took {probe[0] / copy[0]:.2f}x the time of building the copy alone")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
