"""fit's callback: when it is called, and that asking to stop keeps the weights of that moment
(the weights an uninterrupted run had after the same steps) without putting the best back."""

import math

import numpy as np
from topograd.engine.train.history import INTERRUPTED

from topograd import manual_seed, nn
from topograd.optim import Adam
from topograd.train import fit

BATCH, ROWS = 32, 200
STEPS_PER_EPOCH = math.ceil(ROWS / BATCH)  # 7


def blobs(n=240, seed=0):
    """Three Gaussian blobs in 4-D, learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.normal(size=(3, 4))
    y = rng.integers(0, 3, n)
    return centres[y] + rng.normal(size=(n, 4)), y.astype(np.int64)


def seeded_model():
    """A model with batch norm and dropout, so that both batches and masks must replay."""
    manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 16, init="he"),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(16, 3),
    )


def train(model, epochs=3, callback=None):
    x, y = blobs()
    return fit(
        model,
        (x[:ROWS], y[:ROWS]),
        Adam(model.parameters(), lr=1e-2),
        epochs=epochs,
        batch_size=BATCH,
        val=(x[ROWS:], y[ROWS:]),
        progress=False,
        log=None,
        callback=callback,
    )


def assert_states_equal(actual, expected):
    assert actual.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


def without_timings(history):
    data = history.to_dict()
    data.pop("seconds")
    return data


def test_called_after_every_step_and_after_every_epochs_measurements():
    calls = []

    def record(event, history):
        calls.append((event, history.steps, len(history.epochs), len(history.val_loss)))

    history = train(seeded_model(), epochs=2, callback=record)
    expected = []
    for epoch in (1, 2):
        done = epoch - 1
        steps = done * STEPS_PER_EPOCH
        expected += [("step", steps + i, done, done) for i in range(1, STEPS_PER_EPOCH + 1)]
        expected.append(("epoch", epoch * STEPS_PER_EPOCH, epoch, epoch))
    assert calls == expected
    assert history.stopped is None


def test_stopping_after_k_steps_keeps_the_weights_of_step_k():
    k = STEPS_PER_EPOCH + 3  # inside epoch 2, after epoch 1 became the best so far
    watched, seen = seeded_model(), {}

    def watch(event, history):
        if event == "epoch" and history.epochs[-1] == 1:
            seen["epoch 1"] = watched.state_dict()
        if event == "step" and history.steps == k:
            seen["step k"] = watched.state_dict()

    full = train(watched, callback=watch)  # uninterrupted: its weights after k steps
    assert full.steps == 3 * STEPS_PER_EPOCH and full.stopped is None

    model = seeded_model()
    history = train(model, callback=lambda event, h: event == "step" and h.steps >= k)
    assert history.stopped == INTERRUPTED
    assert f"after step {k} (epoch 2)" in history.stop_message
    assert history.steps == len(history.lr) == k
    assert all(len(ratios) == k for ratios in history.update_ratios.values())
    assert history.step_loss == full.step_loss[:k]
    assert history.epochs == [1]
    assert_states_equal(model.state_dict(), seen["step k"])
    # no restore: the best epoch's (epoch 1's) weights were not put back
    assert history.best_epoch == 1
    assert not np.array_equal(model.state_dict()["0.weight"], seen["epoch 1"]["0.weight"])
    assert history.diagnosis is not None  # the end-of-run diagnosis still ran (on epoch 1)


def test_stopping_at_an_epoch_end_trains_no_further_step():
    model = seeded_model()
    history = train(model, callback=lambda event, h: event == "epoch")
    assert history.stopped == INTERRUPTED
    assert history.epochs == [1] and history.steps == STEPS_PER_EPOCH
    one_model = seeded_model()
    one_epoch = train(one_model, epochs=1)
    assert history.step_loss == one_epoch.step_loss
    assert history.val_loss == one_epoch.val_loss
    assert_states_equal(model.state_dict(), one_model.state_dict())


def test_a_callback_that_never_stops_changes_nothing():
    plain_model, watched_model = seeded_model(), seeded_model()
    plain = train(plain_model)
    calls = []
    watched = train(watched_model, callback=lambda event, history: calls.append(event))
    assert len(calls) == watched.steps + len(watched.epochs) == 3 * STEPS_PER_EPOCH + 3
    assert without_timings(watched) == without_timings(plain)
    assert_states_equal(watched_model.state_dict(), plain_model.state_dict())
