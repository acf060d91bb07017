"""The inspector shows the engine's numbers and formulas for a real node, as a person reads them."""

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from topograd.dsl.commands.common import load_spec
from topograd.engine import Stepper
from topograd.gui.documents import RecentFiles
from topograd.gui.heatmap import (
    DIVERGING_COLOURS,
    SEQUENTIAL_COLOURS,
    HeatmapWidget,
    HistogramWidget,
)
from topograd.gui.inspector import DIGITS, LEAF_FORMULAS, VALUE_ROLE, Inspector
from topograd.gui.model import GraphView, NodeView
from topograd.gui.values import HEAT_TOP, HEAT_ZERO, ValueView, format_number
from topograd.gui.window import MainWindow

import topograd as tg
from topograd import dsl

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
STAT_NAMES = ("shape", "dtype", "mean", "std", "min", "max", "nonfinite")
NODE_FIELDS = ("title", "role", "layer", "shape", "state", "formula", "vjp_formula", "inputs")


def stepped_graph(sample: str):
    """A sample's engine graph after a whole forward and backward pass, and its views."""
    spec, _ = load_spec(SAMPLES / sample)
    graph = dsl.inspect.subject(spec).graph()
    graph.forward()
    graph.backward()
    return graph, GraphView.from_graph(graph)


def node_named(graph, views, name):
    index = next(i for i, node in enumerate(graph.nodes) if node.name == name)
    return graph.nodes[index], views.nodes[index]


def show(inspector, graph, views, name, state="backward"):
    node, view = node_named(graph, views, name)
    inputs = [(views.node(key).title, views.node(key).shape_text) for key in view.inputs]
    grad = graph.grad_of(node)
    inspector.show_node(
        view,
        state,
        ValueView.from_array(node.data),
        None if grad is None else ValueView.from_array(grad),
        inputs,
        takes_grad=node.requires_grad,
    )
    return node


def synthetic_node(shape=(300, 70)) -> NodeView:
    return NodeView(
        key="n3", index=3, node_id=42, op="relu", name="h", shape=shape, layer="fc1",
        layer_kind="Linear", inputs=("n2",), role="op", formula="max(x, 0)",
        vjp_formula="dx = g * (x > 0)",
    )  # fmt: skip


@pytest.fixture
def inspector(qtbot):
    widget = Inspector()
    qtbot.addWidget(widget)
    widget.resize(420, 700)
    return widget


@pytest.fixture(scope="module")
def neuron():
    return stepped_graph("neuron.tg")


@pytest.fixture(scope="module")
def softmax():
    return stepped_graph("softmax_graph.tg")


def test_a_scalar_op_node_shows_its_formulas_inputs_and_numbers(inspector, neuron):
    graph, views = neuron
    node = show(inspector, graph, views, "o")
    info = graph.info(node)
    assert inspector.text_of("title") == "o: tanh"
    assert inspector.text_of("role") == "op"
    assert inspector.text_of("state") == "backward: gradient computed"
    assert inspector.text_of("formula") == info.formula
    assert inspector.text_of("vjp_formula") == info.vjp_formula
    assert inspector.text_of("inputs") == "n: add  (scalar)"
    value, grad = inspector.value_panel, inspector.grad_panel
    assert value.page == grad.page == "scalar"
    assert value.text_of("number") == format_number(float(node.data), DIGITS) == "0.707107"
    assert grad.text_of("number") == format_number(float(graph.grad_of(node)), DIGITS) == "1"


def test_a_leaf_says_what_it_is_and_shows_micrograds_gradient(inspector, neuron):
    graph, views = neuron
    show(inspector, graph, views, "x1")
    assert inspector.text_of("formula") == LEAF_FORMULAS["input"]
    assert inspector.text_of("inputs") == "none"
    assert inspector.value_panel.text_of("number") == "2"
    assert inspector.grad_panel.text_of("number") == "-1.5"
    mul_node = show(inspector, graph, views, "x1w1")
    assert inspector.text_of("inputs").splitlines() == [
        "x1: input  (scalar)",
        "w1: parameter  (scalar)",
    ]
    assert inspector.value_panel.text_of("number") == format_number(float(mul_node.data), DIGITS)


def test_a_tensor_node_shows_statistics_table_and_pictures(inspector, softmax):
    graph, views = softmax
    node = show(inspector, graph, views, "p")
    array, grad = np.asarray(node.data), np.asarray(graph.grad_of(node))
    assert inspector.text_of("formula") == graph.info(node).formula
    assert inspector.text_of("shape") == "4x2"
    panel = inspector.value_panel
    assert panel.page == "tensor"
    expected = {
        "shape": "4x2",
        "dtype": "float64",
        "mean": format_number(array.mean(), DIGITS),
        "std": format_number(array.std(), DIGITS),
        "min": format_number(array.min(), DIGITS),
        "max": format_number(array.max(), DIGITS),
        "nonfinite": "0",
    }
    assert {name: panel.text_of(name) for name in STAT_NAMES} == expected
    assert inspector.grad_panel.text_of("mean") == format_number(grad.mean(), DIGITS)
    model = panel.table_model
    assert (model.rowCount(), model.columnCount()) == array.shape
    for (row, column), entry in np.ndenumerate(array):
        index = model.index(row, column)
        assert model.data(index, VALUE_ROLE) == entry
        assert model.data(index) == format_number(entry, DIGITS)
    assert model.headerData(0, Qt.Orientation.Vertical, Qt.ItemDataRole.ToolTipRole) is None
    image = panel.heatmap.image
    assert (image.width(), image.height()) == (2, 4)
    assert len(panel.histogram.bar_rects()) == 30


def test_a_cut_table_says_so_in_its_header_tooltips(inspector):
    array = np.random.default_rng(0).normal(size=(300, 70))
    inspector.show_node(synthetic_node(), "forward", ValueView.from_array(array), None, [])
    model = inspector.value_panel.table_model
    assert (model.rowCount(), model.columnCount()) == (200, 50)
    tip = Qt.ItemDataRole.ToolTipRole
    assert model.headerData(5, Qt.Orientation.Vertical, tip) == "showing 200 of 300 rows"
    assert model.headerData(5, Qt.Orientation.Horizontal, tip) == "showing 50 of 70 columns"
    assert model.data(model.index(199, 49), VALUE_ROLE) == array[199, 49]
    assert inspector.text_of("layer") == "fc1 (Linear)"
    assert inspector.text_of("state") == "forward: value computed"
    assert inspector.grad_panel.text_of("message") == "no gradient yet"


def test_row_headers_of_a_3d_tensor_name_the_leading_indices(inspector):
    array = np.arange(24.0).reshape(2, 3, 4)
    inspector.show_node(synthetic_node((2, 3, 4)), "forward", ValueView.from_array(array), None, [])
    model = inspector.value_panel.table_model
    labels = [model.headerData(r, Qt.Orientation.Vertical) for r in range(model.rowCount())]
    assert labels == ["0, 0", "0, 1", "0, 2", "1, 0", "1, 1", "1, 2"]
    assert model.data(model.index(4, 3), VALUE_ROLE) == array[1, 1, 3]


def test_missing_value_and_gradient_say_why(inspector):
    node = synthetic_node((3,))
    inspector.show_node(node, "pending", None, None, [("x", "3")], takes_grad=False)
    assert inspector.text_of("state") == "pending: not computed yet"
    assert inspector.value_panel.page == "message"
    assert inspector.value_panel.text_of("message") == "not computed yet"
    assert inspector.grad_panel.text_of("message") == "takes no gradient"


def test_clear_empties_everything(inspector, softmax):
    graph, views = softmax
    show(inspector, graph, views, "scores")
    assert inspector.showing_node
    inspector.clear()
    assert not inspector.showing_node
    assert all(inspector.text_of(field) == "" for field in NODE_FIELDS)
    for panel in (inspector.value_panel, inspector.grad_panel):
        assert panel.page == "message"
        assert all(panel.text_of(name) == "" for name in (*STAT_NAMES, "message", "number"))
        assert panel.table_model.rowCount() == 0
        assert panel.heatmap.image is None and panel.histogram.bar_rects() == []


def test_heatmap_fills_its_panel_in_diverging_colours_symmetric_around_zero(qtbot):
    array = np.array([[-2.0, 0.0, 1.0], [2.0, -1.0, 0.5]])
    widget = HeatmapWidget()
    qtbot.addWidget(widget)
    widget.resize(330, 260)
    widget.set_value(ValueView.from_array(array))
    assert widget.scale_colours == DIVERGING_COLOURS
    rect = widget.image_rect()
    assert rect.width() >= 330 - 10 and rect.height() > 150  # the panel, not a 3:2 box
    picture = widget.grab().toImage()

    def colour_at(row, column):
        centre = widget.cell_rect(row, column).center()
        return picture.pixel(int(centre.x()), int(centre.y())) & 0xFFFFFF

    assert colour_at(0, 0) == DIVERGING_COLOURS[0] & 0xFFFFFF  # -2: the low end
    assert colour_at(1, 0) == DIVERGING_COLOURS[HEAT_TOP] & 0xFFFFFF  # 2: the high end
    assert colour_at(0, 1) == DIVERGING_COLOURS[HEAT_ZERO] & 0xFFFFFF  # 0: the middle
    assert colour_at(0, 2) == DIVERGING_COLOURS[HEAT_ZERO + HEAT_ZERO // 2] & 0xFFFFFF
    widget.set_value(ValueView.from_array(array - array.min()))
    assert widget.scale_colours == SEQUENTIAL_COLOURS


def test_a_narrow_softmax_is_sequential_with_its_range_in_the_legend(qtbot):
    p = np.array([[0.43, 0.57], [0.5, 0.5]])
    widget = HeatmapWidget()
    qtbot.addWidget(widget)
    widget.resize(300, 220)
    widget.set_value(ValueView.from_array(p))
    assert widget.scale_colours == SEQUENTIAL_COLOURS
    assert SEQUENTIAL_COLOURS[0] & 0xFFFFFF != 0 and SEQUENTIAL_COLOURS[-1] & 0xFFFFFF != 0xFFFFFF
    assert widget.value.scale == (0.43, 0.57)  # the legend's ends: what the colours span
    picture = widget.grab().toImage()
    assert not picture.isNull()


def test_long_vectors_wrap_and_feature_maps_tile_the_panel(qtbot):
    widget = HeatmapWidget()
    qtbot.addWidget(widget)
    widget.resize(360, 260)
    widget.set_value(ValueView.from_array(np.arange(256.0)))
    rows = widget.value.layout.cells[0]
    assert rows > 1 and widget.image_rect().height() > 150  # wrapped, and as high as the panel
    maps = np.random.default_rng(0).normal(size=(4, 16, 8, 8))
    widget.set_value(ValueView.from_array(maps))
    assert widget.value.layout.grid == (4, 16)
    assert "4 x 16 maps of 8x8" in widget.readout()
    widget.grab()


def test_the_heatmap_reads_out_the_element_under_the_mouse_and_picks_it(qtbot):
    maps = np.random.default_rng(1).normal(size=(2, 3, 4, 5))
    widget = HeatmapWidget()
    qtbot.addWidget(widget)
    widget.resize(300, 240)
    widget.show()
    qtbot.waitExposed(widget)
    widget.set_value(ValueView.from_array(maps))
    index = (1, 2, 3, 4)
    point = widget.cell_rect(*widget.value.layout.cell_of(index)).center().toPoint()
    qtbot.mouseMove(widget, point)
    qtbot.waitUntil(lambda: widget.readout().startswith("[1, 2, 3, 4] = "))
    assert widget.readout() == f"[1, 2, 3, 4] = {format_number(maps[index], 6)}"
    with qtbot.waitSignal(widget.elementPicked) as picked:
        qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=point)
    assert picked.args == [index] and widget.picked == index


def test_picking_an_element_in_the_heatmap_works_it_out(inspector, tensor_graph):
    stepper, views, product, _ = tensor_graph
    show_stepped(inspector, stepper, views, product)
    panel = inspector.grad_panel
    panel.show_value(ValueView.from_array(stepper.grad_of(product.id)), "")
    panel.heatmap.elementPicked.emit((1, 2))
    assert inspector.picked == (1, 2)
    assert inspector.text_of("worked").splitlines()[0] == "element [1, 2] (picked)"
    assert panel.heatmap.picked == (1, 2)


def test_histogram_bars_follow_the_counts(qtbot):
    array = np.random.default_rng(1).normal(size=500)
    widget = HistogramWidget()
    qtbot.addWidget(widget)
    widget.resize(300, 200)
    view = ValueView.from_array(array)
    widget.set_value(view)
    heights = [rect.height() for rect in widget.bar_rects()]
    tallest = max(view.hist_counts)
    assert heights.index(max(heights)) == view.hist_counts.index(tallest)
    for height, count in zip(heights, view.hist_counts, strict=True):
        assert height == pytest.approx(max(heights) * count / tallest)
    lefts = [rect.left() for rect in widget.bar_rects()]
    assert lefts == sorted(lefts)
    assert not widget.grab().isNull()


# --- the chain rule's arithmetic, from a stepper ---------------------------------------------
def stepped(graph):
    """A stepper over `graph` run through its whole backward pass, and the graph's views."""
    stepper = Stepper(graph)
    stepper.run_to_end_of("backward")
    return stepper, GraphView.from_graph(graph)


def show_stepped(inspector, stepper, views, node):
    view = next(v for v in views.nodes if v.node_id == node.id)
    inputs = [(views.node(k).title, views.node(k).shape_text) for k in view.inputs]
    inspector.show_node(view, "backward", None, None, inputs, stepper=stepper)
    return view


@pytest.fixture
def tensor_graph():
    """y = mean((a * b) ** 3, axis=1): a power, a mean and a broadcasting multiply."""
    a = tg.Tensor(np.arange(6.0).reshape(2, 3) - 2.0, requires_grad=True, name="a")
    b = tg.Tensor(np.array([1.0, -2.0, 0.5]), requires_grad=True, name="b")
    product = a * b
    cube = product**3
    return (*stepped(tg.Graph(cube.mean(axis=1).sum())), product, cube)


def test_the_neurons_tanh_is_worked_out_with_its_numbers(inspector, neuron):
    graph, _ = neuron
    stepper, views = stepped(graph)
    tanh = next(n for n in graph.nodes if n.name == "o")
    show_stepped(inspector, stepper, views, tanh)
    worked = inspector.text_of("worked")
    assert "g = 1" in worked and "0.7071" in worked
    assert "dx = g * (1 - tanh(x)^2) = 1 * (1 - 0.7071^2) = 0.5" in worked
    assert inspector.text_of("received") == "n: add <- 0.5"
    mul = next(n for n in graph.nodes if n.name == "x1w1")
    show_stepped(inspector, stepper, views, mul)
    assert inspector.text_of("received").splitlines() == [
        "x1: input <- -1.5",
        "w1: parameter <- 1",
    ]
    assert "dy = g * x = 0.5 * 2 = 1" in inspector.text_of("worked")


def test_before_its_backward_step_a_node_says_the_numbers_come_later(inspector, neuron):
    graph, _ = neuron
    stepper, views = Stepper(graph), GraphView.from_graph(graph)
    show_stepped(inspector, stepper, views, graph.outputs[0])
    assert "backward step is done" in inspector.text_of("worked")
    assert inspector.text_of("received") == ""


def test_power_shows_its_exponent_and_mean_its_axis(inspector, tensor_graph):
    stepper, views, _, cube = tensor_graph
    show_stepped(inspector, stepper, views, cube)
    assert inspector.text_of("attributes") == "exponent = 3"
    assert "c = 3" in inspector.text_of("worked")
    show_stepped(inspector, stepper, views, stepper.graph.nodes[-2])
    assert inspector.text_of("attributes") == "axis = (1,), keepdims = False"
    assert "mean mixes elements" in inspector.text_of("worked")


def test_a_tensor_node_works_out_its_largest_gradient_element(inspector, tensor_graph):
    stepper, views, product, cube = tensor_graph
    grad = np.asarray(stepper.grad_of(cube.id))
    row, column = np.unravel_index(np.argmax(np.abs(grad)), grad.shape)
    x = float(np.asarray(product.data)[row, column])
    show_stepped(inspector, stepper, views, cube)
    lines = inspector.text_of("worked").splitlines()
    assert lines[0] == f"element [{row}, {column}] (largest |g|)"
    g, dx = format_number(grad[row, column]), format_number(3 * x**2 * grad[row, column])
    x_text = format_number(x) if x >= 0 else f"({format_number(x)})"
    assert lines[2] == f"dx = g * c * x^(c-1) = {g} * 3 * {x_text}^(3-1) = {dx}"
    assert inspector.text_of("received").startswith("mul <- 2x3 [")


def test_picking_a_table_cell_works_that_element_out(inspector, tensor_graph):
    stepper, views, product, _ = tensor_graph
    view = show_stepped(inspector, stepper, views, product)
    inspector.grad_panel.show_value(ValueView.from_array(stepper.grad_of(product.id)), "")
    table = inspector.grad_panel.table
    table.setCurrentIndex(table.model().index(1, 2))
    lines = inspector.text_of("worked").splitlines()
    assert view.op == "mul" and lines[0] == "element [1, 2] (picked)"
    g = format_number(np.asarray(stepper.grad_of(product.id))[1, 2])
    assert lines[2] == f"dx = g * y = {g} * 0.5 = {format_number(float(g) * 0.5)}"
    assert "summed over the broadcast axes" in lines[3]
    assert inspector.text_of("received").splitlines()[1].startswith("b: parameter <- 3 [")


def test_a_layer_shows_its_output_and_the_primitive_vjps_it_is_made_of(inspector):
    model = tg.nn.Sequential(tg.nn.Linear(3, 2), tg.nn.Tanh())
    x = tg.Tensor(np.ones((4, 3)), name="x")
    stepper, views = stepped(tg.Graph(model(x).sum()))
    group = next(g for g in views.groups if any(views.node(m).op == "matmul" for m in g.members))
    ids = [views.node(m).node_id for m in group.members]
    inspector.show_group(group, ids, stepper)
    assert inspector.showing_group and inspector.text_of("group") == group.long_title
    backward = inspector.text_of("backward").splitlines()
    assert "matmul: da = g @ b^T, db = a^T @ g" in backward
    assert backward[0].endswith(stepper.graph[ids[-1]].op.vjp_formula)
    assert "not computed" not in inspector.text_of("gradient")


def test_the_window_shows_the_arithmetic_and_a_collapsed_layer(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("TOPOGRAD_CACHE", str(tmp_path / "layouts"))
    window = MainWindow(recent=RecentFiles(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)))
    qtbot.addWidget(window)
    assert window.open_file(SAMPLES / "neuron.tg")
    window.actions.run_to_end.trigger()
    window.actions.step_backward.trigger()  # the first backward step: o, the tanh
    assert "= 1 * (1 - 0.7071^2) = 0.5" in window.inspector.text_of("worked")
    assert window.open_file(SAMPLES / "digits.tg")
    window.collapse_all()
    group = window.session.view.groups[0]
    window.scene.nodeSelected.emit(group.key)
    assert window.inspector.showing_group
    assert group.path in window.inspector.text_of("group")
    assert window.inspector.text_of("backward").count("\n") >= 1
    window.training.shutdown()
