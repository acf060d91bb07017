"""The LR range test on a small real problem: three overlapping Gaussian blobs in the plane,
classified by a linear softmax layer or a small MLP with batch norm, trained by SGD.

The blobs overlap a little on purpose: on perfectly separable data the loss can reach zero
before the lr gets large, and then no explosion is seen (a limitation of the method, noted in
lr_range_test's docstring).
"""

import math
import sys

import numpy as np
import pytest

from topograd import Tensor, manual_seed, nn
from topograd import functional as F
from topograd.optim import SGD, lr_range_test, suggest_lr

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- the problem ---------------------------------------------------------------------------
def blobs(seed=0, n=256, batch_size=32):
    """Three unit-variance blobs whose centres are 2 apart, in shuffled minibatches."""
    rng = np.random.default_rng(seed)
    centres = 2.0 * np.array([[0.0, 1.0], [0.87, -0.5], [-0.87, -0.5]])
    labels = rng.integers(0, 3, n)
    points = centres[labels] + rng.normal(size=(n, 2))
    return [
        (points[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, n, batch_size)
    ]


def make_model(kind, seed=0):
    manual_seed(seed)
    if kind == "linear":
        return nn.Linear(2, 3)
    return nn.Sequential(
        nn.Linear(2, 16, init="he"), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)
    )


def loss_fn(model, batch):
    points, labels = batch
    return F.cross_entropy(model(Tensor(points)), labels)


def full_loss(model, batches):
    points = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return loss_fn(model, (points, labels)).item()


def train(model, lr, batches, steps=40):
    """Plain SGD for `steps` batches; the full-data loss before and after, and every loss."""
    optimizer = SGD(model.parameters(), lr=lr)
    before = full_loss(model, batches)
    losses = []
    for step in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model, batches[step % len(batches)])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return before, full_loss(model, batches), losses


def probe(kind="linear", seed=0, **options):
    model = make_model(kind, seed)
    settings = {"start_lr": 1e-4, "end_lr": 1e3, "num_steps": 100, **options}
    return lr_range_test(model, loss_fn, blobs(seed), SGD(model.parameters()), **settings)


# --- the sweep -------------------------------------------------------------------------------
def test_lrs_grow_geometrically_from_start_to_end():
    result = probe(start_lr=1e-5, end_lr=1e-2, num_steps=60)
    assert result.reason == "reached end_lr"
    assert not result.stopped_early
    assert len(result.lrs) == len(result.losses) == len(result.smoothed_losses) == 60
    expected = 1e-5 * (1e-2 / 1e-5) ** (np.arange(60) / 59)
    np.testing.assert_allclose(result.lrs, expected, rtol=1e-14)
    ratios = result.lrs[1:] / result.lrs[:-1]
    np.testing.assert_allclose(ratios, (1e3) ** (1 / 59), rtol=1e-12)
    assert result.lrs[0] == 1e-5
    assert result.lrs[-1] == pytest.approx(1e-2, rel=1e-14)


def test_losses_are_recorded_before_each_step_and_smoothed_with_bias_correction():
    model, batches = make_model("linear"), blobs()
    first_loss = loss_fn(model, batches[0]).item()
    result = lr_range_test(
        model, loss_fn, batches, SGD(model.parameters()), end_lr=1e-3, num_steps=30, smoothing=0.8
    )
    assert result.losses[0] == first_loss
    beta, raw = 0.8, result.losses
    expected = [
        sum((1 - beta) * beta ** (k - i) * raw[i] for i in range(k + 1)) / (1 - beta ** (k + 1))
        for k in range(len(raw))
    ]
    np.testing.assert_allclose(result.smoothed_losses, expected, rtol=1e-13)
    assert result.smoothed_losses[0] == pytest.approx(first_loss, rel=1e-15)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_stops_early_when_the_smoothed_loss_explodes(kind):
    result = probe(kind)
    assert result.stopped_early
    assert result.reason == "diverged"
    assert len(result.lrs) < 100
    smoothed = result.smoothed_losses
    best_so_far = np.minimum.accumulate(smoothed)
    assert smoothed[-1] > 4.0 * best_so_far[-1]
    assert np.all(smoothed[:-1] <= 4.0 * best_so_far[:-1])


def test_stops_on_a_non_finite_loss():
    calls = []

    def nan_on_the_40th_batch(model, batch):
        calls.append(1)
        loss = loss_fn(model, batch)
        return loss * math.nan if len(calls) == 40 else loss

    model = make_model("linear")
    result = lr_range_test(model, nan_on_the_40th_batch, blobs(), SGD(model.parameters()))
    assert len(result.lrs) == 40
    assert result.reason == "non-finite loss"
    assert result.stopped_early
    assert math.isnan(result.losses[-1])
    assert np.isfinite(result.smoothed_losses[:-1]).all()
    assert result.suggestion == suggest_lr(result.lrs[:-1], result.smoothed_losses[:-1])


def test_suggestion_is_a_tenth_of_the_lr_at_the_lowest_smoothed_loss():
    result = probe()
    best = int(np.argmin(result.smoothed_losses))
    assert result.suggestion == result.lrs[best] / 10
    assert suggest_lr([1.0, 2.0], [math.nan, math.inf]) is None


@pytest.mark.parametrize(("kind", "seed"), [("linear", 0), ("linear", 1), ("mlp", 0), ("mlp", 2)])
def test_the_suggested_lr_trains_well_and_does_not_diverge(kind, seed):
    result = probe(kind, seed)
    diverged_at = result.lrs[-1]
    assert 1e-4 * 10 < result.suggestion < diverged_at / 3  # inside the sweep, off the cliff
    batches = blobs(seed)
    start, suggested, losses = train(make_model(kind, seed), result.suggestion, batches)
    _, slow, _ = train(make_model(kind, seed), 1e-4, batches)
    assert np.isfinite(losses).all()
    assert suggested < 0.5 * start  # it learns
    assert suggested < 0.5 * slow  # and beats the start of the sweep
    assert max(losses[-10:]) < start  # settled, not oscillating upwards


# --- it is a probe: everything is put back -----------------------------------------------------
def snapshot(model, optimizer):
    return (
        model.state_dict(),
        optimizer.state_dict(),
        [None if p.grad is None else p.grad.copy() for p in model.parameters()],
        [m.training for m in model.modules()],
    )


def assert_same(before, after):
    (params, opt, grads, modes), (params2, opt2, grads2, modes2) = before, after
    assert params.keys() == params2.keys()
    for name in params:
        np.testing.assert_array_equal(params[name], params2[name], err_msg=name)
    assert opt["param_groups"] == opt2["param_groups"]
    assert opt["state"].keys() == opt2["state"].keys()
    for index, state in opt["state"].items():
        for key, value in state.items():
            np.testing.assert_array_equal(value, opt2["state"][index][key])
    for grad, grad2 in zip(grads, grads2, strict=True):
        assert (grad is None and grad2 is None) or np.array_equal(grad, grad2)
    assert modes == modes2


def trained_a_little(kind="mlp"):
    """A model and a momentum optimizer with state, gradients and a submodule in eval mode."""
    model, batches = make_model(kind), blobs()
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9)
    for batch in batches[:3]:
        optimizer.zero_grad()
        loss_fn(model, batch).backward()
        optimizer.step()
    model.parameters()[0].grad = None  # a mix of present and absent gradients
    model[3].eval()
    return model, optimizer, batches


def test_model_and_optimizer_are_restored():
    model, optimizer, batches = trained_a_little()
    before = snapshot(model, optimizer)
    result = lr_range_test(model, loss_fn, batches, optimizer, start_lr=1e-4, end_lr=1e3)
    assert result.stopped_early  # the probe did wreck the weights on the way
    assert_same(before, snapshot(model, optimizer))
    assert optimizer.param_groups[0]["lr"] == 0.05


def test_restored_even_when_the_loss_function_raises():
    model, optimizer, batches = trained_a_little()
    before = snapshot(model, optimizer)
    calls = []

    def fails_on_the_fifth_batch(model, batch):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("boom")
        return loss_fn(model, batch)

    with pytest.raises(RuntimeError, match="boom"):
        lr_range_test(model, fails_on_the_fifth_batch, batches, optimizer)
    assert_same(before, snapshot(model, optimizer))


def test_batches_are_cycled_and_an_iterator_can_run_out():
    batches = blobs()  # 8 batches
    model = make_model("linear")
    cycled = lr_range_test(
        model, loss_fn, batches, SGD(model.parameters()), end_lr=1e-4, num_steps=20
    )
    assert len(cycled.lrs) == 20
    once = lr_range_test(model, loss_fn, iter(batches), SGD(model.parameters()), num_steps=20)
    assert len(once.lrs) == 8
    assert once.reason == "batches ran out"
    assert not once.stopped_early


BAD = [
    ({"start_lr": 0.0}, "start_lr", "0.0"),
    ({"start_lr": 1.0, "end_lr": 0.5}, "end_lr", "0.5"),
    ({"num_steps": 1}, "num_steps", "1"),
    ({"num_steps": 10.0}, "num_steps", "10.0"),
    ({"smoothing": 1.0}, "smoothing", "1.0"),
    ({"divergence": 1.0}, "divergence", "1.0"),
]


@pytest.mark.parametrize(("options", "name", "value"), BAD)
def test_bad_arguments_name_the_argument(options, name, value):
    model = make_model("linear")
    with pytest.raises(ValueError, match=rf"{name}.*{value}"):
        lr_range_test(model, loss_fn, blobs(), SGD(model.parameters()), **options)


# --- the plot --------------------------------------------------------------------------------
def test_plot_writes_a_png(tmp_path):
    result = probe()
    path = result.plot(tmp_path / "range.png")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 5000


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install topograd\[plot\]"):
        probe(num_steps=5).plot(tmp_path / "range.png")
    assert not (tmp_path / "range.png").exists()
