"""The fit loop: what it records, the modes it switches, schedules, the guards that stop it
(explosion, NaN/Inf, early stopping) and the weights they put back, and exact resumption."""

import itertools
import json
import math
import warnings

import numpy as np
import pytest
from topograd.engine.train.fit import best_path, fit
from topograd.engine.train.history import EARLY_STOPPING, EXPLODED, NONFINITE, History

from topograd import functional as F
from topograd import manual_seed, nn
from topograd.data import Dataset
from topograd.nn import Module
from topograd.optim import SGD, Adam, AdamW, RMSprop
from topograd.optim.schedules import MultiStepLR, StepLR
from topograd.train import InitialLossWarning, evaluate, load_checkpoint

QUIET = {"progress": False, "log": None}


def blobs(n=240, seed=0, spread=1.0, classes=3):
    """Gaussian blobs in 4-D (standardized), centres about 3 apart: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.normal(size=(classes, 4))
    y = rng.integers(0, classes, n)
    x = centres[y] + spread * rng.normal(size=(n, 4))
    return (x - x.mean(axis=0)) / x.std(axis=0), y.astype(np.int64)


def mlp(seed=0, bn=True, dropout=0.0, hidden=32, classes=3):
    manual_seed(seed)
    layers = [nn.Linear(4, hidden, init="he")]
    if bn:
        layers.append(nn.BatchNorm1d(hidden))
    layers.append(nn.ReLU())
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, classes))
    return nn.Sequential(*layers)


def states_equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# --- what a run records ----------------------------------------------------------------------
def test_fit_learns_and_records_every_step_and_epoch(tmp_path):
    x, y = blobs()
    model = mlp(dropout=0.1)
    history = fit(
        model,
        (x[:200], y[:200]),
        Adam(model.parameters(), lr=1e-2),
        epochs=4,
        batch_size=32,
        val=(x[200:], y[200:]),
        **QUIET,
    )
    steps = 4 * math.ceil(200 / 32)
    assert history.stopped is None
    assert history.steps == len(history.lr) == steps
    assert history.epochs == [1, 2, 3, 4]
    for name in ("batch_loss", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"):
        assert len(getattr(history, name)) == 4
    names = [name for name, _ in model.named_parameters()]
    assert list(history.update_ratios) == names == list(history.grad_norms)
    assert all(len(v) == steps for v in history.update_ratios.values())
    assert history.weight_matrices() == ["0.weight", "4.weight"]
    assert history.val_acc[-1] > 0.9 and history.train_loss[-1] < history.train_loss[0]
    assert history.best_epoch == int(np.argmin(history.val_loss)) + 1
    # the recorded end-of-epoch numbers are evaluation-mode numbers of the final weights
    assert evaluate(model, (x[200:], y[200:])) == (history.val_loss[-1], history.val_acc[-1])
    # JSON: strict (a bias's first ratio is NaN: its weights start at zero) and round-trips
    text = history.save_json(tmp_path / "h.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["update_ratios"]["0.bias"][0] is None
    again = History.load_json(tmp_path / "h.json")
    assert again.step_loss == history.step_loss and again.val_acc == history.val_acc
    assert again.diagnosis == history.diagnosis and again.shapes == history.shapes


@pytest.mark.parametrize(
    "make",
    [
        lambda params: SGD(params, lr=0.1, momentum=0.9, nesterov=True),  # returns its step
        lambda params: Adam(params, lr=0.01),  # returns its step
        lambda params: AdamW(params, lr=0.01),  # decoupled decay: measured on a copy
        lambda params: RMSprop(params, lr=0.01),  # no step returned: measured on a copy
    ],
)
def test_update_ratios_are_the_actual_change_of_the_weights(make):
    """||W_after - W_before|| / ||W_before|| for every step, checked against copies kept by
    a callback (the optimizer measures the change itself where its rule returns it)."""
    x, y = blobs(n=60)
    manual_seed(4)
    model = nn.Linear(4, 3)
    weights = [model.weight.data.copy()]

    def keep(event, history):
        if event == "step":
            weights.append(model.weight.data.copy())

    history = fit(model, (x, y), make(model.parameters()), epochs=2, batch_size=20,
                  callback=keep, check_initial_loss=False, **QUIET)  # fmt: skip
    expected = [
        np.linalg.norm(after - before) / np.linalg.norm(before)
        for before, after in itertools.pairwise(weights)
    ]
    np.testing.assert_allclose(history.update_ratios["weight"], expected, rtol=1e-9)


def test_update_ratios_and_gradient_norms_match_a_hand_computation():
    """One full-batch SGD step on a linear softmax layer: ||lr dW|| / ||W|| and ||dW||."""
    x, y = blobs(n=50)
    manual_seed(3)
    model = nn.Linear(4, 3)
    w, b = model.weight.data.copy(), model.bias.data.copy()
    lr = 0.1
    history = fit(model, (x, y), SGD(model.parameters(), lr=lr), epochs=1, batch_size=50, **QUIET)
    logits = x @ w + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(50), y] -= 1.0
    dw = x.T @ p / 50
    assert history.grad_norms["weight"][0] == pytest.approx(np.linalg.norm(dw), rel=1e-12)
    expected = np.linalg.norm(lr * dw) / np.linalg.norm(w)
    assert history.update_ratios["weight"][0] == pytest.approx(expected, rel=1e-10)
    assert math.isnan(history.update_ratios["bias"][0])  # zero-initialized: no ratio
    assert history.step_loss[0] == pytest.approx(
        float(np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(50), y])), rel=1e-12
    )


def test_training_steps_run_in_train_mode_and_evaluation_leaves_batch_norm_alone():
    x, y = blobs()
    model = mlp(dropout=0.5)
    norm = model[1]
    history = fit(
        model,
        (x[:200], y[:200]),
        SGD(model.parameters(), lr=0.05),
        epochs=3,
        batch_size=40,
        val=(x[200:], y[200:]),
        **QUIET,
    )
    # every training step updated the running statistics once; the six end-of-epoch
    # evaluations (train and val sets) did not touch them
    assert int(norm.num_batches_tracked) == history.steps == 15
    mean, var = norm.running_mean.copy(), norm.running_var.copy()
    first = evaluate(model, (x, y))
    assert evaluate(model, (x, y)) == first  # dropout off: deterministic
    assert np.array_equal(norm.running_mean, mean) and np.array_equal(norm.running_var, var)
    assert all(module.training for module in model.modules())  # modes put back


def test_dataset_input_and_augmentation_on_images():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(64, 1, 2, 2))
    labels = (images.sum(axis=(1, 2, 3)) > 0).astype(np.int64)
    data = Dataset(images.reshape(64, -1), labels, "tiny", ["neg", "pos"], image_shape=(1, 2, 2))
    seen = []

    def flip(batch, generator):
        assert isinstance(generator, np.random.Generator)
        seen.append(batch.shape)
        return batch[:, :, :, ::-1]

    manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    fit(
        model, data, SGD(model.parameters(), lr=0.1), epochs=2, batch_size=16, augment=flip, **QUIET
    )
    assert seen == [(16, 1, 2, 2)] * 8
    with pytest.raises(ValueError, match="augment needs images"):
        fit(model, (rng.normal(size=(8, 4)), labels[:8]), SGD(model.parameters()), augment=flip)


def test_schedules_per_step_and_per_epoch():
    x, y = blobs(n=100)
    model = mlp()
    optimizer = SGD(model.parameters(), lr=0.1)
    history = fit(
        model,
        (x, y),
        optimizer,
        epochs=3,
        batch_size=25,
        schedule=StepLR(optimizer, step_size=1, gamma=0.5),
        schedule_per="epoch",
        **QUIET,
    )
    assert history.lr == [0.1] * 4 + [0.05] * 4 + [0.025] * 4
    model = mlp()
    optimizer = SGD(model.parameters(), lr=0.1)
    schedule = StepLR(optimizer, step_size=3, gamma=0.1)
    expected = [schedule.lr_at(t)[0] for t in range(8)]
    history = fit(model, (x, y), optimizer, epochs=2, batch_size=25, schedule=schedule, **QUIET)
    assert history.lr == pytest.approx(expected, rel=1e-12)


def test_bad_options_are_refused_with_their_values():
    x, y = blobs(n=20)
    model = mlp()
    opt = SGD(model.parameters())
    with pytest.raises(ValueError, match="early_stopping watches the validation loss"):
        fit(model, (x, y), opt, early_stopping=3, **QUIET)
    with pytest.raises(ValueError, match="schedule_per must be 'step' or 'epoch', got 'batch'"):
        fit(model, (x, y), opt, schedule_per="batch", **QUIET)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        fit(model, (x, y), opt, epochs=0, **QUIET)
    with pytest.raises(TypeError, match="Dataset"):
        fit(model, x, opt, **QUIET)


def test_progress_bar_goes_to_stderr_with_loss_accuracy_and_lr(capsys):
    x, y = blobs(n=60)
    model = mlp()
    fit(model, (x, y), SGD(model.parameters(), lr=0.1), epochs=2, batch_size=30, log=None)
    err = capsys.readouterr().err
    assert "fit" in err and "loss=" in err and "acc=" in err and "lr=" in err
    fit(model, (x, y), SGD(model.parameters(), lr=0.1), epochs=1, **QUIET)
    assert capsys.readouterr().err == ""


# --- the initial loss ------------------------------------------------------------------------
def test_initial_loss_near_log_c_passes_and_far_from_it_warns():
    x, y = blobs()
    model = mlp(bn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InitialLossWarning)
        history = fit(model, (x, y), SGD(model.parameters(), lr=0.01), epochs=1, **QUIET)
    assert history.expected_initial_loss == pytest.approx(math.log(3))
    assert abs(history.initial_loss - math.log(3)) < 0.5 * math.log(3)
    assert history.warnings == []

    model = mlp(bn=False)
    model[-1].weight.data *= 100.0  # far too large a final layer: confident random guesses
    lines = []
    with pytest.warns(InitialLossWarning, match=r"above the expected log\(C\) = 1.0986"):
        history = fit(
            model,
            (x, y),
            SGD(model.parameters(), lr=1e-4),
            epochs=1,
            progress=False,
            log=lines.append,
        )
    assert history.initial_loss > 1.5 * math.log(3)
    assert len(history.warnings) == 1 and any("warning: initial loss" in line for line in lines)


# --- guards ----------------------------------------------------------------------------------
def test_explosion_guard_stops_on_a_too_large_lr_and_restores_the_best_weights(tmp_path):
    """Two good epochs, then the lr jumps 10^4-fold: the run stops within the third epoch and
    the model holds epoch 2's weights, in memory and in the best checkpoint on disk."""
    x, y = blobs()
    train, val = (x[:200], y[:200]), (x[200:], y[200:])

    def run(epochs, jump, checkpoint=None):
        model = mlp()
        optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9)
        schedule = MultiStepLR(optimizer, milestones=[2], gamma=1e4)
        history = fit(model, train, optimizer, epochs=epochs, batch_size=20, val=val,
                      schedule=schedule if jump else None, schedule_per="epoch",
                      checkpoint=checkpoint, **QUIET)  # fmt: skip
        return model, history

    model, history = run(5, jump=True, checkpoint=tmp_path / "run.npz")
    assert history.stopped == EXPLODED
    assert history.epochs == [1, 2] and history.best_epoch == 2
    assert 20 < history.steps < 30  # stopped inside epoch 3, within a few steps of the jump
    assert "exceeded 3 x the initial loss" in history.stop_message
    assert "restored the weights of epoch 2" in history.stop_message
    reference, _ = run(2, jump=False)  # the same run, stopped after epoch 2 by itself
    assert states_equal(model.state_dict(), reference.state_dict())
    on_disk = mlp(seed=9)
    assert load_checkpoint(best_path(tmp_path / "run.npz"), on_disk).epoch == 2
    assert states_equal(on_disk.state_dict(), reference.state_dict())


def test_explosion_in_the_first_epoch_restores_the_starting_weights():
    x, y = blobs()
    model = mlp(bn=False)
    start = model.state_dict()
    history = fit(model, (x, y), SGD(model.parameters(), lr=50.0), epochs=3, batch_size=20, **QUIET)
    assert history.stopped in (EXPLODED, NONFINITE)
    assert history.epochs == [] and history.best_epoch == 0
    assert "restored the starting weights" in history.stop_message
    assert states_equal(model.state_dict(), start)
    assert history.diagnosis is None


class Log(Module):
    """log(x): NaN for the negative inputs a ReLU-free hidden layer gives it."""

    def forward(self, x):
        return x.log()


class SqrtRelu(Module):
    """sqrt(relu(x)): finite forward, but an infinite gradient wherever relu(x) is 0."""

    def forward(self, x):
        return x.relu().sqrt()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's, about the NaN itself
@pytest.mark.parametrize(
    ("layer", "phase", "op"), [(Log(), "forward", "log"), (SqrtRelu(), "backward", "sqrt")]
)
def test_nan_guard_names_the_first_op_and_its_layer(layer, phase, op):
    x, y = blobs()
    manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), layer, nn.Linear(8, 3))
    start = model.state_dict()
    lines = []
    history = fit(model, (x, y), SGD(model.parameters(), lr=0.1), epochs=2, progress=False,
                  log=lines.append)  # fmt: skip
    assert history.stopped == NONFINITE
    report = history.nonfinite
    assert (report.phase, report.op) == (phase, op)
    assert report.layer == "sequential.1" and report.layer_kind == type(layer).__name__
    assert f"{op}" in history.stop_message and "sequential.1" in history.stop_message
    assert any("stopped (non-finite loss)" in line for line in lines)
    assert history.steps == 0  # the failing step was not taken
    assert states_equal(model.state_dict(), start)


def test_nan_guard_blames_a_parameter_that_is_already_nan():
    x, y = blobs()
    model = mlp(bn=False)
    model[0].weight.data[0, 0] = np.nan
    history = fit(model, (x, y), SGD(model.parameters(), lr=0.1), epochs=1, **QUIET)
    assert history.nonfinite.op == "parameter" and history.nonfinite.name == "0.weight"


def test_early_stopping_restores_the_best_epoch():
    """A wide net on 30 noisy points overfits: the validation loss turns up, the run stops
    `patience` epochs after its best epoch, and the model holds that epoch's weights."""
    x, y = blobs(n=400, spread=3.0)
    model = mlp(bn=False, hidden=128)
    history = fit(model, (x[:30], y[:30]), Adam(model.parameters(), lr=3e-2), epochs=200,
                  batch_size=10, val=(x[30:], y[30:]), early_stopping=4, **QUIET)  # fmt: skip
    assert history.stopped == EARLY_STOPPING
    best = history.best_epoch
    assert history.epochs[-1] == best + 4 < 200
    assert min(history.val_loss) == history.val_loss[best - 1] < history.val_loss[-1]
    assert evaluate(model, (x[30:], y[30:]))[0] == history.val_loss[best - 1]
    assert history.diagnosis.train_error == pytest.approx(1 - history.train_acc[best - 1])


# --- checkpoints -----------------------------------------------------------------------------
def make_run(seed):
    """A model, optimizer and schedule built as a fresh process would (weights from `seed`)."""
    model = mlp(seed=seed, dropout=0.3)
    optimizer = Adam(model.parameters(), lr=1e-2)
    schedule = StepLR(optimizer, step_size=7, gamma=0.5)
    return model, optimizer, schedule


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path):
    x, y = blobs()
    data = {"train": (x[:200], y[:200]), "val": (x[200:], y[200:])}
    model, optimizer, schedule = make_run(0)
    whole = fit(model, data["train"], optimizer, val=data["val"], epochs=4, batch_size=32,
                schedule=schedule, seed=5, checkpoint=tmp_path / "a.npz", **QUIET)  # fmt: skip

    first = make_run(0)
    fit(first[0], data["train"], first[1], val=data["val"], epochs=2, batch_size=32,
        schedule=first[2], seed=5, checkpoint=tmp_path / "b.npz", **QUIET)  # fmt: skip
    manual_seed(123)  # another process: other weights, another shared generator state
    second = make_run(7)
    lines = []
    resumed = fit(second[0], data["train"], second[1], val=data["val"], epochs=4, batch_size=32,
                  schedule=second[2], seed=5, checkpoint=tmp_path / "b.npz", resume=True,
                  progress=False, log=lines.append)  # fmt: skip
    assert "resumed from" in lines[0] and "at epoch 2" in lines[0]
    assert states_equal(second[0].state_dict(), model.state_dict())
    assert resumed.step_loss == whole.step_loss and resumed.val_loss == whole.val_loss
    assert resumed.update_ratios["0.weight"] == whole.update_ratios["0.weight"]
    assert resumed.epochs == [1, 2, 3, 4] and resumed.best_epoch == whole.best_epoch
    assert best_path(tmp_path / "b.npz").exists()


def test_resuming_a_run_that_stopped_early_loads_its_best_weights_and_trains_no_more(tmp_path):
    x, y = blobs(n=400, spread=3.0)
    model = mlp(bn=False, hidden=128)
    options = {"epochs": 200, "batch_size": 10, "val": (x[30:], y[30:]), "early_stopping": 3}
    stopped = fit(model, (x[:30], y[:30]), Adam(model.parameters(), lr=3e-2),
                  checkpoint=tmp_path / "run.npz", **options, **QUIET)  # fmt: skip
    assert stopped.stopped == EARLY_STOPPING
    again = mlp(seed=4, bn=False, hidden=128)
    resumed = fit(again, (x[:30], y[:30]), Adam(again.parameters(), lr=3e-2),
                  checkpoint=tmp_path / "run.npz", resume=True, **options, **QUIET)  # fmt: skip
    assert resumed.epochs == stopped.epochs and resumed.step_loss == stopped.step_loss
    assert resumed.stopped == EARLY_STOPPING and resumed.best_epoch == stopped.best_epoch
    assert states_equal(again.state_dict(), model.state_dict())  # both hold the best epoch
    with pytest.raises(ValueError, match="resume=True continues from a checkpoint"):
        fit(again, (x, y), Adam(again.parameters()), resume=True, **QUIET)


def test_resume_without_a_checkpoint_starts_fresh(tmp_path):
    x, y = blobs(n=60)
    model = mlp()
    history = fit(model, (x, y), SGD(model.parameters(), lr=0.1), epochs=1,
                  checkpoint=tmp_path / "new.npz", resume=True, **QUIET)  # fmt: skip
    assert history.epochs == [1]
    assert (tmp_path / "new.npz").exists() and (tmp_path / "new.best.npz").exists()


def test_other_losses_skip_the_log_c_check_and_accuracy_for_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4))
    target = x @ rng.normal(size=(4, 1))
    manual_seed(0)
    model = nn.Linear(4, 1)
    history = fit(model, (x, target), SGD(model.parameters(), lr=0.1), epochs=5, batch_size=16,
                  loss=F.mse_loss, **QUIET)  # fmt: skip
    assert history.expected_initial_loss is None
    assert history.train_loss[-1] < history.train_loss[0]
    assert math.isnan(history.train_acc[-1]) and history.diagnosis is None
