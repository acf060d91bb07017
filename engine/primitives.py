"""The primitive ops: each forward beside its vector-Jacobian product, registered once.

VJP convention: `vjp(g, out, *inputs, **attrs)` returns one gradient per input (None where
there is none); `g` is the gradient of the loss with respect to `out`. A gradient may come
back in the broadcast shape of the output: the executor sums it back to the input's shape.
"""

from __future__ import annotations

import math

import numpy as np
from topograd.engine.ops import (
    Op,
    leading_axes,
    product_sum_leading,
    reduce_mean,
    reduce_sum,
    register_op,
    unbroadcast,
)


def _op(name, forward, vjp, arity, formula, vjp_formula, **options):
    return register_op(Op(name, forward, vjp, arity, formula, vjp_formula, **options))


# --- arithmetic -----------------------------------------------------------------------
def _add(x, y):
    return x + y


def _add_vjp(g, out, x, y):
    return g, g


def _sub(x, y):
    return x - y


def _sub_vjp(g, out, x, y):
    if type(g) is float:
        return g, -g
    return g, -unbroadcast(g, np.shape(y))  # summed first: a broadcast y negates its own size


def _mul(x, y):
    return x * y


def _mul_vjp(g, out, x, y, needs=(True, True), overwrite=False):
    # `needs` skips the product for an input that wants no gradient (a dropout mask, data).
    gy = _factor_grad(g, x, y) if needs[1] else None
    if not needs[0]:
        return None, gy
    if overwrite and _fits(g, y):
        return np.multiply(g, y, out=g), gy
    return g * y, gy


def _factor_grad(g, x, y):
    """The gradient of y in x * y, g * x: summed back to y's shape at once when y was
    broadcast along leading (batch) axes, without the product array (a gamma's gradient)."""
    if type(y) is np.ndarray and type(g) is np.ndarray and y.shape != g.shape:
        lead = leading_axes(g.shape, y.shape)
        if lead is not None and np.shape(x) == g.shape:
            return product_sum_leading(g, x, lead).reshape(y.shape)
    return g * x


def _compact(g):
    """`g` without its broadcast (zero-stride) axes: the same values, each stored once, so
    that arithmetic on it does not make an array of the broadcast size."""
    if type(g) is np.ndarray and 0 in g.strides:
        return g[tuple(slice(0, 1) if s == 0 else slice(None) for s in g.strides)]
    return g


def _fits(g, other) -> bool:
    """Whether g * other (or g / other) can be written into g: same shape and dtype."""
    if type(other) is np.ndarray:
        return (
            other.dtype == g.dtype
            and other.ndim <= g.ndim
            and all(n == 1 or n == m for n, m in zip(other.shape[::-1], g.shape[::-1]))
        )
    return type(other) is float or (isinstance(other, np.generic) and other.dtype == g.dtype)


def _div(x, y):
    return x / y


def _div_vjp(g, out, x, y, needs=(True, True)):
    gx = g / y
    return gx, (-gx * out if needs[1] else None)


def _pow(x, y):
    return x**y


def _pow_vjp(g, out, x, y):
    # NOTE: zero bases follow torch.pow's backward. Where y == 0, dx = 0 (x^0 is constant,
    # even at x = 0, where y * x^(y-1) would be 0 * inf); where x == 0 and y >= 0, dy = 0
    # (torch's pow_backward_exponent; x^y ln x would be 0 * -inf). Both are computed on safe
    # values (exponent 1, base 1) instead of masking NaNs afterwards. Elsewhere a zero base
    # gives torch's infinities (0.5 * 0^-0.5 = inf) without a divide-by-zero warning.
    y_safe = y + (y == 0)
    x_safe = x + ((x == 0) & (y >= 0))
    with np.errstate(divide="ignore"):
        gx = g * (y * x ** (y_safe - 1))
        gy = g * out * np.log(x_safe)
    return gx, gy


def _power(x, exponent):
    return x**exponent


def _power_vjp(g, out, x, exponent):
    if exponent == 2.0:
        return (_compact(g) * 2.0 * x,)
    if exponent == 0.0:
        # NOTE: x^0 is constant, so dx = 0 also at x = 0 (as torch.pow's backward returns).
        return (np.zeros_like(g),)
    with np.errstate(divide="ignore"):  # a zero base with c < 1 gives torch's inf
        return (g * exponent * x ** (exponent - 1),)


def _neg(x):
    return -x


def _neg_vjp(g, out, x):
    return (-g,)


_op(
    "add",
    _add,
    _add_vjp,
    2,
    "x + y",
    "dx = g, dy = g (summed over broadcast axes)",
    kind="binary",
    floats_ok=True,
    uses_values=False,
)
_op(
    "sub",
    _sub,
    _sub_vjp,
    2,
    "x - y",
    "dx = g, dy = -g (summed over broadcast axes)",
    kind="binary",
    floats_ok=True,
    uses_values=False,
)
_op(
    "mul",
    _mul,
    _mul_vjp,
    2,
    "x * y",
    "dx = g * y, dy = g * x",
    kind="binary",
    takes_needs=True,
    floats_ok=True,
    reads=(0, 1),
    overwrites=True,
)
_op(
    "div",
    _div,
    _div_vjp,
    2,
    "x / y",
    "dx = g / y, dy = -g * x / y^2",
    kind="binary",
    domain="away_from_zero",
    takes_needs=True,
    reads=(1, "out"),
)
_op(
    "pow",
    _pow,
    _pow_vjp,
    2,
    "x ** y",
    "dx = g * y * x^(y-1) (0 where y = 0), dy = g * x^y * ln x (0 where x = 0, y >= 0)",
    kind="binary",
    domain="positive",
    reads=(0, 1, "out"),
)
_op(
    "power",
    _power,
    _power_vjp,
    1,
    "x ** c",
    "dx = g * c * x^(c-1) (0 where c = 0)",
    kind="power",
    domain="positive",
    reads=(0,),
)
_op("neg", _neg, _neg_vjp, 1, "-x", "dx = -g", floats_ok=True, uses_values=False)


# --- matrix product -------------------------------------------------------------------
def _matmul(a, b):
    return a @ b


def _matmul_vjp(g, out, a, b, needs=(True, True)):
    if a.ndim == 2 and b.ndim == 2:  # the common case (a layer's x @ W): no broadcasting
        return (g @ b.T if needs[0] else None), (a.T @ g if needs[1] else None)
    if a.ndim == 1 and b.ndim == 1:
        return (g * b if needs[0] else None), (g * a if needs[1] else None)
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g[..., None] if b.ndim == 1 else g
    g2 = g2[..., None, :] if a.ndim == 1 else g2
    ga = gb = None
    if needs[0]:
        ga = _reshaped(unbroadcast(g2 @ np.swapaxes(b2, -1, -2), a2.shape), a.shape)
    if needs[1]:
        gb = _reshaped(unbroadcast(np.swapaxes(a2, -1, -2) @ g2, b2.shape), b.shape)
    return ga, gb


def _reshaped(array, shape):
    """Reshape only when needed: a fresh array stays its own buffer, so no copy is made later."""
    return array if array.shape == shape else array.reshape(shape)


_op(
    "matmul",
    _matmul,
    _matmul_vjp,
    2,
    "a @ b",
    "da = g @ b^T, db = a^T @ g",
    kind="matmul",
    takes_needs=True,
    reads=(0, 1),
)


# --- elementwise functions --------------------------------------------------------------
def _exp_vjp(g, out, x):
    return (g * out,)


def _log_vjp(g, out, x):
    return (g / x,)


def _sqrt_vjp(g, out, x):
    return (g * 0.5 / out,)


def _abs_vjp(g, out, x):
    # NOTE: d|x|/dx at 0 is taken as 0 (np.sign(0) = 0), as in PyTorch.
    return (g * np.sign(x),)


def _tanh_vjp(g, out, x):
    return (g * (1.0 - out * out),)


def _sigmoid(x):
    # Written with exp(-|x|) so that neither branch overflows for large |x|.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.result_type(x), copy=False)


def _sigmoid_vjp(g, out, x):
    return (g * out * (1.0 - out),)


def _relu(x):
    if type(x) is np.ndarray:
        return np.maximum(x, 0.0)
    return x if x > 0 or x != x else type(x)(0)  # scalars keep their type; NaN stays NaN


def _relu_vjp(g, out, x, overwrite=False):
    # NOTE: relu'(0) is taken as 0, as in PyTorch and micrograd.
    if overwrite:
        return (np.multiply(g, out > 0, out=g),)
    return (g * (out > 0),)


_op("exp", np.exp, _exp_vjp, 1, "e^x", "dx = g * e^x", floats_ok=True, reads=("out",))
_op("log", np.log, _log_vjp, 1, "ln x", "dx = g / x", domain="positive", reads=(0,))
_op(
    "sqrt",
    np.sqrt,
    _sqrt_vjp,
    1,
    "sqrt(x)",
    "dx = g / (2 sqrt(x))",
    domain="positive",
    reads=("out",),
)
_op("abs", np.abs, _abs_vjp, 1, "|x|", "dx = g * sign(x)", domain="away_from_zero", reads=(0,))
_op(
    "tanh",
    np.tanh,
    _tanh_vjp,
    1,
    "tanh(x)",
    "dx = g * (1 - tanh(x)^2)",
    floats_ok=True,
    reads=("out",),
)
_op(
    "sigmoid",
    _sigmoid,
    _sigmoid_vjp,
    1,
    "1 / (1 + e^-x)",
    "dx = g * s * (1 - s)",
    reads=("out",),
)
_op(
    "relu",
    _relu,
    _relu_vjp,
    1,
    "max(x, 0)",
    "dx = g * [x > 0]",
    domain="away_from_zero",
    floats_ok=True,
    reads=("out",),
    overwrites=True,
)


def _clip(x, low=None, high=None):
    return np.clip(x, low, high)


def _clip_vjp(g, out, x, low=None, high=None):
    # NOTE: at x == low or x == high the gradient passes (the edges count as inside), as
    # torch.clamp's backward does.
    inside = np.ones(np.shape(x), dtype=bool)
    if low is not None:
        inside &= x >= low
    if high is not None:
        inside &= x <= high
    return (g * inside,)


_op(
    "clip",
    _clip,
    _clip_vjp,
    1,
    "min(max(x, low), high)",
    "dx = g * [low <= x <= high]",
    kind="clip",
    reads=(0,),
)


def _softplus(x):
    return np.logaddexp(0.0, x)  # log(1 + e^x) without overflow or loss for tiny results


def _softplus_vjp(g, out, x):
    return (g * _sigmoid(x),)


def _leaky_relu(x, negative_slope=0.01):
    return np.where(x > 0, x, x * negative_slope)


def _leaky_relu_vjp(g, out, x, negative_slope=0.01):
    # NOTE: at x == 0 the slope is negative_slope, as in PyTorch.
    slope = np.where(x > 0, 1.0, negative_slope).astype(np.result_type(g), copy=False)
    return (g * slope,)


def _elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def _elu_vjp(g, out, x, alpha=1.0):
    # NOTE: at x == 0 the derivative is taken from the negative side, alpha, as in PyTorch.
    return (g * np.where(x > 0, 1.0, out + alpha),)


_op("softplus", _softplus, _softplus_vjp, 1, "log(1 + e^x)", "dx = g * sigmoid(x)", reads=(0,))
_op(
    "leaky_relu",
    _leaky_relu,
    _leaky_relu_vjp,
    1,
    "x if x > 0 else slope * x",
    "dx = g * (1 if x > 0 else slope)",
    domain="away_from_zero",
    reads=(0,),
)
_op(
    "elu",
    _elu,
    _elu_vjp,
    1,
    "x if x > 0 else alpha * (e^x - 1)",
    "dx = g * (1 if x > 0 else alpha * e^x)",
    domain="away_from_zero",
    reads=(0, "out"),
)


def _maximum(x, y):
    return np.maximum(x, y)


def _maximum_vjp(g, out, x, y):
    # NOTE: where x == y the gradient is split evenly between the two, as torch.maximum does.
    x_wins = ((x > y) + 0.5 * (x == y)).astype(np.result_type(g), copy=False)
    return g * x_wins, g * (1.0 - x_wins)


_op(
    "maximum",
    _maximum,
    _maximum_vjp,
    2,
    "max(x, y)",
    "dx = g * [x > y], dy = g * [y > x]; ties split",
    kind="binary",
    domain="distinct",
    reads=(0, 1),
)


def _where(condition, x, y):
    return np.where(condition, x, y)


def _where_vjp(g, out, condition, x, y):
    # NOTE: the condition is read as np.where reads it (nonzero is true) and gets no
    # gradient, as torch.where's boolean condition gets none.
    take_x = np.asarray(condition, dtype=bool)
    return None, g * take_x, g * ~take_x


_op(
    "where",
    _where,
    _where_vjp,
    3,
    "where(condition, x, y)",
    "dx = g * condition, dy = g * (not condition); no gradient for the condition",
    kind="where",
    reads=(0,),
)


# --- reductions ---------------------------------------------------------------------------
def _expand(g, x_shape, axis, keepdims):
    """Put back the reduced axes of `g` and broadcast it to the input's shape (a read-only
    view, as np.broadcast_to makes, built directly: this runs for every sum and mean)."""
    if type(g) is not np.ndarray or not g.flags.c_contiguous:
        if axis is not None and not keepdims:
            g = np.expand_dims(g, axis)
        return np.broadcast_to(g, x_shape)
    if axis is None:
        kept = (1,) * len(x_shape)
    elif keepdims:
        kept = g.shape
    else:
        kept = tuple(1 if i in axis else n for i, n in enumerate(x_shape))
    g = g.reshape(kept)
    strides = tuple(
        0 if k == 1 and n != 1 else stride for k, n, stride in zip(kept, x_shape, g.strides)
    )
    view = np.ndarray(x_shape, g.dtype, g, 0, strides)
    view.flags.writeable = False
    return view


def _sum(x, axis=None, keepdims=False):
    if type(x) is np.ndarray and x.dtype.kind == "f":
        return reduce_sum(x, axis, keepdims)
    return x.sum(axis=axis, keepdims=keepdims)


def _sum_vjp(g, out, x, axis=None, keepdims=False):
    return (_expand(g, x.shape, axis, keepdims),)


def _mean(x, axis=None, keepdims=False):
    return reduce_mean(x, axis, keepdims)


def _mean_vjp(g, out, x, axis=None, keepdims=False):
    count = x.size if axis is None else math.prod([x.shape[a] for a in axis])
    return (_expand(g / count, x.shape, axis, keepdims),)


def _max(x, axis=None, keepdims=False):
    return x.max(axis=axis, keepdims=keepdims)


def _max_vjp(g, out, x, axis=None, keepdims=False):
    return (_shared_among(g, x, x == x.max(axis=axis, keepdims=True), axis, keepdims),)


def _min(x, axis=None, keepdims=False):
    return x.min(axis=axis, keepdims=keepdims)


def _min_vjp(g, out, x, axis=None, keepdims=False):
    return (_shared_among(g, x, x == x.min(axis=axis, keepdims=True), axis, keepdims),)


def _shared_among(g, x, winners, axis, keepdims):
    """The gradient of max or min: g goes to the winners of each reduced slice."""
    # NOTE: ties share the gradient evenly (torch.amax's and torch.amin's convention), so the
    # VJP stays a linear map that central differences can check away from ties.
    share = (winners / winners.sum(axis=axis, keepdims=True)).astype(np.result_type(g), copy=False)
    return _expand(g, x.shape, axis, keepdims) * share


_op("sum", _sum, _sum_vjp, 1, "sum(x, axis)", "dx = broadcast(g)", kind="reduce", uses_values=False)
_op(
    "mean",
    _mean,
    _mean_vjp,
    1,
    "mean(x, axis)",
    "dx = broadcast(g) / n",
    kind="reduce",
    uses_values=False,
)
_op(
    "max",
    _max,
    _max_vjp,
    1,
    "max(x, axis)",
    "dx = g at the argmax (ties share)",
    kind="reduce",
    domain="distinct",
    reads=(0,),
)
_op(
    "min",
    _min,
    _min_vjp,
    1,
    "min(x, axis)",
    "dx = g at the argmin (ties share)",
    kind="reduce",
    domain="distinct",
    reads=(0,),
)


# --- softmax family ---------------------------------------------------------------------
def _softmax(x, axis=-1):
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def _softmax_vjp(g, out, x, axis=-1):
    return (out * (g - (g * out).sum(axis=axis, keepdims=True)),)


def _log_softmax(x, axis=-1):
    # Subtracting the max first keeps exp() finite for logits of 1e4 and beyond.
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _log_softmax_vjp(g, out, x, axis=-1):
    return (g - np.exp(out) * g.sum(axis=axis, keepdims=True),)


_op(
    "softmax",
    _softmax,
    _softmax_vjp,
    1,
    "e^x / sum(e^x)",
    "dx = s * (g - sum(g * s))",
    kind="along_axis",
    reads=("out",),
)
_op(
    "log_softmax",
    _log_softmax,
    _log_softmax_vjp,
    1,
    "x - log(sum(e^x))",
    "dx = g - softmax(x) * sum(g)",
    kind="along_axis",
    reads=("out",),
)


# --- shapes, indexing, joining -----------------------------------------------------------
def _reshape(x, shape):
    return x.reshape(shape)


def _reshape_vjp(g, out, x, shape):
    return (g.reshape(x.shape),)


def _transpose(x, axes):
    return x.transpose(axes)


def _transpose_vjp(g, out, x, axes):
    return (g.transpose(np.argsort(axes)),)


def _is_int_array(part):
    """Integer-array indices may repeat a position, so their VJP must add, not assign."""
    return isinstance(part, np.ndarray) and part.dtype.kind in "iu"


def _getitem(x, index):
    return x[index]


def _getitem_vjp(g, out, x, index):
    parts = index if isinstance(index, tuple) else (index,)
    if len(parts) == x.ndim and all(_is_int_array(p) for p in parts):
        # Every axis indexed by integers (cross-entropy's picks): a flat bincount adds up
        # repeated positions and is many times faster than np.add.at.
        flat = np.ravel_multi_index(np.broadcast_arrays(*parts), x.shape, mode="wrap")
        summed = np.bincount(flat.ravel(), weights=np.ravel(g), minlength=x.size)
        return (summed.reshape(x.shape).astype(np.result_type(g), copy=False),)
    gx = np.zeros(x.shape, dtype=np.result_type(g))
    if any(_is_int_array(p) for p in parts):
        np.add.at(gx, index, g)  # repeated integer indices add up
    else:
        gx[index] = g
    return (gx,)


def _concat(*xs, axis=0):
    return np.concatenate(xs, axis=axis)


def _concat_vjp(g, out, *xs, axis=0):
    bounds = np.cumsum([x.shape[axis] for x in xs])[:-1]
    return tuple(np.split(g, bounds, axis=axis))


def _stack(*xs, axis=0):
    return np.stack(xs, axis=axis)


def _stack_vjp(g, out, *xs, axis=0):
    return tuple(np.moveaxis(g, axis, 0))  # each input's slice of g, as views


_op(
    "reshape",
    _reshape,
    _reshape_vjp,
    1,
    "reshape(x)",
    "dx = reshape(g, x.shape)",
    kind="reshape",
    uses_values=False,
)
_op(
    "transpose",
    _transpose,
    _transpose_vjp,
    1,
    "transpose(x, axes)",
    "dx = transpose(g, axes^-1)",
    kind="transpose",
    uses_values=False,
)
_op(
    "getitem",
    _getitem,
    _getitem_vjp,
    1,
    "x[index]",
    "dx = zeros with g added at index",
    kind="index",
    uses_values=False,
)
_op(
    "concat",
    _concat,
    _concat_vjp,
    -1,
    "concat(xs, axis)",
    "dxs = split(g, axis)",
    kind="concat",
    uses_values=False,
)
_op(
    "stack",
    _stack,
    _stack_vjp,
    -1,
    "stack(xs, axis)",
    "dxs = unstack(g, axis)",
    kind="stack",
    uses_values=False,
)
