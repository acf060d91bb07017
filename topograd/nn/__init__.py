"""Layers with PyTorch's names (`tg.nn.Linear`, `tg.nn.Module`), from topograd.engine.nn;
`tg.nn.functional` and `tg.nn.init` where PyTorch users look for them."""

from topograd.engine.nn import *  # noqa: F403
from topograd.engine.nn import __all__ as _layers
from topograd.nn import functional, init

__all__ = [*_layers, "functional", "init"]
