"""Point 2 of issue 17: the model file and the graph are linked both ways. A stepped or
selected node marks the lines that made it; a click on a line selects its nodes (their layer's
box when it is collapsed). Lines come from the spec (LayerSpec.pos through
NetworkSpec.paths() for a network, each item's line for a graph file)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, Qt
from topograd.dsl.commands.common import load_spec
from topograd.gui.model import GROUP_PREFIX, GraphView
from topograd.gui.source_map import SourceMap

from topograd import dsl

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def line_of(window, text: str) -> int:
    """The 1-based line of the editor that holds `text` (the first one)."""
    lines = window.editor.toPlainText().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


def click_line(window, qtbot, line: int) -> None:
    """Click the editor's text on a line, as a person does (the line scrolled into view)."""
    editor = window.editor
    editor.go_to(line, 1)
    middle = editor.cursorRect().center().y()
    qtbot.mouseClick(editor.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(40, middle))
    assert editor.textCursor().blockNumber() + 1 == line


def test_a_graph_files_nodes_map_to_their_lines_and_back():
    spec, _ = load_spec(SAMPLES / "neuron.tg")
    view = GraphView.from_graph(dsl.inspect.subject(spec).graph())
    source = SourceMap.of(view, spec)
    text = (SAMPLES / "neuron.tg").read_text().splitlines()
    for node in view.nodes:
        first, last = source.lines_of(node.key)
        assert first == last and node.name in text[first - 1], node.name
    tanh_line = next(n for n, line in enumerate(text, 1) if "output o = tanh(n)" in line)
    assert [view.node(key).name for key in source.keys_on(tanh_line)] == ["o"]


def test_stepping_marks_the_line_of_each_node(window):
    assert window.open_file(SAMPLES / "neuron.tg")
    for _ in range(window.controller.stepper.forward_total):
        window.actions.step_forward.trigger()
        node = window.session.view.node(window.selected)
        first, _ = window.editor.linked_lines
        assert node.name in window.editor.toPlainText().splitlines()[first - 1]


def test_a_stepped_node_inside_a_collapsed_layer_marks_its_layer_line(window):
    assert window.open_file(SAMPLES / "digits_cnn.tg")
    for _ in range(16):  # into the first relu
        window.actions.step_forward.trigger()
    node = window.session.view.node(window.selected)
    assert node.op == "relu" and window.scene.item_for(node.key) is None  # in its layer's box
    first, last = window.editor.linked_lines
    assert first == last == line_of(window, "  relu")


def test_selecting_a_layer_box_marks_its_line(window):
    assert window.open_file(SAMPLES / "digits.tg")
    out = next(g for g in window.session.view.groups if g.name == "out")
    window.scene.item_for(out.key).setSelected(True)  # a click on the box
    assert window.selected == out.key
    assert window.editor.linked_lines == (line_of(window, "out = linear"),) * 2
    loss = GROUP_PREFIX + "loss"
    window.scene.clearSelection()
    window.scene.item_for(loss).setSelected(True)
    assert window.editor.linked_lines == (line_of(window, "loss cross_entropy"),) * 2


def test_clicking_a_line_selects_its_nodes(window, qtbot):
    window.resize(1366, 768)
    window.show()
    qtbot.waitExposed(window)
    assert window.open_file(SAMPLES / "neuron.tg")
    click_line(window, qtbot, line_of(window, "output o = tanh(n)"))
    selected = [item.key for item in window.scene.selectedItems()]
    assert [window.session.view.node(key).name for key in selected] == ["o"]
    assert window.selected == selected[0] and window.inspector.text_of("title") == "o: tanh"
    item = window.scene.item_for(selected[0])
    area = window.canvas.mapToScene(window.canvas.viewport().rect()).boundingRect()
    assert area.contains(item.box())


def test_clicking_a_repeated_layers_line_selects_every_copy(window, qtbot):
    window.resize(1366, 768)
    window.show()
    qtbot.waitExposed(window)
    assert window.open_file(SAMPLES / "digits.tg")
    click_line(window, qtbot, line_of(window, "    batchnorm"))
    selected = {item.key for item in window.scene.selectedItems()}
    kinds = {window.session.view.group(key).kind for key in selected}
    assert len(selected) == 2 and kinds == {"BatchNorm1d"}  # repeat 2 { ... }: both copies
    assert window.inspector.showing_group
    click_line(window, qtbot, line_of(window, "data {"))  # a line that made no node
    assert {item.key for item in window.scene.selectedItems()} == selected
