"""The primitives min, where and stack, and power/pow at a zero base, against PyTorch (float64)
and against central differences with the gradient-testing kit.

At a zero base the gradients follow torch.pow's backward exactly: 0 where the exponent is 0
(x^0 is constant), 0 for the exponent where x == 0 and y >= 0, and torch's infinities where
the derivative is infinite; no NaN and no numpy warning.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import topograd.engine.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from topograd.engine import Tensor, apply
from topograd.engine.ops import OPS

from topograd.testing import (
    arrays,
    assert_gradients,
    broadcastable,
    distinct_arrays,
    gradients_hold,
    shapes,
)

torch = pytest.importorskip("torch")

RTOL = 1e-12


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture(autouse=True)
def warnings_are_errors():
    """No numpy RuntimeWarning (divide by zero, invalid value) may escape an op."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _pair(array):
    """The same float64 values as an engine leaf and a torch leaf, both requiring grad."""
    return Tensor(array, requires_grad=True), torch.tensor(array, requires_grad=True)


def _backward_both(ours, theirs, rng):
    """Backpropagate one random upstream gradient through both outputs."""
    upstream = rng.standard_normal(tuple(theirs.shape))
    ours.backward(upstream)
    theirs.backward(torch.from_numpy(upstream))


def _assert_close(actual, expected, what):
    actual = np.asarray(actual)
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=1e-14, err_msg=what)


# --- min -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("axis", "keepdims", "torch_dim"),
    [
        (None, False, None),
        ((0,), False, 0),
        ((2,), True, -1),
        ((0, 2), False, (0, 2)),
        ((1,), True, 1),
    ],
)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_min_matches_torch_amin(rng, axis, keepdims, torch_dim, ties):
    values = rng.integers(0, 3, (3, 4, 2)) if ties else rng.standard_normal((3, 4, 2))
    ours, theirs = _pair(values.astype(np.float64))
    out = apply(OPS["min"], ours, axis=axis, keepdims=keepdims)
    expected = torch.amin(theirs) if torch_dim is None else torch.amin(theirs, torch_dim, keepdims)
    _assert_close(out.data, expected, "forward")
    _backward_both(out, expected, rng)
    _assert_close(ours.grad, theirs.grad, "gradient")


def test_min_ties_share_the_gradient_evenly():
    x = Tensor(np.array([[2.0, 1.0, 1.0], [0.0, 5.0, 0.0]]), requires_grad=True)
    apply(OPS["min"], x, axis=(1,), keepdims=False).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])


# --- where -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("condition_shape", "x_shape", "y_shape"),
    [
        ((3, 4), (3, 4), (3, 4)),
        ((3, 1), (4,), (3, 4)),
        ((4,), (3, 1), ()),
        ((2, 3, 1), (1, 4), (3, 1)),
    ],
)
def test_where_matches_torch(rng, condition_shape, x_shape, y_shape):
    condition = rng.random(condition_shape) < 0.5
    (x, tx), (y, ty) = _pair(rng.standard_normal(x_shape)), _pair(rng.standard_normal(y_shape))
    out = F.where(condition, x, y)
    expected = torch.where(torch.from_numpy(condition), tx, ty)
    _assert_close(out.data, expected, "forward")
    _backward_both(out, expected, rng)
    _assert_close(x.grad, tx.grad, "gradient of x")
    _assert_close(y.grad, ty.grad, "gradient of y")


def test_where_gives_the_condition_no_gradient():
    condition = Tensor(np.array([True, False, True]))
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    out = apply(OPS["where"], condition, x, Tensor(np.zeros(3), requires_grad=True))
    assert OPS["where"].vjp(np.ones(3), out.data, condition.data, x.data, np.zeros(3))[0] is None
    out.sum().backward()
    assert condition.grad is None
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_where_keeps_the_float_dtype_and_lifts_numbers(dtype):
    x = Tensor(np.array([1.0, -2.0, 3.0], dtype=dtype), requires_grad=True)
    out = F.where(np.array([True, False, False]), 0.5, x)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out.data, np.array([0.5, -2.0, 3.0], dtype=dtype))
    out.backward(np.ones(3, dtype=dtype))
    assert x.grad.dtype == dtype
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 1.0])


def test_where_reads_a_float_condition_as_numpy_does():
    x, y = Tensor(np.ones(3), requires_grad=True), Tensor(np.zeros(3), requires_grad=True)
    out = F.where(Tensor(np.array([0.0, 0.5, -2.0])), x, y)
    np.testing.assert_array_equal(out.data, [0.0, 1.0, 1.0])
    out.sum().backward()
    np.testing.assert_array_equal(y.grad, [1.0, 0.0, 0.0])


# --- stack -----------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, -1, 2, -3])
def test_stack_matches_torch(rng, axis):
    pairs = [_pair(rng.standard_normal((3, 2))) for _ in range(3)]
    out = F.stack([ours for ours, _ in pairs], axis=axis)
    expected = torch.stack([theirs for _, theirs in pairs], dim=axis)
    _assert_close(out.data, expected, "forward")
    _backward_both(out, expected, rng)
    for index, (ours, theirs) in enumerate(pairs):
        _assert_close(ours.grad, theirs.grad, f"gradient of input {index}")


def test_stack_of_scalars_and_errors():
    a, b = Tensor(1.0, requires_grad=True), Tensor(2.0, requires_grad=True)
    out = F.stack([a, b, a])
    np.testing.assert_array_equal(out.data, [1.0, 2.0, 1.0])
    (out * Tensor(np.array([1.0, 10.0, 100.0]))).sum().backward()
    assert float(a.grad) == 101.0 and float(b.grad) == 10.0
    with pytest.raises(ValueError, match="at least one tensor"):
        F.stack([])
    with pytest.raises(ValueError, match="stack"):
        F.stack([Tensor(np.ones(2)), Tensor(np.ones(3))])


def test_stack_is_a_graph_function():
    out = F.FUNCTIONS.get("stack")(Tensor(np.ones(2)), Tensor(np.zeros(2)), axis=1)
    np.testing.assert_array_equal(out.data, [[1.0, 0.0], [1.0, 0.0]])


def test_minimum_matches_torch_with_ties(rng):
    (x, tx), (y, ty) = _pair(np.array([[1.0, 2.0, 3.0]])), _pair(np.array([[2.0], [1.0]]))
    out, expected = F.minimum(x, y), torch.minimum(tx, ty)
    _assert_close(out.data, expected, "forward")
    _backward_both(out, expected, rng)
    _assert_close(x.grad, tx.grad, "gradient of x")
    _assert_close(y.grad, ty.grad, "gradient of y")


# --- power and pow at a zero base ----------------------------------------------------------------
EXPONENTS = [0.0, 0.5, 1.0, 2.0, 3.0, 1.5]


def _assert_same(actual, expected, what):
    """Equal to torch's gradient, exactly at the special points (infinities included)."""
    actual, expected = np.asarray(actual), expected.detach().numpy()
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0.0, err_msg=what)


@pytest.mark.parametrize("c", EXPONENTS)
@pytest.mark.parametrize("shape", [(), (4,)], ids=["scalar", "array"])
def test_power_at_zero_matches_torch(c, shape):
    base = np.zeros(shape) if shape == () else np.array([0.0, 0.0, 2.0, 0.5])
    ours, theirs = _pair(base)
    out, expected = ours**c, theirs**c
    _assert_close(out.data, expected, "forward")
    out.backward(np.full(shape, 1.5))
    expected.backward(torch.full(shape, 1.5, dtype=torch.float64))
    _assert_same(ours.grad, theirs.grad, f"d/dx x**{c}")
    assert not np.isnan(ours.grad).any()


def test_power_zero_exponent_gives_zero_even_at_zero():
    x = Tensor(np.array([0.0, 3.0]), requires_grad=True)
    (x**0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])


@pytest.mark.parametrize("y_value", EXPONENTS)
@pytest.mark.parametrize("shape", [(), (3,)], ids=["scalar", "array"])
def test_pow_at_zero_matches_torch(y_value, shape):
    x_values = np.zeros(shape) if shape == () else np.array([0.0, 2.0, 0.5])
    (x, tx), (y, ty) = _pair(x_values), _pair(np.full(shape, y_value))
    out, expected = x**y, tx**ty
    _assert_close(out.data, expected, "forward")
    out.backward(np.full(shape, 1.5))
    expected.backward(torch.full(shape, 1.5, dtype=torch.float64))
    _assert_same(x.grad, tx.grad, f"d/dx x**y at y={y_value}")
    _assert_same(y.grad, ty.grad, f"d/dy x**y at y={y_value}")
    assert not np.isnan(x.grad).any() and not np.isnan(y.grad).any()


def test_negative_exponent_at_zero_warns_once_and_matches_torch():
    """0 ** -1 = inf warns in the forward pass, as 1/0 does; backward adds no warning."""
    (x, tx), (y, ty) = _pair(np.array([0.0, 2.0])), _pair(np.array([-1.0, -1.0]))
    with pytest.warns(RuntimeWarning, match="divide by zero"):
        out, powered = x**y, x**-1.0
    (out + powered).sum().backward()
    (tx**ty + tx**-1.0).sum().backward()
    _assert_same(x.grad, tx.grad, "d/dx")
    _assert_same(y.grad, ty.grad, "d/dy")


def test_pow_broadcast_exponent_at_zero_matches_torch():
    (x, tx), (y, ty) = _pair(np.array([[0.0], [1.5]])), _pair(np.array([0.0, 0.5, 1.0, 2.0]))
    out, expected = x**y, tx**ty
    out.sum().backward()
    expected.sum().backward()
    _assert_same(x.grad, tx.grad, "d/dx")
    _assert_same(y.grad, ty.grad, "d/dy")


def test_zero_base_nan_no_longer_spreads_upstream():
    """A zero reached through other ops: the gradient of the leaf stays finite."""
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    base = w - Tensor(np.array([1.0, 2.0]))  # exactly zero
    (base**0 + base**2 + base ** Tensor(np.array([1.0, 3.0]))).sum().backward()
    assert np.isfinite(w.grad).all()
    np.testing.assert_array_equal(w.grad, [1.0, 0.0])


# --- properties: central differences with the kit ------------------------------------------------
SETTINGS = {"max_examples": 50, "database": None}


@settings(deadline=None, **SETTINGS)
@given(data=st.data())
def test_min_gradients_hold(data):
    shape = data.draw(shapes(min_dims=1))
    axis = data.draw(st.sampled_from([None, *range(len(shape))]))
    x = data.draw(arrays(shape, distinct=True, margin=0.01))
    assert_gradients(
        lambda t: apply(OPS["min"], t, axis=None if axis is None else (axis,), keepdims=False), x
    )


@settings(deadline=None, **SETTINGS)
@given(shapes_=broadcastable(3), data=st.data())
def test_where_gradients_hold(shapes_, data):
    condition_shape, x_shape, y_shape = shapes_
    condition = data.draw(hnp.arrays(np.bool_, condition_shape))
    x, y = data.draw(arrays(x_shape)), data.draw(arrays(y_shape))
    assert_gradients(lambda a, b: F.where(condition, a, b), x, y)


@settings(deadline=None, **SETTINGS)
@given(shape=shapes(), count=st.integers(1, 4), data=st.data())
def test_stack_gradients_hold(shape, count, data):
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    inputs = [data.draw(arrays(shape)) for _ in range(count)]
    assert_gradients(lambda *ts: F.stack(ts, axis=axis), *inputs)


@settings(deadline=None, **SETTINGS)
@given(pair=broadcastable(2).flatmap(lambda pair: distinct_arrays(*pair, margin=0.01)))
def test_minimum_gradients_hold(pair):
    assert_gradients(F.minimum, *pair)


test_pow_gradients_hold_near_zero_exponents = gradients_hold(
    lambda x, y: x**y,
    arrays((3,), 0.1, 3.0, avoid=(1.0,), margin=0.1),
    arrays((3,), -0.5, 0.5),
    **SETTINGS,
)
