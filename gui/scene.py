"""The graph as a Qt scene: one item per visible box and edge, restyled in place as the
stepper moves.

`show` builds the items from a GraphView and a Layout; every later call (state, current node,
breakpoint, gradient, value) finds its one item through a dict and repaints only that item.
Styles are remembered by node key, so collapsing or expanding a layer (a new `show` of the
same graph) keeps them, and a node hidden inside a collapsed layer is shown by the layer's box.
"""

from __future__ import annotations

import math
from collections import defaultdict

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPainter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QGraphicsScene, QMenu
from topograd.dsl.training import write_atomically
from topograd.gui.items import (
    LABEL_LOD_BIG_GRAPH,
    OPS_PENDING,
    STATES,
    BoxItem,
    EdgeItem,
    GroupItem,
    NodeItem,
    summed_state,
)
from topograd.gui.layout import EdgeKey, Layout
from topograd.gui.model import GROUP_PREFIX, GraphView

BIG_GRAPH_EDGES = 1500  # above this many edges, edge labels wait until the view zooms in
SCENE_MARGIN = 40.0
EXPORT_MARGIN = 20.0
PNG_MAX_SIDE = 4000
PNG_MAX_SCALE = 2.0
GRADIENT_FREE_ROLES = ("input", "constant")


class GraphScene(QGraphicsScene):
    """The drawn graph: nodes, layer groups and edges, styled by the stepper's progress."""

    nodeSelected = Signal(str)  # a node's key, or a collapsed layer's "g:" key
    groupToggled = Signal(str)  # a layer's "g:" key: double-clicked, to collapse or expand
    breakpointToggled = Signal(str)  # a node's key, from its context menu

    def __init__(self, parent=None):
        super().__init__(parent)
        self.graph: GraphView | None = None
        self.layout: Layout | None = None
        self.collapsed: frozenset[str] = frozenset()
        self._nodes: dict[str, NodeItem] = {}
        self._groups: dict[str, GroupItem] = {}  # expanded frames and collapsed boxes
        self._edges: dict[EdgeKey, EdgeItem] = {}
        self._hidden_in: dict[str, str] = {}  # node hidden in a collapsed layer -> layer's key
        self._drawn_by: dict[EdgeKey, EdgeKey | None] = {}  # graph edge -> layout edge, or None
        self._draws: dict[EdgeKey, list[EdgeKey]] = {}  # layout edge -> the graph edges it draws
        self._node_keys: frozenset[str] = frozenset()
        self._search: list[tuple[str, str]] = []  # (key, casefolded name op layer kind)
        self._states: dict[str, str] = {}  # only nodes that are not pending
        self._tally: dict[str, dict[str, int]] = {}  # layer key -> members per state
        self._breakpoints: set[str] = set()
        self._values: dict[str, str] = {}
        self._grads: dict[str, str] = {}  # short gradient texts of nodes done backward
        self._gradients: dict[EdgeKey, float] = {}
        self._nonfinite: set[str] = set()  # nodes whose value or gradient is not finite
        self._current: str | None = None
        self._current_item: BoxItem | None = None
        self.selectionChanged.connect(self._emit_selection)

    # --- building ----------------------------------------------------------------------------
    def show(self, graph: GraphView, layout: Layout, collapsed: frozenset[str]) -> None:
        """Draw `graph` as `layout` places it, with the layers in `collapsed` as one box each;
        styles of keys the graph still has are kept."""
        self.clear()
        self.graph, self.layout, self.collapsed = graph, layout, frozenset(collapsed)
        self._nodes, self._groups, self._edges, self._hidden_in = {}, {}, {}, {}
        self._current_item = None
        for key, box in layout.nodes.items():
            if key.startswith(GROUP_PREFIX):
                item = self._group_item(graph, key, box, collapsed=True)
                self._hidden_in.update((member, key) for member in item.view.members)
            else:
                item = self._nodes[key] = NodeItem(graph.node(key), box)
            self.addItem(item)
        for key, box in layout.groups.items():
            self.addItem(self._group_item(graph, key, box, collapsed=False))
        self._node_keys = frozenset(node.key for node in graph.nodes)
        self._map_edges(graph, layout)
        label_lod = LABEL_LOD_BIG_GRAPH if len(layout.edges) > BIG_GRAPH_EDGES else 0.0
        for key, points in layout.edges.items():
            skip = any(graph.is_skip(*edge) for edge in self._draws[key])
            item = self._edges[key] = EdgeItem(
                key, points, self._edge_label(graph, key), label_min_lod=label_lod, skip=skip
            )
            self.addItem(item)
        self._search = [(node.key, _search_text(node)) for node in graph.nodes]
        self._restyle_all()
        self.setSceneRect(
            self.itemsBoundingRect().adjusted(
                -SCENE_MARGIN, -SCENE_MARGIN, SCENE_MARGIN, SCENE_MARGIN
            )
        )

    def _group_item(self, graph: GraphView, key: str, box, *, collapsed: bool) -> GroupItem:
        view = graph.group(key)
        free = sum(graph.node(member).role in GRADIENT_FREE_ROLES for member in view.members)
        leaves = sum(graph.node(member).role != "op" for member in view.members)
        item = self._groups[key] = GroupItem(
            view,
            box,
            collapsed=collapsed,
            gradient_free=free,
            depth=len(graph.enclosing(key)),
            leaves=leaves,
        )
        return item

    def _visible(self, key: str) -> str | None:
        return key if key in self._nodes else self._hidden_in.get(key)

    def _map_edges(self, graph: GraphView, layout: Layout) -> None:
        """Which layout edge draws each of the graph's edges: the one with the same ends and
        position, else one between the same two boxes; None inside a collapsed layer."""
        between = defaultdict(list)
        for key in sorted(layout.edges, key=lambda edge: edge[2]):
            between[key[:2]].append(key)
        self._draws = {key: [] for key in layout.edges}
        self._drawn_by, unmatched = {}, []
        for node in graph.nodes:
            for position, source in enumerate(node.inputs):
                edge = (source, node.key, position)
                ends = (self._visible(source), self._visible(node.key))
                self._drawn_by[edge] = None
                if None in ends or ends[0] == ends[1]:
                    continue
                if (*ends, position) in self._draws:
                    self._draw(edge, (*ends, position))
                else:
                    unmatched.append((edge, ends))
        for edge, ends in unmatched:
            candidates = between.get(ends)
            if candidates:
                free = [key for key in candidates if not self._draws[key]]
                self._draw(edge, free[0] if free else candidates[0])

    def _draw(self, edge: EdgeKey, drawn: EdgeKey) -> None:
        self._drawn_by[edge] = drawn
        self._draws[drawn].append(edge)

    def _edge_label(self, graph: GraphView, key: EdgeKey) -> str:
        """The shape flowing along the edge: its first graph edge's source's shape."""
        drawn = self._draws[key]
        source = drawn[0][0] if drawn else key[0]
        return "" if source.startswith(GROUP_PREFIX) else graph.node(source).shape_text

    def _restyle_all(self) -> None:
        """Give freshly built items the remembered styles (of keys still in the graph)."""
        graph = self.graph
        if graph is None:  # nothing drawn yet
            return
        known = self._node_keys
        self._states = {key: s for key, s in self._states.items() if key in known}
        self._values = {key: text for key, text in self._values.items() if key in known}
        self._grads = {key: text for key, text in self._grads.items() if key in known}
        self._breakpoints &= known
        self._nonfinite &= known
        self._gradients = {e: m for e, m in self._gradients.items() if e in self._drawn_by}
        self._tally = {}
        for group in graph.groups:
            tally = dict.fromkeys(STATES, 0)
            tally[OPS_PENDING] = 0
            for member in group.members:
                state = self._states.get(member, "pending")
                tally[state] += 1
                tally[OPS_PENDING] += state == "pending" and graph.node(member).role == "op"
            self._tally[group.key] = tally
            box = self._groups.get(group.key)
            if box is not None and box.collapsed:
                box.set_counts(tally)
                box.set_breakpoint(any(m in self._breakpoints for m in group.members))
                box.set_nonfinite(any(m in self._nonfinite for m in group.members))
        for key in self._nonfinite:
            if key in self._nodes:
                self._nodes[key].set_nonfinite(True)
        for key, state in self._states.items():
            if key in self._nodes:
                self._nodes[key].set_state(state)
        for key in self._breakpoints:
            if key in self._nodes:
                self._nodes[key].set_breakpoint(True)
        for key, text in self._values.items():
            if key in self._nodes:
                self._nodes[key].set_value_text(text)
        for key, text in self._grads.items():
            if key in self._nodes:
                self._nodes[key].set_grad_text(text)
        for drawn in {self._drawn_by[edge] for edge in self._gradients} - {None}:
            self._edges[drawn].set_gradient(self._edge_magnitude(drawn))
        current, self._current = self._current, None
        if current in known or current in self._groups:
            self.set_current(current)

    # --- styles ------------------------------------------------------------------------------
    def set_state(self, key: str, state: str) -> None:
        """Mark a node pending, done forward or done backward."""
        if state not in STATES:
            raise ValueError(f"node state must be one of {STATES}, got {state!r}")
        self._check_node(key)
        old = self._states.get(key, "pending")
        if old == state:
            return
        if state == "pending":
            del self._states[key]
        else:
            self._states[key] = state
        item = self._nodes.get(key)
        if item is not None:
            item.set_state(state)
        for group in self.graph.enclosing(key):
            tally = self._tally[group]
            tally[old] -= 1
            tally[state] += 1
            if self.graph.node(key).role == "op":
                tally[OPS_PENDING] += (state == "pending") - (old == "pending")
            box = self._groups.get(group)
            if box is not None and box.collapsed:
                box.set_counts(tally)

    def state_of(self, key: str) -> str:
        """A node's state, or a layer's summed-up state (pending/partial/forward/backward)."""
        if key in self._tally:
            group = self.graph.group(key)
            free = sum(self.graph.node(m).role in GRADIENT_FREE_ROLES for m in group.members)
            leaves = sum(self.graph.node(m).role != "op" for m in group.members)
            return summed_state(self._tally[key], len(group.members), free, leaves)
        return self._states.get(key, "pending")

    def set_current(self, key: str | None) -> None:
        """Highlight the node being stepped (its layer's box when it is hidden); None: none."""
        item = None if key is None else self.item_showing(key)
        if self._current_item is not None and self._current_item is not item:
            self._current_item.set_current(False)
        if item is not None:
            item.set_current(True)
        self._current, self._current_item = key, item

    @property
    def current(self) -> str | None:
        return self._current

    def set_breakpoint(self, key: str, on: bool) -> None:
        """Show or hide a node's breakpoint dot (on its layer's box when it is hidden)."""
        self._check_node(key)
        if on:
            self._breakpoints.add(key)
        else:
            self._breakpoints.discard(key)
        if key in self._nodes:
            self._nodes[key].set_breakpoint(on)
        elif key in self._hidden_in:
            box = self._groups[self._hidden_in[key]]
            box.set_breakpoint(any(m in self._breakpoints for m in box.view.members))

    def set_nonfinite(self, key: str, on: bool) -> None:
        """Flag a node in red (its value or gradient holds NaN or Inf), or take the flag off;
        a collapsed layer's box is flagged while any of its nodes is."""
        self._check_node(key)
        if on:
            self._nonfinite.add(key)
        else:
            self._nonfinite.discard(key)
        if key in self._nodes:
            self._nodes[key].set_nonfinite(on)
        elif key in self._hidden_in:
            box = self._groups[self._hidden_in[key]]
            box.set_nonfinite(any(m in self._nonfinite for m in box.view.members))

    def nonfinite(self) -> frozenset[str]:
        """The nodes flagged as not finite."""
        return frozenset(self._nonfinite)

    def set_edge_gradient(
        self, source: str, target: str, position: int, magnitude: float | None
    ) -> None:
        """Draw the graph edge source -> target (input `position`) by its gradient's magnitude
        in [0, 1]; None draws it plain. An edge between layers shows its largest gradient."""
        edge = (source, target, position)
        if edge not in self._drawn_by:
            raise KeyError(f"no edge {source} -> {target} (input {position}) in the graph shown")
        if magnitude is not None and not 0.0 <= magnitude <= 1.0:
            raise ValueError(f"gradient magnitude must be in [0, 1], got {magnitude}")
        if magnitude is None:
            self._gradients.pop(edge, None)
        else:
            self._gradients[edge] = magnitude
        drawn = self._drawn_by[edge]
        if drawn is not None:
            self._edges[drawn].set_gradient(self._edge_magnitude(drawn))

    def _edge_magnitude(self, drawn: EdgeKey) -> float | None:
        magnitudes = [self._gradients[e] for e in self._draws[drawn] if e in self._gradients]
        return max(magnitudes) if magnitudes else None

    def set_value_text(self, key: str, text: str | None) -> None:
        """A short value written under the node's shape (a scalar's number); None: none."""
        self._check_node(key)
        if text:
            self._values[key] = text
        else:
            self._values.pop(key, None)
        if key in self._nodes:
            self._nodes[key].set_value_text(text or None)

    def set_grad_text(self, key: str, text: str | None) -> None:
        """A short gradient written below the node's value once its backward step is done;
        None: none."""
        self._check_node(key)
        if text:
            self._grads[key] = text
        else:
            self._grads.pop(key, None)
        if key in self._nodes:
            self._nodes[key].set_grad_text(text or None)

    def reset_styles(self) -> None:
        """Everything back to pending, no current node, no values or gradients, plain edges;
        breakpoints, which the person set, stay."""
        for key in self._states:
            if key in self._nodes:
                self._nodes[key].set_state("pending")
        for key in self._values:
            if key in self._nodes:
                self._nodes[key].set_value_text(None)
        for key in self._grads:
            if key in self._nodes:
                self._nodes[key].set_grad_text(None)
        for item in (*self._nodes.values(), *self._groups.values()):
            item.set_nonfinite(False)
        self._states, self._values, self._grads, self._gradients = {}, {}, {}, {}
        self._nonfinite = set()
        for item in self._edges.values():
            item.set_gradient(None)
        self._restyle_all()
        self.set_current(None)

    def _check_node(self, key: str) -> None:
        if key not in self._node_keys:
            raise KeyError(f"no node {key!r} in the graph shown")

    # --- lookup ------------------------------------------------------------------------------
    def find(self, text: str) -> list[str]:
        """Keys of the nodes whose name, op, layer or layer kind contains `text`, ignoring
        case, in topological order."""
        needle = text.strip().casefold()
        if not needle:
            return []
        return [key for key, haystack in self._search if needle in haystack]

    def item_for(self, key: str) -> NodeItem | GroupItem | None:
        """The item drawn for exactly this key (a node or a layer), None when not drawn."""
        return self._nodes.get(key) or self._groups.get(key)

    def item_showing(self, key: str) -> NodeItem | GroupItem | None:
        """The item that shows a key: its own, or its collapsed layer's box."""
        item = self.item_for(key)
        if item is None and key in self._hidden_in:
            item = self._groups[self._hidden_in[key]]
        return item

    def edge_item(self, source: str, target: str, position: int) -> EdgeItem | None:
        """The item that draws a graph edge, None when it is inside a collapsed layer."""
        drawn = self._drawn_by.get((source, target, position))
        return None if drawn is None else self._edges[drawn]

    def select_keys(self, keys) -> list[BoxItem]:
        """Select the boxes that show `keys` (a node hidden in a collapsed layer: the layer's
        box), without announcing a selection; the boxes selected, in the order of `keys`."""
        shown: list[BoxItem] = []
        for key in keys:
            item = self.item_showing(key)
            if item is not None and item not in shown and isinstance(item, BoxItem):
                shown.append(item)
        self.blockSignals(True)
        try:
            self.clearSelection()
            for item in shown:
                item.setSelected(True)
        finally:
            self.blockSignals(False)
        return shown

    def repaint_all(self) -> None:
        """Paint every item again (the colours changed: a light or dark palette)."""
        for item in self.items():
            item.update()
        self.update()

    def node_items(self) -> dict[str, NodeItem]:
        return dict(self._nodes)

    def group_items(self) -> dict[str, GroupItem]:
        return dict(self._groups)

    def edge_items(self) -> dict[EdgeKey, EdgeItem]:
        return dict(self._edges)

    # --- mouse -------------------------------------------------------------------------------
    def _box_at(self, position) -> BoxItem | None:
        for item in self.items(position):
            if isinstance(item, BoxItem):
                return item
        return None

    def _emit_selection(self) -> None:
        selected = self.selectedItems()
        if len(selected) == 1 and isinstance(selected[0], BoxItem):
            self.nodeSelected.emit(selected[0].key)

    def mouseDoubleClickEvent(self, event) -> None:
        item = self._box_at(event.scenePos())
        if isinstance(item, GroupItem):
            self.groupToggled.emit(item.key)
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def contextMenuEvent(self, event) -> None:
        item = self._box_at(event.scenePos())
        if item is None:
            super().contextMenuEvent(event)
            return
        self.menu_for(item.key).exec(event.screenPos())
        event.accept()

    def menu_for(self, key: str) -> QMenu:
        """The context menu of a node (breakpoint, its layer) or of a layer's box or frame."""
        menu = QMenu()
        if key in self._groups:
            verb = "Expand" if self._groups[key].collapsed else "Collapse"
            menu.addAction(f"{verb} layer").triggered.connect(lambda: self.groupToggled.emit(key))
            return menu
        menu.addAction("Toggle breakpoint").triggered.connect(
            lambda: self.breakpointToggled.emit(key)
        )
        for group in self.graph.enclosing(key):
            path = self.graph.group(group).path
            menu.addAction(f"Collapse layer {path}").triggered.connect(
                lambda _=False, group=group: self.groupToggled.emit(group)
            )
        return menu

    # --- export ------------------------------------------------------------------------------
    def _export_rect(self) -> QRectF:
        rect = self.itemsBoundingRect()
        if rect.isEmpty():
            raise ValueError("the graph view is empty: nothing to export")
        return rect.adjusted(-EXPORT_MARGIN, -EXPORT_MARGIN, EXPORT_MARGIN, EXPORT_MARGIN)

    def export_svg(self, path) -> None:
        """Write the whole graph as an SVG file (atomically)."""
        source = self._export_rect()
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        generator = QSvgGenerator()
        generator.setOutputDevice(buffer)
        generator.setSize(QSize(math.ceil(source.width()), math.ceil(source.height())))
        generator.setViewBox(QRectF(0, 0, source.width(), source.height()))
        generator.setTitle("topograd graph")
        painter = QPainter(generator)
        self.render(painter, QRectF(0, 0, source.width(), source.height()), source)
        painter.end()
        self._write(path, buffer.data())

    def export_png(self, path) -> None:
        """Write the whole graph as a PNG on white, its longer side at most 4000 px
        (atomically)."""
        source = self._export_rect()
        scale = min(PNG_MAX_SCALE, PNG_MAX_SIDE / max(source.width(), source.height()))
        image = QImage(
            math.ceil(source.width() * scale),
            math.ceil(source.height() * scale),
            QImage.Format.Format_ARGB32,
        )
        image.fill(Qt.GlobalColor.white)
        painter = QPainter(image)
        painter.setRenderHints(
            QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing
        )
        self.render(painter, QRectF(image.rect()), source)
        painter.end()
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        if not image.save(buffer, "PNG"):
            raise OSError(f"Qt could not encode the graph as PNG for {path}")
        buffer.close()
        self._write(path, data)

    @staticmethod
    def _write(path, data: QByteArray) -> None:
        payload = bytes(data.data())
        write_atomically(path, lambda temporary: temporary.write_bytes(payload))


def _search_text(node) -> str:
    """What a search matches a node by: its name, op, layer and layer kind, casefolded."""
    fields = (node.name, node.op, node.layer, node.layer_kind)
    return " ".join(field for field in fields if field).casefold()
