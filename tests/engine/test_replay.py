"""`tg.replay`: a captured step replayed over plain arrays computes exactly what the eager step
computes (losses, gradients, weights, running statistics, dropout draws: bit for bit), falls
back to eager execution with a warning whenever it cannot be sure, and validates its inputs.
The independent truth is the eager engine itself, run beside it from the same state."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from topograd.engine import Tensor, detect_anomaly, no_grad, replay
from topograd.engine.capture import ReplayWarning
from topograd.engine.modes import use_rng
from topograd.engine.train.history import NONFINITE

from topograd import functional as F
from topograd import nn, optim
from topograd.train import fit


def _mlp(fused, p=0.3, seed=0, width=16, classes=4, features=6):
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Linear(features, width, rng=rng),
        nn.BatchNorm1d(width, fused=fused),
        nn.ReLU(),
        nn.Dropout(p, rng=np.random.default_rng(seed + 1)),
        nn.Linear(width, classes, rng=rng),
    )


def _cnn(seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, rng=rng),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, rng=rng), nn.ReLU())),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.25),  # the shared generator: replays draw from it as eager steps do
        nn.Linear(4 * 3 * 3, 3, rng=rng),
    )


def _batches(rng, count, sizes=(8,), features=6, classes=4, image=False):
    for step in range(count):
        n = sizes[step % len(sizes)]
        shape = (n, 1, 6, 6) if image else (n, features)
        yield rng.standard_normal(shape), rng.integers(0, classes, n)


def _twins(make):
    """Two identical models with Adam (made alike from seeds; each has its own generators)."""
    first, second = make(), make()
    return (first, optim.Adam(first.parameters(), lr=0.01)), (
        second,
        optim.Adam(second.parameters(), lr=0.01),
    )


def _state(model):
    return [p.data.copy() for p in model.parameters()] + [
        np.array(b, copy=True) for _, b in model.named_buffers()
    ]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _train_side_by_side(make, batches, shared_rng_seed=None):
    """Eager steps on one twin, replayed steps on the other; returns the step object and
    the losses of both (compared by the caller)."""
    (eager_model, eager_opt), (replayed_model, replayed_opt) = _twins(make)
    step = replay(lambda x, y: F.cross_entropy(replayed_model(x), y))
    eager_losses, replayed_losses = [], []
    eager_rng = np.random.default_rng(shared_rng_seed or 0)
    replay_rng = np.random.default_rng(shared_rng_seed or 0)
    for x, y in batches:
        eager_opt.zero_grad()
        with use_rng(eager_rng):
            loss = F.cross_entropy(eager_model(Tensor(x)), y)
            loss.backward()
        eager_opt.step()
        eager_losses.append(loss.item())
        replayed_opt.zero_grad()
        with use_rng(replay_rng):
            replayed_losses.append(step(x, y).item())
        replayed_opt.step()
        _assert_same(_state(eager_model), _state(replayed_model))
    assert eager_losses == replayed_losses
    assert eager_rng.bit_generator.state == replay_rng.bit_generator.state
    return step


@pytest.mark.parametrize("fused", [False, True])
def test_a_replayed_mlp_with_batch_norm_and_dropout_trains_bit_for_bit_as_eager(fused):
    batches = _batches(np.random.default_rng(1), 12)
    step = _train_side_by_side(lambda: _mlp(fused), batches)
    assert step.replays == 10 and step.eager_calls == 2  # capture; the check ran both
    assert step.status.startswith("1 program(s) captured, 1 checked")


def test_a_replayed_cnn_with_a_residual_block_trains_bit_for_bit_as_eager():
    batches = _batches(np.random.default_rng(2), 8, sizes=(5,), classes=3, image=True)
    step = _train_side_by_side(_cnn, batches)
    assert step.replays == 6


def test_a_new_batch_size_is_captured_again_and_both_replay():
    batches = _batches(np.random.default_rng(3), 14, sizes=(8, 8, 3))
    step = _train_side_by_side(lambda: _mlp(False), batches)
    assert len(step._programs) == 2 and step.replays > 0


def test_switching_to_eval_mode_captures_again_and_reads_the_running_statistics_then():
    (eager_model, eager_opt), (model, opt) = _twins(lambda: _mlp(False, p=0.0))
    step = replay(lambda x, y: F.cross_entropy(model(x), y))
    rng = np.random.default_rng(4)
    for number, (x, y) in enumerate(_batches(rng, 16)):
        training = number % 4 != 3  # every fourth step in eval mode (fine-tuning habits)
        for m in (eager_model, model):
            m.train(training)
        eager_opt.zero_grad()
        expected = F.cross_entropy(eager_model(Tensor(x)), y)
        expected.backward()
        eager_opt.step()
        opt.zero_grad()
        assert step(x, y).item() == expected.item()
        opt.step()
        _assert_same(_state(eager_model), _state(model))
    assert step.replays > 0


def test_numbers_derived_from_the_inputs_outside_the_graph_keep_the_step_eager():
    w = Tensor(np.ones(3), requires_grad=True)

    def loss(x):  # the scale is numpy on the data: the graph only sees a constant
        return (w * x * float(np.abs(x.data).max())).sum()

    step = replay(loss)
    rng = np.random.default_rng(5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            x = rng.standard_normal(3)
            w.grad = None
            value = step(x).item()
            assert value == pytest.approx(float((x * np.abs(x).max()).sum()))
            np.testing.assert_allclose(w.grad, x * np.abs(x).max(), rtol=1e-15)
    messages = [str(c.message) for c in caught if issubclass(c.category, ReplayWarning)]
    assert len(messages) == 1 and "runs eagerly" in messages[0]
    assert "constant" in messages[0]  # it names what differed
    assert step.replays == 0 and step.status.startswith("eager:")


def _replaying(model, rng):
    """A replayed cross-entropy step of `model`, past its capture and check."""
    step = replay(lambda x, y: F.cross_entropy(model(x), y))
    for x, y in _batches(rng, 3):
        step(x, y)
    assert step.replays == 1
    return step


def test_a_replayed_step_still_checks_its_class_labels():
    rng = np.random.default_rng(6)
    step = _replaying(_mlp(True, p=0.0), rng)
    x = rng.standard_normal((8, 6))
    with pytest.raises(ValueError, match=r"label 7 is outside \[0, 4\)"):
        step(x, np.array([0, 1, 2, 3, 7, 0, 1, 2]))


def test_momentum_none_cannot_be_replayed_and_says_so():
    model = nn.Sequential(nn.Linear(6, 5, rng=0), nn.BatchNorm1d(5, momentum=None))
    step = replay(lambda x, y: F.cross_entropy(model(x), y))
    twin = nn.Sequential(nn.Linear(6, 5, rng=0), nn.BatchNorm1d(5, momentum=None))
    rng = np.random.default_rng(7)
    with pytest.warns(ReplayWarning, match=r"momentum=None"):
        for x, y in _batches(rng, 4, classes=5):
            step(x, y)
            F.cross_entropy(twin(Tensor(x)), y).backward()
    _assert_same(_state(model), _state(twin))
    _assert_same([p.grad for p in model.parameters()], [p.grad for p in twin.parameters()])
    assert step.replays == 0


def test_anomaly_mode_and_no_grad_run_eagerly():
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    step = replay(lambda x: (w * x).sum())
    x = np.array([3.0, 4.0])
    for _ in range(3):
        step(x)
    assert step.replays == 1
    with detect_anomaly():
        step(x)
    assert step.replays == 1
    with no_grad(), pytest.raises(RuntimeError, match="does not require grad"):
        step(x)


def test_gradients_accumulate_into_grad_as_backward_does():
    w = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    step = replay(lambda x: (w * w * x).sum())
    x = np.array([0.5, 3.0])
    for _ in range(4):  # no zero_grad: four steps add up
        step(x)
    assert step.replays == 2
    np.testing.assert_array_equal(w.grad, 4 * 2 * w.data * x)


def test_an_input_tensor_that_requires_grad_gets_its_gradient():
    w = Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    step = replay(lambda x: (x @ w).relu().sum())
    for k in range(4):
        x = Tensor(np.array([[1.0, -1.0 - k]]), requires_grad=True)
        w.grad = None
        step(x)
        expected = (np.array([[1.0, -1.0 - k]]) @ w.data > 0).astype(float) @ w.data.T
        np.testing.assert_array_equal(x.grad, expected)
    assert step.replays == 2


def test_scalar_mode_graphs_replay_with_python_floats():
    a, b = Tensor(0.5, requires_grad=True), Tensor(-1.5, requires_grad=True)
    step = replay(lambda x: ((a * x + b).tanh() - 0.25) ** 2)
    for x in (0.3, 1.2, -0.7, 2.0):
        a.grad = b.grad = None
        value = step(x).item()
        ea, eb = Tensor(a.data, requires_grad=True), Tensor(b.data, requires_grad=True)
        expected = ((ea * x + eb).tanh() - 0.25) ** 2
        expected.backward()
        assert value == expected.item()
        assert (a.grad, b.grad) == (ea.grad, eb.grad)
    assert step.replays == 2


def test_what_the_function_returns_is_checked():
    w = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(TypeError, match="must return the loss as a Tensor"):
        replay(lambda x: float((w.data * x).sum()))(np.ones(2))
    with pytest.raises(RuntimeError, match="one-element loss"):
        replay(lambda x: w * x)(np.ones(2))


@settings(max_examples=15, deadline=None)
@given(
    fused=st.booleans(),
    p=st.sampled_from([0.0, 0.2, 0.5]),
    width=st.integers(2, 12),
    sizes=st.lists(st.integers(2, 9), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_replayed_steps_equal_eager_steps_for_drawn_networks(fused, p, width, sizes, seed):
    batches = _batches(np.random.default_rng(seed), 7, sizes=tuple(sizes))
    _train_side_by_side(lambda: _mlp(fused, p=p, seed=seed, width=width), batches, seed)


def _digits_like(rng, n=96):
    x = rng.standard_normal((n, 6))
    return x, (x[:, 0] + x[:, 1] > 0).astype(int) + 2 * (x[:, 2] > 0)


@pytest.mark.parametrize("track_stats", [True, False])
def test_fit_replays_and_trains_bit_for_bit_as_eager_fit(track_stats):
    rng = np.random.default_rng(8)
    data, val = _digits_like(rng), _digits_like(rng, 40)
    results = []
    for replayed in (True, False):
        model = _mlp(False, p=0.2, seed=3)
        history = fit(
            model,
            data,
            optim.Adam(model.parameters(), lr=0.01),
            epochs=4,
            batch_size=20,  # a last batch of 16: two programs
            val=val,
            progress=False,
            log=None,
            track_stats=track_stats,
            replay=replayed,
        )
        results.append((history, _state(model)))
    (replayed_history, replayed_state), (eager_history, eager_state) = results
    assert replayed_history.step_loss == eager_history.step_loss
    assert replayed_history.grad_norms == eager_history.grad_norms
    assert replayed_history.update_ratios == eager_history.update_ratios
    _assert_same(replayed_state, eager_state)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow the test provokes
def test_fit_still_names_the_node_that_went_non_finite_when_replaying():
    rng = np.random.default_rng(9)
    x, y = _digits_like(rng)
    reports = []
    for replayed in (True, False):
        model = nn.Sequential(nn.Linear(6, 8, rng=0), nn.ReLU(), nn.Linear(8, 4, rng=1))
        history = fit(
            model,
            (x, y),
            optim.SGD(model.parameters(), lr=1e6),
            epochs=6,
            batch_size=16,
            progress=False,
            log=None,
            explosion_factor=None,
            replay=replayed,
        )
        assert history.stopped == NONFINITE
        reports.append((history.steps, history.nonfinite.message))
    assert reports[0] == reports[1]  # the same step, the same node, the same words
    assert "matmul" in reports[0][1] or "add" in reports[0][1]


def test_a_model_converted_to_float32_is_captured_again_not_mixed_silently():
    model, rng = _mlp(False, p=0.0), np.random.default_rng(10)
    step = _replaying(model, rng)
    model.float()  # new weight and buffer arrays: the capture's no longer hold
    x, y = next(_batches(rng, 1))
    with pytest.raises(TypeError, match="dtype"):  # the eager capture runs the layer's check
        step(x, y)
    twin = _mlp(False, p=0.0)
    twin.load_state_dict(model.state_dict())
    twin.float()
    for x, y in _batches(rng, 4):
        x = x.astype(np.float32)
        loss = step(x, y)
        expected = F.cross_entropy(twin(Tensor(x)), y)
        assert loss.dtype == np.float32 and loss.item() == expected.item()
        _assert_same(_state(model), _state(twin))


def test_options_that_are_not_data_reach_the_function_as_they_are():
    w = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    step = replay(lambda x, k: (w[:k] * x[:k]).sum())  # k slices: a new k, a new capture
    x = np.array([1.0, 10.0, 100.0])
    for k in (1, 2, 2, 2, 3):
        w.grad = None
        assert step(x, k).item() == float((w.data[:k] * x[:k]).sum())
        np.testing.assert_array_equal(w.grad, np.r_[x[:k], np.zeros(3 - k)])
    assert len(step._programs) == 3 and step.replays == 1


def test_a_replay_that_fails_where_the_eager_step_works_falls_back_with_the_reason():
    from topograd.engine import define_op, unregister_op

    calls = []

    def flaky_forward(x):  # fails on its second call only: the check's replay
        calls.append(1)
        if len(calls) == 2:
            raise FloatingPointError("only the replay sees this")
        return 2.0 * x

    flaky = define_op("flaky_double", flaky_forward, lambda g, out, x: (2.0 * g,))
    try:
        w = Tensor(np.array([1.0, -1.0]), requires_grad=True)
        step = replay(lambda x: flaky(w * x).sum())
        x = np.array([3.0, 5.0])
        with pytest.warns(ReplayWarning, match="replaying it raised FloatingPointError"):
            for _ in range(4):
                w.grad = None
                assert step(x).item() == float((2.0 * w.data * x).sum())
                np.testing.assert_array_equal(w.grad, 2.0 * x)
        assert step.replays == 0 and step.disabled is not None
    finally:
        unregister_op("flaky_double")


def test_a_scalar_network_runs_eagerly_without_a_warning():
    model = nn.ScalarSequential(nn.ScalarLinear(2, 3, rng=0), nn.ReLU(), nn.ScalarLinear(3, 2))
    step = replay(lambda x, y: F.cross_entropy(model(x), y))
    rng = np.random.default_rng(11)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReplayWarning)
        for _ in range(3):
            x, y = rng.standard_normal((4, 2)), rng.integers(0, 2, 4)
            model.zero_grad()
            loss = step(x, y)
            twin_loss = F.cross_entropy(model(Tensor(x)), y)
            assert loss.item() == twin_loss.item()  # each call sees its own batch
    assert step.replays == 0 and "number by number" in step.status


@pytest.mark.parametrize(
    ("loss", "outputs", "targets"),
    [
        (F.mse_loss, 1, lambda rng: rng.standard_normal((8, 1))),
        (F.binary_cross_entropy_with_logits, 1, lambda rng: rng.integers(0, 2, (8, 1))),
        (F.hinge_loss, 1, lambda rng: rng.integers(0, 2, 8)),  # recoded to -1 and +1
        (F.hinge_loss, 4, lambda rng: rng.integers(0, 4, 8)),  # the multiclass margins
    ],
)
def test_every_loss_replays_with_each_batch_own_targets(loss, outputs, targets):
    model, twin = (nn.Sequential(nn.Linear(3, outputs, rng=0)) for _ in range(2))
    step = replay(lambda x, y: loss(model(x), y))
    rng = np.random.default_rng(12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReplayWarning)
        for _ in range(6):
            x, y = rng.standard_normal((8, 3)), targets(rng)
            model.zero_grad()
            twin.zero_grad()
            expected = loss(twin(Tensor(x)), y)
            expected.backward()
            assert step(x, y).item() == expected.item()
            _assert_same([p.grad for p in model.parameters()], [p.grad for p in twin.parameters()])
    assert step.replays == 4
