# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
# Each creates .venv on first use and installs what it needs from pyproject.toml.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The runtime install (numpy, networkx) is enough for the demo.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

# Tests add pytest, hypothesis, pytest-qt, PySide6 and the PyTorch CPU wheel (torch==2.13.0).
$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/topograd demo

test: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n 2

lint: $(VENV)/.test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(VENV)/.test
	$(BIN)/python bench/scalar.py
	$(BIN)/python bench/tensor.py
	$(BIN)/python bench/optim.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/conv.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
