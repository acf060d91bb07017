"""The graph's legend: what the fills, stripes, borders and edge widths of the boxes mean.

One strip under the graph, drawn with the same colours as the boxes (gui.theme), its entries
flowing onto a second line when the graph's column is narrow.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QPainter, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget
from topograd.gui.theme import theme

SWATCH = 14.0  # a sample box's width and height
GAP = 5.0  # between a sample and its words
SPACING = 14.0  # between entries
PADDING = 4.0
# (what is drawn, what it means), in the order shown
ENTRIES = (
    ("pending", "not computed"),
    ("forward", "value"),
    ("backward", "gradient"),
    ("current", "current"),
    ("breakpoint", "breakpoint"),
    ("nonfinite", "NaN/Inf"),
    ("input", "input"),
    ("parameter", "parameter"),
    ("op", "op"),
    ("gradient", "gradient RMS (log)"),
    ("skip", "skip"),
)


class LegendBar(QWidget):
    """Samples of every style a box or edge can have, each with its meaning."""

    def __init__(self, parent=None):
        super().__init__(parent)
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self.setToolTip(
            "Box fill: not computed yet, value computed (forward), gradient computed "
            "(backward), or red: its value or gradient holds NaN or Inf. Thick pink border: "
            "the current step; red dot: a breakpoint. Stripe on the left: the node's role. "
            "Edges: their width and colour show the root mean square of the gradient they "
            "carried back (log scale, 1e-6 to 100); blue: a skip connection. A collapsed "
            "layer sums its ops up, with a progress bar while a pass is half-way through it."
        )

    def texts(self) -> list[str]:
        """The meanings shown, in order."""
        return [text for _, text in ENTRIES]

    def _line_height(self) -> float:
        return max(SWATCH, self.fontMetrics().height()) + 2.0

    def _entry_width(self, kind: str, text: str) -> float:
        sample = 2 * SWATCH if kind in ("gradient", "skip") else SWATCH
        return sample + GAP + self.fontMetrics().horizontalAdvance(text)

    def _places(self, width: float) -> list[tuple[str, str, QPointF]]:
        """Where each entry goes when the strip is `width` wide: left to right, wrapping."""
        places, x, y = [], PADDING, PADDING
        for kind, text in ENTRIES:
            needed = self._entry_width(kind, text)
            if x > PADDING and x + needed > width - PADDING:
                x, y = PADDING, y + self._line_height()
            places.append((kind, text, QPointF(x, y)))
            x += needed + SPACING
        return places

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        places = self._places(float(width))
        last = places[-1][2].y() if places else PADDING
        return int(last + self._line_height() + PADDING)

    def sizeHint(self) -> QSize:
        return QSize(600, self.heightForWidth(600))

    def minimumSizeHint(self) -> QSize:
        return QSize(100, int(self._line_height() + 2 * PADDING))

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), theme().canvas)
        text_colour = self.palette().color(QPalette.ColorRole.WindowText)
        if theme().dark != (text_colour.lightness() > 128):
            text_colour = theme().text
        height = self._line_height()
        for kind, text, at in self._places(float(self.width())):
            sample_width = self._paint_sample(painter, kind, at, height)
            painter.setPen(text_colour)
            area = QRectF(at.x() + sample_width + GAP, at.y(), 1000.0, height)
            painter.drawText(area, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, text)
        painter.end()

    def _paint_sample(self, painter: QPainter, kind: str, at: QPointF, height: float) -> float:
        """Draw one entry's sample at `at`; its width."""
        colours = theme()
        top = at.y() + (height - SWATCH) / 2
        box = QRectF(at.x(), top, SWATCH, SWATCH)
        if kind in ("gradient", "skip"):
            middle = top + SWATCH / 2
            if kind == "skip":
                painter.setPen(QPen(colours.skip, 2.0))
                painter.drawLine(QPointF(at.x(), middle), QPointF(at.x() + 2 * SWATCH, middle))
            else:
                painter.setPen(QPen(colours.gradient_low, 1.0))
                painter.drawLine(
                    QPointF(at.x(), middle - 3), QPointF(at.x() + 2 * SWATCH, middle - 3)
                )
                painter.setPen(QPen(colours.gradient_high, 4.0))
                painter.drawLine(
                    QPointF(at.x(), middle + 3), QPointF(at.x() + 2 * SWATCH, middle + 3)
                )
            return 2 * SWATCH
        fill = {
            "forward": colours.state_fill["forward"],
            "backward": colours.state_fill["backward"],
            "nonfinite": colours.nonfinite_fill,
        }.get(kind, colours.pending_fill.get(kind, colours.pending_fill["op"]))
        border, width = colours.border, 1.0
        if kind == "current":
            border, width = colours.current_border, 2.5
        elif kind == "nonfinite":
            border, width = colours.nonfinite_border, 2.0
        painter.setPen(QPen(border, width))
        painter.setBrush(fill)
        painter.drawRoundedRect(box, 3.0, 3.0)
        if kind in colours.role_stripe:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colours.role_stripe[kind])
            painter.drawRect(QRectF(box.left() + 1.5, box.top() + 2.0, 3.0, SWATCH - 4.0))
        if kind == "breakpoint":
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colours.breakpoint)
            painter.drawEllipse(box.center(), 3.5, 3.5)
        return SWATCH
