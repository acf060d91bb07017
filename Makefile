# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
# Each creates .venv on first use and installs what it needs from pyproject.toml.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench clean notebook

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The runtime install (numpy, networkx, tqdm, lark, matplotlib, hypothesis) is enough for the main job.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

# Tests add pytest, pytest-qt, PySide6 and the PyTorch CPU wheel (torch==2.13.0).
$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@ $(VENV)/.runtime

# Debian packages: graphviz (`dot` lays graphs out for `topograd graph` and the window), xvfb
# (a virtual X screen: a test opens the window as a desktop would), the X libraries Qt's
# xcb platform loads, and chromium (a test runs the notebook widget's front end in a headless
# browser). Installed once when missing; without them the tests that need them are skipped,
# `topograd graph` says how to install graphviz and the window uses its own layout.
SYSTEM_PACKAGES := graphviz xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 \
	libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 \
	libxcb-xkb1 libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1 libdbus-1-3 chromium
$(VENV)/.system: | $(BIN)/python
	@{ command -v dot && command -v Xvfb && command -v chromium && dpkg -s libxcb-cursor0 libxcb-icccm4; } >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		$(SUDO) apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; } || \
		echo "warning: could not install $(SYSTEM_PACKAGES) (apt-get); tests that need them will be skipped"
	touch $@

# The main job: train the digits network of samples/digits.tg (batch norm, dropout, Adam).
demo: $(VENV)/.runtime
	$(BIN)/topograd run samples/digits.tg

# The tutorial in JupyterLab: the notebook extra (IPython kernel, the stepper widget) and JupyterLab.
$(VENV)/.notebook: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[notebook]' jupyterlab
	touch $@ $(VENV)/.runtime

notebook: $(VENV)/.notebook
	$(BIN)/jupyter lab samples/tutorial.ipynb

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
	$(BIN)/python bench/gui.py
	$(BIN)/python bench/backends.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
