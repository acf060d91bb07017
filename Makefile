# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
# Each creates .venv on first use and installs what it needs from pyproject.toml.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The runtime install (numpy, networkx, tqdm, lark, matplotlib) is enough for the main job.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

# Tests add pytest, hypothesis, pytest-qt, PySide6 and the PyTorch CPU wheel (torch==2.13.0).
$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@ $(VENV)/.runtime

# Debian packages: graphviz (`topograd graph` lays graphs out with `dot`). Installed once when
# missing; without it the SVG/PNG tests are skipped and `topograd graph` says how to install it.
$(VENV)/.system: | $(BIN)/python
	@command -v dot >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq graphviz >/dev/null; } || \
		echo "warning: could not install graphviz (apt-get); graph drawing tests will be skipped"
	touch $@

# The main job: train the digits network of samples/digits.tg (batch norm, dropout, Adam).
demo: $(VENV)/.runtime
	$(BIN)/topograd run samples/digits.tg

test: $(VENV)/.test $(VENV)/.system
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --hypothesis-seed=0

lint: $(VENV)/.test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(VENV)/.test
	$(BIN)/python bench/scalar.py
	$(BIN)/python bench/tensor.py
	$(BIN)/python bench/optim.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/conv.py
	$(BIN)/python bench/dsl.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
