"""`assert_gradients`: the engine's gradients against central differences in float64, with a
failure message that names the input, the worst component, both values and the error."""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
from topograd.engine.gradcheck import LeafCheck, compare_gradients
from topograd.engine.modes import same_randomness
from topograd.engine.nn.module import Module
from topograd.engine.tensor import Tensor


class GradientMismatchError(AssertionError):
    """The engine's gradient of one input disagrees with central differences.

    `check` holds both gradients at the checked components; `inputs` the float64 values the
    function was called with (a hypothesis counterexample, once shrunk).
    """

    def __init__(self, message: str, check: LeafCheck, inputs: list[np.ndarray]):
        super().__init__(message)
        self.check = check
        self.inputs = inputs

    @property
    def input_size(self) -> int:
        """Elements in all the function's inputs together (how small a counterexample is)."""
        return sum(int(np.size(x)) for x in self.inputs)


def assert_gradients(fn, *inputs, eps=1e-6, tol=1e-6, seed=0):
    """Assert that the engine's gradients of `fn(*inputs)` match central differences.

    >>> import numpy as np
    >>> from topograd.engine.testing import assert_gradients
    >>> checks = assert_gradients(lambda x: (x * x).sum(), np.array([1.0, -2.0]))

    Checked are the arrays and numbers among `inputs` (turned into float64 tensors), the
    tensors that require grad, and, when `fn` is a Module, all its parameters. The output,
    if not a scalar, is reduced to sum(out * w) with fixed random weights (`seed`). Each
    call of `fn` starts from the same random state, so dropout draws the same masks every
    time; a module's buffers (running statistics) are restored afterwards. Passes when the
    notes' relative error ||a - n|| / (||a|| + ||n||) is below `tol` for every input, and
    returns the per-input LeafChecks; otherwise raises GradientMismatchError.
    """
    tensors = [_as_tensor(x, position) for position, x in enumerate(inputs)]
    leaves = {_label(t, position): t for position, t in enumerate(tensors) if t.requires_grad}
    module = fn if isinstance(fn, Module) else None
    if module is not None:
        for name, parameter in module.named_parameters():
            _require_float64(parameter, f"parameter {name!r}")
            leaves[f"parameter {name!r}"] = parameter
    if not leaves:
        raise ValueError("assert_gradients: nothing to check (no input requires grad)")
    generators = module.generators() if module is not None else []
    saved = module.state_dict() if module is not None else None
    given = [np.array(t.data, dtype=np.float64) for t in tensors]

    def output_of():
        with same_randomness(seed, generators):
            return fn(*tensors)

    with ExitStack() as restore:
        if saved is not None:  # running statistics move with every call in training mode
            restore.callback(module.load_state_dict, saved)
        try:
            checks = compare_gradients(output_of, leaves, eps=eps, tol=tol, seed=seed)
        except (ValueError, TypeError, IndexError, FloatingPointError) as error:
            raise AssertionError(
                f"assert_gradients: the function or its backward pass raised "
                f"{type(error).__name__}: {error}"
            ) from error
    for check in checks:
        if not check.error < tol:
            raise GradientMismatchError(_message(check, eps, tol), check, given)
    return checks


def _as_tensor(value, position) -> Tensor:
    if isinstance(value, Tensor):
        if value.requires_grad:
            _require_float64(value, f"input {position}")
        return value
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(f"assert_gradients: input {position} is not numeric ({array.dtype})")
    return Tensor(array.astype(np.float64), requires_grad=True)


def _require_float64(tensor: Tensor, what: str) -> None:
    if tensor.dtype != np.float64:
        raise TypeError(
            f"assert_gradients: {what} is {tensor.dtype}; central differences need float64 "
            "(in float32 they are good to about 1e-3)"
        )


def _label(tensor: Tensor, position: int) -> str:
    return f"input {position} {tensor.name!r}" if tensor.name else f"input {position}"


def _message(check: LeafCheck, eps: float, tol: float) -> str:
    shape = f"shape {check.shape}" if check.shape else "a scalar"
    if check.engine_shape != check.shape:
        return (
            f"gradient of {check.label} ({shape}): the engine's gradient has shape "
            f"{check.engine_shape}; it must have the input's shape {check.shape}"
        )
    index = check.worst_index
    where = f"[{', '.join(map(str, index))}]" if index else ""
    a, n = check.analytic[check.worst], check.numeric[check.worst]
    return (
        f"gradient of {check.label} ({shape}) does not match central differences: relative "
        f"error {check.error:.3g} >= tol {tol:g}\n"
        f"  worst component {check.label}{where}: engine {a:.10g}, central differences "
        f"{n:.10g} (|difference| {abs(a - n):.3g}, relative {check.worst_error:.3g})\n"
        f"  (the notes' ||a - n|| / (||a|| + ||n||), central differences with step {eps:g} in "
        "float64)"
    )
