"""Engine modules translated to PyTorch compute the same thing: for every layer of the language,
random float64 inputs and weights give the same outputs, the same gradients of inputs and
parameters, and the same running statistics (relative 1e-12), in training and evaluation; the
weights copy both ways exactly; the samples' whole networks and losses agree; and a layer
without a counterpart is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from topograd.engine.custom_ops import CUSTOM

from topograd import Tensor, define_op, dsl, nn, unregister_op
from topograd.nn import LAYERS

torch = pytest.importorskip("torch")

from topograd.dsl.torch_backend import UnsupportedError
from topograd.dsl.torch_backend.losses import to_torch_loss
from topograd.dsl.torch_backend.modules import (
    copy_weights_to_engine,
    copy_weights_to_torch,
    to_torch_module,
    torch_parameters,
    transposed_parameters,
)

RTOL = 1e-12
SAMPLES = Path(__file__).resolve().parents[3] / "samples"


def assert_close(actual, expected, what, floor=0.0):
    """Same shape, and every entry within RTOL of the larger magnitude of the two arrays (or
    of `floor`, for values that are zero but for rounding)."""
    if isinstance(actual, torch.Tensor):
        actual = actual.detach().numpy()
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(np.abs(actual).max(initial=0.0), np.abs(expected).max(initial=0.0), floor)
    error = np.abs(actual - expected).max(initial=0.0)
    assert error <= RTOL * scale, f"{what}: max error {error:.3g} at scale {scale:.3g}"


def randomize(model, rng):
    """Random parameters and running statistics (the defaults 1 and 0 would hide mistakes)."""
    for p in model.parameters():
        p.data = rng.normal(size=p.shape)
    for name, buffer in model.named_buffers():
        if name.endswith("running_var"):
            buffer[...] = rng.uniform(0.5, 2.0, size=buffer.shape)
        elif name.endswith("running_mean"):
            buffer[...] = rng.normal(size=buffer.shape)
        else:
            buffer[...] = 3  # num_batches_tracked: momentum=None averages with it


def engine_buffers(model):
    return {name: np.array(b, copy=True) for name, b in model.named_buffers()}


def check_same(model, module, x, rng, grads=True):
    """Forward and backward (one random upstream gradient) through both; compare everything."""
    x_engine = Tensor(x, requires_grad=True)
    x_torch = torch.tensor(x, requires_grad=True)
    out = model(x_engine)
    out_torch = module(x_torch)
    assert_close(out_torch, out.data, "output")
    if grads:
        upstream = rng.normal(size=out.shape)
        (out * Tensor(upstream)).sum().backward()
        (out_torch * torch.tensor(upstream)).sum().backward()
        if x_engine.grad is not None:  # (a scalar network starts a graph per example)
            assert_close(x_torch.grad, x_engine.grad, "input gradient")
        pairs = zip(model.named_parameters(), torch_parameters(module), strict=True)
        for ((name, p), param), flip in zip(pairs, transposed_parameters(module), strict=True):
            grad = param.grad.T if flip else param.grad
            assert_close(grad, p.grad, f"gradient of {name}")
    torch_buffers = dict(module.named_buffers())
    for name, buffer in engine_buffers(model).items():
        assert_close(torch_buffers[name], buffer, f"buffer {name}")


# --- every layer -------------------------------------------------------------------------------
def _scalar_net(rng):
    return nn.ScalarSequential(
        nn.ScalarLinear(3, 4, rng=rng), nn.Tanh(), nn.ScalarLinear(4, 2, rng=rng), nn.ELU(0.5)
    )


# (registered layer name, id, factory(rng), input shape)
CASES = [
    ("linear", "linear", lambda r: nn.Linear(5, 4, rng=r), (6, 5)),
    ("linear", "linear-3d-nobias", lambda r: nn.Linear(5, 4, bias=False, rng=r), (2, 3, 5)),
    ("maxout", "maxout", lambda r: nn.Maxout(5, 3, pieces=3, rng=r), (6, 5)),
    ("dropout", "dropout-p0", lambda r: nn.Dropout(0.0), (6, 5)),
    ("relu", "relu", lambda r: nn.ReLU(), (6, 5)),
    ("tanh", "tanh", lambda r: nn.Tanh(), (6, 5)),
    ("sigmoid", "sigmoid", lambda r: nn.Sigmoid(), (6, 5)),
    ("leaky_relu", "leaky_relu", lambda r: nn.LeakyReLU(0.2), (6, 5)),
    ("elu", "elu", lambda r: nn.ELU(0.7), (6, 5)),
    ("gelu", "gelu", lambda r: nn.GELU(), (6, 5)),
    ("gelu", "gelu-tanh", lambda r: nn.GELU("tanh"), (6, 5)),
    ("softmax", "softmax", lambda r: nn.Softmax(), (6, 5)),
    ("log_softmax", "log_softmax", lambda r: nn.LogSoftmax(), (6, 5)),
    ("batchnorm", "batchnorm", lambda r: nn.BatchNorm1d(4), (8, 4)),
    ("batchnorm", "batchnorm-ncl", lambda r: nn.BatchNorm1d(4, momentum=0.3), (5, 4, 3)),
    ("batchnorm", "batchnorm-cumulative", lambda r: nn.BatchNorm1d(4, momentum=None), (8, 4)),
    ("batchnorm", "batchnorm-plain", lambda r: nn.BatchNorm1d(4, eps=1e-3, affine=False), (8, 4)),
    (
        "batchnorm",
        "batchnorm-untracked",
        lambda r: nn.BatchNorm1d(4, track_running_stats=False),
        (8, 4),
    ),
    ("batchnorm", "batchnorm-fused", lambda r: nn.BatchNorm1d(4, fused=True), (8, 4)),
    ("batchnorm2d", "batchnorm2d", lambda r: nn.BatchNorm2d(3), (4, 3, 5, 5)),
    ("layernorm", "layernorm", lambda r: nn.LayerNorm(6), (4, 6)),
    ("layernorm", "layernorm-2d", lambda r: nn.LayerNorm((3, 4), eps=1e-3), (2, 5, 3, 4)),
    ("layernorm", "layernorm-plain", lambda r: nn.LayerNorm(6, elementwise_affine=False), (4, 6)),
    ("groupnorm", "groupnorm", lambda r: nn.GroupNorm(2, 6), (3, 6, 4, 4)),
    ("groupnorm", "groupnorm-plain", lambda r: nn.GroupNorm(3, 6, affine=False), (3, 6, 5)),
    ("instancenorm2d", "instancenorm2d", lambda r: nn.InstanceNorm2d(3), (2, 3, 5, 5)),
    (
        "instancenorm2d",
        "instancenorm2d-affine",
        lambda r: nn.InstanceNorm2d(3, affine=True),
        (2, 3, 4, 4),
    ),
    ("conv2d", "conv2d", lambda r: nn.Conv2d(3, 4, 3, padding=1, rng=r), (2, 3, 6, 6)),
    (
        "conv2d",
        "conv2d-strided",
        lambda r: nn.Conv2d(3, 4, (3, 2), stride=2, bias=False, rng=r),
        (2, 3, 7, 6),
    ),
    ("maxpool2d", "maxpool2d", lambda r: nn.MaxPool2d(2), (2, 3, 6, 6)),
    ("maxpool2d", "maxpool2d-overlap", lambda r: nn.MaxPool2d(3, stride=1), (2, 3, 5, 6)),
    (
        "maxpool2d",
        "maxpool2d-padded-ceil",
        lambda r: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        (2, 3, 6, 7),
    ),
    (
        "avgpool2d",
        "avgpool2d-padded-floor",
        lambda r: nn.AvgPool2d(3, stride=2, padding=1),
        (2, 3, 7, 6),
    ),
    (
        "conv2d",
        "conv2d-dilated-grouped",
        lambda r: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2, rng=r),
        (2, 4, 7, 6),
    ),
    ("adaptiveavgpool2d", "global-avgpool", lambda r: nn.AdaptiveAvgPool2d(1), (2, 3, 5, 4)),
    ("avgpool2d", "avgpool2d", lambda r: nn.AvgPool2d((2, 3)), (2, 3, 6, 6)),
    ("flatten", "flatten", lambda r: nn.Flatten(), (2, 3, 4, 4)),
    ("flatten", "flatten-2", lambda r: nn.Flatten(2), (2, 3, 4, 4)),
    ("unflatten", "unflatten", lambda r: nn.Unflatten((3, 4, 4)), (2, 48)),
    ("unflatten", "unflatten-images", lambda r: nn.Unflatten((3, 4, 4)), (2, 3, 4, 4)),
    (
        "sequential",
        "sequential-nested",
        lambda r: nn.Sequential(
            nn.Linear(5, 4, rng=r), nn.Tanh(), nn.Sequential(nn.Linear(4, 3, rng=r), nn.ReLU())
        ),
        (6, 5),
    ),
    ("scalar_linear", "scalar", _scalar_net, (5, 3)),
]


def test_every_registered_layer_has_a_case():
    built_in = set(LAYERS.names()) - set(CUSTOM)
    assert built_in <= {name for name, *_ in CASES}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(("factory", "shape"), [c[2:] for c in CASES], ids=[c[1] for c in CASES])
def test_layer_matches_the_engine(factory, shape, training):
    rng = np.random.default_rng(7)
    model = factory(rng)
    randomize(model, rng)
    model.train(training)
    module = to_torch_module(model)
    assert all(m.training == training for m in module.modules())
    assert [n for n, _ in module.named_parameters()] == [n for n, _ in model.named_parameters()]
    check_same(model, module, rng.normal(size=shape), rng)


def test_dropout_is_torch_dropout_with_the_same_p():
    model = nn.Sequential(nn.Linear(4, 50, rng=0), nn.Dropout(0.4))
    module = to_torch_module(model)
    assert isinstance(module[1], torch.nn.Dropout) and module[1].p == 0.4
    x = torch.ones(20, 4, dtype=torch.float64)
    dense = module[0](x)
    out = module(x)
    kept = out != 0
    assert 0.3 < 1 - kept.double().mean().item() < 0.5  # 1000 units, about 400 dropped
    assert torch.allclose(out[kept], dense[kept] / 0.6, rtol=1e-12, atol=0)  # inverted
    model.eval()
    check_same(model, to_torch_module(model), np.ones((20, 4)), np.random.default_rng(0))


def test_modes_are_copied_per_layer():
    model = nn.Sequential(nn.Linear(3, 3, rng=0), nn.BatchNorm1d(3), nn.Dropout(0.5))
    model[1].eval()
    module = to_torch_module(model)
    assert [m.training for m in module] == [True, False, True] and module.training


# --- weights both ways -------------------------------------------------------------------------
def _weights_model(rng):
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, rng=rng),
        nn.BatchNorm2d(3),
        nn.Flatten(),
        nn.Linear(48, 6, rng=rng),
        nn.BatchNorm1d(6),
        nn.Maxout(6, 2, rng=rng),
        nn.LayerNorm(2),
    )


@pytest.mark.parametrize("make", [_weights_model, _scalar_net], ids=["tensor", "scalar"])
def test_weights_round_trip_exactly(make):
    rng = np.random.default_rng(3)
    model = make(rng)
    randomize(model, rng)
    module = to_torch_module(model)
    before = model.state_dict()
    torch_state = {k: v.clone() for k, v in module.state_dict().items()}
    copy_weights_to_engine(module, model)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for name in before:
        assert after[name].dtype == before[name].dtype
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    # torch -> engine -> torch: new values land where they came from, transposes included
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn_like(param))
        for name, buffer in module.named_buffers():
            buffer.add_(1 if name.endswith("tracked") else torch.rand_like(buffer))
    changed = {k: v.clone() for k, v in module.state_dict().items()}
    copy_weights_to_engine(module, model)
    other = make(np.random.default_rng(99))
    copy_weights_to_torch(model, module)
    for name, value in module.state_dict().items():
        assert torch.equal(value, changed[name]), name
        assert not torch.equal(value, torch_state[name]) or value.numel() == 0, name
    fresh = to_torch_module(other)
    copy_weights_to_torch(model, fresh)
    copy_weights_to_engine(fresh, other)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[name], value, err_msg=name)


def test_linear_weights_are_transposed_and_nothing_else():
    model = _weights_model(np.random.default_rng(0))
    module = to_torch_module(model)
    flags = transposed_parameters(module)
    names = [name for name, _ in model.named_parameters()]
    assert [n for n, f in zip(names, flags) if f] == ["3.weight", "5.weight"]
    for p, param, flip in zip(model.parameters(), torch_parameters(module), flags):
        assert np.array_equal(param.detach().numpy(), p.data.T if flip else p.data)


def test_a_scalar_network_keeps_one_parameter_per_engine_scalar():
    model = _scalar_net(np.random.default_rng(0))
    module = to_torch_module(model)
    params = torch_parameters(module)
    assert len(params) == len(model.parameters()) == 3 * 4 + 4 + 4 * 2 + 2
    assert all(p.ndim == 0 for p in params)
    assert model.parameters()[5].name == "w1" and params[5].item() == model.parameters()[5].item()


def test_dtypes_follow_the_engine_or_the_argument():
    model64 = nn.Sequential(nn.Linear(3, 2, rng=0), nn.BatchNorm1d(2))
    assert {p.dtype for p in to_torch_module(model64).parameters()} == {torch.float64}
    module32 = to_torch_module(model64, dtype=torch.float32)
    assert {p.dtype for p in module32.parameters()} == {torch.float32}
    assert module32[1].running_var.dtype == torch.float32
    assert module32[1].num_batches_tracked.dtype == torch.int64
    model32 = nn.Sequential(nn.Linear(3, 2, rng=0, dtype=np.float32))
    assert to_torch_module(model32)[0].weight.dtype == torch.float32
    copy_weights_to_engine(module32, model64)
    assert model64[0].weight.dtype == np.float64


def test_copying_into_a_module_of_another_model_says_so():
    module = to_torch_module(nn.Sequential(nn.Linear(3, 2, rng=0)))
    with pytest.raises(ValueError, match=r"parameter 0\.weight: engine shape"):
        copy_weights_to_torch(nn.Sequential(nn.Linear(2, 3, rng=0)), module)
    with pytest.raises(ValueError, match="2 parameters, the torch module 1"):
        copy_weights_to_torch(nn.Sequential(nn.Linear(3, 2, rng=0)), torch.nn.Linear(3, 2, False))
    with_stats = nn.Sequential(nn.Linear(3, 2, rng=0), nn.BatchNorm1d(2, affine=False))
    with pytest.raises(ValueError, match=r"buffers \['1.num_batches_tracked'"):
        copy_weights_to_engine(module, with_stats)


# --- constructs without a counterpart ----------------------------------------------------------
def test_a_custom_op_layer_is_refused_by_name():
    define_op("m_swish", lambda x, beta=1.0: x / (1 + np.exp(-beta * x)), lambda g, out, x: (g,))
    try:
        layer = LAYERS.get("m_swish")()
        with pytest.raises(UnsupportedError) as caught:
            to_torch_module(nn.Sequential(nn.Linear(2, 2, rng=0), layer))
        with pytest.raises(UnsupportedError, match="the custom op 'm_swish'"):
            to_torch_module(nn.ScalarSequential(nn.ScalarLinear(2, 2, rng=0), layer))
    finally:
        unregister_op("m_swish")
    message = str(caught.value)
    assert "no counterpart for the custom op 'm_swish' (a plugin's op) at layer 1" in message
    assert "numpy engine" in message


def test_vanilla_dropout_is_refused():
    model = nn.Sequential(nn.Linear(2, 2, rng=0), nn.Dropout(0.3, inverted=False))
    with pytest.raises(UnsupportedError, match=r"vanilla dropout \(inverted=false\) at layer 1"):
        to_torch_module(model)
    to_torch_module(nn.Sequential(nn.Dropout(0.0, inverted=False)))  # the identity either way


def test_other_modules_are_refused_with_type_and_path():
    class Twice(nn.Module):
        def forward(self, x):
            return x * 2

    model = nn.Sequential(nn.Linear(2, 2, rng=0), nn.Sequential(nn.ReLU(), Twice()))
    with pytest.raises(UnsupportedError, match=r"for the Twice at layer 1\.1$"):
        to_torch_module(model)
    object.__setattr__(model[1], "_local_name", "block")
    with pytest.raises(UnsupportedError, match=r"layer 1\.1$"):
        to_torch_module(model)
    object.__setattr__(model[1][1], "_local_name", "double")
    with pytest.raises(UnsupportedError, match=r"layer 1\.1 \(double\)$"):
        to_torch_module(model)
    scalar = nn.ScalarSequential(nn.ScalarLinear(2, 2, rng=0), nn.Dropout(0.1))
    with pytest.raises(UnsupportedError, match="Dropout in a scalar network at layer 1"):
        to_torch_module(scalar)


# --- the samples, whole ------------------------------------------------------------------------
def build_sample(name):
    source = dsl.read_source(SAMPLES / name)
    return dsl.build(dsl.load(source), source)


@pytest.mark.parametrize(
    ("name", "rows", "training"),
    [
        ("digits.tg", 48, True),
        ("digits.tg", 48, False),
        ("digits_cnn.tg", 24, True),
        ("digits_cnn.tg", 24, False),
        ("moons_scalar.tg", 12, True),
    ],
)
def test_sample_network_and_loss_match(name, rows, training):
    built = build_sample(name)
    model, rng = built.model, np.random.default_rng(5)
    if training:  # dropout off: its masks come from two different generators
        for layer in model.modules():
            if isinstance(layer, nn.Dropout):
                layer.p = 0.0
    else:
        randomize(model, rng)
        model.eval()
    module = to_torch_module(model)
    loss_torch = to_torch_loss(built.spec, module, model)
    train = built.data.splits.train
    x, y = train.x[:rows], train.y[:rows]
    value = built.loss(model(Tensor(x)), y)
    value_torch = loss_torch(module(torch.tensor(x)), y)
    assert_close(value_torch, value.data, "loss")
    value.backward()
    value_torch.backward()
    # a bias in front of batch norm has a gradient of zero but for rounding: compare it with
    # the scale of the largest gradient
    largest = max(np.abs(p.grad).max() for p in model.parameters())
    pairs = zip(model.named_parameters(), torch_parameters(module), transposed_parameters(module))
    for (param_name, p), param, flip in pairs:
        grad = param.grad.T if flip else param.grad
        assert_close(grad, p.grad, f"gradient of {param_name}", floor=largest)
    torch_buffers = dict(module.named_buffers())
    for buffer_name, buffer in model.named_buffers():
        assert_close(torch_buffers[buffer_name], buffer, f"buffer {buffer_name}")
