"""`topograd search` keeps its work: a run folder with search.json and search.csv written
after every trial, `--resume` that runs only the missing trials, and the best trial's model as
best.tg (the file with its `let` values) and best.ckpt (its weights). Truths: an uninterrupted
search of the same file, and `topograd run best.tg` trained for the search's epochs."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from cli_helpers import rebuilt, run_cli
from topograd.dsl.cli import main
from topograd.dsl.commands import search as search_command
from topograd.engine.train.search import (
    LogUniform,
    Trial,
    TrialResult,
    coarse_to_fine,
    random_search,
)

from topograd.train import load_checkpoint

REAL_FIT = search_command.fit

SEARCH = """# a two-stage search
let lr = 0.01   # the default
let width = 8
data { dataset moons(n=200, noise=0.2)  val 0.25  test 0.25 }
network net { linear(width)  relu  linear }
train { loss cross_entropy  optimizer adam(lr=lr)  epochs 9  batch 32  seed 0 }
search {
  lr ~ loguniform(1e-3, 0.5)
  width ~ choice(4, 8, 16)
  trials 3
  stages 2
  epochs 3
  seed 4
}
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def search_file(tmp_path, name="moons"):
    path = tmp_path / f"{name}.tg"
    path.write_text(SEARCH)
    return path


def rows(folder) -> list[dict]:
    """search.csv without its timings (the one column two runs of a search do not share)."""
    with open(folder / "search.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def interrupt_at(monkeypatch, call: int):
    """Make the `call`-th training of a trial (from 1) raise KeyboardInterrupt, as Ctrl-C does."""
    calls = []

    def fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return REAL_FIT(*args, **kwargs)

    monkeypatch.setattr(search_command, "fit", fit)
    return calls


def test_an_interrupted_search_resumes_to_the_uninterrupted_result(tmp_path, capsys, monkeypatch):
    path = search_file(tmp_path)
    run_cli(["search", str(path), "--no-progress", "--out", "whole"], capsys)
    whole = rows(tmp_path / "whole")
    assert len(whole) == 6 and {row["stage"] for row in whole} == {"0", "1"}

    calls = interrupt_at(monkeypatch, 5)
    assert main(["search", str(path), "--no-progress"]) == 130
    err = capsys.readouterr().err
    folder = tmp_path / "runs" / "moons" / "1"
    assert "interrupted after 4 of 6 trials" in err
    assert f"continue with: topograd search {path} --resume" in err
    assert rows(folder) == whole[:4]
    assert json.loads((folder / "run.json").read_text())["status"] == "interrupted"

    calls = interrupt_at(monkeypatch, 0)  # counts the trainings, never interrupts
    out = run_cli(["search", str(path), "--no-progress", "--resume"], capsys).out
    assert "resuming: 4 trials recorded" in out
    assert rows(folder) == whole  # stage 1's ranges came from the recorded stage 0
    assert len(calls) == 2  # trials 4 and 5 only
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "finished" and record["resumed"] is True


def test_only_the_missing_trials_are_trained_again(tmp_path, capsys, monkeypatch):
    path = search_file(tmp_path)
    interrupt_at(monkeypatch, 3)
    assert main(["search", str(path), "--no-progress"]) == 130
    capsys.readouterr()
    calls = interrupt_at(monkeypatch, 0)  # counts, never interrupts
    run_cli(["search", str(path), "--no-progress", "--resume"], capsys)
    assert len(calls) == 4  # trials 2..5; 0 and 1 were recorded


def test_the_best_trial_is_written_as_a_model_file_and_its_weights(tmp_path, capsys):
    path = search_file(tmp_path)
    out = run_cli(["search", str(path), "--no-progress"], capsys).out
    folder = tmp_path / "runs" / "moons" / "1"
    trials = json.loads((folder / "search.json").read_text())["trials"]
    best = max(
        (t for t in trials if t["result"]["status"] == "ok"),
        key=lambda t: (t["result"]["value"], -t["number"]),
    )
    text = (folder / "best.tg").read_text()
    assert f"let lr = {best['params']['lr']!r}   # the default" in text
    assert f"let width = {best['params']['width']}\n" in text
    assert text.endswith(SEARCH.split("let width = 8\n", 1)[1])  # the rest as it was
    assert f"# best: trial {best['number']}" in out

    # the checkpoint holds what training best.tg for the search's 3 epochs gives
    run_cli(
        ["run", str(folder / "best.tg"), "--epochs", "3", "--no-progress", "--out", "again"], capsys
    )
    ours, theirs = rebuilt(folder / "best.tg"), rebuilt(folder / "best.tg")
    load_checkpoint(folder / "best.ckpt", ours.model, rngs={})
    load_checkpoint(tmp_path / "again" / "model.ckpt", theirs.model, rngs={})
    for a, b in zip(ours.model.parameters(), theirs.model.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    run_cli(
        [
            "eval",
            str(folder / "best.tg"),
            "--checkpoint",
            str(folder / "best.ckpt"),
            "--split",
            "val",
            "--metrics",
            "e.json",
        ],
        capsys,
    )
    assert json.loads((tmp_path / "e.json").read_text())["val_accuracy"] == best["result"]["value"]

    # a resumed search whose best.ckpt went missing trains the best trial again, identically
    (folder / "best.ckpt").unlink()
    out = run_cli(["search", str(path), "--no-progress", "--resume"], capsys).out
    assert f"training trial {best['number']} again" in out
    again = rebuilt(folder / "best.tg")
    load_checkpoint(folder / "best.ckpt", again.model, rngs={})
    for a, b in zip(ours.model.parameters(), again.model.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def test_resume_refuses_what_would_mix_two_searches(tmp_path, capsys, monkeypatch):
    path = search_file(tmp_path)
    err = run_cli(["search", str(path), "--resume"], capsys, expected=2).err
    assert "no earlier search of" in err and "start it without --resume" in err
    interrupt_at(monkeypatch, 2)
    assert main(["search", str(path), "--no-progress"]) == 130
    capsys.readouterr()
    err = run_cli(["search", str(path), "--resume", "--seed", "5"], capsys, expected=2).err
    assert "recorded with --seed 4, not 5" in err
    err = run_cli(["search", str(path), "--resume", "--trials", "2"], capsys, expected=2).err
    assert "recorded with --trials 3, not 2" in err
    path.write_text(SEARCH.replace("epochs 3", "epochs 2"))
    err = run_cli(["search", str(path), "--resume"], capsys, expected=2).err
    assert "changed since the search in runs/moons/1 started" in err
    err = run_cli(["search", str(path), "--resume", "--out", "nowhere"], capsys, expected=2).err
    assert "nowhere/search.json does not exist" in err


# --- the engine's resumable searches -------------------------------------------------------------
def objective(params):
    return -abs(math.log10(params["lr"]) + 2)


SPACE = {"lr": LogUniform(1e-4, 1.0)}


@pytest.mark.parametrize("search", ["random", "staged"])
def test_the_engine_resumes_from_any_prefix_of_the_trials(search):
    def run(**options):
        if search == "random":
            return random_search(SPACE, objective, 7, seed=3, **options)
        return coarse_to_fine(SPACE, objective, 4, stages=3, seed=3, **options)

    whole = run()
    for count in range(len(whole.trials) + 1):
        recorded = [Trial.from_dict(json.loads(json.dumps(t.to_dict()))) for t in whole.trials]
        new = []
        resumed = run(done=recorded[:count], on_trial=new.append)
        assert [(t.params, t.value) for t in resumed.trials] == [
            (t.params, t.value) for t in whole.trials
        ]
        assert [t.number for t in new] == list(range(count, len(whole.trials)))
    with pytest.raises(ValueError, match="drawn with another seed"):
        random_search(SPACE, objective, 7, seed=4, done=whole.trials[:2])


def test_a_trial_round_trips_through_json_exactly():
    trial = Trial(3, 1, {"lr": 0.1 + 0.2, "w": 8, "act": "relu"}, TrialResult(math.inf, 0.5))
    failed = Trial(4, 1, {"lr": 1e-3}, TrialResult(math.nan, status="exploded", reason="x"))
    for original in (trial, failed):
        back = Trial.from_dict(json.loads(json.dumps(original.to_dict(), allow_nan=False)))
        assert back.params == original.params and back.number == original.number
        assert back.result.status == original.result.status
        assert str(back.value) == str(original.value)
    with pytest.raises(ValueError, match="not a recorded trial"):
        Trial.from_dict({"number": 1})
