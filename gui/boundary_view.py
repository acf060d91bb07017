"""The decision boundary's widget: a `gui.boundary.Boundary` painted as TensorFlow Playground
shows one, the plane coloured by the model's class and the training points on top."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget
from topograd.gui.boundary import Boundary, class_colour
from topograd.gui.values import format_number

POINT_RADIUS = 2.6
MARGIN = 4


class BoundaryWidget(QWidget):
    """The model's class over the plane of two features, with the training points."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._boundary: Boundary | None = None
        self._image: QImage | None = None
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setSizePolicy(policy)
        self.setMinimumSize(90, 90)
        self.setToolTip(
            "decision boundary: the class the model picks at each point of the plane of the "
            "two input features (paler where it is less sure), and the training points"
        )

    @property
    def boundary(self) -> Boundary | None:
        return self._boundary

    def set_boundary(self, boundary: Boundary | None) -> None:
        self._boundary = boundary
        self._image = None
        if boundary is not None:
            across, down = boundary.size
            image = QImage(boundary.pixels, across, down, 3 * across, QImage.Format.Format_RGB888)
            self._image = image.copy()  # own the pixels
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(200, 200)

    def plane_rect(self) -> QRectF:
        """Where the plane is drawn: the largest square above the caption, centred."""
        caption = self.fontMetrics().height()
        side = max(1, min(self.width() - 2 * MARGIN, self.height() - 2 * MARGIN - caption))
        return QRectF((self.width() - side) / 2, MARGIN, side, side)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().color(QPalette.ColorRole.WindowText)
        area = self.plane_rect()
        boundary = self._boundary
        if boundary is None:
            painter.setPen(text)
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "decision\nboundary...")
            painter.end()
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawImage(area, self._image)
        x0, x1, y0, y1 = boundary.extent
        outline = QPen(QColor(40, 40, 40), 0.8)
        for x, y, label in boundary.points:
            px = area.left() + (x - x0) / (x1 - x0) * area.width()
            py = area.top() + (y1 - y) / (y1 - y0) * area.height()
            painter.setPen(outline)
            painter.setBrush(QColor(*class_colour(label)))
            painter.drawEllipse(QPointF(px, py), POINT_RADIUS, POINT_RADIUS)
        painter.setPen(text)
        caption = QRectF(area.left(), area.bottom() + 1, area.width(), self.fontMetrics().height())
        span = f"x {format_number(x0, 2)}..{format_number(x1, 2)}"
        span += f", y {format_number(y0, 2)}..{format_number(y1, 2)}"
        painter.drawText(caption, Qt.AlignmentFlag.AlignLeft, span)
        painter.end()
