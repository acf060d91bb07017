"""The editor's checking gives exactly what `topograd check` prints: the same problems at the
same lines and columns, rendered the same way."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from topograd.dsl.commands.common import load_spec
from topograd.gui.diagnostics import describe, diagnose, qt_offset

from topograd import gui

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "samples").glob("*.tg"))

TYPO_AND_RANGE = """\
data {
  dataset digits
}
network n {
  lienar(10)
  relu
}
train {
  loss cross_entropy
  optimizer sgd(lr=-1)
  epochs 1
}
"""
MISSING_BRACE = "network n(input=4) {\n  linear(10)\n"
SEMICOLON = "let a = 1;\n"
BROKEN = {"typo_and_range": TYPO_AND_RANGE, "missing_brace": MISSING_BRACE, "semicolon": SEMICOLON}


def cli_problems(path: Path, capsys) -> tuple[list[tuple[int, int, str]], str]:
    """What the CLI prints for a file: (line, column, message) per error, and the report
    without its closing count line."""
    spec, _ = load_spec(path)
    assert spec is None
    printed = capsys.readouterr().err.rstrip("\n").split("\n")
    assert re.fullmatch(r"\d+ errors? in .*", printed[-1])
    heads = [
        re.fullmatch(rf"{re.escape(str(path))}:(\d+):(\d+): error: (.*)", line) for line in printed
    ]
    found = [(int(m[1]), int(m[2]), m[3]) for m in heads if m]
    return found, "\n".join(printed[:-1])


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_is_clean(path):
    diagnosis = diagnose(path.read_text(encoding="utf-8"), str(path))
    assert diagnosis.ok
    assert diagnosis.problems == ()
    assert diagnosis.spec is not None


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_files_match_the_cli(case, tmp_path, capsys):
    path = tmp_path / f"{case}.tg"
    path.write_text(BROKEN[case], encoding="utf-8")
    expected, report = cli_problems(path, capsys)

    diagnosis = diagnose(BROKEN[case], str(path))

    assert not diagnosis.ok and diagnosis.spec is None
    found = [(p.pos.line, p.pos.column, p.message) for p in diagnosis.problems]
    assert found == expected
    assert "\n".join(p.render(diagnosis.source) for p in diagnosis.problems) == report


def test_the_problems_are_where_a_reader_sees_them(tmp_path):
    typo, bad_lr = diagnose(TYPO_AND_RANGE, str(tmp_path / "t.tg")).problems
    assert (typo.pos.line, typo.pos.column, typo.pos.end_column) == (5, 3, 9)
    assert typo.hint == "did you mean 'linear'?"
    assert TYPO_AND_RANGE.split("\n")[9][bad_lr.pos.column - 1 : bad_lr.pos.end_column - 1] == (
        "lr=-1"
    )
    (brace,) = diagnose(MISSING_BRACE, "m.tg").problems
    assert brace.pos.line == 2 and brace.message.startswith("unexpected end of file")
    assert "never closed" in brace.hint


@pytest.mark.parametrize("text", ["", "}", "\x00", "(" * 500, "let = =", "network {", '"'])
def test_any_text_gives_a_diagnosis_with_placed_problems(text):
    diagnosis = diagnose(text, "odd.tg")
    assert diagnosis.ok == (not diagnosis.problems)
    assert all(p.pos.line >= 1 and p.pos.column >= 1 for p in diagnosis.problems)
    if text:
        assert diagnosis.problems


def test_a_bug_is_not_swallowed(monkeypatch):
    def broken_checker(program, source):
        raise RuntimeError("a bug in the checker")

    monkeypatch.setattr(gui.diagnostics, "check", broken_checker)
    with pytest.raises(RuntimeError, match="a bug in the checker"):
        diagnose("let a = 1", "a.tg")


def test_qt_offset_counts_utf16_units():
    line = "a\U0001f600b\u00e9c"
    assert [qt_offset(line, index) for index in range(6)] == [0, 1, 3, 4, 5, 6]
    assert qt_offset("plain", 3) == 3


def test_describe_puts_each_hint_under_its_message():
    problems = diagnose(TYPO_AND_RANGE, "t.tg").problems
    assert describe(problems) == (
        "unknown layer 'lienar'\nhint: did you mean 'linear'?\n\n"
        "optimizer sgd: lr must be > 0, got -1"
    )
