"""The PyTorch backend: a model file's engine objects translated into PyTorch ones.

The engine objects that `dsl.build.build` makes stay the source of truth (the same seed gives
the same starting weights); this package builds a torch module, optimizer and lr scheduler
from them, trains with the same batches, and copies the weights back, so that metrics, plots
and checkpoints are the engine's own. PyTorch is optional (`pip install 'topograd[torch]'`);
nothing here is imported unless a command asks for the torch backend.
"""

from __future__ import annotations

import importlib

INSTALL_HINT = "pip install 'topograd[torch]' (or: pip install torch==2.13.0)"


class TorchMissingError(RuntimeError):
    """PyTorch is not installed; the message says how to install it."""


class UnsupportedError(ValueError):
    """A construct of the model file that has no PyTorch counterpart; the message names it."""

    def __init__(self, what: str, hint: str | None = None):
        message = f"the torch backend has no counterpart for {what}"
        super().__init__(f"{message} ({hint})" if hint else message)


def require_torch():
    """The torch module, or TorchMissingError with the install command."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        raise TorchMissingError(f"PyTorch is not installed: {INSTALL_HINT}") from None
