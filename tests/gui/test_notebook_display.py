"""Graphs in notebooks (gui.notebook): `draw` gives a picture Jupyter shows inline, and
`register` teaches a real IPython shell to show Graphs, Modules and Histories; all of it
without Qt."""

import importlib
import sys
import types
import xml.etree.ElementTree as ET

import IPython
import pytest
from IPython.core.interactiveshell import InteractiveShell
from topograd.engine import Graph
from topograd.engine.nn import Module
from topograd.engine.train import History
from topograd.gui.notebook import GraphPicture, draw, register

import topograd as tg

SVG_TYPE, HTML_TYPE = "image/svg+xml", "text/html"


def square():
    x = tg.Tensor(3.0, requires_grad=True, name="x")
    return (x * x).named("y")


@pytest.fixture
def shell(tmp_path, monkeypatch):
    """A real IPython shell (made here unless one exists), without our formatters after."""
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    made = not InteractiveShell.initialized()
    ip = InteractiveShell.instance()
    yield ip
    formatters = ip.display_formatter.formatters
    formatters[SVG_TYPE].pop(Graph, None)
    formatters[HTML_TYPE].pop(Module, None)
    formatters[HTML_TYPE].pop(History, None)
    if made:
        InteractiveShell.clear_instance()


def test_draw_takes_a_tensor_or_a_graph():
    y = square()
    from_tensor, from_graph = draw(y, use_dot=False), draw(Graph(y), use_dot=False)
    assert from_tensor.svg == from_graph.svg
    assert from_tensor._repr_svg_() == from_tensor.svg
    ET.fromstring(from_tensor.svg)
    with pytest.raises(TypeError, match="draw takes a Tensor or a Graph, got list"):
        draw([y])


def test_a_picture_says_what_it_is_and_saves_svg_only(tmp_path):
    picture = draw(square(), use_dot=False)
    assert isinstance(picture, GraphPicture)
    assert repr(picture).startswith("<GraphPicture: 2 nodes, ")
    path = picture.save(tmp_path / "square.svg")
    assert path.read_text(encoding="utf-8") == picture.svg
    with pytest.raises(ValueError, match=r"writes SVG only.*\.svg"):
        picture.save(tmp_path / "square.png")


def test_register_shows_graphs_as_svg(shell, monkeypatch):
    monkeypatch.setitem(sys.modules, "topograd.gui.live", None)  # Module and History: plain
    register(shell)
    y = square()
    data, _ = shell.display_formatter.format(Graph(y))
    assert data[SVG_TYPE].startswith("<svg")
    assert "node-" in data[SVG_TYPE]
    data, _ = shell.display_formatter.format(tg.nn.Linear(2, 1))
    assert HTML_TYPE not in data and "text/plain" in data


def test_register_shows_modules_and_histories_as_html_from_the_live_module(shell, monkeypatch):
    live = types.ModuleType("topograd.gui.live")
    live.module_html = lambda module: f"<b>{type(module).__name__}</b>"
    live.history_html = lambda history: "<i>history</i>"
    monkeypatch.setitem(sys.modules, "topograd.gui.live", live)
    register(shell)
    data, _ = shell.display_formatter.format(tg.nn.Linear(2, 1))
    assert data[HTML_TYPE] == "<b>Linear</b>"
    data, _ = shell.display_formatter.format(History())
    assert data[HTML_TYPE] == "<i>history</i>"


def test_register_finds_the_running_shell_and_does_nothing_without_one(shell, monkeypatch):
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    register()
    assert Graph not in shell.display_formatter.formatters[SVG_TYPE].type_printers
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    register()
    assert Graph in shell.display_formatter.formatters[SVG_TYPE].type_printers


def test_pictures_need_no_qt(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("topograd.gui.")]:
        monkeypatch.delitem(sys.modules, name)  # imported again, without Qt this time
    for name in [m for m in sys.modules if m.split(".")[0] in ("PySide6", "shiboken6")]:
        monkeypatch.setitem(sys.modules, name, None)  # importing Qt raises ImportError
    monkeypatch.setitem(sys.modules, "PySide6", None)
    notebook = importlib.import_module("topograd.gui.notebook")
    y = square()
    y.backward(retain_graph=True)
    picture = notebook.draw(y)
    assert "data 9" in picture.svg and "grad 6" in picture.svg
    assert not [m for m in sys.modules if m.startswith("PySide6") and sys.modules[m] is not None]
