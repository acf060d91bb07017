"""Where every box and edge of a graph goes: a pure function from structure to positions.

graphviz `dot` lays the graph out when it is installed and the graph is small enough for it
to finish quickly; otherwise a layered layout written in Python does (gui.layout_layered).
Layouts are cached by the structure's signature, in memory and on disk, so reopening a
model or rebuilding it on a new mini-batch costs nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

from topograd.dsl.training import replace_atomically
from topograd.gui.model import GraphView

Box = tuple[float, float, float, float]  # x, y (top-left, y grows downwards), width, height
Point = tuple[float, float]
EdgeKey = tuple[str, str, int]  # source key, target key, input position


@dataclass(frozen=True)
class LayoutNode:
    """A box to place: a node, or a collapsed layer group."""

    key: str
    width: float
    height: float
    group: str | None = None  # the expanded group (cluster) it is drawn inside


@dataclass(frozen=True)
class LayoutEdge:
    """An edge from an input to its user; `position` is the input's place among the user's
    inputs, so `x * x` has two edges."""

    source: str
    target: str
    position: int


@dataclass(frozen=True)
class LayoutGroup:
    """An expanded layer group: a frame around its members, inside its parent's frame (the
    block around it) when it has one."""

    key: str
    label: str
    parent: str | None = None


@dataclass(frozen=True)
class LayoutInput:
    """Everything the layout depends on; equal inputs give equal layouts."""

    nodes: tuple[LayoutNode, ...]
    edges: tuple[LayoutEdge, ...]
    groups: tuple[LayoutGroup, ...]
    rankdir: str = "LR"

    def signature(self) -> str:
        """A hash of the structure and the sizes: the cache key."""
        text = json.dumps(
            [
                self.rankdir,
                [(n.key, round(n.width, 1), round(n.height, 1), n.group) for n in self.nodes],
                [(e.source, e.target, e.position) for e in self.edges],
                [(g.key, g.label, g.parent) for g in self.groups],
            ],
            separators=(",", ":"),
        )
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Layout:
    """Positions in Qt's coordinates: node and group boxes, and each edge as a polyline from
    its source's side to its target's side."""

    engine: str  # "dot" or "layered"
    note: str  # which layout ran and why, in words, for the window's status line
    nodes: dict[str, Box]
    groups: dict[str, Box]
    edges: dict[EdgeKey, tuple[Point, ...]]
    width: float
    height: float
    seconds: float
    cached: bool = False


# --- box sizes --------------------------------------------------------------------------------
# The scene draws a node's title, its shape, a short value line and, for a node that takes a
# gradient, a grad line in boxes of these sizes (the lines are reserved before values exist).
CHAR_WIDTH = 7.0  # points per character of the node font, a generous average
LINE_HEIGHT = 15.0
PADDING_X = 8.0
PADDING_Y = 6.0
VALUE_CHARS = 18  # room for "mean -0.12 std 1.3"
MIN_BOX_WIDTH = 64.0
MAX_BOX_WIDTH = 240.0  # longer titles are elided by the scene
GROUP_BOX_HEIGHT = 34.0  # a collapsed layer: its caption and its size, in smaller type


def text_width(text: str) -> float:
    """The estimated width of one line of the node font."""
    return len(text) * CHAR_WIDTH


def box_size(lines: list[str], value_lines: int = 1) -> tuple[float, float]:
    """A box that holds `lines` and `value_lines` short lines below them (value, grad)."""
    widest = max([text_width(line) for line in lines] + [VALUE_CHARS * CHAR_WIDTH])
    width = min(max(widest + 2 * PADDING_X, MIN_BOX_WIDTH), MAX_BOX_WIDTH)
    height = (len(lines) + value_lines) * LINE_HEIGHT + 2 * PADDING_Y
    return float(math.ceil(width)), float(math.ceil(height))


def visible_input(graph: GraphView, collapsed: frozenset[str], rankdir: str = "LR") -> LayoutInput:
    """What is on screen: each collapsed group as one box (the outermost one, when blocks
    nest), the edges into and out of it rerouted to that box (one per pair of boxes, and one
    more for a skip edge), edges inside it dropped, and expanded groups as frames inside the
    frames of their blocks."""
    collapsed = frozenset(collapsed)
    shown = {group.key: graph.shown_as(group.key, collapsed) for group in graph.groups}

    def box_of(key: str) -> str:
        group = graph.group_of(key)
        return key if group is None or shown[group] not in collapsed else shown[group]

    nodes: list[LayoutNode] = []
    drawn: set[str] = set()
    for node in graph.nodes:
        box = box_of(node.key)
        if box == node.key:
            width, height = box_size([node.title, node.shape_text], 2 if node.requires_grad else 1)
            nodes.append(LayoutNode(node.key, width, height, graph.group_of(node.key)))
        elif box not in drawn:
            drawn.add(box)
            group = graph.group(box)
            width, _ = box_size([group.title, group.detail], value_lines=0)
            height = GROUP_BOX_HEIGHT
            nodes.append(LayoutNode(box, width, height, group.parent))
    edges: dict[EdgeKey, LayoutEdge] = {}
    joined: set[tuple] = set()  # (source, target, skips) with an edge, for collapsed layers
    for node in graph.nodes:
        target = box_of(node.key)
        for position, source_key in enumerate(node.inputs):
            source = box_of(source_key)
            if source == target:
                continue
            if source in drawn or target in drawn:  # a collapsed layer: one edge per pair
                pair = (source, target, graph.is_skip(source_key, node.key, position))
                if pair in joined:
                    continue
                joined.add(pair)
            edges.setdefault((source, target, position), LayoutEdge(source, target, position))
    groups = tuple(
        LayoutGroup(g.key, g.title, g.parent)
        for g in graph.groups
        if shown[g.key] == g.key and g.key not in collapsed
    )
    return LayoutInput(tuple(nodes), tuple(edges.values()), groups, rankdir)


# --- choosing the engine ----------------------------------------------------------------------
def compute_layout(
    graph: LayoutInput, *, use_dot: bool = True, dot_limit: int = 1500, timeout: float = 10.0
) -> Layout:
    """Lay `graph` out with dot when it is installed and `graph` has at most `dot_limit` boxes
    and dot finishes within `timeout` seconds; with the layered fallback otherwise.

    >>> square = LayoutInput((LayoutNode("x", 60, 40), LayoutNode("y", 60, 40)),
    ...                      (LayoutEdge("x", "y", 0), LayoutEdge("x", "y", 1)), ())
    >>> layout = compute_layout(square, use_dot=False)
    >>> layout.engine, layout.nodes["x"][0] < layout.nodes["y"][0]
    ('layered', True)
    """
    from topograd.gui import (  # they build Layouts, so they import this module
        layout_dot,
        layout_layered,
    )

    start = time.perf_counter()
    dot = shutil.which("dot") if use_dot else None
    if not use_dot:
        reason = "dot turned off"
    elif dot is None:
        reason = "dot not found"
    elif len(graph.nodes) > dot_limit:
        reason = f"dot skipped: {len(graph.nodes)} boxes > {dot_limit}"
    else:
        try:
            placed = layout_dot.dot_layout(graph, dot, timeout)
        except layout_dot.DotTimeoutError:
            reason = f"dot timed out after {timeout:g} s"
        except layout_dot.DotError as error:
            reason = f"dot failed: {error}"
        else:
            seconds = time.perf_counter() - start
            version = layout_dot.graphviz_version(dot)
            note = f"dot (graphviz {version}) in {seconds:.2f} s"
            return replace(placed, note=note, seconds=seconds)
    placed = layout_layered.layered_layout(graph)
    return replace(placed, note=f"layered ({reason})", seconds=time.perf_counter() - start)


# --- caching ----------------------------------------------------------------------------------
CACHE_FORMAT = 3  # bump when layouts change, so old files are not read
MEMORY_CACHE_SIZE = 32
_memory: OrderedDict[str, Layout] = OrderedDict()
_memory_lock = threading.Lock()  # the window may lay out off the UI thread


def cache_folder() -> Path:
    """$TOPOGRAD_CACHE/layouts, or ~/.cache/topograd/layouts."""
    root = os.environ.get("TOPOGRAD_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "topograd"
    return base / "layouts"


def clear_memory_cache() -> None:
    """Forget the layouts kept in memory (the disk cache stays), to free memory."""
    with _memory_lock:
        _memory.clear()


def cached_layout(graph: LayoutInput, **options) -> Layout:
    """compute_layout(graph, **options), remembered in memory and on disk by the graph's
    signature and the engine options, so a model laid out once opens instantly."""
    start = time.perf_counter()
    name = f"{graph.signature()}-{_engine_options(graph, **options)}"
    path = cache_folder() / f"{name}.json"
    with _memory_lock:
        layout = _memory.get(name)
    layout = layout or _read(path, graph)
    if layout is None:
        layout = compute_layout(graph, **options)
        _write(path, layout)
        _remember(name, layout)
        return layout
    _remember(name, layout)
    return replace(layout, cached=True, seconds=time.perf_counter() - start)


def _engine_options(
    graph: LayoutInput, use_dot: bool = True, dot_limit: int = 1500, timeout: float = 10.0
) -> str:
    """The part of the cache file name that says which engine compute_layout tries."""
    tries_dot = use_dot and len(graph.nodes) <= dot_limit and shutil.which("dot") is not None
    return f"v{CACHE_FORMAT}-" + (f"dot-t{timeout:g}" if tries_dot else "layered")


def _remember(name: str, layout: Layout) -> None:
    with _memory_lock:
        _memory[name] = layout
        _memory.move_to_end(name)
        while len(_memory) > MEMORY_CACHE_SIZE:
            _memory.popitem(last=False)


def _write(path: Path, layout: Layout) -> None:
    """Save atomically; a cache that cannot be written is only a slower next start."""
    data = {
        "engine": layout.engine,
        "note": layout.note,
        "nodes": layout.nodes,
        "groups": layout.groups,
        "edges": [[*key, points] for key, points in layout.edges.items()],
        "width": layout.width,
        "height": layout.height,
    }
    text = json.dumps(data, separators=(",", ":"))  # dumps uses the C encoder: 2x faster
    with contextlib.suppress(OSError):
        replace_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def _read(path: Path, graph: LayoutInput) -> Layout | None:
    """The layout saved at `path` for `graph`, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        nodes = {key: _box(box) for key, box in data["nodes"].items()}
        groups = {key: _box(box) for key, box in data["groups"].items()}
        edges = {
            (str(source), str(target), int(position)): tuple(
                (float(x), float(y)) for x, y in points
            )
            for source, target, position, points in data["edges"]
        }
        layout = Layout(
            str(data["engine"]),
            str(data["note"]),
            nodes,
            groups,
            edges,
            float(data["width"]),
            float(data["height"]),
            0.0,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    expected_edges = {(e.source, e.target, e.position) for e in graph.edges}
    if set(nodes) != {n.key for n in graph.nodes} or set(edges) != expected_edges:
        return None
    return layout


def _box(values) -> Box:
    x, y, width, height = (float(v) for v in values)
    return x, y, width, height
