"""The terminal stepper's keys (`b`, `break`, `c`, `p`, `p!`, `h`) and the whole values of
`step --full`, `run --full` and `--metrics`. Truths: the values worked out here with numpy from
the file's own numbers, and the lines the stepper printed the first time a step was done."""

from __future__ import annotations

import io
import json
import re
import sys

import numpy as np
import pytest
from cli_helpers import run_cli

GRAPH = """graph small {
  input x = [[1.0, 2.0], [3.0, -1.0], [0.5, 0.25]]
  param w = [[0.5, -1.0, 0.25], [2.0, 0.25, -0.5]]
  param b = [0.1, -0.2, 0.3]
  h = relu(x @ w + b)
  output loss = sum(h * h) / 3
}
"""
BIG = """graph big {
  param a = randn(40, 30)
  output s = sum(a * a)
}
"""
NETWORK = """data { dataset moons(n=40) }
network net { fc1 = linear(8)  relu  fc2 = linear(8)  relu  out = linear }
train { loss cross_entropy  optimizer sgd(lr=0.1)  epochs 1  batch 8  seed 0 }
"""

X = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.25]])
W = np.array([[0.5, -1.0, 0.25], [2.0, 0.25, -0.5]])
B = np.array([0.1, -0.2, 0.3])
H = np.maximum(X @ W + B, 0.0)
GRAD_H = 2 * H / 3
GRAD_W = X.T @ (GRAD_H * (X @ W + B > 0))


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def model_file(tmp_path, text, name="small"):
    path = tmp_path / f"{name}.tg"
    path.write_text(text)
    return path


def step(path, capsys, monkeypatch, keys: list[str], *options) -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{key}\n" for key in keys)))
    return run_cli(["step", str(path), *options], capsys).out


def whole(array) -> str:
    return np.array2string(np.asarray(array), threshold=sys.maxsize, separator=" ")


def block(out: str, title: str) -> str:
    """The lines `p` printed for the node `title`: its title line (`h: relu, shape 3x3`) and
    its value and gradient, up to the next step or title line."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{title}: "))
    end = start + 1
    step_line = re.compile(r"^(forward|backward|back to|stopped|done|breakpoint|\()|, shape ")
    while end < len(lines) and not step_line.search(lines[end]):
        end += 1
    return "\n".join(lines[start:end])


def test_b_steps_back_to_the_exact_values_of_the_earlier_step(tmp_path, capsys, monkeypatch):
    path = model_file(tmp_path, GRAPH)
    # forward: matmul, add, relu (h), mul, sum, div: step to h, print it, go on, come back
    out = step(path, capsys, monkeypatch, ["", "", "p! h", "", "", "b", "b", "p! h", "q"])
    lines = out.splitlines()
    shown_h = next(line for line in lines if line.startswith("forward   3/6  relu  h"))
    assert lines.count(f"back to: {shown_h}") == 1
    printed = [
        block("\n".join(lines[i:]), "h") for i, line in enumerate(lines) if line.startswith("h: ")
    ]
    assert len(printed) == 2 and printed[0] == printed[1]
    assert f"value (3x3) =\n{whole(H)}" in printed[0]
    assert "grad: not reached yet" in printed[0]
    assert lines[-1] == "stopped after 3 forward steps, 0 backward steps"


def test_b_in_the_backward_pass_forgets_and_shows_again_the_same_gradient(
    tmp_path, capsys, monkeypatch
):
    path = model_file(tmp_path, GRAPH)
    keys = ["break w", "c", "p! w", "b", "p! w", "", "p! w", "q"]
    out = step(path, capsys, monkeypatch, keys)
    assert "breakpoint w (node): c runs to it" in out
    blocks = out.split("w: parameter")[1:]
    assert len(blocks) == 3
    reached = f"grad (2x3) =\n{whole(GRAD_W)}"
    assert reached in blocks[0] and reached in blocks[2]
    assert "grad: not reached yet (its backward step is ahead)" in blocks[1]
    assert f"value (2x3) =\n{whole(W)}" in blocks[1]


def test_breakpoints_stop_at_a_node_in_both_passes_and_c_runs_to_the_end(
    tmp_path, capsys, monkeypatch
):
    path = model_file(tmp_path, GRAPH)
    out = step(path, capsys, monkeypatch, ["break h", "break", "c", "c", "c", "", "x"])
    assert "breakpoint h (node)\n" in out
    stops = re.findall(r"breakpoint h:\n(\w+)\s+(\d+)", out)
    assert stops == [("forward", "3"), ("backward", "4")]
    assert "the end: no breakpoint reached; Enter ends, b steps back" in out
    assert out.rstrip().endswith("done: 6 forward steps, 9 backward steps")


def test_a_layer_breakpoint_stops_where_a_pass_enters_the_layer(tmp_path, capsys, monkeypatch):
    path = model_file(tmp_path, NETWORK, "net")
    out = step(
        path, capsys, monkeypatch, ["break fc2", "c", "c", "c", "p fc2", "q"], "--batch", "3"
    )
    stops = re.findall(r"breakpoint fc2:\n(\w+)\s+(\S+)\s+(\w+)\s+in net.fc2", out)
    assert [(phase, op) for phase, _, op in stops] == [("forward", "matmul"), ("backward", "add")]
    assert "breakpoint fc2 (layer)" in out
    # p of a layer: its output, the Linear's add, 3 rows of 8
    assert re.search(r"#\d+: add in net.fc2 \(Linear\), shape 3x8\nvalue \(3x8\) =\n\[\[", out)
    out = step(path, capsys, monkeypatch, ["break fc3", "p nothing", "q"])
    assert "no node or layer named 'fc3'; did you mean" in out and "fc2" in out


def test_p_summarises_a_large_tensor_and_p_bang_prints_all_of_it(tmp_path, capsys, monkeypatch):
    path = model_file(tmp_path, BIG, "big")
    out = step(path, capsys, monkeypatch, ["p a", "p! a", "q"])
    summary, full = out.split("a: parameter")[1:]
    assert "..." in summary and len(re.findall(r"-?\d\.\d+", summary)) < 200
    assert "..." not in full and len(re.findall(r"-?\d\.\d+(?:e[-+]\d+)?", full)) == 1200


def test_h_lists_the_keys_and_an_unknown_command_says_so(tmp_path, capsys, monkeypatch):
    path = model_file(tmp_path, GRAPH)
    out = step(path, capsys, monkeypatch, ["h", "?", "zap", "b", "b", "q"])
    assert out.count("keys (type one and press Enter):") == 2
    for key in ("Enter, n", "b ", "c ", "break NAME", "p [NAME]", "p! [NAME]", "h, ?", "q "):
        assert key in out
    assert "unknown command 'zap' (h lists the keys)" in out
    assert "back at the start: no step done" in out and "at the start: nothing to step back" in out


def test_step_full_prints_every_value_whole(tmp_path, capsys, monkeypatch):
    path = model_file(tmp_path, GRAPH)
    out = run_cli(["step", str(path), "--all", "--full"], capsys).out
    assert "forward   3/6  relu  h" in out and f"value (3x3) =\n{whole(H)}" in out
    assert f"grad (2x3) =\n{whole(GRAD_W)}" in out


def test_run_full_and_metrics_give_whole_values_up_to_the_limit(tmp_path, capsys):
    path = model_file(tmp_path, GRAPH)
    out = run_cli(["run", str(path), "--full", "--metrics", "m.json"], capsys).out
    assert f"h (value, shape (3, 3))\nvalue =\n{whole(H)}\ngrad =\n{whole(GRAD_H)}" in out
    records = {
        r["name"]: r for r in json.loads((tmp_path / "m.json").read_text())["graphs"]["small"]
    }
    np.testing.assert_allclose(records["h"]["values"], H, rtol=1e-15)
    np.testing.assert_allclose(records["w"]["grad_values"]["loss"], GRAD_W, rtol=1e-15)
    assert records["loss"]["values"] == pytest.approx(float(np.sum(H * H) / 3), rel=1e-15)

    big = model_file(tmp_path, BIG, "big")
    run_cli(["run", str(big), "--metrics", "b.json"], capsys)
    (a, s) = json.loads((tmp_path / "b.json").read_text())["graphs"]["big"]
    assert "values" not in a and "grad_values" not in a  # 1200 elements: over the limit
    assert set(a["value"]) == {"mean", "std", "min", "max"} and "values" in s
