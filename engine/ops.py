"""The op record and registry: every primitive is defined once, forward beside its VJP.

A primitive is an ``Op``: a forward function on numpy arrays and a vector-Jacobian product
that maps the gradient of the output to one gradient per input (``None`` where an input gets
none). Everything else in the engine (batch norm, dropout, the losses) is a composition of
primitives, so its backward pass is derived by walking the graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# How the table-driven tests draw inputs for an op. A new op must name one of these
# (or register a new kind with the tests): an op nobody knows how to sample fails the suite.
ARG_KINDS = (
    "unary",  # one tensor of any shape
    "binary",  # two tensors whose shapes broadcast
    "power",  # one tensor and a constant exponent
    "matmul",  # (..., n, k) @ (..., k, m), vectors included
    "reduce",  # one tensor plus axis/keepdims attributes
    "along_axis",  # one tensor plus an axis (softmax)
    "reshape",  # one tensor plus a new shape
    "transpose",  # one tensor plus a permutation of its axes
    "index",  # one tensor plus an index (slices, integers, integer arrays)
    "concat",  # several tensors joined along an axis
    "stack",  # several tensors of one shape stacked along a new axis
    "where",  # a condition (no gradient) and two tensors, all three broadcastable
    "clip",  # one tensor plus low/high attributes (either may be None)
    "batch_norm",  # x (N, C, ...), gamma (C,), beta (C,)
    "conv2d",  # x (N, C, H, W), w (F, C, HH, WW) plus stride/padding attributes
    "pool2d",  # x (N, C, H, W) plus kernel_size/stride attributes
)

# Where inputs must lie for the op to be differentiable (central differences need room).
DOMAINS = ("real", "positive", "nonzero", "away_from_zero", "distinct")


@dataclass(frozen=True)
class Op:
    """A primitive: `forward(*arrays, **attrs)` and `vjp(g, out, *arrays, **attrs)`.

    `saves` marks ops whose forward returns `(out, ctx)`; ctx is kept on the node and handed
    to the VJP as the keyword `ctx` (the fused batch norm keeps x_hat and 1/std this way).
    `kind` and `domain` tell the table-driven tests how to draw inputs for the op.
    `formula` and `vjp_formula` are what the GUI's inspector prints.
    `uses_values`, `reads` and `overwrites` are described beside the fields.
    """

    name: str
    forward: Callable
    vjp: Callable
    arity: int  # number of tensor inputs; -1 for any number (concat)
    formula: str
    vjp_formula: str
    kind: str = "unary"
    domain: str = "real"
    saves: bool = False
    takes_needs: bool = False  # the VJP gets `needs` (which inputs want a gradient) to skip work
    # forward and VJP accept Python floats (the float64 scalar mode's storage); others get
    # numpy scalars, so that 1/0 or an overflow gives inf and a warning, not an exception
    floats_ok: bool = False
    # the VJP reads the values of the inputs or the output (not only their shapes): a backward
    # pass refuses the node when one of them was modified in place after the forward pass
    uses_values: bool = True
    # whose values the VJP reads: input positions and "out" (None: all of them; an op with
    # `uses_values=False` reads none). A value nothing reads may be released during the forward
    # pass once only graph links hold its node (executor.release_unheld)
    reads: tuple | None = None
    # the VJP takes `overwrite=True` and may then write its result into `g`: the executor
    # passes it only when nothing else holds `g` (a plain backward(), not a stepper showing it)
    overwrites: bool = False

    def __post_init__(self):
        # `plain`: the VJP takes only the node's attributes (no ctx, no needs); read per node.
        object.__setattr__(self, "plain", not (self.saves or self.takes_needs))
        reads = () if not self.uses_values else self.reads
        # `reads_out` and `reads_inputs` (None: every input), what the forward pass consults
        object.__setattr__(self, "reads_out", reads is None or "out" in reads)
        inputs = None if reads is None else frozenset(i for i in reads if i != "out")
        object.__setattr__(self, "reads_inputs", inputs)
        if self.kind not in ARG_KINDS:
            raise ValueError(
                f"op {self.name!r}: kind must be one of {ARG_KINDS}, got {self.kind!r}"
            )
        if self.domain not in DOMAINS:
            raise ValueError(
                f"op {self.name!r}: domain must be one of {DOMAINS}, got {self.domain!r}"
            )


OPS: dict[str, Op] = {}


def register_op(op: Op) -> Op:
    """Add `op` to the registry that the tests, the stepper and the DSL read."""
    if op.name in OPS:
        raise ValueError(f"an op named {op.name!r} is already registered")
    OPS[op.name] = op
    return op


def unbroadcast(grad, shape):
    """Sum `grad` back to `shape`: the one place where numpy broadcasting is undone."""
    if grad.shape == shape:
        return grad
    lead = leading_axes(grad.shape, shape)
    if lead is not None:  # leading axes (a batch): a matrix-vector product
        return sum_leading(grad, lead).reshape(shape)
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


def leading_axes(full, shape):
    """How many leading axes of `full` broadcasting `shape` up to it added or stretched, when
    those are all it changed (a batch axis: (N, C) from (C,) or (1, C)); else None."""
    extra = len(full) - len(shape)
    if extra < 0:
        return None
    count = extra
    for i, n in enumerate(shape):
        if n == full[extra + i]:
            continue
        if n != 1 or count != extra + i:
            return None
        count += 1
    return count or None


# Below this many rows numpy's own reduction is as fast as the BLAS call.
_BLAS_ROWS = 8
_ONES: dict = {}


def _ones(count, dtype):
    """A read-only vector of ones, kept per length and dtype (a batch size repeats)."""
    key = (count, dtype)
    ones = _ONES.get(key)
    if ones is None:
        if len(_ONES) >= 64:
            _ONES.clear()
        ones = np.ones(count, dtype=dtype)
        ones.flags.writeable = False
        _ONES[key] = ones
    return ones


def sum_leading(array, count):
    """`array` summed over its first `count` axes, as `array.sum(axis=(0, ..., count-1))`.

    For float arrays this is ones @ array.reshape(rows, -1): BLAS runs the matrix-vector
    product 2-3x faster than numpy's reduction along a strided axis (bench/tensor.py), with
    the same sums in another order (the last bits may differ).
    """
    rows = math.prod(array.shape[:count])
    if (
        type(array) is not np.ndarray
        or array.dtype.kind != "f"
        or rows < _BLAS_ROWS
        or not array.flags.c_contiguous
        or not array.size
    ):
        return array.sum(axis=tuple(range(count)))
    return _ones(rows, array.dtype) @ array.reshape(rows, -1)


def product_sum_leading(a, b, count):
    """(a * b) summed over the first `count` axes, without the product array (einsum), for
    two float arrays of one shape; the gradient of a broadcast factor (a batch norm's gamma)."""
    if (
        type(a) is np.ndarray
        and type(b) is np.ndarray
        and a.shape == b.shape
        and a.dtype == b.dtype
        and a.dtype.kind == "f"
        and math.prod(a.shape[:count]) >= _BLAS_ROWS
        and a.size
    ):
        rows = math.prod(a.shape[:count])
        return np.einsum("ij,ij->j", a.reshape(rows, -1), b.reshape(rows, -1)).reshape(
            a.shape[count:]
        )
    return (a * b).sum(axis=tuple(range(count)))


def reduce_sum(x, axis, keepdims):
    """A float array's sum over `axis` (a sorted tuple, or None); over leading axes (a batch)
    as BLAS's matrix-vector product (`sum_leading`), otherwise numpy's reduction."""
    if axis is not None and len(axis) < x.ndim and axis == tuple(range(len(axis))):
        total = sum_leading(x, len(axis))
        return total.reshape((1,) * len(axis) + total.shape) if keepdims else total
    return np.add.reduce(x, axis=axis, keepdims=keepdims)


def reduce_mean(x, axis, keepdims):
    """ndarray.mean's arithmetic (a sum, then one division by the count) without its Python
    wrapper, the sum as `reduce_sum` takes it; float16 and integers keep numpy's own path."""
    if type(x) is not np.ndarray or x.dtype.kind != "f" or x.dtype.itemsize < 4:
        return x.mean(axis=axis, keepdims=keepdims)
    total = reduce_sum(x, axis, keepdims)
    count = x.size if axis is None else math.prod([x.shape[a] for a in axis])
    if type(total) is np.ndarray:
        return np.true_divide(total, count, out=total)
    return total.dtype.type(total / count)
