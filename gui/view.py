"""The window onto the graph scene: zoom, pan, fit and centre on a node, and the search bar
that finds nodes by name.

Called GraphCanvas (not GraphView) because gui.model.GraphView is the graph's plain data.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QWidget,
)
from topograd.gui.scene import GraphScene
from topograd.gui.theme import theme

MIN_ZOOM = 0.02
MAX_ZOOM = 8.0
ZOOM_STEP = 1.25
FIT_MAX_ZOOM = 1.5  # fitting a small graph magnifies it no more than this
LEGIBLE_ZOOM = 1.0  # Find and a click on a line of the text zoom in to at least this
WHEEL_NOTCH = 120  # angleDelta units of one wheel notch: it zooms by ZOOM_STEP


class GraphCanvas(QGraphicsView):
    """The graph scene in a view the person zooms (wheel, +/-), pans (drag) and fits."""

    zoomChanged = Signal(float)

    def __init__(self, scene: GraphScene, parent=None):
        super().__init__(scene, parent)
        self._scene = scene  # a view does not own its scene: keep it alive as long as the view
        self._padded_around = QRectF()  # the scene rect the scrollable area was padded around
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setBackgroundBrush(theme().canvas)
        # drag pans and the wheel zooms: scroll bars would only take room from the graph
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scene.sceneRectChanged.connect(self._scene_rect_changed)

    def _scene_rect_changed(self, _rect) -> None:
        self._pad_for(self.zoom_level())

    def _pad_for(self, zoom: float) -> None:
        """Let every scene point scroll to the middle of the viewport at `zoom`: the scrollable
        area is the scene and half a viewport around it. It only grows while the scene stays
        the same, so zooming in never makes the view jump."""
        around = self.scene().sceneRect()
        half_width = self.viewport().width() / zoom / 2
        half_height = self.viewport().height() / zoom / 2
        padded = around.adjusted(-half_width, -half_height, half_width, half_height)
        if around == self._padded_around:
            padded = padded.united(self.sceneRect())
        self._padded_around = around
        if padded != self.sceneRect():
            self.setSceneRect(padded)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._pad_for(self.zoom_level())

    def zoom_level(self) -> float:
        """The scale from scene to screen: 1 is 100%."""
        return self.transform().m11()

    def min_zoom(self) -> float:
        """0.02, or less when that is what it takes to see the whole graph."""
        return min(MIN_ZOOM, self._fit_scale())

    def set_zoom(self, level: float, around: QPoint | None = None) -> None:
        """Zoom to `level` (clamped), keeping the scene point at the viewport point `around`
        (the viewport's middle unless told) where it is."""
        level = max(self.min_zoom(), min(MAX_ZOOM, level))
        factor = level / self.zoom_level()
        if abs(factor - 1.0) < 1e-9:
            return
        around = self.viewport().rect().center() if around is None else around
        fixed = self.mapToScene(around)
        self._pad_for(level)
        previous = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.scale(factor, factor)
        self.setTransformationAnchor(previous)
        drift = self.mapFromScene(fixed) - around
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + drift.x())
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + drift.y())
        self.zoomChanged.emit(self.zoom_level())

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom_level() * ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom_level() / ZOOM_STEP)

    def keyPressEvent(self, event) -> None:
        """+ and - zoom (the window's menu binds Ctrl with them)."""
        plain = not event.modifiers() & Qt.KeyboardModifier.ControlModifier
        if plain and event.text() in ("+", "="):
            self.zoom_in()
        elif plain and event.text() == "-":
            self.zoom_out()
        else:
            super().keyPressEvent(event)

    def wheelEvent(self, event) -> None:
        notches = event.angleDelta().y() / WHEEL_NOTCH
        if not notches:
            super().wheelEvent(event)
            return
        factor = ZOOM_STEP**notches
        self.set_zoom(self.zoom_level() * factor, event.position().toPoint())
        event.accept()

    def _fit_scale(self) -> float:
        """The zoom at which the whole scene (its items and a margin) fills the viewport."""
        rect, viewport = self.scene().sceneRect(), self.viewport().rect()
        if rect.isEmpty() or viewport.isEmpty():
            return MIN_ZOOM
        return min(viewport.width() / rect.width(), viewport.height() / rect.height())

    def fit_to_view(self) -> None:
        """Show the whole graph, centred, magnifying a small one at most 1.5 times."""
        rect = self.scene().sceneRect()
        if rect.isEmpty():
            return
        self.set_zoom(min(FIT_MAX_ZOOM, self._fit_scale()))
        self.centerOn(rect.center())

    def center_on(self, key: str) -> bool:
        """Centre the view on a node (or the box of the layer hiding it) at a legible zoom
        and select it; False when the scene does not show it."""
        item = self.scene().item_showing(key)
        if item is None:
            return False
        self.scene().clearSelection()
        item.setSelected(True)
        self.show_area(item.box())
        return True

    def show_area(self, area: QRectF) -> None:
        """Bring a scene area into view: zoomed in to a legible scale (LEGIBLE_ZOOM, or as
        close as fits the area) when the view is smaller, and centred on it."""
        viewport = self.viewport().rect()
        if not area.isEmpty() and not viewport.isEmpty():
            fits = min(viewport.width() / area.width(), viewport.height() / area.height())
            wanted = min(LEGIBLE_ZOOM, 0.9 * fits)
            if self.zoom_level() < wanted:
                self.set_zoom(wanted)
        self.centerOn(area.center())

    def center_of_view(self) -> QPointF:
        """The scene point at the middle of the viewport."""
        return self.mapToScene(self.viewport().rect().center())


class SearchBar(QWidget):
    """Find nodes by name, op or layer: Enter goes to the next match, Shift+Enter to the
    previous one, Escape closes the bar; the canvas centres on each match."""

    closed = Signal()

    def __init__(self, scene: GraphScene, canvas: GraphCanvas, parent=None):
        super().__init__(parent)
        self.scene, self.canvas = scene, canvas
        self.matches: list[str] = []
        self.index = -1
        self.field = QLineEdit(self)
        self.field.setPlaceholderText("Find a node by name, op or layer")
        self.field.setClearButtonEnabled(True)
        self.field.installEventFilter(self)
        self.field.textChanged.connect(self._search)
        self.setFocusProxy(self.field)
        self.count = QLabel(self)
        previous, following = QToolButton(self), QToolButton(self)
        previous.setText("▲")
        previous.setToolTip("Previous match (Shift+Enter)")
        previous.clicked.connect(self.previous_match)
        following.setText("▼")
        following.setToolTip("Next match (Enter)")
        following.clicked.connect(self.next_match)
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 2, 4, 2)
        for widget in (self.field, previous, following, self.count):
            row.addWidget(widget)

    def open(self) -> None:
        """Show the bar with its text selected, ready to type."""
        self.show()
        self.field.setFocus()
        self.field.selectAll()

    def close_bar(self) -> None:
        self.hide()
        self.canvas.setFocus()
        self.closed.emit()

    def next_match(self) -> None:
        self._go(+1)

    def previous_match(self) -> None:
        self._go(-1)

    def _search(self) -> None:
        self.matches = self.scene.find(self.field.text())
        self.index = -1
        self._go(+1)

    def _go(self, step: int) -> None:
        if not self.matches:
            self.index = -1
            self.count.setText("no match" if self.field.text().strip() else "")
            return
        self.index = (self.index + step) % len(self.matches)
        self.canvas.center_on(self.matches[self.index])
        self.count.setText(f"{self.index + 1} of {len(self.matches)}")

    def eventFilter(self, watched, event) -> bool:
        if watched is self.field and event.type() == QEvent.Type.KeyPress:
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                shift = event.modifiers() & Qt.KeyboardModifier.ShiftModifier
                if shift:
                    self.previous_match()
                else:
                    self.next_match()
                return True
            if event.key() == Qt.Key.Key_Escape:
                self.close_bar()
                return True
        return super().eventFilter(watched, event)
