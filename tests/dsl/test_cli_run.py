"""`topograd run`, `eval` and `search`, through the command line's entry point.

The truths come from outside the commands: the engine's own `fit`, `evaluate`,
`snapshot_ensemble` and checkpoint loader run on objects built from the same file, a run
with a single optimizer for the first entry of a comparison, and micrograd's neuron worked
by hand (o = tanh(0.8814) = 1/sqrt(2), so 1 - o^2 = 1/2).
"""

from __future__ import annotations

import csv
import json
import math

import pytest
from cli_helpers import rebuilt
from cli_helpers import run_cli as metrics_of
from topograd.dsl import load, read_source
from topograd.dsl.build import build

from topograd.train import evaluate, fit, load_checkpoint, save_checkpoint, snapshot_ensemble

PNG = b"\x89PNG\r\n\x1a\n"

MOONS = """
let width = {width}
let lr = 0.05
data {{ dataset moons(n=120)  val 0.2  test 0.2 }}
network net {{ linear(width)  relu  linear }}
train {{ loss cross_entropy  optimizer {optimizer}  {extra}  batch 32  seed 0 }}
"""

NEURON = """
graph neuron {
  input x1 = 2.0  input x2 = 0.0
  param w1 = -3.0  param w2 = 1.0  param b = 6.8813735870195432
  output o = tanh(x1*w1 + x2*w2 + b)
}
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Every command writes under runs/ of the current folder: keep it in tmp_path."""
    monkeypatch.chdir(tmp_path)


def model_file(tmp_path, name="moons", width=8, optimizer="adam(lr=lr)", extra="epochs 3"):
    path = tmp_path / f"{name}.tg"
    path.write_text(MOONS.format(width=width, optimizer=optimizer, extra=extra))
    return path


def read_json(path):
    return json.loads(path.read_text())


def test_run_reports_the_historys_numbers_and_a_checkpoint_eval_agrees(tmp_path, capsys):
    path = model_file(tmp_path)
    argv = ["run", str(path), "--epochs", "2", "--no-progress", "--metrics", "m.json"]
    out = metrics_of(argv, capsys).out
    metrics = read_json(tmp_path / "m.json")

    # the same file trained here with the engine alone, with the --epochs override
    built = rebuilt(path)
    options = built.fit_options() | {"epochs": 2, "progress": False, "log": None}
    history = fit(
        built.model, built.data.splits.train, built.optimizer, val=built.data.splits.val, **options
    )
    assert metrics["epochs"] == 2 and metrics["stopped"] is None
    assert metrics["train_loss"] == history.train_loss[-1]
    assert metrics["train_accuracy"] == history.train_acc[-1]
    assert metrics["val_loss"] == history.val_loss[-1]
    assert metrics["val_accuracy"] == history.val_acc[-1]
    assert f"{metrics['test_loss']:.4f}" in out and f"{metrics['val_accuracy']:.4f}" in out

    # the checkpoint holds the trained weights: a fresh model loaded from it scores the same
    checkpoint = tmp_path / "runs" / "moons" / "1" / "model.ckpt"
    fresh = rebuilt(path)
    load_checkpoint(checkpoint, fresh.model, rngs={})
    loss, accuracy = evaluate(fresh.model, fresh.data.splits.test, fresh.loss)
    assert metrics["test_accuracy"] == accuracy and metrics["test_loss"] == pytest.approx(loss)
    assert (tmp_path / "runs" / "moons" / "1" / "loss.png").read_bytes()[:8] == PNG

    argv = ["eval", str(path), "--checkpoint", str(checkpoint), "--metrics", "e.json"]
    metrics_of(argv, capsys)
    evaluated = read_json(tmp_path / "e.json")
    assert evaluated["test_accuracy"] == metrics["test_accuracy"]
    assert evaluated["test_loss"] == pytest.approx(metrics["test_loss"])


def test_eval_refuses_a_checkpoint_of_another_network_or_a_damaged_one(tmp_path, capsys):
    path = model_file(tmp_path)
    other = rebuilt(model_file(tmp_path, name="wide", width=16))
    save_checkpoint(tmp_path / "wide.ckpt", other.model)
    (tmp_path / "junk.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    for checkpoint, reason in (
        ("wide.ckpt", "does not fit"),
        ("junk.ckpt", "corrupt"),
        ("missing.ckpt", "cannot read"),
    ):
        captured = metrics_of(["eval", str(path), "--checkpoint", checkpoint], capsys, 2)
        assert captured.err.startswith("topograd: ") and reason in captured.err


def test_a_list_of_optimizers_trains_each_from_the_same_start(tmp_path, capsys):
    both = model_file(tmp_path, name="both", optimizer="[sgd(lr=0.1), adam(lr=0.01)]")
    argv = ["run", str(both), "--no-progress", "--metrics", "both.json"]
    out = metrics_of(argv, capsys).out
    entries = read_json(tmp_path / "both.json")["optimizers"]
    assert [e["optimizer"] for e in entries] == ["sgd(lr=0.1)", "adam(lr=0.01)"]
    assert "sgd(lr=0.1)" in out and "adam(lr=0.01)" in out
    assert (tmp_path / "runs" / "both" / "1" / "compare.png").read_bytes()[:8] == PNG

    alone = model_file(tmp_path, name="alone", optimizer="sgd(lr=0.1)")
    argv = ["run", str(alone), "--no-progress", "--no-plots", "--metrics", "alone.json"]
    metrics_of(argv, capsys)
    single = read_json(tmp_path / "alone.json")
    for key in ("train_loss", "val_accuracy", "test_loss", "test_accuracy"):
        assert entries[0][key] == single[key], key
    assert entries[1]["train_loss"] != single["train_loss"]


def test_snapshot_ensemble_matches_the_engine(tmp_path, capsys):
    ensemble = "ensemble snapshot(cycles=2, epochs_per_cycle=2, lr_max=0.1)"
    path = model_file(tmp_path, optimizer="sgd(lr=0.1, momentum=0.9)", extra=ensemble)
    out = metrics_of(["run", str(path), "--no-progress", "--metrics", "s.json"], capsys).out
    metrics = read_json(tmp_path / "s.json")
    assert "ensemble of last 2" in out and metrics["epochs"] == 4

    built = rebuilt(path)
    options = built.fit_options()
    for name in ("epochs", "schedule", "checkpoint"):
        options.pop(name)
    result = snapshot_ensemble(
        built.model,
        built.data.splits.train,
        built.optimizer,
        cycles=2,
        epochs_per_cycle=2,
        lr_max=0.1,
        eval=built.data.splits.test,
        val=built.data.splits.val,
        progress=False,
        **(options | {"log": None}),
    )
    assert metrics["ensemble_accuracy"] == result.ensemble_accuracy
    assert metrics["snapshot_accuracies"] == result.snapshot_accuracies
    _, accuracy = evaluate(built.model, built.data.splits.test, built.loss)
    assert metrics["test_accuracy"] == accuracy == result.single_accuracy


def test_independent_ensemble_member_zero_is_the_single_run(tmp_path, capsys):
    path = model_file(tmp_path, extra="epochs 2  ensemble independent(members=2)")
    argv = ["run", str(path), "--no-progress", "--no-plots", "--metrics", "i.json"]
    metrics_of(argv, capsys)
    metrics = read_json(tmp_path / "i.json")
    alone = model_file(tmp_path, name="alone", extra="epochs 2")
    argv = ["run", str(alone), "--no-progress", "--no-plots", "--metrics", "a.json"]
    metrics_of(argv, capsys)
    assert metrics["member_accuracies"][0] == read_json(tmp_path / "a.json")["test_accuracy"]
    assert 0 <= metrics["ensemble_accuracy"] <= 1 and len(metrics["member_accuracies"]) == 2


def test_lr_range_test_suggests_an_lr_in_the_range_and_does_not_train(tmp_path, capsys):
    path = model_file(tmp_path, optimizer="sgd(lr=0.1)", extra="epochs 3")
    path.write_text(path.read_text() + "lr_range_test { start_lr 1e-4  end_lr 10  num_steps 40 }")
    out = metrics_of(["run", str(path), "--no-progress", "--metrics", "r.json"], capsys).out
    metrics = read_json(tmp_path / "r.json")
    assert 1e-4 <= metrics["suggested_lr"] <= 10
    assert f"{metrics['suggested_lr']:.3g}" in out and "epoch" not in out
    folder = tmp_path / "runs" / "moons" / "1"
    assert (folder / "lr_range_test.png").read_bytes()[:8] == PNG
    assert not (folder / "model.ckpt").exists()


def test_graph_file_prints_the_neurons_values_and_gradients(tmp_path, capsys):
    path = tmp_path / "neuron.tg"
    path.write_text(NEURON)
    out = metrics_of(["run", str(path)], capsys).out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    grads = {name: float(rows[name][-1]) for name in ("x1", "w1", "x2", "w2")}
    assert grads == pytest.approx({"x1": -1.5, "w1": 1.0, "x2": 0.5, "w2": 0.0}, abs=1e-9)
    assert float(rows["o"][-2]) == pytest.approx(math.sqrt(0.5), abs=1e-6)
    assert rows["o"][1] == "output" and rows["b"][1] == "param"


def test_a_diverging_run_exits_1_and_says_why(tmp_path, capsys):
    path = model_file(tmp_path, optimizer="sgd(lr=1e4)")
    argv = ["run", str(path), "--no-progress", "--no-plots", "--metrics", "d.json"]
    captured = metrics_of(argv, capsys, expected=1)
    stopped = read_json(tmp_path / "d.json")["stopped"]
    assert stopped in ("exploded", "non-finite loss") and stopped in captured.err


def test_search_ranks_trials_and_records_an_invalid_one_as_failed(tmp_path, capsys):
    path = model_file(tmp_path, extra="epochs 3")
    path.write_text(
        path.read_text() + "search { lr ~ loguniform(1e-3, 1e-1)  width ~ choice(0, 8)  epochs 1 }"
    )
    argv = ["search", str(path), "--trials", "3", "--seed", "1", "--no-progress"]
    out = metrics_of(argv, capsys).out
    with open(tmp_path / "runs" / "moons" / "1" / "search.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and "rank" in out
    assert {row["status"] for row in rows if row["width"] == "0"} == {"invalid"}
    finished = [row for row in rows if row["status"] == "ok"]
    assert finished and all(row["width"] == "8" for row in finished)
    assert any(row["width"] == "0" for row in rows)

    best = max(finished, key=lambda row: (float(row["value"]), -int(row["trial"])))
    assert f"let lr = {float(best['lr']):.6g}" in out and "let width = 8" in out
    # the trial's number is what one epoch of fit gives with those values
    source = read_source(path)
    built = build(load(source, {"lr": float(best["lr"]), "width": 8}), source)
    options = built.fit_options() | {"epochs": 1, "progress": False, "log": None}
    history = fit(
        built.model, built.data.splits.train, built.optimizer, val=built.data.splits.val, **options
    )
    assert float(best["value"]) == history.val_acc[-1]


def test_language_and_usage_errors_exit_2_without_a_traceback(tmp_path, capsys):
    broken = tmp_path / "broken.tg"
    broken.write_text("network net { linear( }")
    lets = tmp_path / "lets.tg"
    lets.write_text("let a = 1")
    neuron = tmp_path / "neuron.tg"
    neuron.write_text(NEURON)
    (tmp_path / "afile").write_text("")
    for argv in (
        ["run", str(broken)],
        ["search", str(broken)],
        ["eval", str(broken), "--checkpoint", "x.ckpt"],
        ["run", "missing.tg"],
        ["run", str(lets)],
        ["search", str(neuron)],
        ["run", str(model_file(tmp_path)), "--resume"],
        ["run", str(neuron), "--metrics", "afile/m.json"],
    ):
        captured = metrics_of(argv, capsys, expected=2)
        assert captured.err.strip(), argv
    assert not list(tmp_path.glob("afile*/*")) and not list(tmp_path.glob("**/*.tmp"))
