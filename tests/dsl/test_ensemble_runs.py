"""Snapshot and independent ensembles are saved whole: every member's checkpoint and a listing
(ensemble.json) that `topograd eval --checkpoint <run folder>` reads. Truths: the accuracy the
run printed, the members' probabilities averaged here with numpy from their checkpoints, and
for an independent ensemble, a plain run of the same file with the member's seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import rebuilt, run_cli
from topograd.engine import Tensor

from topograd.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]

DATA = "data {{ dataset moons(n=240, noise=0.25)  val 0.2  test 0.3 }}"
SNAPSHOT = (
    DATA
    + """
network net {{ linear(16)  batchnorm  relu  linear{last} }}
train {{ loss {loss}  optimizer sgd(lr=0.1, momentum=0.9)  batch 32  seed 2
  ensemble snapshot(cycles=3, epochs_per_cycle=2, lr_max=0.1, last=2) }}
"""
)
INDEPENDENT = (
    DATA
    + """
network net {{ linear(16)  relu  linear{last} }}
train {{ loss {loss}  optimizer adam(lr=0.02)  epochs 4  batch 32  seed 5 {ensemble} }}
"""
)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def model_file(tmp_path, template, name, loss="cross_entropy", last="", **fields):
    path = tmp_path / f"{name}.tg"
    path.write_text(template.format(loss=loss, last=last, **fields))
    return path


def probabilities(path, checkpoint) -> tuple[np.ndarray, np.ndarray]:
    """The member's class probabilities on the test split, worked out here: its weights loaded
    into a freshly built model, the logits in eval mode, softmax (or sigmoid) with numpy."""
    built = rebuilt(path)
    load_checkpoint(checkpoint, built.model, rngs={})
    built.model.eval()
    test = built.data.splits.test
    logits = np.asarray(built.model(Tensor(test.x)).data, dtype=np.float64)
    if logits.shape[1] == 1:
        positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return np.stack([1.0 - positive, positive], axis=1), test.y
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True), test.y


def read(path):
    return json.loads(Path(path).read_text())


def test_a_snapshot_ensemble_is_saved_and_evaluated_later_as_the_run_scored_it(tmp_path, capsys):
    path = model_file(tmp_path, SNAPSHOT, "snap")
    out = run_cli(["run", str(path), "--no-progress", "--no-plots", "--metrics", "m.json"], capsys)
    folder = tmp_path / "runs" / "snap" / "1"
    metrics = read("m.json")
    listing = read(folder / "ensemble.json")
    assert metrics["ensemble"] == str(Path("runs/snap/1/ensemble.json"))
    assert listing["kind"] == "snapshot" and listing["split"] == "test"
    assert [m["checkpoint"] for m in listing["members"]] == [
        f"members/member_{i}.ckpt" for i in (1, 2, 3)
    ]
    # last=2: the ensemble averages the last two snapshots only
    assert [m["averaged"] for m in listing["members"]] == [False, True, True]
    assert [m["epoch"] for m in listing["members"]] == [2, 4, 6]
    assert f"topograd eval {path} --checkpoint runs/snap/1" in out.out

    probas = [probabilities(path, folder / m["checkpoint"]) for m in listing["members"]]
    y = probas[0][1]
    alone = [float((p.argmax(axis=1) == y).mean()) for p, _ in probas]
    assert alone == pytest.approx(metrics["snapshot_accuracies"], abs=0)
    averaged = np.mean([p for p, _ in probas[1:]], axis=0)
    here = float((averaged.argmax(axis=1) == y).mean())
    assert here == metrics["ensemble_accuracy"] == listing["test_accuracy"]

    for checkpoint in (folder, folder / "ensemble.json"):
        shown = run_cli(
            ["eval", str(path), "--checkpoint", str(checkpoint), "--metrics", "e.json"], capsys
        )
        evaluated = read("e.json")
        assert evaluated["test_accuracy"] == here
        assert [m["test_accuracy"] for m in evaluated["members"]] == alone
        assert [m["averaged"] for m in evaluated["members"]] == [False, True, True]
        assert f"{here:.4f}  mean of 2" in shown.out and "snapshot 3" in shown.out
    # the single model is still the final snapshot, in model.ckpt
    single = rebuilt(path)
    load_checkpoint(folder / "model.ckpt", single.model, rngs={})
    last = rebuilt(path)
    load_checkpoint(folder / "members" / "member_3.ckpt", last.model, rngs={})
    for a, b in zip(single.model.parameters(), last.model.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize(("loss", "last"), [("cross_entropy", ""), ("bce_with_logits", "(1)")])
def test_an_independent_ensemble_saves_each_member_as_its_own_run_would(
    tmp_path, capsys, loss, last
):
    ensemble = "ensemble independent(members=3)"
    path = model_file(tmp_path, INDEPENDENT, "ind", loss, last, ensemble=ensemble)
    run_cli(["run", str(path), "--no-progress", "--no-plots", "--metrics", "m.json"], capsys)
    folder = tmp_path / "runs" / "ind" / "1"
    metrics, listing = read("m.json"), read(folder / "ensemble.json")
    assert [m["seed"] for m in listing["members"]] == [5, 6, 7]
    assert all(m["averaged"] for m in listing["members"])

    probas = [probabilities(path, folder / m["checkpoint"]) for m in listing["members"]]
    y = probas[0][1]
    averaged = np.mean([p for p, _ in probas], axis=0)
    here = float((averaged.argmax(axis=1) == y).mean())
    assert here == metrics["ensemble_accuracy"]
    run_cli(["eval", str(path), "--checkpoint", str(folder), "--metrics", "e.json"], capsys)
    evaluated = read("e.json")
    assert evaluated["test_accuracy"] == here
    assert [m["test_accuracy"] for m in evaluated["members"]] == metrics["member_accuracies"]

    # member 2 is what a plain run of the file with seed 6 trains
    plain = model_file(tmp_path, INDEPENDENT, "plain", loss, last, ensemble="")
    run_cli(["run", str(plain), "--no-progress", "--no-plots", "--seed", "6"], capsys)
    ours, theirs = rebuilt(plain), rebuilt(plain)
    load_checkpoint(folder / "members" / "member_2.ckpt", ours.model, rngs={})
    load_checkpoint(tmp_path / "runs" / "plain" / "1" / "model.ckpt", theirs.model, rngs={})
    for a, b in zip(ours.model.parameters(), theirs.model.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def test_eval_of_a_run_folder_without_an_ensemble_uses_its_model(tmp_path, capsys):
    path = model_file(tmp_path, INDEPENDENT, "one", ensemble="")
    run_cli(["run", str(path), "--no-progress", "--no-plots", "--metrics", "m.json"], capsys)
    folder = tmp_path / "runs" / "one" / "1"
    run_cli(["eval", str(path), "--checkpoint", str(folder), "--metrics", "e.json"], capsys)
    assert read("e.json")["test_accuracy"] == read("m.json")["test_accuracy"]
    assert read("e.json")["checkpoint"] == str(folder / "model.ckpt")
    empty = tmp_path / "empty"
    empty.mkdir()
    err = run_cli(["eval", str(path), "--checkpoint", str(empty)], capsys, expected=2).err
    assert "without a model.ckpt or an ensemble.json" in err


def test_a_broken_listing_is_refused_with_the_reason(tmp_path, capsys):
    path = model_file(tmp_path, INDEPENDENT, "ind", ensemble="ensemble independent(members=2)")
    run_cli(["run", str(path), "--no-progress", "--no-plots"], capsys)
    folder = tmp_path / "runs" / "ind" / "1"
    (folder / "members" / "member_2.ckpt").unlink()
    err = run_cli(["eval", str(path), "--checkpoint", str(folder)], capsys, expected=2).err
    assert "member 'seed 6'" in err and "member_2.ckpt is missing" in err
    other = tmp_path / "other.json"
    other.write_text('{"not": "an ensemble"}')
    err = run_cli(["eval", str(path), "--checkpoint", str(other)], capsys, expected=2).err
    assert "is not an ensemble listing" in err


def test_an_ensemble_of_a_regression_is_refused_before_training(tmp_path, capsys):
    houses = ROOT / "samples" / "data" / "houses.csv"
    path = tmp_path / "reg.tg"
    path.write_text(
        f'data {{ dataset file("{houses}", label="price")  val 0.15  test 0.15 }}\n'
        "network price { linear(1) }\n"
        "train { loss mse  optimizer sgd(lr=0.05)  epochs 2  batch 32  seed 0\n"
        "  ensemble independent(members=2) }\n"
    )
    captured = run_cli(["run", str(path), "--no-progress"], capsys, expected=2)
    assert "reg.tg:4:3: error: an ensemble averages predicted class probabilities" in captured.err
    assert "epoch" not in captured.out  # nothing trained
    run_cli(["check", str(path)], capsys, expected=2)  # `check` says so too
