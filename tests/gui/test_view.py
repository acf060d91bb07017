"""The canvas zooms around the cursor within its limits, pans by dragging and fits the graph;
the search bar walks through the matches and centres each one."""

from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QGraphicsView
from test_scene import grid_layout  # the scene tests' hand-made layout
from topograd.gui.model import GraphView
from topograd.gui.scene import GraphScene
from topograd.gui.view import MAX_ZOOM, MIN_ZOOM, ZOOM_STEP, GraphCanvas, SearchBar

from topograd import dsl

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits() -> GraphView:
    spec, _ = dsl.commands.common.load_spec(ROOT / "samples" / "digits.tg")
    return GraphView.from_graph(dsl.inspect.subject(spec).graph())


@pytest.fixture
def canvas(qtbot, digits):
    scene = GraphScene()
    scene.show(digits, grid_layout(digits), frozenset())
    canvas = GraphCanvas(scene)
    qtbot.addWidget(canvas)
    canvas.resize(500, 400)
    canvas.show()
    qtbot.waitExposed(canvas)
    return canvas


def test_zoom_in_and_out_step_by_a_quarter_within_the_limits(canvas):
    assert canvas.zoom_level() == pytest.approx(1.0)
    canvas.zoom_in()
    assert canvas.zoom_level() == pytest.approx(ZOOM_STEP)
    canvas.zoom_out()
    canvas.zoom_out()
    assert canvas.zoom_level() == pytest.approx(1 / ZOOM_STEP)
    for _ in range(40):
        canvas.zoom_in()
    assert canvas.zoom_level() == pytest.approx(MAX_ZOOM)
    for _ in range(80):
        canvas.zoom_out()
    assert canvas.zoom_level() == pytest.approx(canvas.min_zoom())
    assert canvas.min_zoom() <= MIN_ZOOM


def test_plus_and_minus_keys_zoom(canvas):
    canvas.setFocus()
    QTest.keyClick(canvas, Qt.Key.Key_Plus)
    assert canvas.zoom_level() == pytest.approx(ZOOM_STEP)
    QTest.keyClick(canvas, Qt.Key.Key_Minus)
    QTest.keyClick(canvas, Qt.Key.Key_Minus)
    assert canvas.zoom_level() == pytest.approx(1 / ZOOM_STEP)


def wheel(canvas, at: QPoint, notches: float) -> None:
    event = QWheelEvent(
        QPointF(at),
        QPointF(canvas.viewport().mapToGlobal(at)),
        QPoint(0, 0),
        QPoint(0, round(120 * notches)),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(canvas.viewport(), event)


def test_the_wheel_zooms_around_the_cursor(canvas):
    canvas.center_on("n23")
    at = QPoint(150, 120)
    under_cursor = canvas.mapToScene(at)
    wheel(canvas, at, 2)
    assert canvas.zoom_level() == pytest.approx(ZOOM_STEP**2)
    moved = canvas.mapFromScene(under_cursor) - at
    assert moved.manhattanLength() <= 2
    wheel(canvas, at, -1)
    assert canvas.zoom_level() == pytest.approx(ZOOM_STEP)


def test_fit_to_view_shows_every_item(canvas):
    canvas.zoom_in()
    canvas.fit_to_view()
    visible = canvas.mapToScene(canvas.viewport().rect()).boundingRect()
    assert visible.contains(canvas.scene().itemsBoundingRect())
    assert canvas.zoom_level() < 1.0


def test_dragging_empty_space_pans_the_view(qtbot, canvas):
    assert canvas.dragMode() == QGraphicsView.DragMode.ScrollHandDrag
    canvas.set_zoom(1.0)
    canvas.centerOn(canvas.sceneRect().center())
    start = QPointF(5, 5)  # the margin around the graph: no item there
    while canvas.scene().items(canvas.mapToScene(start.toPoint())):
        start += QPointF(3, 0)
    before = canvas.center_of_view()
    left, none = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    viewport = canvas.viewport()
    steps = [start + QPointF(10 * i, 6 * i) for i in range(1, 7)]
    press = QMouseEvent(QEvent.Type.MouseButtonPress, start, start, left, left, none)
    QApplication.sendEvent(viewport, press)
    for point in steps:
        QApplication.sendEvent(
            viewport,
            QMouseEvent(QEvent.Type.MouseMove, point, point, Qt.MouseButton.NoButton, left, none),
        )
    end = steps[-1]
    QApplication.sendEvent(
        viewport,
        QMouseEvent(QEvent.Type.MouseButtonRelease, end, end, left, Qt.MouseButton.NoButton, none),
    )
    moved = canvas.center_of_view() - before
    assert moved.x() == pytest.approx(-60, abs=2) and moved.y() == pytest.approx(-36, abs=2)


def test_search_bar_walks_the_matches_and_centres_each(qtbot, canvas):
    scene = canvas.scene()
    bar = SearchBar(scene, canvas)
    qtbot.addWidget(bar)
    bar.open()
    QTest.keyClicks(bar.field, "BatchNorm")
    expected = scene.find("batchnorm")
    assert len(expected) == 24 and bar.matches == expected
    assert bar.count.text() == "1 of 24"
    assert scene.selectedItems() == [scene.item_for(expected[0])]
    QTest.keyClick(bar.field, Qt.Key.Key_Return)
    assert bar.count.text() == "2 of 24" and scene.selectedItems() == [scene.item_for(expected[1])]
    centre = canvas.mapFromScene(scene.item_for(expected[1]).box().center())
    assert (centre - canvas.viewport().rect().center()).manhattanLength() <= 3
    QTest.keyClick(bar.field, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    QTest.keyClick(bar.field, Qt.Key.Key_Enter, Qt.KeyboardModifier.ShiftModifier)
    assert bar.count.text() == "24 of 24"
    bar.field.setText("no such node")
    assert bar.count.text() == "no match" and bar.matches == []
    with qtbot.waitSignal(bar.closed):
        QTest.keyClick(bar.field, Qt.Key.Key_Escape)
    assert not bar.isVisible()
