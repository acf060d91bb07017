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
from topograd.engine.executor import (
    _POOL,
    Released,
    describe,
    evaluate,
    note_change,
    release_unheld,
    restore,
    run_backward,
    watch,
)
from topograd.engine.modes import AnomalyError, current_layer, current_modes
from topograd.engine.ops import OPS

_F64 = np.dtype(np.float64)
_FLOAT_DTYPES = (_F64, np.dtype(np.float32))
_ids = itertools.count()
_next_id = _ids.__next__
_new_object = object.__new__
_NO_ATTRS = MappingProxyType({})  # shared by every node without attributes: no dict per node


def _as_value(array, dtype=None):
    """Convert user data to the internal form (a copy): an ndarray, or a scalar if 0-d.

    Floats stay float64 or float32 (other float widths become float64); integers and booleans
    keep their dtype, as PyTorch's do: index tensors and masks, which never take a gradient.
    """
    if isinstance(array, Tensor):
        array = array._value()
    array = np.array(array, dtype=dtype, copy=True)
    kind = array.dtype.kind
    if kind not in "fiub":
        raise TypeError(f"Tensor data must be numeric or boolean, got dtype {array.dtype}")
    if kind == "f" and array.dtype not in _FLOAT_DTYPES:
        if dtype is not None:
            raise TypeError(f"Tensor float dtype must be float64 or float32, got {array.dtype}")
        array = array.astype(np.float64)
    return _internal(array)


def _internal(array):
    """The stored form of a float ndarray: itself, or a scalar when it is 0-d."""
    if array.ndim:
        return array
    return float(array) if array.dtype == _F64 else array[()]


def _check_differentiable(dtype) -> None:
    """Gradients exist for floats only, as in PyTorch (integer and boolean tensors index)."""
    if dtype.kind != "f":
        raise TypeError(f"only floating-point tensors can require gradients, got dtype {dtype}")


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
        "_changed",
        "_data",
        "_grad",
        "_owner",
        "_pending",
        "_saved",
        "_users",
        "_version",
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
        if requires_grad:
            _check_differentiable(self.dtype)
        self._grad = None
        self._version = 0
        self._changed = 0
        self._owner = None  # the backward pass keeping its bookkeeping here (executor.Claim)
        self.requires_grad = bool(requires_grad)
        self.name = name
        self.op = None
        self.inputs = ()
        self.attrs = _NO_ATTRS
        self.ctx = None
        self.id = self._saved = _next_id()
        self.layer = current_layer()
        self.source = None
        self.retains_grad = False
        self.constant = False

    @classmethod
    def _node(cls, value, requires_grad, op=None, inputs=(), attrs=_NO_ATTRS, ctx=None, layer=None):
        """Fast constructor for values the engine computed itself (no conversion, no copy)."""
        node = _new_object(cls)
        node._data = value
        node._grad = None
        node._version = 0
        node._changed = 0
        node._owner = None
        node.requires_grad = requires_grad
        node.name = None
        node.op = op
        node.inputs = inputs
        node.attrs = attrs
        node.ctx = ctx
        # `id` is also the clock time the node read its inputs: a value changed in place
        # later carries a later time (`_changed`), which a backward pass refuses
        node.id = node._saved = _next_id()
        node.layer = layer
        node.source = None
        node.retains_grad = False
        node.constant = False
        return node

    @classmethod
    def _const(cls, value):
        """A leaf the engine made to hold a number, a mask or a label: never trained."""
        node = cls._node(value, False, layer=current_layer())
        node.constant = True
        return node

    # --- data and gradient -------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        """The value as an ndarray (0-d for a scalar)."""
        d = self._data
        if type(d) is np.ndarray:
            return d
        return np.asarray(restore(self) if type(d) is Released else d)

    def _value(self):
        """The stored value (an ndarray or a scalar), computed again if the forward pass
        released it (see executor.release_unheld)."""
        d = self._data
        return restore(self) if type(d) is Released else d

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
        self._mark_changed()

    def _mark_changed(self) -> None:
        """Count an in-place change of the value and note when it happened (on the clock
        that numbers nodes), so that nodes made before it refuse to backpropagate."""
        self._version += 1
        self._changed = _next_id()
        note_change(self._changed)

    @property
    def version(self) -> int:
        """How many times the value was changed in place (`.data =`, an optimizer step, an
        in-place operator); a backward pass refuses values changed since the forward pass
        read them (PyTorch's `_version`)."""
        return self._version

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
        return float(np.asarray(self._value()).reshape(()))

    def numpy(self) -> np.ndarray:
        """The value as an ndarray (same as `.data`)."""
        return self.data

    def detach(self) -> Tensor:
        """The same value as a new leaf that records no history."""
        return Tensor._node(self._value(), False, layer=current_layer())

    def retain_grad(self) -> Tensor:
        """Keep `.grad` on this non-leaf tensor during backward, as PyTorch's retain_grad."""
        self.retains_grad = True
        return self

    def named(self, name: str) -> Tensor:
        """Give the node a name (shown by the graph, the stepper and error messages)."""
        self.name = name
        return self

    def backward(self, grad=None, retain_graph=False) -> None:
        """Backpropagate from this tensor; gradients accumulate into leaves' `.grad`.

        Afterwards the graph behind this tensor is freed (its links and saved contexts), as
        PyTorch frees saved tensors: pass `retain_graph=True` to backpropagate through the
        same graph again. Values modified in place since the forward pass are refused.
        """
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
        run_backward(self, grad, retain_graph)

    # --- operators ---------------------------------------------------------------------
    def _lift(self, other) -> Tensor:
        """`other` as a constant input beside this tensor. A Python number takes this
        tensor's float dtype (a float32 tensor stays float32, as in PyTorch); an array keeps
        a float dtype of its own (float32 with float64 gives float64, PyTorch's promotion),
        while integer and boolean arrays take this tensor's float dtype."""
        if isinstance(other, Tensor):
            return other
        d = self._data
        if isinstance(other, (int, float)):
            if type(d) is float or d.dtype == _F64:
                return Tensor._const(float(other))
            if d.dtype.kind == "f":
                return Tensor._const(d.dtype.type(other))
            return Tensor._const(_as_value(other))
        value = _as_value(other)
        kind = np.asarray(value).dtype.kind
        if kind != "f" and self.dtype.kind == "f":
            value = _as_value(value, self.dtype)
        return Tensor._const(value)

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
        if isinstance(exponent, (int, float, np.integer, np.floating)) and not isinstance(
            exponent, bool
        ):  # a constant exponent (numpy's numbers too): no log(x) for a gradient nobody wants
            return apply(OPS["power"], self, exponent=float(exponent))
        return apply(OPS["pow"], self, self._lift(exponent))

    def __rpow__(self, base):
        return apply(OPS["pow"], self._lift(base), self)

    # --- in place ------------------------------------------------------------------------
    def _in_place(self, op_name, ufunc, other):
        """`x += y` and friends. On a tensor that records no history this changes the value
        in place (numpy's `out=`, so aliases see it) and counts a new version; a backward
        pass that needs the old value is then refused. A leaf that requires grad may only
        be changed so under `no_grad` (PyTorch's rule: an optimizer's update). On a tensor
        with history the name is bound to a new node instead (see the README's conventions).
        """
        recording = current_modes().grad_enabled
        other_tracked = isinstance(other, Tensor) and other.requires_grad
        if recording and (self.requires_grad or other_tracked):
            if self.requires_grad and self.op is None:
                raise RuntimeError(
                    f"{describe(self)} is a leaf that requires grad: an in-place operation on "
                    "it would lose the graph. Change it under `with tg.no_grad():` (as an "
                    "optimizer does) or compute a new tensor."
                )
            return _record(OPS[op_name], (self, self._lift(other)), _NO_ATTRS)
        value = other._value() if isinstance(other, Tensor) else other
        data = self._value()
        if type(data) is np.ndarray:
            ufunc(data, value, out=data, casting="same_kind")
        else:
            result = np.asarray(ufunc(np.asarray(data), value))
            if result.shape != ():
                raise ValueError(
                    f"in-place {op_name} would change the shape () of {describe(self)} "
                    f"to {result.shape}"
                )
            self._data = _internal(result.astype(self.dtype, casting="same_kind"))
        self._mark_changed()
        return self

    def __iadd__(self, other):
        return self._in_place("add", np.add, other)

    def __isub__(self, other):
        return self._in_place("sub", np.subtract, other)

    def __imul__(self, other):
        return self._in_place("mul", np.multiply, other)

    def __itruediv__(self, other):
        return self._in_place("div", np.divide, other)

    # --- comparisons and Python's protocol ---------------------------------------------------
    __hash__ = object.__hash__  # identity: the graph walk and optimizer state key on it

    def _compare(self, ufunc, other):
        value = other._value() if isinstance(other, Tensor) else other
        return Tensor._const(_internal(np.asarray(ufunc(self._value(), value))))

    def __eq__(self, other):
        """Elementwise comparison: a boolean tensor without gradient, as in PyTorch."""
        return self._compare(np.equal, other)

    def __ne__(self, other):
        return self._compare(np.not_equal, other)

    def __lt__(self, other):
        return self._compare(np.less, other)

    def __le__(self, other):
        return self._compare(np.less_equal, other)

    def __gt__(self, other):
        return self._compare(np.greater, other)

    def __ge__(self, other):
        return self._compare(np.greater_equal, other)

    def __invert__(self):
        if self.dtype.kind not in "biu":
            raise TypeError(f"~ needs a boolean or integer tensor, got dtype {self.dtype}")
        return Tensor._const(_internal(np.asarray(np.invert(self._value()))))

    def __and__(self, other):
        return self._compare(np.logical_and, other)

    def __or__(self, other):
        return self._compare(np.logical_or, other)

    def __bool__(self):
        if self.size != 1:
            raise RuntimeError(
                f"the truth value of a tensor with {self.size} elements is ambiguous "
                "(use .any() or .all())"
            )
        return bool(np.asarray(self._value()).reshape(()))

    def __float__(self):
        return float(self._one_element("float()"))

    def __int__(self):
        return int(self._one_element("int()"))

    def __index__(self):
        if self.dtype.kind not in "iub":
            raise TypeError(f"only integer tensors can be used as an index, got {self.dtype}")
        return int(self._one_element("an index"))

    def _one_element(self, use):
        if self.size != 1:
            raise ValueError(f"{use} needs a tensor with one element, got shape {self.shape}")
        return np.asarray(self._value()).reshape(())

    def __array__(self, dtype=None, copy=None):
        """`np.asarray(t)`: the value (no gradient), as for a PyTorch CPU tensor."""
        value = np.asarray(self._value(), dtype=dtype)
        return value.copy() if copy else value

    def tolist(self):
        """The value as (nested) Python numbers."""
        return np.asarray(self._value()).tolist()

    def any(self) -> Tensor:
        return Tensor._const(_internal(np.asarray(np.any(self._value()))))

    def all(self) -> Tensor:
        return Tensor._const(_internal(np.asarray(np.all(self._value()))))

    def __matmul__(self, other):
        return _record(OPS["matmul"], (self, self._lift(other)), _NO_ATTRS)

    def __rmatmul__(self, other):
        return _record(OPS["matmul"], (self._lift(other), self), _NO_ATTRS)

    def __neg__(self):
        return apply(OPS["neg"], self)

    def __getitem__(self, index):
        return apply(OPS["getitem"], self, index=_freeze_index(index))

    # --- reductions and elementwise functions -------------------------------------------
    def sum(self, axis=None, keepdims=False):
        return apply(OPS["sum"], self, axis=_norm_axis(axis, self.ndim), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return apply(OPS["mean"], self, axis=_norm_axis(axis, self.ndim), keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        """The largest values along `axis` (torch.amax; ties share the gradient)."""
        return apply(OPS["max"], self, axis=_norm_axis(axis, self.ndim), keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        """The smallest values along `axis` (torch.amin; ties share the gradient)."""
        return apply(OPS["min"], self, axis=_norm_axis(axis, self.ndim), keepdims=keepdims)

    def argmax(self, axis=None, keepdims=False) -> Tensor:
        """Indices of the largest values (an int64 tensor without gradient; the first of
        ties, as numpy and PyTorch's CPU kernel pick)."""
        return self._indices(np.argmax, axis, keepdims)

    def argmin(self, axis=None, keepdims=False) -> Tensor:
        """Indices of the smallest values (an int64 tensor without gradient)."""
        return self._indices(np.argmin, axis, keepdims)

    def _indices(self, find, axis, keepdims):
        if axis is not None:
            axis = _norm_axis(axis, self.ndim)
            if len(axis) != 1:
                raise ValueError(f"argmax/argmin take one axis, got {axis}")
            axis = axis[0]
        found = find(np.asarray(self._value()), axis=axis, keepdims=keepdims)
        return Tensor._const(_internal(np.asarray(found, dtype=np.int64)))

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

    def where(self, condition, other) -> Tensor:
        """This tensor where `condition` holds, else `other` (torch.Tensor.where)."""
        from topograd.engine.functional import where

        return where(condition, self, other)

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

    def view(self, *shape):
        """The same as `reshape` (values are never shared between nodes here)."""
        return self.reshape(*shape)

    def unsqueeze(self, dim: int) -> Tensor:
        """Insert an axis of size 1 at `dim` (-ndim-1 <= dim <= ndim), as PyTorch's."""
        ndim = self.ndim
        if not -ndim - 1 <= dim <= ndim:
            raise ValueError(f"unsqueeze: dim {dim} is out of range for {ndim} dimensions")
        dim = dim % (ndim + 1)
        shape = self.shape
        return self.reshape(*shape[:dim], 1, *shape[dim:])

    def squeeze(self, dim=None) -> Tensor:
        """Remove axes of size 1 (only `dim`'s when given; an axis of another size stays,
        as in PyTorch)."""
        shape = self.shape
        if dim is None:
            dims = {i for i, n in enumerate(shape) if n == 1}
        else:
            dims = {a for a in _norm_axis(dim, self.ndim) if shape[a] == 1}
        return self.reshape(*(n for i, n in enumerate(shape) if i not in dims))

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Start (or stop) recording gradients for this leaf, in place, as PyTorch's."""
        if self.op is not None and not requires_grad:
            raise RuntimeError(
                f"{describe(self)} was made by an op: only a leaf's requires_grad can be "
                "turned off (use .detach())"
            )
        if requires_grad:
            _check_differentiable(self.dtype)
        self.requires_grad = bool(requires_grad)
        return self

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
    """Normalize an axis argument to None (every axis) or a sorted tuple of non-negative
    ints. An empty tuple means every axis, as in PyTorch."""
    if axis is None:
        return None
    if type(axis) is int and 0 <= axis < ndim:  # the common case
        return (axis,)
    if type(axis) is tuple:
        key = (axis, ndim)
        known = _AXES.get(key)
        if known is None:
            known = _AXES[key] = _normalized_axes(axis, ndim)
        return known
    return _normalized_axes(axis, ndim)


_AXES: dict = {}  # (axis tuple, ndim) -> its normalized form, for sums and means in loops


def _normalized_axes(axis, ndim):
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if not axes:
        return None
    normalized = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        normalized.append(int(a) % max(ndim, 1))
    return tuple(sorted(set(normalized)))


def _freeze_index(index):
    """An index as numpy reads it: lists and tensors (integer indices, boolean masks)
    become arrays; a float tensor is refused, as numpy refuses float indices."""
    if isinstance(index, tuple):
        return tuple(_index_part(part) for part in index)
    return _index_part(index)


def _index_part(part):
    if isinstance(part, Tensor):
        if part.dtype.kind not in "iub":
            raise IndexError(
                f"tensors used as indices must be integer or boolean, got dtype {part.dtype}"
            )
        return np.asarray(part._data)
    return np.asarray(part) if isinstance(part, list) else part


def apply(op, *inputs, **attrs):
    """Run primitive `op` on tensors and record the node (unless in `no_grad`)."""
    return _record(op, inputs, attrs or _NO_ATTRS)


def _record(op, inputs, attrs):
    if _POOL:  # values the graph no longer needs go before this op allocates its own
        release_unheld()
    modes = current_modes()
    recording = modes.grad_enabled
    try:
        if len(inputs) == 2:
            a, b = inputs
            requires_grad = recording and (a.requires_grad or b.requires_grad)
            if not attrs and (
                op.floats_ok  # scalar-mode arithmetic (arrays too): evaluate's fast path
                or (not op.saves and type(a._data) is np.ndarray and type(b._data) is np.ndarray)
            ):
                value = op.forward(a._data, b._data)
                ctx = None
            else:
                value, ctx = evaluate(op, inputs, attrs)
        elif len(inputs) == 1:  # unary ops (tanh, relu...): no generator on the hot path
            x = inputs[0]
            requires_grad = recording and x.requires_grad
            if op.saves or not (op.floats_ok or type(x._data) is np.ndarray):
                value, ctx = evaluate(op, inputs, attrs)
            else:  # evaluate's work without its calls: an array (or a float the op takes)
                value = op.forward(x._data, **attrs) if attrs else op.forward(x._data)
                ctx = None
        else:
            requires_grad = recording and any(t.requires_grad for t in inputs)
            value, ctx = evaluate(op, inputs, attrs)
    except Exception as error:
        if any(type(t._data) is Released for t in inputs):  # reached by walking `.inputs`
            for t in inputs:
                restore(t)
            return _record(op, inputs, attrs)
        if not isinstance(error, ValueError):
            raise
        shapes = " and ".join(str(t.shape) for t in inputs)
        raise ValueError(f"{op.name}: cannot apply to shapes {shapes}: {error}") from None
    # Tensor._node, written out: this runs once per op
    node = _new_object(Tensor)
    node._data = value
    node._grad = None
    node._version = 0
    node._changed = 0
    node._owner = None
    node.name = None
    node.id = node._saved = _next_id()
    node.layer = modes.layer
    node.source = None
    node.retains_grad = False
    node.constant = False
    if requires_grad:
        node.requires_grad = True
        node.op = op
        node.inputs = inputs
        node.attrs = attrs
        node.ctx = ctx
        if type(value) is not float and (_POOL or not op.reads_out):  # never in scalar mode
            watch(node, op, inputs)
    else:
        node.requires_grad = False
        node.ctx = None
        if recording:  # drawn in graphs (data paths), never backpropagated: no context kept
            node.op = op
            node.inputs = inputs
            node.attrs = attrs
        else:
            node.op = None
            node.inputs = ()
            node.attrs = _NO_ATTRS
    if modes.anomaly and not np.all(np.isfinite(value)):
        raise AnomalyError(
            f"forward: {describe(node)} produced a non-finite value from inputs "
            + ", ".join(describe(t) for t in inputs),
            node=node,
        )
    return node
