"""`--nproc N`: DistributedDataParallel over N processes on loopback (gloo on the CPU).

Two processes, each on its contiguous shard of every global batch, with the loss scaled by
the shard's size and batch norm over the global batch, compute what one process computes on
the whole batch. The digits training split has 1,257 rows, so every epoch ends with a batch of
41 rows that splits 20/21: the uneven case is part of every epoch. Starting processes costs a
few seconds each, so there are few such tests.

A process's exception comes back through error-RANK.json, never a pickle: the tests of the
saved errors write and read those files directly, without processes.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from topograd.dsl import Source, build, load
from topograd.dsl.cli import main
from topograd.dsl.training import fit_arguments

from topograd.train import save_checkpoint

pytest.importorskip("torch")
from topograd.dsl.torch_backend import UnsupportedError, distributed
from topograd.dsl.torch_backend.fit import torch_fit
from topograd.engine.data.datasets import DataError
from topograd.engine.train.checkpoint import CheckpointError

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "samples"


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


def test_an_error_in_a_process_reaches_the_caller_with_its_type_and_traceback():
    text = (SAMPLES / "digits.tg").read_text()
    assert text.count("dropout(keep=keep)") == 1
    vanilla = text.replace("dropout(keep=keep)", "dropout(keep=keep, inverted=false)")
    source = Source("vanilla.tg", vanilla)
    built = build(load(source), source)
    options = fit_arguments(built, False, log=None, epochs=1, checkpoint=None)
    # with nproc 2 only the processes translate the model: the refusal is raised in them
    with pytest.raises(UnsupportedError, match=r"vanilla dropout \(inverted=false\)") as info:
        torch_fit(built, nproc=2, **options)
    assert str(info.value).count("the torch backend has no counterpart for") == 1
    (note,) = info.value.__notes__
    assert note.startswith("traceback of process 0:") and "in _process" in note


# --- saved errors: error-RANK.json -----------------------------------------------------------


def save(folder: Path, rank: int, error: Exception) -> Path:
    """Save `error` as process `rank` does: raised, so that it has a traceback."""
    try:
        raise error
    except Exception as caught:
        distributed._save_error(folder / f"error-{rank}.json", caught)
    return folder / f"error-{rank}.json"


def raised_again(folder: Path, nproc: int = 2) -> Exception:
    with pytest.raises(Exception) as info:
        distributed._raise_saved_error(folder, nproc)
    return info.value


@pytest.mark.parametrize(
    "error",
    [
        CheckpointError("run.ckpt does not fit: 'w' has shape (8,), the model's (256,)"),
        UnsupportedError("vanilla dropout (inverted=false)", "use inverted dropout"),
        DataError("digits.npz has no 'y'"),
        ValueError("nproc must be an integer >= 1, got 0"),
        TypeError("fit: schedule must have a step() method, got int"),
        KeyError("width"),
        IndexError("list index out of range"),
        RuntimeError("the process group went away"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_saved_error_comes_back_with_its_type_message_and_traceback(tmp_path, error):
    path = save(tmp_path, 0, error)
    assert json.loads(path.read_text())["message"]  # plain JSON
    back = raised_again(tmp_path)
    assert type(back) is type(error) and str(back) == str(error)
    (note,) = back.__notes__
    assert note.startswith("traceback of process 0:\nTraceback (most recent call last):")
    assert "in save" in note and f"{type(error).__name__}: " in note


def test_an_os_error_comes_back_with_its_errno_and_file_name(tmp_path):
    try:
        open(tmp_path / "missing.ckpt")  # noqa: SIM115
    except FileNotFoundError as error:
        save(tmp_path, 0, error)
        expected = error
    back = raised_again(tmp_path)
    assert type(back) is FileNotFoundError and str(back) == str(expected)
    assert (back.errno, back.filename) == (expected.errno, str(tmp_path / "missing.ckpt"))


def test_an_error_of_another_class_comes_back_as_its_nearest_known_base(tmp_path):
    class WidthError(ValueError):
        pass

    class OddError(Exception):
        pass

    save(tmp_path, 0, WidthError("width 8 does not divide 3"))
    back = raised_again(tmp_path, nproc=1)
    assert type(back) is ValueError and "WidthError: width 8 does not divide 3" in str(back)
    save(tmp_path, 0, OddError("no known base"))
    back = raised_again(tmp_path, nproc=1)
    assert type(back) is RuntimeError and str(back).endswith("OddError: no known base")


def test_rank_0s_error_is_raised_first_and_none_saved_raises_nothing(tmp_path):
    distributed._raise_saved_error(tmp_path, 2)  # no file: spawn's own exception follows
    save(tmp_path, 1, RuntimeError("rank 0 left the group"))
    save(tmp_path, 0, CheckpointError("run.ckpt does not fit"))
    back = raised_again(tmp_path)
    assert type(back) is CheckpointError and back.__notes__[0].startswith("traceback of process 0")


@pytest.mark.parametrize("name", ["os.system", "SomethingEvil", "builtins.eval", "CheckpointError"])
def test_an_unknown_type_name_is_a_runtime_error_and_nothing_is_imported_or_run(
    tmp_path, monkeypatch, name
):
    record = {"type": name, "bases": ["posix.system"], "message": "touch pwned", "traceback": ""}
    (tmp_path / "error-0.json").write_text(json.dumps(record))
    imported = []

    def spying(real):
        def spy(module, *args, **kwargs):
            imported.append(module)
            return real(module, *args, **kwargs)

        return spy

    monkeypatch.setattr(os, "system", lambda command: pytest.fail(f"os.system({command!r})"))
    monkeypatch.setattr(importlib, "import_module", spying(importlib.import_module))
    monkeypatch.setattr(builtins, "__import__", spying(builtins.__import__))  # the last setattr
    try:  # (not pytest.raises, which imports modules of its own)
        distributed._raise_saved_error(tmp_path, 1)
    except Exception as error:
        back = error
    monkeypatch.undo()
    assert type(back) is RuntimeError and str(back) == f"{name}: touch pwned"
    assert imported == [] and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "content, reason",
    [
        (b'{"type": "ValueError", "bases": ["Exception"], "mess', "Unterminated string"),
        (b"", "Expecting value"),
        (b"\xff\xfe", "can't decode"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"type": "ValueError"}', "field 'bases' should be list, got None"),
        (
            b'{"type": "X", "bases": [1], "message": "m", "traceback": ""}',
            "field 'bases' should list class names, got [1]",
        ),
        (
            b'{"type": "OSError", "bases": [], "message": "m", "traceback": "", "errno": "2"}',
            "field 'errno' should be int, got '2'",
        ),
    ],
    ids=["half-written", "empty", "not-utf8", "array", "missing", "bad-bases", "bad-errno"],
)
def test_a_damaged_error_file_is_a_runtime_error_naming_it(tmp_path, content, reason):
    path = tmp_path / "error-1.json"
    path.write_bytes(content)
    back = raised_again(tmp_path)
    assert type(back) is RuntimeError
    assert f"process 1 failed, and its error file {path} cannot be read: " in str(back)
    assert reason in str(back)


def test_nothing_in_the_torch_backend_imports_pickle():
    unpicklers = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "shelve", "marshal"}
    for path in sorted((ROOT / "dsl" / "torch_backend").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            found = {name.split(".")[0] for name in names} & unpicklers
            assert not found, f"{path.name}:{node.lineno} imports {found}"
