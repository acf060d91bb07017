"""Node boxes show their gradient beside their value once backward reaches them (micrograd's
name | value | grad), a step back takes it away again, boxes leave room for that line, and
every dock closed by its button comes back from the View menu."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QDockWidget
from topograd.gui.items import _fonts
from topograd.gui.layout import box_size

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def key_named(window, name: str) -> str:
    return next(node.key for node in window.session.view.nodes if node.name == name)


def box_text(window, key: str) -> list[str]:
    return [text for text, _ in window.scene.item_for(key).text_lines()]


def test_a_box_shows_its_gradient_once_backward_reaches_it_and_step_back_removes_it(window):
    assert window.open_file(SAMPLES / "neuron.tg")
    n, o, x1 = (key_named(window, name) for name in ("n", "o", "x1"))
    while window.actions.step_forward.isEnabled():
        window.actions.step_forward.trigger()
    assert box_text(window, n)[-1] == "0.8814"  # the value, no gradient yet
    assert window.scene.item_for(n).grad_text is None
    while window.selected != n:
        window.actions.step_backward.trigger()
    assert window.scene.item_for(n).grad_text == "0.5"
    assert box_text(window, n)[-2:] == ["0.8814", "grad 0.5"]
    assert window.scene.item_for(o).grad_text == "1"
    assert window.scene.item_for(x1).grad_text is None  # not reached yet

    window.actions.step_back.trigger()
    assert window.scene.item_for(n).grad_text is None
    assert box_text(window, n)[-1] == "0.8814"
    assert window.scene.item_for(o).grad_text == "1"

    window.actions.run_to_end.trigger()
    while window.actions.step_backward.isEnabled():
        window.actions.step_backward.trigger()
    assert window.controller.stepper.finished
    assert window.scene.item_for(x1).grad_text == "-1.5"
    assert box_text(window, x1)[-1] == "grad -1.5"

    window.actions.reset.trigger()
    assert all(item.grad_text is None for item in window.scene.node_items().values())


def test_boxes_of_nodes_that_take_a_gradient_have_room_for_the_grad_line(window):
    assert window.open_file(SAMPLES / "neuron.tg")
    n = window.session.view.node(key_named(window, "n"))
    _, value_only = box_size([n.title, n.shape_text])
    assert window.scene.item_for(n.key).box().height() > value_only  # a line more
    while window.actions.step_backward.isEnabled():
        window.actions.step_backward.trigger()
    fonts = _fonts()
    for key, item in window.scene.node_items().items():
        needed = sum(getattr(fonts, f"{kind}_metrics").height() for _, kind in item.text_lines())
        assert needed <= item.box().height() - 2.0, key  # every line is drawn, none dropped
    boxes = [item.box() for item in window.scene.node_items().values()]
    for index, box in enumerate(boxes):
        assert not any(box.intersects(other) for other in boxes[index + 1 :])


def test_a_closed_dock_comes_back_from_the_view_menu(window, qtbot):
    window.show()
    qtbot.waitExposed(window)
    docks = window.findChildren(QDockWidget)
    assert docks
    menu_actions = window.view_menu.actions()
    for dock in docks:
        assert dock.toggleViewAction() in menu_actions
        dock.show()
        assert dock.isVisible()
        dock.close()
        assert not dock.isVisible()
        dock.toggleViewAction().trigger()
        assert dock.isVisible()
