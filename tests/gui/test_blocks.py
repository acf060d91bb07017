"""Branching networks in the window: a residual or concatenating block is a group around the
groups of its layers and its join, collapses into one box that the skip edge reaches, is laid
out with its skip edge around its layers (by dot and by the layered fallback), steps both ways
while collapsed, and `topograd graph` draws blocks as clusters with their skip edges."""

from __future__ import annotations

import re
import shutil
from itertools import pairwise

import pytest
from test_layout import inside, segment_crosses
from topograd.dsl import inspect
from topograd.dsl.cli import main
from topograd.dsl.commands.common import load_spec
from topograd.gui.items import Z_EDGE, GroupItem, NodeItem
from topograd.gui.layout import compute_layout, visible_input
from topograd.gui.model import GraphView
from topograd.gui.scene import GraphScene
from topograd.gui.svg import graph_svg
from topograd.gui.theme import theme

HAS_DOT = shutil.which("dot") is not None
ENGINES = [False, pytest.param(True, marks=pytest.mark.skipif(not HAS_DOT, reason="no dot"))]

BLOCKS = """\
data {
  dataset digits
  val 0.15
  test 0.15
}

network blocks {
  linear(8)
  tanh
  residual {
    linear(8)
    tanh
    linear(8)
  }
  residual {
    linear(6)
  } shortcut {
    linear(6)
  }
  mid = concat {
    linear(4)
    tanh
  }
  add(mid)
  linear
}

train {
  loss cross_entropy
  optimizer sgd(lr=0.1)
  epochs 1
  batch 16
}
"""
RESIDUAL = "g:blocks.2"  # body(x) + x, with linear, tanh, linear in its body
BODY = ("g:blocks.2.body.0", "g:blocks.2.body.1", "g:blocks.2.body.2")
PROJECTION = "g:blocks.3"  # body(x) + shortcut(x)
CONCAT = "g:blocks.mid"
MERGE = "g:blocks.5"


@pytest.fixture(scope="module")
def blocks_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("blocks") / "blocks.tg"
    path.write_text(BLOCKS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def view(blocks_file) -> GraphView:
    spec, _ = load_spec(blocks_file)
    return GraphView.from_graph(inspect.subject(spec).graph())


def own(view: GraphView, group: str) -> list[str]:
    """The nodes a group made itself, not its layers."""
    return [key for key in view.group(group).members if view.group_of(key) == group]


def skip_edge(view: GraphView) -> tuple[str, str, int]:
    """The residual's identity: x into its join `body(x) + x`, as input 1."""
    (join,) = own(view, RESIDUAL)
    return view.node(join).inputs[1], join, 1


def crosses(a, b, box) -> bool:
    """Whether segment a-b passes through the box, 2 px inside its border."""
    return segment_crosses(a, b, box, margin=2.0)


# --- the plain data ------------------------------------------------------------------------------
def test_a_residual_block_is_a_group_around_its_layers_and_its_join(view):
    block = view.group(RESIDUAL)
    assert (block.kind, block.title, block.parent) == ("Residual", "2 (Residual)", None)
    assert block.long_title == "blocks.2 (Residual)" and block.detail == "3 layers, 10 ops"
    assert block.children == BODY
    layers = [view.group(key) for key in BODY]
    assert [g.title for g in layers] == ["body.0 (Linear)", "body.1 (Tanh)", "body.2 (Linear)"]
    assert all(g.parent == RESIDUAL and not g.children for g in layers)
    assert [view.node(key).op for key in own(view, RESIDUAL)] == ["add"]
    assert set(block.members) == set(own(view, RESIDUAL)).union(*(g.members for g in layers))
    assert list(block.members) == sorted(block.members, key=lambda key: view.node(key).index)
    matmul = next(key for key in layers[0].members if view.node(key).op == "matmul")
    assert view.group_of(matmul) == BODY[0] and view.enclosing(matmul) == [BODY[0], RESIDUAL]
    assert view.shown_as(matmul, {BODY[0]}) == BODY[0]
    assert view.shown_as(matmul, {BODY[0], RESIDUAL}) == RESIDUAL  # the outermost box shows it
    assert view.shown_as(BODY[0], {RESIDUAL}) == RESIDUAL
    # a projection shortcut is a layer of the block beside the body's; a concat block's join
    projection = view.group(PROJECTION)
    assert [view.group(key).name for key in projection.children] == ["body.0", "shortcut.0"]
    assert view.group(CONCAT).title == "mid (Concat)"
    assert [view.node(key).op for key in own(view, CONCAT)] == ["concat"]
    order = [group.key for group in view.groups]
    assert all(order.index(g.parent) < order.index(g.key) for g in view.groups if g.parent)


def test_skip_edges_are_the_ones_that_pass_the_layers_of_a_block(view):
    source, join, _ = skip_edge(view)
    assert view.is_skip(source, join, 1)
    assert not view.is_skip(view.node(join).inputs[0], join, 0)  # the body's output
    (concat,) = own(view, CONCAT)
    kept, computed = view.node(concat).inputs
    assert view.is_skip(kept, concat, 0) and not view.is_skip(computed, concat, 1)
    (projection_join,) = own(view, PROJECTION)
    assert not any(
        view.is_skip(key, projection_join, n)
        for n, key in enumerate(view.node(projection_join).inputs)
    )  # both of its inputs come from its own layers
    (merge,) = view.group(MERGE).members
    first, earlier = view.node(merge).inputs
    assert view.is_skip(earlier, merge, 1) and not view.is_skip(first, merge, 0)


# --- the layout ----------------------------------------------------------------------------------
def test_collapsing_a_block_makes_one_box_that_its_edges_reach(view):
    collapsed = frozenset({RESIDUAL, BODY[0]})  # an inner layer collapsed too: hidden with it
    wanted = visible_input(view, collapsed)
    keys = {node.key for node in wanted.nodes}
    assert RESIDUAL in keys and not keys & {*BODY, *view.group(RESIDUAL).members}
    assert not {g.key for g in wanted.groups} & {RESIDUAL, *BODY}
    source, _, _ = skip_edge(view)
    into = sorted((e.position, e.source) for e in wanted.edges if e.target == RESIDUAL)
    assert into == [(0, source), (1, source)]  # into the body and past it
    expanded = visible_input(view, frozenset({BODY[1]}))
    parents = {group.key: group.parent for group in expanded.groups}
    assert parents[BODY[0]] == RESIDUAL and BODY[1] not in parents
    boxes = {node.key: node.group for node in expanded.nodes}
    assert boxes[BODY[1]] == RESIDUAL and boxes[own(view, RESIDUAL)[0]] == RESIDUAL


@pytest.mark.parametrize("use_dot", ENGINES)
def test_frames_nest_and_the_skip_edge_runs_around_the_layers(view, use_dot):
    wanted = visible_input(view, frozenset())
    layout = compute_layout(wanted, use_dot=use_dot)
    assert layout.engine == ("dot" if use_dot else "layered")
    for group in wanted.groups:
        if group.parent is not None:
            assert inside(layout.groups[group.key], layout.groups[group.parent], 1.0), group.key
    for node in wanted.nodes:
        if node.group is not None:
            assert inside(layout.nodes[node.key], layout.groups[node.group], 1.0), node.key
    points = layout.edges[skip_edge(view)]
    for key in BODY:
        for a, b in pairwise(points):
            assert not crosses(a, b, layout.groups[key]), key
    order = list(layout.groups)
    assert order.index(RESIDUAL) < order.index(BODY[0])  # painted behind its layers' frames


@pytest.mark.parametrize("use_dot", ENGINES)
def test_a_collapsed_block_in_an_expanded_one_gets_the_edges(view, use_dot):
    collapsed = frozenset(BODY)  # the layers as boxes in the block's frame
    layout = compute_layout(visible_input(view, collapsed), use_dot=use_dot)
    for key in BODY:
        assert inside(layout.nodes[key], layout.groups[RESIDUAL], 1.0)
    points = layout.edges[skip_edge(view)]
    for key in BODY:
        assert not any(crosses(a, b, layout.nodes[key]) for a, b in pairwise(points)), key


# --- the scene -----------------------------------------------------------------------------------
def test_a_collapsed_block_hides_its_layers_and_the_skip_edge_ends_at_its_box(qtbot, view):
    scene = GraphScene()
    collapsed = frozenset({RESIDUAL})
    layout = compute_layout(visible_input(view, collapsed), use_dot=False)
    scene.show(view, layout, collapsed)
    box = scene.item_for(RESIDUAL)
    assert isinstance(box, GroupItem) and box.collapsed
    assert box.text_lines() == [("2 (Residual)", "title"), ("3 layers, 10 ops", "detail")]
    assert all(scene.item_for(key) is None for key in BODY)
    for member in view.group(RESIDUAL).members:
        assert scene.item_for(member) is None and scene.item_showing(member) is box
    skip = scene.edge_item(*skip_edge(view))
    assert skip is not None and skip.skip and skip.pen_color() == theme().skip
    path = skip.path()
    end = path.elementAt(path.elementCount() - 1)
    rect = box.box()
    assert abs(end.x - rect.left()) < 1.0 and rect.top() <= end.y <= rect.bottom()
    (join,) = own(view, RESIDUAL)
    body_out = view.node(join).inputs[0]
    assert scene.edge_item(body_out, join, 0) is None  # inside the box


def test_an_expanded_block_frames_its_layers_frames_and_keeps_styles(qtbot, view):
    scene = GraphScene()
    (join,) = own(view, RESIDUAL)
    layout = compute_layout(visible_input(view, frozenset({RESIDUAL})), use_dot=False)
    scene.show(view, layout, frozenset({RESIDUAL}))
    scene.set_state(join, "forward")
    assert scene.item_for(RESIDUAL).state == "partial"
    assert scene.state_of(RESIDUAL) == "partial" and scene.state_of(BODY[0]) == "pending"
    layout = compute_layout(visible_input(view, frozenset()), use_dot=False)
    scene.show(view, layout, frozenset())
    frame, inner = scene.item_for(RESIDUAL), scene.item_for(BODY[0])
    assert not frame.collapsed and not inner.collapsed
    assert frame.zValue() < inner.zValue() < Z_EDGE
    assert frame.box().contains(inner.box())
    assert isinstance(scene.item_for(join), NodeItem) and scene.item_for(join).state == "forward"
    assert scene.edge_item(*skip_edge(view)).skip
    assert not scene.edge_item(view.node(join).inputs[0], join, 0).skip
    matmul = next(key for key in view.group(BODY[0]).members if view.node(key).op == "matmul")
    menu = scene.menu_for(matmul)
    texts = [action.text() for action in menu.actions()]
    assert texts[1:] == ["Collapse layer blocks.2.body.0", "Collapse layer blocks.2"]


def test_the_svg_draws_the_outermost_collapsed_box_and_nested_frames(blocks_file):
    spec, _ = load_spec(blocks_file)
    graph = inspect.subject(spec).graph()
    folded = graph_svg(graph, collapsed=True, use_dot=False)
    layers = set(re.findall(r'id="layer-([\w.]+)"', folded))
    assert "blocks.2" in layers and not layers & {"blocks.2.body.0", "blocks.2.body.1"}
    expanded = graph_svg(graph, collapsed=["blocks.2.body.1"], use_dot=False)
    frames = re.findall(r'id="frame-([\w.]+)"', expanded)
    assert frames.index("blocks.2") < frames.index("blocks.2.body.0")
    assert "layer-blocks.2.body.1" in expanded


# --- the window ----------------------------------------------------------------------------------
def test_stepping_both_ways_through_a_collapsed_block(window, blocks_file):
    assert window.open_file(blocks_file)
    view = window.session.view
    window.expand_all()
    window.toggle_group(RESIDUAL)
    box = window.scene.item_for(RESIDUAL)
    members = set(view.group(RESIDUAL).members)
    states = []
    while window.actions.step_forward.isEnabled():
        window.actions.step_forward.trigger()
        key = window.selected
        shown = window.scene.item_showing(key)
        assert shown is (box if key in members else window.scene.item_for(key))
        assert shown.is_current and window.inspector.showing_node
        if key in members:
            states.append(box.state)
    assert states[0] == "partial" and states[-1] == "forward"
    window.scene.nodeSelected.emit(RESIDUAL)
    assert window.inspector.showing_group
    assert window.inspector.text_of("group") == "blocks.2 (Residual)"
    assert window.inspector.text_of("output") == "add"
    assert "not computed" not in window.inspector.text_of("value")
    backward = window.inspector.text_of("backward").splitlines()
    assert backward[0].startswith("add: ")  # the join, then each layer once, the last first
    assert backward[1:] == [
        "body.2 (Linear): its 2 ops",
        "body.1 (Tanh): its 1 op",
        "body.0 (Linear): its 2 ops",
    ]
    while window.actions.step_backward.isEnabled():
        window.actions.step_backward.trigger()
        key = window.selected
        if key in members:
            assert window.scene.item_showing(key) is box and box.is_current
    assert box.state == "backward" and window.controller.stepper.finished
    assert window.scene.edge_item(*skip_edge(view)).gradient is not None
    window.actions.step_back.trigger()  # undo a step with the block still collapsed
    window.toggle_group(RESIDUAL)  # and open it: its layers keep what was done
    assert not window.scene.item_for(RESIDUAL).collapsed
    join = own(view, RESIDUAL)[0]
    assert window.scene.item_for(join).state == "backward"


def test_collapse_all_shows_the_outermost_groups_and_blocks_open_onto_their_layers(
    window, blocks_file
):
    assert window.open_file(blocks_file)
    view = window.session.view
    window.collapse_all()
    groups = window.scene.group_items()
    top = {group.key for group in view.groups if group.parent is None}
    assert set(groups) == top and all(item.collapsed for item in groups.values())
    window.toggle_group(RESIDUAL)  # the block opens onto its layers, each one box
    groups = window.scene.group_items()
    assert not groups[RESIDUAL].collapsed
    assert all(groups[key].collapsed for key in BODY)
    window.toggle_group(BODY[0])  # and a layer onto its ops
    assert not window.scene.group_items()[BODY[0]].collapsed
    assert all(window.scene.item_for(m) is not None for m in view.group(BODY[0]).members)
    window.expand_all()
    assert not window.collapsed


# --- topograd graph ------------------------------------------------------------------------------
def test_graph_draws_blocks_as_clusters_with_their_skip_edges(blocks_file, tmp_path, capsys):
    out = tmp_path / "blocks.dot"
    assert main(["graph", str(blocks_file), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    lines = out.read_text(encoding="utf-8").splitlines()

    def depth(label: str) -> int:
        line = next(n for n, text in enumerate(lines) if f'label="{label}";' in text)
        return len(lines[line]) - len(lines[line].lstrip())

    assert depth("blocks.2.body.0 (Linear)") > depth("blocks.2 (Residual)")
    assert depth("blocks.3.shortcut.0 (Linear)") > depth("blocks.3 (Residual)")
    assert depth("blocks.mid.body.1 (Tanh)") > depth("blocks.mid (Concat)")
    skips = [line for line in lines if "->" in line and "#1e88e5" in line]
    assert len(skips) == 3  # the residual's x, the concat's kept input, add(mid)'s mid


def test_graph_collapse_keeps_blocks_as_clusters_around_layer_boxes(blocks_file, tmp_path):
    out = tmp_path / "blocks.dot"
    assert main(["graph", str(blocks_file), "-o", str(out), "--collapse"]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.count("subgraph cluster_") == 3  # the two residual blocks and the concat
    assert 'label="blocks.2.body.0 (Linear)\\n4 nodes"' in text
    assert "matmul" not in text and "parameter" not in text
    skips = [line for line in text.splitlines() if "->" in line and "#1e88e5" in line]
    assert len(skips) == 3
    join = re.search(r'(n\d+) \[label="add\\n4x8"', text)[1]  # the residual's join, a node
    assert any(line.split(" -> ")[1].startswith(join) for line in skips)
