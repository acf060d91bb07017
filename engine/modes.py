"""Process-wide switches: gradient recording, anomaly detection, the current layer scope.

They live in one small mutable object so that the hot path (creating a node) reads three
attributes and nothing else.
"""

from __future__ import annotations

import contextlib

import numpy as np


class _State:
    __slots__ = ("anomaly", "grad_enabled", "layer", "rng")

    def __init__(self):
        self.grad_enabled = True
        self.anomaly = False
        self.layer = None
        self.rng = np.random.default_rng()


STATE = _State()


class no_grad(contextlib.ContextDecorator):
    """Within this block (or decorated function) new tensors record no graph, as in PyTorch."""

    def __enter__(self):
        self._previous = STATE.grad_enabled
        STATE.grad_enabled = False
        return self

    def __exit__(self, *exc):
        STATE.grad_enabled = self._previous
        return False


class enable_grad(contextlib.ContextDecorator):
    """Turn recording back on inside a `no_grad` block."""

    def __enter__(self):
        self._previous = STATE.grad_enabled
        STATE.grad_enabled = True
        return self

    def __exit__(self, *exc):
        STATE.grad_enabled = self._previous
        return False


def is_grad_enabled() -> bool:
    """Whether new tensors record the ops that made them."""
    return STATE.grad_enabled


class detect_anomaly(contextlib.ContextDecorator):
    """Raise `AnomalyError` at the first node (forward or backward) that makes a NaN or Inf.

    Checking every value costs a pass over each array, so it is off unless asked for.
    """

    def __enter__(self):
        self._previous = STATE.anomaly
        STATE.anomaly = True
        return self

    def __exit__(self, *exc):
        STATE.anomaly = self._previous
        return False


class AnomalyError(FloatingPointError):
    """A node produced a NaN or an Inf; `node` is the culprit, `phase` forward or backward."""

    def __init__(self, message, node=None, phase="forward"):
        super().__init__(message)
        self.node = node
        self.phase = phase


@contextlib.contextmanager
def layer_scope(tag):
    """Tag every node created inside with `tag` (the module that made it)."""
    previous = STATE.layer
    STATE.layer = tag
    try:
        yield tag
    finally:
        STATE.layer = previous


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the generator that initializers and dropout use when given no `rng`."""
    STATE.rng = np.random.default_rng(seed)
    return STATE.rng


def default_rng() -> np.random.Generator:
    """The engine's shared generator (see `manual_seed`)."""
    return STATE.rng


def resolve_rng(rng) -> np.random.Generator:
    """Accept None (the shared generator), an int seed, or a Generator."""
    if rng is None:
        return STATE.rng
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy Generator, got {type(rng).__name__}")
