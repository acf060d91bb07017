"""The problems list under the editor: every language error of the file, one per row;
choosing a row asks the window to move the editor's cursor there."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QWidget
from topograd.dsl.errors import Problem
from topograd.gui.diagnostics import describe

PLACE = Qt.ItemDataRole.UserRole  # a row's (line, column)
NO_PROBLEMS = "No problems"


def row_text(problem: Problem) -> str:
    """A row as compilers print it: `line:column: message`."""
    return f"{problem.pos.line}:{problem.pos.column}: {problem.message}"


class ProblemsList(QListWidget):
    """The file's problems in file order; a click or Enter on one emits its place."""

    activated = Signal(int, int)  # line, column (1-based); hides QListWidget's own

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.itemClicked.connect(self._choose)
        self.itemActivated.connect(self._choose)
        self.show_problems(())

    def show_problems(self, problems) -> None:
        """Replace the rows with these problems, or one inert "No problems" row."""
        self.clear()
        for problem in problems:
            item = QListWidgetItem(row_text(problem))
            item.setToolTip(describe([problem]))
            item.setData(PLACE, (problem.pos.line, problem.pos.column))
            self.addItem(item)
        if not self.count():
            empty = QListWidgetItem(NO_PROBLEMS)
            empty.setFlags(Qt.ItemFlag.NoItemFlags)
            self.addItem(empty)

    def places(self) -> list[tuple[int, int]]:
        """The (line, column) of each row, in order; empty when there are no problems."""
        rows = (self.item(index).data(PLACE) for index in range(self.count()))
        return [tuple(place) for place in rows if place is not None]

    def _choose(self, item: QListWidgetItem) -> None:
        place = item.data(PLACE)
        if place is not None:
            self.activated.emit(*place)
