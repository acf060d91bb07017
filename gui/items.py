"""The graph's Qt items: node boxes, layer groups and edges, each painting a plain-data snapshot.

An item is built once from a NodeView or GroupView and its layout box; stepping only changes
its style (state, current, breakpoint, gradient), which repaints that one item. Nothing here
knows about the engine.
"""

from __future__ import annotations

import math
from functools import cache
from types import SimpleNamespace

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QPainterPath,
    QPainterPathStroker,
    QPen,
    QPolygonF,
    QStaticText,
)
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem
from topograd.gui.model import GroupView, NodeView
from topograd.gui.theme import theme

STATES = ("pending", "forward", "backward")
OPS_PENDING = "ops pending"  # a layer's tally: its op nodes still pending (leaves are given)
GROUP_STATES = ("pending", "partial", "forward", "backward")

BORDER_WIDTH = 1.0
CURRENT_WIDTH = 3.5
NONFINITE_WIDTH = 2.5
MARGIN = 5.0  # room around a box for the current border and the selection outline
PADDING = 6.0
CORNER = 6.0
TEXT_MIN_LOD = 0.35  # below this zoom, boxes are drawn without text
EDGE_WIDTH = 1.0  # cosmetic: screen pixels
SKIP_WIDTH = 2.0
EDGE_MAX_WIDTH = 6.0
ARROW_LENGTH = 8.0
LABEL_LOD_BIG_GRAPH = 0.8  # edge labels of big graphs appear from this zoom on
Z_FRAME, Z_EDGE, Z_BOX = -2.0, -1.0, 0.0
FRAME_DEPTH_STEP = 0.05  # a block's frame lies behind the frames of the layers inside it
MAX_FRAME_DEPTH = 19  # ... up to this depth, still behind the edges


@cache
def _fonts() -> SimpleNamespace:
    """The fonts items draw with, made once (a QFont needs a running QGuiApplication)."""
    title = QFont()
    title.setPointSizeF(8.5)
    title.setBold(True)
    detail = QFont()
    detail.setPointSizeF(7.5)
    label = QFont()
    label.setPointSizeF(6.5)
    return SimpleNamespace(
        title=title,
        detail=detail,
        label=label,
        title_metrics=QFontMetricsF(title),
        detail_metrics=QFontMetricsF(detail),
        label_metrics=QFontMetricsF(label),
    )


def _static_text(text: str, metrics: QFontMetricsF, width: float) -> QStaticText:
    """A text elided to `width`, laid out once and drawn many times."""
    static = QStaticText(metrics.elidedText(text, Qt.TextElideMode.ElideRight, max(width, 1.0)))
    static.setTextFormat(Qt.TextFormat.PlainText)
    return static


def summed_state(counts: dict[str, int], total: int, gradient_free: int, leaves: int = 0) -> str:
    """A layer's state from how many of its `total` members are in each state: pending
    (none of its ops computed), forward (all done forward), backward (all that take a
    gradient have one) or partial. `gradient_free` members (inputs, constants) never get a
    gradient; `leaves` (inputs, parameters, constants) are given: only its ops can be pending
    (`counts[OPS_PENDING]`, when the tally has it)."""
    pending = counts.get(OPS_PENDING, counts["pending"])
    backward = counts["backward"]
    if pending >= total - leaves and backward == 0:
        return "pending"
    if pending == 0 and backward == 0:
        return "forward"
    if pending == 0 and backward >= total - gradient_free:
        return "backward"
    return "partial"


def _lod(painter) -> float:
    return QStyleOptionGraphicsItem.levelOfDetailFromTransform(painter.worldTransform())


class BoxItem(QGraphicsItem):
    """A rounded box with text lines, a fill, a current border, a breakpoint dot and a
    selection outline: what a node and a collapsed group have in common."""

    def __init__(self, key: str, box: tuple[float, float, float, float]):
        super().__init__()
        x, y, width, height = box
        self.key = key
        self._rect = QRectF(0.0, 0.0, width, height)
        self._bounds = self._rect.adjusted(-MARGIN, -MARGIN, MARGIN, MARGIN)
        self._is_current = False
        self._breakpoint = False
        self._nonfinite = False
        self._lines: list[tuple[QStaticText, QFont, float]] | None = None  # text, font, height
        self.setPos(x, y)
        self.setZValue(Z_BOX)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)

    def box(self) -> QRectF:
        """The layout box in scene coordinates."""
        return self._rect.translated(self.pos())

    @property
    def is_current(self) -> bool:
        return self._is_current

    @property
    def has_breakpoint(self) -> bool:
        return self._breakpoint

    def set_current(self, on: bool) -> None:
        if on != self._is_current:
            self._is_current = on
            self.update()

    def set_breakpoint(self, on: bool) -> None:
        if on != self._breakpoint:
            self._breakpoint = on
            self.update()

    @property
    def nonfinite(self) -> bool:
        """Whether it is flagged: its value or gradient holds NaN or Inf (a layer's box: one of
        its nodes)."""
        return self._nonfinite

    def set_nonfinite(self, on: bool) -> None:
        if on != self._nonfinite:
            self._nonfinite = on
            self.update()

    def border_width(self) -> float:
        """How thick the outline is drawn: thick for the current node, thicker than plain for
        a flagged one."""
        if self._is_current:
            return CURRENT_WIDTH
        return NONFINITE_WIDTH if self._nonfinite else BORDER_WIDTH

    def border_color(self) -> QColor:
        colours = theme()
        if self._is_current:
            return colours.current_border
        return colours.nonfinite_border if self._nonfinite else colours.border

    def fill_color(self) -> QColor:
        raise NotImplementedError

    def text_lines(self) -> list[tuple[str, str]]:
        """(text, "title" or "detail") for each line, top to bottom."""
        raise NotImplementedError

    def boundingRect(self) -> QRectF:
        return self._bounds

    def paint(self, painter, option, widget=None) -> None:
        painter.setPen(QPen(self.border_color(), self.border_width()))
        painter.setBrush(QBrush(self.fill_color()))
        if _lod(painter) < TEXT_MIN_LOD:
            painter.drawRect(self._rect)
            return
        painter.drawRoundedRect(self._rect, CORNER, CORNER)
        self._paint_decorations(painter)
        self._paint_text(painter)
        if self._breakpoint:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(theme().breakpoint)
            painter.drawEllipse(QPointF(self._rect.right() - 7.0, self._rect.top() + 7.0), 4.5, 4.5)
        if self.isSelected():
            outline = QPen(theme().text, 1.0, Qt.PenStyle.DashLine)
            painter.setPen(outline)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            margin = MARGIN - 1.0
            painter.drawRoundedRect(
                self._rect.adjusted(-margin, -margin, margin, margin), CORNER, CORNER
            )

    def _paint_decorations(self, painter) -> None:
        """What a subclass draws between the box and its text."""

    def _paint_text(self, painter) -> None:
        if self._lines is None:
            fonts = _fonts()
            width = self._rect.width() - 2 * PADDING
            lines = []
            for text, kind in self.text_lines():
                metrics = getattr(fonts, f"{kind}_metrics")
                lines.append(
                    (_static_text(text, metrics, width), getattr(fonts, kind), metrics.height())
                )
            while lines and sum(line[2] for line in lines) > self._rect.height() - 2.0:
                lines.pop()
            self._lines = lines
        y = self._rect.top() + (self._rect.height() - sum(line[2] for line in self._lines)) / 2
        painter.setPen(theme().text)
        for static, font, height in self._lines:
            painter.setFont(font)
            x = self._rect.left() + (self._rect.width() - static.size().width()) / 2
            painter.drawStaticText(QPointF(x, y), static)
            y += height

    def _text_changed(self) -> None:
        self._lines = None
        self.update()


GRAD_PREFIX = "grad "


class NodeItem(BoxItem):
    """One node's box: title (name: op), shape, an optional short value and, once its backward
    step is done, its gradient (micrograd's name | value | grad), filled by its role while
    pending and by the phase it has done since."""

    def __init__(self, view: NodeView, box: tuple[float, float, float, float]):
        super().__init__(view.key, box)
        self.view = view
        self._state = "pending"
        self._value_text: str | None = None
        self._grad_text: str | None = None
        self.setToolTip(f"{view.title}\n{view.shape_text}\n{view.formula}")

    @property
    def state(self) -> str:
        return self._state

    @property
    def value_text(self) -> str | None:
        return self._value_text

    @property
    def grad_text(self) -> str | None:
        return self._grad_text

    def set_state(self, state: str) -> None:
        if state not in STATES:
            raise ValueError(f"node state must be one of {STATES}, got {state!r}")
        if state != self._state:
            self._state = state
            self.update()

    def set_value_text(self, text: str | None) -> None:
        if text != self._value_text:
            self._value_text = text
            self._text_changed()

    def set_grad_text(self, text: str | None) -> None:
        """The gradient's short text, written on a line of its own below the value."""
        if text != self._grad_text:
            self._grad_text = text
            self._text_changed()

    def fill_color(self) -> QColor:
        """Red when flagged; else by its role until it is computed (a leaf, whose value is
        given, until its gradient is), then by the pass that computed it."""
        colours = theme()
        if self._nonfinite:
            return colours.nonfinite_fill
        leaf_forward = self._state == "forward" and self.view.role != "op"
        if self._state == "pending" or leaf_forward:
            return colours.pending_fill.get(self.view.role, colours.pending_fill["op"])
        return colours.state_fill[self._state]

    def text_lines(self) -> list[tuple[str, str]]:
        lines = [(self.view.title, "title"), (self.view.shape_text, "detail")]
        if self._value_text:
            lines.append((self._value_text, "detail"))
        if self._grad_text:
            lines.append((GRAD_PREFIX + self._grad_text, "detail"))
        return lines

    def _paint_decorations(self, painter) -> None:
        painter.setPen(Qt.PenStyle.NoPen)
        stripes = theme().role_stripe
        painter.setBrush(stripes.get(self.view.role, stripes["op"]))
        stripe = QRectF(self._rect.left() + 1.5, self._rect.top() + CORNER / 2, 3.0, 0.0)
        stripe.setBottom(self._rect.bottom() - CORNER / 2)
        painter.drawRect(stripe)


class GroupItem(BoxItem):
    """A layer: expanded, a titled frame drawn behind its members; collapsed, one box with the
    layer's title, its member count and the members' states summed up."""

    def __init__(
        self,
        view: GroupView,
        box: tuple[float, float, float, float],
        *,
        collapsed: bool,
        gradient_free: int = 0,
        depth: int = 0,
        leaves: int = 0,
    ):
        super().__init__(view.key, box)
        self.view = view
        self.collapsed = collapsed
        self._gradient_free = gradient_free  # members that never get a gradient (inputs, constants)
        self._leaves = leaves  # members whose value is given (inputs, parameters, constants)
        self._counts = {state: 0 for state in STATES}
        self._counts["pending"] = len(view.members)
        self._counts[OPS_PENDING] = len(view.members) - leaves
        self.setToolTip(f"{view.long_title}\n{view.detail}")
        if not collapsed:  # a frame: behind the edges, in front of the frame of its block
            self.setZValue(Z_FRAME + FRAME_DEPTH_STEP * min(depth, MAX_FRAME_DEPTH))
            self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable, False)
            self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    @property
    def state(self) -> str:
        """pending, partial, forward or backward: the members' states summed up."""
        total = len(self.view.members)
        return summed_state(self._counts, total, self._gradient_free, self._leaves)

    def progress(self) -> float:
        """How far the members are through the pass that is under way, in [0, 1]."""
        backward, total = self._counts["backward"], len(self.view.members)
        if backward:
            return min(1.0, backward / max(1, total - self._gradient_free))
        ops = total - self._leaves
        return (ops - self._counts.get(OPS_PENDING, self._counts["pending"])) / max(1, ops)

    def set_counts(self, counts: dict[str, int]) -> None:
        """How many members are in each state (the scene keeps the tally)."""
        if counts != self._counts:
            self._counts = dict(counts)
            self.update()

    def fill_color(self) -> QColor:
        colours = theme()
        if not self.collapsed:
            return colours.frame_fill
        if self._nonfinite:
            return colours.nonfinite_fill
        return colours.state_fill.get(self.state, colours.group_pending_fill)

    def text_lines(self) -> list[tuple[str, str]]:
        return [(self.view.title, "title"), (self.view.detail, "detail")]

    def paint(self, painter, option, widget=None) -> None:
        if self.collapsed:
            super().paint(painter, option, widget)
            return
        colours = theme()
        painter.setPen(QPen(colours.frame_border, 1.0))
        painter.setBrush(colours.frame_fill)
        painter.drawRoundedRect(self._rect, CORNER * 1.5, CORNER * 1.5)
        if _lod(painter) < TEXT_MIN_LOD:
            return
        if self._lines is None:
            fonts = _fonts()
            width = self._rect.width() - 2 * PADDING
            kind = "title" if self.view.children else "label"  # a block's frame: bigger
            metrics = getattr(fonts, f"{kind}_metrics")
            title = _static_text(self.view.title, metrics, width)
            self._lines = [(title, getattr(fonts, kind), metrics.height())]
        static, font, _ = self._lines[0]
        painter.setFont(font)
        painter.setPen(colours.frame_text)
        painter.drawStaticText(QPointF(self._rect.left() + PADDING, self._rect.top() + 2.0), static)

    def _paint_decorations(self, painter) -> None:
        state = self.state
        if state != "partial":
            return
        phase = "backward" if self._counts["backward"] else "forward"
        bar = QRectF(self._rect.left() + 2.0, self._rect.bottom() - 6.0, 0.0, 4.0)
        bar.setWidth((self._rect.width() - 4.0) * self.progress())
        painter.setPen(Qt.PenStyle.NoPen)
        fill = theme().state_fill[phase]
        painter.setBrush(fill.lighter(150) if theme().dark else fill.darker(125))
        painter.drawRect(bar)


class EdgeItem(QGraphicsItem):
    """An edge along its layout polyline with an arrowhead at the target and the shape that
    flows along it written at its middle; during backward its width and colour show the
    gradient's magnitude. An edge that skips layers (a residual's identity) is drawn in blue,
    its gradient too."""

    def __init__(
        self,
        key: tuple[str, str, int],
        points: tuple[tuple[float, float], ...],
        label: str,
        *,
        label_min_lod: float = 0.0,
        skip: bool = False,
    ):
        super().__init__()
        if len(points) < 2:
            raise ValueError(f"edge {key} needs at least two points, got {len(points)}")
        self.key = key
        self.label = label
        self.skip = skip  # drawn in its own colour: it carries a value past layers
        self.label_min_lod = label_min_lod
        self._gradient: float | None = None
        self._points = [QPointF(x, y) for x, y in points]
        self._path = QPainterPath(self._points[0])
        for point in self._points[1:]:
            self._path.lineTo(point)
        self._label_text: QStaticText | None = None
        self._shape: QPainterPath | None = None
        self._label_rect = self._make_label_rect()
        reach = ARROW_LENGTH + 1.5 * EDGE_MAX_WIDTH
        tip = self._points[-1]
        self._tip_rect = QRectF(tip.x() - reach, tip.y() - reach, 2 * reach, 2 * reach)
        around_path = self._path.boundingRect().adjusted(-reach, -reach, reach, reach)
        self._bounds = around_path.united(self._label_rect)
        self.setZValue(Z_EDGE)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)

    def _make_label_rect(self) -> QRectF:
        if not self.label:
            return QRectF()
        metrics = _fonts().label_metrics
        width, height = metrics.horizontalAdvance(self.label) + 4.0, metrics.height()
        middle = self._path.pointAtPercent(0.5)
        return QRectF(middle.x() - width / 2, middle.y() - height - 1.0, width, height)

    def path(self) -> QPainterPath:
        return QPainterPath(self._path)

    def shape(self) -> QPainterPath:
        """The line as thick as it can be drawn, and the arrowhead: what a point must hit."""
        if self._shape is None:
            stroker = QPainterPathStroker()
            stroker.setWidth(EDGE_MAX_WIDTH)
            self._shape = stroker.createStroke(self._path)
            self._shape.addPolygon(self._arrowhead(EDGE_MAX_WIDTH))
        return self._shape

    @property
    def gradient(self) -> float | None:
        return self._gradient

    def set_gradient(self, magnitude: float | None) -> None:
        """Show a gradient magnitude in [0, 1] (None: back to the plain edge)."""
        if magnitude is not None and not 0.0 <= magnitude <= 1.0:
            raise ValueError(f"gradient magnitude must be in [0, 1], got {magnitude}")
        if magnitude != self._gradient:
            self._gradient = magnitude
            self.update()

    def pen_width(self) -> float:
        if self._gradient is None:
            return SKIP_WIDTH if self.skip else EDGE_WIDTH
        return 1.0 + (EDGE_MAX_WIDTH - 1.0) * self._gradient

    def pen_color(self) -> QColor:
        colours = theme()
        if self._gradient is None:
            return colours.skip if self.skip else colours.edge
        m = self._gradient
        if self.skip:
            low, high = colours.skip_gradient_low, colours.skip
        else:
            low, high = colours.gradient_low, colours.gradient_high
        return QColor(
            round(low.red() + (high.red() - low.red()) * m),
            round(low.green() + (high.green() - low.green()) * m),
            round(low.blue() + (high.blue() - low.blue()) * m),
        )

    def boundingRect(self) -> QRectF:
        return self._bounds

    def _exposed(self, rect: QRectF) -> bool:
        """Whether any part of the edge lies in `rect`: a long edge's bounding box meets most
        repainted areas, its line few of them."""
        near = rect.adjusted(-EDGE_MAX_WIDTH, -EDGE_MAX_WIDTH, EDGE_MAX_WIDTH, EDGE_MAX_WIDTH)
        return (
            near.intersects(self._tip_rect)
            or near.intersects(self._label_rect)
            or self._path.intersects(near)
        )

    def paint(self, painter, option, widget=None) -> None:
        if not self._exposed(option.exposedRect):
            return
        color, width = self.pen_color(), self.pen_width()
        pen = QPen(color, width)
        # a plain edge is one screen pixel wide at any zoom: Qt draws such lines many times
        # faster than wider antialiased ones
        pen.setCosmetic(self._gradient is None)
        pen.setCapStyle(Qt.PenCapStyle.FlatCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(self._path)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawPolygon(self._arrowhead(width))
        if self.label and _lod(painter) >= self.label_min_lod:
            self._paint_label(painter)

    def _arrowhead(self, width: float) -> QPolygonF:
        tip, before = self._points[-1], self._points[-2]
        dx, dy = tip.x() - before.x(), tip.y() - before.y()
        length = math.hypot(dx, dy) or 1.0
        ux, uy = dx / length, dy / length
        size = ARROW_LENGTH + 1.5 * width
        half = size * 0.45
        base = QPointF(tip.x() - ux * size, tip.y() - uy * size)
        return QPolygonF(
            [
                tip,
                QPointF(base.x() - uy * half, base.y() + ux * half),
                QPointF(base.x() + uy * half, base.y() - ux * half),
            ]
        )

    def _paint_label(self, painter) -> None:
        if self._label_text is None:
            self._label_text = QStaticText(self.label)
            self._label_text.setTextFormat(Qt.TextFormat.PlainText)
        painter.setBrush(theme().label_background)
        painter.drawRect(self._label_rect)
        painter.setFont(_fonts().label)
        painter.setPen(theme().text)
        painter.drawStaticText(self._label_rect.topLeft() + QPointF(2.0, 0.0), self._label_text)
