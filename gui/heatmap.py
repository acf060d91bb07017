"""Pictures of a tensor for the inspector: a heatmap and a histogram.

Both paint a `ValueView` that gui.values computed; they never look at the array itself. The
heatmap fills its panel (cells need not be square) with the layout the ValueView chose (a long
vector wrapped, feature maps in a grid, 1 px gaps between the maps), reads out the element
under the mouse, marks the picked one, and explains its colours in a legend: a diverging
scale symmetric around 0 when the values have both signs, a sequential one otherwise.
"""

from __future__ import annotations

from itertools import pairwise

from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPen, qRgb
from PySide6.QtWidgets import QWidget
from topograd.gui.values import (
    HEAT_TOP,
    HEAT_ZERO,
    ValueView,
    format_number,
)

# Colour anchors (index, (r, g, b)) between which the scale's colours are interpolated.
DIVERGING = ((0, (33, 102, 172)), (HEAT_ZERO, (247, 247, 247)), (HEAT_TOP, (178, 24, 43)))
SEQUENTIAL = (  # viridis: dark to light, and never the black-to-white of a greyscale
    (0, (68, 1, 84)),
    (63, (59, 82, 139)),
    (126, (33, 145, 140)),
    (189, (94, 201, 98)),
    (HEAT_TOP, (253, 231, 37)),
)
NONFINITE = (255, 0, 255)  # NaN and infinite cells: a colour no scale uses
BAR_HEIGHT = 10  # the colour bar of the legend
MARGIN = 4
GAP = 1  # pixels between feature maps


def colour_table(anchors) -> list[int]:
    """The scale's colours (indices 0..HEAT_TOP) blending linearly between the anchors."""
    colours = []
    for (start, low), (end, high) in pairwise(anchors):
        for index in range(start, end):
            t = (index - start) / (end - start)
            colours.append(qRgb(*(round(a + (b - a) * t) for a, b in zip(low, high))))
    colours.append(qRgb(*anchors[-1][1]))
    return colours


DIVERGING_COLOURS = colour_table(DIVERGING)
SEQUENTIAL_COLOURS = colour_table(SEQUENTIAL)


def _text_height(widget: QWidget) -> int:
    return widget.fontMetrics().height()


def index_text(index: tuple) -> str:
    """'[2, 0, 3, 5]'; '[]' for a 0-D array's one element."""
    return "[" + ", ".join(str(i) for i in index) + "]"


class HeatmapWidget(QWidget):
    """A tensor's values as coloured cells that fill the widget, with a legend and a readout;
    clicking a cell picks its element (`elementPicked`)."""

    elementPicked = Signal(tuple)  # the array index of the clicked cell

    def __init__(self, parent=None):
        super().__init__(parent)
        self._value: ValueView | None = None
        self._image: QImage | None = None
        self._picked: tuple | None = None
        self._hover: tuple | None = None
        self.setMouseTracking(True)
        self.setMinimumSize(120, 90)
        self.setToolTip("hover a cell to read its value; click it to work the VJP out for it")

    @property
    def image(self) -> QImage | None:
        """The unscaled image, one pixel per (averaged) cell; None when nothing is shown."""
        return self._image

    @property
    def value(self) -> ValueView | None:
        return self._value

    @property
    def picked(self) -> tuple | None:
        """The index of the element marked as picked, or None."""
        return self._picked

    @property
    def scale_colours(self) -> list[int]:
        """The colour scale in use: diverging for values of both signs, else sequential."""
        signed = self._value is not None and self._value.signed
        return DIVERGING_COLOURS if signed else SEQUENTIAL_COLOURS

    def colour_table(self) -> list[int]:
        """All 256 colours of the image: the scale, then non-finite, then empty cells."""
        background = self.palette().color(QPalette.ColorRole.Base).rgb()
        table = list(self.scale_colours)
        table.append(qRgb(*NONFINITE))
        table += [background] * (256 - len(table))
        return table

    def set_value(self, value: ValueView | None) -> None:
        self._value = value
        self._image = None
        self._hover = self._picked = None
        if value is not None and value.heat:
            width, height = value.heat_size
            image = QImage(value.heat, width, height, width, QImage.Format.Format_Indexed8)
            image.setColorTable(self.colour_table())
            self._image = image.copy()  # own the pixels: `value.heat` is only borrowed
        self.update()

    def set_picked(self, index: tuple | None) -> None:
        """Mark the element at `index` (None: no mark)."""
        self._picked = None if index is None else tuple(index)
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(280, 220)

    # --- geometry ------------------------------------------------------------------------
    def _legend_height(self) -> int:
        return BAR_HEIGHT + 2 * _text_height(self) + 3 * MARGIN

    def image_rect(self) -> QRect:
        """Where the cells are drawn: all the room above the legend (cells need not be
        square)."""
        if self._image is None:
            return QRect()
        area = self.rect().adjusted(MARGIN, MARGIN, -MARGIN, -self._legend_height())
        return QRect(area.left(), area.top(), max(area.width(), 1), max(area.height(), 1))

    def cell_rect(self, row: int, column: int) -> QRectF:
        """Where one cell of the layout (before any averaging) is drawn."""
        rows, columns = self._value.layout.cells
        area = QRectF(self.image_rect())
        width, height = area.width() / columns, area.height() / rows
        return QRectF(area.left() + column * width, area.top() + row * height, width, height)

    def cell_at(self, point) -> tuple[int, int] | None:
        """The layout cell (row, column) under a widget point, None outside the cells."""
        if self._image is None:
            return None
        area = QRectF(self.image_rect())
        if not area.contains(QPointF(point)):
            return None
        rows, columns = self._value.layout.cells
        row = int((point.y() - area.top()) * rows / area.height())
        column = int((point.x() - area.left()) * columns / area.width())
        return min(row, rows - 1), min(column, columns - 1)

    def index_at(self, point) -> tuple | None:
        """The array index shown under a widget point, None where no element is shown."""
        cell = self.cell_at(point)
        return None if cell is None else self._value.layout.index_at(*cell)

    # --- the readout ---------------------------------------------------------------------
    def readout(self) -> str:
        """The line under the legend: the element under the mouse, else the picked one, else
        how the cells are laid out."""
        value = self._value
        if value is None or self._image is None:
            return ""
        shown = self._hover if self._hover is not None else self._picked
        if shown is not None:
            prefix = "" if self._hover is not None else "picked "
            return f"{prefix}{index_text(shown)} = {format_number(value.value_at(shown), 6)}"
        return value.layout.describe() or "hover a cell to read its value"

    def mouseMoveEvent(self, event) -> None:
        index = self.index_at(event.position())
        if index != self._hover:
            self._hover = index
            self.update()
        super().mouseMoveEvent(event)

    def leaveEvent(self, event) -> None:
        if self._hover is not None:
            self._hover = None
            self.update()
        super().leaveEvent(event)

    def mousePressEvent(self, event) -> None:
        index = self.index_at(event.position())
        if event.button() == Qt.MouseButton.LeftButton and index is not None:
            self.set_picked(index)
            self.elementPicked.emit(index)
            event.accept()
            return
        super().mousePressEvent(event)

    # --- painting ------------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        text = self.palette().color(QPalette.ColorRole.WindowText)
        if self._image is None:
            painter.setPen(text)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "nothing to draw")
            painter.end()
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.drawImage(self.image_rect(), self._image)
        self._paint_gaps(painter)
        self._paint_mark(painter)
        self._paint_legend(painter, text)
        painter.end()

    def _paint_gaps(self, painter: QPainter) -> None:
        """Lines of the background colour between feature maps."""
        layout = self._value.layout
        if layout.kind != "maps":
            return
        area = QRectF(self.image_rect())
        rows, columns = layout.cells
        pen = QPen(self.palette().color(QPalette.ColorRole.Base), GAP)
        painter.setPen(pen)
        for line in range(1, layout.grid[1]):
            x = area.left() + line * layout.tile[1] * area.width() / columns
            painter.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
        for line in range(1, layout.grid[0]):
            y = area.top() + line * layout.tile[0] * area.height() / rows
            painter.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))

    def _paint_mark(self, painter: QPainter) -> None:
        for index, colour in ((self._picked, QColor("#000000")), (self._hover, QColor("#ffffff"))):
            cell = None if index is None else self._value.layout.cell_of(index)
            if cell is None:
                continue
            rect = self.cell_rect(*cell)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            for pen_colour, width in ((colour, 3.0), (QColor("#ffd600"), 1.5)):
                painter.setPen(QPen(pen_colour, width))
                painter.drawRect(rect.adjusted(-1, -1, 1, 1))

    def _paint_legend(self, painter: QPainter, text: QColor) -> None:
        """The colour bar with the values of its ends (and 0 for a diverging scale), the
        non-finite colour when there are such cells, and the readout line."""
        value = self._value
        height = _text_height(self)
        top = self.height() - self._legend_height() + MARGIN
        left, width = MARGIN, self.width() - 2 * MARGIN
        swatch = ""
        if value.nonfinite:
            swatch = f"{value.nonfinite} NaN/Inf"
            room = self.fontMetrics().horizontalAdvance(swatch) + BAR_HEIGHT + 2 * MARGIN
            width -= room
            box = QRect(left + width + MARGIN, top, BAR_HEIGHT, BAR_HEIGHT)
            painter.fillRect(box, QColor(*NONFINITE))
            painter.setPen(text)
            painter.drawText(
                QRect(box.right() + MARGIN, top - 2, room, height),
                Qt.AlignmentFlag.AlignLeft,
                swatch,
            )
        bar = QRect(left, top, max(width, 1), BAR_HEIGHT)
        strip = QImage(len(self.scale_colours), 1, QImage.Format.Format_RGB32)
        for index, colour in enumerate(self.scale_colours):
            strip.setPixel(index, 0, colour)
        painter.drawImage(bar, strip)
        labels = QRect(bar.left(), bar.bottom() + 1, bar.width(), height)
        painter.setPen(text)
        low, high = value.scale
        painter.drawText(labels, Qt.AlignmentFlag.AlignLeft, format_number(low))
        painter.drawText(labels, Qt.AlignmentFlag.AlignRight, format_number(high))
        middle = "0" if value.signed else format_number((low + high) / 2)
        painter.drawText(labels, Qt.AlignmentFlag.AlignHCenter, middle)
        line = QRect(left, labels.bottom() + MARGIN // 2, self.width() - 2 * MARGIN, height)
        painter.drawText(line, Qt.AlignmentFlag.AlignLeft, self.readout())


class HistogramWidget(QWidget):
    """How the finite values spread: one bar per bin, the range's ends labelled below."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._value: ValueView | None = None
        self.setMinimumSize(120, 90)

    def set_value(self, value: ValueView | None) -> None:
        self._value = value
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(280, 220)

    def bar_rects(self) -> list[QRectF]:
        """One rectangle per bin, heights in proportion to the counts (tallest fills the plot)."""
        if self._value is None or not self._value.hist_counts:
            return []
        counts = self._value.hist_counts
        text_height = _text_height(self)
        plot = QRectF(self.rect()).adjusted(
            MARGIN, MARGIN + text_height, -MARGIN, -(MARGIN + text_height)
        )
        width = plot.width() / len(counts)
        tallest = max(counts) or 1
        rects = []
        for index, count in enumerate(counts):
            height = plot.height() * count / tallest
            rects.append(QRectF(plot.left() + index * width, plot.bottom() - height, width, height))
        return rects

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        rects = self.bar_rects()
        if not rects:
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no finite values")
            painter.end()
            return
        painter.setPen(QColor(40, 70, 120))
        painter.setBrush(QColor(110, 150, 210))
        for rect in rects:
            painter.drawRect(rect)
        value = self._value
        text_height = _text_height(self)
        painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        top = QRect(MARGIN, MARGIN, self.width() - 2 * MARGIN, text_height)
        painter.drawText(top, Qt.AlignmentFlag.AlignLeft, f"count up to {max(value.hist_counts)}")
        bottom = QRect(MARGIN, self.height() - MARGIN - text_height, top.width(), text_height)
        painter.drawText(bottom, Qt.AlignmentFlag.AlignLeft, format_number(value.hist_edges[0]))
        painter.drawText(bottom, Qt.AlignmentFlag.AlignRight, format_number(value.hist_edges[-1]))
        painter.end()
