"""Constant folding: the value an expression stands for, or a located problem.

Values are plain Python: int, float, str, bool, None, tuples (from lists and tuples),
`Symbol` for a bare name that is no constant (an initializer, a mode: checked where it is
used) and `Ref` for a call with arguments (an optimizer, a schedule inside a warm-up).
Nothing here runs user code: the only operations are arithmetic on numbers.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

from topograd.dsl import ast

LITERALS = {"true": True, "false": False, "none": None, "inf": math.inf}


@dataclass(frozen=True)
class Symbol:
    """A bare name with no constant behind it, e.g. `he` in `init=he`."""

    name: str
    pos: ast.Pos = field(default=ast.NOWHERE, compare=False)

    def __str__(self):
        return self.name


@dataclass(frozen=True)
class Ref:
    """A call resolved to values: `name(args..., key=value...)`, each value folded."""

    name: str
    args: tuple = ()
    kwargs: tuple[tuple[str, object], ...] = ()
    pos: ast.Pos = field(default=ast.NOWHERE, compare=False)
    arg_pos: tuple[ast.Pos, ...] = field(default=(), compare=False)
    kwarg_pos: tuple[tuple[str, ast.Pos], ...] = field(default=(), compare=False)

    def options(self) -> dict:
        return dict(self.kwargs)

    def where(self, key) -> ast.Pos:
        """Position of keyword `key` or positional index `key`, else of the call."""
        if isinstance(key, int):
            return self.arg_pos[key] if key < len(self.arg_pos) else self.pos
        return dict(self.kwarg_pos).get(key, self.pos)


class FoldError(Exception):
    """An expression cannot be folded; carries the position to blame."""

    def __init__(self, pos: ast.Pos, message: str, hint: str | None = None):
        super().__init__(message)
        self.pos, self.message, self.hint = pos, message, hint


_ARITHMETIC = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "**": operator.pow,
}


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fold(expr, constants: dict) -> object:
    """The value of `expr`, with `constants` (let names) substituted."""
    if isinstance(expr, ast.Number | ast.String):
        return expr.value
    if isinstance(expr, ast.ListExpr | ast.TupleExpr):
        return tuple(fold(item, constants) for item in expr.items)
    if isinstance(expr, ast.Neg):
        value = fold(expr.operand, constants)
        if not is_number(value):
            raise FoldError(expr.pos, f"cannot negate {describe(value)}")
        return -value
    if isinstance(expr, ast.BinOp):
        return _binary(expr, constants)
    if isinstance(expr, ast.Call):
        return _call(expr, constants)
    raise FoldError(getattr(expr, "pos", ast.NOWHERE), "not a value")


def _binary(expr: ast.BinOp, constants: dict):
    left, right = fold(expr.left, constants), fold(expr.right, constants)
    if expr.op == "@" or not (is_number(left) and is_number(right)):
        raise FoldError(
            expr.pos,
            f"'{expr.op}' needs two numbers here, got {describe(left)} and {describe(right)}",
            "tensor arithmetic belongs in a graph block" if expr.op == "@" else None,
        )
    try:
        value = _ARITHMETIC[expr.op](left, right)
    except ZeroDivisionError:
        raise FoldError(expr.pos, "division by zero") from None
    except OverflowError:
        raise FoldError(expr.pos, "the number is too large") from None
    if isinstance(value, complex) or (isinstance(value, float) and math.isnan(value)):
        raise FoldError(expr.pos, f"{left} {expr.op} {right} is not a real number")
    if isinstance(value, int) and abs(value) > 10**18:
        raise FoldError(expr.pos, "the number is too large")
    return value


def _call(expr: ast.Call, constants: dict):
    if expr.bare:
        if expr.name in constants:
            return constants[expr.name]
        if expr.name in LITERALS:
            return LITERALS[expr.name]
        return Symbol(expr.name, expr.pos)
    args = tuple(fold(arg, constants) for arg in expr.args or ())
    seen: dict[str, ast.Pos] = {}
    for keyword in expr.keywords:
        if keyword.name in seen:
            raise FoldError(keyword.pos, f"option {keyword.name!r} is given twice")
        seen[keyword.name] = keyword.pos
    kwargs = tuple((k.name, fold(k.value, constants)) for k in expr.keywords)
    return Ref(
        expr.name,
        args,
        kwargs,
        expr.pos,
        tuple(getattr(arg, "pos", expr.pos) for arg in expr.args or ()),
        tuple(seen.items()),
    )


def name_pos(pos: ast.Pos, name: str) -> ast.Pos:
    """Where the name at the start of `pos` is written (a call's name, not its arguments),
    so that a caret stands under the name that is wrong."""
    if pos.line == 0:
        return pos
    return ast.Pos(pos.line, pos.column, pos.line, pos.column + len(name))


def describe(value) -> str:
    """How a value reads in a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        return f'the string "{value}"'
    if isinstance(value, Symbol):
        return f"the name {value.name!r}"
    if isinstance(value, Ref):
        return f"a call of {value.name!r}"
    if isinstance(value, tuple):
        return "a list"
    return repr(value)


def plain(value):
    """A folded value as the engine takes it: symbols become strings, tuples stay tuples."""
    if isinstance(value, Symbol):
        return value.name
    if isinstance(value, tuple):
        return tuple(plain(item) for item in value)
    return value
