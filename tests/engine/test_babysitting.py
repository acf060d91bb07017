"""The lecture's babysitting checks on their own: the bias/variance diagnosis, the initial
loss, overfitting a tiny subset, the explosion guard, locating NaNs, activation statistics
(the initialization experiment) and the plots."""

import functools
import itertools
import math
import sys

import numpy as np
import pytest
from topograd.engine import Tensor, default_rng, manual_seed, nn
from topograd.engine.train.checks import (
    ExplosionGuard,
    activation_statistics,
    diagnose,
    evaluate,
    expected_initial_loss,
    initial_loss_problem,
    locate_nonfinite,
    sanity_check,
)
from topograd.engine.train.plots import plot_activation_histograms, save_training_plots

from topograd.optim import SGD, Adam
from topograd.train import fit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def blobs(n=200, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.normal(size=(classes, 4))
    y = rng.integers(0, classes, n)
    x = centres[y] + rng.normal(size=(n, 4))
    return (x - x.mean(axis=0)) / x.std(axis=0), y.astype(np.int64)


# --- bias and variance -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("train", "val", "label"),
    [  # the notes' table (human-level error about 0%)
        (0.005, 0.01, "neither"),
        (0.15, 0.16, "high bias"),
        (0.01, 0.11, "high variance"),
        (0.12, 0.20, "high bias and high variance"),
    ],
)
def test_diagnosis_labels_the_notes_examples(train, val, label):
    diagnosis = diagnose(train, val)
    assert diagnosis.label == label
    assert diagnosis.avoidable_bias == pytest.approx(train)
    assert diagnosis.variance == pytest.approx(val - train)


def test_diagnosis_measures_bias_from_the_baseline_and_gives_the_notes_advice():
    assert diagnose(0.08, 0.09, baseline_error=0.07).label == "neither"
    assert diagnose(0.08, 0.09, baseline_error=0.0).label == "high bias"
    bias = diagnose(0.15, 0.16)
    assert "bigger network" in bias.advice and "train longer" in bias.advice
    variance = diagnose(0.01, 0.11)
    assert "more data" in variance.advice and "regularization" in variance.advice
    assert diagnose(0.03, 0.04, threshold=0.005).label == "high bias and high variance"
    assert "variance +1.00%" in str(diagnose(0.03, 0.04))
    only_train = diagnose(0.01, None)
    assert only_train.label == "neither" and "not measured" in only_train.advice
    with pytest.raises(ValueError, match="val_error must be an error rate in \\[0, 1\\], got 12"):
        diagnose(0.1, 12)


# --- the initial loss ------------------------------------------------------------------------
def test_initial_loss_tolerance_is_half_of_log_c():
    expected = expected_initial_loss(10)
    assert expected == pytest.approx(2.302585, abs=1e-6)
    assert initial_loss_problem(2.5, expected) is None
    assert initial_loss_problem(1.2, expected) is None  # 48% below: still tolerated
    assert "below the expected" in initial_loss_problem(1.1, expected)
    assert "above the expected" in initial_loss_problem(3.5, expected)
    assert "non-finite" in initial_loss_problem(math.nan, expected)
    with pytest.raises(ValueError, match="at least 2 classes, got 1"):
        expected_initial_loss(1)


def test_an_mlp_at_initialization_starts_near_log_c():
    """The claim the check rests on: He/Xavier layers on standardized inputs give a first
    loss within 50% of log(C)."""
    x, y = blobs(classes=10, n=500)
    for init in ("he", "xavier"):
        manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 64, init=init), nn.ReLU(), nn.Linear(64, 10, init=init))
        loss, _ = evaluate(model, (x, y))
        assert initial_loss_problem(loss, math.log(10)) is None, (init, loss)


# --- overfitting a tiny subset ---------------------------------------------------------------
def test_sanity_check_memorizes_twenty_examples():
    x, y = blobs()

    def build():
        return nn.Sequential(
            nn.Linear(4, 64, init="he"), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(64, 3),
        )  # fmt: skip

    manual_seed(0)
    lines = []
    result = sanity_check(build, (x, y), functools.partial(Adam, lr=1e-2), log=lines.append)
    assert result.passed and result.train_accuracy == 1.0 and result.final_loss < 0.05
    assert result.samples == 20 and result.steps < 200 and result.steps % 10 == 0
    assert result.expected_initial_loss == pytest.approx(math.log(3))
    assert abs(result.initial_loss - math.log(3)) < 0.5
    assert lines == [result.message] and "passed" in result.message


def test_sanity_check_fails_when_the_model_cannot_memorize():
    """Random labels on 20 points: a linear layer on 4 features cannot fit them all (a model
    too small, or a bug), and an MLP with lr 0 learns nothing; both are reported."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(20, 4)), rng.integers(0, 5, 20)
    manual_seed(0)
    linear = sanity_check(
        lambda: nn.Linear(4, 5), (x, y), functools.partial(Adam, lr=1e-2), log=None
    )
    assert not linear.passed and linear.train_accuracy < 1.0 and linear.steps == 200
    assert "FAILED" in linear.message
    frozen = sanity_check(
        lambda: nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 5)),
        (x, y),
        functools.partial(SGD, lr=0.0),
        steps=30,
        log=None,
    )
    assert not frozen.passed and frozen.final_loss == pytest.approx(frozen.initial_loss)


# --- explosions and NaNs ---------------------------------------------------------------------
def test_explosion_guard_compares_a_bias_corrected_average_with_factor_times_the_first_loss():
    guard = ExplosionGuard(factor=3.0)
    assert not guard.update(1.0)
    assert guard.smoothed == pytest.approx(1.0)  # bias correction: the first loss itself
    assert guard.update(10.0)  # (0.9 * 0.1 * 1 + 0.1 * 10) / (1 - 0.9^2) = 5.74 > 3
    assert guard.smoothed == pytest.approx(1.09 / 0.19)
    guard = ExplosionGuard(factor=3.0)
    for loss in [2.0] * 20:
        assert not guard.update(loss)
    assert not guard.update(12.0)  # a single outlier batch is absorbed
    assert [guard.update(50.0) for _ in range(3)][-1]  # a sustained rise is not
    saved = guard.state_dict()
    other = ExplosionGuard(factor=3.0)
    other.load_state_dict(saved)
    assert other.smoothed == guard.smoothed and other.initial == 2.0
    with pytest.raises(ValueError, match="explosion_factor must be > 1"):
        ExplosionGuard(0.5)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_locate_nonfinite_names_op_name_and_layer():
    x = Tensor(np.array([1.0, -1.0]), requires_grad=True, name="x")
    assert locate_nonfinite((x * 2).sum()) is None
    report = locate_nonfinite((x.log().named("logx") * 2).sum())
    assert (report.op, report.name, report.phase) == ("log", "logx", "forward")
    assert "log 'logx'" in report.message


# --- activation statistics: the initialization lecture ----------------------------------------
def tanh_net(init, depth=6, width=200, bn=False):
    manual_seed(0)
    layers = []
    for _ in range(depth):
        layers.append(nn.Linear(width, width, init=init, bias=False))
        if bn:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def test_activation_statistics_reproduce_the_initialization_experiment():
    """The notes' table: with 0.01 * randn the tanh activations shrink layer after layer
    (std 0.21, 0.047, 0.011, ... for width 500); Xavier keeps them at a usable size."""
    x = np.random.default_rng(0).normal(size=(500, 200))
    small = [s.std for s in activation_statistics(tanh_net("small_random"), x)]
    xavier = [s.std for s in activation_statistics(tanh_net("xavier"), x)]
    assert len(small) == len(xavier) == 6
    assert all(b < 0.2 * a for a, b in itertools.pairwise(small))  # x 0.01 * sqrt(200)
    assert small[-1] < 1e-4
    assert all(0.2 < s < 0.8 for s in xavier)
    layers = [s.layer for s in activation_statistics(tanh_net("xavier"), x)]
    assert layers == [f"sequential.{i}" for i in (1, 3, 5, 7, 9, 11)]


def test_activation_statistics_change_nothing_in_the_model():
    x = np.random.default_rng(0).normal(size=(64, 200))
    manual_seed(0)
    model = nn.Sequential(
        nn.Linear(200, 200, init="small_random"), nn.BatchNorm1d(200), nn.Tanh(),
        nn.Dropout(0.5), nn.Linear(200, 200, init="small_random"), nn.BatchNorm1d(200),
        nn.Tanh(),
    )  # fmt: skip
    model.eval()
    before = model.state_dict()
    generator_state = np.random.default_rng(0).bit_generator.state
    manual_seed(0)
    stats = activation_statistics(model, x)
    # batch statistics were used (train mode): BN undid the tiny weights' shrinking
    assert [s.layer for s in stats] == ["sequential.2", "sequential.6"]
    assert all(s.std > 0.5 for s in stats)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert not any(module.training for module in model.modules())
    assert default_rng().bit_generator.state == generator_state  # dropout drew nothing


# --- plots -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained():
    x, y = blobs()
    manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 32, init="he"), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3)
    )
    history = fit(model, (x[:160], y[:160]), Adam(model.parameters(), lr=1e-2), epochs=3,
                  batch_size=32, val=(x[160:], y[160:]), progress=False, log=None)  # fmt: skip
    return model, history, x


def test_training_plots_are_png_files(trained, tmp_path):
    _, history, _ = trained
    paths = save_training_plots(history, tmp_path / "plots")
    assert [p.name for p in paths] == ["loss.png", "accuracy.png", "lr.png", "update_ratios.png"]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000


def test_activation_histograms_are_a_png(trained, tmp_path):
    model, _, x = trained
    path = plot_activation_histograms(model, x, tmp_path / "act.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    with pytest.raises(ValueError, match="no activation layers"):
        plot_activation_histograms(nn.Linear(4, 3), x, tmp_path / "none.png")


def test_plots_say_how_to_get_matplotlib(trained, tmp_path, monkeypatch):
    _, history, _ = trained
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"pip install topograd\[plot\]"):
        save_training_plots(history, tmp_path)
