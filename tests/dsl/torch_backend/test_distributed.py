"""`--nproc N`: DistributedDataParallel over N processes on loopback (gloo on the CPU).

Two processes, each on its contiguous shard of every global batch, with the loss scaled by
the shard's size and batch norm over the global batch, compute what one process computes on
the whole batch. The digits training split has 1,257 rows, so every epoch ends with a batch of
41 rows that splits 20/21: the uneven case is part of every epoch. Starting processes costs a
few seconds each, so there are few such tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from topograd.dsl import Source, build, load
from topograd.dsl.cli import main
from topograd.dsl.training import fit_arguments

from topograd.train import save_checkpoint

pytest.importorskip("torch")
from topograd.dsl.torch_backend.fit import torch_fit

SAMPLES = Path(__file__).resolve().parents[3] / "samples"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def digits_without_dropout(epochs: int):
    text = (SAMPLES / "digits.tg").read_text()
    assert text.count("    dropout(keep=keep)\n") == 1
    source = Source("digits.tg", text.replace("    dropout(keep=keep)\n", ""))
    built = build(load(source), source)
    return built, fit_arguments(built, False, log=None, epochs=epochs, checkpoint=None)


def test_two_processes_end_an_epoch_with_the_parameters_of_one():
    alone, options = digits_without_dropout(epochs=1)
    one = torch_fit(alone, **options)
    together, options = digits_without_dropout(epochs=1)
    two = torch_fit(together, nproc=2, **options)

    assert two.steps == one.steps == 20
    np.testing.assert_allclose(two.step_loss, one.step_loss, rtol=1e-12)
    np.testing.assert_allclose(two.val_loss, one.val_loss, rtol=1e-9)
    assert two.val_acc == one.val_acc
    # every parameter to 1e-9 relative; the biases in front of batch norm get no gradient and
    # hold rounding noise of about 1e-11 in both runs, hence the absolute slack
    for (name, a), b in zip(alone.model.named_parameters(), together.model.parameters()):
        np.testing.assert_allclose(b.data, a.data, rtol=1e-9, atol=1e-10, err_msg=name)
    for (name, a), (_, b) in zip(alone.model.named_buffers(), together.model.named_buffers()):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-10, err_msg=name)
    assert together.optimizer.state_dict()["state"][0]["step"] == 20
    assert together.schedule.last_epoch == 20


def test_the_digits_sample_on_two_processes_reaches_the_engines_accuracy(tmp_path, capfd):
    sample = str(SAMPLES / "digits.tg")
    common = ["--epochs", "5", "--no-progress", "--no-plots"]
    assert main(["run", sample, *common, "--metrics", "numpy.json", "--out", "numpy"]) == 0
    argv = ["run", sample, *common, "--backend", "torch", "--nproc", "2", "--out", "torch"]
    assert main([*argv, "--metrics", "torch.json"]) == 0
    out = capfd.readouterr().out  # (the processes print to the file descriptor)
    numpy_metrics = json.loads((tmp_path / "numpy.json").read_text())
    torch_metrics = json.loads((tmp_path / "torch.json").read_text())
    # dropout masks differ between the engines (and between processes): close, not equal
    assert abs(torch_metrics["test_accuracy"] - numpy_metrics["test_accuracy"]) <= 0.02
    assert torch_metrics["test_accuracy"] > 0.9 and torch_metrics["steps"] == 100
    assert out.count("epoch   5/5") == 2  # rank 0 logs, rank 1 is quiet
    assert (tmp_path / "torch" / "model.ckpt").exists()


def test_an_error_in_the_processes_reaches_the_caller(tmp_path, capsys):
    text = (SAMPLES / "digits.tg").read_text()
    source = Source("narrow.tg", text.replace("let width = 256", "let width = 8"))
    wrong = build(load(source), source)
    save_checkpoint(tmp_path / "run.ckpt", wrong.model, wrong.optimizer, wrong.schedule)
    digits = tmp_path / "digits.tg"
    digits.write_text(text.replace("  seed 0\n", '  seed 0\n  checkpoint "run.ckpt"\n'))
    argv = ["run", str(digits), "--backend", "torch", "--nproc", "2", "--resume", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "does not fit" in err
