"""Model files for real tasks: one-output networks trained with `bce_with_logits` and `mse`,
a graph with several outputs stepped, and the progress bar kept out of logs.

The truths are independent of the commands: PyTorch's own `BCEWithLogitsLoss` and
`MSELoss` with `torch.optim.SGD` from the same initial weights (with the labels as a column,
as PyTorch users write them), the engine's `backward` from each output of a graph built by
hand, and a subprocess whose stderr is a pipe.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import rebuilt, run_cli
from topograd.dsl.commands.step import _stepped
from topograd.dsl.inspect import open_subject

import topograd as tg
from topograd.train import fit

# Full batches (batch > the 120 training rows): each epoch is one SGD step on the whole
# training split, so a step does not depend on the order fit shuffles the rows into.
ONE_OUTPUT = """
data {{ dataset moons(n=200, noise=0.2)  val 0.2  test 0.2 }}
network net {{ linear(8)  tanh  {last} }}
train {{
  loss {loss}
  optimizer sgd(lr=0.5)
  epochs {epochs}
  batch 1000
  seed 0
}}
"""

TWO_OUTPUTS = """
graph two {
  input x = 2.0
  input v = [1.0, -2.0, 0.5]
  param w = -0.7
  param b = 0.3
  h = x * w + b
  output o1 = tanh(h) * x
  output o2 = v * h * h
}
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def model_file(tmp_path, loss="bce_with_logits", last="linear(1)", epochs=5, name="moons"):
    path = tmp_path / f"{name}.tg"
    path.write_text(ONE_OUTPUT.format(loss=loss, last=last, epochs=epochs))
    return path


# --- point 1: (N,) targets meet (N, 1) outputs ---------------------------------------------------
def torch_losses(built, loss_name, steps):
    """The file's network in PyTorch with the engine's initial weights, trained `steps` full
    batches with torch's SGD and loss; the loss before each step and after the last."""
    torch = pytest.importorskip("torch")
    first, _, last = built.model  # linear, tanh, linear
    net = torch.nn.Sequential(
        torch.nn.Linear(first.in_features, first.out_features),
        torch.nn.Tanh(),
        torch.nn.Linear(last.in_features, last.out_features),
    ).double()
    with torch.no_grad():
        for mine, theirs in ((first, net[0]), (last, net[2])):
            theirs.weight.copy_(torch.tensor(mine.weight.data.T))  # torch stores (out, in)
            theirs.bias.copy_(torch.tensor(mine.bias.data))
    train = built.data.splits.train
    x = torch.tensor(train.x, dtype=torch.float64)
    y = torch.tensor(train.y, dtype=torch.float64).unsqueeze(1)  # labels as a column
    criterion = (
        torch.nn.BCEWithLogitsLoss() if loss_name == "bce_with_logits" else torch.nn.MSELoss()
    )
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = criterion(net(x), y)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = criterion(net(x), y).item()
    return losses, final


@pytest.mark.parametrize("loss", ["bce_with_logits", "mse"])
def test_a_one_output_network_trains_step_for_step_as_pytorch(tmp_path, capsys, loss):
    path = model_file(tmp_path, loss=loss)
    run_cli(["run", str(path), "--no-progress", "--no-plots", "--metrics", "m.json"], capsys)
    metrics = json.loads((tmp_path / "m.json").read_text())

    expected_steps, expected_final = torch_losses(rebuilt(path), loss, steps=5)
    # the engine's fit on the same file, step by step
    built = rebuilt(path)
    options = built.fit_options() | {"progress": False, "log": None}
    history = fit(built.model, built.data.splits.train, built.optimizer, **options)
    assert history.step_loss == pytest.approx(expected_steps, rel=0, abs=1e-10)
    # the command's final training loss: the weights after 5 steps, measured on the split
    assert metrics["epochs"] == 5 and metrics["stopped"] is None
    assert metrics["train_loss"] == pytest.approx(expected_final, rel=0, abs=1e-10)
    assert expected_steps[-1] < expected_steps[0]  # it learns
    assert 0 <= metrics["test_accuracy"] <= 1


@pytest.mark.parametrize("loss", ["bce_with_logits", "mse"])
def test_the_torch_backend_gives_the_numpy_metrics(tmp_path, capsys, loss):
    pytest.importorskip("torch")
    path = model_file(tmp_path, loss=loss)
    base = ["run", str(path), "--no-progress", "--no-plots"]
    run_cli([*base, "--metrics", "numpy.json"], capsys)
    run_cli([*base, "--metrics", "torch.json", "--backend", "torch"], capsys)
    ours = json.loads((tmp_path / "numpy.json").read_text())
    theirs = json.loads((tmp_path / "torch.json").read_text())
    for split in ("train", "val", "test"):
        assert theirs[f"{split}_loss"] == pytest.approx(ours[f"{split}_loss"], rel=1e-9)
        assert theirs[f"{split}_accuracy"] == ours[f"{split}_accuracy"]


@pytest.mark.parametrize("loss", ["bce_with_logits", "mse"])
@pytest.mark.parametrize("last", ["linear(1)", "linear"])  # given, or inferred from the loss
def test_check_graph_and_step_accept_a_one_output_network(tmp_path, capsys, loss, last):
    path = model_file(tmp_path, loss=loss, last=last)
    out = run_cli(["check", str(path)], capsys).out
    assert f"{loss} loss" in out and "ok:" in out
    run_cli(["step", str(path), "--all"], capsys)
    run_cli(["graph", str(path), "-o", str(tmp_path / "g.dot")], capsys)


@pytest.mark.parametrize("loss", ["bce_with_logits", "mse"])
def test_a_genuine_mismatch_is_reported_at_the_loss_line(tmp_path, capsys, loss):
    path = model_file(tmp_path, loss=loss, last="linear(3)")
    line = next(i for i, text in enumerate(path.read_text().split("\n"), 1) if "loss " in text)
    located = re.compile(rf"{re.escape(str(path))}:{line}:\d+: error: loss {loss}")
    check = run_cli(["check", str(path)], capsys, expected=2)
    assert located.search(check.err) and "(3,)" in check.err
    for extra in ([], ["--backend", "torch"]):
        run = run_cli(["run", str(path), "--no-progress", "--no-plots", *extra], capsys, 2)
        assert located.search(run.err)


# --- point 2: step backpropagates from every output ----------------------------------------------
def engine_gradients():
    """d(o1)/d leaf + d(sum(o2))/d leaf, each output's backward run on its own graph."""
    total = {}
    for which in ("o1", "o2"):
        leaves = {
            "x": tg.Tensor(2.0, requires_grad=True),
            "v": tg.Tensor(np.array([1.0, -2.0, 0.5]), requires_grad=True),
            "w": tg.Tensor(-0.7, requires_grad=True),
            "b": tg.Tensor(0.3, requires_grad=True),
        }
        h = leaves["x"] * leaves["w"] + leaves["b"]
        if which == "o1":
            (h.tanh() * leaves["x"]).backward()
        else:
            (leaves["v"] * h * h).backward(np.ones(3))
        for name, leaf in leaves.items():
            grad = np.zeros(leaf.shape) if leaf.grad is None else np.asarray(leaf.grad)
            total[name] = total.get(name, 0.0) + grad  # (o1 does not use v)
    return total


def test_step_backpropagates_from_the_sum_of_all_outputs(tmp_path, capsys):
    path = tmp_path / "two.tg"
    path.write_text(TWO_OUTPUTS)
    expected = engine_gradients()
    out = run_cli(["step", str(path), "--all"], capsys).out
    assert "backward from the sum of the outputs o1 + sum(o2)" in out
    printed = {}
    for line in out.splitlines():
        found = re.match(r"backward\s+\d+\s+(?:input|parameter)\s+(\w+)\s.*\bgrad (\S+)$", line)
        if found:
            printed[found.group(1)] = float(found.group(2))
    assert set(printed) == {"x", "w", "b"}  # v is a vector: printed as its statistics
    for name, value in printed.items():
        assert value == pytest.approx(float(expected[name]), rel=1e-5)

    # the gradients the stepped graph records, to the last digits
    looked_at, code = open_subject(path)
    assert code == 0
    graph, _ = _stepped(looked_at)
    graph.backward()
    for name, leaf in looked_at.leaves.items():
        np.testing.assert_allclose(graph.grads[leaf.id], expected[name], rtol=1e-12, atol=1e-14)


def test_step_of_one_output_still_starts_at_it(tmp_path, capsys):
    path = tmp_path / "one.tg"
    path.write_text("graph g {\n  param w = 3.0\n  output o = w * w\n}\n")
    out = run_cli(["step", str(path), "--all"], capsys).out
    assert "backward from o\n" in out and "parameter  w  shape scalar  value 3  grad 6" in out


# --- point 3: no progress bar in a log ------------------------------------------------------------
def test_run_draws_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path):
    path = model_file(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "topograd", "run", str(path), "--epochs", "1", "--no-plots"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    assert "epoch   1/1" in done.stdout  # the per-epoch line stays on stdout
