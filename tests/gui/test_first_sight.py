"""Point 1 of issue 17: a network opens legible at 1366x768, as a person sees it. Layers are
boxes named by label, kind and sizes, drawn top to bottom and fitted to the view; expanding a
layer shows its ops; a graph file opens expanded; stepping keeps the current box in view;
Find zooms to a legible scale; a scalar network groups each neuron with its weights."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QRectF
from topograd.gui.items import GroupItem, NodeItem
from topograd.gui.view import LEGIBLE_ZOOM
from topograd.gui.window import COMFORT

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
LEGIBLE_AT_FIT = 0.75  # box titles of 8.5 pt are about 8.5 px high on screen at this zoom


def shown(window, name: str, size=(1366, 768)):
    window.resize(*size)
    window.show()
    assert window.open_file(SAMPLES / name)
    window.show_start()
    return window


def visible_area(window) -> QRectF:
    return window.canvas.mapToScene(window.canvas.viewport().rect()).boundingRect()


def test_digits_opens_whole_legible_and_top_to_bottom(window, qtbot):
    shown(window, "digits.tg")
    qtbot.waitExposed(window)
    window.show_start()
    groups = window.scene.group_items()
    titles = [item.view.title for item in groups.values()]
    for expected in ("Linear 64→256", "BatchNorm1d 256", "ReLU", "Dropout p=0.2"):
        assert expected in titles
    assert "out Linear 256→10" in titles  # a labelled layer: label, kind, sizes
    assert "loss cross_entropy" in titles  # the loss is one box too
    assert all(item.collapsed for item in groups.values())
    assert all(item.view.role == "input" for item in window.scene.node_items().values())
    area = visible_area(window)
    for item in (*groups.values(), *window.scene.node_items().values()):
        assert area.contains(item.box()), item.key  # the whole structure in view
    assert window.canvas.zoom_level() >= LEGIBLE_AT_FIT
    view = window.session.view
    in_order = sorted(groups.values(), key=lambda item: view.node(item.view.members[-1]).index)
    heights = [item.box().top() for item in in_order]
    assert heights == sorted(heights)  # each layer below the one before: top to bottom


def test_expanding_a_layer_shows_its_ops(window):
    shown(window, "digits.tg")
    batch_norm = next(g for g in window.session.view.groups if g.kind == "BatchNorm1d")
    window.scene.groupToggled.emit(batch_norm.key)  # a double-click on its box
    frame = window.scene.item_for(batch_norm.key)
    assert isinstance(frame, GroupItem) and not frame.collapsed
    ops = [window.scene.item_for(m) for m in batch_norm.members]
    assert all(isinstance(item, NodeItem) for item in ops)
    assert {item.view.op for item in ops} >= {"mean", "sub", "power", "mul", "add"}


def test_a_graph_file_opens_expanded(window):
    shown(window, "neuron.tg")
    assert not window.collapsed
    assert {item.view.name for item in window.scene.node_items().values()} >= {"x1", "n", "o"}
    assert window.canvas.zoom_level() >= LEGIBLE_AT_FIT


def test_stepping_keeps_the_current_box_in_the_middle_of_the_view(window, qtbot):
    shown(window, "digits.tg")
    qtbot.waitExposed(window)
    window.expand_all()
    window.canvas.set_zoom(1.2)  # too close to see the whole graph: the view must follow
    viewport = QRectF(window.canvas.viewport().rect())
    margin_x = viewport.width() * (1 - COMFORT) / 2 - 1
    margin_y = viewport.height() * (1 - COMFORT) / 2 - 1
    comfortable = viewport.adjusted(margin_x, margin_y, -margin_x, -margin_y)
    for _ in range(window.controller.stepper.forward_total):
        window.actions.step_forward.trigger()
        item = window.scene.item_showing(window.selected)
        centre = window.canvas.mapFromScene(item.box().center())
        assert comfortable.contains(centre.toPointF()), window.selected


def test_find_zooms_to_a_legible_scale(window, qtbot):
    shown(window, "digits.tg")
    window.expand_all()
    window.canvas.fit_to_view()
    assert window.canvas.zoom_level() < LEGIBLE_ZOOM
    window.actions.find.trigger()
    qtbot.keyClicks(window.search.field, "log_softmax")
    assert window.canvas.zoom_level() >= LEGIBLE_ZOOM * 0.99
    item = window.scene.item_showing(window.search.matches[0])
    assert visible_area(window).contains(item.box())


def test_a_scalar_network_groups_each_neuron_with_its_weights(window):
    shown(window, "moons_scalar.tg")
    view = window.session.view
    weights = [node for node in view.nodes if node.role == "parameter"]
    assert weights
    for node in weights:
        neuron = view.group_of(node.key)  # "0.n3.w1" lives in the group of neuron 0.n3
        assert neuron is not None and node.name.rsplit(".", 1)[0] in neuron, node.name
    titles = {item.view.title for item in window.scene.group_items().values()}
    assert {"ScalarLinear 2→16", "ScalarLinear 16→16", "x as scalars", "L2 penalty 0.0001"} <= (
        titles
    )
    assert len(window.scene.group_items()) <= 12  # a handful of boxes, no hairball
    assert len(window.scene.node_items()) == 0


@pytest.mark.parametrize("name", ["digits_cnn.tg", "resnet_digits.tg"])
def test_other_networks_open_as_a_few_legible_boxes(window, name):
    shown(window, name)
    boxes = len(window.scene.group_items()) + len(window.scene.node_items())
    assert boxes <= 30
    area = visible_area(window)
    assert all(area.contains(item.box()) for item in window.scene.group_items().values())
