"""The model-file editor: line numbers, syntax colours, and the language's errors underlined
where the checker found them, rechecked a moment after the person stops typing. It marks the
lines that made the selected or stepped node, and says which line a click lands on, so the
window can link the text and the graph both ways."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPoint, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QFontDatabase,
    QHelpEvent,
    QKeyEvent,
    QPainter,
    QPaintEvent,
    QTextCharFormat,
    QTextCursor,
    QTextFormat,
)
from PySide6.QtWidgets import QPlainTextEdit, QTextEdit, QToolTip, QWidget
from topograd.dsl.errors import Problem
from topograd.gui.diagnostics import Diagnosis, describe, diagnose, qt_offset
from topograd.gui.highlight import ModelHighlighter
from topograd.gui.theme import theme

INDENT = "  "  # the samples indent blocks by two spaces
GUTTER_PADDING = 6  # pixels either side of the numbers
MARKER = 8  # diameter of a problem marker in the gutter, in pixels


class LineNumbers(QWidget):
    """The gutter left of the text: one number per visible line, and a red dot on the lines
    that have a problem. The editor paints it; this widget only gives it a place."""

    def __init__(self, editor: CodeEditor):
        super().__init__(editor)
        self.editor = editor

    def sizeHint(self) -> QSize:
        return QSize(self.editor.gutter_width(), 0)

    def paintEvent(self, event: QPaintEvent) -> None:
        self.editor.paint_gutter(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            problems = self.editor.problems_on_line(self.editor.line_at(event.pos().y()))
            if problems:
                QToolTip.showText(event.globalPos(), describe(problems), self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)


class CodeEditor(QPlainTextEdit):
    """A plain-text editor for model files; `set_problems` underlines the checker's
    problems and the text under the mouse tells what is wrong there; `link_lines` marks the
    lines of a node, and a click on a line says which (`lineClicked`)."""

    lineClicked = Signal(int)  # the 1-based line a click put the cursor on

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.setTabStopDistance(self.fontMetrics().horizontalAdvance(" ") * len(INDENT))
        self.highlighter = ModelHighlighter(self.document())
        self.gutter = LineNumbers(self)
        self._problems: tuple[Problem, ...] = ()
        self._spans: list[tuple[QTextCursor, Problem]] = []
        self._linked: tuple[int, int] | None = None
        self.blockCountChanged.connect(self._fit_gutter)
        self.updateRequest.connect(self._scroll_gutter)
        self.cursorPositionChanged.connect(self._show_selections)
        self._fit_gutter()
        self._show_selections()

    # --- text -----------------------------------------------------------------------------------
    def source_text(self) -> str:
        """The text as the parser must see it: one "\\n" between lines (Qt's blocks), every
        other character as typed (a no-break space stays one, unlike toPlainText)."""
        return self.document().toRawText().replace("\u2029", "\n")

    def go_to(self, line: int, column: int) -> None:
        """Put the cursor at a 1-based line and column (as a Problem counts) and show it."""
        document = self.document()
        block = document.findBlockByNumber(min(max(line, 1), document.blockCount()) - 1)
        text = block.text()
        index = min(max(column, 1) - 1, len(text))
        cursor = QTextCursor(block)
        cursor.setPosition(block.position() + qt_offset(text, index))
        self.setTextCursor(cursor)
        self.centerCursor()
        self.setFocus()

    # --- lines linked with the graph ---------------------------------------------------------
    def link_lines(self, lines: tuple[int, int] | None) -> None:
        """Mark the lines first..last (1-based) as the selected node's and scroll them into
        view without moving the cursor; None: no mark."""
        if lines == self._linked:
            return
        self._linked = lines
        self._show_selections()
        if lines is None:
            return
        block = self.document().findBlockByNumber(lines[0] - 1)
        if block.isValid():
            top = self.blockBoundingGeometry(block).translated(self.contentOffset()).top()
            if not 0 <= top <= self.viewport().height() - self.fontMetrics().height():
                bar = self.verticalScrollBar()
                bar.setValue(max(0, lines[0] - 1 - self.visible_lines() // 3))

    @property
    def linked_lines(self) -> tuple[int, int] | None:
        """The lines marked as the selected node's."""
        return self._linked

    def visible_lines(self) -> int:
        return max(1, self.viewport().height() // max(1, self.fontMetrics().height()))

    def mouseReleaseEvent(self, event) -> None:
        super().mouseReleaseEvent(event)
        cursor = self.textCursor()
        if event.button() == Qt.MouseButton.LeftButton and not cursor.hasSelection():
            self.lineClicked.emit(cursor.blockNumber() + 1)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        plain = event.modifiers() in (
            Qt.KeyboardModifier.NoModifier,
            Qt.KeyboardModifier.KeypadModifier,
        )
        if event.key() == Qt.Key.Key_Tab and plain:
            self.textCursor().insertText(INDENT)
        elif event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and plain:
            self._new_line_with_indent()
        else:
            super().keyPressEvent(event)

    def _new_line_with_indent(self) -> None:
        cursor = self.textCursor()
        before = cursor.block().text()[: cursor.positionInBlock()]
        indent = before[: len(before) - len(before.lstrip(" \t"))]
        cursor.insertText("\n" + indent)
        self.ensureCursorVisible()

    # --- problems -------------------------------------------------------------------------------
    def set_problems(self, problems) -> None:
        """Underline each problem (red, wavy) and mark its line in the gutter; the marks
        follow the text as it is edited, until the next call replaces them."""
        self._problems = tuple(problems)
        self._spans = [(self._span(problem), problem) for problem in self._problems]
        self._show_selections()
        self.gutter.update()

    def problems(self) -> tuple[Problem, ...]:
        """The problems shown now, in the order given to set_problems."""
        return self._problems

    def problem_at(self, position: int) -> list[Problem]:
        """The problems whose underline covers the character at a document position."""
        return [
            problem
            for cursor, problem in self._spans
            if cursor.selectionStart() <= position < cursor.selectionEnd()
        ]

    def problems_on_line(self, line: int) -> list[Problem]:
        """The problems marked on a 1-based line (where their underline starts)."""
        return [problem for cursor, problem in self._spans if self._line_of(cursor) == line]

    def _span(self, problem: Problem) -> QTextCursor:
        """A selection over the problem's characters; a problem with no width covers one
        character (the last of its line when it points past the end)."""
        document = self.document()
        pos = problem.pos
        line = min(max(pos.line, 1), document.blockCount())
        block = document.findBlockByNumber(line - 1)
        text = block.text()
        column = max(pos.column, 1) - 1
        start = block.position() + qt_offset(text, min(column, len(text)))
        end = start
        if (pos.end_line, pos.end_column) > (pos.line, pos.column):
            end_line = min(pos.end_line, document.blockCount())
            end_block = document.findBlockByNumber(end_line - 1)
            end_text = end_block.text()
            end_index = min(max(pos.end_column, 1) - 1, len(end_text))
            end = end_block.position() + qt_offset(end_text, end_index)
        if end <= start and text:
            column = min(column, len(text) - 1)
            start = block.position() + qt_offset(text, column)
            end = block.position() + qt_offset(text, column + 1)
        cursor = QTextCursor(document)
        cursor.setPosition(start)
        cursor.setPosition(max(end, start), QTextCursor.MoveMode.KeepAnchor)
        return cursor

    def _line_of(self, cursor: QTextCursor) -> int:
        return self.document().findBlock(cursor.selectionStart()).blockNumber() + 1

    def _show_selections(self) -> None:
        colours = theme()
        line_format = QTextCharFormat()
        line_format.setBackground(colours.current_line)
        line_format.setProperty(QTextFormat.Property.FullWidthSelection, True)
        here = self.textCursor()
        here.clearSelection()
        current = QTextEdit.ExtraSelection()
        current.format = line_format
        current.cursor = here
        underline = QTextCharFormat()
        underline.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SpellCheckUnderline)
        underline.setUnderlineColor(colours.error)
        selections = [*self._linked_selections(), current]
        for cursor, _ in self._spans:
            selection = QTextEdit.ExtraSelection()
            selection.format = underline
            selection.cursor = cursor
            selections.append(selection)
        self.setExtraSelections(selections)

    def _linked_selections(self) -> list:
        """One full-width mark per linked line."""
        if self._linked is None:
            return []
        linked = QTextCharFormat()
        linked.setBackground(theme().linked_line)
        linked.setProperty(QTextFormat.Property.FullWidthSelection, True)
        document, marks = self.document(), []
        first, last = self._linked
        for number in range(max(first, 1), min(last, document.blockCount()) + 1):
            mark = QTextEdit.ExtraSelection()
            mark.format = linked
            mark.cursor = QTextCursor(document.findBlockByNumber(number - 1))
            marks.append(mark)
        return marks

    def repaint_colours(self) -> None:
        """Take the theme's colours again (the palette changed)."""
        self.highlighter.set_dark(theme().dark)
        self._show_selections()
        self.gutter.update()

    # --- tooltips -------------------------------------------------------------------------------
    def tooltip_at(self, point: QPoint) -> str:
        """What hovering at a viewport point tells: the messages of the problems there."""
        cursor = self.cursorForPosition(point)
        position = cursor.position()
        if point.x() < self.cursorRect(cursor).x():  # the mouse is over the previous character
            position -= 1
        return describe(self.problem_at(position))

    def viewportEvent(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            text = self.tooltip_at(event.pos())
            if text:
                QToolTip.showText(event.globalPos(), text, self.viewport())
            else:
                QToolTip.hideText()
            return True
        return super().viewportEvent(event)

    # --- the gutter -----------------------------------------------------------------------------
    def gutter_width(self) -> int:
        """Pixels for the widest line number (at least two digits) and a problem marker."""
        digits = max(2, len(str(self.blockCount())))
        return MARKER + 2 * GUTTER_PADDING + self.fontMetrics().horizontalAdvance("9") * digits

    def line_at(self, y: int) -> int:
        """The 1-based line shown at a height in the viewport (0 below the last line)."""
        block = self.firstVisibleBlock()
        top = self.blockBoundingGeometry(block).translated(self.contentOffset()).top()
        while block.isValid():
            bottom = top + self.blockBoundingRect(block).height()
            if top <= y < bottom:
                return block.blockNumber() + 1
            block, top = block.next(), bottom
        return 0

    def paint_gutter(self, event: QPaintEvent) -> None:
        """Paint the visible lines' numbers and problem markers into the gutter."""
        colours = theme()
        painter = QPainter(self.gutter)
        painter.fillRect(event.rect(), colours.gutter_background)
        marked = {self._line_of(cursor) for cursor, _ in self._spans}
        width = self.gutter.width() - GUTTER_PADDING
        height = self.fontMetrics().height()
        block = self.firstVisibleBlock()
        top = self.blockBoundingGeometry(block).translated(self.contentOffset()).top()
        while block.isValid() and top <= event.rect().bottom():
            bottom = top + self.blockBoundingRect(block).height()
            if block.isVisible() and bottom >= event.rect().top():
                number = block.blockNumber() + 1
                painter.setPen(colours.gutter_text)
                area = QRect(0, int(top), width, height)
                painter.drawText(area, Qt.AlignmentFlag.AlignRight, str(number))
                if number in marked:
                    painter.setPen(Qt.PenStyle.NoPen)
                    painter.setBrush(colours.error)
                    y = int(top) + (height - MARKER) // 2
                    painter.drawEllipse(GUTTER_PADDING // 2, y, MARKER, MARKER)
            block, top = block.next(), bottom
        painter.end()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_gutter()

    def _fit_gutter(self) -> None:
        width = self.gutter_width()
        self.setViewportMargins(width, 0, 0, 0)
        rect = self.contentsRect()
        self.gutter.setGeometry(rect.left(), rect.top(), width, rect.height())

    def _scroll_gutter(self, rect: QRect, dy: int) -> None:
        if dy:
            self.gutter.scroll(0, dy)
        else:
            self.gutter.update(0, rect.y(), self.gutter.width(), rect.height())
        if rect.contains(self.viewport().rect()):
            self._fit_gutter()


class DebouncedChecker(QObject):
    """Checks the editor's text once typing pauses for `delay_ms`, and emits the result.
    The window shows it: `checked.connect(lambda d: editor.set_problems(d.problems))`."""

    checked = Signal(object)  # a gui.diagnostics.Diagnosis

    def __init__(
        self,
        editor: CodeEditor,
        name: str = "untitled.tg",
        delay_ms: int = 300,
        parent: QObject | None = None,
    ):
        super().__init__(parent if parent is not None else editor)
        self.editor = editor
        self.name = name
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(delay_ms)
        self.timer.timeout.connect(self.check_now)
        editor.textChanged.connect(self.timer.start)

    def set_name(self, name: str) -> None:
        """The file name that messages carry and relative data paths start from."""
        self.name = name

    def check_now(self) -> Diagnosis:
        """Check at once (a pending check is dropped), emit `checked`, and return it."""
        self.timer.stop()
        diagnosis = diagnose(self.editor.source_text(), self.name)
        self.checked.emit(diagnosis)
        return diagnosis
