"""The inspector: everything about the selected node, its formulas, inputs, value and gradient.

It shows plain data (a `NodeView` and the `ValueView`s of its value and gradient) that the
window hands over; it never touches the engine. Every shown string can be read back with
`text_of`, so tests read what a person sees.
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QFormLayout,
    QGridLayout,
    QLabel,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from topograd.engine.graph import shape_text
from topograd.gui.heatmap import HeatmapWidget, HistogramWidget
from topograd.gui.model import NodeView
from topograd.gui.values import ValueView, format_number, row_label

DIGITS = 6  # significant digits of the numbers the inspector shows (graph boxes show 4)
VALUE_ROLE = Qt.ItemDataRole.UserRole  # a table cell's exact float
ROOT = QModelIndex()  # a table's cells hang off the invalid (root) index

STATES = {
    "pending": "pending: not computed yet",
    "forward": "forward: value computed",
    "backward": "backward: gradient computed",
}
LEAF_FORMULAS = {
    "input": "none: an input leaf, its value is fed in",
    "parameter": "none: a parameter leaf, its value is learned",
    "constant": "none: a constant leaf the engine made",
}
LEAF_VJPS = {
    "input": "none: a leaf keeps the sum of the gradients its users send back",
    "parameter": "none: a leaf keeps the sum of the gradients its users send back",
    "constant": "none: a constant takes no gradient",
}
STAT_FIELDS = ("shape", "dtype", "mean", "std", "min", "max", "nonfinite")
STAT_LABELS = {"nonfinite": "non-finite"}


def _label(selectable: bool = True, mono: bool = False) -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    if selectable:
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if mono:
        label.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    return label


class ValueTableModel(QAbstractTableModel):
    """The first rows and columns of a ValueView's 2-D view; headers say when it was cut."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._value: ValueView | None = None

    def set_value(self, value: ValueView | None) -> None:
        self.beginResetModel()
        self._value = value
        self.endResetModel()

    def rowCount(self, parent=ROOT) -> int:
        return 0 if self._value is None or parent.isValid() else len(self._value.table)

    def columnCount(self, parent=ROOT) -> int:
        if self._value is None or parent.isValid() or not self._value.table:
            return 0
        return len(self._value.table[0])

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if self._value is None or not index.isValid():
            return None
        number = self._value.table[index.row()][index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return format_number(number, DIGITS)
        if role == Qt.ItemDataRole.ToolTipRole:
            return repr(number)
        if role == VALUE_ROLE:
            return number
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole):
        if self._value is None:
            return None
        rows, columns = self._value.table_shape
        vertical = orientation == Qt.Orientation.Vertical
        if role == Qt.ItemDataRole.DisplayRole:
            return row_label(self._value.shape, section) if vertical else str(section)
        if role == Qt.ItemDataRole.ToolTipRole:
            shown, total, what = (
                (self.rowCount(), rows, "rows")
                if vertical
                else (self.columnCount(), columns, "columns")
            )
            return f"showing {shown} of {total} {what}" if shown < total else None
        return None


class ValuePanel(QWidget):
    """One array: a message when there is none, a big number for one number, else its
    statistics, a table and a heatmap or histogram."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._labels: dict[str, QLabel] = {}
        self._pages = QStackedWidget()
        self._pages.addWidget(self._message_page())
        self._pages.addWidget(self._scalar_page())
        self._pages.addWidget(self._tensor_page())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._pages)

    def _message_page(self) -> QWidget:
        message = self._labels["message"] = _label(selectable=False)
        message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        return message

    def _scalar_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        number = self._labels["number"] = _label(mono=True)
        font = QFont(number.font())
        font.setPointSizeF(font.pointSizeF() * 2.2)
        font.setBold(True)
        number.setFont(font)
        number.setAlignment(Qt.AlignmentFlag.AlignCenter)
        caption = self._labels["caption"] = _label()
        caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addStretch(1)
        layout.addWidget(number)
        layout.addWidget(caption)
        layout.addStretch(1)
        return page

    def _tensor_page(self) -> QWidget:
        page = QWidget()
        stats = QGridLayout()
        for position, field in enumerate(STAT_FIELDS):
            row, column = divmod(position, 2)
            name = QLabel(STAT_LABELS.get(field, field))
            self._labels[field] = _label(mono=True)
            stats.addWidget(name, row, 2 * column)
            stats.addWidget(self._labels[field], row, 2 * column + 1)
        self.table_model = ValueTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.heatmap = HeatmapWidget()
        self.histogram = HistogramWidget()
        self.pictures = QTabWidget()
        self.pictures.addTab(self.heatmap, "Heatmap")
        self.pictures.addTab(self.histogram, "Histogram")
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.pictures)
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(stats)
        layout.addWidget(split, 1)
        return page

    @property
    def page(self) -> str:
        """Which view is up: 'message', 'scalar' or 'tensor'."""
        return ("message", "scalar", "tensor")[self._pages.currentIndex()]

    def text_of(self, field: str) -> str:
        """A shown string: 'message', 'number', 'caption', or a statistic ('mean', ...)."""
        return self._labels[field].text()

    def show_value(self, value: ValueView | None, missing: str) -> None:
        """Show `value`, or the sentence `missing` when there is none."""
        self.clear()
        if value is None:
            self._labels["message"].setText(missing)
            self._pages.setCurrentIndex(0)
        elif value.scalar is not None:
            self._labels["number"].setText(format_number(value.scalar, DIGITS))
            self._labels["number"].setToolTip(repr(value.scalar))
            self._labels["caption"].setText(f"{shape_text(value.shape)}, {value.dtype}")
            self._pages.setCurrentIndex(1)
        else:
            self._show_tensor(value)
            self._pages.setCurrentIndex(2)

    def _show_tensor(self, value: ValueView) -> None:
        texts = {
            "shape": shape_text(value.shape),
            "dtype": value.dtype,
            "mean": format_number(value.mean, DIGITS),
            "std": format_number(value.std, DIGITS),
            "min": format_number(value.min, DIGITS),
            "max": format_number(value.max, DIGITS),
            "nonfinite": str(value.nonfinite),
        }
        for field, text in texts.items():
            self._labels[field].setText(text)
        self.table_model.set_value(value)
        self.heatmap.set_value(value)
        self.histogram.set_value(value)

    def clear(self) -> None:
        """Show nothing."""
        for label in self._labels.values():
            label.setText("")
            label.setToolTip("")
        self.table_model.set_value(None)
        self.heatmap.set_value(None)
        self.histogram.set_value(None)
        self._pages.setCurrentIndex(0)


class Inspector(QWidget):
    """The selected node: title, role, layer, state, forward and VJP formulas, inputs, and its
    value and gradient in two tabs."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._labels: dict[str, QLabel] = {}
        self._hint = QLabel("Select a node to see its formulas, value and gradient.")
        self._hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._hint.setWordWrap(True)
        title = self._labels["title"] = _label()
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setBold(True)
        title.setFont(font)
        form = QFormLayout()
        rows = (
            ("role", "Role", False),
            ("layer", "Layer", False),
            ("shape", "Shape", False),
            ("state", "State", False),
            ("formula", "Forward", True),
            ("vjp_formula", "VJP", True),
            ("inputs", "Inputs", False),
        )
        for field, caption, mono in rows:
            self._labels[field] = _label(mono=mono)
            form.addRow(caption, self._labels[field])
        self.value_panel = ValuePanel()
        self.grad_panel = ValuePanel()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.value_panel, "Value")
        self.tabs.addTab(self.grad_panel, "Gradient")
        details = QWidget()
        layout = QVBoxLayout(details)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(title)
        layout.addLayout(form)
        layout.addWidget(self.tabs, 1)
        self._pages = QStackedWidget()
        self._pages.addWidget(self._hint)
        self._pages.addWidget(details)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(self._pages)

    @property
    def showing_node(self) -> bool:
        """Whether a node is shown (False after `clear`)."""
        return self._pages.currentIndex() == 1

    def text_of(self, field: str) -> str:
        """A shown string: 'title', 'role', 'layer', 'shape', 'state', 'formula',
        'vjp_formula' or 'inputs' (one line per input)."""
        return self._labels[field].text()

    def show_node(
        self,
        node: NodeView,
        state: str,
        value: ValueView | None,
        grad: ValueView | None,
        inputs: list[tuple[str, str]],
        takes_grad: bool = True,
    ) -> None:
        """Show `node` in `state` ('pending', 'forward', 'backward'); `inputs` are its inputs'
        (title, shape text) in order; `takes_grad` False says why there is no gradient."""
        layer = node.layer or "none"
        if node.layer and node.layer_kind:
            layer = f"{node.layer} ({node.layer_kind})"
        texts = {
            "title": node.title,
            "role": node.role,
            "layer": layer,
            "shape": node.shape_text,
            "state": STATES.get(state, state),
            "formula": node.formula or LEAF_FORMULAS.get(node.role, ""),
            "vjp_formula": node.vjp_formula or LEAF_VJPS.get(node.role, ""),
            "inputs": "\n".join(f"{title}  ({shape})" for title, shape in inputs) or "none",
        }
        for field, text in texts.items():
            self._labels[field].setText(text)
        self.value_panel.show_value(value, "not computed yet")
        self.grad_panel.show_value(grad, "no gradient yet" if takes_grad else "takes no gradient")
        self._pages.setCurrentIndex(1)

    def clear(self) -> None:
        """Show no node: every field empty, the hint up."""
        for label in self._labels.values():
            label.setText("")
        self.value_panel.clear()
        self.grad_panel.clear()
        self._pages.setCurrentIndex(0)
