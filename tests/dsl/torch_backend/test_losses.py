"""The torch losses are the engine's: every loss with every option and reduction gives the
engine's value and gradient (relative 1e-12), refuses what the engine refuses with the same
message, and the train section's loss (options plus the L2 penalty) built for a torch module
equals dsl.build's for the engine model."""

from __future__ import annotations

import numpy as np
import pytest

from topograd import Tensor, dsl
from topograd.functional import LOSSES as ENGINE_LOSSES

torch = pytest.importorskip("torch")

from topograd.dsl.torch_backend.losses import LOSSES, to_torch_loss
from topograd.dsl.torch_backend.modules import (
    to_torch_module,
    torch_parameters,
    transposed_parameters,
)

RTOL = 1e-12
REDUCTIONS = ("mean", "sum", "none")


def assert_close(actual, expected, what):
    if isinstance(actual, torch.Tensor):
        actual = actual.detach().numpy()
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(np.abs(actual).max(initial=0.0), np.abs(expected).max(initial=0.0))
    error = np.abs(actual - expected).max(initial=0.0)
    assert error <= RTOL * scale, f"{what}: max error {error:.3g} at scale {scale:.3g}"


def labels(rng, n, classes, dtype=np.int64):
    return rng.integers(0, classes, size=n).astype(dtype)


# (loss name, id, outputs shape, targets(rng), options)
CASES = [
    ("cross_entropy", "ce", (7, 4), lambda r: labels(r, 7, 4), {}),
    ("cross_entropy", "ce-float-labels", (7, 4), lambda r: labels(r, 7, 4, np.float64), {}),
    ("mse", "mse", (7, 3), lambda r: r.normal(size=(7, 3)), {}),
    ("mse", "mse-int-targets", (7, 1), lambda r: labels(r, (7, 1), 3), {}),
    ("mse", "mse-vector", (7,), lambda r: r.normal(size=7), {}),
    ("bce_with_logits", "bce", (7, 1), lambda r: labels(r, (7, 1), 2, np.float64), {}),
    ("bce_with_logits", "bce-soft", (7, 2), lambda r: r.uniform(size=(7, 2)), {}),
    ("hinge", "hinge-01", (7,), lambda r: labels(r, 7, 2), {}),
    ("hinge", "hinge-pm1-column", (7, 1), lambda r: 2 * labels(r, (7, 1), 2) - 1, {}),
    ("hinge", "hinge-margin", (7, 1), lambda r: labels(r, 7, 2), {"margin": 0.3}),
    ("hinge", "hinge-multiclass", (7, 4), lambda r: labels(r, 7, 4), {}),
    ("hinge", "hinge-multiclass-margin", (7, 4), lambda r: labels(r, 7, 4), {"margin": 2.5}),
]


def test_the_torch_losses_are_the_engines():
    assert set(LOSSES) == set(ENGINE_LOSSES.names())
    assert {name for name, *_ in CASES} == set(LOSSES)


def both(name, outputs, targets, **options):
    """(engine value, engine output gradient, torch value, torch output gradient)."""
    engine_outputs = Tensor(outputs, requires_grad=True)
    torch_outputs = torch.tensor(outputs, requires_grad=True)
    value = ENGINE_LOSSES.get(name)(engine_outputs, targets, **options)
    value_torch = LOSSES[name](torch_outputs, targets, **options)
    upstream = np.random.default_rng(1).normal(size=value.shape)
    (value * Tensor(upstream)).sum().backward()
    (value_torch * torch.tensor(upstream)).sum().backward()
    return value.data, engine_outputs.grad, value_torch, torch_outputs.grad


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("name", "shape", "targets", "options"),
    [(c[0], *c[2:]) for c in CASES],
    ids=[c[1] for c in CASES],
)
def test_loss_value_and_gradient(name, shape, targets, options, reduction):
    rng = np.random.default_rng(11)
    outputs = rng.normal(scale=2.0, size=shape)
    value, grad, value_torch, grad_torch = both(
        name, outputs, targets(rng), reduction=reduction, **options
    )
    assert_close(value_torch, value, "loss")
    assert_close(grad_torch, grad, "gradient")


def test_targets_may_be_tensors():
    rng = np.random.default_rng(0)
    outputs, y = torch.tensor(rng.normal(size=(5, 3))), labels(rng, 5, 3)
    for name in ("cross_entropy", "hinge"):
        assert LOSSES[name](outputs, torch.tensor(y)).item() == LOSSES[name](outputs, y).item()


def test_bce_keeps_the_digits_of_confident_answers():
    logits = np.array([[40.0], [-40.0], [25.0], [0.0]])
    targets = np.array([[1.0], [0.0], [1.0], [1.0]])
    value, grad, value_torch, grad_torch = both(
        "bce_with_logits", logits, targets, reduction="none"
    )
    assert 0 < value[0, 0] < 1e-17  # e^-40, not 0
    assert_close(value_torch, value, "loss")
    assert_close(grad_torch, grad, "gradient")


@pytest.mark.parametrize(
    ("name", "shape", "targets", "options"),
    [
        ("cross_entropy", (4, 3), [0, 1, 3, 2], {}),
        ("cross_entropy", (4, 3), [0, 1, 2], {}),
        ("cross_entropy", (4, 3), [0, 1, 0.5, 2], {}),
        ("cross_entropy", (4,), [0, 1, 1, 2], {}),
        ("mse", (4, 1), [0, 1, 1, 0], {}),
        ("bce_with_logits", (4, 1), [0.0, 1.0, 1.0, 0.0], {}),
        ("hinge", (4, 1), [0, 1, 2, 0], {}),
        ("hinge", (4, 3, 2), [0, 1, 2, 0], {}),
        ("hinge", (4, 3), [0, 1, 5, 0], {}),
        ("mse", (4, 1), np.zeros((4, 1)), {"reduction": "avg"}),
    ],
)
def test_refusals_match_the_engine(name, shape, targets, options):
    outputs = np.zeros(shape)
    with pytest.raises(ValueError) as engine_error:
        ENGINE_LOSSES.get(name)(Tensor(outputs), np.asarray(targets), **options)
    with pytest.raises(ValueError) as torch_error:
        LOSSES[name](torch.tensor(outputs), np.asarray(targets), **options)
    assert str(torch_error.value) == str(engine_error.value)


# --- the train section's loss ---------------------------------------------------------------------
NETWORK = """
data {{
  dataset moons(n=40, noise=0.1)
  val 0
  test 0
}}
network net{options} {{
  {layers}
}}
train {{
  loss {loss}
  l2 {l2}
  optimizer sgd(lr=0.1)
  epochs 1
  batch 20
}}
"""
TENSOR_LAYERS = "linear(5)\n  layernorm\n  tanh\n  maxout(3, pieces=2)\n  relu\n  linear"


@pytest.mark.parametrize(
    ("loss", "l2", "scalar"),
    [
        ("cross_entropy", 0, False),
        ("cross_entropy(reduction=sum)", 0.01, False),
        ("hinge(margin=0.5)", 0.1, False),
        ("hinge", 0.05, True),
    ],
)
def test_train_section_loss_with_l2_matches_build_loss(loss, l2, scalar):
    text = NETWORK.format(
        options="(scalar=true)" if scalar else "",
        layers="linear(4)\n  relu\n  linear" if scalar else TENSOR_LAYERS,
        loss=loss,
        l2=l2,
    )
    source = dsl.Source("loss.tg", text)
    spec = dsl.load(source)
    built = dsl.build(spec, source)
    model = built.model
    module = to_torch_module(model)
    torch_loss = to_torch_loss(spec, module, model)
    assert torch_loss.__name__ == spec.train.loss.name
    train = built.data.splits.train
    x, y = train.x[:16], train.y[:16]
    value = built.loss(model(Tensor(x)), y)
    value_torch = torch_loss(module(torch.tensor(x)), y)
    assert_close(value_torch, value.data, "loss")
    value.backward()
    value_torch.backward()
    pairs = zip(model.named_parameters(), torch_parameters(module), transposed_parameters(module))
    for (name, p), param, flip in pairs:
        assert_close(param.grad.T if flip else param.grad, p.grad, f"gradient of {name}")


def test_the_l2_penalty_touches_the_decayed_weights_only():
    text = NETWORK.format(options="", layers=TENSOR_LAYERS, loss="mse", l2=0.5)
    source = dsl.Source("l2.tg", text)
    spec = dsl.load(source)
    model = dsl.build(spec, source).model
    module = to_torch_module(model)
    outputs = torch.zeros(3, 1, dtype=torch.float64)
    total = to_torch_loss(spec, module, model)(outputs, np.zeros((3, 1)))
    total.backward()
    for (name, p), param in zip(model.named_parameters(), torch_parameters(module)):
        decayed = name.endswith("weight") and p.ndim == 2
        assert (param.grad is not None) == decayed, name
        if decayed:
            assert torch.equal(param.grad, 0.5 * param.detach())  # d/dw (l2/2) w^2 = l2 w
    expected = 0.25 * sum((p.data**2).sum() for p in model.parameters() if p.ndim == 2)
    assert total.item() == pytest.approx(expected, rel=1e-12)
