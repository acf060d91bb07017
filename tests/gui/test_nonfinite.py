"""Point 7 of issue 17: a NaN or an infinity is flagged in red on its node's box (its layer's
box when collapsed) and named in the status line; with Step > Break at first non-finite
value, running and playing stop right after the first step that shows one, in either pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from topograd.gui.theme import theme

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
WAIT = 120_000  # ms: a loaded machine plays slowly; no assertion is about speed

# log and sqrt of a negative number: NaN from the fourth forward step on
FORWARD_NAN = """graph bad {
  input x = -1.0
  param w = 2.0
  y = x * w
  z = log(y)
  s = sqrt(y)
  output o = z + s * w
}
"""
# every value finite, but d sqrt(y) / dy = 1 / (2 sqrt(0)) is infinite
BACKWARD_INF = """graph edge {
  input x = 0.0
  param w = 1.0
  y = x * w
  output o = sqrt(y)
}
"""


@pytest.fixture
def opened(window, tmp_path):
    def open_text(text: str):
        path = tmp_path / "model.tg"
        path.write_text(text, encoding="utf-8")
        assert window.open_file(path) and window.session is not None
        return window

    return open_text


def key_named(window, name: str) -> str:
    return next(node.key for node in window.session.view.nodes if node.name == name)


def test_a_nan_is_flagged_red_and_named(opened):
    window = opened(FORWARD_NAN)
    while window.actions.step_forward.isEnabled():
        window.actions.step_forward.trigger()
        if window.session.view.node(window.selected).name == "z":
            break
    box = window.scene.item_for(key_named(window, "z"))
    assert box.nonfinite and box.fill_color() == theme().nonfinite_fill
    assert box.border_color() in (theme().nonfinite_border, theme().current_border)
    message = window.statusBar().currentMessage()
    assert message.startswith("non-finite value: z: log") and "1 NaN/Inf of 1" in message
    assert not window.scene.item_for(key_named(window, "y")).nonfinite
    window.actions.step_back.trigger()
    assert not box.nonfinite  # undone: not computed, not flagged
    window.actions.reset.trigger()
    assert not window.scene.nonfinite()


def test_without_the_option_run_goes_to_the_end(opened):
    window = opened(FORWARD_NAN)
    window.actions.run.trigger()
    assert window.controller.stepper.finished
    flagged = {window.session.view.node(key).name for key in window.scene.nonfinite()}
    assert {"z", "s", "o", "y", "w", "x"} <= flagged  # y, w and x get NaN gradients


def test_break_at_the_first_nan_of_the_forward_pass(opened):
    window = opened(FORWARD_NAN)
    window.actions.break_nonfinite.setChecked(True)
    window.actions.run.trigger()
    current = window.controller.stepper.current
    assert current.phase == "forward" and current.node.name == "z"
    assert "stopped at the first value: z: log" in window.statusBar().currentMessage()
    window.actions.run_to_end.trigger()  # on from there: s is NaN too, it stops again
    assert window.controller.stepper.current.node.name == "s"


def test_break_at_the_first_infinite_gradient_of_the_backward_pass(opened):
    window = opened(BACKWARD_INF)
    window.actions.break_nonfinite.setChecked(True)
    window.actions.run.trigger()
    stepper = window.controller.stepper
    assert stepper.forward_complete and not stepper.finished
    current = stepper.current
    assert current.phase == "backward" and current.node.name == "y"
    assert window.scene.item_for(key_named(window, "y")).nonfinite
    assert "gradient: y: mul" in window.statusBar().currentMessage()


def test_play_stops_at_the_first_nan(opened, qtbot):
    window = opened(FORWARD_NAN)
    window.actions.break_nonfinite.setChecked(True)
    window.speed.setValue(200)
    window.actions.play.trigger()
    qtbot.waitUntil(lambda: not window.controller.playing, timeout=WAIT)
    assert window.controller.stepper.current.node.name == "z"


def test_a_collapsed_layer_is_flagged_when_a_node_inside_it_is(window):
    assert window.open_file(SAMPLES / "digits.tg")
    group = next(g for g in window.session.view.groups if g.kind == "BatchNorm1d")
    inside = next(m for m in group.members if window.session.view.node(m).op == "power")
    box = window.scene.item_for(group.key)
    assert box.collapsed and not box.nonfinite
    window.scene.set_nonfinite(inside, True)
    assert box.nonfinite and box.fill_color() == theme().nonfinite_fill
    window.expand_all()
    assert window.scene.item_for(inside).nonfinite  # the flag is kept by the node's key
