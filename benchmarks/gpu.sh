#!/usr/bin/env bash
# The device check, in at most 8 minutes on one H100: the `gpu`-marked tests, then the `gpu` suite (resnet18
# top_50 and top_layers, ViT-B/16 top_layers, MiniLM top_layers; 35 models, 2000 items, 224 px, the three
# strategies), written as a dataset card with the device's name.
#
# Here, once:   bash benchmarks/gpu_bundle.sh          (wheels and datasets into .gpu/, git-ignored)
# On a device:  the device tool's run(command="bash benchmarks/gpu.sh", carry=[".gpu"], timeout_s=540)
#               $OUT gets gpu-tests.log, run.log and gpu-results.tgz (the suite's CSVs, plots and card):
#               untar it into benchmarks/results/gpu/.
# Without .gpu/ it uses the Python environment it finds (a machine with `make install` done). SUITE=smoke checks
# the script itself on a CPU.
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu}
RESULTS=/tmp/alsatian-gpu-results  # the card has more files than a device call returns: they come back as a tar
mkdir -p "$OUT" "$RESULTS"
export PYTHONUNBUFFERED=1 HF_HUB_DISABLE_PROGRESS_BARS=1
PY=python3
if [ -d .gpu/wheels ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .gpu/wheels/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD" ALSATIAN_BENCH_DATA="$PWD/.gpu/data"
elif [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
fi
$PY - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-", flush=True)
PY
# 1. the gpu-marked tests (the engine and a search on CUDA), bounded so the suite keeps its time
timeout 150 $PY -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu-tests.log"
# 2. the gpu suite (its cells, then `batch`: the size `auto` picks on the device against fixed ones, then
#    `precision`: tf32, bf16 and compiled blocks, plain and as CUDA graphs, against exact eager fp32); resumable, so a rerun continues where a timeout stopped it
timeout 330 $PY -m benchmarks.run --suite "${SUITE:-gpu}" --skip memory scaling blocks speed planner partition xet persistence distributed \
  --out "$RESULTS" --work-dir /tmp/alsatian-gpu-work 2>&1 | tee "$OUT/run.log"
tar czf "$OUT/gpu-results.tgz" -C "$RESULTS" .
ls -la "$OUT"
