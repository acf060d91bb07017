"""A graph as a standalone SVG picture: what a notebook shows inline, drawn without Qt.

micrograd's `draw_dot` writes `data | grad` in every box; here every box also names its op
and shape, layers are labelled frames (or one box each, collapsed), and a stepper can colour
boxes by the pass that reached them. Positions come from the same Qt-free layout as the
window's (gui.layout: dot when installed, the layered fallback otherwise), with boxes sized
for the lines drawn in them. The colours are the desktop scene's (gui.items).

>>> import topograd as tg
>>> x = tg.Tensor(3.0, requires_grad=True, name="x")
>>> graph = tg.Graph((x * x).named("y"))
>>> graph.backward()
>>> svg = graph_svg(graph, use_dot=False)
>>> svg.startswith("<svg"), "grad 6" in svg
(True, True)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from xml.sax.saxutils import escape

from topograd.engine import Graph
from topograd.gui.layout import (
    CHAR_WIDTH,
    LINE_HEIGHT,
    MAX_BOX_WIDTH,
    MIN_BOX_WIDTH,
    PADDING_X,
    PADDING_Y,
    Layout,
    LayoutInput,
    compute_layout,
    text_width,
    visible_input,
)
from topograd.gui.model import GROUP_PREFIX, GraphView, GroupView, NodeView
from topograd.gui.values import ValueView, short_text

STATES = ("pending", "forward", "backward")
BIG_GRAPH = 400  # nodes from which layers are collapsed unless `collapsed` says otherwise

FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"  # fixed width: box sizes hold the text
FONT_SIZE = 11.0  # px; a monospace glyph is 0.6 em = 6.6 px, within the layout's CHAR_WIDTH
LABEL_FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
BASELINE = 11.5  # from the top of a LINE_HEIGHT row to its text's baseline
MARGIN = 8.0  # around the drawing: room for the current node's thick outline
CORNER = 6.0
STRIPE = 3.0  # the role's colour bar on a box's left side
ARROW_LENGTH = 8.0
ARROW_HALF_WIDTH = 3.5

TEXT = "#212121"
PENDING_TEXT = "#9e9e9e"
DATA_TEXT = "#1a4f8b"
GRAD_TEXT = "#bf360c"
ALARM_TEXT = "#d50000"  # a value or gradient holding NaN or Inf
BORDER = "#607d8b"
CURRENT_BORDER = "#d81b60"
ROLE_STRIPE = {"input": "#2e7d32", "parameter": "#7b1fa2", "constant": "#757575", "op": "#455a64"}
ROLE_FILL = {"input": "#edf7ed", "parameter": "#f5eef9", "constant": "#f1f1f1", "op": "#fcfcfc"}
STATE_FILL = {"pending": "#f5f5f5", "forward": "#cfe3fa", "backward": "#ffd8ad"}
LAYER_FILL = "#eceff1"
FRAME_BORDER = "#90a4ae"
FRAME_TEXT = "#546e7a"
EDGE_COLOR = "#8d8d8d"

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # XML 1.0 forbids these


@dataclass(frozen=True)
class _Line:
    """One line of text in a box; `alarm` lines hold a NaN or an Inf and are drawn in red."""

    text: str
    kind: str  # "title", "detail", "data" or "grad"
    alarm: bool = False


@dataclass(frozen=True)
class _Card:
    """What one box shows and how it is styled, before the layout gives it a place."""

    element_id: str
    role: str  # a NodeView role, or "layer" for a collapsed layer
    state: str | None  # one of STATES, or None when no states were given
    lines: tuple[_Line, ...]
    tooltip: str


def graph_svg(
    graph: Graph,
    *,
    current: int | None = None,
    states: dict[int, str] | None = None,
    values: dict | None = None,
    grads: dict | None = None,
    collapsed: Iterable[str] | bool | None = None,
    rankdir: str = "TB",
    use_dot: bool = True,
) -> str:
    """A standalone SVG document of `graph`: a box per node (name or op, op or role, shape,
    `data` and `grad`), edges with arrowheads, and layers as labelled frames.

    `values` and `grads` map engine node ids to arrays (or None for "nothing to show") and
    win over the defaults: each node's current data, and the gradient the graph's last
    backward pass left (`graph.grads`) or else the node's own `.grad`. `states` maps node ids
    to "pending", "forward" or "backward" (missing ids are pending) and colours boxes the way
    the stepper does; `current` is a node id, drawn with a thick outline and given the element
    id "current". `collapsed` names layers (paths such as "sequential.0") to draw as one box
    each, or True for every layer; by default a graph of more than BIG_GRAPH (400) nodes
    collapses every layer and a smaller one none. `rankdir` is "TB" (inputs on top) or "LR".
    `use_dot=False` forces the pure-Python layout even when graphviz is installed.
    """
    if rankdir not in ("TB", "LR"):
        raise ValueError(f"rankdir must be 'TB' or 'LR', got {rankdir!r}")
    view = GraphView.from_graph(graph)
    folded = _folded_groups(view, collapsed)
    current_key = _shown_key(view, folded, _node_key(view, current))
    cards = _cards(graph, view, folded, _states(view, states), values, grads)
    placed = compute_layout(_sized(visible_input(view, folded, rankdir), cards), use_dot=use_dot)
    return _document(view, placed, cards, current_key)


def document_size(svg: str) -> tuple[float, float]:
    """The (width, height) in px that graph_svg wrote on its document's root element."""
    found = re.match(r'<svg [^>]*?width="([0-9.]+)" height="([0-9.]+)"', svg)
    if found is None:
        raise ValueError("not an SVG document written by graph_svg")
    return float(found.group(1)), float(found.group(2))


# --- what each box says -----------------------------------------------------------------------
def _folded_groups(view: GraphView, collapsed) -> frozenset[str]:
    """The keys of the groups drawn as one box each (see graph_svg's `collapsed`)."""
    every = frozenset(group.key for group in view.groups)
    if collapsed is None:
        return every if len(view.nodes) > BIG_GRAPH else frozenset()
    if isinstance(collapsed, bool):
        return every if collapsed else frozenset()
    if isinstance(collapsed, str):
        collapsed = [collapsed]
    keys = {
        name: name if name.startswith(GROUP_PREFIX) else GROUP_PREFIX + name for name in collapsed
    }
    unknown = [name for name, key in keys.items() if key not in every]
    if unknown:
        known = ", ".join(group.path for group in view.groups) or "none"
        raise ValueError(f"collapsed names no layer {unknown[0]!r} of this graph (layers: {known})")
    return frozenset(keys.values())


def _node_key(view: GraphView, node_id: int | None) -> str | None:
    """The view's key of an engine node id (None stays None)."""
    if node_id is None:
        return None
    for node in view.nodes:
        if node.node_id == node_id:
            return node.key
    raise ValueError(f"current node id {node_id} is not a node of this graph")


def _shown_key(view: GraphView, folded: frozenset[str], key: str | None) -> str | None:
    """The box a node is drawn in: its own, or its outermost collapsed layer's."""
    return None if key is None else view.shown_as(key, folded)


def _states(view: GraphView, states: dict[int, str] | None) -> dict[str, str] | None:
    """Each node key's state, every node pending unless `states` says otherwise."""
    if states is None:
        return None
    for node_id, state in states.items():
        if state not in STATES:
            raise ValueError(f"state of node {node_id} must be one of {STATES}, got {state!r}")
    return {node.key: states.get(node.node_id, "pending") for node in view.nodes}


def _cards(graph, view, folded, states, values, grads) -> dict[str, _Card]:
    """A card for every box drawn: one per node outside the collapsed layers, one per
    collapsed layer. All node boxes have the same rows: `data` and `grad` each when some box
    shows one or when the caller gave them, so that a stepper's frames keep their layout."""
    shown = [node for node in view.nodes if view.shown_as(node.key, folded) == node.key]
    numbers = {node.key: _numbers(graph, node.node_id, values or {}, grads or {}) for node in shown}
    rows = [
        kind
        for n, (kind, given) in enumerate((("data", values), ("grad", grads)))
        if given is not None or any(v[n] for v in numbers.values())
    ]
    cards = {node.key: _node_card(node, numbers[node.key], rows, states) for node in shown}
    for group in view.groups:
        if group.key in folded and view.shown_as(group.key, folded) == group.key:
            cards[group.key] = _layer_card(view, group, states)
    return cards


def _numbers(graph: Graph, node_id: int, values: dict, grads: dict) -> tuple:
    """The (data, grad) lines of a node, each (text, alarm) or None when there is none."""
    node = graph[node_id]
    value = values.get(node_id, node.data)
    if node_id in grads:
        grad = grads[node_id]
    else:
        grad = graph.grads.get(node_id)
        grad = node.grad if grad is None else grad
    return tuple(None if array is None else _summary(array) for array in (value, grad))


def _summary(array) -> tuple[str, bool]:
    """'0.7071' for one number, 'mean 0.12 std 2.3' for a tensor (the window's short text),
    and whether it holds a NaN or an Inf."""
    value = ValueView.from_array(array)
    return short_text(value), value.nonfinite > 0


def _node_card(node: NodeView, numbers: tuple, rows: list[str], states) -> _Card:
    title = node.name if node.name is not None else node.op
    detail = node.shape_text if node.name is None else f"{node.op} · {node.shape_text}"
    lines = [_Line(title, "title"), _Line(detail, "detail")]
    for kind, number in zip(("data", "grad"), numbers):
        if kind in rows:
            text, alarm = number if number is not None else ("", False)
            lines.append(_Line(f"{kind} {text}" if text else "", kind, alarm))
    tooltip = [f"{node.title} ({node.shape_text}), node #{node.node_id}"]
    if node.formula:
        tooltip += [f"formula: {node.formula}", f"VJP: {node.vjp_formula}"]
    tooltip += [line.text for line in lines[2:] if line.text]
    state = None if states is None else states[node.key]
    return _Card(f"node-{node.node_id}", node.role, state, tuple(lines), "\n".join(tooltip))


def _layer_card(view: GraphView, group: GroupView, states) -> _Card:
    detail = f"{group.kind} · {group.detail}" if group.kind else group.detail
    lines = (_Line(group.name or group.path, "title"), _Line(detail, "detail"))
    members = ", ".join(view.node(key).title for key in group.members)
    tooltip = f"{group.long_title}: {group.detail}\n{members}"
    state = None if states is None else _layer_state(view, group, states)
    return _Card(f"layer-{group.path}", "layer", state, lines, tooltip)


def _layer_state(view: GraphView, group: GroupView, states: dict[str, str]) -> str:
    """A collapsed layer's state: its members' when they agree, once inputs and constants
    (which never get a gradient) are left out of a backward pass; "partial" otherwise."""
    found = {states[key] for key in group.members}
    if "backward" in found:
        takes_grad = [k for k in group.members if view.node(k).role in ("op", "parameter")]
        found = {states[key] for key in takes_grad}
    return found.pop() if len(found) == 1 else "partial"


def _sized(layout_input: LayoutInput, cards: dict[str, _Card]) -> LayoutInput:
    """visible_input's boxes resized for the lines each card draws."""
    nodes = tuple(replace(node, **_box_size(cards[node.key].lines)) for node in layout_input.nodes)
    return replace(layout_input, nodes=nodes)


def _box_size(lines: tuple[_Line, ...]) -> dict[str, float]:
    """The width and height that hold `lines` (gui.layout's sizes, without its spare row)."""
    widest = max(text_width(line.text) for line in lines) + 2 * PADDING_X
    width = min(max(widest, MIN_BOX_WIDTH), MAX_BOX_WIDTH)
    return {"width": float(math.ceil(width)), "height": len(lines) * LINE_HEIGHT + 2 * PADDING_Y}


# --- the document -----------------------------------------------------------------------------
def _document(view: GraphView, placed: Layout, cards: dict[str, _Card], current: str | None):
    """The SVG text: a white sheet, layer frames behind, then edges, then boxes."""
    width, height = placed.width + 2 * MARGIN, placed.height + 2 * MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="{-MARGIN:g} {-MARGIN:g} {width:.0f} {height:.0f}" font-family="{FONT}" '
        f'font-size="{FONT_SIZE:g}" class="topograd-graph">',
        f'<rect x="{-MARGIN:g}" y="{-MARGIN:g}" width="100%" height="100%" fill="white"/>',
    ]
    parts += [_frame(view.group(key), box) for key, box in placed.groups.items()]
    parts.append(f'<g class="edges" fill="none" stroke="{EDGE_COLOR}" stroke-width="1.2">')
    parts += [_edge(points) for points in placed.edges.values()]
    parts.append("</g>")
    parts += [_box(cards[key], box, key == current) for key, box in placed.nodes.items()]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _frame(group: GroupView, box) -> str:
    """An expanded layer: a rounded frame with its title in the top-left corner."""
    x, y, width, height = box
    return (
        f'<g class="layer-frame" id="frame-{_attr(group.path)}">'
        f"<title>{_text(group.long_title)}</title>"
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" rx="9" '
        f'fill="{LAYER_FILL}" fill-opacity="0.45" stroke="{FRAME_BORDER}"/>'
        f'<text x="{x + 6:.1f}" y="{y + 13:.1f}" font-family="{LABEL_FONT}" fill="{FRAME_TEXT}">'
        f"{_text(group.title)}</text></g>"
    )


def _edge(points) -> str:
    """A polyline from the source's side to the target's, with an arrowhead at its end."""
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline points="{line}"/>' + _arrowhead(points)


def _arrowhead(points) -> str:
    """A filled triangle whose tip is the polyline's last point, along its last segment."""
    tip_x, tip_y = points[-1]
    for x, y in reversed(points[:-1]):
        length = math.hypot(tip_x - x, tip_y - y)
        if length > 1e-6:
            ux, uy = (tip_x - x) / length, (tip_y - y) / length
            break
    else:
        return ""
    base_x, base_y = tip_x - ARROW_LENGTH * ux, tip_y - ARROW_LENGTH * uy
    corners = [
        (tip_x, tip_y),
        (base_x - ARROW_HALF_WIDTH * uy, base_y + ARROW_HALF_WIDTH * ux),
        (base_x + ARROW_HALF_WIDTH * uy, base_y - ARROW_HALF_WIDTH * ux),
    ]
    text = " ".join(f"{x:.1f},{y:.1f}" for x, y in corners)
    return f'<polygon points="{text}" fill="{EDGE_COLOR}" stroke="none"/>'


def _box(card: _Card, box, is_current: bool) -> str:
    """A node's or collapsed layer's box: outline, role stripe and centred lines of text."""
    x, y, width, height = box
    classes = " ".join(c for c in ("node", card.role, card.state, is_current and "current") if c)
    stroke = CURRENT_BORDER if is_current else BORDER
    stroke_width = 3.5 if is_current else 1.0
    dash = ' stroke-dasharray="4 3"' if card.state == "pending" else ""
    current = ' id="current"' if is_current else ""
    parts = [
        f'<g id="{_attr(card.element_id)}" class="{classes}"><title>{_text(card.tooltip)}</title>',
        f'<rect{current} x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" '
        f'rx="{CORNER:g}" fill="{_fill(card)}" stroke="{stroke}" stroke-width="{stroke_width:g}"'
        f"{dash}/>",
    ]
    if card.role in ROLE_STRIPE:
        parts.append(
            f'<rect x="{x + 1.5:.1f}" y="{y + CORNER / 2:.1f}" width="{STRIPE:g}" '
            f'height="{height - CORNER:.1f}" fill="{ROLE_STRIPE[card.role]}"/>'
        )
    room = max(1, int((width - 2 * PADDING_X) // CHAR_WIDTH))
    for row, line in enumerate(card.lines):
        if line.text:
            baseline = y + PADDING_Y + row * LINE_HEIGHT + BASELINE
            parts.append(
                f'<text x="{x + width / 2:.1f}" y="{baseline:.1f}" text-anchor="middle"'
                f"{_text_style(card, line)}>{_text(_elide(line.text, room))}</text>"
            )
    parts.append("</g>")
    return "".join(parts)


def _fill(card: _Card) -> str:
    """A box's fill: its state's colour while stepping, its role's otherwise."""
    if card.state is not None:
        return STATE_FILL.get(card.state, LAYER_FILL)
    return ROLE_FILL.get(card.role, LAYER_FILL)


def _text_style(card: _Card, line: _Line) -> str:
    """The attributes of a line: bold titles, red non-finite numbers, grey pending boxes."""
    if line.alarm:
        return f' fill="{ALARM_TEXT}" font-weight="bold" class="nonfinite"'
    if card.state == "pending":
        colour = PENDING_TEXT
    else:
        colour = {"data": DATA_TEXT, "grad": GRAD_TEXT}.get(line.kind, TEXT)
    bold = ' font-weight="bold"' if line.kind == "title" else ""
    return f' fill="{colour}"{bold}'


def _elide(text: str, room: int) -> str:
    """`text` cut to `room` characters, ending in an ellipsis when cut."""
    return text if len(text) <= room else text[: room - 1] + "…"


def _text(text: str) -> str:
    """Text escaped for an element's content (and characters XML cannot hold replaced)."""
    return escape(_NOT_XML.sub("\ufffd", text))


def _attr(text: str) -> str:
    """Text escaped for a double-quoted attribute value."""
    return escape(_NOT_XML.sub("\ufffd", text), {'"': "&quot;", "\n": "&#10;"})
