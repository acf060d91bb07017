"""The formatter keeps a file's meaning and comments, is idempotent, and prints the layout
the README promises; `topograd fmt` prints, checks and rewrites files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import numbers_of, programs, untidy_sources
from topograd.dsl import ast
from topograd.dsl.cli import main
from topograd.dsl.errors import DslSyntaxError
from topograd.dsl.fmt import format_program, format_source
from topograd.dsl.parser import parse, parse_with_comments

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent.parent / "samples"
SEEDS = HERE / "fuzz_seeds"

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same_tree(left: ast.Program, right: ast.Program) -> None:
    """Equal trees, and every number of the same type (tree equality says 1 == 1.0)."""
    assert left == right
    assert numbers_of(left) == numbers_of(right)


def comments_of(text: str) -> list[str]:
    return [body for _, body in parse_with_comments(text)[1]]


def check_layout(text: str) -> None:
    for line in text.split("\n"):
        assert line == line.rstrip(), f"trailing space in {line!r}"
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0 and not line[indent:].startswith("\t"), line
    assert text == "" or (text.endswith("\n") and not text.endswith("\n\n"))


# --- properties over random trees ----------------------------------------------------------------
@PROPERTY
@given(programs)
def test_printed_tree_parses_back_to_itself(program):
    text = format_program(program)
    same_tree(parse(text), program)
    assert format_source(text) == text
    check_layout(text)


@PROPERTY
@given(programs, st.data())
def test_untidy_text_keeps_its_meaning_and_comments(program, data):
    text, written = data.draw(untidy_sources(program))
    same_tree(parse(text), program)  # the untidy printer itself is right
    formatted = format_source(text)
    same_tree(parse(formatted), program)
    assert comments_of(formatted) == written
    assert format_source(formatted) == formatted
    check_layout(formatted)


@PROPERTY
@given(programs, st.data())
def test_formatting_ignores_how_a_file_was_spaced(program, data):
    """Two untidy printings of one tree (without comments, and numbers as Python spells
    them) format to the same text: the canonical form depends on the tree alone."""
    canonical = format_program(program)
    text, _ = data.draw(untidy_sources(parse(canonical), comments=False))
    respelled = format_source(text)
    same_tree(parse(respelled), program)
    assert format_source(format_program(parse(respelled))) == canonical


# --- the layout, by example --------------------------------------------------------------------
MESSY = """\
# a model written in a hurry
let width=64 let lr = 1e-3   # Adam's default
let depth=2
data{dataset digits val 0.15
test 0.15}
network mlp( input = 64 ,classes=10, ){
   fc1=linear( width , init = he )  relu
 repeat depth{linear(width) batchnorm relu}   # hidden blocks
  # the output size comes from the data
  linear}
graph g { input x=2.0 param w=-(3.0**2) h=(-x)**2+x@w
output y=tanh( h , ) }
train { loss cross_entropy
  optimizer adam( lr = lr , betas = ( 0.9 , 0.999 ) )
  schedule warmup(warmup_steps=5,after=cosine(T_max=100))
  # more settings later
}
search{lr~loguniform(1e-4,1e-1)  width ~ choice ( 32 , 64 ) }   # keep it short
"""

CANONICAL = """\
# a model written in a hurry
let width = 64
let lr = 1e-3  # Adam's default
let depth = 2

data {
  dataset digits
  val 0.15
  test 0.15
}

network mlp(input=64, classes=10) {
  fc1 = linear(width, init=he)
  relu
  repeat depth {
    linear(width)
    batchnorm
    relu
  }  # hidden blocks
  # the output size comes from the data
  linear
}

graph g {
  input x = 2.0
  param w = -3.0 ** 2
  h = (-x) ** 2 + x @ w
  output y = tanh(h)
}

train {
  loss cross_entropy
  optimizer adam(lr=lr, betas=(0.9, 0.999))
  schedule warmup(warmup_steps=5, after=cosine(T_max=100))
  # more settings later
}

search {
  lr ~ loguniform(1e-4, 1e-1)
  width ~ choice(32, 64)
}  # keep it short
"""


def test_a_messy_file_gets_the_canonical_layout():
    assert format_source(MESSY) == CANONICAL
    assert format_source(CANONICAL) == CANONICAL
    same_tree(parse(CANONICAL), parse(MESSY))


@pytest.mark.parametrize(
    ("written", "printed"),
    [
        ("a-(b-c)", "a - (b - c)"),
        ("(a-b)-c", "a - b - c"),
        ("a-b+c", "a - b + c"),
        ("a/(b*c)", "a / (b * c)"),
        ("(a+b)*c", "(a + b) * c"),
        ("a*b+c", "a * b + c"),
        ("a@(b@c)", "a @ (b @ c)"),
        ("-(x**2)", "-x ** 2"),
        ("-x**2", "-x ** 2"),
        ("(-x)**2", "(-x) ** 2"),
        ("2**3**2", "2 ** 3 ** 2"),
        ("(2**3)**2", "(2 ** 3) ** 2"),
        ("2**-1", "2 ** -1"),
        ("2**(-1)", "2 ** -1"),
        ("2**(1+1)", "2 ** (1 + 1)"),
        ("-(a+b)", "-(a + b)"),
        ("-(-3)", "--3"),
        ("a- -b", "a - -b"),
        ("a*-b", "a * -b"),
        ("f(x)**g", "f(x) ** g"),
        ("((1))", "1"),
        ("(1,)", "(1,)"),
        ("(1,2,)", "(1, 2)"),
        ("[ ]", "[]"),
        ("[1,[2,(3,)],]", "[1, [2, (3,)]]"),
        ("relu", "relu"),
        ("relu( )", "relu()"),
        ("f(k=1,2,)", "f(2, k=1)"),
        ("1E-3", "1E-3"),
        ("007", "007"),
        ('"a\\qb\\"c\\\\"', '"aqb\\"c\\\\"'),
        ('"tab\there"', '"tab\\there"'),
    ],
)
def test_expressions_print_with_minimal_parentheses(written, printed):
    assert format_source(f"let x = {written}") == f"let x = {printed}\n"
    same_tree(parse(f"let x = {printed}"), parse(f"let x = {written}"))


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (3, "3"),
        (3.0, "3.0"),
        (1e-3, "0.001"),
        (1e-7, "1e-07"),
        (1e22, "1e+22"),
        (5e-324, "5e-324"),
        (math.inf, "1e999"),
        (10**25, "10000000000000000000000000"),
    ],
)
def test_numbers_from_a_tree_read_back_with_their_type(value, printed):
    text = format_program(ast.Program((ast.Let("x", ast.Number(value)),)))
    assert text == f"let x = {printed}\n"
    read = parse(text).statements[0].value.value
    assert type(read) is type(value) and read == value


def test_empty_files_and_blocks():
    assert format_source("") == ""
    assert format_source("  \n\n") == ""
    assert format_source("# only a comment\n\n") == "# only a comment\n"
    assert format_source("data{ }  network n(){}") == "data {}\n\nnetwork n {}\n"


def test_comments_stay_where_they_were_written():
    text = """\
let a = 1 # trailing
# own line, before b
let b = 2
graph g { # after the brace
  input x = 1.0
  # before y
  output y = x   # after y
  # end of the graph
}   # after the graph
network n(input=2, # inside the header
  classes=2) {
  linear(4,  # a call written over lines
     init=he)
}
# the end
"""
    assert (
        format_source(text)
        == """\
let a = 1  # trailing
# own line, before b
let b = 2

graph g {  # after the brace
  input x = 1.0
  # before y
  output y = x  # after y
  # end of the graph
}  # after the graph

# inside the header
network n(input=2, classes=2) {
  linear(
    4,  # a call written over lines
    init=he,
  )
}

# the end
"""
    )


BLOCKS = """\
network n(input=(4,8,8)){stem=conv2d(4,3,padding=1)
repeat 2{residual{conv2d(4,3,padding=1) relu conv2d(kernel_size=3,padding=1)}relu}
down=residual{conv2d(8,3,stride=2,padding=1)}shortcut{conv2d(kernel_size=1,stride=2)}
concat{concat{conv2d(2,1)} relu}  residual { } shortcut { }
add( down ) concat(stem,down,)}
"""

BLOCKS_CANONICAL = """\
network n(input=(4, 8, 8)) {
  stem = conv2d(4, 3, padding=1)
  repeat 2 {
    residual {
      conv2d(4, 3, padding=1)
      relu
      conv2d(kernel_size=3, padding=1)
    }
    relu
  }
  down = residual {
    conv2d(8, 3, stride=2, padding=1)
  } shortcut {
    conv2d(kernel_size=1, stride=2)
  }
  concat {
    concat {
      conv2d(2, 1)
    }
    relu
  }
  residual {} shortcut {}
  add(down)
  concat(stem, down)
}
"""


def test_blocks_get_the_canonical_layout():
    assert format_source(BLOCKS) == BLOCKS_CANONICAL
    assert format_source(BLOCKS_CANONICAL) == BLOCKS_CANONICAL
    same_tree(parse(BLOCKS_CANONICAL), parse(BLOCKS))
    assert format_program(parse(BLOCKS)) == BLOCKS_CANONICAL


def test_comments_in_blocks_stay_where_they_were_written():
    text = """\
network n(input=4) {
  # before the block
  a # inside the header
  = residual
  {  # after the brace
    linear(4)  # after a layer
    # at the end of the body
  }  # after the body
  shortcut  # after the word
  {  # after the shortcut's brace
    linear # in the shortcut
    # at the end of the shortcut
  }  # after the block
  residual { relu } # alone after the body
  shortcut { relu }
  residual {} shortcut {
  }  # after an empty shortcut
  add(a)  # a merge
}
"""
    formatted = format_source(text)
    assert (
        formatted
        == """\
network n(input=4) {
  # before the block
  # inside the header
  a = residual {  # after the brace
    linear(4)  # after a layer
    # at the end of the body
    # after the body
    # after the word
  } shortcut {  # after the shortcut's brace
    linear  # in the shortcut
    # at the end of the shortcut
  }  # after the block
  residual {
    relu
  } shortcut {  # alone after the body
    relu
  }
  residual {} shortcut {}  # after an empty shortcut
  add(a)  # a merge
}
"""
    )
    assert format_source(formatted) == formatted
    assert comments_of(formatted) == comments_of(text)
    same_tree(parse(formatted), parse(text))


def test_a_comment_between_the_body_and_the_shortcut_keeps_its_order():
    """Two comments after the body's brace cannot both end the `} shortcut {` line: both go
    to the end of the body, in order; one alone on its own line too."""
    for between in ("}  # one\n  # two\n  shortcut {", "}\n  # alone\n  shortcut {  # brace"):
        text = f"network n(input=4) {{\n  residual {{\n    relu\n  {between}\n    relu\n  }}\n}}\n"
        formatted = format_source(text)
        assert comments_of(formatted) == comments_of(text)
        assert format_source(formatted) == formatted
        assert "\n  } shortcut {" in formatted
        check_layout(formatted)


def test_long_lines_break_one_element_per_line():
    optimizers = ", ".join(f"sgd(lr=0.{i}, momentum=0.9)" for i in range(1, 5))
    text = f"train {{ optimizer [{optimizers}] loss mse }}"
    assert format_source(text) == (
        "train {\n"
        "  optimizer [\n"
        "    sgd(lr=0.1, momentum=0.9),\n"
        "    sgd(lr=0.2, momentum=0.9),\n"
        "    sgd(lr=0.3, momentum=0.9),\n"
        "    sgd(lr=0.4, momentum=0.9),\n"
        "  ]\n"
        "  loss mse\n"
        "}\n"
    )
    short = "train {\n  optimizer [sgd(lr=0.1), adam(lr=1e-3)]\n}\n"
    assert format_source(short.replace("), ", "),\n    ")) == short


def test_a_syntax_error_is_raised_with_its_place():
    with pytest.raises(DslSyntaxError) as caught:
        format_source("let x = (1\nlet y = 2\n", "bad.tg")
    assert caught.value.problems[0].pos.line == 2
    assert caught.value.render().startswith("bad.tg:2:1: error:")


def model_files() -> list[Path]:
    return sorted(SAMPLES.glob("*.tg")) + sorted(SEEDS.glob("*.tg"))


def test_every_model_file_formats_stably():
    """Each sample and fuzz seed keeps its tree and comments, and a second pass changes
    nothing; the seeds are written in the canonical layout already. Zero samples is fine."""
    for path in model_files():
        text = path.read_text(encoding="utf-8")
        formatted = format_source(text, str(path))
        same_tree(parse(formatted), parse(text))
        assert comments_of(formatted) == comments_of(text), path
        assert format_source(formatted) == formatted, path
        if path.parent == SEEDS:
            assert formatted == text, path


# --- the command line ----------------------------------------------------------------------------
@pytest.fixture
def files(tmp_path):
    tidy = tmp_path / "tidy.tg"
    tidy.write_text("let a = 1\n", encoding="utf-8")
    messy = tmp_path / "messy.tg"
    messy.write_text("let  a=1# one\nlet b=(2)", encoding="utf-8")
    return tidy, messy


def test_fmt_prints_the_formatted_file(files, capsys):
    tidy, messy = files
    assert main(["fmt", str(messy), str(tidy)]) == 0
    out = capsys.readouterr()
    assert out.out == "let a = 1  # one\nlet b = 2\nlet a = 1\n"
    assert out.err == ""
    assert messy.read_text(encoding="utf-8") == "let  a=1# one\nlet b=(2)"


def test_fmt_check_lists_the_files_that_would_change(files, capsys):
    tidy, messy = files
    assert main(["fmt", "--check", str(tidy)]) == 0
    assert capsys.readouterr().out == ""
    assert main(["fmt", "--check", str(tidy), str(messy)]) == 1
    assert capsys.readouterr().out == f"would reformat {messy}\n"
    assert messy.read_text(encoding="utf-8") == "let  a=1# one\nlet b=(2)"


def test_fmt_write_rewrites_only_changed_files(files, capsys):
    tidy, messy = files
    tidy.chmod(0o640)
    before = tidy.stat()
    assert main(["fmt", "--write", str(tidy), str(messy)]) == 0
    assert capsys.readouterr().out == f"reformatted {messy}\n"
    assert messy.read_text(encoding="utf-8") == "let a = 1  # one\nlet b = 2\n"
    after = tidy.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in messy.parent.iterdir()) == ["messy.tg", "tidy.tg"]
    assert main(["fmt", "--check", str(tidy), str(messy)]) == 0


def test_fmt_write_keeps_the_file_mode(files):
    _, messy = files
    messy.chmod(0o600)
    assert main(["fmt", "--write", str(messy)]) == 0
    assert messy.stat().st_mode & 0o777 == 0o600


def test_fmt_reports_language_errors_with_their_place(tmp_path, capsys):
    bad = tmp_path / "bad.tg"
    bad.write_text("network n {\n  linear(4\n}\n", encoding="utf-8")
    good = tmp_path / "good.tg"
    good.write_text("let a=1\n", encoding="utf-8")
    assert main(["fmt", "--write", str(bad), str(good)]) == 2
    out = capsys.readouterr()
    assert out.err.startswith(f"{bad}:3:1: error: unexpected '}}'")
    assert "    ^" in out.err and "Traceback" not in out.err
    assert bad.read_text(encoding="utf-8") == "network n {\n  linear(4\n}\n"
    assert good.read_text(encoding="utf-8") == "let a = 1\n"


def test_fmt_missing_file_and_bad_usage(tmp_path, capsys):
    missing = tmp_path / "nope.tg"
    assert main(["fmt", str(missing)]) == 2
    assert capsys.readouterr().err == f"topograd: no such file: {missing}\n"
    assert main(["fmt", "--check", "--write", str(missing)]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["fmt"]) == 2
