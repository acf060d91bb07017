"""Pictures of a tensor for the inspector: a heatmap of its 2-D view and a histogram.

Both paint a `ValueView` that gui.values computed; they never look at the array itself.
"""

from __future__ import annotations

from itertools import pairwise

from PySide6.QtCore import QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, qRgb
from PySide6.QtWidgets import QWidget
from topograd.gui.values import HEAT_ZERO, ValueView, format_number

# Colour anchors (index, (r, g, b)) between which the 256 colours are interpolated.
DIVERGING = ((0, (33, 102, 172)), (HEAT_ZERO, (247, 247, 247)), (255, (178, 24, 43)))
SEQUENTIAL = (
    (0, (13, 8, 80)),
    (64, (84, 35, 140)),
    (128, (190, 60, 100)),
    (192, (245, 140, 60)),
    (255, (252, 245, 180)),
)
BAR_HEIGHT = 10  # the colour bar under the heatmap
MARGIN = 4


def colour_table(anchors) -> list[int]:
    """256 qRgb colours blending linearly between the anchors."""
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


class HeatmapWidget(QWidget):
    """The 2-D view as coloured cells (blue-white-red around 0 when values have both signs,
    dark-to-light otherwise), aspect kept, with a colour bar labelled min and max."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._value: ValueView | None = None
        self._image: QImage | None = None
        self.setMinimumSize(120, 90)

    @property
    def image(self) -> QImage | None:
        """The unscaled image, one pixel per (downsampled) cell; None when nothing is shown."""
        return self._image

    @property
    def colours(self) -> list[int]:
        """The colour table in use (diverging for signed values)."""
        signed = self._value is not None and self._value.signed
        return DIVERGING_COLOURS if signed else SEQUENTIAL_COLOURS

    def set_value(self, value: ValueView | None) -> None:
        self._value = value
        self._image = None
        if value is not None and value.heat:
            width, height = value.heat_size
            image = QImage(value.heat, width, height, width, QImage.Format.Format_Indexed8)
            image.setColorTable(self.colours)
            self._image = image.copy()  # own the pixels: `value.heat` is only borrowed
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(280, 220)

    def image_rect(self) -> QRect:
        """Where the image is drawn: as large as fits above the colour bar, aspect kept."""
        if self._image is None:
            return QRect()
        area = self.rect().adjusted(MARGIN, MARGIN, -MARGIN, -(BAR_HEIGHT + _text_height(self)))
        area.setBottom(area.bottom() - 2 * MARGIN)
        size = QSize(self._image.width(), self._image.height()).scaled(
            area.size(), Qt.AspectRatioMode.KeepAspectRatio
        )
        left = area.left() + (area.width() - size.width()) // 2
        top = area.top() + (area.height() - size.height()) // 2
        return QRect(left, top, max(size.width(), 1), max(size.height(), 1))

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        if self._image is None:
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "nothing to draw")
            painter.end()
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.drawImage(self.image_rect(), self._image)
        self._paint_colour_bar(painter)
        painter.end()

    def _paint_colour_bar(self, painter: QPainter) -> None:
        value = self._value
        text_height = _text_height(self)
        bar = QRect(
            MARGIN,
            self.height() - MARGIN - text_height - BAR_HEIGHT,
            self.width() - 2 * MARGIN,
            BAR_HEIGHT,
        )
        strip = QImage(256, 1, QImage.Format.Format_RGB32)
        for index, colour in enumerate(self.colours):
            strip.setPixel(index, 0, colour)
        painter.drawImage(bar, strip)
        labels = QRect(bar.left(), bar.bottom() + 1, bar.width(), text_height)
        painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        painter.drawText(labels, Qt.AlignmentFlag.AlignLeft, format_number(value.min))
        painter.drawText(labels, Qt.AlignmentFlag.AlignRight, format_number(value.max))
        if value.signed:
            middle = bar.left() + round(bar.width() * HEAT_ZERO / 255)
            zero = QRect(middle - 20, labels.top(), 40, text_height)
            painter.drawText(zero, Qt.AlignmentFlag.AlignHCenter, "0")


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
