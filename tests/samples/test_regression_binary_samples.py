"""The regression and binary samples, each held to a truth computed without topograd.

- samples/regression.tg, trained by `topograd run`, reaches the error of numpy's least
  squares on the same training split (a linear target with noise: no model does better);
  `topograd eval` of its checkpoint reports R^2.
- samples/binary.tg (bce_with_logits on two moons) takes the same steps as a PyTorch loop
  written here with `torch.nn.BCEWithLogitsLoss` and `torch.optim.Adam`, from the same
  initial weights and on the same batches: every step's loss agrees, and the weights that
  `topograd run` saves are the loop's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from topograd.dsl import build, load, read_source
from topograd.dsl.cli import main
from topograd.dsl.training import fit_arguments

from topograd.train import fit, load_checkpoint

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
RTOL = 1e-9


def built_sample(name: str):
    source = read_source(SAMPLES / name)
    return build(load(source), source)


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured


# --- regression ----------------------------------------------------------------------------------
def test_regression_reaches_the_least_squares_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sample = str(SAMPLES / "regression.tg")
    run_cli(["run", sample, "--out", "out", "--no-plots", "--metrics", "m.json"], capsys)
    metrics = json.loads((tmp_path / "m.json").read_text())

    train = built_sample("regression.tg").data.splits.train
    assert train.regression and len(train) == 280
    design = np.c_[train.x, np.ones(len(train))]  # the weights and the bias
    _, residuals, _, _ = np.linalg.lstsq(design, train.y, rcond=None)
    least_squares = float(residuals[0]) / len(train)
    print(f"train MSE {metrics['train_loss']:.4f}, least squares {least_squares:.4f}")
    assert least_squares * (1 - 1e-9) <= metrics["train_loss"] <= least_squares * 1.005
    assert metrics["train_accuracy"] is None and metrics["test_accuracy"] is None

    argv = ["eval", sample, "--checkpoint", "out/model.ckpt", "--metrics", "e.json"]
    run_cli(argv, capsys)
    evaluated = json.loads((tmp_path / "e.json").read_text())
    assert evaluated["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-12)
    assert evaluated["test_r2"] > 0.97


# --- binary --------------------------------------------------------------------------------------
EPOCHS = 10


def torch_steps(built, epochs: int):
    """The sample's training written in PyTorch: the engine model's initial weights, Adam with
    the file's lr, BCEWithLogitsLoss, and fit's batches (an epoch is a permutation drawn from
    numpy's generator seeded [seed, 0], cut into batches). Returns (losses, final weights as
    the engine lays them out)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a thread pool only costs time (and fights numpy)
    try:
        return _torch_loop(torch, built, epochs)
    finally:
        torch.set_num_threads(threads)


def _torch_loop(torch, built, epochs: int):
    train, settings = built.data.splits.train, built.spec.train
    linears = [m for m in built.model if type(m).__name__ == "Linear"]
    layers = []
    for module in built.model:
        name = type(module).__name__
        if name == "Linear":
            linear = torch.nn.Linear(module.in_features, module.out_features, dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(module.weight.data.T.copy()))
                linear.bias.copy_(torch.from_numpy(module.bias.data.copy()))
            layers.append(linear)
        else:
            assert name == "Tanh", name
            layers.append(torch.nn.Tanh())
    network = torch.nn.Sequential(*layers)
    assert settings.optimizers[0].name == "adam"
    optimizer = torch.optim.Adam(network.parameters(), lr=settings.optimizers[0].kwargs["lr"])
    criterion = torch.nn.BCEWithLogitsLoss()
    x = torch.from_numpy(train.x)
    y = torch.from_numpy(train.y.astype(np.float64)).reshape(-1, 1)
    generator = np.random.default_rng([settings.seed, 0])
    losses = []
    for _ in range(epochs):
        order = generator.permutation(len(train))
        for start in range(0, len(train), settings.batch_size):
            rows = torch.from_numpy(order[start : start + settings.batch_size])
            optimizer.zero_grad()
            loss = criterion(network(x[rows]), y[rows])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    weights = []
    for linear in (m for m in network if isinstance(m, torch.nn.Linear)):
        weights += [linear.weight.detach().numpy().T, linear.bias.detach().numpy()]
    assert len(weights) == 2 * len(linears)
    return np.array(losses), weights


def test_binary_sample_takes_pytorchs_bce_with_logits_steps(tmp_path, capsys, monkeypatch):
    built = built_sample("binary.tg")
    assert built.spec.train.loss.name == "bce_with_logits"
    assert built.spec.network.output_shape == (1,)
    expected_losses, expected_weights = torch_steps(built, EPOCHS)

    # the engine's training, as `topograd run` calls it
    options = fit_arguments(built, False, log=None, epochs=EPOCHS, checkpoint=None)
    history = fit(built.model, built.data.splits.train, built.optimizer, **options)
    assert history.steps == len(expected_losses) == EPOCHS * 9
    worst = float(np.max(np.abs(np.array(history.step_loss) - expected_losses) / expected_losses))
    print(f"max relative loss difference over {history.steps} steps: {worst:.2e}")
    assert worst < RTOL

    # and the command itself: the weights it saves are the PyTorch loop's
    monkeypatch.chdir(tmp_path)
    argv = ["run", str(SAMPLES / "binary.tg"), "--epochs", str(EPOCHS), "--out", "out"]
    run_cli([*argv, "--no-plots", "--metrics", "m.json"], capsys)
    fresh = built_sample("binary.tg")
    load_checkpoint(tmp_path / "out" / "model.ckpt", fresh.model, rngs={})
    saved = [p.data for p in fresh.model.parameters()]
    for got, want in zip(saved, expected_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-12)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["train_loss"] == history.train_loss[-1]
    assert 0 <= metrics["train_accuracy"] <= 1
