"""`Tensor`: a node of the computation graph holding a numpy value and, after backward, a grad.

A 0-d tensor is the scalar mode (micrograd-style graphs of single numbers). Internally a
float64 scalar is kept as a Python float and a float32 one as a numpy scalar: arithmetic on a
Python float is about eight times cheaper than on a numpy scalar and fifty times cheaper than
on a 0-d array. `.data` and `.grad` always hand out ndarrays.
"""

from __future__ import annotations

import itertools
from types import MappingProxyType

import numpy as np
from topograd.engine.executor import describe, evaluate, run_backward
from topograd.engine.modes import STATE, AnomalyError
from topograd.engine.ops import OPS

_F64 = np.dtype(np.float64)
_FLOAT_DTYPES = (_F64, np.dtype(np.float32))
_ids = itertools.count()
_next_id = _ids.__next__
_new_object = object.__new__
_NO_ATTRS = MappingProxyType({})  # shared by every node without attributes: no dict per node


def _as_value(array, dtype=None):
    """Convert user data to the internal form (a copy): a float ndarray, or a scalar if 0-d."""
    if isinstance(array, Tensor):
        array = array._data
    array = np.array(array, dtype=dtype, copy=True)
    if dtype is None and array.dtype not in _FLOAT_DTYPES:
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise TypeError(f"Tensor data must be numeric, got dtype {array.dtype}")
        array = array.astype(np.float64)
    if array.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"Tensor dtype must be float64 or float32, got {array.dtype}")
    return _internal(array)


def _internal(array):
    """The stored form of a float ndarray: itself, or a scalar when it is 0-d."""
    if array.ndim:
        return array
    return float(array) if array.dtype == _F64 else array[()]


def unit_gradient(value):
    """The gradient 1 in the stored form of `value` (what backward starts from)."""
    if type(value) is float:
        return 1.0
    return _internal(np.ones_like(value))


class Tensor:
    """A value in a computation graph, with PyTorch's names.

    >>> a = Tensor(2.0, requires_grad=True)
    >>> b = a * a + a
    >>> b.backward()
    >>> float(a.grad)
    5.0

    Calling `backward()` twice adds into `.grad` again, as in PyTorch: clear grads between
    steps (an optimizer's `zero_grad()`, or `t.grad = None`).
    """

    __slots__ = (
        "__weakref__",
        "_data",
        "_grad",
        "_pending",
        "_users",
        "attrs",
        "constant",
        "ctx",
        "id",
        "inputs",
        "layer",
        "name",
        "op",
        "requires_grad",
        "retains_grad",
        "source",
    )
    __array_ufunc__ = None  # numpy defers to our reflected operators (2.0 * t, arr + t)

    def __init__(self, data, requires_grad=False, name=None, dtype=None):
        # The same fields as `_node`, written out twice on purpose: `_node` runs once per op
        # on the hot path and stays one function without a helper call.
        self._data = _as_value(data, None if dtype is None else np.dtype(dtype))
        self._grad = None
        self._pending = None
        self._users = 0
        self.requires_grad = bool(requires_grad)
        self.name = name
        self.op = None
        self.inputs = ()
        self.attrs = _NO_ATTRS
        self.ctx = None
        self.id = _next_id()
        self.layer = STATE.layer
        self.source = None
        self.retains_grad = False
        self.constant = False

    @classmethod
    def _node(cls, value, requires_grad, op=None, inputs=(), attrs=_NO_ATTRS, ctx=None):
        """Fast constructor for values the engine computed itself (no conversion, no copy)."""
        node = _new_object(cls)
        node._data = value
        node._grad = None
        node._pending = None
        node._users = 0
        node.requires_grad = requires_grad
        node.name = None
        node.op = op
        node.inputs = inputs
        node.attrs = attrs
        node.ctx = ctx
        node.id = _next_id()
        node.layer = STATE.layer
        node.source = None
        node.retains_grad = False
        node.constant = False
        return node

    @classmethod
    def _const(cls, value):
        """A leaf the engine made to hold a number, a mask or a label: never trained."""
        node = cls._node(value, False)
        node.constant = True
        return node

    # --- data and gradient -------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        """The value as an ndarray (0-d for a scalar)."""
        d = self._data
        return d if type(d) is np.ndarray else np.asarray(d)

    @data.setter
    def data(self, value):
        """Replace the value without recording anything (an optimizer's update). Like
        PyTorch's `.data =`, an ndarray of the right dtype is kept, not copied."""
        value = np.asarray(value, dtype=self.dtype)
        if value.shape != self.shape:
            raise ValueError(
                f"cannot set data of shape {value.shape} on a tensor of shape {self.shape}"
            )
        self._data = _internal(value)

    @property
    def grad(self):
        """The accumulated gradient (an ndarray), or None before any backward reached it."""
        g = self._grad
        return g if g is None or type(g) is np.ndarray else np.asarray(g)

    @grad.setter
    def grad(self, value):
        if value is None:
            self._grad = None
            return
        value = np.asarray(value, dtype=self.dtype)
        if value.shape != self.shape:
            raise ValueError(
                f"grad of shape {value.shape} does not match tensor shape {self.shape}"
            )
        self._grad = _internal(value.copy())

    @property
    def shape(self) -> tuple:
        d = self._data
        return () if type(d) is float else d.shape

    @property
    def ndim(self) -> int:
        d = self._data
        return 0 if type(d) is float else d.ndim

    @property
    def size(self) -> int:
        d = self._data
        return 1 if type(d) is float else d.size

    @property
    def dtype(self) -> np.dtype:
        d = self._data
        return _F64 if type(d) is float else d.dtype

    @property
    def is_leaf(self) -> bool:
        """True for tensors made by the user rather than by an op."""
        return self.op is None

    def item(self) -> float:
        """The value of a one-element tensor as a Python float."""
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return float(np.asarray(self._data).reshape(()))

    def numpy(self) -> np.ndarray:
        """The value as an ndarray (same as `.data`)."""
        return self.data

    def detach(self) -> Tensor:
        """The same value as a new leaf that records no history."""
        return Tensor._node(self._data, False)

    def retain_grad(self) -> Tensor:
        """Keep `.grad` on this non-leaf tensor during backward, as PyTorch's retain_grad."""
        self.retains_grad = True
        return self

    def named(self, name: str) -> Tensor:
        """Give the node a name (shown by the graph, the stepper and error messages)."""
        self.name = name
        return self

    def backward(self, grad=None) -> None:
        """Backpropagate from this tensor; gradients accumulate into leaves' `.grad`."""
        if not self.requires_grad:
            raise RuntimeError(
                f"backward() from {describe(self)}: it does not require grad "
                "(no input had requires_grad=True, or it was made under no_grad)"
            )
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    "backward() without a gradient needs a one-element output, "
                    f"got shape {self.shape}"
                )
            grad = unit_gradient(self._data)
        else:
            grad = np.array(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(
                    f"backward(): gradient shape {grad.shape} != output shape {self.shape}"
                )
            grad = _internal(grad)
        run_backward(self, grad)

    # --- operators ---------------------------------------------------------------------
    def _lift(self, other) -> Tensor:
        if isinstance(other, Tensor):
            return other
        if isinstance(other, (int, float)):
            d = self._data
            if type(d) is float or d.dtype == _F64:
                return Tensor._const(float(other))
            return Tensor._const(d.dtype.type(other))
        return Tensor._const(_as_value(other, self.dtype))

    def __add__(self, other):
        return _record(OPS["add"], (self, self._lift(other)), _NO_ATTRS)

    def __radd__(self, other):
        return _record(OPS["add"], (self._lift(other), self), _NO_ATTRS)

    def __sub__(self, other):
        return _record(OPS["sub"], (self, self._lift(other)), _NO_ATTRS)

    def __rsub__(self, other):
        return _record(OPS["sub"], (self._lift(other), self), _NO_ATTRS)

    def __mul__(self, other):
        return _record(OPS["mul"], (self, self._lift(other)), _NO_ATTRS)

    def __rmul__(self, other):
        return _record(OPS["mul"], (self._lift(other), self), _NO_ATTRS)

    def __truediv__(self, other):
        return _record(OPS["div"], (self, self._lift(other)), _NO_ATTRS)

    def __rtruediv__(self, other):
        return _record(OPS["div"], (self._lift(other), self), _NO_ATTRS)

    def __pow__(self, exponent):
        if isinstance(exponent, (int, float)):
            return apply(OPS["power"], self, exponent=float(exponent))
        return apply(OPS["pow"], self, self._lift(exponent))

    def __rpow__(self, base):
        return apply(OPS["pow"], self._lift(base), self)

    def __matmul__(self, other):
        return _record(OPS["matmul"], (self, self._lift(other)), _NO_ATTRS)

    def __rmatmul__(self, other):
        return _record(OPS["matmul"], (self._lift(other), self), _NO_ATTRS)

    def __neg__(self):
        return apply(OPS["neg"], self)

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index._data
        return apply(OPS["getitem"], self, index=_freeze_index(index))

    # --- reductions and elementwise functions -------------------------------------------
    def sum(self, axis=None, keepdims=False):
        return apply(OPS["sum"], self, axis=_norm_axis(axis, self.ndim), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return apply(OPS["mean"], self, axis=_norm_axis(axis, self.ndim), keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return apply(OPS["max"], self, axis=_norm_axis(axis, self.ndim), keepdims=keepdims)

    def var(self, axis=None, keepdims=False, correction=1):
        """Variance, composed of primitives; `correction=1` (PyTorch's default) is unbiased.

        Pass `correction=0` for the biased variance that numpy and batch norm use.
        """
        axis = _norm_axis(axis, self.ndim)
        count = self.size if axis is None else int(np.prod([self.shape[a] for a in axis]))
        centered = self - self.mean(axis=axis, keepdims=True)
        return (centered * centered).sum(axis=axis, keepdims=keepdims) / (count - correction)

    def exp(self):
        return apply(OPS["exp"], self)

    def log(self):
        return apply(OPS["log"], self)

    def sqrt(self):
        return apply(OPS["sqrt"], self)

    def abs(self):
        return apply(OPS["abs"], self)

    def tanh(self):
        return apply(OPS["tanh"], self)

    def sigmoid(self):
        return apply(OPS["sigmoid"], self)

    def relu(self):
        return apply(OPS["relu"], self)

    def clip(self, low=None, high=None):
        """Values limited to [low, high] (either may be None), like torch.clamp."""
        if low is None and high is None:
            raise ValueError("clip needs low, high or both")
        if low is not None and high is not None and low > high:
            raise ValueError(f"clip needs low <= high, got low={low}, high={high}")
        low = None if low is None else float(low)
        high = None if high is None else float(high)
        return apply(OPS["clip"], self, low=low, high=high)

    # --- shapes ----------------------------------------------------------------------
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return apply(OPS["reshape"], self, shape=tuple(int(n) for n in shape))

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if not axes:
            axes = tuple(reversed(range(self.ndim)))
        return apply(OPS["transpose"], self, axes=tuple(int(a) for a in axes))

    @property
    def T(self):
        return self.transpose()

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self):
        label = f", name={self.name!r}" if self.name else ""
        grad = ", requires_grad=True" if self.requires_grad else ""
        op = f", op={self.op.name}" if self.op is not None else ""
        body = np.array2string(self.data, precision=4, threshold=20, separator=", ")
        return f"Tensor({body}{op}{grad}{label})"


def _norm_axis(axis, ndim):
    """Normalize an axis argument to None or a sorted tuple of non-negative ints."""
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    normalized = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        normalized.append(int(a) % max(ndim, 1))
    return tuple(sorted(set(normalized)))


def _freeze_index(index):
    """Turn lists inside an index into arrays so numpy reads them as fancy indexing."""
    if isinstance(index, tuple):
        return tuple(np.asarray(i) if isinstance(i, list) else i for i in index)
    return np.asarray(index) if isinstance(index, list) else index


def apply(op, *inputs, **attrs):
    """Run primitive `op` on tensors and record the node (unless in `no_grad`)."""
    return _record(op, inputs, attrs or _NO_ATTRS)


def _record(op, inputs, attrs):
    try:
        value, ctx = evaluate(op, inputs, attrs)
    except ValueError as error:
        shapes = " and ".join(str(t.shape) for t in inputs)
        raise ValueError(f"{op.name}: cannot apply to shapes {shapes}: {error}") from None
    if STATE.grad_enabled:
        if len(inputs) == 2:
            requires_grad = inputs[0].requires_grad or inputs[1].requires_grad
        else:
            requires_grad = any(t.requires_grad for t in inputs)
        node = Tensor._node(value, requires_grad, op, inputs, attrs, ctx)
    else:
        node = Tensor._node(value, False)
    if STATE.anomaly and not np.all(np.isfinite(value)):
        raise AnomalyError(
            f"forward: {describe(node)} produced a non-finite value from inputs "
            + ", ".join(describe(t) for t in inputs),
            node=node,
        )
    return node
