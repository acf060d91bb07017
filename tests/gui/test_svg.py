"""The SVG picture of a graph (gui.svg), drawn without Qt: what each box says, how it looks
while stepping, collapsed layers, escaping, and that dot and the fallback both draw it."""

import itertools
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from topograd.gui import svg
from topograd.gui.notebook import draw
from topograd.gui.svg import document_size, graph_svg

import topograd as tg

SVG = "{http://www.w3.org/2000/svg}"


def neuron():
    """micrograd's neuron: o = tanh(x1*w1 + x2*w2 + b), its leaves and n by name."""
    x1 = tg.Tensor(2.0, requires_grad=True, name="x1")
    w1 = tg.Tensor(-3.0, requires_grad=True, name="w1")
    x2 = tg.Tensor(0.0, requires_grad=True, name="x2")
    w2 = tg.Tensor(1.0, requires_grad=True, name="w2")
    b = tg.Tensor(6.8813735870195432, requires_grad=True, name="b")
    n = (x1 * w1 + x2 * w2 + b).named("n")
    o = n.tanh().named("o")
    return o, {"x1": x1, "w1": w1, "x2": x2, "w2": w2, "b": b, "n": n, "o": o}


def mlp():
    """A small Sequential's loss: layers sequential.0 (Linear), .1 (Tanh), .2 (Linear)."""
    tg.manual_seed(0)
    model = tg.nn.Sequential(tg.nn.Linear(3, 4), tg.nn.Tanh(), tg.nn.Linear(4, 1))
    x = tg.Tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], name="x")
    return tg.Graph((model(x) ** 2).mean().named("loss"))


def parse(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    return root


def box(root: ET.Element, element_id: str) -> ET.Element:
    found = root.find(f".//{SVG}g[@id='{element_id}']")
    assert found is not None, f"no element {element_id}"
    return found


def lines(group: ET.Element) -> list[str]:
    """The text lines drawn in a box, top to bottom."""
    return [text.text for text in group.iter(f"{SVG}text")]


def node_boxes(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if "node" in g.get("class", "").split()]


@pytest.mark.parametrize("use_dot", [True, False])
def test_the_neuron_says_data_and_grad_in_every_box(use_dot):
    o, named = neuron()
    named["n"].retain_grad()
    o.backward(retain_graph=True)
    picture = draw(o, use_dot=use_dot)
    root = parse(picture.svg)
    width, height = document_size(picture.svg)
    assert root.get("width") == f"{width:.0f}" and root.get("height") == f"{height:.0f}"
    assert len(root.get("viewBox").split()) == 4
    texts = {name: lines(box(root, f"node-{t.id}")) for name, t in named.items()}
    assert all(name == texts[name][0] for name in named)
    assert "data 0.7071" in texts["o"]
    assert "grad -1.5" in texts["x1"]
    assert "grad 1" in texts["w1"]
    assert "grad 0.5" in texts["n"]
    assert texts["x1"][1] == "parameter · scalar"
    assert texts["o"][1] == "tanh · scalar"


def test_a_graph_shows_the_gradients_its_backward_pass_kept():
    o, named = neuron()
    graph = tg.Graph(o)
    graph.backward()
    root = parse(graph_svg(graph))
    assert "grad 0.5" in lines(box(root, f"node-{named['n'].id}"))
    assert "grad 1" in lines(box(root, f"node-{o.id}"))


def test_a_plain_backward_frees_the_graph_and_draw_says_how_to_keep_it():
    o, _ = neuron()
    o.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        draw(o)


@pytest.mark.parametrize("use_dot", [True, False])
def test_boxes_do_not_overlap_and_edges_have_arrowheads(use_dot):
    graph = mlp()
    graph.backward()
    root = parse(graph_svg(graph, use_dot=use_dot))
    rects = []
    for group in node_boxes(root):
        outline = group.find(f"{SVG}rect")
        rects.append([float(outline.get(k)) for k in ("x", "y", "width", "height")])
    assert len(rects) == len(graph)
    for (x0, y0, w0, h0), (x1, y1, w1, h1) in itertools.combinations(rects, 2):
        assert x0 + w0 <= x1 or x1 + w1 <= x0 or y0 + h0 <= y1 or y1 + h1 <= y0
    edges = root.find(f"{SVG}g[@class='edges']")
    inputs = sum(len(node.inputs) for node in graph.nodes)
    assert len(edges.findall(f"{SVG}polyline")) == len(edges.findall(f"{SVG}polygon")) == inputs


def test_inputs_are_on_top_by_default_and_on_the_left_across():
    o, named = neuron()
    graph = tg.Graph(o)

    def corner(text: str, node) -> tuple[float, float]:
        outline = box(parse(text), f"node-{node.id}").find(f"{SVG}rect")
        return float(outline.get("x")), float(outline.get("y"))

    down, across = graph_svg(graph, use_dot=False), graph_svg(graph, rankdir="LR", use_dot=False)
    assert corner(down, named["x1"])[1] < corner(down, o)[1]
    assert corner(across, named["x1"])[0] < corner(across, o)[0]
    with pytest.raises(ValueError, match="rankdir must be 'TB' or 'LR', got 'BT'"):
        graph_svg(graph, rankdir="BT")


def test_tooltips_give_the_formula_and_its_vjp():
    o, _ = neuron()
    tooltip = box(parse(graph_svg(tg.Graph(o))), f"node-{o.id}").find(f"{SVG}title").text
    assert "formula: tanh(x)" in tooltip
    assert "VJP: dx = g * (1 - tanh(x)^2)" in tooltip


def test_states_and_the_current_node_style_the_boxes():
    o, named = neuron()
    graph = tg.Graph(o)
    states = {named["x1"].id: "forward", o.id: "backward"}
    root = parse(graph_svg(graph, states=states, current=named["n"].id))
    assert "forward" in box(root, f"node-{named['x1'].id}").get("class").split()
    assert "backward" in box(root, f"node-{o.id}").get("class").split()
    pending = box(root, f"node-{named['b'].id}")
    assert "pending" in pending.get("class").split()
    assert pending.find(f"{SVG}rect").get("stroke-dasharray")
    current = box(root, f"node-{named['n'].id}")
    assert "current" in current.get("class").split()
    assert current.find(f"{SVG}rect").get("id") == "current"
    assert len(root.findall(".//*[@id='current']")) == 1


def test_without_states_no_box_is_styled_as_a_step():
    o, _ = neuron()
    root = parse(graph_svg(tg.Graph(o)))
    for group in node_boxes(root):
        assert not {"pending", "forward", "backward", "current"} & set(group.get("class").split())
    assert root.find(".//*[@id='current']") is None


def test_bad_states_and_unknown_current_nodes_are_refused():
    o, _ = neuron()
    graph = tg.Graph(o)
    with pytest.raises(ValueError, match=f"state of node {o.id} must be one of"):
        graph_svg(graph, states={o.id: "done"})
    with pytest.raises(ValueError, match="current node id -1 is not a node of this graph"):
        graph_svg(graph, current=-1)


def test_collapsed_layers_are_one_box_each_with_their_op_count():
    graph = mlp()
    root = parse(graph_svg(graph, collapsed=True))
    layers = {g.get("id"): lines(g) for g in node_boxes(root) if "layer" in g.get("class")}
    assert layers == {
        "layer-sequential.0": ["0", "Linear · 4 ops"],
        "layer-sequential.1": ["1", "Tanh · 1 op"],
        "layer-sequential.2": ["2", "Linear · 4 ops"],
    }
    assert len(node_boxes(root)) == 3 + 3  # the layers, and x, power and mean outside them
    assert not root.findall(f".//{SVG}g[@class='layer-frame']")


def test_some_layers_collapse_and_the_others_are_labelled_frames():
    graph = mlp()
    root = parse(graph_svg(graph, collapsed=["sequential.1"]))
    assert [g.get("id") for g in node_boxes(root) if "layer" in g.get("class")] == [
        "layer-sequential.1"
    ]
    frames = root.findall(f".//{SVG}g[@class='layer-frame']")
    assert sorted(lines(frame)[0] for frame in frames) == ["0 (Linear)", "2 (Linear)"]
    with pytest.raises(
        ValueError, match=r"no layer 'decoder' of this graph \(layers: sequential\.0, "
    ):
        graph_svg(graph, collapsed=["decoder"])


def test_the_current_node_inside_a_collapsed_layer_highlights_the_layer():
    graph = mlp()
    tanh = next(node for node in graph.nodes if node.op is not None and node.op.name == "tanh")
    states = {node.id: "backward" for node in graph.nodes}
    root = parse(graph_svg(graph, collapsed=True, current=tanh.id, states=states))
    layer = box(root, "layer-sequential.1")
    assert {"current", "backward"} <= set(layer.get("class").split())


def test_a_big_graph_collapses_its_layers_unless_told_otherwise(monkeypatch):
    graph = mlp()
    monkeypatch.setattr(svg, "BIG_GRAPH", 5)
    assert box(parse(graph_svg(graph, use_dot=False)), "layer-sequential.0") is not None
    expanded = parse(graph_svg(graph, collapsed=False, use_dot=False))
    assert len(node_boxes(expanded)) == len(graph)


def test_given_values_and_gradients_win_and_nonfinite_ones_are_red():
    o, named = neuron()
    graph = tg.Graph(o)
    graph.backward()
    values = {o.id: np.array(np.nan)}
    grads = {named["n"].id: None, named["x1"].id: np.array([1.0, np.inf])}
    root = parse(graph_svg(graph, values=values, grads=grads))
    red = box(root, f"node-{o.id}").find(f"{SVG}text[@class='nonfinite']")
    assert red.text == "data nan" and red.get("fill") == svg.ALARM_TEXT
    assert not [line for line in lines(box(root, f"node-{named['n'].id}")) if "grad" in line]
    x1 = box(root, f"node-{named['x1'].id}").find(f"{SVG}text[@class='nonfinite']")
    assert x1.text == "grad mean 1 std 0 (1 non-finite)"


def test_tensors_are_summarized_by_mean_and_std():
    x = tg.Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True, name="x")
    (x * x).sum().backward()
    root = parse(draw(x, use_dot=False).svg)
    assert lines(box(root, f"node-{x.id}")) == [
        "x",
        "parameter · 2x2",
        "data mean 2.5 std 1.1",
        "grad mean 5 std 2.2",
    ]


def test_text_is_escaped():
    x = tg.Tensor(1.0, requires_grad=True, name="<a&b>")
    picture = draw((x * 2).named('say "hi"'), use_dot=False)
    assert "&lt;a&amp;b&gt;" in picture.svg
    root = parse(picture.svg)
    assert lines(box(root, f"node-{x.id}"))[0] == "<a&b>"
    assert 'say "hi"' in [line for g in node_boxes(root) for line in lines(g)]


def test_long_lines_are_cut_to_the_box():
    x = tg.Tensor(1.0, name="a_rather_long_name_" * 4)
    root = parse(draw(x * 2, use_dot=False).svg)
    title = lines(box(root, f"node-{x.id}"))[0]
    assert title.endswith("…") and len(title) * svg.CHAR_WIDTH <= svg.MAX_BOX_WIDTH


def test_given_gradients_keep_their_row_before_any_arrives():
    o, _ = neuron()
    graph = tg.Graph(o)

    def height(**options) -> float:
        outline = box(parse(graph_svg(graph, **options)), f"node-{o.id}").find(f"{SVG}rect")
        return float(outline.get("height"))

    before = height()
    assert height(grads={}) == height(grads={o.id: np.array(1.0)}) == before + svg.LINE_HEIGHT
