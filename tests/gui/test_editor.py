"""The editor: colours from the grammar, problems underlined at the checker's columns with
their messages on hover, a check shortly after typing stops, and the problems list."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QPoint, Qt
from PySide6.QtGui import QHelpEvent, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QApplication, QToolTip
from topograd.gui.diagnostics import diagnose
from topograd.gui.editor import CodeEditor, DebouncedChecker
from topograd.gui.highlight import classify, keywords
from topograd.gui.problems import NO_PROBLEMS, ProblemsList
from topograd.gui.theme import theme

GRAMMAR = Path(__file__).resolve().parents[2] / "dsl" / "grammar.lark"

BROKEN = """\
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


@pytest.fixture
def editor(qtbot):
    widget = CodeEditor()
    qtbot.addWidget(widget)
    widget.resize(700, 400)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def line_of(text: str, number: int) -> str:
    return text.split("\n")[number - 1]


def problem_selections(editor):
    return [s for s in editor.extraSelections() if s.cursor.hasSelection()]


def point_over(editor, position: int) -> QPoint:
    """A viewport point over the middle of the character at a document position."""
    cursor = QTextCursor(editor.document())
    cursor.setPosition(position)
    rect = editor.cursorRect(cursor)
    return QPoint(rect.x() + editor.fontMetrics().horizontalAdvance("x") // 2, rect.center().y())


def hover(qtbot, widget, point: QPoint) -> str:
    """The tooltip text that a help event at `point` shows ("" when none shows)."""
    QToolTip.hideText()
    qtbot.waitUntil(lambda: not QToolTip.isVisible(), timeout=2000)
    event = QHelpEvent(QEvent.Type.ToolTip, point, widget.mapToGlobal(point))
    QApplication.sendEvent(widget, event)
    return QToolTip.text() if QToolTip.isVisible() else ""


# --- highlighting -----------------------------------------------------------------------------
def test_keywords_are_the_grammars_quoted_words():
    quoted = set(re.findall(r'"([a-z_]+)"', GRAMMAR.read_text(encoding="utf-8")))
    assert keywords() == quoted
    assert {"network", "train", "let", "repeat", "lr_range_test"} <= keywords()


def test_classify_names_each_piece():
    line = '  out = linear(4, init=he) ** 2  # "not a string"'
    pieces = {line[start:end]: kind for start, end, kind in classify(line)}
    assert pieces == {
        "=": "operator",
        "linear": "call",
        "4": "number",
        "**": "operator",
        "2": "number",
        '# "not a string"': "comment",
    }
    assert classify('letter let "a#b" true') == [
        (7, 10, "keyword"),
        (11, 16, "string"),
        (17, 21, "constant"),
    ]


def formats_of(editor, line: int) -> dict[str, QTextCharFormat]:
    block = editor.document().findBlockByNumber(line - 1)
    text = block.text()
    ranges = block.layout().formats()
    return {text[r.start : r.start + r.length]: QTextCharFormat(r.format) for r in ranges}


def same_style(format_a: QTextCharFormat, format_b: QTextCharFormat) -> bool:
    return (
        format_a.foreground().color() == format_b.foreground().color()
        and format_a.fontWeight() == format_b.fontWeight()
        and format_a.fontItalic() == format_b.fontItalic()
    )


def test_the_highlighter_colours_keywords_and_comments(editor):
    editor.setPlainText("network n {  # the model\n  linear(4)\n}\ntrain {\n  epochs 1\n}\n")
    expected = editor.highlighter.formats
    first = formats_of(editor, 1)
    assert same_style(first["network"], expected["keyword"])
    assert same_style(first["# the model"], expected["comment"])
    assert not same_style(expected["keyword"], expected["comment"])
    assert set(first) == {"network", "# the model"}
    assert same_style(formats_of(editor, 2)["linear"], expected["call"])
    assert same_style(formats_of(editor, 4)["train"], expected["keyword"])
    assert same_style(formats_of(editor, 5)["1"], expected["number"])


def test_highlighting_counts_characters_beyond_the_bmp_as_qt_does(editor):
    editor.setPlainText('let a = "\U0001f600" + 12')
    block = editor.document().firstBlock()
    ranges = {(r.start, r.length) for r in block.layout().formats()}
    assert (15, 2) in ranges  # "12" begins after 14 characters, one of them two units wide
    assert (8, 4) in ranges  # the string: two quotes and a surrogate pair


# --- problems in the text -----------------------------------------------------------------------
def test_underlines_span_the_problems_columns(editor):
    editor.setPlainText(BROKEN)
    problems = diagnose(BROKEN, "broken.tg").problems
    editor.set_problems(problems)

    selections = problem_selections(editor)
    assert len(selections) == len(problems) == 2
    for selection, problem in zip(selections, problems):
        block = editor.document().findBlockByNumber(problem.pos.line - 1)
        assert selection.cursor.selectionStart() == block.position() + problem.pos.column - 1
        assert selection.cursor.selectionEnd() == block.position() + problem.pos.end_column - 1
        words = line_of(BROKEN, problem.pos.line)[
            problem.pos.column - 1 : problem.pos.end_column - 1
        ]
        assert selection.cursor.selectedText() == words
        assert (
            selection.format.underlineStyle() == QTextCharFormat.UnderlineStyle.SpellCheckUnderline
        )
        assert selection.format.underlineColor() == theme().error
    assert editor.problems() == problems


def test_a_problem_past_the_end_of_a_line_underlines_its_last_character(editor):
    text = "network n(input=4) {\n  linear(10)"
    editor.setPlainText(text)
    (problem,) = diagnose(text, "m.tg").problems
    assert problem.pos.column > len(line_of(text, problem.pos.line))  # past the end
    editor.set_problems([problem])
    (selection,) = problem_selections(editor)
    assert selection.cursor.selectedText() == ")"
    assert selection.cursor.selectionEnd() == len(text)


def test_underlines_count_columns_in_characters_not_utf16_units(editor):
    text = 'let s = "\U0001f600"  let a = b\n'
    editor.setPlainText(text)
    (problem,) = diagnose(text, "e.tg").problems
    editor.set_problems([problem])
    (selection,) = problem_selections(editor)
    assert selection.cursor.selectedText() == "b"
    assert problem.pos.column == 22 and selection.cursor.selectionStart() == 22


def test_hovering_an_underline_shows_its_message(editor, qtbot):
    editor.setPlainText(BROKEN)
    typo, bad_lr = diagnose(BROKEN, "broken.tg").problems
    editor.set_problems([typo, bad_lr])
    block = editor.document().findBlockByNumber(typo.pos.line - 1)
    inside = block.position() + typo.pos.column  # the second letter of "lienar"

    assert editor.problem_at(inside) == [typo]
    assert editor.problem_at(block.position()) == []
    tip = hover(qtbot, editor.viewport(), point_over(editor, inside))
    assert typo.message in tip and "did you mean 'linear'?" in tip
    assert bad_lr.message not in tip
    assert hover(qtbot, editor.viewport(), point_over(editor, block.position())) == ""


def test_underlines_follow_edits_until_the_next_check(editor):
    editor.setPlainText(BROKEN)
    (typo,) = diagnose(BROKEN, "b.tg").problems[:1]
    editor.set_problems([typo])
    cursor = QTextCursor(editor.document())
    cursor.insertText("# a new first line\n")
    (selection,) = problem_selections(editor)
    assert selection.cursor.selectedText() == "lienar"


def test_the_gutter_marks_the_lines_with_problems(editor, qtbot):
    editor.setPlainText(BROKEN)
    problems = diagnose(BROKEN, "b.tg").problems
    editor.set_problems(problems)
    image = editor.gutter.grab().toImage()
    red_rows = {
        y
        for y in range(image.height())
        for x in range(image.width())
        if image.pixelColor(x, y) == theme().error
    }
    assert {editor.line_at(y) for y in red_rows} == {p.pos.line for p in problems}
    y = editor.cursorRect(QTextCursor(editor.document().findBlockByNumber(4))).center().y()
    assert editor.line_at(y) == 5
    assert problems[0].message in hover(qtbot, editor.gutter, QPoint(4, y))


def test_the_gutter_grows_with_the_number_of_digits(editor):
    widths = {}
    for lines in (9, 99, 1000, 10000):
        editor.setPlainText("\n" * (lines - 1))
        assert editor.blockCount() == lines
        widths[lines] = editor.gutter_width()
        assert editor.gutter.width() == widths[lines] == editor.viewportMargins().left()
    digit = editor.fontMetrics().horizontalAdvance("9")
    assert widths[9] == widths[99]
    assert widths[1000] == widths[99] + 2 * digit
    assert widths[10000] == widths[1000] + digit


def test_go_to_puts_the_cursor_at_a_problems_place(editor):
    editor.setPlainText(BROKEN)
    editor.go_to(10, 17)
    cursor = editor.textCursor()
    assert (cursor.blockNumber(), cursor.positionInBlock()) == (9, 16)
    editor.go_to(99, 99)  # past the end: the last line's end
    assert editor.textCursor().position() == len(BROKEN)


def test_tab_indents_by_two_spaces_and_enter_keeps_the_indent(editor, qtbot):
    qtbot.keyClicks(editor, "network n {")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.keyClick(editor, Qt.Key.Key_Tab)
    qtbot.keyClicks(editor, "relu")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.keyClicks(editor, "tanh")
    assert editor.source_text() == "network n {\n  relu\n  tanh"


def test_source_text_keeps_what_toplaintext_would_change(editor):
    editor.setPlainText("let a\u00a0= 1\nlet b = 2")
    assert editor.source_text() == "let a\u00a0= 1\nlet b = 2"
    assert diagnose(editor.source_text(), "n.tg").problems[0].message == (
        "unexpected character '\\xa0'"
    )


# --- checking as the person types -----------------------------------------------------------
def test_typing_gives_one_check_after_the_pause(editor, qtbot):
    checker = DebouncedChecker(editor, "typed.tg", delay_ms=100)
    assert DebouncedChecker(editor).timer.interval() == 300
    seen = []
    checker.checked.connect(seen.append)
    with qtbot.waitSignal(checker.checked, timeout=3000) as blocker:
        qtbot.keyClicks(editor, "network n(input=3) {")
        assert seen == []  # nothing while typing
    qtbot.wait(300)
    assert len(seen) == 1
    (diagnosis,) = blocker.args
    assert diagnosis.source.name == "typed.tg"
    assert diagnosis.problems == diagnose("network n(input=3) {", "typed.tg").problems
    assert diagnosis.problems[0].message.startswith("unexpected end of file")


def test_check_now_reports_at_once_and_drops_the_pending_check(editor, qtbot):
    checker = DebouncedChecker(editor, delay_ms=100)
    editor.setPlainText("let a = 1")
    assert checker.timer.isActive()
    with qtbot.waitSignal(checker.checked, timeout=100):
        diagnosis = checker.check_now()
    assert diagnosis.ok and not checker.timer.isActive()
    checker.set_name("renamed.tg")
    assert checker.check_now().source.name == "renamed.tg"


# --- the problems list --------------------------------------------------------------------------
def test_the_list_shows_each_problem_and_reports_a_click(qtbot):
    problems_list = ProblemsList()
    qtbot.addWidget(problems_list)
    problems_list.show()
    problems = diagnose(BROKEN, "b.tg").problems
    problems_list.show_problems(problems)

    rows = [problems_list.item(i) for i in range(problems_list.count())]
    assert [row.text() for row in rows] == [
        f"{p.pos.line}:{p.pos.column}: {p.message}" for p in problems
    ]
    assert "hint: did you mean 'linear'?" in rows[0].toolTip()
    assert problems_list.places() == [(5, 3), (10, 17)]

    second = problems_list.visualItemRect(rows[1]).center()
    with qtbot.waitSignal(problems_list.activated, timeout=1000) as blocker:
        qtbot.mouseClick(problems_list.viewport(), Qt.MouseButton.LeftButton, pos=second)
    assert blocker.args == [10, 17]

    problems_list.setCurrentRow(0)
    with qtbot.waitSignal(problems_list.activated, timeout=1000) as blocker:
        qtbot.keyClick(problems_list, Qt.Key.Key_Return)
    assert blocker.args == [5, 3]


def test_an_empty_list_says_so_and_cannot_be_chosen(qtbot):
    problems_list = ProblemsList()
    qtbot.addWidget(problems_list)
    problems_list.show()
    problems_list.show_problems(())
    assert problems_list.count() == 1
    item = problems_list.item(0)
    assert item.text() == NO_PROBLEMS
    assert item.flags() == Qt.ItemFlag.NoItemFlags
    assert problems_list.places() == []
    with qtbot.assertNotEmitted(problems_list.activated, wait=50):
        center = problems_list.visualItemRect(item).center()
        qtbot.mouseClick(problems_list.viewport(), Qt.MouseButton.LeftButton, pos=center)
