"""Evaluating a graph block: inputs and parameters become leaf tensors, every other line an
expression over the engine's functions. Used by the checker (to find shape errors at their
line) and by the builder (to make the graph a person steps through)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from topograd.dsl import ast
from topograd.dsl.values import FoldError, Ref, Symbol, describe, fold, is_number, name_pos, plain
from topograd.engine import Tensor
from topograd.engine.functional import FUNCTIONS

CONSTRUCTORS = ("randn", "rand", "zeros", "ones", "full", "arange")
"""Calls that make a leaf's starting value; the rest are engine functions (FUNCTIONS)."""

MAX_ELEMENTS = 10_000_000
"""The most elements one value of a graph may have (a leaf, or an operator's result)."""
MAX_MATMUL_WORK = 2**30
"""The most multiply-adds one '@' may take: a graph is for looking at, not for heavy work."""

_OPERATORS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
    "@": lambda a, b: a @ b,
}


@dataclass
class GraphValues:
    """The evaluated graph: each named line's tensor, and which are inputs/params/outputs."""

    tensors: dict[str, Tensor]
    roles: dict[str, str]

    def of_role(self, role: str) -> dict[str, Tensor]:
        return {n: t for n, t in self.tensors.items() if self.roles[n] == role}

    @property
    def outputs(self) -> dict[str, Tensor]:
        return self.of_role("output")

    @property
    def leaves(self) -> dict[str, Tensor]:
        return {n: t for n, t in self.tensors.items() if self.roles[n] in ("input", "param")}


def _shape(value, pos) -> tuple[int, ...]:
    values = value if isinstance(value, tuple) else (value,)
    if len(values) == 1 and isinstance(values[0], tuple):
        values = values[0]
    for size in values:
        if not (isinstance(size, int) and not isinstance(size, bool)) or size < 1:
            raise FoldError(pos, f"a shape is whole numbers >= 1, got {describe(size)}")
    if math.prod(values) > MAX_ELEMENTS:
        raise FoldError(pos, f"the shape {values} is too large for a graph")
    return tuple(values)


def constructed(ref: Ref, rng: np.random.Generator) -> np.ndarray:
    """The array a constructor call stands for: randn(2, 3), zeros(4), full(2, 2, value=3)..."""
    options = ref.options()
    if ref.name == "arange":
        if len(ref.args) != 1 or not isinstance(ref.args[0], int) or ref.args[0] < 1:
            raise FoldError(ref.pos, "arange takes one whole number >= 1, e.g. arange(6)")
        return np.arange(_shape(ref.args, ref.pos)[0], dtype=float)
    allowed = {"randn": {"scale"}, "rand": {"low", "high"}, "full": {"value"}}.get(ref.name, set())
    for key in options:
        if key not in allowed:
            extra = f" (options: {', '.join(sorted(allowed))})" if allowed else ""
            raise FoldError(ref.where(key), f"{ref.name} has no option {key!r}{extra}")
    for key, value in options.items():
        if not is_number(value):
            raise FoldError(ref.where(key), f"{key} must be a number, got {describe(value)}")
    if not ref.args:
        raise FoldError(ref.pos, f"{ref.name} needs a shape, e.g. {ref.name}(3, 4)")
    shape = _shape(ref.args, ref.pos)
    if ref.name == "randn":
        return rng.standard_normal(shape) * options.get("scale", 1.0)
    if ref.name == "rand":
        try:
            return rng.uniform(options.get("low", 0.0), options.get("high", 1.0), shape)
        except (ValueError, OverflowError) as error:
            raise FoldError(ref.pos, f"rand: {error}") from None
    if ref.name == "zeros":
        return np.zeros(shape)
    if ref.name == "ones":
        return np.ones(shape)
    if "value" not in options:
        raise FoldError(ref.pos, "full needs value=, e.g. full(2, 3, value=0.5)")
    return np.full(shape, float(options["value"]))


def leaf_value(expr, constants: dict, rng) -> np.ndarray | float:
    """The starting value of an input or param line: a number, a nested list, or a
    constructor call."""
    value = fold(expr, constants)
    if isinstance(value, Ref):
        if value.name not in CONSTRUCTORS:
            known = ", ".join(CONSTRUCTORS)
            raise FoldError(value.pos, f"an input or param starts from a number, a list or {known}")
        return constructed(value, rng)
    if is_number(value):
        return float(value)
    if isinstance(value, tuple):
        try:
            array = np.array(plain(value), dtype=float)
        except (TypeError, ValueError):
            raise FoldError(expr.pos, "a list value must be numbers in a regular shape") from None
        return array
    raise FoldError(
        expr.pos, f"an input or param needs a number or an array, got {describe(value)}"
    )


def _check_matmul(pos, left: tuple, right: tuple) -> None:
    """A matrix product whose inner sizes differ, said in the language's terms (numpy's
    own message talks about gufunc signatures)."""
    if not left or not right:
        raise FoldError(pos, f"'@' multiplies arrays, got shapes {left} and {right}", "use '*'")
    inner = right[-2] if len(right) >= 2 else right[0]
    if left[-1] != inner:
        raise FoldError(
            pos,
            f"'@' cannot multiply shapes {left} and {right}: the left side has {left[-1]} "
            f"columns, the right side {inner} rows",
            "A @ B needs A's last size to equal B's first; transpose(...) turns one around",
        )


def _check_size(pos, op: str, left: tuple, right: tuple) -> None:
    """Refuse an operation whose result (or, for '@', whose work) is too large, before it
    runs; shapes that do not fit together are left to the engine's own message."""
    if op == "@":
        rows = math.prod(left[:-1])
        columns = math.prod(right[:-2]) * right[-1] if len(right) >= 2 else 1
        size, work = rows * columns, rows * columns * left[-1]
    else:
        try:
            size = work = math.prod(np.broadcast_shapes(left, right))
        except ValueError:
            return
    if size > MAX_ELEMENTS or work > MAX_MATMUL_WORK:
        raise FoldError(pos, f"'{op}' on shapes {left} and {right} is too large for a graph")


class _Evaluator:
    def __init__(self, constants, tensors):
        self.constants, self.tensors = constants, tensors

    def __call__(self, expr):
        if isinstance(expr, ast.Number):
            return Tensor._const(float(expr.value))
        if isinstance(expr, ast.Neg):
            return -self(expr.operand)
        if isinstance(expr, ast.BinOp):
            left, right = self(expr.left), self(expr.right)
            if expr.op == "**" and not right.requires_grad and right.ndim == 0:
                right = right.item()  # a constant exponent: the engine's power op, no log(base)
            if expr.op == "@":
                _check_matmul(expr.pos, left.shape, right.shape)
            _check_size(expr.pos, expr.op, left.shape, np.shape(right))
            return self._engine(expr.pos, lambda: _OPERATORS[expr.op](left, right))
        if isinstance(expr, ast.Call):
            return self._call(expr)
        if isinstance(expr, ast.ListExpr | ast.TupleExpr | ast.String):
            value = fold(expr, self.constants)
            try:
                return Tensor._const(np.array(plain(value), dtype=float))
            except (TypeError, ValueError):
                raise FoldError(expr.pos, f"expected numbers, got {describe(value)}") from None
        raise FoldError(expr.pos, "not an expression")

    def _call(self, expr: ast.Call):
        if expr.bare and expr.name in self.tensors:
            return self.tensors[expr.name]
        if expr.bare and expr.name in self.constants:
            value = self.constants[expr.name]
            if is_number(value):
                return Tensor._const(float(value))
            raise FoldError(expr.pos, f"{expr.name} is {describe(value)}, not a number")
        if expr.name not in FUNCTIONS:
            from topograd.dsl.options import suggest

            if expr.name in CONSTRUCTORS:
                raise FoldError(
                    name_pos(expr.pos, expr.name),
                    f"{expr.name}(...) makes a starting value, so it belongs on an input or "
                    "param line",
                    f"e.g. param w = {expr.name}(...), then use w here",
                )
            if expr.bare:
                known = list(self.tensors) + list(self.constants) + list(FUNCTIONS.names())
                message = f"unknown name {expr.name!r} (not an earlier line, a let or a function)"
            else:
                known = FUNCTIONS.names()
                message = f"unknown function {expr.name!r}"
            hint = suggest(expr.name, known)
            if hint is None and not expr.bare:
                hint = f"functions: {', '.join(known)}"
            raise FoldError(name_pos(expr.pos, expr.name), message, hint)
        function = FUNCTIONS.get(expr.name)
        args = [self(arg) for arg in expr.args or ()]
        options = {}
        for keyword in expr.keywords:
            value = fold(keyword.value, self.constants)
            if isinstance(value, Symbol):
                raise FoldError(keyword.pos, f"unknown name {value.name!r}")
            options[keyword.name] = plain(value)
        return self._engine(expr.pos, lambda: function(*args, **options))

    @staticmethod
    def _engine(pos, compute):
        try:
            return compute()
        except (ValueError, TypeError, IndexError, AttributeError) as error:
            raise FoldError(pos, str(error)) from None
        except MemoryError:
            raise FoldError(pos, "the result is too large to compute") from None


def evaluate_graph(items, constants: dict, seed: int = 0) -> GraphValues:
    """Run a graph block's lines in order; raise FoldError at the first line that fails."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, Tensor] = {}
    roles: dict[str, str] = {}
    for item in items:
        if item.name in tensors or item.name in constants:
            raise FoldError(item.pos, f"{item.name!r} is already defined")
        if item.role in ("input", "param"):
            value = leaf_value(item.value, constants, rng)
            tensor = Tensor(value, requires_grad=True, name=item.name)
        else:
            tensor = _Evaluator(constants, tensors)(item.value)
            if tensor.name is None or tensor.name not in tensors:
                tensor.name = item.name
        tensors[item.name] = tensor
        roles[item.name] = item.role
    return GraphValues(tensors, roles)
