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


class _Setting(contextlib.ContextDecorator):
    """Set one attribute of STATE inside a block (or decorated function), then restore it."""

    attribute = ""
    value = False

    def __init__(self):
        self._previous = []

    def __enter__(self):
        self._previous.append(getattr(STATE, self.attribute))
        setattr(STATE, self.attribute, self.value)
        return self

    def __exit__(self, *exc):
        setattr(STATE, self.attribute, self._previous.pop())
        return False


class no_grad(_Setting):
    """Within this block (or decorated function) new tensors record no graph, as in PyTorch."""

    attribute, value = "grad_enabled", False


class enable_grad(_Setting):
    """Turn recording back on inside a `no_grad` block."""

    attribute, value = "grad_enabled", True


def is_grad_enabled() -> bool:
    """Whether new tensors record the ops that made them."""
    return STATE.grad_enabled


class detect_anomaly(_Setting):
    """Raise `AnomalyError` at the first node (forward or backward) that makes a NaN or Inf.

    Checking every value costs a pass over each array, so it is off unless asked for.
    """

    attribute, value = "anomaly", True


class AnomalyError(FloatingPointError):
    """A node produced a NaN or an Inf; `node` is the culprit, `phase` forward or backward."""

    def __init__(self, message, node=None, phase="forward"):
        super().__init__(message)
        self.node = node
        self.phase = phase


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the generator that initializers and dropout use when given no `rng`."""
    STATE.rng = np.random.default_rng(seed)
    return STATE.rng


@contextlib.contextmanager
def use_rng(generator: np.random.Generator):
    """Make `generator` the shared one (dropout's and initializers' default) inside a block."""
    previous = STATE.rng
    STATE.rng = generator
    try:
        yield generator
    finally:
        STATE.rng = previous


@contextlib.contextmanager
def same_randomness(seed: int, generators=()):
    """Run a block from the same random state every time: `generators` (those that layers
    hold themselves) are rewound afterwards to where they stood, and the shared one is a
    fresh one from `seed`. Repeated calls then draw the same dropout masks, which is what a
    gradient check needs: central differences of one and the same function."""
    states = [g.bit_generator.state for g in generators]
    with use_rng(np.random.default_rng(seed)):
        try:
            yield
        finally:
            for generator, state in zip(generators, states, strict=True):
                generator.bit_generator.state = state


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
