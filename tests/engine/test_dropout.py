"""Dropout: expectations, masks, scaling and gradients, checked statistically and exactly."""

import numpy as np
import pytest

from topograd import Tensor, manual_seed, nn
from topograd import functional as F


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_expected_output_equals_input_and_zero_fraction_is_p(p):
    x = Tensor(np.full(400_000, 2.0))
    out = F.dropout(x, p, rng=1).data
    zeros = np.mean(out == 0.0)
    sigma = np.sqrt(p * (1 - p) / out.size)
    assert abs(zeros - p) < 5 * sigma
    # E[out] = x: the mean of 400k draws of 2 * Bernoulli(1-p) / (1-p) is within 5 sigma of 2.
    assert abs(out.mean() - 2.0) < 5 * 2.0 * np.sqrt(p / (1 - p) / out.size)


def test_kept_units_are_scaled_by_one_over_keep_probability():
    out = F.dropout(Tensor(np.ones(1000)), 0.25, rng=0).data
    assert set(np.unique(out)) == {0.0, 1.0 / 0.75}


def test_eval_returns_the_input_unchanged():
    layer = nn.Dropout(0.5).eval()
    x = Tensor(np.arange(6.0))
    np.testing.assert_array_equal(layer(x).data, x.data)


def test_vanilla_dropout_scales_at_test_time():
    layer = nn.Dropout(0.3, inverted=False)
    x = Tensor(np.full(200_000, 1.5))
    train_out = layer(x).data
    assert set(np.unique(train_out)) == {0.0, 1.5}
    test_out = layer.eval()(x).data
    np.testing.assert_allclose(test_out, 1.5 * 0.7)
    assert abs(train_out.mean() - test_out.mean()) < 0.01  # same expectation in both modes


def test_gradient_flows_only_through_kept_units_with_the_same_scale():
    x = Tensor(np.random.default_rng(0).standard_normal(500), requires_grad=True)
    out = F.dropout(x, 0.4, rng=3)
    upstream = np.random.default_rng(1).standard_normal(500)
    out.backward(upstream)
    kept = out.data != 0.0
    np.testing.assert_allclose(x.grad[kept], upstream[kept] / 0.6)
    np.testing.assert_array_equal(x.grad[~kept], 0.0)


def test_mask_is_reproducible_from_a_seed():
    x = Tensor(np.ones(100))
    np.testing.assert_array_equal(F.dropout(x, 0.5, rng=42).data, F.dropout(x, 0.5, rng=42).data)
    manual_seed(7)
    first = nn.Dropout(0.5)(x).data
    manual_seed(7)
    np.testing.assert_array_equal(nn.Dropout(0.5)(x).data, first)
    assert not np.array_equal(F.dropout(x, 0.5, rng=1).data, F.dropout(x, 0.5, rng=2).data)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_probability_outside_zero_one_is_rejected(p):
    with pytest.raises(ValueError, match=r"(?i)dropout p .* \[0, 1\), got"):
        nn.Dropout(p)
    with pytest.raises(ValueError, match="dropout p"):
        F.dropout(Tensor(np.ones(3)), p)


def test_p_zero_is_the_identity():
    x = Tensor(np.arange(4.0))
    assert F.dropout(x, 0.0) is x
