"""The notebook stepper widget: its traitlets follow the stepper, the front end's messages move
it, the inspector works the VJP out with the node's numbers, and widget.js renders and sends
the right messages in a real headless browser (skipped where there is no chromium)."""

import functools
import html
import http.server
import json
import pathlib
import re
import shutil
import subprocess
import threading

import numpy as np
import pytest

import topograd as tg

pytest.importorskip("anywidget")

from topograd.gui import widget as widget_module
from topograd.gui.explain import explain, number_text, vjp_arithmetic
from topograd.gui.widget import StepperWidget

SYNCED = ("svg", "inspector", "phase", "position", "total", "current", "selected")
SYNCED += ("can_step", "can_back", "error")
HARNESS = pathlib.Path(__file__).with_name("widget_harness.html")
TANH_VJP = "dx = g * (1 - tanh(x)^2) with g = 1, x = 0.8814, tanh(x) = 0.7071 -&gt; dx = 0.5"


@pytest.fixture
def neuron():
    """micrograd's neuron: o = tanh(x1*w1 + x2*w2 + b), b chosen so that o = 1/sqrt(2)."""
    x1 = tg.Tensor(2.0, requires_grad=True, name="x1")
    x2 = tg.Tensor(0.0, requires_grad=True, name="x2")
    w1 = tg.Tensor(-3.0, requires_grad=True, name="w1")
    w2 = tg.Tensor(1.0, requires_grad=True, name="w2")
    b = tg.Tensor(6.8813735870195432, requires_grad=True, name="b")
    o = (x1 * w1 + x2 * w2 + b).tanh()
    return {"o": o, "x1": x1, "w1": w1, "b": b}


def front_end_sends(widget, content):
    """Deliver `content` as the front end's model.send(content) arrives: a comm message."""
    widget._handle_msg(
        {"content": {"data": {"method": "custom", "content": content}}, "buffers": []}
    )


def test_forward_pass_shows_in_the_traitlets(neuron):
    widget = StepperWidget(neuron["o"])
    assert (widget.phase, widget.position, widget.total, widget.current) == ("ready", 0, 5, -1)
    assert widget.can_step and not widget.can_back
    for _ in range(5):
        widget.step()
    assert widget.stepper.forward_complete
    assert (widget.phase, widget.position, widget.total) == ("forward", 5, 5)
    assert widget.current == neuron["o"].id
    assert f'id="node-{neuron["o"].id}"' in widget.svg
    assert "0.7071" in widget.inspector and "tanh" in widget.inspector


def test_backward_pass_then_stepping_back(neuron):
    widget = StepperWidget(tg.Graph(neuron["o"]))
    widget.run_to_end_of_pass()
    assert (widget.phase, widget.position) == ("forward", 5)
    widget.run_to_end_of_pass()  # at the end of the forward pass: the whole backward pass
    assert (widget.phase, widget.position, widget.total) == ("finished", 15, 15)
    assert not widget.can_step and widget.can_back
    widget.step_back()
    assert (widget.phase, widget.position, widget.total) == ("backward", 14, 15)
    assert widget.can_step
    widget.reset()
    assert (widget.phase, widget.position, widget.total, widget.current) == ("ready", 0, 5, -1)


def test_inspector_works_out_the_tanh_vjp(neuron):
    widget = StepperWidget(neuron["o"])
    widget.run_to_end_of_pass()
    widget.run_to_end_of_pass()
    widget.select(neuron["o"].id)
    assert widget.selected == neuron["o"].id
    assert "0.7071" in widget.inspector and "0.5" in widget.inspector
    assert TANH_VJP in widget.inspector
    widget.step_back()  # a move: the inspector follows the current step again
    assert widget.selected == -1


def test_front_end_messages_move_the_widget(neuron):
    widget = StepperWidget(neuron["o"])
    front_end_sends(widget, {"action": "step"})
    front_end_sends(widget, {"action": "step"})
    assert widget.position == 2
    front_end_sends(widget, {"action": "back"})
    assert widget.position == 1
    front_end_sends(widget, {"action": "end_of_pass"})
    assert (widget.phase, widget.position) == ("forward", 5)
    front_end_sends(widget, {"action": "select", "node": neuron["x1"].id})
    assert widget.selected == neuron["x1"].id and "x1 (parameter)" in widget.inspector
    front_end_sends(widget, {"action": "reset"})
    assert (widget.position, widget.selected) == (0, -1)


def test_a_bad_message_sets_error_and_the_next_move_clears_it(neuron):
    widget = StepperWidget(neuron["o"])
    front_end_sends(widget, {"action": "fly"})
    assert "unknown action 'fly'" in widget.error
    front_end_sends(widget, {"action": "select", "node": 10**9})
    assert "has no node" in widget.error
    front_end_sends(widget, {"action": "step"})
    assert widget.error == "" and widget.position == 1


def test_get_state_holds_the_synced_traitlets_and_the_module(neuron):
    widget = StepperWidget(neuron["o"])
    widget.step()
    state = widget.get_state()
    assert set(SYNCED) <= set(state)
    assert (state["phase"], state["position"], state["current"]) == ("forward", 1, widget.current)
    js = pathlib.Path(widget_module.__file__).with_name("widget.js").read_text()
    assert state["_esm"] == js and "export default" in js
    assert ".tg-stepper" in state["_css"]


def test_it_takes_a_tensor_a_graph_or_a_stepper(neuron):
    stepper = tg.Stepper(tg.Graph(neuron["o"]))
    stepper.step()
    assert StepperWidget(stepper).position == 1
    with pytest.raises(ValueError, match="pass grad to the Stepper"):
        StepperWidget(stepper, grad=1.0)
    with pytest.raises(TypeError, match="got list"):
        StepperWidget([1.0])
    x = tg.Tensor([1.0, 2.0], requires_grad=True, name="x")
    widget = StepperWidget(x * 3.0, grad=[1.0, -1.0])
    widget.run_to_end_of_pass()
    widget.run_to_end_of_pass()
    assert widget.stepper.grad_of(x.id).tolist() == [3.0, -3.0]


def test_explain_writes_attributes_tensors_and_escapes_html():
    x = tg.Tensor(np.arange(6.0).reshape(2, 3) - 2.0, requires_grad=True, name="<x>")
    y = tg.functional.leaky_relu(x, 0.1).sum(axis=1)
    stepper = tg.Stepper(tg.Graph(y))
    text = explain(stepper, y.inputs[0].id)
    assert "x if x &gt; 0 else slope * x" in text and "slope = 0.1" in text
    assert "not computed yet" in text and "&lt;x&gt;" in explain(stepper, x.id)
    assert vjp_arithmetic(stepper, y.id) is None
    stepper.run_to_end_of("backward")
    worked = vjp_arithmetic(stepper, y.inputs[0].id)
    assert worked.startswith("dx = g * (1 if x > 0 else slope) with g = 2x3 [1, 1, 1, 1, ...]")
    assert worked.endswith("-> dx = 2x3 [0.1, 0.1, 0.1, 1, ...] mean 0.55")
    assert number_text(np.float32(2) ** -0.5) == "0.7071"


# --- the front end in a real browser -------------------------------------------------------
def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def served(tmp_path):
    """`tmp_path` served over HTTP on 127.0.0.1 (ES modules do not load from file://)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def browser_facts(directory, url) -> dict:
    """Load the harness in headless chromium and read the JSON it wrote into #result."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",  # no connections out of this machine
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--dump-dom",
        "--virtual-time-budget=5000",
        f"--user-data-dir={directory / 'profile'}",
        f"{url}/harness.html",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    match = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.S)
    assert match, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(html.unescape(match.group(1)))


@pytest.mark.skipif(chromium() is None, reason="no chromium to run widget.js in")
def test_widget_js_in_a_headless_browser(neuron, served):
    directory, url = served
    widget = StepperWidget(neuron["o"])
    state = {name: widget.get_state()[name] for name in SYNCED}
    widget.step()
    state["next_svg"] = widget.svg + "<!-- next picture -->"
    state["next_marker"] = "next picture"
    state["click_node"] = neuron["w1"].id
    widget.reset()
    (directory / "state.js").write_text(f"export default {json.dumps(state)};\n")
    shutil.copy(pathlib.Path(widget_module.__file__).with_name("widget.js"), directory)
    shutil.copy(HARNESS, directory / "harness.html")

    facts = browser_facts(directory, url)

    assert "error_thrown" not in facts, facts
    assert facts["buttons"] == [
        ["step", False],
        ["back", True],
        ["end_of_pass", False],
        ["reset", True],
    ]
    assert facts["status"] == "ready · step 0/5" and "Step, or click" in facts["inspector"]
    assert facts["boxes"] == len(widget.stepper.graph.nodes)
    w1 = neuron["w1"].id
    assert facts["sent"] == [
        {"action": "step"},
        {"action": "select", "node": w1},
        {"action": "step"},
    ]
    assert facts["back_enabled"] and facts["error"] == "boom"
    assert facts["selected"] == facts["selected_after_redraw"] == f"node-{w1}"
    assert facts["has_next_svg"] and facts["listeners_left"] == 0
    for message in facts["sent"]:  # what the browser sent, handled by Python
        front_end_sends(widget, message)
    assert (widget.position, widget.selected) == (2, -1)
