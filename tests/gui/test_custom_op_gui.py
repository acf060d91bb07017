"""A custom op in the window: samples/plugins/swish_graph.tg, with the swish plugin loaded,
stepped through both passes shows swish's own formulas and the values and gradients that the
engine computes for the same file without the window."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from topograd.dsl.commands.common import load_spec
from topograd.dsl.inspect import graph_subject
from topograd.dsl.plugins import load_plugin
from topograd.gui.documents import RecentFiles
from topograd.gui.window import MainWindow

from topograd import unregister_op

PLUGINS = Path(__file__).resolve().parents[2] / "samples" / "plugins"


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    """The window with swish loaded as `topograd --plugin ... gui` loads it; swish is
    unregistered and its module forgotten afterwards."""
    monkeypatch.setenv("TOPOGRAD_CACHE", str(tmp_path / "layouts"))
    shown = MainWindow(recent=RecentFiles(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)))
    qtbot.addWidget(shown)
    load_plugin(str(PLUGINS / "swish.py"))
    yield shown
    shown.training.shutdown()
    unregister_op("swish")
    for name in [name for name in sys.modules if name.startswith("topograd_plugin_swish_")]:
        del sys.modules[name]


def first_cell(panel) -> float:
    return panel.table_model.data(panel.table_model.index(0, 0), Qt.UserRole)


def test_stepping_the_swish_graph_shows_its_formulas_and_the_engines_numbers(window):
    path = PLUGINS / "swish_graph.tg"
    assert window.open_file(path), window.problems.places()
    truth = graph_subject(load_spec(path)[0], window.session.seed).graph()
    truth.forward()
    truth.backward()
    session, seen = window.session, set()

    def shown_node():
        view = session.view.node(window.selected)
        seen.add(view.op)
        return view, truth.nodes[view.index]

    while window.actions.step_forward.isEnabled():
        window.actions.step_forward.trigger()
        view, node = shown_node()
        if view.op == "swish":
            assert window.inspector.text_of("formula") == "x * sigmoid(beta * x)"
            assert window.inspector.text_of("vjp_formula").startswith("dx = g * (s + beta * y")
        value = np.asarray(node.data)
        if value.size > 1:
            assert first_cell(window.inspector.value_panel) == pytest.approx(
                value.flat[0], rel=1e-12
            )
    while window.actions.step_backward.isEnabled():
        window.actions.step_backward.trigger()
        _, node = shown_node()
        grad = np.asarray(truth.grad_of(node))
        if grad.size > 1:
            assert first_cell(window.inspector.grad_panel) == pytest.approx(grad.flat[0], rel=1e-12)
        else:
            shown = float(window.inspector.grad_panel.text_of("number"))
            assert shown == pytest.approx(float(grad), rel=5e-6)
    assert "swish" in seen
    assert window.controller.stepper.finished
    h = next(node for node in truth.nodes if node.name == "h")
    session_h = next(view for view in session.view.nodes if view.op == "swish")
    stepped = window.controller.stepper.grad_of(session.node_id(session_h.key))
    np.testing.assert_allclose(stepped, truth.grad_of(h), rtol=1e-12)
