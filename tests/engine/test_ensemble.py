"""Model ensembles and snapshot ensembles: predictions, the SGDR schedule, the snapshots, and
the claim that a snapshot ensemble scores at least the single model's accuracy."""

import dataclasses
import math

import numpy as np
import pytest
from topograd.engine.train.ensemble import (
    accuracy,
    ensemble_proba,
    predict_proba,
    snapshot_ensemble,
    snapshot_proba,
    train_ensemble,
    train_single,
)

from topograd import Tensor, manual_seed, nn, no_grad
from topograd import functional as F
from topograd.data import Splits, Standardize, load_digits, make_moons, split
from topograd.optim import SGD

FIT = {"progress": False, "log": None, "track_stats": False}


@pytest.fixture(scope="module")
def moons():
    return split(make_moons(n=300, noise=0.25, seed=0), val=0.0, test=0.3, seed=0)


def mlp(seed, hidden=16, batch_norm=False, dropout=0.0):
    manual_seed(seed)
    layers = [nn.Linear(2, hidden, init="he")]
    if batch_norm:
        layers.append(nn.BatchNorm1d(hidden))
    layers.append(nn.ReLU())
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, 2))
    return nn.Sequential(*layers)


def sgd(model, lr=0.1):
    return SGD(model.parameters(), lr=lr, momentum=0.9)


# --- predictions -------------------------------------------------------------------------


def test_predict_proba_uses_eval_mode_and_puts_the_mode_back(moons):
    model = mlp(0, batch_norm=True, dropout=0.5)
    x = moons.test.x
    model(Tensor(moons.train.x))  # one training-mode pass moves the running statistics
    model.train()
    small = predict_proba(model, x, batch_size=7)
    whole = predict_proba(model, x)
    np.testing.assert_allclose(small, whole, atol=1e-12)  # no batch statistics, no dropout
    np.testing.assert_allclose(whole.sum(axis=1), 1.0)
    assert all(module.training for module in model.modules())
    model.eval()
    with no_grad():
        expected = F.softmax(model(Tensor(x)), axis=1).data
    np.testing.assert_allclose(whole, expected, atol=1e-12)
    predict_proba(model, x)  # an eval-mode model stays in eval mode
    assert not any(module.training for module in model.modules())
    model.train()
    model[1].eval()  # a frozen batch norm inside a training model keeps its own mode
    predict_proba(model, x)
    assert [m.training for m in model.modules()] == [True, True, False, True, True, True]


def test_ensemble_proba_averages_probabilities_and_accuracy_counts_argmax(moons):
    models = [mlp(seed) for seed in range(3)]
    x = moons.test.x
    expected = np.mean([predict_proba(m, x) for m in models], axis=0)
    np.testing.assert_allclose(ensemble_proba(models, x), expected)
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5], [0.2, 0.8]])
    assert accuracy(proba, [0, 1, 0, 0]) == 0.75  # a tie goes to the lower class
    with pytest.raises(ValueError, match="4 predictions but 3 labels"):
        accuracy(proba, [0, 1, 0])
    with pytest.raises(ValueError, match="at least one model"):
        ensemble_proba([], x)


def test_train_ensemble_reports_members_and_their_average(moons):
    result = train_ensemble(
        mlp, moons.train, sgd, seeds=[0, 1, 2], eval=moons.test, epochs=8, **FIT
    )
    assert result.seeds == [0, 1, 2] and len(result.models) == len(result.histories) == 3
    first_weights = [m.parameters()[0].data for m in result.models]
    assert not np.allclose(first_weights[0], first_weights[1])  # the seeds made different nets
    assert result.accuracy_by_size[0] == result.single_accuracies[0]
    assert result.ensemble_accuracy == result.accuracy_by_size[-1]
    x, y = moons.test.x, moons.test.y
    assert result.ensemble_accuracy == accuracy(result.proba(x), y)
    for model, acc in zip(result.models, result.single_accuracies):
        assert acc == accuracy(predict_proba(model, x), y)
    assert result.ensemble_accuracy >= min(result.single_accuracies)
    assert result.mean_single > 0.8
    assert "ensemble" in result.table() and "seed 2" in result.table()
    again = train_ensemble(mlp, moons.train, sgd, seeds=[0, 1, 2], eval=moons.test, epochs=8, **FIT)
    assert again.single_accuracies == result.single_accuracies  # seeded end to end


def test_train_ensemble_refuses_repeated_seeds_and_a_fit_seed(moons):
    with pytest.raises(ValueError, match="seeds must differ"):
        train_ensemble(mlp, moons.train, sgd, seeds=[1, 1], eval=moons.test, **FIT)
    with pytest.raises(ValueError, match="not a fit seed"):
        train_ensemble(mlp, moons.train, sgd, seeds=[1], eval=moons.test, seed=3, **FIT)


# --- snapshot ensembles ------------------------------------------------------------------


def test_snapshot_schedule_is_sgdr_and_a_snapshot_ends_each_cycle(moons):
    cycles, epochs_per_cycle, lr_max, lr_min = 3, 3, 0.1, 0.001
    model = mlp(0)
    result = snapshot_ensemble(
        model,
        moons.train,
        sgd(model),
        cycles=cycles,
        epochs_per_cycle=epochs_per_cycle,
        lr_max=lr_max,
        lr_min=lr_min,
        eval=moons.test,
        batch_size=32,
        **FIT,
    )
    steps = epochs_per_cycle * math.ceil(len(moons.train) / 32)
    assert result.steps_per_cycle == steps
    lrs = np.concatenate([history.lr for history in result.histories])
    assert len(lrs) == cycles * steps
    t = np.arange(len(lrs)) % steps  # the notes' SGDR formula with T_i = steps
    expected = lr_min + 0.5 * (lr_max - lr_min) * (1 + np.cos(np.pi * t / steps))
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    np.testing.assert_allclose(lrs, [result.lr_at(step) for step in range(len(lrs))], rtol=1e-12)
    assert len(result.snapshots) == cycles and result.stopped is None
    final = model.state_dict()
    assert all(np.array_equal(final[k], v) for k, v in result.snapshots[-1].items())
    first, last = result.snapshots[0], result.snapshots[-1]
    assert any(not np.allclose(first[k], last[k]) for k in first)
    x, y = moons.test.x, moons.test.y
    members = []
    for state in result.snapshots:
        copy = mlp(99)
        copy.load_state_dict(state)
        members.append(copy)
    np.testing.assert_allclose(result.proba(x), ensemble_proba(members, x), atol=1e-12)
    np.testing.assert_allclose(result.proba(x, last=2), ensemble_proba(members[1:], x), atol=1e-12)
    assert result.snapshot_accuracies == [accuracy(predict_proba(m, x), y) for m in members]
    assert result.single_accuracy == result.snapshot_accuracies[-1]
    assert result.ensemble_accuracy == result.accuracy_by_last[-1]
    assert result.accuracy_by_last[0] == result.single_accuracy
    assert all(np.array_equal(final[k], v) for k, v in model.state_dict().items())  # restored
    assert "ensemble of last 3" in result.table()


def test_snapshot_proba_restores_the_model_and_last_k_selects(moons):
    model = mlp(0)
    result = snapshot_ensemble(
        model,
        moons.train,
        sgd(model),
        cycles=3,
        epochs_per_cycle=2,
        lr_max=0.1,
        eval=moons.test,
        last=2,
        **FIT,
    )
    assert result.last == 2 and result.ensemble_accuracy == result.accuracy_by_last[1]
    before = model.state_dict()
    snapshot_proba(model, result.snapshots[:1], moons.test.x)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"schedule": object()}, "sets fit's 'schedule'"),
        ({"early_stopping": 2}, "cut a cycle short"),
        ({"last": 4}, r"last must be an integer in \[1, 3\]"),
        ({"lr_min": 0.5}, "lr_min must be in"),
        ({"cycles": 0}, "cycles must be an integer >= 1"),
    ],
)
def test_snapshot_ensemble_refuses_bad_options(moons, options, message):
    model = mlp(0)
    arguments = {"cycles": 3, "epochs_per_cycle": 1, "lr_max": 0.1, "eval": moons.test}
    with pytest.raises(ValueError, match=message):
        snapshot_ensemble(model, moons.train, sgd(model), **{**arguments, **options, **FIT})


def test_a_first_cycle_that_explodes_leaves_no_ensemble(moons):
    model = mlp(0)
    with pytest.raises(RuntimeError, match="first cycle stopped"):
        snapshot_ensemble(
            model,
            moons.train,
            sgd(model, lr=1e4),
            cycles=2,
            epochs_per_cycle=2,
            lr_max=1e4,
            eval=moons.test,
            **FIT,
        )


def test_train_single_step_schedule_is_huangs_baseline(moons):
    model = mlp(0)
    result = train_single(
        model,
        moons.train,
        sgd(model),
        epochs=4,
        lr_max=0.1,
        eval=moons.test,
        schedule="step",
        batch_size=30,
        **FIT,
    )
    lrs = np.array(result.history.lr)  # 7 steps an epoch, 28 in all
    np.testing.assert_allclose(lrs[:14], 0.1)
    np.testing.assert_allclose(lrs[14:21], 0.01)
    np.testing.assert_allclose(lrs[21:], 0.001)
    with pytest.raises(ValueError, match="'cosine' or 'step'"):
        train_single(
            model,
            moons.train,
            sgd(model),
            epochs=1,
            lr_max=0.1,
            eval=moons.test,
            schedule="linear",
            **FIT,
        )


# --- the claim ---------------------------------------------------------------------------


def digits_splits(seed):
    """Digits 20/30/50, standardized on the training part (as samples/snapshot_ensemble.py)."""
    parts = split(load_digits(), val=0.3, test=0.5, seed=seed)
    scaler = Standardize().fit(parts.train.x)
    return Splits(*(dataclasses.replace(p, x=scaler.transform(p.x)) for p in parts))


def digits_mlp(seed):
    manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, 64, init="he"),
        nn.BatchNorm1d(64, fused=True),
        nn.ReLU(),
        nn.Linear(64, 64, init="he"),
        nn.BatchNorm1d(64, fused=True),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def test_snapshot_ensemble_scores_at_least_the_single_model_on_the_same_budget():
    """5 cosine cycles of 20 epochs against one 100-epoch cosine run, on 360 training digits
    and 898 test digits, for seeds 0, 1, 2.

    Over 20 seeds (samples/snapshot_ensemble.py) the ensemble gains +0.54 points on average
    (standard error 0.20) and scores at least the single model in 15 of 20, so a single seed
    can lose by a digit or two: the claim is tested on the mean of the first three seeds.
    Each snapshot alone is typically worse than the single model; their average is not.
    """
    ensembles, singles = [], []
    for seed in range(3):
        parts = digits_splits(seed)
        options = {"eval": parts.test, "batch_size": 32, "seed": seed, **FIT}
        model = digits_mlp(seed)
        single = train_single(
            model,
            parts.train,
            SGD(model.parameters(), lr=0.2, momentum=0.9),
            epochs=100,
            lr_max=0.2,
            **options,
        )
        model = digits_mlp(seed)
        snapshots = snapshot_ensemble(
            model,
            parts.train,
            SGD(model.parameters(), lr=0.2, momentum=0.9),
            cycles=5,
            epochs_per_cycle=20,
            lr_max=0.2,
            **options,
        )
        ensembles.append(snapshots.ensemble_accuracy)
        singles.append(single.accuracy)
        # the ensemble beats its own average member, seed by seed
        assert snapshots.ensemble_accuracy > np.mean(snapshots.snapshot_accuracies)
    assert np.mean(ensembles) >= np.mean(singles)
    assert min(singles) > 0.9
