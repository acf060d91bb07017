"""The formatter: a model file in one canonical layout, with its meaning and comments kept.

Layout: two-space indentation, one statement, layer or setting per line, one blank line
between top-level blocks (consecutive `let`s stay together), binary operators spaced, and
only the parentheses the tree needs; a residual block's shortcut opens on its body's closing
line (`} shortcut {`). Numbers keep their spelling (`1e-3` stays `1e-3`);
strings are re-escaped. A comment on its own line stays before the item that follows it,
a trailing comment stays at the end of its item's line, and comments before a closing
brace or at the end of the file stay there (those between a body's `}` and its `shortcut {`
go to the end of the body, but one alone on the `}` line ends the `} shortcut {` line).

>>> print(format_source("let  lr=1e-3 # step\\nnetwork n(input=2){linear(4) relu}"), end="")
let lr = 1e-3  # step
<BLANKLINE>
network n(input=2) {
  linear(4)
  relu
}
"""

from __future__ import annotations

from dataclasses import dataclass

from topograd.dsl import ast
from topograd.dsl.parser import parse_with_comments

INDENT = "  "
WIDTH = 100
"""A line longer than this breaks a list, tuple or call into one element per line."""

# Binding strength of each form, loosest first; `**` takes an atom on its left and a unary
# expression on its right (grammar.lark: `atom "**" unary`).
SUM, PRODUCT, UNARY, POWER, ATOM = range(5)
BINARY = {
    "+": (SUM, SUM, PRODUCT),
    "-": (SUM, SUM, PRODUCT),
    "*": (PRODUCT, PRODUCT, UNARY),
    "/": (PRODUCT, PRODUCT, UNARY),
    "@": (PRODUCT, PRODUCT, UNARY),
    "**": (POWER, ATOM, UNARY),
}
"""op -> (its own strength, the least its left operand needs, the least its right needs)."""

ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}


@dataclass(frozen=True)
class Comment:
    """A `#` comment: where it starts, and its text (trailing spaces removed)."""

    line: int
    column: int
    text: str

    @property
    def at(self) -> tuple[int, int]:
        return self.line, self.column


def format_source(text: str, name: str = "<string>") -> str:
    """The canonical form of a model file's text; raises DslSyntaxError if it does not parse."""
    program, found = parse_with_comments(text, name)
    comments = [Comment(pos.line, pos.column, body) for pos, body in found]
    return _Printer(text, comments).program(program)


def format_program(program: ast.Program) -> str:
    """The canonical text of a syntax tree (with no source: numbers in Python's spelling)."""
    return _Printer(None, []).program(program)


def quote(value: str) -> str:
    """A string literal that the parser reads back as `value`."""
    return '"' + "".join(ESCAPES.get(char, char) for char in value) + '"'


def _start(node) -> tuple[int, int]:
    return node.pos.line, node.pos.column


def _end(node) -> tuple[int, int]:
    return node.pos.end_line, node.pos.end_column


class _Printer:
    """Prints a tree; with the source text, also places its comments and number spellings."""

    def __init__(self, text: str | None, comments: list[Comment]):
        self.lines_of_text = text.split("\n") if text is not None else None
        self.comments = comments
        self.next = 0  # the first comment not yet placed
        self.out: list[str] = []

    # --- comments ------------------------------------------------------------------------------
    def take_before(self, at: tuple[int, int]) -> list[Comment]:
        """The unplaced comments that start before `at`."""
        start = self.next
        while self.next < len(self.comments) and self.comments[self.next].at < at:
            self.next += 1
        return self.comments[start : self.next]

    def take_on_line(self, line: int, bound: tuple[int, int]) -> list[Comment]:
        """The unplaced comments on `line` that start before `bound` (at most one)."""
        start = self.next
        while self.next < len(self.comments):
            comment = self.comments[self.next]
            if comment.line != line or comment.at >= bound:
                break
            self.next += 1
        return self.comments[start : self.next]

    def inside(self, start: tuple[int, int], end: tuple[int, int]) -> bool:
        """Whether an unplaced comment lies between `start` and `end`."""
        index = self.next
        while index < len(self.comments) and self.comments[index].at < end:
            if self.comments[index].at > start:
                return True
            index += 1
        return False

    def emit(self, depth: int, text: str, above=(), trailing=()) -> None:
        """One line at `depth`, after the comments `above` it, ending in its `trailing` one."""
        self.own_lines(depth, above)
        self.out.append(INDENT * depth + text + "".join(f"  {c.text}" for c in trailing))

    def own_lines(self, depth: int, comments: list[Comment]) -> None:
        self.out.extend(INDENT * depth + comment.text for comment in comments)

    def find(self, start: tuple[int, int], char: str, fallback) -> tuple[int, int]:
        """Where `char` first occurs from `start` on, outside comments (the callers search
        stretches that hold no string: a block's header after its last expression, or the
        space between a call's name and its parenthesis)."""
        line, column = start
        text = self.lines_of_text
        while line <= len(text):
            row = text[line - 1]
            while column <= len(row):
                if row[column - 1] == char:
                    return line, column
                if row[column - 1] == "#":
                    break
                column += 1
            line, column = line + 1, 1
        return fallback

    # --- statements -----------------------------------------------------------------------------
    def program(self, program: ast.Program) -> str:
        previous = None
        statements = program.statements
        for index, statement in enumerate(statements):
            bound = _start(statements[index + 1]) if index + 1 < len(statements) else (1 << 62, 0)
            if previous is not None and not _together(previous, statement):
                self.out.append("")
            self.item(statement, 0, bound)
            previous = statement
        rest = self.comments[self.next :]
        if rest:
            if previous is not None and not isinstance(previous, ast.Let):
                self.out.append("")
            self.own_lines(0, rest)
        return "".join(line + "\n" for line in self.out)

    def item(self, node, depth: int, bound: tuple[int, int]) -> None:
        """A statement, layer, setting or graph line, with the comments that belong to it;
        `bound` is where the next item (or the enclosing block's `}`) starts."""
        self.own_lines(depth, self.take_before(_start(node)))
        if isinstance(node, ast.Graph | ast.Network | ast.Section | ast.Repeat | ast.Block):
            self.block(node, depth, bound)
            return
        prefix, value = self.parts(node)
        self.flow(depth, prefix, value, "", _end(node), bound)

    def parts(self, node) -> tuple[str, object]:
        """A one-line item as the text before its expression, and the expression."""
        if isinstance(node, ast.Let):
            return f"let {node.name} = ", node.value
        if isinstance(node, ast.GraphItem):
            role = "" if node.role == "value" else f"{node.role} "
            return f"{role}{node.name} = ", node.value
        if isinstance(node, ast.Layer):
            return ("" if node.label is None else f"{node.label} = "), node.call
        if isinstance(node, ast.Setting):
            return f"{node.key} ", node.value
        if isinstance(node, ast.Sample):
            return f"{node.name} ~ ", node.distribution
        raise TypeError(f"cannot format {type(node).__name__}")

    def flow(self, depth, prefix, value, suffix, end, bound) -> None:
        """`prefix value suffix` on one line, or, when that is wider than WIDTH and the value
        is a list, tuple or call, one element per line (also when comments are written
        among its elements: each keeps its place)."""
        text = prefix + self.expr(value) + suffix
        elements = _elements(value)
        close = (value.pos.end_line, value.pos.end_column - 1)
        opening = _start(value)
        if elements and self.next < len(self.comments) and isinstance(value, ast.Call):
            opening = self.find(opening, "(", close)
        long = len(INDENT * depth + text) > WIDTH or self.inside(opening, close)
        if not (long and elements):
            above = self.take_before(end)
            self.emit(depth, text, above, self.take_on_line(end[0], bound))
            return
        opener, closer = _brackets(value)
        above = self.take_before(opening)
        trailing = self.take_on_line(opening[0], _start(elements[0]))
        self.emit(depth, prefix + opener, above, trailing)
        for index, element in enumerate(elements):
            after = _start(elements[index + 1]) if index + 1 < len(elements) else close
            self.own_lines(depth + 1, self.take_before(_start(element)))
            if isinstance(element, ast.Keyword):
                self.flow(depth + 1, f"{element.name}=", element.value, ",", _end(element), after)
            else:
                self.flow(depth + 1, "", element, ",", _end(element), after)
        self.own_lines(depth + 1, self.take_before(close) + self.take_before(end))
        self.emit(depth, closer + suffix, (), self.take_on_line(end[0], bound))

    def block(self, node, depth: int, bound: tuple[int, int]) -> None:
        """A header and its items in braces; a residual block's `shortcut { ... }` follows
        the body's `}` on the same line."""
        header, header_end, children = self.header(node)
        end = (node.pos.end_line, node.pos.end_column - 1)  # the last `}`
        shortcut = getattr(node, "shortcut", None)
        close = end if shortcut is None else self.closing(node, end)
        above, trailing, inner = self.braced(header_end, children, close, depth)
        parts = [(above, trailing, inner)]
        if shortcut is not None:
            between, trailing, inner = self.braced(close, shortcut, end, depth)
            # a comment after the body's `}` stays on that line if it is alone there
            if len(between) == 1 and between[0].line == close[0] and not trailing:
                between, trailing = [], between
            parts[0][2].extend(INDENT * (depth + 1) + comment.text for comment in between)
            parts.append(([], trailing, inner))
        after = self.take_on_line(node.pos.end_line, bound)
        line = header
        for index, (above, trailing, inner) in enumerate(parts):
            if index:
                line += " shortcut"
            if not inner and not trailing:
                self.own_lines(depth, above)
                line += " {}"
                continue
            self.emit(depth, line + " {", above, trailing)
            self.out.extend(inner)
            line = "}"
        self.emit(depth, line, (), after)

    def braced(self, start, children, close, depth: int) -> tuple[list, list, list[str]]:
        """Items in braces, whose `{` comes after `start` and whose `}` is at `close`: the
        comments before the `{`, the one after it on its line, and the items' lines (with
        the comments before the `}`)."""
        first = _start(children[0]) if children else close
        above, trailing = [], []
        if self.next < len(self.comments):
            brace = self.find(start, "{", close)
            above = self.take_before(brace)
            trailing = self.take_on_line(brace[0], first)
        inner: list[str] = []
        self.out, outer = inner, self.out
        for index, child in enumerate(children):
            child_bound = _start(children[index + 1]) if index + 1 < len(children) else close
            self.item(child, depth + 1, child_bound)
        self.own_lines(depth + 1, self.take_before(close))
        self.out = outer
        return above, trailing, inner

    def closing(self, node: ast.Block, end: tuple[int, int]) -> tuple[int, int]:
        """Where the `}` of a block's body is, before its shortcut (only looked up when
        there are comments to place: no other choice depends on it)."""
        if self.next >= len(self.comments):
            return end
        start = _end(node.body[-1]) if node.body else self.find(_end(node.call), "{", end)
        return self.find(start, "}", end)

    def header(self, node) -> tuple[str, tuple[int, int], tuple]:
        """A block's first line (without `{`), where its last expression ends, its items."""
        if isinstance(node, ast.Graph):
            return f"graph {node.name}", _start(node), node.items
        if isinstance(node, ast.Section):
            return node.kind, _start(node), node.items
        if isinstance(node, ast.Repeat):
            return f"repeat {self.expr(node.count)}", _end(node.count), node.body
        if isinstance(node, ast.Block):
            label = "" if node.label is None else f"{node.label} = "
            return label + self.call(node.call), _end(node.call), node.body
        options = ""
        header_end = _start(node)
        if node.options:
            options = f"({', '.join(self.keyword(k) for k in node.options)})"
            header_end = _end(node.options[-1])
        return f"network {node.name}{options}", header_end, node.body

    # --- expressions ------------------------------------------------------------------------------
    def expr(self, node, least: int = SUM) -> str:
        """`node` as text, in parentheses when it binds less tightly than `least`."""
        strength, text = self.bare(node)
        return f"({text})" if strength < least else text

    def bare(self, node) -> tuple[int, str]:
        if isinstance(node, ast.BinOp):
            strength, left, right = BINARY[node.op]
            return (
                strength,
                f"{self.expr(node.left, left)} {node.op} {self.expr(node.right, right)}",
            )
        if isinstance(node, ast.Neg):
            return UNARY, "-" + self.expr(node.operand, UNARY)
        if isinstance(node, ast.Number):
            return ATOM, self.number(node)
        if isinstance(node, ast.String):
            return ATOM, quote(node.value)
        if isinstance(node, ast.Call):
            return ATOM, self.call(node)
        if isinstance(node, ast.ListExpr):
            return ATOM, f"[{self.items(node.items)}]"
        if isinstance(node, ast.TupleExpr):
            comma = "," if len(node.items) == 1 else ""
            return ATOM, f"({self.items(node.items)}{comma})"
        raise TypeError(f"cannot format {type(node).__name__}")

    def items(self, nodes) -> str:
        return ", ".join(self.expr(node) for node in nodes)

    def call(self, node: ast.Call) -> str:
        if node.args is None and not node.keywords:
            return node.name
        parts = [self.expr(arg) for arg in node.args or ()]
        parts += [self.keyword(keyword) for keyword in node.keywords]
        return f"{node.name}({', '.join(parts)})"

    def keyword(self, node: ast.Keyword) -> str:
        return f"{node.name}={self.expr(node.value)}"

    def number(self, node: ast.Number) -> str:
        """As written in the source when there is one; else Python's spelling, which reads
        back as the same int or float (infinity, from an overflowing literal, as 1e999)."""
        pos = node.pos
        if self.lines_of_text is not None and pos.line >= 1 and pos.end_line == pos.line:
            return self.lines_of_text[pos.line - 1][pos.column - 1 : pos.end_column - 1]
        value = node.value
        if isinstance(value, float) and value == float("inf"):
            return "1e999"
        return repr(value)


def _elements(node) -> tuple:
    """What a value breaks into, one per line, when its line is too long (else nothing)."""
    if isinstance(node, ast.ListExpr | ast.TupleExpr):
        return node.items
    if isinstance(node, ast.Call) and node.args is not None:
        return (*node.args, *node.keywords)
    return ()


def _brackets(node) -> tuple[str, str]:
    if isinstance(node, ast.ListExpr):
        return "[", "]"
    if isinstance(node, ast.TupleExpr):
        return "(", ")"
    return f"{node.name}(", ")"


def _together(previous, statement) -> bool:
    """Consecutive lets form one group; every other pair of statements has a blank line."""
    return isinstance(previous, ast.Let) and isinstance(statement, ast.Let)
