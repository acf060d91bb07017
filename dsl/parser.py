"""Text -> syntax tree: the lark grammar (LALR) and a Transformer that maps each rule to
one dataclass of dsl.ast, with its position."""

from __future__ import annotations

from functools import cache

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from topograd.dsl import ast
from topograd.dsl.errors import DslSyntaxError, Problem, Source

# What people call the grammar's terminals, for "expected ..." messages.
TOKEN_WORDS = {
    "NAME": "a name",
    "BLOCK_NAME": "a block (residual { ... }, concat { ... })",
    "NUMBER": "a number",
    "STRING": "a string",
    "DATA": "'data'",
    "TRAIN": "'train'",
    "SEARCH": "'search'",
    "LR_RANGE_TEST": "'lr_range_test'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "EQUAL": "'='",
    "COMMA": "','",
    "TILDE": "'~'",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "AT": "'@'",
    "__ANON_0": "'**'",
    "LET": "'let'",
    "GRAPH": "'graph'",
    "NETWORK": "'network'",
    "REPEAT": "'repeat'",
    "INPUT": "'input'",
    "PARAM": "'param'",
    "OUTPUT": "'output'",
    "$END": "the end of the file",
}


MAX_DEPTH = 100
"""The deepest nesting accepted (brackets, operators, blocks): the stages after parsing walk
the tree recursively, and Python's recursion limit must not be what stops a file."""


@cache
def _lark() -> Lark:
    return Lark.open(
        "grammar.lark",
        rel_to=__file__,
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
    )


def terminals() -> dict:
    """The grammar's terminals by name (keywords and token patterns), for an editor's syntax
    highlighting to follow the grammar instead of a copied keyword list."""
    return {terminal.name: terminal.pattern for terminal in _lark().terminals}


def _pos(meta) -> ast.Pos:
    if getattr(meta, "empty", True):
        return ast.NOWHERE
    return ast.Pos(meta.line, meta.column, meta.end_line, meta.end_column)


def _token_pos(token: Token) -> ast.Pos:
    return ast.Pos(token.line, token.column, token.end_line, token.end_column)


def _number(text: str) -> int | float:
    if any(mark in text for mark in ".eE"):
        return float(text)
    return int(text)


def _unescape(text: str) -> str:
    body, out, index = text[1:-1], [], 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            following = body[index + 1]
            out.append({"n": "\n", "t": "\t"}.get(following, following))
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


@v_args(meta=True)
class ToAst(Transformer):
    """One method per grammar alias; each returns the dataclass of that construct."""

    def start(self, meta, statements):
        return ast.Program(tuple(statements))

    def let(self, meta, children):
        name, value = children
        return ast.Let(str(name), value, _pos(meta))

    # graphs
    def graph(self, meta, children):
        name, *items = children
        return ast.Graph(str(name), tuple(items), _pos(meta))

    def _graph_item(role):  # noqa: N805 (a factory used in the class body)
        def make(self, meta, children):
            name, value = children
            return ast.GraphItem(role, str(name), value, _pos(meta))

        return make

    graph_input = _graph_item("input")
    graph_param = _graph_item("param")
    graph_output = _graph_item("output")
    graph_value = _graph_item("value")

    # networks
    def network(self, meta, children):
        name, *rest = children
        options: tuple = ()
        if rest and isinstance(rest[0], _Options):
            options = rest.pop(0).keywords(_token_pos(name))
        return ast.Network(str(name), options, tuple(rest), _pos(meta))

    def named_layer(self, meta, children):
        label, call = children
        return ast.Layer(call, str(label), _pos(meta))

    def layer(self, meta, children):
        (call,) = children
        return ast.Layer(call, None, _pos(meta))

    def repeat(self, meta, children):
        count, *body = children
        return ast.Repeat(count, tuple(body), _pos(meta))

    def block(self, meta, children):
        label = str(children.pop(0)) if children[0].type == "NAME" else None
        name, *body = children
        call = ast.Call(str(name), None, (), _token_pos(name))
        shortcut = None
        if body and isinstance(body[-1], _Shortcut):
            shortcut = body.pop().body
        return ast.Block(call, tuple(body), label, shortcut, _pos(meta))

    def shortcut(self, meta, children):
        return _Shortcut(tuple(children))

    # sections
    def section(self, meta, children):
        kind, *items = children
        return ast.Section(kind, tuple(items), _pos(meta))

    def section_kind(self, meta, children):
        return str(children[0])

    def setting(self, meta, children):
        key, value = children
        return ast.Setting(str(key), value, _pos(meta))

    def sample(self, meta, children):
        name, distribution = children
        return ast.Sample(str(name), distribution, _pos(meta))

    # expressions
    def _binary(op):  # noqa: N805 (a factory used in the class body)
        def make(self, meta, children):
            left, right = children
            return ast.BinOp(op, left, right, _pos(meta))

        return make

    add = _binary("+")
    sub = _binary("-")
    mul = _binary("*")
    div = _binary("/")
    matmul = _binary("@")
    pow = _binary("**")

    def neg(self, meta, children):
        return ast.Neg(children[0], _pos(meta))

    def number(self, meta, children):
        return ast.Number(_number(str(children[0])), _pos(meta))

    def string(self, meta, children):
        return ast.String(_unescape(str(children[0])), _pos(meta))

    def list(self, meta, children):
        return ast.ListExpr(tuple(c for c in children if c is not None), _pos(meta))

    def tuple(self, meta, children):
        return ast.TupleExpr(tuple(c for c in children if c is not None), _pos(meta))

    def call(self, meta, children):
        name, *rest = children
        if not rest:
            return ast.Call(str(name), None, (), _pos(meta))
        options = rest[0]
        return ast.Call(str(name), options.positional, options.named, _pos(meta))

    def options(self, meta, children):
        return _Options([c for c in children if c is not None])

    def keyword(self, meta, children):
        name, value = children
        return ast.Keyword(str(name), value, _pos(meta))


class _Options:
    """The inside of a call's parentheses, before it is split into the Call's fields."""

    def __init__(self, items):
        self.items = items
        self.positional = tuple(i for i in items if not isinstance(i, ast.Keyword))
        self.named = tuple(i for i in items if isinstance(i, ast.Keyword))

    def keywords(self, where):
        return self.named + tuple(
            ast.Keyword("?", item, getattr(item, "pos", where)) for item in self.positional
        )


def _expected(tokens) -> str:
    words = sorted({TOKEN_WORDS.get(t, repr(t.lower())) for t in tokens})
    if len(words) > 6:
        words = [*words[:6], "..."]
    return ", ".join(words)


def _syntax_problem(error: UnexpectedInput, source: Source) -> Problem:
    line, column = max(error.line, 1), max(error.column, 1)
    if isinstance(error, UnexpectedCharacters):
        char = source.line(line)[column - 1 : column] or "?"
        message = f"unexpected character {char!r}"
        return Problem(ast.Pos(line, column, line, column + 1), message, CHARACTER_HINTS.get(char))
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        token = error.token
        end = column + max(len(str(token)), 1)
        message = f"unexpected {str(token)!r}; expected {_expected(error.expected)}"
        hint = _hint(token.type, error.expected, _open_brackets(source.text, line, column))
        return Problem(ast.Pos(line, column, line, end), message, hint)
    expected = getattr(error, "expected", None) or ()
    lines = source.text.splitlines() or [""]
    last = len(lines)
    pos = ast.Pos(last, len(lines[-1]) + 1, last, len(lines[-1]) + 2)
    detail = f"; expected {_expected(expected)}" if expected else ""
    opened = _open_brackets(source.text, len(lines) + 1, 1)
    return Problem(pos, f"unexpected end of file{detail}", _hint("$END", expected, opened))


CHARACTER_HINTS = {
    "'": "strings use double quotes; comments start with '#'",
    ";": "no ';' is needed: statements and settings end by themselves",
}


# Tokens that begin a block or a statement: met inside an open block, a '}' is missing.
STATEMENT_STARTS = ("LBRACE", "LET", "GRAPH", "NETWORK", "DATA", "TRAIN", "SEARCH", "LR_RANGE_TEST")


def _hint(found: str, expected, opened) -> str | None:
    """The likely cause behind an unexpected token, for the mistakes people make most.
    `opened` lists the brackets still open before the token, innermost last."""
    if found == "EQUAL" and "TILDE" in set(expected):  # only a setting's key expects '~'
        return "a setting is written `key value`, without '=', e.g. `epochs 10`"
    if not opened:
        return None
    bracket, line = opened[-1]
    if bracket == "[" and found != "COMMA":
        return f"the list opened on line {line} needs ',' between its items and a closing ']'"
    if bracket == "(" and found in ("LBRACE", "RBRACE", "RSQB", "$END"):
        return f"the '(' on line {line} is never closed"
    if bracket == "{" and found in STATEMENT_STARTS:
        return f"is a '}}' missing before it? The '{{' on line {line} is still open"
    if bracket == "{" and found == "$END":
        return f"the '{{' on line {line} is never closed"
    return None


def _open_brackets(text: str, line: int, column: int) -> list[tuple[str, int]]:
    """The brackets opened and not closed before (line, column), as (bracket, line) pairs;
    strings and comments are skipped."""
    stack: list[tuple[str, int]] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for number, row in enumerate(text.splitlines()[:line], start=1):
        if number == line:
            row = row[: column - 1]
        index = 0
        while index < len(row):
            char = row[index]
            if char == "#":
                break
            if char == '"':
                index = row.find('"', index + 1)
                if index < 0:
                    break
            elif char in "([{":
                stack.append((char, number))
            elif char in pairs and stack and stack[-1][0] == pairs[char]:
                stack.pop()
            index += 1
    return stack


def parse(text: str, name: str = "<string>") -> ast.Program:
    """Parse a model file's text; raise DslSyntaxError (with a location) if it is malformed."""
    source = Source(name, text)
    try:
        tree = _lark().parse(text)
    except (UnexpectedCharacters, UnexpectedToken, UnexpectedEOF) as error:
        raise DslSyntaxError(source, [_syntax_problem(error, source)]) from None
    _reject_deep_nesting(tree, source)
    program = ToAst().transform(tree)
    _reject_positional_network_options(program, source)
    return program


@cache
def _commented_lark() -> tuple[Lark, list[Token]]:
    found: list[Token] = []
    lark = Lark.open(
        "grammar.lark",
        rel_to=__file__,
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
        lexer_callbacks={"COMMENT": found.append},
    )
    return lark, found


def parse_with_comments(
    text: str, name: str = "<string>"
) -> tuple[ast.Program, list[tuple[ast.Pos, str]]]:
    """Like parse, and also the comments (which the grammar ignores) as (position, text)
    in file order, for the formatter. Not thread-safe: the lexer fills one shared list."""
    lark, found = _commented_lark()
    found.clear()
    source = Source(name, text)
    try:
        tree = lark.parse(text)
    except (UnexpectedCharacters, UnexpectedToken, UnexpectedEOF) as error:
        raise DslSyntaxError(source, [_syntax_problem(error, source)]) from None
    _reject_deep_nesting(tree, source)
    program = ToAst().transform(tree)
    _reject_positional_network_options(program, source)
    comments = [(_token_pos(token), str(token).rstrip()) for token in found]
    return program, comments


def _reject_deep_nesting(tree: Tree, source: Source) -> None:
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            pos = _pos(node.meta)
            if pos.line < 1:
                pos = ast.Pos(1, 1, 1, 2)
            message = f"this nests too deeply (over {MAX_DEPTH} levels of brackets or operators)"
            hint = "split the expression into let constants or graph lines"
            raise DslSyntaxError(source, [Problem(pos, message, hint)])
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


def _reject_positional_network_options(program: ast.Program, source: Source) -> None:
    problems = [
        Problem(option.value.pos, "network options are written name=value, e.g. scalar=true")
        for network in program.of_type(ast.Network)
        for option in network.options
        if option.name == "?"
    ]
    if problems:
        raise DslSyntaxError(source, problems)


class _Shortcut:
    """A residual block's `shortcut { ... }`, before the block takes it as a field."""

    def __init__(self, body):
        self.body = body
