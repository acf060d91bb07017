"""Hypothesis strategies for gradient tests: shapes, broadcastable shapes, well-conditioned
float arrays and tensors, with options that keep values away from the kinks of ops that are
not differentiable everywhere (ReLU and abs at 0, ties in max, the edges of clip).

>>> from topograd.engine.testing import arrays, shapes
>>> strategy = arrays(shapes(max_dims=2), avoid=(0.0,))  # away from ReLU's kink
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from topograd.engine.tensor import Tensor

LOW, HIGH = -3.0, 3.0
"""The default range of drawn values: wide enough to reach every regime of tanh, sigmoid or
exp, narrow enough that their gradients are not lost in rounding."""

# NOTE: the kink convention. Central differences with a step eps cross a kink (ReLU or abs
# at 0, a tie in max, an edge of clip) only when a value lies within eps of it, and there the
# difference is an average of the two one-sided slopes that no VJP convention reproduces. The
# strategies keep values at least KINK_MARGIN away from the kinks they are told about, a
# thousand times the default step, so that a failure always means a wrong VJP. What the
# engine returns *at* a kink (ReLU'(0) = 0, max splits ties evenly, clip passes the edges)
# is a convention, tested with exact values elsewhere, not by differences.
KINK_MARGIN = 1e-3


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    """Array shapes; they shrink towards fewer and shorter axes (a failure ends up small)."""
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


def broadcastable(count=2, min_dims=0, max_dims=3, max_side=3):
    """Tuples of `count` shapes that numpy broadcasts together, e.g. ((3, 1), (4,))."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=count, min_dims=min_dims, max_dims=max_dims, max_side=max_side
    ).map(lambda drawn: tuple(drawn.input_shapes))


def floats(low=LOW, high=HIGH, *, avoid=(), margin=KINK_MARGIN):
    """Finite float64 values in [low, high], at least `margin` away from each value in
    `avoid` (kinks). A value drawn too close is moved to the nearest allowed number rather
    than rejected, so drawing never stalls and shrinking still moves towards simple numbers."""
    if not low < high:
        raise ValueError(f"floats needs low < high, got low={low}, high={high}")
    base = st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    if not avoid:
        return base
    allowed = _allowed_intervals(low, high, avoid, margin)
    if not allowed:
        raise ValueError(f"no value in [{low}, {high}] is {margin} away from {tuple(avoid)}")
    return base.map(lambda value: _nearest_allowed(value, allowed))


def _allowed_intervals(low, high, avoid, margin) -> list[tuple[float, float]]:
    """[low, high] without the numbers closer than `margin` to a kink, as closed intervals.
    Each kink's interval is widened by one ulp on each side, so rounding cannot leave an
    allowed number a hair inside the margin."""
    blocked = sorted((float(a) - margin, float(a) + margin) for a in avoid)
    allowed, cursor = [], float(low)
    for start, end in blocked:
        start, end = np.nextafter(start, -np.inf), np.nextafter(end, np.inf)
        if start >= cursor:
            allowed.append((cursor, min(float(start), high)))
        cursor = max(cursor, float(end))
    if cursor <= high:
        allowed.append((cursor, float(high)))
    return [(a, b) for a, b in allowed if a <= b]


def _nearest_allowed(value, allowed) -> float:
    """`value` if it is allowed, else the nearest end of an allowed interval."""
    nearest = [min(max(value, a), b) for a, b in allowed]
    return min(nearest, key=lambda candidate: abs(candidate - value))


def arrays(
    shape=None,
    low=LOW,
    high=HIGH,
    *,
    avoid=(),
    margin=KINK_MARGIN,
    distinct=False,
    dtype=np.float64,
):
    """Float arrays of `shape` (a tuple, or a strategy of tuples; default `shapes()`).

    `avoid`: values to keep `margin` away from (0.0 for ReLU and abs, a clip's edges).
    `distinct`: every two elements differ by at least `margin` (no ties for max).
    """
    shape = shapes() if shape is None else shape
    shape = shape if isinstance(shape, st.SearchStrategy) else st.just(tuple(shape))
    if distinct:
        return shape.flatmap(
            lambda s: distinct_arrays(
                s, low=low, high=high, avoid=avoid, margin=margin, dtype=dtype
            ).map(lambda drawn: drawn[0])
        )
    elements = floats(low, high, avoid=avoid, margin=margin)
    return shape.flatmap(lambda s: hnp.arrays(np.float64, s, elements=elements)).map(
        lambda array: array.astype(dtype)
    )


def distinct_arrays(*shapes_, low=LOW, high=HIGH, avoid=(), margin=KINK_MARGIN, dtype=np.float64):
    """A tuple of arrays, one per shape, whose elements are all pairwise at least `margin`
    apart, also across the arrays (maximum(x, y) has a kink wherever x == y)."""
    sizes = [math.prod(shape) for shape in shapes_]
    total = sum(sizes)
    # a grid with spacing `margin`: distinct grid points are `margin` apart by construction
    lowest, highest = math.ceil(low / margin), math.floor(high / margin)
    blocked = {round(a / margin) + k for a in avoid for k in (-1, 0, 1)}
    points = st.integers(lowest, highest).filter(lambda i: i not in blocked)
    if highest - lowest + 1 - len(blocked) < total:
        raise ValueError(f"[{low}, {high}] holds fewer than {total} values {margin} apart")

    def split(grid):
        flat = np.array(grid, dtype=np.float64) * margin
        parts = np.split(flat, np.cumsum(sizes)[:-1])
        return tuple(p.reshape(s).astype(dtype) for p, s in zip(parts, shapes_, strict=True))

    return st.lists(points, min_size=total, max_size=total, unique=True).map(split)


def tensors(shape=None, low=LOW, high=HIGH, *, requires_grad=True, **options):
    """Tensors over `arrays(shape, low, high, **options)` (requiring grad by default)."""
    return arrays(shape, low, high, **options).map(
        lambda array: Tensor(array, requires_grad=requires_grad)
    )
