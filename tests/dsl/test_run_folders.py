"""Runs never lose work: each run its own folder with what it was made from, outputs checked
writable before training, Ctrl-C says where the state is, and `--resume` finds it without a
`checkpoint` setting. Truths: the files on disk, and an uninterrupted run of the same file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import run_cli
from topograd.dsl.commands import run as run_command

from topograd.train import load_checkpoint

MOONS = """
data {{ dataset moons(n=120)  val 0.2  test 0.2 }}
network net {{ linear(8)  relu  linear }}
train {{ loss cross_entropy  optimizer adam(lr=0.05)  epochs {epochs}  batch 32  seed 0 {extra} }}
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def model_file(folder, name="moons", epochs=3, extra=""):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.tg"
    path.write_text(MOONS.format(epochs=epochs, extra=extra))
    return path


def record(folder):
    return json.loads((folder / "run.json").read_text())


def weights(path, tmp_path):
    """The weights a checkpoint holds, loaded into the file's model."""
    from cli_helpers import rebuilt

    built = rebuilt(tmp_path / "moons.tg")
    load_checkpoint(path, built.model, rngs={})
    return [p.data.copy() for p in built.model.parameters()]


def test_each_run_gets_its_own_folder_with_what_made_it(tmp_path, capsys):
    path = model_file(tmp_path)
    for _ in range(2):
        run_cli(["run", str(path), "--no-progress", "--seed", "3"], capsys)
    first, second = tmp_path / "runs" / "moons" / "1", tmp_path / "runs" / "moons" / "2"
    for folder in (first, second):
        assert (folder / "model.tg").read_text() == path.read_text()
        assert (folder / "model.ckpt").is_file() and (folder / "loss.png").is_file()
        info = record(folder)
        assert info["file"] == str(path.resolve()) and info["status"] == "finished"
        assert info["overrides"] == {"seed": 3}
        assert {"python", "numpy", "topograd"} <= set(info["versions"])
        assert len(info["sha256"]) == 64


def test_two_files_of_the_same_name_do_not_share_a_folder(tmp_path, capsys):
    a, b = model_file(tmp_path / "a", name="model"), model_file(tmp_path / "b", name="model")
    run_cli(["run", str(a), "--no-progress", "--no-plots"], capsys)
    run_cli(["run", str(b), "--no-progress", "--no-plots"], capsys)
    files = {record(tmp_path / "runs" / "model" / n)["file"] for n in ("1", "2")}
    assert files == {str(a.resolve()), str(b.resolve())}


@pytest.mark.parametrize(
    "option, where",
    [
        (["--out", "blocker/out"], "blocker"),
        (["--metrics", "blocker/m.json"], "blocker"),
    ],
)
def test_an_unwritable_output_is_found_before_training(tmp_path, capsys, option, where):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    path = model_file(tmp_path)
    captured = run_cli(["run", str(path), "--no-progress", *option], capsys, expected=2)
    assert f"cannot write {where}" in captured.err
    assert "epoch" not in captured.out  # nothing trained, so nothing thrown away


def test_an_unwritable_checkpoint_setting_is_found_before_training(tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file")
    path = model_file(tmp_path, extra='checkpoint "blocker/run.ckpt"')
    captured = run_cli(["run", str(path), "--no-progress"], capsys, expected=2)
    assert "cannot write" in captured.err and "epoch" not in captured.out


def test_resume_without_a_checkpoint_setting_continues_the_last_run(tmp_path, capsys):
    path = model_file(tmp_path, epochs=2)
    run_cli(["run", str(path), "--no-progress", "--no-plots"], capsys)
    out = run_cli(
        ["run", str(path), "--no-progress", "--no-plots", "--resume", "--epochs", "4"], capsys
    ).out
    assert "resumed from runs/moons/1/last.ckpt at epoch 2" in out
    assert not (tmp_path / "runs" / "moons" / "2").exists()
    # the same file trained for 4 epochs in one go ends with the same weights
    model_file(tmp_path / "whole", epochs=4)
    run_cli(["run", str(tmp_path / "whole" / "moons.tg"), "--no-progress", "--no-plots"], capsys)
    resumed = weights(tmp_path / "runs" / "moons" / "1" / "model.ckpt", tmp_path)
    whole = weights(tmp_path / "runs" / "moons" / "2" / "model.ckpt", tmp_path)
    for a, b in zip(resumed, whole, strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_with_nothing_to_resume_says_so(tmp_path, capsys):
    path = model_file(tmp_path)
    captured = run_cli(["run", str(path), "--resume"], capsys, expected=2)
    assert "no earlier run of" in captured.err and "start it without --resume" in captured.err


def test_ctrl_c_says_where_the_state_is_and_how_to_go_on(tmp_path, capsys, monkeypatch):
    real_fit = run_command.fit

    def interrupted_fit(*args, **kwargs):
        def stop(event, history):
            if event == "epoch" and len(history.epochs) == 2:
                raise KeyboardInterrupt

        return real_fit(*args, **kwargs, callback=stop)

    monkeypatch.setattr(run_command, "fit", interrupted_fit)
    path = model_file(tmp_path, epochs=5)
    captured = run_cli(["run", str(path), "--no-progress"], capsys, expected=130)
    state = tmp_path / "runs" / "moons" / "1" / "last.ckpt"
    assert f"is in runs/moons/1/last.ckpt; continue with: topograd run {path} --resume" in (
        captured.err
    )
    assert state.is_file() and record(state.parent)["status"] == "interrupted"
    monkeypatch.setattr(run_command, "fit", real_fit)
    out = run_cli(["run", str(path), "--no-progress", "--no-plots", "--resume"], capsys).out
    assert "at epoch 2" in out and record(state.parent)["status"] == "finished"
