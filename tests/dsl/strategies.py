"""Hypothesis strategies for the model language: random syntax trees that the parser can
produce, and a deliberately untidy printer of them (odd spacing, redundant parentheses,
trailing commas, other spellings of numbers and strings, comments anywhere).

The untidy printer is written independently of dsl.fmt: it parenthesizes every operation,
so the tree it means never depends on operator precedence.
"""

from __future__ import annotations

import math
import random

from hypothesis import strategies as st
from topograd.dsl import ast

KEYWORDS = frozenset(
    {"let", "graph", "network", "repeat", "input", "param", "output"}
    | {"data", "train", "search", "lr_range_test"}
)
SECTIONS = ("data", "train", "search", "lr_range_test")
OPERATORS = ("+", "-", "*", "/", "**", "@")
MAX_DEPTH = 30
"""Trees deeper than this are not drawn (the parser refuses nesting past 100 levels)."""

_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_REST = _FIRST + "0123456789"

names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_FIRST),
    st.text(alphabet=_REST, max_size=6),
).filter(lambda name: name not in KEYWORDS)
"""Identifiers that are no keyword (a keyword is a name only where no keyword may stand)."""

option_names = names | st.just("input")
"""Inside parentheses `input` is a plain name: network options use it."""

integers = st.integers(min_value=0, max_value=10**30)
floats = st.one_of(
    st.floats(min_value=0.0, allow_nan=False, allow_infinity=True),
    st.sampled_from([0.0, 5e-324, 2.2250738585072014e-308, 1e-300, 1e-3, 0.1, 1e22, 1.5e308]),
).filter(lambda value: math.copysign(1.0, value) > 0)
"""Non-negative: a minus sign in the source is a Neg node, never part of a number."""

_TRICKY = 'ab "\\\n\t#{}()[],=~ \u00e9\u4e2d'
texts = st.text(alphabet=st.sampled_from(_TRICKY), max_size=8) | st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=6
)
"""String values: quotes, backslashes, newlines and tabs (re-escaped when printed), comment
and bracket characters, and any other character except a carriage return, which reading a
file turns into a newline."""

leaves = st.one_of(
    st.builds(ast.Number, integers),
    st.builds(ast.Number, floats),
    st.builds(ast.String, texts),
    st.builds(ast.Call, names),
)


def _calls(arguments):
    """Calls: bare `f`, `f()`, or with positional and keyword arguments."""
    keywords = st.lists(st.builds(ast.Keyword, option_names, arguments), max_size=2)
    with_parentheses = st.builds(
        lambda name, args, kws: ast.Call(name, tuple(args), tuple(kws)),
        names,
        st.lists(arguments, max_size=3),
        keywords,
    )
    return st.builds(ast.Call, names) | with_parentheses


def _extend(children):
    return st.one_of(
        st.builds(ast.BinOp, st.sampled_from(OPERATORS), children, children),
        st.builds(ast.Neg, children),
        _calls(children),
        st.builds(lambda items: ast.ListExpr(tuple(items)), st.lists(children, max_size=3)),
        st.builds(
            lambda items: ast.TupleExpr(tuple(items)), st.lists(children, min_size=1, max_size=3)
        ),
    )


def depth(node) -> int:
    """How deeply a tree nests (statements, blocks and expressions alike)."""
    if isinstance(node, tuple):
        return max((depth(item) for item in node), default=0)
    if isinstance(node, ast.Number | ast.String) or node is None or isinstance(node, str):
        return 1
    fields = [getattr(node, name) for name in node.__dataclass_fields__ if name != "pos"]
    return 1 + max((depth(value) for value in fields), default=0)


expressions = st.recursive(leaves, _extend, max_leaves=12).filter(
    lambda node: depth(node) <= MAX_DEPTH
)
calls = _calls(expressions)

lets = st.builds(ast.Let, names, expressions)
graph_items = st.builds(
    ast.GraphItem, st.sampled_from(("input", "param", "value", "output")), names, expressions
)
graphs = st.builds(
    lambda name, items: ast.Graph(name, tuple(items)), names, st.lists(graph_items, max_size=4)
)
layers = st.builds(ast.Layer, calls, st.none() | names)


def _repeat(bodies):
    return st.builds(lambda count, body: ast.Repeat(count, tuple(body)), expressions, bodies)


layer_bodies = st.recursive(
    st.lists(layers, max_size=3),
    lambda inner: st.lists(layers | _repeat(inner), max_size=3),
    max_leaves=6,
)
networks = st.builds(
    lambda name, options, body: ast.Network(name, tuple(options), tuple(body)),
    names,
    st.lists(st.builds(ast.Keyword, option_names, expressions), max_size=3),
    layer_bodies,
)
settings = st.builds(ast.Setting, names, expressions) | st.builds(ast.Sample, names, calls)
sections = st.builds(
    lambda kind, items: ast.Section(kind, tuple(items)),
    st.sampled_from(SECTIONS),
    st.lists(settings, max_size=4),
)
statements = st.one_of(lets, graphs, networks, sections)
programs = st.builds(
    lambda items: ast.Program(tuple(items)), st.lists(statements, max_size=5)
).filter(lambda program: depth(program.statements) <= MAX_DEPTH)


def numbers_of(node) -> list:
    """Every number in a tree with its type, in order: equality of trees says 1 == 1.0."""
    if isinstance(node, ast.Number):
        return [(type(node.value), node.value)]
    if isinstance(node, tuple):
        return [found for item in node for found in numbers_of(item)]
    if hasattr(node, "__dataclass_fields__"):
        return [
            found
            for name in node.__dataclass_fields__
            if name != "pos"
            for found in numbers_of(getattr(node, name))
        ]
    return []


# --- the untidy printer ----------------------------------------------------------------------
WORDLIKE = frozenset(_REST + ".")
SPACES = (" ", "  ", "\t", "\n", "\n\n", "\r\n", " \n  ", "\x0c")


class Untidy:
    """Prints a tree as a list of tokens, making every free choice with `rng` (a seeded
    random.Random: one Hypothesis draw per text keeps the tests fast)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.tokens: list[str] = []

    def choose(self, options):
        return self.rng.choice(options)

    def coin(self, chance: float = 0.5) -> bool:
        return self.rng.random() < chance

    def put(self, *tokens: str) -> None:
        self.tokens.extend(tokens)

    def program(self, program: ast.Program) -> list[str]:
        for statement in program.statements:
            self.statement(statement)
        return self.tokens

    def statement(self, node) -> None:
        if isinstance(node, ast.Let):
            self.put("let", node.name, "=")
            self.expr(node.value)
        elif isinstance(node, ast.Graph):
            self.put("graph", node.name, "{")
            for item in node.items:
                if item.role != "value":
                    self.put(item.role)
                self.put(item.name, "=")
                self.expr(item.value)
            self.put("}")
        elif isinstance(node, ast.Network):
            self.put("network", node.name)
            if node.options or self.coin():
                self.arguments([("keyword", option) for option in node.options])
            self.put("{")
            self.layers(node.body)
            self.put("}")
        else:
            self.put(node.kind, "{")
            for item in node.items:
                if isinstance(item, ast.Setting):
                    self.put(item.key)
                    self.expr(item.value)
                else:
                    self.put(item.name, "~")
                    self.call(item.distribution)
            self.put("}")

    def layers(self, body) -> None:
        for item in body:
            if isinstance(item, ast.Repeat):
                self.put("repeat")
                self.expr(item.count)
                self.put("{")
                self.layers(item.body)
                self.put("}")
                continue
            if item.label is not None:
                self.put(item.label, "=")
            self.call(item.call)

    def expr(self, node) -> None:
        """Every operation in parentheses; any expression maybe in extra ones."""
        extra = self.rng.randint(1, 2) if self.coin(0.15) else 0
        wrap = extra + (1 if isinstance(node, ast.BinOp | ast.Neg) else 0)
        self.put(*["("] * wrap)
        if isinstance(node, ast.BinOp):
            self.expr(node.left)
            self.put(node.op)
            self.expr(node.right)
        elif isinstance(node, ast.Neg):
            self.put("-")
            self.expr(node.operand)
        elif isinstance(node, ast.Number):
            self.put(self.number(node.value))
        elif isinstance(node, ast.String):
            self.put(self.string(node.value))
        elif isinstance(node, ast.Call):
            self.call(node)
        elif isinstance(node, ast.ListExpr):
            self.put("[")
            self.sequence(node.items, trailing=bool(node.items) and self.coin())
            self.put("]")
        else:
            self.put("(")
            self.sequence(node.items, trailing=len(node.items) == 1 or self.coin())
            self.put(")")
        self.put(*[")"] * wrap)

    def sequence(self, items, trailing: bool) -> None:
        for index, item in enumerate(items):
            if index:
                self.put(",")
            self.expr(item)
        if trailing:
            self.put(",")

    def call(self, node: ast.Call) -> None:
        self.put(node.name)
        if node.args is None:
            return
        # Positional and keyword arguments interleaved at random, each kind in its order.
        order = ["positional"] * len(node.args) + ["keyword"] * len(node.keywords)
        kinds = self.rng.sample(order, len(order))
        args, keywords = iter(node.args), iter(node.keywords)
        self.arguments(
            [(kind, next(args) if kind == "positional" else next(keywords)) for kind in kinds]
        )

    def arguments(self, items) -> None:
        self.put("(")
        for index, (kind, item) in enumerate(items):
            if index:
                self.put(",")
            if kind == "keyword":
                self.put(item.name, "=")
                self.expr(item.value)
            else:
                self.expr(item)
        if items and self.coin():
            self.put(",")
        self.put(")")

    def number(self, value) -> str:
        if isinstance(value, int):
            return self.choose([str(value), "0" + str(value), "00" + str(value)])
        if value == math.inf:
            return self.choose(["1e999", "2E400", "9.5e+1000"])
        return self.choose([repr(value), f"{value:.17e}", f"{value:.17E}", f"{value:.20e}"])

    def string(self, value: str) -> str:
        """Quotes and backslashes escaped, newlines as \\n, tabs raw or \\t, and any other
        character maybe written as backslash + itself (which reads back as the character)."""
        out = []
        for char in value:
            if char in '"\\':
                out.append("\\" + char)
            elif char == "\n":
                out.append("\\n")
            elif char == "\t":
                out.append(self.choose(["\t", "\\t"]))
            elif char not in "nt" and self.coin(0.25):
                out.append("\\" + char)
            else:
                out.append(char)
        return '"' + "".join(out) + '"'


@st.composite
def untidy_sources(draw, program: ast.Program, comments: bool = True):
    """(text, comments): `program` printed untidily, with comments (`# @cN@...`) put between
    tokens when `comments`; the second item lists the comments' texts in file order."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    tokens = Untidy(rng).program(program)
    pieces: list[str] = []
    written: list[str] = []
    if comments and rng.random() < 0.5:
        written.append("# @start@ before everything")
        pieces.append(written[0] + "\n")
    for index, token in enumerate([*tokens, ""]):
        if index:
            previous = tokens[index - 1]
            joined = bool(token) and previous[-1] in WORDLIKE and token[0] in WORDLIKE
            gap = rng.choice(SPACES) if joined or rng.random() < 0.5 else ""
            if comments and rng.random() < 0.15:
                tail = "".join(rng.choices('x #{}()"\\=,', k=rng.randint(0, 5)))
                text = f"# @c{len(written)}@{tail}".rstrip()
                written.append(text)
                gap = f"{gap}{text}\n"
            pieces.append(gap)
        pieces.append(token)
    return "".join(pieces), written
