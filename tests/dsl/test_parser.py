"""The parser: the syntax tree of every construct, where each node was written, and syntax
errors that point at the right character and say what could have come there.

Positions are checked against the text itself (the column where a snippet starts, found with
str.find), never against numbers copied from the parser's output."""

from __future__ import annotations

import pytest
from topograd.dsl import ast
from topograd.dsl.errors import DslSyntaxError
from topograd.dsl.parser import parse

N = ast.Number


def C(name, *args, **keywords):
    """A Call node: C("relu") is bare, C("f", ()) is `f()`."""
    if len(args) == 1 and args[0] == () and not keywords:
        return ast.Call(name, ())
    kws = tuple(ast.Keyword(k, v) for k, v in keywords.items())
    return ast.Call(name, tuple(args) if args or kws else None, kws)


def value_of(text: str):
    """The expression of `let x = text`."""
    (let,) = parse(f"let x = {text}").statements
    return let.value


def where(text: str, snippet: str, occurrence: int = 0) -> tuple[int, int]:
    """1-based (line, column) of the start of `snippet` in `text`, from the text itself."""
    start = -1
    for _ in range(occurrence + 1):
        start = text.find(snippet, start + 1)
    assert start >= 0, snippet
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    return line, column


def at(node) -> tuple[int, int]:
    return node.pos.line, node.pos.column


def end(node) -> tuple[int, int]:
    return node.pos.end_line, node.pos.end_column


def syntax_error(text: str) -> DslSyntaxError:
    with pytest.raises(DslSyntaxError) as caught:
        parse(text, "model.tg")
    return caught.value


# --- statements -----------------------------------------------------------------------------------
def test_empty_file_and_comments_only():
    assert parse("") == ast.Program(())
    assert parse("# nothing here\n   # nor here\n") == ast.Program(())


def test_let():
    assert parse("let width = 64").statements == (ast.Let("width", N(64)),)


def test_graph_roles():
    text = "graph g { input x = 2.0  param w = randn(3, 4)  h = x @ w  output y = tanh(sum(h)) }"
    (graph,) = parse(text).statements
    assert graph == ast.Graph(
        "g",
        (
            ast.GraphItem("input", "x", N(2.0)),
            ast.GraphItem("param", "w", C("randn", N(3), N(4))),
            ast.GraphItem("value", "h", ast.BinOp("@", C("x"), C("w"))),
            ast.GraphItem("output", "y", C("tanh", C("sum", C("h")))),
        ),
    )


def test_network_options_layers_and_labels():
    text = "network net(scalar=true, input=(1, 8, 8), classes=10) { fc = linear(16) relu }"
    (net,) = parse(text).statements
    assert net == ast.Network(
        "net",
        (
            ast.Keyword("scalar", C("true")),
            ast.Keyword("input", ast.TupleExpr((N(1), N(8), N(8)))),
            ast.Keyword("classes", N(10)),
        ),
        (ast.Layer(C("linear", N(16)), "fc"), ast.Layer(C("relu"))),
    )
    assert parse("network n { relu }").statements[0].options == ()
    assert parse("network n() { }").statements[0] == ast.Network("n", (), ())


def test_repeat_nests():
    (net,) = parse("network n { repeat 2 { linear(8) repeat 3 { a = relu } } linear }").statements
    inner = ast.Repeat(N(3), (ast.Layer(C("relu"), "a"),))
    assert net.body == (
        ast.Repeat(N(2), (ast.Layer(C("linear", N(8))), inner)),
        ast.Layer(C("linear")),
    )


def test_repeat_count_is_an_expression():
    (net,) = parse("network n { repeat depth * 2 { relu } }").statements
    assert net.body[0].count == ast.BinOp("*", C("depth"), N(2))


def test_blocks_with_labels_and_shortcuts():
    text = """network n {
  residual { linear(4) relu }
  b = residual { linear(8) } shortcut { linear }
  concat { }
}"""
    (net,) = parse(text).statements
    assert net.body == (
        ast.Block(C("residual"), (ast.Layer(C("linear", N(4))), ast.Layer(C("relu")))),
        ast.Block(C("residual"), (ast.Layer(C("linear", N(8))),), "b", (ast.Layer(C("linear")),)),
        ast.Block(C("concat"), ()),
    )
    assert net.body[2].shortcut is None  # no shortcut, unlike an empty one
    assert (
        parse("network n { residual { relu } shortcut { } }").statements[0].body[0].shortcut == ()
    )


def test_blocks_nest_and_repeat():
    text = "network n { repeat 2 { residual { concat { a = relu } add(a) } } concat(x, y) }"
    (net,) = parse(text).statements
    inner = ast.Block(C("concat"), (ast.Layer(C("relu"), "a"),))
    block = ast.Block(C("residual"), (inner, ast.Layer(C("add", C("a")))))
    assert net.body == (ast.Repeat(N(2), (block,)), ast.Layer(C("concat", C("x"), C("y"))))


def test_any_name_heads_a_block_for_the_checker_to_judge():
    (net,) = parse("network n { residal\n  { relu } }").statements
    assert net.body == (ast.Block(C("residal"), (ast.Layer(C("relu")),)),)
    text = "network n { concat(a) { relu } }"  # a call with options is no block
    (problem,) = syntax_error(text).problems
    assert at(problem) == where(text, "{ relu")


def test_shortcut_is_a_word_only_after_a_block():
    (net,) = parse("let shortcut = 1\nnetwork n { shortcut relu }").statements[1:]
    assert net.body == (ast.Layer(C("shortcut")), ast.Layer(C("relu")))
    text = "network n {\n  residual { relu }\n  shortcut\n}"
    (problem,) = syntax_error(text).problems
    assert at(problem) == (4, 1)
    assert problem.message == "unexpected '}'; expected '{'"


def test_block_positions():
    text = "network n {\n  relu\n  b = residual {\n    relu\n  } shortcut {\n    tanh\n  }\n}"
    block = parse(text).statements[0].body[1]
    assert at(block) == where(text, "b = residual")
    assert end(block) == (7, 4)  # the shortcut's closing brace ends the block
    assert at(block.call) == where(text, "residual")
    assert at(block.body[0]) == where(text, "relu", 1)
    assert at(block.shortcut[0]) == where(text, "tanh")


def test_an_unclosed_block_names_its_brace():
    text = "network n {\n  residual {\n    relu\n}\n"
    (problem,) = syntax_error(text).problems
    assert problem.message.startswith("unexpected end of file")
    assert problem.hint == "the '{' on line 1 is never closed"


@pytest.mark.parametrize("kind", ["data", "train", "search", "lr_range_test"])
def test_sections(kind):
    (section,) = parse(f"{kind} {{ a 1  b name  c f(x=2) }}").statements
    assert section == ast.Section(
        kind,
        (
            ast.Setting("a", N(1)),
            ast.Setting("b", C("name")),
            ast.Setting("c", C("f", x=N(2))),
        ),
    )


def test_search_samples_and_settings_mix():
    (section,) = parse("search { lr ~ loguniform(1e-4, 0.1)  trials 3  w ~ choice }").statements
    assert section.items == (
        ast.Sample("lr", C("loguniform", N(1e-4), N(0.1))),
        ast.Setting("trials", N(3)),
        ast.Sample("w", C("choice")),
    )


def test_program_helpers_select_statements():
    program = parse("let a = 1 data { x 1 } let b = 2 train { y 2 } graph g { output o = 1 }")
    assert [s.name for s in program.of_type(ast.Let)] == ["a", "b"]
    assert [s.kind for s in program.sections("train")] == ["train"]
    assert program.sections("search") == []


def test_whitespace_and_newlines_are_not_significant():
    compact = "let a = 1 network n { linear(8, init=he) relu } data { dataset moons(n=200) }"
    spread = """
    let a =
        1
    network n
    {
        linear( 8 ,
                init = he )
        relu
    }
    data {
      dataset
        moons( n = 200 )
    }
    """
    assert parse(compact) == parse(spread)


def test_comments_are_ignored_everywhere():
    plain = "let a = 1\nnetwork n { linear(8) relu }\n"
    commented = (
        "# a header\nlet a = 1 # after a let\nnetwork n { # inside\n"
        "  linear(8) # after a layer\n  # a whole line\n  relu\n} # the end"
    )
    assert parse(commented) == parse(plain)


def test_hash_inside_a_string_is_not_a_comment():
    assert value_of('"a#b"') == ast.String("a#b")


# --- expressions ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", 3),
        ("3.", 3.0),
        ("3.25", 3.25),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("1E-3", 1e-3),
        ("2.5e+2", 250.0),
    ],
)
def test_numbers(text, expected):
    number = value_of(text)
    assert number == N(expected)
    assert type(number.value) is type(expected)


def test_calls_bare_empty_and_with_arguments():
    assert value_of("relu") == ast.Call("relu", None, ())
    assert value_of("relu").bare
    empty = value_of("f()")
    assert empty == ast.Call("f", (), ())
    assert not empty.bare
    assert value_of("f(1, 2, a=3, b=x)") == ast.Call(
        "f", (N(1), N(2)), (ast.Keyword("a", N(3)), ast.Keyword("b", C("x")))
    )
    keywords_only = value_of("f(a=1)")
    assert keywords_only.args == ()
    assert keywords_only.keywords == (ast.Keyword("a", N(1)),)
    assert not keywords_only.bare


def test_nested_calls():
    assert value_of("warmup(warmup_steps=10, after=cosine(T_max=90))") == C(
        "warmup", warmup_steps=N(10), after=C("cosine", T_max=N(90))
    )


def test_lists_tuples_and_trailing_commas():
    assert value_of("[1, 2]") == ast.ListExpr((N(1), N(2)))
    assert value_of("[1, 2,]") == ast.ListExpr((N(1), N(2)))
    assert value_of("[]") == ast.ListExpr(())
    assert value_of("(1, 2)") == ast.TupleExpr((N(1), N(2)))
    assert value_of("(1, 2,)") == ast.TupleExpr((N(1), N(2)))
    assert value_of("f(1, a=2,)") == C("f", N(1), a=N(2))
    assert value_of("[sgd(lr=0.1), adam]") == ast.ListExpr((C("sgd", lr=N(0.1)), C("adam")))


def test_one_tuple_needs_its_comma():
    assert value_of("(7,)") == ast.TupleExpr((N(7),))
    assert value_of("(7)") == N(7)


def test_precedence_unary_minus_binds_looser_than_power():
    assert value_of("-2 ** 2") == ast.Neg(ast.BinOp("**", N(2), N(2)))


def test_subtraction_and_division_are_left_associative():
    assert value_of("a - b - c") == ast.BinOp("-", ast.BinOp("-", C("a"), C("b")), C("c"))
    assert value_of("a / b / c") == ast.BinOp("/", ast.BinOp("/", C("a"), C("b")), C("c"))


def test_power_is_right_associative():
    assert value_of("2 ** 3 ** 2") == ast.BinOp("**", N(2), ast.BinOp("**", N(3), N(2)))


def test_power_takes_a_negative_exponent():
    assert value_of("2 ** -1") == ast.BinOp("**", N(2), ast.Neg(N(1)))


def test_products_bind_tighter_than_sums():
    assert value_of("1 + 2 * 3") == ast.BinOp("+", N(1), ast.BinOp("*", N(2), N(3)))
    assert value_of("(1 + 2) * 3") == ast.BinOp("*", ast.BinOp("+", N(1), N(2)), N(3))
    assert value_of("-a * b") == ast.BinOp("*", ast.Neg(C("a")), C("b"))
    assert value_of("2 * -3") == ast.BinOp("*", N(2), ast.Neg(N(3)))


def test_matmul_is_a_product_operator():
    assert value_of("x @ w + b") == ast.BinOp("+", ast.BinOp("@", C("x"), C("w")), C("b"))
    assert value_of("a * b @ c") == ast.BinOp("@", ast.BinOp("*", C("a"), C("b")), C("c"))
    assert value_of("a @ b ** 2") == ast.BinOp("@", C("a"), ast.BinOp("**", C("b"), N(2)))


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        (r'"plain"', "plain"),
        (r'"a\"b"', 'a"b'),
        (r'"back\\slash"', "back\\slash"),
        (r'"tab\there"', "tab\there"),
        (r'"new\nline"', "new\nline"),
        (r'"other\q"', "otherq"),
        (r'""', ""),
        (r'"data/moons.csv"', "data/moons.csv"),
    ],
)
def test_strings_with_escapes(literal, expected):
    assert value_of(literal) == ast.String(expected)


# --- positions ------------------------------------------------------------------------------------
SOURCE = """# a model
let width = 2 * (3 + 4)
network net(scalar=true, input=2) {
  fc1 = linear(width, init=he)
  repeat 2 {
    relu
  }
}
data { dataset moons(n=200) }
search { width ~ choice(8, 16) }
"""


def test_statement_positions():
    let, net, data, search = parse(SOURCE).statements
    assert at(let) == where(SOURCE, "let width")
    assert at(net) == where(SOURCE, "network net")
    assert end(net) == (8, 2)  # just after the closing brace on line 8
    assert at(data) == where(SOURCE, "data {")
    assert at(search) == where(SOURCE, "search {")


def test_expression_positions():
    let = parse(SOURCE).statements[0]
    assert at(let.value) == where(SOURCE, "2 * (3 + 4)")
    line, column = where(SOURCE, "2 * (3 + 4)")
    assert end(let.value) == (line, column + len("2 * (3 + 4)"))
    assert at(let.value.left) == where(SOURCE, "2 * (")
    assert at(let.value.right) == where(SOURCE, "3 + 4")


def test_layer_call_and_argument_positions():
    net = parse(SOURCE).statements[1]
    layer = net.body[0]
    assert at(layer) == where(SOURCE, "fc1 = linear")
    assert at(layer.call) == where(SOURCE, "linear(width")
    line, column = where(SOURCE, "linear(width, init=he)")
    assert end(layer.call) == (line, column + len("linear(width, init=he)"))
    assert at(layer.call.args[0]) == where(SOURCE, "width, init")
    keyword = layer.call.keywords[0]
    assert at(keyword) == where(SOURCE, "init=he")
    assert at(keyword.value) == where(SOURCE, "he)")


def test_network_option_and_repeat_positions():
    net = parse(SOURCE).statements[1]
    assert [at(option) for option in net.options] == [
        where(SOURCE, "scalar=true"),
        where(SOURCE, "input=2"),
    ]
    repeat = net.body[1]
    assert at(repeat) == where(SOURCE, "repeat 2")
    assert at(repeat.count) == where(SOURCE, "2 {")
    assert at(repeat.body[0]) == where(SOURCE, "relu")


def test_setting_and_sample_positions():
    data, search = parse(SOURCE).statements[2:]
    assert at(data.items[0]) == where(SOURCE, "dataset moons")
    assert at(data.items[0].value) == where(SOURCE, "moons(n=200)")
    sample = search.items[0]
    assert at(sample) == where(SOURCE, "width ~")
    assert at(sample.distribution) == where(SOURCE, "choice(8, 16)")


def test_graph_item_positions():
    text = "graph g {\n  input x = 1.0\n  output y = tanh(x)\n}"
    (graph,) = parse(text).statements
    assert [at(item) for item in graph.items] == [
        where(text, "input x"),
        where(text, "output y"),
    ]
    assert at(graph.items[1].value) == where(text, "tanh(x)")


def test_positions_take_no_part_in_equality():
    one, other = parse("let a = 1"), parse("\n\n   let   a =\n 1")
    assert one == other
    assert at(one.statements[0]) != at(other.statements[0])


# --- syntax errors --------------------------------------------------------------------------------
def test_error_points_at_the_unexpected_token_with_a_caret():
    text = "let width = 64\nnetwork n {\n  linear(width,, 3)\n}\n"
    error = syntax_error(text)
    (problem,) = error.problems
    line, column = where(text, ",, 3")
    column += 1  # the second comma is the unexpected one
    assert at(problem) == (line, column)
    head, quoted, caret = error.render().splitlines()[:3]
    assert head.startswith(f"model.tg:{line}:{column}: error: unexpected ','")
    assert quoted == "    " + text.splitlines()[line - 1]
    assert caret == "    " + " " * (column - 1) + "^"


def test_error_names_what_was_expected():
    error = syntax_error("let = 3")
    (problem,) = error.problems
    assert at(problem) == (1, 5)
    assert problem.message == "unexpected '='; expected a name"


def test_error_after_a_statement_lists_the_statement_keywords():
    (problem,) = syntax_error("data { val 0.1 }}").problems
    assert at(problem) == (1, 17)
    for word in ("'data'", "'graph'", "'let'", "'network'"):
        assert word in problem.message


def test_error_inside_a_call_lists_expression_starts():
    (problem,) = syntax_error("network n {\n  linear( }").problems
    assert at(problem) == where("network n {\n  linear( }", "}")
    assert "unexpected '}'" in problem.message
    for word in ("')'", "a name", "a number"):
        assert word in problem.message


def test_error_at_end_of_file():
    text = "let x = 3 +\n"
    (problem,) = syntax_error(text).problems
    assert at(problem) == (1, len("let x = 3 +") + 1)
    assert problem.message.startswith("unexpected end of file; expected ")
    assert "a number" in problem.message


def test_unclosed_block_reports_end_of_file():
    (problem,) = syntax_error("network n {\n  relu\n").problems
    assert problem.message.startswith("unexpected end of file")
    assert "'}'" in problem.message


def test_single_quotes_get_a_hint():
    error = syntax_error("data {\n  dataset 'moons'\n}")
    (problem,) = error.problems
    assert at(problem) == (2, 11)
    assert problem.message == 'unexpected character "\'"'
    assert "double quotes" in problem.hint
    assert error.render().splitlines()[-1].startswith("    hint: ")


def test_unknown_character():
    (problem,) = syntax_error("let a = 3 $ 4").problems
    assert at(problem) == (1, 11)
    assert "'$'" in problem.message


def test_error_on_a_later_line():
    text = "let a = 1\nlet b = 2\nlet c = = 3\n"
    (problem,) = syntax_error(text).problems
    assert at(problem) == (3, 9)
    assert "model.tg:3:9:" in str(syntax_error(text))


def test_positional_network_options_are_refused_at_the_value():
    text = "network n(3, scalar=true) { relu }"
    (problem,) = syntax_error(text).problems
    assert at(problem) == where(text, "3,")
    assert "name=value" in problem.message


def test_a_layer_needs_a_call_not_a_number():
    text = "network n { 3 }"
    (problem,) = syntax_error(text).problems
    assert at(problem) == where(text, "3")
