"""The public gradient-testing kit `engine.testing`: its strategies draw what they promise,
`assert_gradients` passes correct gradients and names the worst component of a wrong one,
and `gradients_hold` turns both into a property whose failures hypothesis shrinks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import topograd.engine.functional as F
from hypothesis import find, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample
from topograd.engine import Op, Tensor, apply, nn

from topograd.testing import (
    GradientMismatchError,
    arrays,
    assert_gradients,
    broadcastable,
    distinct_arrays,
    floats,
    gradients_hold,
    shapes,
    tensors,
)

SEARCH = settings(max_examples=300, database=None)
# kink + margin is rounded once: a pushed value may sit an ulp or so closer than `margin`
ROUNDING = 1e-12  # grid values (k * margin) differ from the margin by a few ulps


def _square(x):
    return x * x


def _square_vjp_missing_two(g, out, x):
    return (g * x,)  # wrong on purpose: d(x^2)/dx = 2x


SQUARE_MISSING_TWO = Op("square_missing_two", _square, _square_vjp_missing_two, 1, "x^2", "g x")


def _square_sum_missing_two(x):
    return apply(SQUARE_MISSING_TWO, x).sum()


# --- strategies ------------------------------------------------------------------------------
@settings(database=None)
@given(st.data())
def test_shapes_respect_their_bounds(data):
    min_dims, min_side = data.draw(st.integers(0, 2)), data.draw(st.integers(1, 3))
    max_dims, max_side = min_dims + data.draw(st.integers(0, 2)), min_side + 2
    shape = data.draw(shapes(min_dims, max_dims, min_side, max_side))
    assert min_dims <= len(shape) <= max_dims
    assert all(min_side <= side <= max_side for side in shape)


@settings(database=None)
@given(st.integers(1, 4).flatmap(lambda count: st.tuples(st.just(count), broadcastable(count))))
def test_broadcastable_shapes_broadcast_with_numpy(case):
    count, drawn = case
    assert len(drawn) == count
    np.broadcast_shapes(*drawn)  # raises ValueError for shapes that do not broadcast


def test_broadcastable_shapes_really_broadcast():
    """Not only equal shapes: numpy must stretch an axis of length 1 for some pairs."""

    def stretched(pair):
        out = np.broadcast_shapes(*pair)
        return any(math.prod(shape) < math.prod(out) for shape in pair)

    pair = find(broadcastable(2), stretched, settings=SEARCH)
    assert pair[0] != pair[1]


@st.composite
def _interval_with_kinks(draw):
    """(low, high, kinks, margin) with room left: kinks at least 3 margins apart."""
    low = draw(st.floats(-5.0, 5.0))
    high = low + draw(st.floats(0.5, 6.0))
    margin = draw(st.floats(1e-4, 0.05))
    starts = draw(st.lists(st.floats(low - 1.0, high + 1.0), max_size=3))
    kinks = [start + 3 * margin * position for position, start in enumerate(sorted(starts))]
    return low, high, tuple(kinks), margin


def _distance_to(values, kinks):
    values = np.ravel(np.asarray(values, dtype=np.float64))
    if not kinks or not values.size:
        return np.inf
    return float(np.min(np.abs(values[:, None] - np.asarray(kinks)[None, :])))


@settings(database=None)
@given(_interval_with_kinks(), st.data())
def test_floats_stay_in_range_and_away_from_kinks(case, data):
    low, high, kinks, margin = case
    for value in data.draw(st.lists(floats(low, high, avoid=kinks, margin=margin), max_size=20)):
        assert low <= value <= high
        assert _distance_to(value, kinks) >= margin - ROUNDING


@settings(database=None)
@given(_interval_with_kinks(), shapes(), st.data())
def test_arrays_stay_in_range_and_away_from_kinks(case, shape, data):
    low, high, kinks, margin = case
    array = data.draw(arrays(shape, low, high, avoid=kinks, margin=margin))
    assert array.shape == shape and array.dtype == np.float64
    assert np.all((low <= array) & (array <= high))
    assert _distance_to(array, kinks) >= margin - ROUNDING


@pytest.mark.parametrize("kinks", [(0.0,), (-1.0, 0.0, 0.5), (-1.0005,), (0.9995,)])
def test_floats_near_a_kink_cannot_be_found(kinks):
    """An active search for a value within the margin of a kink (those at the ends of the
    range too) finds none."""
    margin = 1e-3
    with pytest.raises(NoSuchExample):
        find(
            floats(-1.0, 1.0, avoid=kinks, margin=margin),
            lambda value: _distance_to(value, kinks) < margin - ROUNDING,
            settings=SEARCH,
        )


def test_floats_between_overlapping_kinks_cannot_be_found():
    kinks, margin = (0.0, 0.15), 0.1
    with pytest.raises(NoSuchExample):
        find(
            floats(-1.0, 1.0, avoid=kinks, margin=margin),
            lambda value: _distance_to(value, kinks) < margin - ROUNDING,
            settings=SEARCH,
        )


def test_floats_without_room_raise_even_with_a_kink_beyond_the_range():
    with pytest.raises(ValueError, match="no value"):
        floats(0.0, 1.0, avoid=(0.5, 5.0), margin=0.6)


@pytest.mark.parametrize(
    ("low", "high", "avoid", "margin"),
    [(1.0, 1.0, (), 1e-3), (2.0, 1.0, (), 1e-3), (-0.1, 0.1, (0.0,), 0.2), (0.0, 1.0, (0.5,), 0.6)],
)
def test_floats_without_room_raise(low, high, avoid, margin):
    with pytest.raises(ValueError, match=r"low < high|no value"):
        floats(low, high, avoid=avoid, margin=margin)


@settings(database=None)
@given(st.lists(shapes(max_dims=2, max_side=3), min_size=1, max_size=3), st.data())
def test_distinct_arrays_are_apart_across_arrays(drawn_shapes, data):
    margin = data.draw(st.sampled_from((1e-3, 0.01, 0.1)))
    drawn = data.draw(distinct_arrays(*drawn_shapes, margin=margin, avoid=(0.0,)))
    assert [a.shape for a in drawn] == drawn_shapes
    values = np.sort(np.concatenate([a.ravel() for a in drawn]))
    assert np.all(np.diff(values) >= margin - ROUNDING)
    assert np.all(np.abs(values) <= 3.0)
    assert _distance_to(values, (0.0,)) >= margin - ROUNDING


@settings(database=None)
@given(arrays((4, 3), distinct=True, margin=0.01))
def test_distinct_array_has_no_ties(array):
    assert array.shape == (4, 3)
    assert np.all(np.diff(np.sort(array.ravel())) >= 0.01 - ROUNDING)


def test_distinct_arrays_without_room_raise():
    with pytest.raises(ValueError, match="fewer than 10 values"):
        distinct_arrays((10,), low=0.0, high=0.05, margin=0.01)


@settings(database=None, max_examples=20)
@given(tensors(), tensors(requires_grad=False), tensors((2, 3), dtype=np.float32))
def test_tensors_require_grad_by_default_and_honour_dtype(default, constant, single):
    assert isinstance(default, Tensor) and default.requires_grad and default.dtype == np.float64
    assert not constant.requires_grad
    assert single.shape == (2, 3) and single.dtype == np.float32 and single.requires_grad


@settings(database=None, max_examples=20)
@given(arrays(dtype=np.float32), distinct_arrays((3,), (2, 2), dtype=np.float32))
def test_arrays_honour_dtype(array, pair):
    assert array.dtype == np.float32
    assert [a.dtype for a in pair] == [np.float32, np.float32]


# --- assert_gradients: correct gradients pass ------------------------------------------------
def test_scalar_graph_matches_its_closed_form():
    x, y = 0.7, -1.3
    checks = assert_gradients(lambda x, y: x * y + x.tanh(), x, y)
    assert [c.label for c in checks] == ["input 0", "input 1"]
    expected = {"input 0": y + 1.0 - np.tanh(x) ** 2, "input 1": x}
    for check in checks:
        assert check.shape == () and check.complete and check.error < 1e-6
        np.testing.assert_allclose(check.analytic, [expected[check.label]], rtol=1e-12)
        np.testing.assert_allclose(check.numeric, [expected[check.label]], rtol=1e-8)


def test_broadcast_tensor_graph_matches_its_closed_form():
    """(a * b).sum() with a (3, 1) and b (4,): da sums b over the broadcast axis, db sums a."""
    a = np.array([[1.0], [-2.0], [0.5]])
    b = np.array([0.3, -1.1, 2.0, 0.7])
    checks = assert_gradients(lambda a, b: (a * b).sum(), a, b)
    da, db = (c.analytic.reshape(c.shape) for c in checks)
    np.testing.assert_allclose(da, np.full((3, 1), b.sum()), rtol=1e-12)
    np.testing.assert_allclose(db, np.full(4, a.sum()), rtol=1e-12)
    assert all(c.error < 1e-6 and c.complete for c in checks)


def test_tensor_output_graph_with_broadcasting_passes():
    """A non-scalar output: every component takes part (through fixed random weights)."""
    a = Tensor(np.linspace(-1.0, 1.0, 6).reshape(2, 3), requires_grad=True, name="a")
    b = Tensor(np.array([[0.5], [-1.5]]), requires_grad=True, name="b")
    checks = assert_gradients(lambda a, b: (a * b + b.exp()).tanh(), a, b)
    assert [c.label for c in checks] == ["input 0 'a'", "input 1 'b'"]
    assert [c.shape for c in checks] == [(2, 3), (2, 1)]
    assert all(c.error < 1e-6 and np.all(c.numeric != 0.0) for c in checks)


def test_only_tensors_that_require_grad_are_checked():
    constant = Tensor(np.array([2.0, 3.0]))
    checks = assert_gradients(lambda x, c: (x * c).sum(), np.array([1.0, -1.0]), constant)
    assert [c.label for c in checks] == ["input 0"]
    np.testing.assert_allclose(checks[0].analytic, [2.0, 3.0], rtol=1e-12)


def _model():
    return nn.Sequential(
        nn.Linear(3, 4, rng=np.random.default_rng(0)),
        nn.BatchNorm1d(4),
        nn.Dropout(0.5, rng=np.random.default_rng(1)),  # a generator of its own
        nn.Linear(4, 2, rng=np.random.default_rng(2)),
        nn.Dropout(0.3),  # the engine's shared generator
    )


def test_module_checks_every_parameter_and_leaves_its_state_alone():
    model = _model()
    before = {name: np.array(value, copy=True) for name, value in model.state_dict().items()}
    own_generator = model[2].rng.bit_generator.state
    x = np.random.default_rng(3).standard_normal((6, 3))

    checks = assert_gradients(model, x)

    parameters = [f"parameter {name!r}" for name, _ in model.named_parameters()]
    assert [c.label for c in checks] == ["input 0", *parameters]
    assert all(c.complete and c.error < 1e-6 for c in checks)
    assert model.training
    after = model.state_dict()
    for name, value in before.items():  # running statistics included
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    assert model[2].rng.bit_generator.state == own_generator


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.relu().sum(),
        lambda x: F.softmax(x, axis=-1).sum(),
        lambda x: 1e3 * F.softmax(x * 30.0, axis=-1).sum(),
        lambda x: (x - x).exp(),
    ],
    ids=["relu_below_zero", "softmax_sum", "large_softmax_sum", "exp_of_zero"],
)
def test_gradients_that_are_zero_do_not_false_alarm(fn):
    """Zero gradients beside differences of rounding size (the noise floor)."""
    x = np.array([[-1.0, -0.5, -2.0], [-3.0, -0.1, -1.5]])
    (check,) = assert_gradients(fn, x)
    np.testing.assert_allclose(check.analytic, 0.0, atol=1e-12)
    assert check.error < 1e-6


@pytest.mark.parametrize(
    ("fn", "inputs"),
    [
        (_model(), (np.zeros((4, 3)),)),
        (lambda x, b: (x + b) - (x + b).mean(), (np.ones(5), 0.0)),
    ],
    ids=["constant_batch_through_batchnorm", "centered_constant"],
)
def test_zero_gradient_beside_cancelling_intermediates_does_not_false_alarm(fn, inputs):
    checks = assert_gradients(fn, *inputs)
    assert all(c.error < 1e-6 for c in checks)


@pytest.mark.parametrize(
    ("fn", "x"),
    [(lambda x: x**3, 0.0), (lambda x: x.tanh() ** 3, 0.0), (lambda x: x * x, 1e-44)],
    ids=["cube_at_zero", "tanh_cubed_at_zero", "square_of_a_tiny_value"],
)
def test_gradient_at_a_flat_point_does_not_false_alarm(fn, x):
    (check,) = assert_gradients(fn, np.full(3, x))
    assert check.error < 1e-6


def test_noise_floor_does_not_hide_small_gradients():
    """The floor scales with the output: a wrong VJP at a small scale is still caught."""
    with pytest.raises(GradientMismatchError):
        assert_gradients(_square_sum_missing_two, np.array([1e-3, 3e-3]))


# --- assert_gradients: wrong gradients are reported ------------------------------------------
def test_wrong_vjp_names_the_worst_component_with_both_values():
    with pytest.raises(GradientMismatchError) as caught:
        assert_gradients(_square_sum_missing_two, np.array([1.0, 3.0]))
    error = caught.value
    check = error.check
    # engine g*x = [1, 3], central differences 2x = [2, 6]: the worst component is [1]
    assert check.label == "input 0" and check.worst_index == (1,)
    assert check.analytic[check.worst] == 3.0
    assert check.numeric[check.worst] == pytest.approx(6.0, rel=1e-8)
    assert check.error == pytest.approx(np.sqrt(10) / (np.sqrt(10) + np.sqrt(40)), rel=1e-8)
    message = str(error)
    assert "input 0[1]: engine 3, central differences 6.0" in message
    assert "relative error 0.333 >= tol 1e-06" in message
    assert error.input_size == 2
    np.testing.assert_array_equal(error.inputs[0], [1.0, 3.0])


def test_wrong_vjp_message_names_a_named_input_and_a_matrix_index():
    x = Tensor(np.array([[1.0, -4.0], [2.0, 0.5]]), requires_grad=True, name="w")
    with pytest.raises(GradientMismatchError, match=r"input 0 'w'\[0, 1\]: engine -4, "):
        assert_gradients(_square_sum_missing_two, x)


def _transposed_identity_vjp(g, out, x):
    return (g.T,)  # wrong on purpose: the gradient of x -> x has x's shape


TRANSPOSED = Op("identity_transposed_grad", np.copy, _transposed_identity_vjp, 1, "x", "g.T")


def test_wrong_gradient_shape_is_reported():
    with pytest.raises(GradientMismatchError) as caught:
        assert_gradients(lambda x: apply(TRANSPOSED, x).sum(), np.ones((2, 3)))
    assert caught.value.check.engine_shape == (3, 2)
    assert caught.value.check.error == np.inf
    assert "has shape (3, 2); it must have the input's shape (2, 3)" in str(caught.value)


def test_float32_inputs_are_refused():
    single = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="input 0 is float32"):
        assert_gradients(lambda x: x.sum(), single)
    model = nn.Linear(2, 2, dtype=np.float32)
    with pytest.raises(TypeError, match="parameter 'weight' is float32"):
        assert_gradients(model, np.ones((1, 2)))


def test_nothing_to_check_is_an_error():
    with pytest.raises(ValueError, match="nothing to check"):
        assert_gradients(lambda c: c.sum(), Tensor(np.ones(2)))


# --- gradients_hold: properties in one line --------------------------------------------------
test_tanh_gradients_hold = gradients_hold(lambda x: x.tanh(), arrays(), database=None)

test_broadcast_product_gradients_hold = gradients_hold(
    lambda a, b: (a * b).sum(),
    arrays(st.shared(broadcastable(2), key="pair").map(lambda pair: pair[0])),
    arrays(st.shared(broadcastable(2), key="pair").map(lambda pair: pair[1])),
    database=None,
    max_examples=50,
)

test_module_gradients_hold = gradients_hold(
    _model(), arrays((4, 3)), database=None, max_examples=10
)


def test_property_takes_plain_values_as_they_are():
    """A plain value stands for itself (and, being a number, is checked as an input too)."""
    seen = []

    def scaled(x, c):
        seen.append(float(c.data))
        return x * c

    gradients_hold(scaled, arrays(), 2.5, max_examples=5, database=None)()
    assert 2.5 in seen and seen == pytest.approx([2.5] * len(seen), abs=1.001e-6)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_property_shrinks_a_wrong_vjp_to_a_few_elements(n):
    prop = seed(n)(
        gradients_hold(
            lambda x: apply(SQUARE_MISSING_TWO, x),
            arrays(shapes(max_dims=3)),
            database=None,
        )
    )
    with pytest.raises(GradientMismatchError) as caught:
        prop()
    assert caught.value.input_size <= 4
    assert "does not match central differences" in str(caught.value)
