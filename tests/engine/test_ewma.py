"""The exponentially weighted moving average against the notes' closed forms (notes 001,
"Moving averages" and "Bias correction"), and batch norm's running statistics as one of them.

The notes' average is v_t = beta v_{t-1} + (1 - beta) x_t from v_0 = 0, which unrolls to
v_t = (1 - beta) sum_i beta^(t - i) x_i: a linear filter whose weights sum to 1 - beta^t.
Everything below follows from that: a constant c averages to c (1 - beta^t), so dividing by
1 - beta^t makes it exact; the last N points carry 1 - beta^N of the weight, which for
N = (1 + beta) / (1 - beta) is about 1 - e^-2 = 86%.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from topograd import Tensor, nn
from topograd.optim import EWMA, ewma_update_

EPS = np.finfo(np.float64).eps
CONSTANTS = (1.0, 3.7, -2.5, 1e-3, 1e6, 0.1)


def notes_average(stream, beta):
    """v_t = beta v_{t-1} + (1 - beta) x_t from zero, written out as the notes have it."""
    average = np.zeros_like(np.asarray(stream[0], dtype=np.float64))
    history = []
    for x in stream:
        average = beta * average + (1 - beta) * np.asarray(x, dtype=np.float64)
        history.append(average)
    return history


# --- bias -----------------------------------------------------------------------------
@pytest.mark.parametrize("beta", [0.5, 0.9])
def test_bias_corrected_average_of_a_constant_is_exact_from_the_first_step(beta):
    """Every step, to 1e-15 relative: v_t = c (1 - beta^t) divided by 1 - beta^t."""
    for c in CONSTANTS:
        average = EWMA(beta)
        for _ in range(300):
            assert abs(average.update(c) - c) <= 1e-15 * abs(c)


@pytest.mark.parametrize("beta", [0.98, 0.999])
def test_bias_correction_of_a_slow_average_is_exact_up_to_the_rounding_of_its_divisor(beta):
    """For beta near 1 the first divisors 1 - beta^t are small (0.002 at t = 2 for 0.999), and
    the rounding of beta^t, half an ulp, is divided by them: the error stays within a few ulps
    of c / (1 - beta^t), and is under 1e-15 relative once 1 - beta^t is not small."""
    for c in CONSTANTS:
        average = EWMA(beta)
        for t in range(1, 301):
            error = abs(average.update(c) - c) / abs(c)
            assert error <= 8 * EPS / (1 - beta**t)


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.98])
def test_uncorrected_average_of_a_constant_is_low_by_exactly_one_minus_beta_to_the_t(beta):
    """The notes: without correction the early estimates are biased toward the zero start,
    v_t / c = 1 - beta^t."""
    for c in CONSTANTS:
        average = EWMA(beta, bias_correction=False)
        for t in range(1, 101):
            value = average.update(c)
            assert value / c == pytest.approx(1 - beta**t, rel=1e-14, abs=0)
            assert np.array_equal(average.raw, np.asarray(value))


def test_expected_uncorrected_average_of_a_random_stream_is_its_mean_times_one_minus_beta_t():
    """The notes' derivation, E[v_t] = E[x] (1 - beta^t), checked on 200,000 streams at once;
    the corrected average is unbiased from the first step."""
    beta, mean, streams = 0.9, 3.0, 200_000
    rng = np.random.default_rng(0)
    raw, corrected = EWMA(beta, bias_correction=False), EWMA(beta)
    for t in range(1, 11):
        x = rng.normal(mean, 1.0, streams)
        raw.update(x)
        corrected.update(x)
        # five standard errors: sqrt(sum of squared weights) <= 1 (they sum to at most 1)
        tolerance = 5 / math.sqrt(streams)
        assert raw.value.mean() == pytest.approx(mean * (1 - beta**t), abs=tolerance)
        assert corrected.value.mean() == pytest.approx(mean, abs=tolerance)


# --- the 86% rule ------------------------------------------------------------------------
def filter_weights(beta, length, bias_correction):
    """The average's weight on each of `length` inputs, read off by linearity: input t is the
    unit vector e_t, so after `length` updates component i of the average is the weight of x_i
    (the same as feeding one unit impulse per run)."""
    average = EWMA(beta, bias_correction=bias_correction)
    for t in range(length):
        impulse = np.zeros(length)
        impulse[t] = 1.0
        average.update(impulse)
    return average.value


@pytest.mark.parametrize(("beta", "points"), [(0.9, 19), (0.98, 99), (0.5, 3), (0.99, 199)])
def test_last_one_plus_beta_over_one_minus_beta_points_carry_about_86_percent(beta, points):
    """The notes' rule of thumb: N = (1 + beta) / (1 - beta) points (19 for 0.9, 99 for 0.98,
    3 for 0.5) carry ~86% of the weight, exactly 1 - beta^N, which tends to 1 - e^-2 = 0.8647
    as beta -> 1."""
    assert round((1 + beta) / (1 - beta)) == points
    length = round(35 / (1 - beta))  # long enough that beta^length (< 1e-15) is no weight
    weights = filter_weights(beta, length, bias_correction=False)
    expected = (1 - beta) * beta ** np.arange(length - 1, -1, -1)
    np.testing.assert_allclose(weights, expected, rtol=1e-12, atol=1e-300)
    share = weights[-points:].sum() / weights.sum()
    assert share == pytest.approx(1 - beta**points, rel=1e-12)
    assert 0.86 < share < 0.88
    if beta >= 0.9:
        assert share == pytest.approx(1 - math.exp(-2), abs=2e-3)


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.98])
def test_bias_corrected_weights_sum_to_one_at_every_length(beta):
    """Dividing by 1 - beta^t rescales the filter so its weights sum to 1 even when it is
    shorter than its memory, which is why a constant comes out exact."""
    for length in (1, 2, 5, 30):
        weights = filter_weights(beta, length, bias_correction=True)
        assert weights.sum() == pytest.approx(1.0, rel=1e-14)
        assert np.all(np.diff(weights) >= 0)  # recent points weigh the most


# --- arrays, state, checks ---------------------------------------------------------------
@pytest.mark.parametrize("beta", [0.0, 0.3, 0.9])
def test_array_streams_follow_the_notes_formula_elementwise(beta):
    rng = np.random.default_rng(1)
    stream = rng.standard_normal((25, 2, 3))
    average, raw = EWMA(beta), EWMA(beta, bias_correction=False)
    for t, (x, v) in enumerate(zip(stream, notes_average(stream, beta)), start=1):
        np.testing.assert_allclose(raw.update(x), v, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(average.update(x), v / (1 - beta**t), rtol=1e-13, atol=1e-15)
        assert average.value.shape == (2, 3)


def test_scalar_streams_give_floats_and_nothing_before_the_first_update():
    average = EWMA(0.9)
    assert average.value is None and average.raw is None
    assert type(average.update(2)) is float


@pytest.mark.parametrize("beta", [0.2, 0.9])
def test_ewma_update_is_in_place_on_both_sides_of_its_lerp(beta):
    """Both branches (weight of the new value below and above 1/2) compute the formula."""
    average = np.array([1.0, -2.0, 4.0])
    value = np.array([3.0, 0.25, 7.0])
    expected = beta * average + (1 - beta) * value
    assert ewma_update_(average, value, beta) is average
    np.testing.assert_allclose(average, expected, rtol=1e-15, atol=1e-15)


def test_state_dict_round_trip_continues_bit_for_bit():
    rng = np.random.default_rng(2)
    stream = rng.standard_normal((20, 4))
    original = EWMA(0.8)
    for x in stream[:7]:
        original.update(x)
    saved = original.state_dict()
    original.update(stream[7])  # the saved state must be a copy, not a view
    original.load_state_dict(saved)
    restored = EWMA(0.1, bias_correction=False)
    restored.load_state_dict(saved)
    assert (restored.beta, restored.bias_correction, restored.steps) == (0.8, True, 7)
    for x in stream[7:]:
        assert np.array_equal(original.update(x), restored.update(x))
    fresh = EWMA(0.5)
    fresh.load_state_dict(EWMA(0.5).state_dict())
    assert fresh.value is None


@pytest.mark.parametrize("beta", [-0.1, 1.0, 1.5, float("nan")])
def test_invalid_beta_raises_and_names_beta(beta):
    with pytest.raises(ValueError, match="beta"):
        EWMA(beta)


# --- batch norm keeps the same average ---------------------------------------------------
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batch_norm_running_statistics_are_uncorrected_moving_averages(momentum):
    """BatchNorm1d's running_mean after k batches is the uncorrected EWMA, beta = 1 - momentum,
    of the batch means (the notes' mu_t = beta mu_t + (1 - beta) mu_batch); running_var is the
    same average of the unbiased batch variances, but started at 1, so it carries beta^k of 1."""
    beta = 1 - momentum
    layer = nn.BatchNorm1d(3, momentum=momentum)
    layer.train()
    rng = np.random.default_rng(3)
    batches = [
        rng.normal(loc=[1.0, -2.0, 5.0], scale=[0.5, 2.0, 1.0], size=(8, 3)) for _ in range(6)
    ]
    means, variances = EWMA(beta, bias_correction=False), EWMA(beta, bias_correction=False)
    for k, batch in enumerate(batches, start=1):
        layer(Tensor(batch))
        means.update(batch.mean(axis=0))
        variances.update(batch.var(axis=0, ddof=1))
        np.testing.assert_allclose(layer.running_mean, means.value, rtol=1e-13)
        np.testing.assert_allclose(layer.running_var, beta**k + variances.value, rtol=1e-13)
    unrolled = sum(
        (1 - beta) * beta ** (len(batches) - i) * b.mean(axis=0) for i, b in enumerate(batches, 1)
    )
    np.testing.assert_allclose(layer.running_mean, unrolled, rtol=1e-13)


def test_batch_norm_without_momentum_keeps_the_plain_mean_of_the_notes_first_slide():
    """momentum=None is the step alpha_n = 1 / n of the notes' first moving average: the
    running mean is then the arithmetic mean of all the batch means."""
    layer = nn.BatchNorm1d(2, momentum=None)
    rng = np.random.default_rng(4)
    batches = [rng.normal(size=(5, 2)) + i for i in range(7)]
    for batch in batches:
        layer(Tensor(batch))
    expected = np.mean([b.mean(axis=0) for b in batches], axis=0)
    np.testing.assert_allclose(layer.running_mean, expected, rtol=1e-13)
