"""`topograd run --backend torch` and dsl.torch_backend.fit: the engine's loop on PyTorch.

The truths are the numpy engine's: the same file trained by engine.train.fit gives the
numbers (metrics, History) that the torch run must repeat, and the engine's checkpoint
loader reads what a torch run writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from topograd.dsl import Source, build, load, read_source
from topograd.dsl.cli import main
from topograd.dsl.training import fit_arguments
from topograd.engine.train.history import NONFINITE

from topograd.train import evaluate, load_checkpoint

pytest.importorskip("torch")
from topograd.dsl.torch_backend.fit import torch_fit

ROOT = Path(__file__).resolve().parents[3]
PNG = b"\x89PNG\r\n\x1a\n"

MOONS = """
data {{ dataset moons(n=150, noise=0.2)  val 0.2  test 0.2 }}
network net {{ linear(16)  batchnorm  relu  {middle}  linear }}
train {{ loss cross_entropy  optimizer {optimizer}  {extra}  batch 32  seed 3 }}
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Every command writes under runs/ of the current folder: keep it in tmp_path."""
    monkeypatch.chdir(tmp_path)


def model_file(
    tmp_path, name="moons", middle="", optimizer="adam(lr=0.01)", extra="epochs 3"
) -> Path:
    path = tmp_path / f"{name}.tg"
    text = MOONS.format(middle=middle, optimizer=optimizer, extra=extra)
    path.write_text(text)
    return path


def run(argv, capsys, expected=0):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == expected, captured.err
    assert "Traceback" not in captured.err
    return captured


def test_run_on_torch_reports_what_the_numpy_engine_reports(tmp_path, capsys):
    path = model_file(tmp_path)
    for backend in ("numpy", "torch"):
        argv = ["run", str(path), "--no-progress", "--backend", backend, "--out", backend]
        run([*argv, "--metrics", f"{backend}.json"], capsys)
    numpy_metrics = json.loads((tmp_path / "numpy.json").read_text())
    torch_metrics = json.loads((tmp_path / "torch.json").read_text())
    assert torch_metrics.keys() == numpy_metrics.keys()
    for key in ("train_loss", "val_loss", "test_loss"):
        assert torch_metrics[key] == pytest.approx(numpy_metrics[key], rel=1e-9), key
    for key in ("train_accuracy", "val_accuracy", "test_accuracy", "epochs", "steps"):
        assert torch_metrics[key] == numpy_metrics[key], key
    assert (tmp_path / "torch" / "loss.png").read_bytes()[:8] == PNG

    # the checkpoint is the engine's: a fresh engine model loaded from it scores the same
    source = read_source(path)
    fresh = build(load(source), source)
    load_checkpoint(tmp_path / "torch" / "model.ckpt", fresh.model, rngs={})
    loss, accuracy = evaluate(fresh.model, fresh.data.splits.test, fresh.loss)
    assert accuracy == torch_metrics["test_accuracy"]
    assert loss == pytest.approx(torch_metrics["test_loss"], rel=1e-9)


def test_a_comparison_of_optimizers_trains_each_on_torch(tmp_path, capsys):
    path = model_file(tmp_path, optimizer="[sgd(lr=0.1), adam(lr=0.01)]", extra="epochs 2")
    argv = ["run", str(path), "--no-progress", "--no-plots", "--backend", "torch"]
    out = run([*argv, "--metrics", "both.json"], capsys).out
    entries = json.loads((tmp_path / "both.json").read_text())["optimizers"]
    assert [e["optimizer"] for e in entries] == ["sgd(lr=0.1)", "adam(lr=0.01)"]
    assert "sgd(lr=0.1)" in out and entries[0]["train_loss"] != entries[1]["train_loss"]


def test_dropout_masks_continue_after_resume_on_torch(tmp_path):
    """Torch draws the masks from a generator seeded by the run's (checkpointed) one, so
    2 epochs + resume for 2 more repeat 4 epochs in one go, bit for bit."""
    text = MOONS.format(middle="dropout(drop=0.3)", optimizer="adam(lr=0.01)", extra="epochs 4")
    checkpoint = str(tmp_path / "run.ckpt")

    def train(**changes):
        source = Source("dropout.tg", text)
        built = build(load(source), source)
        return torch_fit(built, **fit_arguments(built, False, log=None, **changes))

    whole = train(checkpoint=None)
    train(epochs=2, checkpoint=checkpoint)
    resumed = train(checkpoint=checkpoint, resume=True)
    assert resumed.step_loss == whole.step_loss
    assert resumed.val_loss == whole.val_loss


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the engine's rerun overflows too
def test_a_nan_stops_the_torch_run_naming_the_node_and_restoring_the_weights():
    text = MOONS.format(
        middle="", optimizer="sgd(lr=1e200)", extra="epochs 3  explosion_factor none"
    )
    source = Source("nan.tg", text)
    built = build(load(source), source)
    start = [p.data.copy() for p in built.model.parameters()]
    history = torch_fit(built, **fit_arguments(built, False, log=None, checkpoint=None))
    assert history.stopped == NONFINITE
    assert history.nonfinite is not None and history.nonfinite.message
    assert "restored the starting weights" in history.stop_message
    for before, p in zip(start, built.model.parameters()):
        np.testing.assert_array_equal(p.data, before)


def test_run_refuses_what_torch_cannot_train(tmp_path, capsys):
    plain = model_file(tmp_path)
    err = run(["run", str(plain), "--nproc", "2"], capsys, 2).err
    assert "--backend torch" in err

    vanilla = model_file(tmp_path, name="adam", optimizer="adam(lr=0.01, bias_correction=false)")
    err = run(["run", str(vanilla), "--backend", "torch", "--no-progress"], capsys, 2).err
    assert "bias_correction" in err and "no counterpart" in err

    ensemble = "ensemble snapshot(cycles=2, epochs_per_cycle=1, lr_max=0.1)"
    snapshot = model_file(tmp_path, name="snap", optimizer="sgd(lr=0.1)", extra=ensemble)
    err = run(["run", str(snapshot), "--backend", "torch"], capsys, 2).err
    assert "snapshot ensemble" in err and "numpy engine" in err


def test_without_torch_the_backend_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    path = model_file(tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    err = run(["run", str(path), "--backend", "torch"], capsys, 2).err
    assert "pip install" in err and "torch" in err


def test_the_numpy_engine_never_imports_torch(tmp_path):
    path = model_file(tmp_path, extra="epochs 1")
    script = (
        "import sys\n"
        "from topograd.dsl.cli import main\n"
        f"code = main(['run', {str(path)!r}, '--no-progress', '--no-plots'])\n"
        "assert code == 0, code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
