"""The graph layout (gui.layout, gui.layout_layered, gui.layout_dot) checked by geometry:
boxes keep their sizes and never overlap, edges run from their source's side to their
target's side in the flow's direction, frames hold their members, and the cache and the
choice of engine behave as the window relies on. No Qt here."""

import json
import random
import shutil
from itertools import pairwise

import pytest
from topograd.dsl import inspect
from topograd.dsl.commands.common import load_spec
from topograd.gui import layout as layout_module
from topograd.gui import layout_layered
from topograd.gui.layout import (
    LayoutEdge,
    LayoutGroup,
    LayoutInput,
    LayoutNode,
    cached_layout,
    clear_memory_cache,
    compute_layout,
    text_width,
    visible_input,
)
from topograd.gui.layout_layered import layered_layout
from topograd.gui.model import GraphView, GroupView, NodeView

HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="graphviz dot is not installed")


# --- graphs ------------------------------------------------------------------------------------
def random_dag(count, edges_per_box=1.6, window=20, group_every=0, seed=0, rankdir="LR"):
    """Boxes in topological order with edges from the previous `window` boxes; every
    `group_every` boxes, a run of them may form a group (runs keep the grouping acyclic)."""
    rng = random.Random(seed)
    nodes, groups, group = [], [], None
    for i in range(count):
        if group_every and i % group_every == 0:
            group = f"g:{i}" if rng.random() < 0.6 else None
            if group:
                groups.append(LayoutGroup(group, f"layer{i} (Linear)"))
        size = (rng.choice([64.0, 90.0, 131.0]), rng.choice([42.0, 57.0]))
        nodes.append(LayoutNode(f"n{i}", *size, group))
    edges = set()
    while len(edges) < int(count * edges_per_box):
        target = rng.randrange(1, count)
        source = rng.randrange(max(0, target - window), target)
        edges.add((f"n{source}", f"n{target}", rng.randrange(2)))
    edge_list = tuple(LayoutEdge(*edge) for edge in sorted(edges))
    return LayoutInput(tuple(nodes), edge_list, tuple(groups), rankdir)


@pytest.fixture(scope="module")
def digits() -> GraphView:
    spec = load_spec("samples/digits.tg")[0]
    return GraphView.from_graph(inspect.subject(spec).graph())


@pytest.fixture(scope="module")
def moons() -> GraphView:
    spec = load_spec("samples/moons_scalar.tg")[0]
    return GraphView.from_graph(inspect.subject(spec).graph())


def view_node(key, op, inputs=(), layer=None):
    index = int(key[1:])
    role = "op" if inputs else "input"
    return NodeView(key, index, index, op, None, (), layer, None, inputs, role, "", "")


# --- geometry checks ---------------------------------------------------------------------------
def inside(box, outer, slack=1e-6):
    x, y, w, h = box
    ox, oy, ow, oh = outer
    return (
        ox - slack <= x
        and oy - slack <= y
        and x + w <= ox + ow + slack
        and (y + h <= oy + oh + slack)
    )


def overlapping_pairs(boxes: dict) -> list:
    """Pairs of boxes whose interiors meet (sweep along x)."""
    items = sorted(boxes.items(), key=lambda item: item[1][0])
    found = []
    for n, (key, (x, y, w, h)) in enumerate(items):
        for other, (ox, oy, _, oh) in items[n + 1 :]:
            if ox >= x + w - 1e-6:
                break
            if oy < y + h - 1e-6 and y < oy + oh - 1e-6:
                found.append((key, other))
    return found


def on_side(point, box, slack):
    """On the box's border, give or take `slack`: inside it grown, outside it shrunk."""
    x, y, w, h = box
    px, py = point
    grown = x - slack <= px <= x + w + slack and y - slack <= py <= y + h + slack
    deep = x + slack < px < x + w - slack and y + slack < py < y + h - slack
    return grown and not deep


def check_geometry(graph: LayoutInput, layout, slack=1e-6):
    """Sizes kept, nothing overlapping, edges from side to side, frames around members."""
    assert set(layout.nodes) == {node.key for node in graph.nodes}
    for node in graph.nodes:
        x, y, w, h = layout.nodes[node.key]
        assert (w, h) == (node.width, node.height), node.key
        assert inside((x, y, w, h), (0, 0, layout.width, layout.height), slack)
    assert overlapping_pairs(layout.nodes) == []
    assert set(layout.edges) == {(e.source, e.target, e.position) for e in graph.edges}
    for (source, target, _), points in layout.edges.items():
        assert len(points) >= 2
        assert on_side(points[0], layout.nodes[source], slack), (source, target, points[0])
        assert on_side(points[-1], layout.nodes[target], slack), (source, target, points[-1])
    members = {
        group.key: [n.key for n in graph.nodes if n.group == group.key] for group in graph.groups
    }
    assert set(layout.groups) == {key for key, keys in members.items() if keys}
    for key, keys in members.items():
        for member in keys:
            assert inside(layout.nodes[member], layout.groups[key], slack), (member, key)


def check_direction(graph: LayoutInput, layout):
    """Every edge's target lies wholly after its source: right of it (LR) or below (TB)."""
    along = 0 if graph.rankdir == "LR" else 1
    for edge in graph.edges:
        source, target = layout.nodes[edge.source], layout.nodes[edge.target]
        assert target[along] > source[along] + source[along + 2], edge


def segment_crosses(a, b, box, margin=0.5) -> bool:
    """Whether segment a-b passes through the box's interior shrunk by `margin`."""
    x0, y0 = box[0] + margin, box[1] + margin
    x1, y1 = box[0] + box[2] - margin, box[1] + box[3] - margin
    low, high = 0.0, 1.0
    dx, dy = b[0] - a[0], b[1] - a[1]
    for p, q in ((-dx, a[0] - x0), (dx, x1 - a[0]), (-dy, a[1] - y0), (dy, y1 - a[1])):
        if p == 0:
            if q < 0:
                return False
        else:
            t = q / p
            if p < 0:
                low = max(low, t)
            else:
                high = min(high, t)
    return low < high


# --- the layered layout ------------------------------------------------------------------------
@pytest.mark.parametrize("rankdir", ["LR", "TB"])
def test_layered_layout_keeps_sizes_order_and_frames(rankdir):
    graph = random_dag(300, group_every=10, rankdir=rankdir)
    layout = layered_layout(graph)
    check_geometry(graph, layout)
    check_direction(graph, layout)
    frames = dict(layout.groups)
    assert overlapping_pairs(frames) == []
    for key, box in layout.nodes.items():
        group = graph.nodes[int(key[1:])].group
        for frame_key, frame in frames.items():
            if frame_key != group:
                assert overlapping_pairs({key: box, frame_key: frame}) == [], (key, frame_key)


@pytest.mark.parametrize(("rankdir", "waypoints"), [("LR", 3), ("TB", 3), ("LR", 0)])
def test_layered_edges_go_around_boxes(rankdir, waypoints, monkeypatch):
    # with no waypoints to spend, every edge over more than one layer runs in a lane outside
    monkeypatch.setattr(layout_layered, "WAYPOINT_BUDGET", waypoints)
    graph = random_dag(150, group_every=10, window=40, rankdir=rankdir)
    layout = layered_layout(graph)
    check_geometry(graph, layout)
    for (source, target, _), points in layout.edges.items():
        for key, box in layout.nodes.items():
            if key in (source, target):
                continue
            for a, b in pairwise(points):
                assert not segment_crosses(a, b, box), (source, target, key)


def test_layered_layout_of_5000_boxes_and_8000_edges():
    graph = random_dag(5000, group_every=12, seed=3)
    assert len(graph.edges) == 8000
    layout = layered_layout(graph)
    check_geometry(graph, layout)
    check_direction(graph, layout)


def test_layered_layout_breaks_cycles_and_draws_self_loops():
    nodes = tuple(LayoutNode(key, 80.0, 40.0, "g:a" if key in "ab" else None) for key in "abcde")
    edges = tuple(
        LayoutEdge(*edge)
        for edge in [
            ("a", "c", 0),
            ("c", "b", 0),
            ("b", "d", 0),
            ("d", "e", 0),
            ("e", "c", 1),
            ("e", "a", 0),
            ("d", "d", 0),
            ("c", "d", 1),
        ]
    )
    graph = LayoutInput(nodes, edges, (LayoutGroup("g:a", "a (Linear)"),))
    layout = layered_layout(graph)
    check_geometry(graph, layout)


# --- dot -----------------------------------------------------------------------------------------
@needs_dot
@pytest.mark.parametrize("rankdir", ["LR", "TB"])
def test_dot_layout_keeps_sizes_and_order(rankdir):
    graph = random_dag(120, rankdir=rankdir)
    layout = compute_layout(graph)
    assert layout.engine == "dot" and layout.note.startswith("dot (graphviz ")
    check_geometry(graph, layout, slack=1.0)
    check_direction(graph, layout)


@needs_dot
def test_dot_layout_puts_groups_in_frames():
    graph = random_dag(120, group_every=10)
    layout = compute_layout(graph)
    assert layout.engine == "dot"
    check_geometry(graph, layout, slack=1.0)
    assert overlapping_pairs(dict(layout.groups)) == []


# --- real graphs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("use_dot", [False, pytest.param(True, marks=needs_dot)])
def test_real_graph_with_one_layer_collapsed(digits, use_dot):
    batch_norm = next(group for group in digits.groups if group.kind == "BatchNorm1d")
    graph = visible_input(digits, frozenset({batch_norm.key}))
    keys = {node.key for node in graph.nodes}
    assert batch_norm.key in keys and keys.isdisjoint(batch_norm.members)
    assert batch_norm.key not in {group.key for group in graph.groups}
    box = next(node for node in graph.nodes if node.key == batch_norm.key)
    assert box.group is None and box.width >= min(text_width(batch_norm.title), 200)

    def shown(key):
        return batch_norm.key if key in batch_norm.members else key

    expected = {
        (shown(source), shown(node.key), position)
        for node in digits.nodes
        for position, source in enumerate(node.inputs)
        if shown(source) != shown(node.key)
    }
    edges = [(edge.source, edge.target, edge.position) for edge in graph.edges]
    assert len(edges) == len(set(edges)) and set(edges) == expected
    assert all(source != target for source, target, _ in edges)
    assert any(target == batch_norm.key for _, target, _ in edges)
    assert any(source == batch_norm.key for source, _, _ in edges)

    layout = compute_layout(graph, use_dot=use_dot)
    assert layout.engine == ("dot" if use_dot else "layered")
    check_geometry(graph, layout, slack=1.0)
    check_direction(graph, layout)


def test_visible_input_of_a_real_graph_keeps_every_node_and_group(digits):
    graph = visible_input(digits, frozenset())
    assert [node.key for node in graph.nodes] == [node.key for node in digits.nodes]
    assert {group.key: group.label for group in graph.groups} == {
        group.key: group.title for group in digits.groups
    }
    for node in graph.nodes:
        assert node.group == digits.group_of(node.key)
    assert len(graph.edges) == sum(len(node.inputs) for node in digits.nodes)


def test_visible_input_keeps_parallel_edges_and_merges_rerouted_duplicates():
    nodes = (
        view_node("n0", "input"),
        view_node("n1", "mul", ("n0", "n0")),  # x * x: two edges
        view_node("n2", "exp", ("n1",), layer="block"),
        view_node("n3", "log", ("n1",), layer="block"),
        view_node("n4", "add", ("n2", "n3"), layer="block"),
        view_node("n5", "neg", ("n4",)),
    )
    group = GroupView("g:block", "block", "Block", ("n2", "n3", "n4"))
    view = GraphView(nodes, (group,))
    expanded = visible_input(view, frozenset())
    assert {(e.source, e.target, e.position) for e in expanded.edges} >= {
        ("n0", "n1", 0),
        ("n0", "n1", 1),
    }
    folded = visible_input(view, frozenset({"g:block"}), rankdir="TB")
    assert folded.rankdir == "TB" and folded.groups == ()
    assert [node.key for node in folded.nodes] == ["n0", "n1", "g:block", "n5"]
    assert [(e.source, e.target, e.position) for e in folded.edges] == [
        ("n0", "n1", 0),
        ("n0", "n1", 1),
        ("n1", "g:block", 0),  # exp(n1) and log(n1) both use n1 at position 0: one edge
        ("g:block", "n5", 0),
    ]
    layout = layered_layout(folded)
    check_geometry(folded, layout)
    check_direction(folded, layout)
    assert layout.edges["n0", "n1", 0] != layout.edges["n0", "n1", 1]


def test_big_real_graph_skips_dot_and_still_lays_out(moons):
    graph = visible_input(moons, frozenset())
    layout = compute_layout(graph)
    assert layout.engine == "layered"
    if HAS_DOT:
        assert layout.note == f"layered (dot skipped: {len(graph.nodes)} boxes > 1500)"
    check_geometry(graph, layout)


# --- choosing the engine -----------------------------------------------------------------------
def test_no_dot_on_the_path_means_layered(digits, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    layout = compute_layout(visible_input(digits, frozenset()))
    assert layout.engine == "layered" and layout.note == "layered (dot not found)"


def test_dot_limit(digits):
    graph = visible_input(digits, frozenset())
    layout = compute_layout(graph, dot_limit=10)
    assert layout.engine == "layered"
    if HAS_DOT:
        assert layout.note == f"layered (dot skipped: {len(graph.nodes)} boxes > 10)"


def fake_dot(folder, body: str) -> None:
    script = folder / "dot"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)


def test_dot_that_runs_too_long_is_killed(digits, monkeypatch, tmp_path):
    fake_dot(tmp_path, f"exec {shutil.which('sleep')} 30")
    monkeypatch.setenv("PATH", str(tmp_path))
    layout = compute_layout(visible_input(digits, frozenset()), timeout=0.3)
    assert layout.engine == "layered"
    assert layout.note == "layered (dot timed out after 0.3 s)"
    assert layout.seconds < 10  # dot was killed, not waited for


def test_dot_that_fails_falls_back(digits, monkeypatch, tmp_path):
    fake_dot(tmp_path, "echo 'Error: trouble in init_rank' >&2; exit 1")
    monkeypatch.setenv("PATH", str(tmp_path))
    layout = compute_layout(visible_input(digits, frozenset()))
    assert layout.engine == "layered"
    assert layout.note == "layered (dot failed: Error: trouble in init_rank)"


# --- signature and cache -------------------------------------------------------------------------
def test_signature_follows_structure_and_sizes():
    graph = random_dag(40, group_every=8)
    assert graph.signature() == random_dag(40, group_every=8).signature()
    node = graph.nodes[5]
    changes = [
        LayoutInput(graph.nodes, graph.edges, graph.groups, "TB"),
        LayoutInput(graph.nodes, graph.edges[1:], graph.groups),
        LayoutInput(graph.nodes, (LayoutEdge("n0", "n1", 7), *graph.edges[1:]), graph.groups),
        LayoutInput(
            (
                *graph.nodes[:5],
                LayoutNode(node.key, node.width + 10, node.height, node.group),
                *graph.nodes[6:],
            ),
            graph.edges,
            graph.groups,
        ),
        LayoutInput(graph.nodes, graph.edges, ()),
    ]
    signatures = {graph.signature()} | {changed.signature() for changed in changes}
    assert len(signatures) == len(changes) + 1


def same_places(one, other) -> bool:
    return (one.nodes, one.groups, one.edges, one.width, one.height) == (
        other.nodes,
        other.groups,
        other.edges,
        other.width,
        other.height,
    )


def test_cache_in_memory_and_on_disk(monkeypatch, tmp_path):
    monkeypatch.setenv("TOPOGRAD_CACHE", str(tmp_path))
    clear_memory_cache()
    graph = random_dag(60, group_every=10)
    first = cached_layout(graph, use_dot=False)
    assert not first.cached
    second = cached_layout(graph, use_dot=False)
    assert second.cached and same_places(first, second) and second.note == first.note
    files = list((tmp_path / "layouts").iterdir())
    assert [file.suffix for file in files] == [".json"]
    assert files[0].name.startswith(graph.signature())

    clear_memory_cache()
    from_disk = cached_layout(graph, use_dot=False)
    assert from_disk.cached and same_places(first, from_disk)

    for damage in ["{not json", json.dumps({"nodes": {}}), json.dumps([1, 2])]:
        files[0].write_text(damage)
        clear_memory_cache()
        again = cached_layout(graph, use_dot=False)
        assert not again.cached and same_places(first, again)
        assert set(json.loads(files[0].read_text())["nodes"]) == set(first.nodes)
    assert list((tmp_path / "layouts").iterdir()) == files  # no temporary files left


@needs_dot
def test_cache_keeps_engines_apart(monkeypatch, tmp_path):
    monkeypatch.setenv("TOPOGRAD_CACHE", str(tmp_path))
    clear_memory_cache()
    graph = random_dag(30)
    assert cached_layout(graph, use_dot=False).engine == "layered"
    assert cached_layout(graph).engine == "dot"
    assert cached_layout(graph).cached
    assert len(list((tmp_path / "layouts").iterdir())) == 2


def test_cache_default_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("TOPOGRAD_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert layout_module.cache_folder() == tmp_path / ".cache" / "topograd" / "layouts"
