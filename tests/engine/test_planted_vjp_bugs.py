"""Planted wrong VJPs (a missing factor of 2, a transposed matmul gradient, a broadcast
gradient that is not summed back) are caught by the kit every time: under each of several
hypothesis seeds, and through the same `assert_op_gradients` that checks the built-in ops.

The planted ops are `Op` records applied with `engine.apply`; none enters the registry.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import Phase, seed
from hypothesis import strategies as st
from topograd.engine import OPS, Op, apply

from topograd import engine
from topograd.testing import (
    GradientMismatchError,
    arrays,
    assert_op_gradients,
    broadcastable,
    gradients_hold,
)

SEEDS = range(10)
# detection, not the smallest counterexample, is under test: skip the shrinking
SETTINGS = {"max_examples": 50, "database": None, "phases": (Phase.generate,)}


def _caught_under_seed(n, fn, *strategies, error=GradientMismatchError):
    """Assert that `gradients_hold(fn, *strategies)` fails under hypothesis seed `n`."""
    prop = seed(n)(gradients_hold(fn, *strategies, **SETTINGS))
    with pytest.raises(error):
        prop()


def _first_slice(grad, shape):
    """What a VJP that forgets to sum a broadcast gradient returns: the first slice along each
    broadcast axis (the right shape, the wrong values)."""
    grad = np.asarray(grad)[(0,) * (grad.ndim - len(shape))]
    return grad[tuple(slice(0, 1) if side == 1 else slice(None) for side in shape)]


# --- (a) a missing factor of 2 -----------------------------------------------------------------
def _square_vjp_missing_two(g, out, x):
    return (g * x,)  # d(x^2)/dx = 2x


SQUARE = Op("planted_square", np.square, _square_vjp_missing_two, 1, "x^2", "g * x")


@pytest.mark.parametrize("n", SEEDS)
def test_missing_factor_of_two_is_caught(n):
    _caught_under_seed(n, lambda x: apply(SQUARE, x), arrays())


# --- (b) a transposed matmul gradient ----------------------------------------------------------
def _matmul_vjp_transposed(g, out, a, b):
    return g @ b, a.T @ g  # d(a @ b)/da is g @ b.T


MATMUL = Op(
    "planted_matmul", np.matmul, _matmul_vjp_transposed, 2, "a @ b", "g b, a^T g", kind="matmul"
)


# (n, k, m) of a (n, k) @ b (k, m): all equal, b square under a taller or wider a, any
MATRIX_DIMS = {
    "square": st.integers(1, 4).map(lambda k: (k, k, k)),
    "square_b": st.tuples(st.integers(1, 4), st.integers(1, 4)).map(lambda nk: (*nk, nk[1])),
    "any": st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
}


def _matrix_pair(family):
    """Strategies of a (n, k) and b (k, m), drawn together."""
    dims = st.shared(MATRIX_DIMS[family], key=f"planted matmul dims {family}")
    return arrays(dims.map(lambda d: (d[0], d[1]))), arrays(dims.map(lambda d: (d[1], d[2])))


@pytest.mark.parametrize("family", sorted(MATRIX_DIMS))
@pytest.mark.parametrize("n", SEEDS)
def test_transposed_matmul_gradient_is_caught(n, family):
    # with m != k, g @ b does not even have a's shape and the backward pass raises
    error = AssertionError if family == "any" else GradientMismatchError
    _caught_under_seed(n, lambda a, b: apply(MATMUL, a, b), *_matrix_pair(family), error=error)


# --- (c) a broadcast gradient that is not summed back ------------------------------------------
def _add_vjp_first_slice(g, out, x, y):
    return _first_slice(g, np.shape(x)), _first_slice(g, np.shape(y))


ADD = Op("planted_add", np.add, _add_vjp_first_slice, 2, "x + y", "g[0], g[0]", kind="binary")


def _broadcast_pair():
    shapes = st.shared(broadcastable(2), key="planted broadcast shapes")
    return arrays(shapes.map(lambda pair: pair[0])), arrays(shapes.map(lambda pair: pair[1]))


@pytest.mark.parametrize("n", SEEDS)
def test_binary_op_that_does_not_sum_its_broadcast_gradient_is_caught(n):
    _caught_under_seed(n, lambda x, y: apply(ADD, x, y), *_broadcast_pair())


@pytest.fixture
def unbroadcast_takes_first_slice(monkeypatch):
    """The executor's one place that sums broadcast gradients, broken."""
    monkeypatch.setattr(engine.executor, "unbroadcast", _first_slice)


@pytest.mark.parametrize("name", ["add", "mul"])
@pytest.mark.parametrize("n", SEEDS)
def test_executor_that_does_not_sum_broadcast_gradients_is_caught(
    n, name, unbroadcast_takes_first_slice
):
    op = OPS[name]
    _caught_under_seed(n, lambda x, y: apply(op, x, y), *_broadcast_pair())


# --- through the table's own path --------------------------------------------------------------
@pytest.mark.parametrize("op", [SQUARE, MATMUL, ADD], ids=lambda op: op.name)
def test_planted_op_fails_the_registry_check(op):
    with pytest.raises(AssertionError):
        assert_op_gradients(op, **SETTINGS)


@pytest.mark.parametrize("name", ["add", "mul", "sub", "div"])
def test_broken_executor_fails_the_registry_check(name, unbroadcast_takes_first_slice):
    with pytest.raises(AssertionError):
        assert_op_gradients(OPS[name], **SETTINGS)


# --- the same harness passes the correct gradients (the bugs, not the harness, fail) ---------
@pytest.mark.parametrize(
    ("fn", "strategies"),
    [
        (lambda x: x * x, (arrays(),)),
        (lambda a, b: a @ b, _matrix_pair("square")),
        (lambda a, b: a @ b, _matrix_pair("square_b")),
        (lambda a, b: a @ b, _matrix_pair("any")),
        (lambda x, y: x + y, _broadcast_pair()),
        (lambda x, y: x * y, _broadcast_pair()),
    ],
    ids=["square", "matmul_square", "matmul_square_b", "matmul_any", "add", "mul"],
)
def test_correct_gradients_pass_the_same_properties(fn, strategies):
    for n in SEEDS[:3]:
        seed(n)(gradients_hold(fn, *strategies, **SETTINGS))()
