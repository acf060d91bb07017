"""Hypothesis strategies for the model language: random syntax trees that the parser can
produce, and a deliberately untidy printer of them (odd spacing, redundant parentheses,
trailing commas, other spellings of numbers and strings, comments anywhere).

The untidy printer is written independently of dsl.fmt: it parenthesizes every operation,
so the tree it means never depends on operator precedence.
"""

from __future__ import annotations

import dataclasses
import math
import random

from hypothesis import strategies as st
from topograd.dsl import ast

KEYWORDS = frozenset(
    {"let", "graph", "network", "repeat", "input", "param", "output", "shortcut"}
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
merges = st.builds(
    lambda mode, sources: ast.Call(mode, tuple(ast.Call(name) for name in sources)),
    st.sampled_from(("add", "concat")),
    st.lists(names, min_size=1, max_size=2),
)
"""`add(a)`, `concat(a, b)`: calls whose arguments name earlier layers."""
layers = st.builds(ast.Layer, calls | merges, st.none() | names)
block_calls = st.sampled_from(("residual", "concat")).map(ast.Call) | st.builds(ast.Call, names)
"""A block's header: residual or concat, or any name (which the parser takes too)."""


def _repeat(bodies):
    return st.builds(lambda count, body: ast.Repeat(count, tuple(body)), expressions, bodies)


def _block(bodies):
    """`label = call { body } shortcut { ... }`, the label and the shortcut optional."""
    return st.builds(
        lambda call, body, label, shortcut: ast.Block(
            call, tuple(body), label, None if shortcut is None else tuple(shortcut)
        ),
        block_calls,
        bodies,
        st.none() | names,
        st.none() | bodies,
    )


layer_bodies = st.recursive(
    st.lists(layers, max_size=3),
    lambda inner: st.lists(layers | _repeat(inner) | _block(inner), max_size=3),
    max_leaves=8,
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
BLOCK_SPACES = ("", " ", "  ", "\t", "\n", "\r\n", " \n  ")


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
                self.braced(item.body)
                continue
            if item.label is not None:
                self.put(item.label, "=")
            if isinstance(item, ast.Block):
                # a block's name is followed by its `{` with only spaces between (no comment)
                self.put(item.call.name + self.choose(BLOCK_SPACES) + "{")
                self.braced(item.body, opened=True)
                if item.shortcut is not None:
                    self.put("shortcut")
                    self.braced(item.shortcut)
                continue
            self.call(item.call)

    def braced(self, body, opened: bool = False) -> None:
        if not opened:
            self.put("{")
        self.layers(body)
        self.put("}")

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


# --- branching networks that mostly check -------------------------------------------------------
def _layer_calls(text: str) -> tuple[ast.Call, ...]:
    """The layer calls of a one-line network body, e.g. "linear(3) relu"."""
    from topograd.dsl.parser import parse

    return tuple(layer.call for layer in parse(f"network n {{ {text} }}").statements[0].body)


FLAT_LAYERS = _layer_calls("linear(3) linear(5) linear relu tanh batchnorm layernorm")
IMAGE_LAYERS = _layer_calls(
    "conv2d(3, 3, padding=1) conv2d(kernel_size=3, padding=1) conv2d(2, 1) "
    "conv2d(4, 3, stride=2, padding=1) conv2d(kernel_size=1, stride=2) batchnorm2d relu tanh"
)
LABELS = ("a", "b")
SOURCES = (*LABELS, *LABELS, "a_0", "b_1", "nope")
"""What merges name: mostly the labels, two repeat copies' names, and a name nothing has."""


def _seldom(chance: float):
    """True with about this chance."""
    return st.sampled_from((False,) * round(1 / chance - 1) + (True,))


def _branch_items(layer_calls):
    labels = st.none() | st.sampled_from(LABELS)
    layer = st.builds(ast.Layer, st.sampled_from(layer_calls), labels)
    merge = st.builds(
        lambda mode, sources, label: ast.Layer(
            ast.Call(mode, tuple(ast.Call(name) for name in sources)), label
        ),
        st.sampled_from(("add", "concat")),
        st.lists(st.sampled_from(SOURCES), min_size=1, max_size=2),
        labels,
    )

    def extend(items):
        body = st.lists(items, min_size=1, max_size=3)

        def block(kind, body, label, shortcut, empty, odd):
            if empty:  # an empty body or shortcut: a mistake
                body, shortcut = (body, ()) if shortcut is not None and odd else ((), shortcut)
            if kind != "residual" and not odd:  # a concat block's shortcut: a mistake
                shortcut = None
            return ast.Block(
                ast.Call(kind), tuple(body), label, None if shortcut is None else tuple(shortcut)
            )

        blocks = st.builds(
            block,
            st.sampled_from(("residual", "residual", "concat")),
            body,
            labels,
            st.none() | body,
            _seldom(0.05),
            _seldom(0.1),
        )
        repeat = st.builds(
            lambda count, body: ast.Repeat(ast.Number(count), tuple(body)), st.integers(1, 2), body
        )
        return blocks | repeat

    return st.recursive(layer | merge, extend, max_leaves=10)


_TAILS = {False: _layer_calls("linear"), True: _layer_calls("flatten linear")}


@st.composite
def branching_programs(draw) -> ast.Program:
    """A network of rows (input=4) or of images (input=(2, 6, 6)) made of layers that fit
    either, blocks (residual with or without a shortcut, concat, nested, sometimes empty),
    repeats around them, labels and merges: many check, the rest have a mistake with the
    new syntax (a shape that does not join, an unknown or duplicate label, ...)."""
    image = draw(st.booleans())
    items = _branch_items(IMAGE_LAYERS if image else FLAT_LAYERS)
    rng = draw(st.randoms(use_true_random=False))
    body = _aim(draw(st.lists(items, min_size=1, max_size=5)), rng)
    size = ast.TupleExpr(tuple(map(ast.Number, (2, 6, 6)))) if image else ast.Number(4)
    options = (ast.Keyword("input", size), ast.Keyword("classes", ast.Number(3)))
    tail = tuple(ast.Layer(call) for call in _TAILS[image])
    return ast.Program((ast.Network("net", options, (*body, *tail)),))


def _aim(body, rng, seen=()) -> tuple:
    """The items with most merges pointed at labels that come before them in their sequence
    (a block's body starts a new one; a repeat's sees the labels before it), labelling the
    item before when there is none (a merge that comes first becomes a relu), and most
    second uses of a label dropped: without this, few drawn networks would check."""
    seen, out = list(seen), []
    for item in body:
        if isinstance(item, ast.Repeat):
            out.append(ast.Repeat(item.count, _aim(item.body, rng, seen)))
            continue
        if isinstance(item, ast.Block):
            shortcut = None if item.shortcut is None else _aim(item.shortcut, rng)
            item = ast.Block(item.call, _aim(item.body, rng), item.label, shortcut)
        elif item.call.name in ("add", "concat") and rng.random() < 0.9:  # a merge
            last = out[-1] if out else None
            if not seen and isinstance(last, ast.Layer | ast.Block) and last.label is None:
                out[-1] = dataclasses.replace(last, label=rng.choice(LABELS))
                seen.append(out[-1].label)
            if seen:
                sources = rng.sample(seen, min(len(item.call.args), len(seen)))
                item = ast.Layer(
                    ast.Call(item.call.name, tuple(map(ast.Call, sources))), item.label
                )
            else:  # first in its sequence: nothing to merge with
                item = ast.Layer(ast.Call("relu"), item.label)
        if item.label in seen and rng.random() < 0.9:
            item = dataclasses.replace(item, label=None)
        if item.label is not None:
            seen.append(item.label)
        out.append(item)
    return tuple(out)
