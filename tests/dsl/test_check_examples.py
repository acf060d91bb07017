"""`topograd check FILE --examples N`: the gradient check over inputs that hypothesis draws.

The truths: central differences (through the engine's one numeric core) on every example,
a VJP planted wrong for the test's duration that must be caught and shrunk, kinks that sit
exactly on a drawn value (hypothesis likes 0.0 and ties), and the per-example errors that the
check itself recorded, against which the reported worst is compared.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest
import topograd.dsl.gradient_search as gradient_search
from topograd.dsl.cli import main
from topograd.dsl.commands.common import load_spec
from topograd.dsl.inspect import network_subject
from topograd.engine.ops import OPS

from topograd import dsl

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

TANH_MLP = """
data { dataset moons(n=60)  val 0.2  test 0 }
network net {
  fc1 = linear(8)
  tanh
  fc2 = linear(8)
  tanh
  out = linear
}
train { loss cross_entropy  optimizer sgd(lr=0.1)  epochs 1  batch 8 }
"""

BN_DROPOUT_MLP = """
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

RELU_HINGE = """
data { dataset moons(n=60)  val 0.2  test 0 }
network net { linear(8) relu linear(8) relu linear }
train { loss hinge  optimizer sgd(lr=0.1)  epochs 1  batch 8 }
"""

POOLING = """
network pool(input=(1, 4, 4), classes=3) {
  conv2d(2, 3, padding=1)
  relu
  maxpool2d(2)
  flatten
  linear
}
"""

NEURON = """
graph neuron {
  input x = 2.0
  param w = -3.0
  param b = 6.88
  output o = tanh(x * w + b)
}
"""
RELU_GRAPH = "graph g {\n  input x = [1.0, 2.0]\n  output y = relu(x)\n}\n"
LOG_GRAPH = "graph g {\n  input x = [1.0, 2.0]\n  param w = 0.5\n  output o = log(x) * w\n}\n"
NEVER_FINITE = "graph g {\n  input x = 1.0\n  output o = log(x - 10)\n}\n"


@pytest.fixture
def model_file(tmp_path):
    def write(text: str, name: str = "model.tg") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


def check(capsys, *argv) -> tuple[int, str, str]:
    code = main(["check", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rows_of(out: str) -> dict[str, tuple[float, str]]:
    """The table's rows: gradient -> (worst relative error, ok/FAIL)."""
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) >= 4 and cells[-1] in ("ok", "FAIL"):
            rows[cells[0]] = (float(cells[-2]), cells[-1])
    return rows


def compared(out: str) -> int:
    return int(re.search(r"^(\d+) examples? compared", out, re.MULTILINE).group(1))


def plant(monkeypatch, name: str, wrong) -> None:
    """Replace op `name`'s VJP with `wrong(original, g, out, *xs)` for the test."""
    original = OPS[name].vjp

    def vjp(g, out, *xs, **attrs):
        return wrong(original, g, out, *xs, **attrs)

    monkeypatch.setitem(OPS, name, dataclasses.replace(OPS[name], vjp=vjp))


# --- passing files --------------------------------------------------------------------------------
def test_a_graph_sample_passes_with_every_leaf_reported(capsys):
    code, out, _ = check(capsys, f"{SAMPLES}/softmax_graph.tg", "--examples", "10")
    assert code == 0
    rows = rows_of(out)
    assert set(rows) == {"x", "y", "w1", "b1", "w2", "b2"}
    assert all(error < 1e-6 and status == "ok" for error, status in rows.values())
    assert compared(out) == 10
    assert "worst of 10 rel. error" in out
    assert out.splitlines()[-1].startswith("ok: 6 gradients match")


def test_a_network_sample_passes_with_every_parameter_reported(capsys):
    code, out, _ = check(capsys, f"{SAMPLES}/digits.tg", "--examples", "3")
    assert code == 0
    spec, _ = load_spec(SAMPLES / "digits.tg")
    parameters = set(network_subject(spec, 2).leaves)
    assert set(rows_of(out)) == parameters and len(parameters) == 10
    assert compared(out) == 3
    # batch norm refuses a batch of one in training mode: batches of 2 to 4 are drawn
    assert "3 drawn batches of 2 to 4 training examples" in out


def test_the_reported_worst_is_the_largest_error_over_the_examples(model_file, monkeypatch, capsys):
    seen: dict[str, list[float]] = {}
    real_compare = gradient_search.compare

    def recording(*args, **kwargs):
        results = real_compare(*args, **kwargs)
        for result in results:
            seen.setdefault(result.label, []).append(result.error)
        return results

    monkeypatch.setattr(gradient_search, "compare", recording)
    code, out, _ = check(capsys, model_file(BN_DROPOUT_MLP), "--examples", "6")
    assert code == 0
    rows = rows_of(out)
    assert set(rows) == set(seen)
    assert all(len(errors) == 6 for errors in seen.values())
    for name, (reported, _) in rows.items():
        assert reported == pytest.approx(max(seen[name]), rel=1e-2)


def test_the_same_seed_draws_the_same_examples(capsys):
    runs = [
        check(capsys, f"{SAMPLES}/softmax_graph.tg", "--examples", "8", "--seed", seed)[1]
        for seed in ("3", "3", "4")
    ]
    assert runs[0] == runs[1]
    assert rows_of(runs[0]) != rows_of(runs[2])


# --- failures are caught and shrunk ---------------------------------------------------------------
def test_a_wrong_vjp_in_a_network_is_shrunk_to_one_example(model_file, monkeypatch, capsys):
    plant(monkeypatch, "tanh", lambda original, g, out, x: (2 * original(g, out, x)[0],))
    path = model_file(TANH_MLP)
    code, out, err = check(capsys, path, "--examples", "20", "--seed", "1")
    assert code == 1 and "Traceback" not in err
    rows = rows_of(out)
    assert rows["fc1.weight"][1] == "FAIL" and rows["out.weight"][1] == "ok"  # after the tanh
    block = out[out.index("smallest failing input") :]
    assert "batch of 1: training example [0] (indices into the training split)" in block
    assert "seed 0 (dropout masks and checked components)" in block
    assert re.search(r"fc1\.weight: rel\. error [\d.e-]+; worst component \[\d+, \d+\]", block)
    assert f"topograd check {path} --examples 20 --batch 4 --tolerance 1e-06 --seed 1" in block


def test_a_failure_found_later_is_shrunk_to_the_smallest_batch(model_file, monkeypatch, capsys):
    # wrong only on batches of 3 or more (as a gradient not summed over the batch could be):
    # hypothesis starts from the smallest batch, finds a larger one that fails, and shrinks it
    def wrong_from_three(original, g, out, x):
        (right,) = original(g, out, x)
        return (2 * right if x.shape[0] >= 3 else right,)

    plant(monkeypatch, "tanh", wrong_from_three)
    code, out, _ = check(capsys, model_file(TANH_MLP), "--examples", "20")
    assert code == 1
    first = int(re.search(r"\(first at example (\d+)\)", out).group(1))
    assert first > 1
    assert "batch of 3: training examples [0, 1, 2]" in out
    assert "seed 0 (dropout masks" in out


def test_a_wrong_vjp_in_a_graph_prints_the_drawn_values(model_file, monkeypatch, capsys):
    plant(monkeypatch, "tanh", lambda original, g, out, x: (2 * original(g, out, x)[0],))
    code, out, _ = check(capsys, model_file(NEURON), "--examples", "20")
    assert code == 1
    block = out[out.index("smallest failing input") :]
    for name in ("x", "w", "b"):
        assert re.search(rf"^  {name} = -?\d", block, re.MULTILINE)
    assert re.search(r"^  b: rel\. error 0\.33: engine 2, central differences 1$", block, re.M)


# --- no false alarms: kinks and values outside a function's domain ------------------------------
@pytest.mark.parametrize("text", [RELU_HINGE, POOLING], ids=["relu_hinge", "max_pooling"])
def test_relu_and_max_pooling_networks_do_not_false_alarm(model_file, capsys, text):
    code, out, _ = check(capsys, model_file(text), "--examples", "30")
    assert code == 0, out
    assert compared(out) == 30


def test_a_kink_on_a_drawn_value_is_skipped_and_counted(model_file, capsys):
    # hypothesis draws x = 0 (ReLU's kink) first: the central difference there is 1/2
    code, out, _ = check(capsys, model_file(RELU_GRAPH), "--examples", "20")
    assert code == 0
    skipped = re.search(r"\((\d+) skipped: a kink within the step\)", out)
    assert skipped and int(skipped.group(1)) >= 1


def test_a_wrong_vjp_is_not_mistaken_for_a_kink(model_file, monkeypatch, capsys):
    plant(monkeypatch, "relu", lambda original, g, out, x: (1.5 * original(g, out, x)[0],))
    code, out, _ = check(capsys, model_file(RELU_GRAPH), "--examples", "20")
    assert code == 1
    assert "smallest failing input" in out


def test_outputs_that_are_not_finite_are_skipped_and_counted(model_file, capsys):
    code, out, _ = check(capsys, model_file(LOG_GRAPH), "--examples", "10")
    assert code == 0
    assert re.search(r"\d+ skipped: an output that is not finite", out)
    assert compared(out) == 10


def test_a_file_with_no_finite_example_says_so(model_file, capsys):
    code, _, err = check(capsys, model_file(NEVER_FINITE), "--examples", "5")
    assert code == 1
    assert "no example could be compared" in err and "not finite" in err
    assert "Traceback" not in err and "RuntimeWarning" not in err


# --- usage ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", ["0", "-3"])
def test_examples_must_be_positive(capsys, count):
    code, _, err = check(capsys, f"{SAMPLES}/neuron.tg", "--examples", count)
    assert code == 2
    assert f"--examples must be >= 1, got {count}" in err


def test_without_hypothesis_examples_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    monkeypatch.delitem(sys.modules, "topograd.dsl.gradient_search")
    monkeypatch.delattr(dsl, "gradient_search")
    code, _, err = check(capsys, f"{SAMPLES}/neuron.tg", "--examples", "5")
    assert code == 2
    assert "pip install hypothesis" in err
    assert main(["check", f"{SAMPLES}/neuron.tg"]) == 0  # the one-batch check needs none
