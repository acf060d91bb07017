"""GELU (exact and tanh), Softmax and LogSoftmax as layers, and the erf primitive: values and
gradients against closed forms, central differences and PyTorch; usable in a model file."""

from __future__ import annotations

import math

import numpy as np
import pytest
from topograd.dsl import Source, check, parse
from topograd.engine import Tensor, gradcheck
from topograd.engine.nn import LAYERS
from topograd.engine.nn.activations_extra import GELU, LogSoftmax, Softmax, erf

X = np.random.default_rng(0).normal(scale=2.0, size=(4, 5))


def test_erf_matches_math_erf_and_its_derivative():
    values = np.array([-3.0, -0.5, 0.0, 0.25, 2.0])
    out = erf(Tensor(values, requires_grad=True))
    np.testing.assert_allclose(out.data, [math.erf(v) for v in values], rtol=0, atol=1e-16)
    assert gradcheck(erf, values).passed()


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_is_x_times_the_normal_cdf_with_its_gradient(approximate):
    layer = GELU(approximate)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(X / math.sqrt(2)))
    expected = X * cdf
    tolerance = 1e-14 if approximate == "none" else 1e-3  # the tanh form is an approximation
    np.testing.assert_allclose(layer(Tensor(X)).data, expected, rtol=0, atol=tolerance)
    assert gradcheck(layer, X).passed()


@pytest.mark.parametrize(("kind", "axis"), [(Softmax, 1), (LogSoftmax, 1), (Softmax, 0)])
def test_softmax_layers_along_their_axis(kind, axis):
    out = kind(axis)(Tensor(X)).data
    shifted = np.exp(X - X.max(axis=axis, keepdims=True))
    probabilities = shifted / shifted.sum(axis=axis, keepdims=True)
    expected = probabilities if kind is Softmax else np.log(probabilities)
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-14)
    assert gradcheck(kind(axis), X).passed()


def test_the_layers_match_pytorch():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    for layer, reference in [
        (GELU(), lambda t: functional.gelu(t)),
        (GELU("tanh"), lambda t: functional.gelu(t, approximate="tanh")),
        (Softmax(-1), lambda t: torch.softmax(t, -1)),
        (LogSoftmax(1), lambda t: torch.log_softmax(t, 1)),
    ]:
        x, xt = Tensor(X, requires_grad=True), torch.tensor(X, requires_grad=True)
        upstream = np.cos(X)
        layer(x).backward(upstream)
        reference(xt).backward(torch.as_tensor(upstream))
        np.testing.assert_allclose(layer(Tensor(X)).data, reference(torch.as_tensor(X)), atol=1e-15)
        np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=0, atol=1e-14)


def test_an_unknown_approximation_is_refused():
    with pytest.raises(ValueError, match="GELU approximate must be 'none' or 'tanh'"):
        GELU("erf")


def test_the_model_language_names_them():
    assert {"gelu", "softmax", "log_softmax"} <= set(LAYERS.names())
    text = (
        'network n(input=4) {\n  linear(8)\n  gelu\n  linear(8)\n  gelu(approximate="tanh")\n'
        "  linear(3)\n  log_softmax(axis=1)\n  softmax(axis=-1)\n}\n"
    )
    spec = check(parse(text, "n.tg"), Source("n.tg", text))
    assert [layer.kind for layer in spec.network.layers][-2:] == ["log_softmax", "softmax"]
