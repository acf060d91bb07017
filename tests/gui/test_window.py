"""The whole window against the engine: every sample stepped through both passes shows the
values and gradients an independent engine run computes; collapsing, search, breakpoints,
step back, error markers, export, shortcuts and training from the window."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QKeySequence
from topograd.dsl.commands.common import load_spec
from topograd.dsl.inspect import graph_subject, network_subject
from topograd.gui.actions import ALL
from topograd.gui.window import MainWindow

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SMALL_SAMPLES = sorted(p.name for p in SAMPLES.glob("*.tg") if p.name != "moons_scalar.tg")


def opened(window, name: str) -> MainWindow:
    assert window.open_file(SAMPLES / name)
    assert window.session is not None, window.problems.places()
    return window


def truth_graph(window):
    """The same file's graph built again and run by the engine alone (forward, backward)."""
    spec, _ = load_spec(SAMPLES / Path(window.document.path).name)
    session = window.session
    if spec.network is not None:
        model = session.built.model if session.built is not None else None
        subject = network_subject(spec, session.batch, session.seed, model=model)
    else:
        subject = graph_subject(spec, session.seed)
    graph = subject.graph()
    graph.forward()
    root = graph.outputs[0]
    if root.requires_grad:
        graph.backward(None if root.size == 1 else np.ones(root.shape))
    return graph


def shown_number(text: str) -> float:
    return float(text)


def assert_panel_shows(panel, expected) -> None:
    """What a value panel displays equals `expected` (6 significant digits on screen; the
    table's cells exactly)."""
    expected = np.asarray(expected, dtype=np.float64)
    if expected.size == 1:
        assert panel.page == "scalar"
        assert math.isclose(
            shown_number(panel.text_of("number")), expected.item(), rel_tol=5e-6, abs_tol=1e-12
        )
        return
    assert panel.page == "tensor"
    for field, value in (("mean", expected.mean()), ("min", expected.min())):
        assert math.isclose(
            shown_number(panel.text_of(field)), value, rel_tol=5e-6, abs_tol=1e-9
        ), field
    flat = expected.reshape(-1, expected.shape[-1]) if expected.ndim > 1 else expected[None]
    model = panel.table_model
    assert model.data(model.index(0, 0), Qt.UserRole) == pytest.approx(flat[0, 0], rel=1e-12)


@pytest.mark.parametrize("name", SMALL_SAMPLES)
def test_stepping_a_sample_shows_the_engines_values_and_gradients(window, name):
    opened(window, name)
    truth = truth_graph(window)
    session = window.session
    steps = 0
    while window.actions.step_forward.isEnabled():
        window.actions.step_forward.trigger()
        steps += 1
        key = window.selected
        node = truth.nodes[session.view.node(key).index]
        assert window.scene.state_of(key) == "forward"
        assert window.scene.item_showing(key).is_current  # its box, or its layer's
        assert_panel_shows(window.inspector.value_panel, node.data)
    assert steps == len(truth.op_nodes)
    backward = 0
    while window.actions.step_backward.isEnabled():
        window.actions.step_backward.trigger()
        backward += 1
        key = window.selected
        node = truth.nodes[session.view.node(key).index]
        assert window.inspector.tabs.currentIndex() == 1  # the gradient is on show
        assert_panel_shows(window.inspector.grad_panel, truth.grad_of(node))
        assert window.scene.state_of(key) == "backward"
        assert window.scene.item_showing(key).is_current
    assert backward == len(truth.grads) > 0
    assert window.controller.stepper.finished
    assert window.position_label.text() == f"finished: {steps + backward} steps"


def test_the_big_scalar_sample_runs_to_the_end_and_every_node_matches(window):
    opened(window, "moons_scalar.tg")
    assert len(window.session.view.nodes) > 3000
    assert window.collapsed  # a big graph opens with its layers collapsed
    window.actions.run.trigger()  # no breakpoints: both passes
    assert window.controller.stepper.finished
    truth = truth_graph(window)
    for view in window.session.view.nodes[::97]:
        window.select(view.key)
        node = truth.nodes[view.index]
        assert_panel_shows(window.inspector.value_panel, node.data)
        if node.id in truth.grads:
            assert_panel_shows(window.inspector.grad_panel, truth.grad_of(node))


def test_step_back_undoes_the_picture_and_the_inspector(window):
    opened(window, "neuron.tg")
    for _ in range(3):
        window.actions.step_forward.trigger()
    third = window.selected
    window.actions.step_back.trigger()
    assert window.scene.item_showing(third).state == "pending"
    assert window.controller.stepper.position == 2
    assert window.selected != third and window.scene.current == window.selected
    window.actions.step_forward.trigger()
    assert window.selected == third and window.scene.item_showing(third).state == "forward"


def test_breakpoints_stop_a_run_in_both_passes(window):
    opened(window, "digits.tg")
    relu = next(n.key for n in window.session.view.nodes if n.op == "relu")
    window.select(relu)
    window.actions.toggle_breakpoint.trigger()
    assert window.scene.item_showing(relu).has_breakpoint
    window.actions.run.trigger()
    stepper = window.controller.stepper
    assert window.selected == relu and stepper.current.phase == "forward"
    window.actions.run.trigger()
    assert window.selected == relu and stepper.current.phase == "backward"
    window.actions.run.trigger()
    assert stepper.finished
    window.actions.reset.trigger()
    assert stepper.position == 0 and window.scene.item_showing(relu).state == "pending"
    window.actions.run_to_end.trigger()  # ignores breakpoints: the forward pass only
    assert stepper.forward_complete and stepper.current.phase == "forward"


def test_play_steps_at_the_chosen_speed_and_pauses_at_a_breakpoint(window, qtbot):
    opened(window, "neuron.tg")
    tanh = next(n.key for n in window.session.view.nodes if n.op == "tanh")
    window.select(tanh)
    window.actions.toggle_breakpoint.trigger()
    window.speed.setValue(200)
    assert window.controller._timer.interval() == 5  # 200 steps per second

    def paused(playing):
        return not playing

    with qtbot.waitSignal(window.controller.playingChanged, timeout=5000, check_params_cb=paused):
        window.actions.play.trigger()
        assert window.controller.playing
    stepper = window.controller.stepper
    assert window.selected == tanh and stepper.current.phase == "forward"
    assert stepper.position == stepper.forward_total  # tanh is the last forward node
    with qtbot.waitSignal(window.controller.playingChanged, timeout=5000, check_params_cb=paused):
        window.actions.play.trigger()  # on from the breakpoint to its backward step
    assert window.selected == tanh and stepper.current.phase == "backward"


def test_run_to_the_selected_node(window):
    opened(window, "softmax_graph.tg")
    target = window.session.view.nodes[-3].key
    window.select(target)
    window.actions.run_to_selected.trigger()
    assert window.controller.stepper.current.node.id == window.session.node_id(target)


def test_collapsing_a_layer_keeps_the_steps_drawn(window):
    opened(window, "digits.tg")
    window.actions.expand_all.trigger()
    window.actions.run_to_end.trigger()
    group = window.session.view.groups[0]
    window.toggle_group(group.key)
    assert window.collapsed == {group.key}
    assert all(window.scene.item_for(m) is None for m in group.members)
    assert window.scene.item_showing(group.members[0]).state == "forward"
    window.actions.expand_all.trigger()
    assert not window.collapsed
    assert window.scene.item_for(group.members[-1]).state == "forward"


def test_search_centres_the_match(window):
    opened(window, "digits.tg")
    matches = window.scene.find("log_softmax")
    assert len(matches) == 1
    assert window.canvas.center_on(matches[0])
    item = window.scene.item_showing(matches[0])
    centre = window.canvas.mapFromScene(item.sceneBoundingRect().center())
    middle = window.canvas.viewport().rect().center()
    assert abs(centre.x() - middle.x()) <= 2 and abs(centre.y() - middle.y()) <= 2


def test_a_broken_file_shows_its_errors_and_keeps_the_last_graph(window, qtbot):
    opened(window, "neuron.tg")
    graph = window.session.view
    text = window.editor.toPlainText().replace("tanh(n)", "tahn(n)")
    with qtbot.waitSignal(window.checker.checked, timeout=3000):
        window.editor.setPlainText(text)
    problems = window.editor.problems()
    assert len(problems) == 1 and "tahn" in problems[0].message
    assert window.problems.places() == [(problems[0].pos.line, problems[0].pos.column)]
    assert window.session.view is graph  # the last good graph stays


def test_export_writes_svg_and_png(window, tmp_path):
    opened(window, "neuron.tg")
    window.export_to(tmp_path / "graph.svg")
    window.export_to(tmp_path / "graph.png")
    svg = ET.parse(tmp_path / "graph.svg").getroot()
    assert svg.tag.endswith("svg")
    assert "o: tanh" in "".join(svg.itertext())
    image = QImage(str(tmp_path / "graph.png"))
    assert image.width() > 100 and image.height() > 50


def test_every_action_has_its_shortcut_and_the_keys_step(window, qtbot):
    for spec in ALL:
        assert getattr(window.actions, spec.name).shortcut() == QKeySequence(spec.shortcut)
    opened(window, "neuron.tg")
    window.show()
    window.activateWindow()
    qtbot.waitActive(window)  # shortcuts go to the active window
    qtbot.wait(200)  # the first key right after activation can be lost offscreen
    window.editor.setFocus()  # they work while the editor has the keyboard
    screen = window.windowHandle()  # keys through the window system, where shortcuts live
    for _ in range(2):
        qtbot.keyClick(screen, Qt.Key_F7)
        qtbot.wait(20)
    assert window.controller.stepper.position == 2
    qtbot.keyClick(screen, Qt.Key_F7, Qt.ShiftModifier)
    assert window.controller.stepper.position == 1


def test_training_from_the_window_then_stepping_shows_the_trained_weights(window, qtbot):
    opened(window, "digits.tg")
    panel = window.training
    panel.unit.setCurrentText("steps")
    panel.amount.setValue(5)
    with qtbot.waitSignal(panel.trainingFinished, timeout=300_000):
        panel.train_button.click()
        assert not window.actions.step_forward.isEnabled()  # no stepping while training
    assert window.actions.step_forward.isEnabled()
    weight = next(n for n in window.session.view.nodes if n.name == "0.weight")
    window.select(weight.key)
    trained = window.session.built.model.parameters()[0].data
    assert_panel_shows(window.inspector.value_panel, trained)
    assert window.session.graph[weight.node_id].data is trained


def test_reinitialize_brings_back_the_files_weights_and_clears_the_curves(window, qtbot):
    opened(window, "digits.tg")
    first = window.session.built.model.parameters()[0].data.copy()
    panel = window.training
    panel.unit.setCurrentText("steps")
    panel.amount.setValue(3)
    with qtbot.waitSignal(panel.trainingFinished, timeout=300_000):
        window.actions.train.trigger()
    assert not np.array_equal(window.session.built.model.parameters()[0].data, first)
    window.collapse_all()
    collapsed = window.collapsed
    window.actions.reinitialize.trigger()
    assert np.array_equal(window.session.built.model.parameters()[0].data, first)
    assert panel.curves.steps == [] and panel.plots.currentWidget() is panel.placeholder
    assert window.collapsed == collapsed  # the picture as it was, on the new weights
    assert "reinitialized" in window.statusBar().currentMessage()


def test_new_mini_batch_keeps_keys_and_breakpoints(window):
    opened(window, "digits.tg")
    relu = next(n.key for n in window.session.view.nodes if n.op == "relu")
    window.select(relu)
    window.actions.toggle_breakpoint.trigger()
    x_before = next(n for n in window.session.graph.nodes if n.name == "x")
    window.actions.new_batch.trigger()
    assert window.session.seed == 1
    assert relu in window.session.breakpoint_keys()
    assert window.scene.item_showing(relu).has_breakpoint
    x_after = next(n for n in window.session.graph.nodes if n.name == "x")
    assert x_after is not x_before and not np.array_equal(x_after.data, x_before.data)


def test_convolution_layers_are_groups_that_collapse_and_expand(window):
    opened(window, "digits_cnn.tg")
    kinds = {group.kind for group in window.session.view.groups}
    assert {"Conv2d", "BatchNorm2d", "MaxPool2d"} <= kinds
    conv = next(g for g in window.session.view.groups if g.kind == "Conv2d")
    assert any(window.session.view.node(m).op == "conv2d" for m in conv.members)
    assert conv.key in window.collapsed  # a network opens with one box per layer
    window.toggle_group(conv.key)
    assert not window.scene.item_for(conv.key).collapsed
    window.toggle_group(conv.key)
    box = window.scene.item_showing(conv.members[0])
    assert box is window.scene.item_for(conv.key)
    window.actions.run_to_end.trigger()
    assert box.state == "forward"  # every op inside it computed
    assert box.collapsed
    window.toggle_group(conv.key)
    assert not window.scene.item_for(conv.key).collapsed  # a frame around its ops again
    assert all(window.scene.item_for(m).state == "forward" for m in conv.members)
