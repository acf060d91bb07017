"""Modes and the shared generator.

Gradient recording, anomaly detection and the current layer scope are per thread (and per
asyncio task), as PyTorch's grad mode is: a thread evaluating under `no_grad` never stops
another thread's graph from being recorded. They are one immutable snapshot in a context
variable, so the hot path (creating a node) makes one lookup. The random generator that
initializers and dropout share is process-wide, as PyTorch's default generator is.
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np


class Modes:
    """One thread's switches; never changed in place (a mode change sets a new snapshot)."""

    __slots__ = ("anomaly", "grad_enabled", "layer")

    def __init__(self, grad_enabled=True, anomaly=False, layer=None):
        self.grad_enabled = grad_enabled
        self.anomaly = anomaly
        self.layer = layer

    def replaced(self, **changes) -> Modes:
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return Modes(**values)


_MODES = contextvars.ContextVar("topograd_modes", default=Modes())  # noqa: B039 (never changed)
current_modes = _MODES.get
"""The calling thread's `Modes` (a new thread starts with the defaults)."""


def set_layer(layer):
    """Make `layer` the calling thread's current layer tag; returns the token that
    `reset_layer` takes (Module.__call__'s hot path, without a context manager)."""
    modes = _MODES.get()
    return _MODES.set(Modes(modes.grad_enabled, modes.anomaly, layer))


reset_layer = _MODES.reset


class _Shared:
    """Process-wide state: the generator initializers and dropout use when given no rng."""

    __slots__ = ("rng",)

    def __init__(self):
        self.rng = np.random.default_rng()


STATE = _Shared()


class _Setting(contextlib.ContextDecorator):
    """Set one mode of the calling thread inside a block (or decorated function), then
    restore it. Each `with` and each decorated call gets its own token, so one instance may
    be entered from several threads or recursively."""

    attribute = ""
    value = False

    def __init__(self):
        self._tokens = []

    def _recreate_cm(self):
        return type(self)()  # a decorated function's calls do not share tokens

    def __enter__(self):
        self._tokens.append(_MODES.set(_MODES.get().replaced(**{self.attribute: self.value})))
        return self

    def __exit__(self, *exc):
        _MODES.reset(self._tokens.pop())
        return False


class no_grad(_Setting):
    """Within this block (or decorated function) new tensors record no graph, as in PyTorch.
    It applies to the calling thread only."""

    attribute, value = "grad_enabled", False


class enable_grad(_Setting):
    """Turn recording back on inside a `no_grad` block."""

    attribute, value = "grad_enabled", True


def is_grad_enabled() -> bool:
    """Whether new tensors made by the calling thread record the ops that made them."""
    return _MODES.get().grad_enabled


class detect_anomaly(_Setting):
    """Raise `AnomalyError` at the first node (forward or backward) that makes a NaN or Inf.

    Checking every value costs a pass over each array, so it is off unless asked for.
    """

    attribute, value = "anomaly", True


def current_layer():
    """The layer tag of the module call under way in the calling thread (None outside)."""
    return _MODES.get().layer


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
