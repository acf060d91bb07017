"""The syntax tree of a model file: frozen dataclasses that remember where they were written.

Positions are left out of equality (`compare=False`), so two parses of the same program
written differently (the formatter's output and its input) compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pos:
    """1-based line and column of the first character, and of the end (exclusive)."""

    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0


NOWHERE = Pos()


def _at():
    """Positions never take part in equality or repr."""
    return field(default=NOWHERE, compare=False, repr=False)


# --- expressions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Number:
    value: int | float
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class String:
    value: str
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class Keyword:
    """`name=value` inside a call's parentheses."""

    name: str
    value: Expr
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class Call:
    """A name with optional arguments: `relu`, `linear(64, init=he)`, a constant `width`.

    `args` is None when there were no parentheses at all, () for `f()`."""

    name: str
    args: tuple[Expr, ...] | None = None
    keywords: tuple[Keyword, ...] = ()
    pos: Pos = _at()  # noqa: RUF009

    @property
    def bare(self) -> bool:
        return self.args is None and not self.keywords


@dataclass(frozen=True)
class ListExpr:
    items: tuple[Expr, ...]
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class TupleExpr:
    items: tuple[Expr, ...]
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class BinOp:
    """`left op right` with op one of + - * / ** @."""

    op: str
    left: Expr
    right: Expr
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class Neg:
    operand: Expr
    pos: Pos = _at()  # noqa: RUF009


Expr = Number | String | Call | ListExpr | TupleExpr | BinOp | Neg


# --- statements -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Let:
    """`let name = expr`: a constant (a search may override it)."""

    name: str
    value: Expr
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class GraphItem:
    """One line of a graph: role is "input", "param", "value" or "output"."""

    role: str
    name: str
    value: Expr
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class Graph:
    name: str
    items: tuple[GraphItem, ...]
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class Layer:
    """`call` or `label = call` inside a network."""

    call: Call
    label: str | None = None
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class Repeat:
    count: Expr
    body: tuple[Layer | Repeat | Block, ...]
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class Block:
    """`call { body }` inside a network, optionally `label = ` before it and, after a
    residual block, `shortcut { ... }` (None when there is none)."""

    call: Call
    body: tuple[Layer | Repeat | Block, ...]
    label: str | None = None
    shortcut: tuple[Layer | Repeat | Block, ...] | None = None
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class Network:
    name: str
    options: tuple[Keyword, ...]
    body: tuple[Layer | Repeat | Block, ...]
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class Setting:
    """`key value` inside a section."""

    key: str
    value: Expr
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class Sample:
    """`name ~ distribution(...)` inside a search section."""

    name: str
    distribution: Call
    pos: Pos = _at()  # noqa: RUF009


@dataclass(frozen=True)
class Section:
    """`data { ... }`, `train { ... }`, `search { ... }` or `lr_range_test { ... }`."""

    kind: str
    items: tuple[Setting | Sample, ...]
    pos: Pos = _at()  # noqa: RUF009


Statement = Let | Graph | Network | Section


@dataclass(frozen=True)
class Program:
    statements: tuple[Statement, ...]

    def of_type(self, kind) -> list:
        return [s for s in self.statements if isinstance(s, kind)]

    def sections(self, kind: str) -> list[Section]:
        return [s for s in self.statements if isinstance(s, Section) and s.kind == kind]
