"""The inspector: everything about the selected node, its formulas, inputs, value and gradient.

It shows plain data (a `NodeView` and the `ValueView`s of its value and gradient) that the
window hands over, and the chain rule's arithmetic that gui.explain writes from the stepper
(the notebook widget shows the same text); it computes nothing itself. A collapsed layer
shows its output and the primitive VJPs its backward is made of. Every shown string can be
read back with `text_of`, so tests read what a person sees.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGridLayout,
    QLabel,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from topograd.engine.graph import shape_text
from topograd.gui import explain
from topograd.gui.heatmap import HeatmapWidget, HistogramWidget
from topograd.gui.model import GROUP_PREFIX, GroupView, NodeView
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
NOT_YET = "the numbers appear once this node's backward step is done"
# The layer page's rows: explain.layer_rows' captions, shown under the layer's title.
GROUP_FIELDS = ("Type", "Output", "Value", "Gradient", "Backward")
GROUP_CAPTIONS = {"Backward": "Backward from\n(last op first)"}
STAT_FIELDS = ("shape", "dtype", "mean", "std", "min", "max", "nonfinite")
STAT_LABELS = {"nonfinite": "non-finite"}
STAT_COLUMNS = 3  # name-value pairs per row
PICTURES = ("Heatmap", "Table", "Histogram")


def _scrolling(widget: QWidget) -> QScrollArea:
    """`widget` in a frameless scroll area: a panel that can get as short as the window needs."""
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return area


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

    @property
    def value(self) -> ValueView | None:
        return self._value

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
        stats.setHorizontalSpacing(8)
        stats.setVerticalSpacing(0)
        for position, field in enumerate(STAT_FIELDS):
            row, column = divmod(position, STAT_COLUMNS)
            name = QLabel(STAT_LABELS.get(field, field))
            self._labels[field] = _label(mono=True)
            stats.addWidget(name, row, 2 * column)
            stats.addWidget(self._labels[field], row, 2 * column + 1)
        self.table_model = ValueTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setToolTip("pick a cell to work the VJP out for that element")
        self.heatmap = HeatmapWidget()
        self.histogram = HistogramWidget()
        self.pictures = QTabWidget()
        self.pictures.setDocumentMode(True)
        for widget, name in zip((self.heatmap, self.table, self.histogram), PICTURES):
            self.pictures.addTab(widget, name)
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(stats)
        layout.addWidget(self.pictures, 1)
        return page

    def show_picture(self, name: str) -> None:
        """Bring 'Heatmap', 'Table' or 'Histogram' to the front."""
        self.pictures.setCurrentIndex(PICTURES.index(name))

    def element_at(self, row: int, column: int) -> tuple | None:
        """The array index of a table cell (the table is the array's 2-D view, row-major)."""
        value = self.table_model.value
        if value is None:
            return None
        flat = row * value.table_shape[1] + column
        return tuple(int(i) for i in np.unravel_index(flat, value.shape))

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
    """The selected node: title, role, layer, state, forward and VJP formulas, attributes, the
    VJP worked out, inputs and what each received, and its value and gradient in two tabs;
    or the selected collapsed layer."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._labels: dict[str, QLabel] = {}
        self._source = None  # what `follow` was given: its `.session` has the stepper
        self._shown: tuple | None = None  # (node id, stepper) of the node shown
        self._picked: tuple | None = None  # the element picked in a table, for that node
        self._hint = QLabel("Select a node to see its formulas, value and gradient.")
        self._hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._hint.setWordWrap(True)
        self.value_panel = ValuePanel()
        self.grad_panel = ValuePanel()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.value_panel, "Value")
        self.tabs.addTab(self.grad_panel, "Gradient")
        for panel in (self.value_panel, self.grad_panel):
            panel.table.selectionModel().currentChanged.connect(
                lambda index, _, panel=panel: self._pick(panel, index)
            )
            panel.heatmap.elementPicked.connect(
                lambda element, panel=panel: self._pick_element(panel, element)
            )
        self._pages = QStackedWidget()
        self._pages.addWidget(self._hint)
        self._pages.addWidget(self._node_page())
        self._pages.addWidget(self._group_page())
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(self._pages)

    def _title(self, field: str) -> QLabel:
        title = self._labels[field] = _label()
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setBold(True)
        title.setFont(font)
        return title

    def _node_page(self) -> QWidget:
        form = QFormLayout()
        rows = (
            ("role", "Role", False),
            ("layer", "Layer", False),
            ("shape", "Shape", False),
            ("state", "State", False),
            ("formula", "Forward", True),
            ("attributes", "Attributes", True),
            ("vjp_formula", "VJP", True),
            ("worked", "Worked out", True),
            ("inputs", "Inputs", False),
            ("received", "Received", True),
        )
        for field, caption, mono in rows:
            self._labels[field] = _label(mono=mono)
            form.addRow(caption, self._labels[field])
        details = self._details = QWidget()
        column = QVBoxLayout(details)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self._title("title"))
        column.addLayout(form)
        column.addStretch(1)
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.addWidget(_scrolling(details))
        self.split.addWidget(self.tabs)
        self.split.setChildrenCollapsible(False)
        self.split.setStretchFactor(0, 1)
        self.split.setStretchFactor(1, 1)
        self._split_moved = False  # once the person drags the split, it stays where they put it
        self.split.splitterMoved.connect(self._split_dragged)
        return self.split

    def _split_dragged(self) -> None:
        self._split_moved = True

    def _fit_split(self) -> None:
        """Give the node's text the room it needs (at most 9/20 of the height) and the value
        and gradient the rest, unless the person placed the split."""
        total = sum(self.split.sizes())
        if self._split_moved or total <= 0:
            return
        wanted = self._details.sizeHint().height() + 4
        top = min(wanted, total * 9 // 20)
        self.split.setSizes([top, total - top])

    def _group_page(self) -> QWidget:
        form = QFormLayout()
        for field in GROUP_FIELDS:
            self._labels[field.lower()] = _label(mono=field == "Backward")
            form.addRow(GROUP_CAPTIONS.get(field, field), self._labels[field.lower()])
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._title("group"))
        layout.addLayout(form)
        layout.addStretch(1)
        return _scrolling(page)

    @property
    def showing_node(self) -> bool:
        """Whether a node is shown (False after `clear`)."""
        return self._pages.currentIndex() == 1

    @property
    def showing_group(self) -> bool:
        """Whether a collapsed layer is shown."""
        return self._pages.currentIndex() == 2

    def text_of(self, field: str) -> str:
        """A shown string: 'title', 'role', 'layer', 'shape', 'state', 'formula', 'attributes',
        'vjp_formula', 'worked', 'inputs' or 'received' (one line per input); for a layer
        'group' (its title), 'type', 'output', 'value', 'gradient' or 'backward'."""
        return self._labels[field].text()

    def follow(self, source) -> None:
        """Read the numbers from `source.session` (the window's StepController) from now on."""
        self._source = source

    def select(self, key: str) -> None:
        """Show the collapsed layer `key` ("g:..."); nodes come through `show_node`."""
        session = getattr(self._source, "session", None)
        if session is not None and key.startswith(GROUP_PREFIX):
            view = session.view

            def ids(group: GroupView) -> list[int]:
                return [view.node(k).node_id for k in group.members]

            group = view.group(key)
            parts = [(view.group(c).short_title, ids(view.group(c))) for c in group.children]
            self.show_group(group, ids(group), session.stepper, parts)

    def show_node(
        self,
        node: NodeView,
        state: str,
        value: ValueView | None,
        grad: ValueView | None,
        inputs: list[tuple[str, str]],
        takes_grad: bool = True,
        stepper=None,
    ) -> None:
        """Show `node` in `state` ('pending', 'forward', 'backward'); `inputs` are its inputs'
        (title, shape text) in order; `takes_grad` False says why there is no gradient. The
        attributes and the worked-out VJP come from `stepper` (default: the followed one's)."""
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
        shown = (node.node_id, self._stepper_for(node, stepper))
        if shown != self._shown:
            self._picked = None
        self._shown = shown
        self._show_numbers()
        self.value_panel.show_value(value, "not computed yet")
        self.grad_panel.show_value(grad, "no gradient yet" if takes_grad else "takes no gradient")
        for panel in (self.value_panel, self.grad_panel):
            if self._picked is not None and panel.page == "tensor":
                panel.heatmap.set_picked(self._picked)
        self._pages.setCurrentIndex(1)
        self._fit_split()

    def show_group(self, group: GroupView, node_ids: list[int], stepper, parts=()) -> None:
        """Show a collapsed layer: `node_ids` are its members' engine ids in forward order; a
        block's `parts` are its layers, (title, engine ids) each, named once in its backward."""
        rows = dict(explain.layer_rows(stepper, node_ids, group.path, group.kind, parts))
        self._labels["group"].setText(group.long_title)
        for field in GROUP_FIELDS:
            self._labels[field.lower()].setText(rows.get(field, "none: the layer has no op"))
        self._pages.setCurrentIndex(2)

    def _stepper_for(self, node: NodeView, stepper):
        """`stepper`, or the followed session's when it holds this node (not a stale one
        while the window swaps sessions)."""
        session = getattr(self._source, "session", None)
        stepper = stepper or (session.stepper if session is not None else None)
        if stepper is None:
            return None
        try:
            stepper.graph[node.node_id]
        except KeyError:
            return None
        return stepper

    def _show_numbers(self) -> None:
        """Attributes, the worked-out VJP (for the picked element) and what inputs received."""
        node_id, stepper = self._shown
        if stepper is None:
            texts = {"attributes": "", "worked": "", "received": ""}
        else:
            node = stepper.graph[node_id]
            worked = explain.worked_out(stepper, node_id, self._picked)
            got = explain.received(stepper, node_id)
            texts = {
                "attributes": explain.attributes_text(node) or "none",
                "worked": "\n".join(worked) or ("" if node.op is None else NOT_YET),
                "received": "\n".join(f"{name} <- {grad}" for name, grad in got),
            }
        for field, text in texts.items():
            self._labels[field].setText(text)

    def _pick(self, panel: ValuePanel, index) -> None:
        """A table cell picked: work the VJP out for that element."""
        element = panel.element_at(index.row(), index.column()) if index.isValid() else None
        if element is not None:
            self._pick_element(panel, element)

    def _pick_element(self, panel: ValuePanel, element: tuple) -> None:
        """An element picked in a table or a heatmap: work the VJP out for it, and mark it
        in both heatmaps."""
        if self._shown is None or self._shown[1] is None:
            return
        if len(element) and panel.table_model.value.shape == self._node_shape():
            self._picked = tuple(element)
            for each in (self.value_panel, self.grad_panel):
                if each.page == "tensor" and each.table_model.value.shape == self._node_shape():
                    each.heatmap.set_picked(self._picked)
            self._show_numbers()

    @property
    def picked(self) -> tuple | None:
        """The element the worked-out VJP is for (None: the one with the largest |g|)."""
        return self._picked

    def _node_shape(self) -> tuple:
        node_id, stepper = self._shown
        return tuple(stepper.graph[node_id].shape)

    def clear(self) -> None:
        """Show no node: every field empty, the hint up."""
        for label in self._labels.values():
            label.setText("")
        self.value_panel.clear()
        self.grad_panel.clear()
        self._shown = self._picked = None
        self._pages.setCurrentIndex(0)
