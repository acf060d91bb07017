"""The lecture's weight initializations, in the notes' layout W[fan_in, fan_out].

Each is `name(shape, rng=None)` with fan_in = shape[0]; `rng` is a numpy Generator, an int
seed, or None for the engine's shared generator (see `engine.manual_seed`).
"""

from __future__ import annotations

import numpy as np
from topograd.engine.modes import resolve_rng
from topograd.engine.registry import Registry


def _fan_in(shape) -> int:
    shape = tuple(shape)
    if not shape or shape[0] <= 0:
        raise ValueError(
            f"initializers need a shape whose first axis (fan_in) is positive, got {shape}"
        )
    return shape[0]


def small_random(shape, rng=None, scale=0.01):
    """`0.01 * randn`: fine for tiny nets, but activations collapse toward 0 in deep ones."""
    return scale * resolve_rng(rng).standard_normal(tuple(shape))


def xavier(shape, rng=None):
    """`randn / sqrt(fan_in)` (Glorot and Bengio): keeps the variance of tanh nets."""
    return resolve_rng(rng).standard_normal(tuple(shape)) / np.sqrt(_fan_in(shape))


def he(shape, rng=None):
    """`randn / sqrt(fan_in / 2)` (He et al. 2015): makes up for ReLU halving the variance."""
    return resolve_rng(rng).standard_normal(tuple(shape)) / np.sqrt(_fan_in(shape) / 2.0)


def uniform(shape, rng=None, low=-1.0, high=1.0):
    """U(low, high) whatever the fan-in: micrograd's Neuron init, kept for comparison."""
    return resolve_rng(rng).uniform(low, high, size=tuple(shape))


def zeros(shape, rng=None):
    return np.zeros(tuple(shape))


def ones(shape, rng=None):
    return np.ones(tuple(shape))


INITIALIZERS = Registry("initializer")
for _name, _function in (
    ("small_random", small_random),
    ("xavier", xavier),
    ("he", he),
    ("uniform", uniform),
    ("zeros", zeros),
    ("ones", ones),
):
    INITIALIZERS.register(_name)(_function)


def get(init):
    """Resolve an initializer given by name or as a callable `(shape, rng) -> ndarray`."""
    if callable(init):
        return init
    if init not in INITIALIZERS:
        known = ", ".join(INITIALIZERS.names())
        raise ValueError(f"unknown initializer {init!r}; known: {known}")
    return INITIALIZERS.get(init)


__all__ = ["INITIALIZERS", "get", "he", "ones", "small_random", "uniform", "xavier", "zeros"]
