"""Batch norm against closed forms: the statistics it must produce and the notes' backward."""

import numpy as np
import pytest

from topograd import Tensor, nn
from topograd import functional as F


def notes_batchnorm_backward(dout, x, gamma, eps):
    """The notes' step-by-step closed form (dvar, then dmean, then dx), written out."""
    m = x.shape[0]
    mean = x.mean(axis=0)
    var = x.var(axis=0)
    x_hat = (x - mean) / np.sqrt(var + eps)
    dhat = dout * gamma
    dvar = (dhat * (x - mean) * (-0.5) * (var + eps) ** -1.5).sum(axis=0)
    dmean = (dhat * -((var + eps) ** -0.5)).sum(axis=0) + dvar * (-2 * (x - mean)).sum(axis=0) / m
    dx = dhat / np.sqrt(var + eps) + dvar * 2 * (x - mean) / m + dmean / m
    return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)


@pytest.fixture
def batch():
    rng = np.random.default_rng(3)
    return 5.0 + 3.0 * rng.standard_normal((64, 3)), rng.standard_normal((64, 3))


@pytest.mark.parametrize("fused", [False, True])
def test_training_output_is_standardized(batch, fused):
    x, _ = batch
    out = nn.BatchNorm1d(3, fused=fused)(Tensor(x)).data
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-5)  # eps makes it a hair below 1


@pytest.mark.parametrize("fused", [False, True])
def test_training_output_takes_gamma_and_beta(batch, fused):
    x, _ = batch
    layer = nn.BatchNorm1d(3, fused=fused)
    layer.weight.data = np.array([3.0, 4.0, 5.0])
    layer.bias.data = np.array([6.0, 7.0, 8.0])
    out = layer(Tensor(x)).data
    np.testing.assert_allclose(out.mean(axis=0), [6.0, 7.0, 8.0], atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), [3.0, 4.0, 5.0], rtol=1e-5)


def test_running_statistics_follow_pytorch_semantics(batch):
    x, _ = batch
    layer = nn.BatchNorm1d(3, momentum=0.1)
    layer(Tensor(x))
    np.testing.assert_allclose(layer.running_mean, 0.1 * x.mean(axis=0))
    np.testing.assert_allclose(layer.running_var, 0.9 + 0.1 * x.var(axis=0, ddof=1))
    assert int(layer.num_batches_tracked) == 1


def test_eval_normalizes_with_running_statistics(batch):
    x, _ = batch
    layer = nn.BatchNorm1d(3)
    for shift in range(5):
        layer(Tensor(x + shift))
    layer.eval()
    probe = np.random.default_rng(0).standard_normal((4, 3))
    out = layer(Tensor(probe)).data
    expected = (probe - layer.running_mean) / np.sqrt(layer.running_var + layer.eps)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    before = layer.running_mean.copy()
    layer(Tensor(probe))
    np.testing.assert_array_equal(layer.running_mean, before)


@pytest.mark.parametrize("fused", [False, True])
def test_backward_equals_the_notes_closed_form(batch, fused):
    x, dout = batch
    gamma = np.array([0.5, -2.0, 1.5])
    layer = nn.BatchNorm1d(3, fused=fused)
    layer.weight.data = gamma
    xt = Tensor(x, requires_grad=True)
    layer(xt).backward(dout)
    dx, dgamma, dbeta = notes_batchnorm_backward(dout, x, gamma, layer.eps)
    np.testing.assert_allclose(xt.grad, dx, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(layer.weight.grad, dgamma, rtol=1e-10)
    np.testing.assert_allclose(layer.bias.grad, dbeta, rtol=1e-10)


@pytest.mark.parametrize("shape", [(16, 4), (8, 4, 5)])
def test_fused_equals_composed(shape):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape) * 2 + 1
    dout = rng.standard_normal(shape)
    results = []
    for fused in (False, True):
        layer = nn.BatchNorm1d(4, fused=fused)
        layer.weight.data = np.array([1.0, 2.0, -1.0, 0.5])
        xt = Tensor(x, requires_grad=True)
        out = layer(xt)
        out.backward(dout)
        results.append(
            (
                out.data,
                xt.grad,
                layer.weight.grad,
                layer.bias.grad,
                layer.running_mean,
                layer.running_var,
            )
        )
    for composed, fused in zip(*results, strict=True):
        np.testing.assert_allclose(fused, composed, rtol=1e-10, atol=1e-12)


def test_composed_batch_norm_is_made_of_primitives(batch):
    x, _ = batch
    out = nn.BatchNorm1d(3)(Tensor(x, requires_grad=True))
    from topograd import Graph

    ops = {info.op for info in map(Graph(out).info, Graph(out).nodes)}
    assert "batch_norm_fused" not in ops
    assert {"mean", "sub", "mul", "power", "add"} <= ops


def test_batch_of_one_in_training_says_why():
    layer = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match=r"more than one value per channel.*\(1, 3\)"):
        layer(Tensor(np.ones((1, 3))))
    assert int(layer.num_batches_tracked) == 0
    layer.eval()
    assert layer(Tensor(np.ones((1, 3)))).shape == (1, 3)


def test_wrong_feature_count_names_the_layer_and_shape():
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\).*\(4, 5\)"):
        nn.BatchNorm1d(3)(Tensor(np.ones((4, 5))))


def test_functional_batch_norm_without_buffers_uses_batch_statistics(batch):
    x, _ = batch
    out = F.batch_norm(Tensor(x), training=True).data
    np.testing.assert_allclose(out, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-12)
