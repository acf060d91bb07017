"""The same model file on two engines: the numpy engine and PyTorch (`--backend torch`).

Same file, same seed, float64, dropout off: the two backends take the same 100 steps, so the
loss of every step, the lr, the gradient norms and the epoch measurements agree to 1e-9
relative. The networks are the samples': the digits MLP with batch norm, Adam (weight decay
on the weights only) and a cosine schedule (samples/digits.tg without its dropout layers),
and micrograd's scalar moons MLP with the hinge loss, L2, SGD and a cyclic schedule
(samples/moons_scalar.tg with batches of 10, so that 100 scalar steps take seconds: the
sample's full batch of 100 costs the numpy engine 0.4 s a step).

Checkpoints move between the backends: a run that stops after 2 epochs and resumes for 2
more, on either backend, continues with the losses of an uninterrupted run on the other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from topograd.dsl import Source, build, load
from topograd.dsl.training import fit_arguments

from topograd.train import fit

pytest.importorskip("torch")
from topograd.dsl.torch_backend.fit import torch_fit

SAMPLES = Path(__file__).resolve().parents[3] / "samples"
RTOL = 1e-9
STEPS = 100


def digits_without_dropout() -> str:
    text = (SAMPLES / "digits.tg").read_text()
    assert text.count("    dropout(keep=keep)\n") == 1
    return text.replace("    dropout(keep=keep)\n", "")


def scalar_moons_in_batches_of_10() -> str:
    text = (SAMPLES / "moons_scalar.tg").read_text()
    assert text.count("  batch 100\n") == 1
    return text.replace("  batch 100\n", "  batch 10\n")


def built_from(text: str, **changes):
    source = Source("parity.tg", text)
    spec = load(source)
    built = build(spec, source)
    options = fit_arguments(built, False, log=None, **changes)
    return built, options


def train(text: str, backend: str, **changes):
    """(History, the engine objects after training) on `backend`."""
    built, options = built_from(text, **changes)
    if backend == "torch":
        history = torch_fit(built, **options)
    else:
        history = fit(built.model, built.data.splits.train, built.optimizer, **options)
    return history, built


def relative_difference(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-300)))


@pytest.mark.parametrize(
    ("text", "epochs"),
    [(digits_without_dropout(), 5), (scalar_moons_in_batches_of_10(), 10)],
    ids=["digits-batchnorm-adam", "moons-scalar"],
)
def test_numpy_and_torch_take_the_same_100_steps(text, epochs):
    numpy_history, numpy_built = train(text, "numpy", epochs=epochs, checkpoint=None)
    torch_history, torch_built = train(text, "torch", epochs=epochs, checkpoint=None)

    assert numpy_history.steps == torch_history.steps == STEPS
    worst = relative_difference(numpy_history.step_loss, torch_history.step_loss)
    print(f"max relative loss difference over {STEPS} steps: {worst:.2e}")
    assert worst < RTOL
    np.testing.assert_allclose(torch_history.lr, numpy_history.lr, rtol=1e-12)
    # the biases in front of batch norm get no gradient: their gradient norms are rounding
    # noise (hence the atol), and so are Adam's updates of them (their ratios are not compared)
    for name, norms in numpy_history.grad_norms.items():
        np.testing.assert_allclose(torch_history.grad_norms[name], norms, rtol=1e-6, atol=1e-9)
        if np.nanmax(norms) > 1e-9:
            ratios = numpy_history.update_ratios[name]
            np.testing.assert_allclose(torch_history.update_ratios[name], ratios, rtol=1e-6)
    for field in ("train_loss", "val_loss"):
        np.testing.assert_allclose(
            getattr(torch_history, field), getattr(numpy_history, field), rtol=RTOL
        )
    assert torch_history.train_acc == numpy_history.train_acc
    assert torch_history.shapes == numpy_history.shapes
    assert torch_history.epochs == numpy_history.epochs
    # the torch run's final weights are back in the engine model (the biases in front of
    # batch norm get no gradient: they hold rounding noise of about 1e-12, hence the atol)
    for (name, a), b in zip(numpy_built.model.named_parameters(), torch_built.model.parameters()):
        np.testing.assert_allclose(b.data, a.data, rtol=RTOL, atol=1e-10, err_msg=name)


@pytest.mark.parametrize(("first", "second"), [("torch", "numpy"), ("numpy", "torch")])
def test_a_checkpoint_resumes_on_the_other_backend(tmp_path, first, second):
    text = digits_without_dropout()
    checkpoint = str(tmp_path / "run.ckpt")
    whole, _ = train(text, second, epochs=4, checkpoint=None)
    head, _ = train(text, first, epochs=2, checkpoint=checkpoint)
    tail, built = train(text, second, epochs=4, checkpoint=checkpoint, resume=True)

    assert head.steps == 40 and tail.steps == 80
    np.testing.assert_allclose(tail.step_loss[:40], head.step_loss, rtol=0)  # the history
    worst = relative_difference(whole.step_loss[40:], tail.step_loss[40:])
    assert worst < RTOL, f"{first} -> {second}: the resumed losses differ by {worst:.2e}"
    np.testing.assert_allclose(tail.val_loss, whole.val_loss, rtol=RTOL)
    assert built.schedule.last_epoch == 80
