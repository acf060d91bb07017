"""`op_inputs(op)`: hypothesis draws of (arrays, attributes) for a registered op, chosen by
the op's `kind` (how its inputs are shaped) and `domain` (where it is differentiable).

A custom op names one of the kinds and domains in `engine.ops.ARG_KINDS` and `DOMAINS`, and
the kit can then test it like a built-in op.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from topograd.engine.ops import Op
from topograd.engine.tensor import Tensor
from topograd.engine.testing.strategies import (
    KINK_MARGIN,
    arrays,
    broadcastable,
    distinct_arrays,
    floats,
    shapes,
)

SPACING = 0.01
"""How far apart the values of a "distinct" domain are (ties in max, maximum, max pooling)."""
CONDITIONING = 0.1
"""How far from 0 (1/x, ln x) or 1 (x**y's derivative in y is x**y ln x) values stay."""


# --- values by domain ------------------------------------------------------------------------
# Each domain draws one array per shape; "distinct" keeps all values of all inputs apart,
# since maximum(x, y) has a kink wherever x == y.
def _joint(draw_one):
    return lambda shapes: st.tuples(*(draw_one(shape) for shape in shapes)).map(list)


DOMAIN_VALUES = {
    "real": _joint(lambda shape: arrays(shape)),
    # away from 1 too: there d(x**y)/dy = x**y ln x vanishes while x**y does not, and the
    # relative error would measure rounding instead of the VJP
    "positive": _joint(
        lambda shape: arrays(shape, CONDITIONING, 3.0, avoid=(1.0,), margin=CONDITIONING)
    ),
    "nonzero": _joint(lambda shape: arrays(shape, avoid=(0.0,), margin=CONDITIONING)),
    "away_from_zero": _joint(lambda shape: arrays(shape, avoid=(0.0,), margin=CONDITIONING)),
    "distinct": lambda shapes: distinct_arrays(*shapes, margin=SPACING).map(list),
}


# --- inputs by kind --------------------------------------------------------------------------
# Each strategy draws (arrays, attrs) for an op of that kind; `values(shapes)` is the
# strategy of arrays in the op's domain.
@st.composite
def _unary(draw, values):
    return draw(values([draw(shapes())])), {}


@st.composite
def _binary(draw, values):
    return draw(values(list(draw(broadcastable(2))))), {}


@st.composite
def _power(draw, values):
    # |c| >= 0.5: for c near 0, x**c is near 1 while its derivative vanishes
    magnitude = st.sampled_from((0.5, 1.0, 2.0, 3.0)) | st.floats(0.5, 3.0)
    exponent = draw(st.tuples(st.sampled_from((-1.0, 1.0)), magnitude).map(math.prod))
    return draw(values([draw(shapes())])), {"exponent": exponent}


@st.composite
def _matmul(draw, values):
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    batch = draw(broadcastable(2, max_dims=2))
    a_shape = (k,) if draw(st.booleans()) else (*batch[0], n, k)
    b_shape = (k,) if draw(st.booleans()) else (*batch[1], k, m)
    return draw(values([a_shape, b_shape])), {}


@st.composite
def _reduce(draw, values):
    shape = draw(shapes())
    axis = None
    if shape and draw(st.booleans()):
        chosen = draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))
        axis = tuple(sorted(chosen))  # the normalized form Tensor.sum/mean/max pass
    return draw(values([shape])), {"axis": axis, "keepdims": draw(st.booleans())}


@st.composite
def _along_axis(draw, values):
    shape = draw(shapes(min_dims=1))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return draw(values([shape])), {"axis": axis}


@st.composite
def _reshape(draw, values):
    shape = draw(shapes(max_dims=4))
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
    shape = draw(shapes(max_dims=4))
    axes = tuple(draw(st.permutations(range(len(shape)))))
    return draw(values([shape])), {"axes": axes}


@st.composite
def _index(draw, values):
    shape = draw(shapes(min_dims=1))
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
    shape = list(draw(shapes(min_dims=1)))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    pieces = []
    for _ in range(draw(st.integers(1, 4))):
        shape[axis] = draw(st.integers(1, 3))
        pieces.append(tuple(shape))
    return draw(values(pieces)), {"axis": axis}


@st.composite
def _stack(draw, values):
    shape = draw(shapes())
    axis = draw(st.integers(-len(shape) - 1, len(shape)))
    return draw(values([shape] * draw(st.integers(1, 4)))), {"axis": axis}


@st.composite
def _where(draw, values):
    condition_shape, x_shape, y_shape = draw(broadcastable(3))
    condition = draw(hnp.arrays(np.bool_, condition_shape))
    # a constant leaf: differences in a 0/1 condition would flip it, and it takes no gradient
    return [Tensor(condition), *draw(values([x_shape, y_shape]))], {}


@st.composite
def _clip(draw, values):
    low = draw(st.none() | floats(-2.0, 0.5))
    high = draw(st.none() | floats(-0.5 if low is None else low + 0.5, 2.0))
    edges = tuple(edge for edge in (low, high) if edge is not None)
    x = draw(arrays(shapes(), avoid=edges, margin=KINK_MARGIN))
    return [x], {"low": low, "high": high}


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
    # away from 0, where dx vanishes while the output (beta) does not.
    spread = 7.0 * np.arange(n * (length or 1), dtype=np.float64)
    spread = spread.reshape(n, 1) if length is None else spread.reshape(n, 1, length)
    gamma = gamma + np.where(gamma < 0, -0.5, 0.5)
    eps = draw(st.sampled_from((1e-5, 1e-3)))
    return [x + spread, gamma, beta], {"eps": eps}


def _image_side(draw, span, stride, padding):
    """An input side that gives 1 to 3 outputs for a kernel covering `span` pixels, with up to
    stride - 1 rows left over (PyTorch's floor drops them)."""
    out = draw(st.integers(1, 3))
    while (out - 1) * stride + span - 2 * padding < 1:
        out += 1
    return (out - 1) * stride + span - 2 * padding + draw(st.integers(0, stride - 1))


def _pair_or_int(draw, values):
    first = draw(values)
    return first if draw(st.booleans()) else (first, draw(values))


def _as_pair(value):
    return (value, value) if isinstance(value, int) else value


@st.composite
def _conv2d(draw, values):
    n, groups = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    c, f = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = _pair_or_int(draw, st.integers(1, 2))
    padding = _pair_or_int(draw, st.integers(0, 2))
    dilation = _pair_or_int(draw, st.integers(1, 2))
    geometry = zip(kernel, _as_pair(stride), _as_pair(padding), _as_pair(dilation), strict=True)
    side = [_image_side(draw, d * (k - 1) + 1, s, p) for k, s, p, d in geometry]
    x, w = draw(values([(n, c, *side), (f, c // groups, *kernel)]))
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return [x, w], attrs


@st.composite
def _pool2d(draw, values):
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kernel = _pair_or_int(draw, st.integers(1, 3))
    stride = draw(st.none() | st.integers(1, 3))
    kernels = _as_pair(kernel)
    # PyTorch's limit: padding at most half the kernel
    if draw(st.booleans()):
        padding = draw(st.integers(0, min(kernels) // 2))
    else:
        padding = tuple(draw(st.integers(0, k // 2)) for k in kernels)
    strides = kernels if stride is None else (stride, stride)
    geometry = zip(kernels, strides, _as_pair(padding), strict=True)
    side = [_image_side(draw, k, s, p) for k, s, p in geometry]
    attrs = {
        "kernel_size": kernel,
        "stride": stride,
        "padding": padding,
        "ceil_mode": draw(st.booleans()),
    }
    return draw(values([(n, c, *side)])), attrs


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
    "stack": _stack,
    "where": _where,
    "clip": _clip,
    "batch_norm": _batch_norm,
    "conv2d": _conv2d,
    "pool2d": _pool2d,
}


def op_inputs(op: Op):
    """Draws of (list of float64 arrays, attributes dict) that `op` can be applied to; an
    input that takes no gradient (where's condition) comes as a constant Tensor instead."""
    if op.kind not in KIND_STRATEGIES:
        raise ValueError(
            f"op {op.name!r} has kind {op.kind!r}, which has no input strategy; known kinds: "
            f"{', '.join(sorted(KIND_STRATEGIES))}"
        )
    if op.domain not in DOMAIN_VALUES:
        raise ValueError(
            f"op {op.name!r} has domain {op.domain!r}, which has no value strategy; known "
            f"domains: {', '.join(sorted(DOMAIN_VALUES))}"
        )
    return KIND_STRATEGIES[op.kind](DOMAIN_VALUES[op.domain])
