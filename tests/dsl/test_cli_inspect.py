"""`topograd check`, `graph`, `step` and `gui`, run through the command line's entry point.

The truths come from outside the code under test: the neuron's values and gradients are
micrograd's (worked by hand from tanh), the step counts are the engine's own Graph, and a
deliberately wrong VJP must make the gradient check fail.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import shutil
import subprocess
import sys
import types

import pytest
import topograd.dsl.commands.graph as graph_command
from topograd.dsl import load
from topograd.dsl.build import build_graph
from topograd.dsl.cli import main
from topograd.engine.ops import OPS

from topograd import Graph

NEURON = """
graph neuron {
  input x1 = 2.0
  input x2 = 0.0
  param w1 = -3.0
  param w2 = 1.0
  param b = 6.8813735870195432
  x1w1 = x1 * w1
  x2w2 = x2 * w2
  n = x1w1 + x2w2 + b
  output o = tanh(n)
}
"""

MLP = """
data { dataset moons(n=60)  val 0.2  test 0 }
network net {
  fc1 = linear(8)
  batchnorm
  tanh
  dropout(drop=0.3)
  linear(8)
  relu
  out = linear
}
train { loss cross_entropy  optimizer sgd(lr=0.1)  l2 1e-3  epochs 1  batch 8 }
"""

# micrograd's neuron: o = tanh(x1 w1 + x2 w2 + b) = tanh(0.8814) = 1/sqrt(2), 1 - o^2 = 1/2
NEURON_VALUES = {"x1w1": -6.0, "x2w2": 0.0, "n": 0.8813735870195432, "o": math.sqrt(0.5)}
NEURON_GRADS = {"o": 1.0, "n": 0.5, "b": 0.5, "x1w1": 0.5, "x2w2": 0.5}
NEURON_GRADS |= {"x1": -1.5, "w1": 1.0, "x2": 0.5, "w2": 0.0}


@pytest.fixture
def neuron(tmp_path):
    path = tmp_path / "neuron.tg"
    path.write_text(NEURON)
    return path


@pytest.fixture
def mlp(tmp_path):
    path = tmp_path / "mlp.tg"
    path.write_text(MLP)
    return path


def check_rows(out: str) -> dict[str, tuple[float, str]]:
    """The check table's rows: name -> (relative error, ok/FAIL)."""
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[-1] in ("ok", "FAIL") and len(cells) >= 4:
            rows[cells[0]] = (float(cells[-2]), cells[-1])
    return rows


# --- check -----------------------------------------------------------------------------------
def test_check_passes_on_an_mlp_with_batchnorm_and_dropout(mlp, capsys):
    assert main(["check", str(mlp)]) == 0
    out = capsys.readouterr().out
    rows = check_rows(out)
    expected = {"fc1.weight", "fc1.bias", "1.weight", "1.bias", "4.weight", "4.bias"}
    assert expected | {"out.weight", "out.bias"} == set(rows)
    assert all(error < 1e-6 and status == "ok" for error, status in rows.values())
    assert "20 of 64*" in out  # the 8x8 weight is checked on a random subset, and says so
    assert out.splitlines()[-1].startswith("ok: 8 gradients match")


def test_check_passes_on_the_neuron(neuron, capsys):
    assert main(["check", str(neuron)]) == 0
    rows = check_rows(capsys.readouterr().out)
    assert set(rows) == {"x1", "x2", "w1", "w2", "b"}
    assert max(error for error, _ in rows.values()) < 1e-6


def test_check_fails_when_a_vjp_is_wrong(mlp, monkeypatch, capsys):
    def twice_the_tanh_vjp(g, out, x):
        return (2.0 * g * (1.0 - out * out),)

    monkeypatch.setitem(OPS, "tanh", dataclasses.replace(OPS["tanh"], vjp=twice_the_tanh_vjp))
    assert main(["check", str(mlp)]) == 1
    out = capsys.readouterr().out
    rows = check_rows(out)
    assert rows["fc1.weight"][1] == "FAIL" and rows["fc1.weight"][0] > 0.1
    assert rows["out.weight"][1] == "ok"  # after the tanh: its gradient is still right
    failed = next(line for line in out.splitlines() if line.startswith("FAILED"))
    assert "fc1.weight" in failed and "out.weight" not in failed


def test_check_reports_language_errors_with_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.tg"
    path.write_text("graph g { input x = 1.0  output y = tanhh(x) }")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.tg:1:37: error:" in err and "'tanhh'" in err and "Traceback" not in err


# --- graph -----------------------------------------------------------------------------------
def test_graph_writes_dot_with_layer_clusters(mlp, tmp_path, capsys):
    out = tmp_path / "net.dot"
    assert main(["graph", str(mlp), "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("digraph") and "subgraph cluster_" in text
    assert 'label="net.fc1 (Linear)"' in text and "fc1.weight: parameter" in text
    assert f"wrote {out} (" in capsys.readouterr().out


def test_graph_of_the_neuron_names_its_nodes(neuron, tmp_path):
    out = tmp_path / "neuron.dot"
    assert main(["graph", str(neuron), "-o", str(out)]) == 0
    text = out.read_text()
    for name in ("x1: ", "w1: parameter", "x1w1: mul", "o: tanh"):
        assert name in text
    assert text.count("->") == 9  # two into each mul and add, one into tanh


def test_graph_collapse_draws_one_box_per_layer(mlp, tmp_path):
    out = tmp_path / "net.dot"
    assert main(["graph", str(mlp), "-o", str(out), "--collapse"]) == 0
    text = out.read_text()
    assert "cluster" not in text and "matmul" not in text
    # weight, bias, matmul, add: the weight joins its layer though the l2 penalty uses it too
    assert 'label="net.fc1 (Linear)\\n4 nodes"' in text
    assert "parameter" not in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
def test_graph_renders_svg(neuron, tmp_path):
    out = tmp_path / "neuron.svg"
    assert main(["graph", str(neuron), "-o", str(out)]) == 0
    assert "<svg" in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["neuron.svg", "neuron.tg"]


def test_graph_refuses_an_unknown_suffix(neuron, tmp_path, capsys):
    out = tmp_path / "neuron.pdf"
    assert main(["graph", str(neuron), "-o", str(out)]) == 2
    assert not out.exists() and ".dot, .svg or .png" in capsys.readouterr().err


def test_graph_without_dot_says_how_to_get_it(neuron, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(graph_command.shutil, "which", lambda name: None)
    out = tmp_path / "neuron.svg"
    assert main(["graph", str(neuron), "-o", str(out)]) == 2
    assert "apt-get install graphviz" in capsys.readouterr().err and not out.exists()


def test_graph_leaves_no_file_when_dot_fails(neuron, tmp_path, monkeypatch, capsys):
    def broken(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "syntax error")

    monkeypatch.setattr(graph_command.shutil, "which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr(graph_command.subprocess, "run", broken)
    assert main(["graph", str(neuron), "-o", str(tmp_path / "neuron.png")]) == 1
    assert "syntax error" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["neuron.tg"]


# --- step ------------------------------------------------------------------------------------
def step_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if re.match(r"^(forward|backward)\s+\d", line)]


def test_step_all_shows_every_value_and_gradient(neuron, capsys):
    assert main(["step", str(neuron), "--all"]) == 0
    out = capsys.readouterr().out
    lines = step_lines(out)
    values, grads = {}, {}
    for line in lines:
        name = re.search(r"  (?:mul|add|tanh|input|parameter)  (\w+)  shape", line)
        value = float(re.search(r"value (\S+)", line).group(1))
        if name and line.startswith("forward"):
            values[name.group(1)] = value
        if name and line.startswith("backward"):
            grads[name.group(1)] = float(re.search(r"grad (\S+)", line).group(1))
    assert values == pytest.approx(NEURON_VALUES, abs=1e-5)
    assert grads == pytest.approx(NEURON_GRADS, abs=1e-5)
    assert "formula tanh(x)" in out and "vjp dx = g * (1 - tanh(x)^2)" in out

    engine_graph = Graph(build_graph(load(neuron).graphs[0]).outputs["o"])
    phases = [event.phase for event in engine_graph.steps()]
    forward, backward = phases.count("forward"), phases.count("backward")
    assert sum(line.startswith("forward") for line in lines) == forward == 5
    assert sum(line.startswith("backward") for line in lines) == backward == 10
    assert out.splitlines()[-1] == f"done: {forward} forward steps, {backward} backward steps"


def test_step_stops_when_asked(neuron, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n\nq\n"))
    assert main(["step", str(neuron)]) == 0
    out = capsys.readouterr().out
    assert len(step_lines(out)) == 3
    assert out.splitlines()[-1] == "stopped after 3 forward steps, 0 backward steps"


def test_step_shows_the_rest_at_the_end_of_input(neuron, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    assert main(["step", str(neuron), "--phase", "backward"]) == 0
    lines = step_lines(capsys.readouterr().out)
    assert len(lines) == 10 and all(line.startswith("backward") for line in lines)


def test_step_through_a_network_summarizes_tensors(mlp, capsys):
    assert main(["step", str(mlp), "--all", "--batch", "3", "--phase", "forward"]) == 0
    out = capsys.readouterr().out
    assert "in net.fc1 (Linear)" in out and "shape 3x8" in out
    assert re.search(r"value mean \S+ std \S+ min \S+ max \S+", out)


# --- gui -------------------------------------------------------------------------------------
def test_gui_without_qt_says_how_to_install_it(monkeypatch, capsys):
    for name in [m for m in sys.modules if m.startswith("topograd.gui.")]:
        monkeypatch.delitem(sys.modules, name)  # imported again, without Qt this time
    for name in [m for m in sys.modules if m.split(".")[0] in ("PySide6", "shiboken6")]:
        monkeypatch.setitem(sys.modules, name, None)  # importing Qt raises ImportError
    monkeypatch.setitem(sys.modules, "PySide6", None)
    assert main(["gui"]) == 2
    assert "needs PySide6: pip install 'topograd[gui]'" in capsys.readouterr().err


def test_gui_opens_the_app_with_the_options(monkeypatch, neuron, tmp_path):
    opened = []
    app = types.ModuleType("topograd.gui.app")
    app.main = lambda path, **options: opened.append((path, options))
    monkeypatch.setitem(sys.modules, "topograd.gui.app", app)
    shot = str(tmp_path / "out.png")
    assert main(["gui", str(neuron), "--steps", "3", "--screenshot", shot, "--collapse"]) == 0
    assert main(["gui"]) == 0
    assert opened == [
        (
            str(neuron),
            {"steps": 3, "screenshot": shot, "size": (1500, 920), "collapse": True},
        ),
        (None, {"steps": 0, "screenshot": None, "size": (1500, 920), "collapse": None}),
    ]


def test_gui_refuses_bad_arguments_before_opening_a_window(monkeypatch, neuron, tmp_path, capsys):
    app = types.ModuleType("topograd.gui.app")
    app.main = lambda *a, **k: pytest.fail("the window must not open")
    monkeypatch.setitem(sys.modules, "topograd.gui.app", app)
    assert main(["gui", str(tmp_path / "missing.tg")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["gui", str(neuron), "--steps", "2"]) == 2
    assert "--steps goes with --screenshot" in capsys.readouterr().err
