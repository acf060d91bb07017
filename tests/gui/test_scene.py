"""The graph scene draws each layout box and edge where the layout puts it, restyles one item
per call, summarises collapsed layers, finds nodes, and exports SVG and PNG atomically."""

import os
import statistics
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtTest import QTest
from topograd.gui.items import EDGE_WIDTH, EdgeItem, GroupItem, NodeItem
from topograd.gui.layout import Layout, compute_layout, visible_input
from topograd.gui.model import GraphView, GroupView, NodeView
from topograd.gui.scene import GraphScene
from topograd.gui.view import GraphCanvas

from topograd import dsl

ROOT = Path(__file__).resolve().parents[2]
BN = "g:digits_mlp.1"  # the first batch norm layer: 2 parameters, 1 constant, 9 ops
COLUMN, ROW, ROWS = 280.0, 90.0, 6


@pytest.fixture(scope="module")
def digits() -> GraphView:
    spec, _ = dsl.commands.common.load_spec(ROOT / "samples" / "digits.tg")
    return GraphView.from_graph(dsl.inspect.subject(spec).graph())


def grid_layout(graph: GraphView, collapsed=frozenset()) -> Layout:
    """A layout made here, independent of the layout engines: boxes on a grid, each layer in
    columns of its own, edges from the source's right side to the target's left side with a
    bend in the middle, each expanded layer framed around its members."""
    wanted = visible_input(graph, frozenset(collapsed))
    runs = {}
    for node in wanted.nodes:
        runs.setdefault(node.group or node.key, []).append(node)
    nodes, first_column = {}, 0
    for run in runs.values():
        for index, node in enumerate(run):
            column, row = divmod(index, ROWS)
            x, y = (first_column + column) * COLUMN + 30, row * ROW + 30
            nodes[node.key] = (x, y, node.width, node.height)
        first_column += (len(run) + ROWS - 1) // ROWS
    edges = {}
    for edge in wanted.edges:
        sx, sy, sw, sh = nodes[edge.source]
        tx, ty, _, th = nodes[edge.target]
        start, end = (sx + sw, sy + sh / 2), (tx, ty + th / 2)
        middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 3 * edge.position)
        edges[(edge.source, edge.target, edge.position)] = (start, middle, end)
    groups = {}
    for group in wanted.groups:
        boxes = [nodes[node.key] for node in wanted.nodes if node.group == group.key]
        left, top = min(b[0] for b in boxes) - 10, min(b[1] for b in boxes) - 18
        right, bottom = max(b[0] + b[2] for b in boxes) + 10, max(b[1] + b[3] for b in boxes) + 10
        groups[group.key] = (left, top, right - left, bottom - top)
    width = max(x + w for x, _, w, _ in nodes.values()) + 30
    height = max(y + h for _, y, _, h in nodes.values()) + 30
    return Layout("grid", "test grid", nodes, groups, edges, width, height, 0.0)


def shown(graph, collapsed=frozenset()):
    scene = GraphScene()
    layout = grid_layout(graph, collapsed)
    scene.show(graph, layout, frozenset(collapsed))
    return scene, layout


def members(graph, group_key):
    return graph.group(group_key).members


# --- drawing the layout ----------------------------------------------------------------------
def test_one_node_item_per_visible_node_at_its_layout_box(qtbot, digits):
    scene, layout = shown(digits)
    items = [item for item in scene.items() if isinstance(item, NodeItem)]
    assert sorted(item.key for item in items) == sorted(layout.nodes)
    for item in items:
        assert item.box() == QRectF(*layout.nodes[item.key])
        assert item.view is digits.node(item.key)
    frames = [item for item in scene.items() if isinstance(item, GroupItem)]
    assert {frame.key: frame.box() for frame in frames} == {
        key: QRectF(*box) for key, box in layout.groups.items()
    }
    assert all(not frame.collapsed and frame.zValue() < items[0].zValue() for frame in frames)


def test_each_layout_edge_follows_its_points_and_shows_the_source_shape(qtbot, digits):
    scene, layout = shown(digits)
    edges = [item for item in scene.items() if isinstance(item, EdgeItem)]
    assert sorted(edge.key for edge in edges) == sorted(layout.edges)
    for edge in edges:
        path, points = edge.path(), layout.edges[edge.key]
        assert [(path.elementAt(i).x, path.elementAt(i).y) for i in range(path.elementCount())] == [
            pytest.approx(point) for point in points
        ]
        assert edge.label == digits.node(edge.key[0]).shape_text
    assert scene.edge_item("n10", "n11", 0).label == "4x64"  # x feeds the first matmul


def test_x_times_x_draws_two_edges(qtbot):
    def node(index, op, inputs, role="op"):
        return NodeView(f"n{index}", index, index, op, None, (3,), None, None, inputs, role, "", "")

    graph = GraphView((node(0, "input", (), "input"), node(1, "mul", ("n0", "n0"))), ())
    scene, _ = shown(graph)
    assert scene.edge_item("n0", "n1", 0) is not scene.edge_item("n0", "n1", 1)
    assert {e.key for e in scene.edge_items().values()} == {("n0", "n1", 0), ("n0", "n1", 1)}


# --- styles ---------------------------------------------------------------------------------
def test_state_colours_a_node_by_phase(qtbot, digits):
    scene, _ = shown(digits)
    item = scene.item_for("n11")
    fills = {}
    for state in ("pending", "forward", "backward"):
        scene.set_state("n11", state)
        assert item.state == scene.state_of("n11") == state
        fills[state] = item.fill_color().name()
    assert len(set(fills.values())) == 3
    assert scene.item_for("n12").state == "pending"
    with pytest.raises(ValueError, match="sideways"):
        scene.set_state("n11", "sideways")
    with pytest.raises(KeyError):
        scene.set_state("n999", "forward")


def test_pending_boxes_are_filled_by_role(qtbot, digits):
    scene, _ = shown(digits)
    by_role = {}
    for node in digits.nodes:
        by_role.setdefault(node.role, set()).add(scene.item_for(node.key).fill_color().name())
    assert all(len(colours) == 1 for colours in by_role.values())
    assert len({colours.pop() for colours in by_role.values()}) == len(by_role) == 4


def test_only_one_item_is_current_and_it_follows_set_current(qtbot, digits):
    scene, _ = shown(digits)
    plain_width = scene.item_for("n11").border_width()
    for key in ("n11", "n12", "n40"):
        scene.set_current(key)
        current = [item for item in scene.items() if getattr(item, "is_current", False)]
        assert [item.key for item in current] == [key]
        assert current[0].border_width() > plain_width
    scene.set_current(None)
    assert not any(getattr(item, "is_current", False) for item in scene.items())
    assert scene.item_for("n40").border_width() == plain_width


def test_breakpoint_and_value_text(qtbot, digits):
    scene, _ = shown(digits)
    item = scene.item_for("n46")
    scene.set_breakpoint("n46", True)
    scene.set_value_text("n46", "2.3026")
    assert item.has_breakpoint and item.value_text == "2.3026"
    assert ("2.3026", "detail") in item.text_lines()
    scene.set_breakpoint("n46", False)
    scene.set_value_text("n46", None)
    assert not item.has_breakpoint and item.value_text is None
    assert len(item.text_lines()) == 2


def test_restyling_repaints_only_that_item(qtbot, digits):
    scene, _ = shown(digits)
    qtbot.wait(1)  # let the scene report its first build
    item = scene.item_for("n20")
    with qtbot.waitSignal(scene.changed) as changed:
        scene.set_state("n20", "forward")
    (region,) = changed.args
    assert region and all(item.sceneBoundingRect().contains(rect) for rect in region)


def test_edge_width_grows_with_gradient_magnitude(qtbot, digits):
    scene, _ = shown(digits)
    edge = scene.edge_item("n45", "n46", 0)
    assert edge.pen_width() == EDGE_WIDTH and edge.gradient is None
    widths, reds = [], []
    for magnitude in (0.0, 0.25, 0.5, 0.75, 1.0):
        scene.set_edge_gradient("n45", "n46", 0, magnitude)
        widths.append(edge.pen_width())
        reds.append(edge.pen_color().red() - edge.pen_color().blue())
    assert widths == sorted(widths) and len(set(widths)) == 5
    assert widths[0] == pytest.approx(1.0) and widths[-1] == pytest.approx(6.0)
    assert reds == sorted(reds) and reds[0] < reds[-1]
    scene.set_edge_gradient("n45", "n46", 0, None)
    assert edge.pen_width() == EDGE_WIDTH and edge.pen_color() == QColor("#8d8d8d")
    with pytest.raises(ValueError):
        scene.set_edge_gradient("n45", "n46", 0, 1.5)
    with pytest.raises(KeyError):
        scene.set_edge_gradient("n46", "n45", 0, 0.5)


def test_reset_clears_the_stepping_styles_but_keeps_breakpoints(qtbot, digits):
    scene, _ = shown(digits)
    scene.set_state("n11", "backward")
    scene.set_current("n11")
    scene.set_value_text("n46", "1.0")
    scene.set_breakpoint("n12", True)
    scene.set_edge_gradient("n10", "n11", 0, 0.5)
    scene.reset_styles()
    assert scene.item_for("n11").state == "pending" and not scene.item_for("n11").is_current
    assert scene.item_for("n46").value_text is None
    assert scene.edge_item("n10", "n11", 0).gradient is None
    assert scene.item_for("n12").has_breakpoint


# --- collapsed layers -----------------------------------------------------------------------
def test_a_collapsed_layer_is_one_box_and_its_members_have_no_items(qtbot, digits):
    scene, layout = shown(digits, {BN})
    box = scene.item_for(BN)
    assert isinstance(box, GroupItem) and box.collapsed and box.box() == QRectF(*layout.nodes[BN])
    assert ("1 (BatchNorm1d)", "title") in box.text_lines()  # the network's name left out
    assert ("12 ops", "detail") in box.text_lines()
    for member in members(digits, BN):
        assert scene.item_for(member) is None and scene.item_showing(member) is box
    keys = {item.key for item in scene.items() if isinstance(item, NodeItem)}
    assert keys.isdisjoint(members(digits, BN))
    # the edge out of the layer carries the shape of the member feeding relu (n22, 4x256)
    assert scene.edge_item("n22", "n23", 0).key == (BN, "n23", 0)
    assert scene.edge_item("n22", "n23", 0).label == digits.node("n22").shape_text
    assert scene.edge_item("n14", "n20", 0) is None  # inside the layer: not drawn


def test_a_collapsed_layer_sums_up_its_members_states(qtbot, digits):
    scene, _ = shown(digits, {BN})
    box, keys = scene.item_for(BN), members(digits, BN)
    assert box.state == "pending"
    for key in keys[:5]:
        scene.set_state(key, "forward")
    assert box.state == scene.state_of(BN) == "partial"
    for key in keys:
        scene.set_state(key, "forward")
    assert box.state == "forward"
    takes_gradient = [k for k in keys if digits.node(k).role in ("op", "parameter")]
    assert len(takes_gradient) == 11  # the eps constant never gets a gradient
    scene.set_state(takes_gradient[0], "backward")
    assert box.state == "partial"
    for key in takes_gradient:
        scene.set_state(key, "backward")
    assert box.state == "backward"
    fills = {box.fill_color().name()}
    scene.set_state(keys[0], "pending")
    fills.add(box.fill_color().name())
    assert len(fills) == 2


def test_current_breakpoint_and_gradient_of_a_hidden_member_show_on_its_layer(qtbot, digits):
    scene, _ = shown(digits, {BN})
    box = scene.item_for(BN)
    scene.set_current("n15")
    assert box.is_current and scene.current == "n15"
    scene.set_current("n23")
    assert not box.is_current and scene.item_for("n23").is_current
    scene.set_breakpoint("n15", True)
    assert box.has_breakpoint
    scene.set_breakpoint("n15", False)
    assert not box.has_breakpoint
    # two graph edges (n12 -> n13 and n12 -> n14) enter the layer from n12
    scene.set_edge_gradient("n12", "n13", 0, 0.2)
    scene.set_edge_gradient("n12", "n14", 0, 0.7)
    drawn = scene.edge_item("n12", "n13", 0)
    assert drawn is scene.edge_item("n12", "n14", 0)
    assert drawn.gradient == pytest.approx(0.7)


def test_styles_survive_collapsing_and_expanding(qtbot, digits):
    scene, _ = shown(digits)
    for key in members(digits, BN):
        scene.set_state(key, "forward")
    scene.set_current("n15")
    scene.set_breakpoint("n16", True)
    scene.show(digits, grid_layout(digits, {BN}), frozenset({BN}))
    box = scene.item_for(BN)
    assert box.state == "forward" and box.is_current and box.has_breakpoint
    scene.show(digits, grid_layout(digits), frozenset())
    assert scene.item_for("n15").state == "forward" and scene.item_for("n15").is_current
    assert scene.item_for("n16").has_breakpoint


# --- mouse -----------------------------------------------------------------------------------
def canvas_for(qtbot, scene, width=900, height=700):
    canvas = GraphCanvas(scene)
    qtbot.addWidget(canvas)
    canvas.resize(width, height)
    canvas.show()
    qtbot.waitExposed(canvas)
    return canvas


def double_click(canvas, scene_point: QPointF) -> None:
    canvas.centerOn(scene_point)
    QTest.mouseDClick(
        canvas.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
        canvas.mapFromScene(scene_point),
    )


def test_double_clicking_a_collapsed_layer_asks_to_toggle_it(qtbot, digits):
    scene, _ = shown(digits, {BN})
    canvas = canvas_for(qtbot, scene)
    with qtbot.waitSignal(scene.groupToggled) as toggled:
        double_click(canvas, scene.item_for(BN).box().center())
    assert toggled.args == [BN]


def test_double_clicking_a_layer_frame_asks_to_toggle_it(qtbot, digits):
    scene, layout = shown(digits)
    canvas = canvas_for(qtbot, scene)

    def inside_only(key):
        x, y, _, _ = layout.groups[key]
        corner = QPointF(x + 4, y + 4)
        others = [QRectF(*box) for k, box in {**layout.groups, **layout.nodes}.items() if k != key]
        return None if any(rect.contains(corner) for rect in others) else corner

    key, corner = next((k, p) for k in layout.groups if (p := inside_only(k)) is not None)
    with qtbot.waitSignal(scene.groupToggled) as toggled:
        double_click(canvas, corner)
    assert toggled.args == [key]


def test_double_clicking_a_node_does_not_toggle_its_layer(qtbot, digits):
    scene, _ = shown(digits)
    canvas = canvas_for(qtbot, scene)
    with qtbot.assertNotEmitted(scene.groupToggled):
        double_click(canvas, scene.item_for("n15").box().center())


def test_clicking_a_node_selects_it(qtbot, digits):
    scene, _ = shown(digits)
    canvas = canvas_for(qtbot, scene)
    point = scene.item_for("n23").box().center()
    canvas.centerOn(point)
    with qtbot.waitSignal(scene.nodeSelected) as selected:
        QTest.mouseClick(
            canvas.viewport(), Qt.MouseButton.LeftButton, pos=canvas.mapFromScene(point)
        )
    assert selected.args == ["n23"] and scene.item_for("n23").isSelected()


def test_the_context_menu_toggles_a_breakpoint_or_the_layer(qtbot, digits):
    scene, _ = shown(digits, {BN})
    menu = scene.menu_for("n23")
    actions = {action.text(): action for action in menu.actions()}
    with qtbot.waitSignal(scene.breakpointToggled) as toggled:
        actions["Toggle breakpoint"].trigger()
    assert toggled.args == ["n23"]
    with qtbot.waitSignal(scene.groupToggled) as toggled:
        actions["Collapse layer digits_mlp.2"].trigger()
    assert toggled.args == ["g:digits_mlp.2"]
    layer_menu = scene.menu_for(BN)
    (expand,) = layer_menu.actions()
    with qtbot.waitSignal(scene.groupToggled) as toggled:
        expand.trigger()
    assert expand.text() == "Expand layer" and toggled.args == [BN]


# --- search and centring --------------------------------------------------------------------
def test_find_matches_name_op_and_layer_ignoring_case(qtbot, digits):
    scene, _ = shown(digits)
    batchnorm = [n.key for n in digits.nodes if n.layer_kind == "BatchNorm1d"]
    assert scene.find("batchnorm") == batchnorm and len(batchnorm) == 24
    assert scene.find("WEIGHT") == ["n0", "n2", "n4", "n6", "n8"]
    assert scene.find("log_softmax") == ["n43"]
    assert scene.find("digits_mlp.out") == list(members(digits, "g:digits_mlp.out"))
    assert scene.find("  ") == [] and scene.find("no such thing") == []


def test_center_on_puts_the_node_in_the_middle_of_the_view(qtbot, digits):
    scene, _ = shown(digits)
    canvas = canvas_for(qtbot, scene, 400, 300)
    room = scene.sceneRect().adjusted(200, 150, -200, -150)  # where a centre can be reached
    keys = [k for k, item in scene.node_items().items() if room.contains(item.box().center())]
    assert len(keys) > 10
    for key in keys[::5]:
        assert canvas.center_on(key)
        middle = canvas.mapFromScene(scene.item_for(key).box().center())
        centre = canvas.viewport().rect().center()
        assert abs(middle.x() - centre.x()) <= 2 and abs(middle.y() - centre.y()) <= 2
        assert scene.selectedItems() == [scene.item_for(key)]
    assert not canvas.center_on("n999")


def test_center_on_a_hidden_node_centres_its_layer(qtbot, digits):
    scene, _ = shown(digits, {BN})
    canvas = canvas_for(qtbot, scene, 300, 200)
    assert canvas.center_on("n15")
    middle = canvas.mapFromScene(scene.item_for(BN).box().center())
    assert (middle - canvas.viewport().rect().center()).manhattanLength() <= 3


# --- export ---------------------------------------------------------------------------------
def test_svg_export_holds_every_node_title_as_text(qtbot, digits, tmp_path):
    scene, _ = shown(digits)
    out = tmp_path / "graph.svg"
    scene.export_svg(out)
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    texts = {element.text for element in root.iter() if element.tag.endswith("text")}
    assert {node.title for node in digits.nodes} <= texts
    assert "4x64" in texts  # the edge label of x
    assert [p.name for p in tmp_path.iterdir()] == ["graph.svg"]


def test_png_export_is_an_image_of_the_graph(qtbot, digits, tmp_path):
    scene, _ = shown(digits)
    scene.set_state("n11", "forward")
    out = tmp_path / "graph.png"
    scene.export_png(out)
    image = QImage(str(out))
    rect = scene.itemsBoundingRect()
    assert not image.isNull() and 0 < max(image.width(), image.height()) <= 4000
    assert image.width() / image.height() == pytest.approx(
        (rect.width() + 40) / (rect.height() + 40), rel=0.01
    )
    assert image.pixelColor(0, 0) == QColor("white")
    box, scale = scene.item_for("n11").box(), image.width() / (rect.width() + 40)
    inside = (QPointF(box.right() - 10, box.top() + 4) - rect.topLeft() + QPointF(20, 20)) * scale
    assert image.pixelColor(inside.toPoint()) == QColor("#cfe3fa")  # forward's light blue


@pytest.mark.parametrize("export", ["export_svg", "export_png"])
def test_a_failed_export_leaves_no_partial_or_temporary_file(
    qtbot, digits, tmp_path, export, monkeypatch
):
    scene, _ = shown(digits)
    out = tmp_path / "graph.out"
    out.write_text("the earlier picture")

    def refuse(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(Exception, match="No space left"):
        getattr(scene, export)(out)
    assert [p.name for p in tmp_path.iterdir()] == ["graph.out"]
    assert out.read_text() == "the earlier picture"


# --- size ----------------------------------------------------------------------------------
def synthetic(count: int) -> GraphView:
    """A graph of `count` nodes, each fed by the one before and one further back, in layers
    of ten."""
    nodes, groups = [], []
    for index in range(count):
        inputs = () if index == 0 else (f"n{index - 1}", f"n{index // 2}")
        layer = f"block{index // 10}"
        nodes.append(
            NodeView(
                f"n{index}",
                index,
                index,
                "add" if index else "input",
                None,
                (4, 8),
                layer,
                "Block",
                inputs,
                "op" if index else "input",
                "",
                "",
            )
        )
    for start in range(0, count, 10):
        keys = tuple(f"n{i}" for i in range(start, min(start + 10, count)))
        groups.append(GroupView(f"g:block{start // 10}", f"block{start // 10}", "Block", keys))
    return GraphView(tuple(nodes), tuple(groups))


def test_restyling_one_node_of_a_5000_node_scene_takes_well_under_a_millisecond(qtbot):
    graph = synthetic(5000)
    scene, _ = shown(graph)
    canvas_for(qtbot, scene, 600, 400)
    times = []
    for index in range(0, 5000, 25):
        start = time.perf_counter()
        scene.set_state(f"n{index}", "forward")
        scene.set_current(f"n{index}")
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 1e-3
    assert scene.item_for("n4975").is_current and not scene.item_for("n4950").is_current


@pytest.mark.parametrize("collapsed", [frozenset(), frozenset({BN, "g:digits_mlp.out"})])
def test_every_graph_edge_is_drawn_on_the_fallback_layout(qtbot, digits, collapsed):
    layout = compute_layout(visible_input(digits, collapsed), use_dot=False)
    scene = GraphScene()
    scene.show(digits, layout, collapsed)
    hidden = {m: g for g in collapsed for m in members(digits, g)}
    drawn = set()
    for node in digits.nodes:
        for position, source in enumerate(node.inputs):
            ends = (hidden.get(source, source), hidden.get(node.key, node.key))
            item = scene.edge_item(source, node.key, position)
            if ends[0] == ends[1]:
                assert item is None
                continue
            assert item.key[:2] == ends
            drawn.add(item.key)
    assert drawn == set(layout.edges)
    assert set(layout.nodes) == set(scene.node_items()) | {
        k for k, item in scene.group_items().items() if item.collapsed
    }
