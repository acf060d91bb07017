"""Point 8 of issue 17: the window fits a laptop. It can be 1366x768 and as small as 1280x680
(no panel forces it taller), its toolbar shows every action at 1280 pixels, every dock comes
back from the View menu, a legend says what colours, stripes and edge widths mean, export
says the path it wrote and creates no folder, and the window follows a dark palette."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QDockWidget, QToolButton
from topograd.gui.theme import DARK, LIGHT, theme

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.mark.parametrize("name", ["digits.tg", "moons_scalar.tg", "neuron.tg"])
def test_the_window_gets_as_small_as_1280x680(window, qtbot, name):
    assert window.open_file(SAMPLES / name)
    window.show()
    qtbot.waitExposed(window)
    hint = window.minimumSizeHint()
    assert hint.width() <= 1280 and hint.height() <= 680, hint
    window.resize(1280, 680)
    qtbot.waitUntil(lambda: window.height() == 680 and window.width() == 1280)
    window.training_dock.raise_()
    window.inspector_dock.raise_()
    assert window.canvas.viewport().height() > 300  # the graph keeps most of the height


def test_the_toolbar_shows_every_action_at_1280_pixels(window, qtbot):
    window.resize(1280, 680)
    window.show()
    qtbot.waitExposed(window)
    toolbar = window.toolbar
    hidden = []
    for action in toolbar.actions():
        widget = toolbar.widgetForAction(action)
        if widget is None or action.isSeparator():
            continue
        inside = toolbar.rect().contains(widget.geometry())
        if not widget.isVisible() or not inside:
            hidden.append(action.iconText())
    assert not hidden, hidden
    extension = toolbar.findChild(QToolButton, "qt_toolbar_ext_button")
    assert extension is None or not extension.isVisible()  # no » menu holding actions


def test_every_dock_comes_back_from_the_view_menu(window, qtbot):
    assert window.open_file(SAMPLES / "digits.tg")
    window.show()
    qtbot.waitExposed(window)
    docks = window.findChildren(QDockWidget)
    assert {dock.objectName() for dock in docks} == {"inspector", "training"}
    menu = window.view_menu.actions()
    for dock in docks:
        assert dock.toggleViewAction() in menu
        dock.close()
        assert dock.isHidden()
        dock.toggleViewAction().trigger()
        assert not dock.isHidden()


def test_the_legend_explains_colours_stripes_and_edges(window, qtbot):
    window.show()
    qtbot.waitExposed(window)
    texts = window.legend.texts()
    for meaning in ("not computed", "value", "gradient", "current", "breakpoint", "NaN/Inf"):
        assert meaning in texts
    assert {"input", "parameter", "op"} <= set(texts)  # the stripes
    assert any("gradient RMS" in text for text in texts)  # the edge widths
    assert window.legend.isVisible()
    window.actions.legend.trigger()
    assert not window.legend.isVisible()
    window.actions.legend.trigger()
    assert window.legend.isVisible() and not window.legend.grab().isNull()


def test_export_says_where_it_wrote_and_creates_no_folder(window, tmp_path):
    assert window.open_file(SAMPLES / "neuron.tg")
    target = tmp_path / "graph.svg"
    assert window.export_to(target)
    assert target.is_file()
    assert window.statusBar().currentMessage() == f"exported the graph to {target}"
    missing = tmp_path / "no such folder" / "graph.png"
    assert not window.export_to(missing)
    assert not missing.parent.exists()
    message = window.statusBar().currentMessage()
    assert message == f"not exported: the folder {missing.parent} does not exist"


@pytest.fixture
def dark_palette(qtbot):
    app = QApplication.instance()
    before = app.palette()
    dark = QPalette()
    for role, colour in (
        (QPalette.ColorRole.Window, "#2b2b2b"),
        (QPalette.ColorRole.WindowText, "#e0e0e0"),
        (QPalette.ColorRole.Base, "#1e1e1e"),
        (QPalette.ColorRole.Text, "#e0e0e0"),
        (QPalette.ColorRole.Button, "#353535"),
        (QPalette.ColorRole.ButtonText, "#e0e0e0"),
    ):
        dark.setColor(role, QColor(colour))
    yield app, dark
    app.setPalette(before)
    qtbot.wait(10)


def test_the_window_follows_a_dark_palette_and_back(window, qtbot, dark_palette):
    app, dark = dark_palette
    assert window.open_file(SAMPLES / "neuron.tg")
    window.show()
    qtbot.waitExposed(window)
    app.setPalette(dark)
    qtbot.waitUntil(lambda: theme() is DARK)
    assert window.canvas.backgroundBrush().color() == DARK.canvas
    node = next(iter(window.scene.node_items().values()))
    assert node.fill_color().lightness() < 100  # a dark box ...
    assert DARK.text.lightness() > 200  # ... with light text
    assert window.editor.highlighter.dark
    picture = window.canvas.viewport().grab().toImage()
    corner = picture.pixelColor(3, 3)
    assert corner.lightness() < 80  # the graph's background is dark
    app.setPalette(QPalette(QColor("#efefef")))
    qtbot.waitUntil(lambda: theme() is LIGHT)
    assert window.canvas.backgroundBrush().color() == LIGHT.canvas
    assert not window.editor.highlighter.dark
