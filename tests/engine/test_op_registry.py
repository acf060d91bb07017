"""One table-driven test walks the op registry: every registered primitive's VJP is checked
against central differences on inputs that hypothesis draws from the op's `kind` and `domain`.

A new op is covered the moment it is registered (the parametrization is built from
`engine.OPS` at collection time); an op whose kind or domain has no strategy here fails.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import engine
from engine import OPS, Op, Tensor
from engine.ops import ARG_KINDS, DOMAINS

TOLERANCE = 1e-6
STEP = 1e-6  # central-difference step
MAX_EXAMPLES = 30

# --- values by domain -------------------------------------------------------------------
# Each domain draws a flat list of `count` float64 values for all of an op's inputs at once,
# so that "distinct" can separate values across inputs too (maximum(x, y) has a kink at x == y).
GRID = 0.01  # spacing of the grid that distinct values are drawn from


def _real(count):
    return st.lists(st.floats(-3.0, 3.0), min_size=count, max_size=count)


def _positive(count):
    # Also away from 1: there d(x**y)/dy = x**y ln x vanishes while x**y does not, and the
    # relative error would measure rounding instead of the VJP.
    value = st.floats(0.1, 0.9) | st.floats(1.1, 3.0)
    return st.lists(value, min_size=count, max_size=count)


def _signed_away_from_zero(count):
    magnitude = st.floats(0.1, 3.0)
    signed = st.tuples(st.sampled_from((-1.0, 1.0)), magnitude).map(math.prod)
    return st.lists(signed, min_size=count, max_size=count)


def _distinct(count):
    # Pairwise separated by at least GRID: far from ties (max, maximum) for steps of 1e-6.
    grid = st.lists(st.integers(-300, 300), min_size=count, max_size=count, unique=True)
    return grid.map(lambda ints: [i * GRID for i in ints])


DOMAIN_VALUES = {
    "real": _real,
    "positive": _positive,
    "nonzero": _signed_away_from_zero,
    "away_from_zero": _signed_away_from_zero,
    "distinct": _distinct,
}


@st.composite
def _arrays(draw, domain, shapes):
    """One float64 array per shape, with values from `domain` (jointly drawn)."""
    sizes = [math.prod(shape) for shape in shapes]
    flat = np.array(draw(DOMAIN_VALUES[domain](sum(sizes))), dtype=np.float64)
    bounds = np.cumsum(sizes)[:-1]
    return [part.reshape(shape) for part, shape in zip(np.split(flat, bounds), shapes)]


# --- inputs by kind ----------------------------------------------------------------------
# Each strategy draws (arrays, attrs) for an op of that kind: `values(shapes)` is the
# strategy of arrays in the op's domain.
def _shapes(min_dims=0, max_dims=3):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=4)


@st.composite
def _unary(draw, values):
    return draw(values([draw(_shapes())])), {}


@st.composite
def _binary(draw, values):
    shapes = draw(
        hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)
    )
    return draw(values(list(shapes.input_shapes))), {}


@st.composite
def _power(draw, values):
    # |c| >= 0.5: for c near 0, x**c is near 1 while its derivative vanishes (see _positive).
    magnitude = st.sampled_from((0.5, 1.0, 2.0, 3.0)) | st.floats(0.5, 3.0)
    exponent = draw(st.tuples(st.sampled_from((-1.0, 1.0)), magnitude).map(math.prod))
    return draw(values([draw(_shapes())])), {"exponent": exponent}


@st.composite
def _matmul(draw, values):
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3))
    a_shape = (k,) if draw(st.booleans()) else (*batch.input_shapes[0], n, k)
    b_shape = (k,) if draw(st.booleans()) else (*batch.input_shapes[1], k, m)
    return draw(values([a_shape, b_shape])), {}


@st.composite
def _reduce(draw, values):
    shape = draw(_shapes())
    axis = None
    if shape and draw(st.booleans()):
        chosen = draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))
        axis = tuple(sorted(chosen))  # the normalized form Tensor.sum/mean/max pass
    return draw(values([shape])), {"axis": axis, "keepdims": draw(st.booleans())}


@st.composite
def _along_axis(draw, values):
    shape = draw(_shapes(min_dims=1))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return draw(values([shape])), {"axis": axis}


@st.composite
def _reshape(draw, values):
    shape = draw(_shapes(max_dims=4))
    size = math.prod(shape)
    factors = [p for p in range(2, size + 1) for _ in range(_multiplicity(size, p))]
    factors = draw(st.permutations(factors))
    cuts = sorted(draw(st.lists(st.integers(0, len(factors)), max_size=3)))
    new_shape = [
        math.prod(factors[lo:hi]) for lo, hi in itertools.pairwise([0, *cuts, len(factors)])
    ]
    if new_shape and draw(st.booleans()):
        new_shape[draw(st.integers(0, len(new_shape) - 1))] = -1
    return draw(values([shape])), {"shape": tuple(new_shape)}


def _multiplicity(n, p):
    """How many times the prime p divides n (0 for composite p)."""
    if any(p % q == 0 for q in range(2, p)):
        return 0
    count = 0
    while n % p == 0:
        n //= p
        count += 1
    return count


@st.composite
def _transpose(draw, values):
    shape = draw(_shapes(max_dims=4))
    axes = tuple(draw(st.permutations(range(len(shape)))))
    return draw(values([shape])), {"axes": axes}


@st.composite
def _index(draw, values):
    shape = draw(_shapes(min_dims=1))
    positions = hnp.array_shapes(max_dims=2, max_side=5)
    # Basic indices, integer arrays (positions repeat: their VJP must add up), boolean masks,
    # and a slice mixed with an integer array on the last axis.
    mixed = hnp.arrays(np.intp, positions, elements=st.integers(-shape[-1], shape[-1] - 1)).map(
        lambda positions: (*[slice(None)] * (len(shape) - 1), positions)
    )
    index = draw(
        hnp.basic_indices(shape, allow_newaxis=True)
        | hnp.integer_array_indices(shape, result_shape=positions)
        | hnp.arrays(np.bool_, shape)
        | mixed
    )
    return draw(values([shape])), {"index": index}


@st.composite
def _concat(draw, values):
    shape = list(draw(_shapes(min_dims=1)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    shapes = []
    for _ in range(draw(st.integers(1, 4))):
        shape[axis] = draw(st.integers(1, 3))
        shapes.append(tuple(shape))
    return draw(values(shapes)), {"axis": axis}


@st.composite
def _batch_norm(draw, values):
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    length = draw(st.none() | st.integers(1, 3))
    if n * (length or 1) < 3:
        # Batch statistics need two values per channel; with exactly two, x_hat is +-1
        # whatever x is, so dx is ~eps-sized and central differences drown in rounding.
        n = 3
    x_shape = (n, c) if length is None else (n, c, length)
    x, gamma, beta = draw(values([x_shape, (c,), (c,)]))
    # Spread each channel's values (steps of 7 > the width of the drawn values), so that the
    # variance is far from 0 and 1/sqrt(var + eps) is smooth at the step size; and keep gamma
    # away from 0, where dx vanishes while the output (beta) does not (see _positive).
    spread = 7.0 * np.arange(n * (length or 1), dtype=np.float64)
    spread = spread.reshape(n, 1) if length is None else spread.reshape(n, 1, length)
    gamma = gamma + np.where(gamma < 0, -0.5, 0.5)
    eps = draw(st.sampled_from((1e-5, 1e-3)))
    return [x + spread, gamma, beta], {"eps": eps}


def _image_side(draw, kernel, stride, padding):
    """An input side that the kernel, stride and padding tile exactly (1 to 3 outputs)."""
    out = draw(st.integers(1, 3))
    while (out - 1) * stride + kernel - 2 * padding < 1:
        out += 1
    return (out - 1) * stride + kernel - 2 * padding


def _pair_or_int(draw, values):
    first = draw(values)
    return first if draw(st.booleans()) else (first, draw(values))


@st.composite
def _conv2d(draw, values):
    n, c, f = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = _pair_or_int(draw, st.integers(1, 2))
    padding = _pair_or_int(draw, st.integers(0, 2))
    strides = (stride, stride) if isinstance(stride, int) else stride
    paddings = (padding, padding) if isinstance(padding, int) else padding
    side = [_image_side(draw, *args) for args in zip(kernel, strides, paddings)]
    x, w = draw(values([(n, c, *side), (f, c, *kernel)]))
    return [x, w], {"stride": stride, "padding": padding}


@st.composite
def _pool2d(draw, values):
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kernel = _pair_or_int(draw, st.integers(1, 3))
    stride = draw(st.none() | st.integers(1, 3))
    kernels = (kernel, kernel) if isinstance(kernel, int) else kernel
    strides = kernels if stride is None else (stride, stride)
    side = [_image_side(draw, k, s, 0) for k, s in zip(kernels, strides)]
    return draw(values([(n, c, *side)])), {"kernel_size": kernel, "stride": stride}


KIND_STRATEGIES = {
    "unary": _unary,
    "binary": _binary,
    "power": _power,
    "matmul": _matmul,
    "reduce": _reduce,
    "along_axis": _along_axis,
    "reshape": _reshape,
    "transpose": _transpose,
    "index": _index,
    "concat": _concat,
    "batch_norm": _batch_norm,
    "conv2d": _conv2d,
    "pool2d": _pool2d,
}


# --- the check ---------------------------------------------------------------------------
def _forward(op, arrays, attrs):
    out = op.forward(*arrays, **attrs)
    return out[0] if op.saves else out


def _numeric_vjp(op, arrays, attrs, upstream):
    """Central differences of sum(forward(arrays) * upstream) with respect to each input."""
    grads = []
    for i, array in enumerate(arrays):
        flat = array.reshape(-1)
        grad = np.zeros(flat.size)
        for k in range(flat.size):
            bumped = [a.copy() for a in arrays]
            values = bumped[i].reshape(-1)
            values[k] = flat[k] + STEP
            plus = float(np.sum(_forward(op, bumped, attrs) * upstream))
            values[k] = flat[k] - STEP
            minus = float(np.sum(_forward(op, bumped, attrs) * upstream))
            grad[k] = (plus - minus) / (2 * STEP)
        grads.append(grad.reshape(array.shape))
    return grads


def check_op(op: Op, max_examples: int = MAX_EXAMPLES) -> None:
    """Check `op`'s VJP against central differences on inputs drawn for its kind and domain."""
    kind_strategy = KIND_STRATEGIES.get(op.kind)
    if kind_strategy is None:
        pytest.fail(
            f"op {op.name!r} has kind {op.kind!r}, which has no input strategy in "
            f"KIND_STRATEGIES of {__name__}; add one (known: {sorted(KIND_STRATEGIES)})"
        )
    if op.domain not in DOMAIN_VALUES:
        pytest.fail(
            f"op {op.name!r} has domain {op.domain!r}, which has no value strategy in "
            f"DOMAIN_VALUES of {__name__}; add one (known: {sorted(DOMAIN_VALUES)})"
        )

    def values(shapes):
        return _arrays(op.domain, shapes)

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=kind_strategy(values), seed=st.integers(0, 2**32 - 1))
    def vjp_matches_central_differences(case, seed):
        arrays, attrs = case
        tensors = [Tensor(a, requires_grad=True) for a in arrays]
        out = engine.apply(op, *tensors, **attrs)
        expected = np.asarray(_forward(op, arrays, attrs))
        assert out.shape == expected.shape, f"{op.name}: output shape {out.shape}"
        upstream = np.random.default_rng(seed).standard_normal(out.shape)
        out.backward(upstream)
        numeric = _numeric_vjp(op, arrays, attrs, upstream)
        for position, (t, n) in enumerate(zip(tensors, numeric)):
            analytic = np.zeros(t.shape) if t.grad is None else t.grad
            assert analytic.shape == t.shape, (
                f"{op.name}: gradient of input {position} has shape {analytic.shape}, "
                f"input shape {t.shape}"
            )
            assert analytic.dtype == np.float64, f"{op.name}: gradient dtype {analytic.dtype}"
            error = engine.relative_error(analytic, n)
            assert error < TOLERANCE, (
                f"{op.name} ({op.kind}, {op.domain}) input {position}: relative error "
                f"{error:.3g} >= {TOLERANCE} with attrs {attrs}\nanalytic {analytic}\n"
                f"numeric {n}"
            )

    vjp_matches_central_differences()


@pytest.mark.parametrize("name", sorted(OPS))
def test_registered_op_vjp_matches_central_differences(name):
    check_op(OPS[name])


@pytest.mark.parametrize("name", sorted(OPS))
def test_registered_op_keeps_float32(name):
    """float32 inputs give a float32 value and float32 gradients (no silent upcast)."""
    op = OPS[name]
    kind_strategy = KIND_STRATEGIES.get(op.kind)
    if kind_strategy is None or op.domain not in DOMAIN_VALUES:
        pytest.fail(f"op {op.name!r}: no strategy for kind {op.kind!r} / domain {op.domain!r}")

    @settings(max_examples=10, deadline=None, database=None)
    @given(case=kind_strategy(lambda shapes: _arrays(op.domain, shapes)))
    def keeps_float32(case):
        arrays, attrs = case
        tensors = [Tensor(a.astype(np.float32), requires_grad=True) for a in arrays]
        out = engine.apply(op, *tensors, **attrs)
        assert out.dtype == np.float32, f"{op.name}: value dtype {out.dtype}"
        out.backward(np.ones(out.shape, dtype=np.float32))
        dtypes = [str(t.grad.dtype) for t in tensors if t.grad is not None]
        assert set(dtypes) <= {"float32"}, f"{op.name}: gradient dtypes {dtypes}"

    keeps_float32()


# --- the table itself --------------------------------------------------------------------
def test_every_arg_kind_and_domain_has_a_strategy():
    assert set(ARG_KINDS) <= set(KIND_STRATEGIES), set(ARG_KINDS) - set(KIND_STRATEGIES)
    assert set(DOMAINS) <= set(DOMAIN_VALUES), set(DOMAINS) - set(DOMAIN_VALUES)


def _softplus_vjp(g, out, x):
    return (g / (1.0 + np.exp(-x)),)


def _square_missing_factor_two_vjp(g, out, x):
    return (g * x,)  # wrong on purpose: d(x^2)/dx = 2x


@pytest.fixture
def registered_softplus():
    name = "softplus_registry_test"
    op = engine.register_op(
        Op(name, lambda x: np.logaddexp(0.0, x), _softplus_vjp, 1, "log(1 + e^x)", "g * s(x)")
    )
    try:
        yield op
    finally:
        del OPS[name]


def test_newly_registered_op_is_checked(registered_softplus):
    assert OPS[registered_softplus.name] is registered_softplus
    check_op(OPS[registered_softplus.name], max_examples=10)


def test_wrong_vjp_is_detected():
    square = Op("square_wrong", np.square, _square_missing_factor_two_vjp, 1, "x^2", "g * x")
    with pytest.raises(AssertionError, match="relative error"):
        check_op(square, max_examples=30)


def test_op_of_a_kind_without_strategy_fails(monkeypatch):
    monkeypatch.delitem(KIND_STRATEGIES, "unary")
    with pytest.raises(pytest.fail.Exception, match="no input strategy"):
        check_op(OPS["tanh"])
