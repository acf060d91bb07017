"""Convolution, pooling and the image normalizations: values and gradients against PyTorch
(float64, relative 1e-10), a naive six-loop convolution, the notes' and cs231n's worked
examples, and the error messages for bad shapes.
"""

from __future__ import annotations

import numpy as np
import pytest

from topograd import Tensor, engine, nn
from topograd import functional as F

RTOL = 1e-10
ATOL = 1e-12


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def assert_close(actual, expected, what="value"):
    actual = actual.detach().numpy() if hasattr(actual, "detach") else np.asarray(actual)
    expected = expected.detach().numpy() if hasattr(expected, "detach") else np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=what)


def check_against_torch(torch, ours_fn, theirs_fn, arrays, seed=0):
    """Same inputs through both; compare the outputs and every input's gradient."""
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out, expected = ours_fn(*ours), theirs_fn(*theirs)
    assert_close(out.data, expected, "forward")
    upstream = np.random.default_rng(seed).standard_normal(tuple(expected.shape))
    out.backward(upstream)
    expected.backward(torch.from_numpy(upstream))
    for index, (mine, reference) in enumerate(zip(ours, theirs)):
        assert_close(mine.grad, reference.grad, f"gradient of input {index}")


def naive_conv2d(x, w, b, stride, pad):
    """The notes' conv_forward_naive: six loops over samples, filters, rows, columns, window."""
    n, c, h, width = x.shape
    f, _, hh, ww = w.shape
    x_pad = np.zeros((n, c, h + 2 * pad, width + 2 * pad))
    x_pad[:, :, pad : pad + h, pad : pad + width] = x
    h_out = 1 + (h + 2 * pad - hh) // stride
    w_out = 1 + (width + 2 * pad - ww) // stride
    out = np.zeros((n, f, h_out, w_out))
    for i in range(n):
        for j in range(f):
            for u in range(h_out):
                for v in range(w_out):
                    total = b[j]
                    for ci in range(c):
                        for p in range(hh):
                            for q in range(ww):
                                total += (
                                    x_pad[i, ci, u * stride + p, v * stride + q] * w[j, ci, p, q]
                                )
                    out[i, j, u, v] = total
    return out


# --- worked examples --------------------------------------------------------------------------
CS231N_CORRECT_OUT = np.array(
    [
        [
            [[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
            [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
            [[0.50813986, 0.54309974], [0.64082444, 0.67101435]],
        ],
        [
            [[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
            [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
            [[2.36270298, 2.36904306], [2.38090835, 2.38247847]],
        ],
    ]
)


def test_cs231n_conv_forward_fixture():
    x = np.linspace(-0.1, 0.5, num=96).reshape(2, 3, 4, 4)
    w = np.linspace(-0.2, 0.3, num=144).reshape(3, 3, 4, 4)
    b = np.linspace(-0.1, 0.2, num=3)
    out = F.conv2d(x, w, b, stride=2, padding=1).data
    assert out.shape == (2, 3, 2, 2)
    assert abs(out[0, 0, 0, 0] - -0.08759809) < 1e-8
    np.testing.assert_allclose(out, CS231N_CORRECT_OUT, rtol=0, atol=1e-8)


def test_notes_three_by_three_example():
    x = np.array([[1.0, 2.0, 4.0], [3.0, 2.0, 1.0], [5.0, 2.0, 1.0]]).reshape(1, 1, 3, 3)
    w = np.array([[1.0, -1.0], [2.0, 1.0]]).reshape(1, 1, 2, 2)
    out = F.conv2d(x, w, stride=1, padding=0)
    np.testing.assert_array_equal(out.data, [[[[7.0, 3.0], [13.0, 6.0]]]])


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "stride", "pad"),
    [
        ((2, 3, 5, 5), (4, 3, 3, 3), 1, 1),
        ((1, 2, 7, 7), (3, 2, 3, 3), 2, 0),
        ((2, 1, 6, 6), (2, 1, 2, 2), 2, 2),
        ((3, 2, 4, 6), (2, 2, 1, 3), 1, 0),
    ],
)
def test_conv2d_matches_naive_six_loops(rng, x_shape, w_shape, stride, pad):
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    out = F.conv2d(x, w, b, stride=stride, padding=pad)
    np.testing.assert_allclose(out.data, naive_conv2d(x, w, b, stride, pad), rtol=1e-12)


# --- PyTorch parity ---------------------------------------------------------------------------
CONV_CASES = [
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 0),
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), 2, 1),
    ((1, 2, 6, 8), (3, 2, 2, 4), 2, 0),
    ((3, 1, 4, 4), (2, 1, 1, 1), 1, 2),
    ((2, 2, 7, 7), (2, 2, 5, 5), 2, 2),
    ((1, 4, 3, 3), (5, 4, 3, 3), 1, 0),
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "pad"), CONV_CASES)
def test_conv2d_matches_torch(torch, rng, x_shape, w_shape, stride, pad, bias):
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape)]
    if bias:
        arrays.append(rng.standard_normal(w_shape[0]))
    check_against_torch(
        torch,
        lambda *t: F.conv2d(*t, stride=stride, padding=pad),
        lambda *t: torch.nn.functional.conv2d(*t, stride=stride, padding=pad),
        arrays,
    )


def test_conv2d_with_pairs_matches_torch(torch, rng):
    arrays = [rng.standard_normal((2, 2, 5, 8)), rng.standard_normal((3, 2, 3, 2))]
    check_against_torch(
        torch,
        lambda *t: F.conv2d(*t, stride=(1, 2), padding=(0, 1)),
        lambda *t: torch.nn.functional.conv2d(*t, stride=(1, 2), padding=(0, 1)),
        arrays,
    )


@pytest.mark.parametrize("chunk_bytes", [1, 3000])
def test_conv2d_in_chunks_of_samples_matches_torch(torch, rng, monkeypatch, chunk_bytes):
    """Tiny chunks: one sample (and two, with a shorter last chunk) per im2col copy."""
    monkeypatch.setattr(engine.conv, "CHUNK_BYTES", chunk_bytes)
    arrays = [rng.standard_normal((5, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))]
    arrays.append(rng.standard_normal(3))
    check_against_torch(
        torch,
        lambda *t: F.conv2d(*t, stride=2, padding=1),
        lambda *t: torch.nn.functional.conv2d(*t, stride=2, padding=1),
        arrays,
    )


def test_conv2d_skips_input_gradient_when_not_needed(rng):
    x = Tensor(rng.standard_normal((2, 3, 4, 4)))
    w = Tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True)
    F.conv2d(x, w, padding=1).sum().backward()
    assert x.grad is None and w.grad.shape == w.shape


POOL_CASES = [
    ((2, 3, 4, 4), 2, None),
    ((2, 2, 6, 6), 3, None),
    ((1, 2, 5, 5), 3, 1),
    ((2, 1, 7, 7), 3, 2),
    ((1, 3, 4, 6), (2, 3), (2, 3)),
]


@pytest.mark.parametrize(("shape", "kernel", "stride"), POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_matches_torch(torch, rng, kind, shape, kernel, stride):
    ours = F.max_pool2d if kind == "max" else F.avg_pool2d
    theirs = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
    check_against_torch(
        torch,
        lambda x: ours(x, kernel, stride),
        lambda x: theirs(x, kernel, stride),
        [rng.standard_normal(shape)],
    )


def test_max_pool_ties_give_the_gradient_to_the_first_maximum(torch):
    x = np.array([[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, 1.0, 3.0]]).reshape(1, 1, 2, 4)
    check_against_torch(
        torch,
        lambda t: F.max_pool2d(t, 2),
        lambda t: torch.nn.functional.max_pool2d(t, 2),
        [x],
    )
    ours = Tensor(x, requires_grad=True)
    F.max_pool2d(ours, 2).sum().backward()
    np.testing.assert_array_equal(ours.grad, [[[[0, 1, 1, 0], [0, 0, 0, 0]]]])


def test_overlapping_max_pool_ties_match_torch(torch):
    x = np.array([[5.0, 5.0, 5.0], [5.0, 1.0, 5.0], [0.0, 5.0, 2.0]]).reshape(1, 1, 3, 3)
    check_against_torch(
        torch,
        lambda t: F.max_pool2d(t, 2, 1),
        lambda t: torch.nn.functional.max_pool2d(t, 2, 1),
        [x],
    )


def test_flatten_and_layers_match_torch(torch, rng):
    x = rng.standard_normal((2, 3, 6, 6))
    conv = nn.Conv2d(3, 4, 3, stride=1, padding=1, rng=0)
    ours = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.AvgPool2d(3), nn.Flatten())
    reference = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1, dtype=torch.float64),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.AvgPool2d(3),
        torch.nn.Flatten(),
    )
    with torch.no_grad():
        reference[0].weight.copy_(torch.from_numpy(conv.weight.data))
        reference[0].bias.copy_(torch.from_numpy(rng.standard_normal(4)))
    conv.bias.data = reference[0].bias.detach().numpy().copy()
    xt = torch.tensor(x, requires_grad=True)
    out, expected = ours(Tensor(x)), reference(xt)
    assert out.shape == (2, 4)
    assert_close(out.data, expected, "forward")
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    expected.backward(torch.from_numpy(upstream))
    assert_close(conv.weight.grad, reference[0].weight.grad, "weight gradient")
    assert_close(conv.bias.grad, reference[0].bias.grad, "bias gradient")


# --- normalizations ---------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [False, True])
def test_batchnorm2d_matches_torch_in_training_and_eval(torch, rng, fused):
    ours = nn.BatchNorm2d(3, momentum=0.2, fused=fused)
    theirs = torch.nn.BatchNorm2d(3, momentum=0.2, dtype=torch.float64)
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    ours.weight.data, ours.bias.data = gamma.copy(), beta.copy()
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(gamma))
        theirs.bias.copy_(torch.from_numpy(beta))
    for step in range(3):
        x = rng.standard_normal((4, 3, 5, 5)) * (step + 1) + step
        xo, xt = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        out, expected = ours(xo), theirs(xt)
        assert_close(out.data, expected, f"training forward, step {step}")
        upstream = rng.standard_normal(x.shape)
        out.backward(upstream)
        expected.backward(torch.from_numpy(upstream))
        assert_close(xo.grad, xt.grad, "input gradient")
        assert_close(ours.running_mean, theirs.running_mean, "running_mean")
        assert_close(ours.running_var, theirs.running_var, "running_var")
    assert_close(ours.weight.grad, theirs.weight.grad, "gamma gradient")
    assert_close(ours.bias.grad, theirs.bias.grad, "beta gradient")
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 3, 4, 4))
    xo, xt = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, expected = ours(xo), theirs(xt)
    assert_close(out.data, expected, "eval forward")
    out.backward(np.ones(x.shape))
    expected.backward(torch.ones(x.shape, dtype=torch.float64))
    assert_close(xo.grad, xt.grad, "eval input gradient")


def test_batchnorm2d_fused_equals_composed(rng):
    x = rng.standard_normal((3, 2, 4, 4))
    grads = []
    for fused in (False, True):
        layer = nn.BatchNorm2d(2, fused=fused)
        xt = Tensor(x, requires_grad=True)
        (layer(xt) * Tensor(np.arange(x.size).reshape(x.shape))).sum().backward()
        grads.append((xt.grad, layer.weight.grad, layer.bias.grad, layer.running_var.copy()))
    for composed, fused in zip(*grads):
        np.testing.assert_allclose(fused, composed, rtol=1e-10, atol=1e-12)


def test_spatial_batchnorm_gives_beta_means_and_gamma_stds(rng):
    x = 10 * rng.standard_normal((2, 3, 4, 5)) + 12
    layer = nn.BatchNorm2d(3)
    layer.weight.data = np.array([3.0, 4.0, 5.0])
    layer.bias.data = np.array([6.0, 7.0, 8.0])
    out = layer(Tensor(x)).data
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), [6.0, 7.0, 8.0], atol=1e-12)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), [3.0, 4.0, 5.0], rtol=1e-5)


@pytest.mark.parametrize("affine", [False, True])
def test_instancenorm2d_matches_torch(torch, rng, affine):
    ours = nn.InstanceNorm2d(3, affine=affine)
    theirs = torch.nn.InstanceNorm2d(3, affine=affine, dtype=torch.float64)
    arrays = [rng.standard_normal((2, 3, 4, 5))]
    if affine:
        arrays += [rng.standard_normal(3), rng.standard_normal(3)]

    def ours_fn(x, *params):
        if params:
            ours.weight, ours.bias = params
        return ours(x)

    def theirs_fn(x, *params):
        if params:
            return torch.nn.functional.instance_norm(x, weight=params[0], bias=params[1])
        return theirs(x)

    check_against_torch(torch, ours_fn, theirs_fn, arrays)
    assert ours.eval()(Tensor(arrays[0])).shape == (2, 3, 4, 5)


def test_groupnorm_on_images_matches_torch(torch, rng):
    ours = nn.GroupNorm(2, 4)
    arrays = [rng.standard_normal((2, 4, 3, 3)), rng.standard_normal(4), rng.standard_normal(4)]

    def ours_fn(x, weight, bias):
        ours.weight, ours.bias = weight, bias
        return ours(x)

    check_against_torch(
        torch, ours_fn, lambda x, w, b: torch.nn.functional.group_norm(x, 2, w, b), arrays
    )


def test_layernorm_over_channels_and_pixels_matches_torch(torch, rng):
    ours = nn.LayerNorm((3, 4, 4))
    shape = (3, 4, 4)
    arrays = [rng.standard_normal((2, *shape)), rng.standard_normal(shape)]
    arrays.append(rng.standard_normal(shape))

    def ours_fn(x, weight, bias):
        ours.weight, ours.bias = weight, bias
        return ours(x)

    check_against_torch(
        torch, ours_fn, lambda x, w, b: torch.nn.functional.layer_norm(x, shape, w, b), arrays
    )


# --- layers -----------------------------------------------------------------------------------
def test_layers_are_registered():
    expected = {
        "conv2d": nn.Conv2d,
        "maxpool2d": nn.MaxPool2d,
        "avgpool2d": nn.AvgPool2d,
        "flatten": nn.Flatten,
        "batchnorm2d": nn.BatchNorm2d,
        "instancenorm2d": nn.InstanceNorm2d,
    }
    for name, layer in expected.items():
        assert nn.LAYERS.get(name) is layer
    assert {"conv2d", "max_pool2d", "avg_pool2d"} <= set(engine.OPS)


def test_conv2d_layer_shapes_and_he_scale():
    layer = nn.Conv2d(16, 32, 3, padding=1, rng=0)
    assert layer.weight.shape == (32, 16, 3, 3) and layer.bias.shape == (32,)
    assert layer.weight.data.std() == pytest.approx(np.sqrt(2.0 / (16 * 9)), rel=0.05)
    xavier = nn.Conv2d(16, 32, 3, init="xavier", bias=False, rng=0)
    assert xavier.bias is None
    assert xavier.weight.data.std() == pytest.approx(np.sqrt(1.0 / (16 * 9)), rel=0.05)
    assert len(layer.parameters()) == 2
    assert "kernel_size=(3, 3)" in repr(layer)


def test_conv2d_layer_keeps_float32():
    layer = nn.Conv2d(2, 3, 3, rng=0, dtype=np.float32)
    out = layer(np.zeros((1, 2, 5, 5), dtype=np.float32))
    assert out.dtype == np.float32
    out.sum().backward()
    assert layer.weight.grad.dtype == np.float32


# --- bad shapes -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "shape", "message"),
    [
        (lambda: nn.Conv2d(3, 2, 5), (1, 3, 4, 4), r"Conv2d\(3, 2.*kernel 5x5 is larger"),
        (lambda: nn.Conv2d(3, 2, 3), (1, 4, 6, 6), r"Conv2d\(3, 2.*\(N, 3, H, W\).*\(1, 4, 6, 6\)"),
        (lambda: nn.Conv2d(3, 2, 3), (3, 6, 6), r"Conv2d.*\(N, 3, H, W\), got shape \(3, 6, 6\)"),
        (lambda: nn.AvgPool2d(3), (1, 1, 2, 2), r"AvgPool2d.*kernel 3x3 is larger"),
        (lambda: nn.MaxPool2d(2), (4, 4), r"MaxPool2d.*got shape \(4, 4\)"),
        (
            lambda: nn.BatchNorm2d(3),
            (2, 3, 4),
            r"BatchNorm2d.*\(N, 3, H, W\), got shape \(2, 3, 4\)",
        ),
        (lambda: nn.BatchNorm2d(3), (2, 2, 4, 4), r"BatchNorm2d.*got shape \(2, 2, 4, 4\)"),
        (lambda: nn.InstanceNorm2d(3), (2, 3, 4), r"InstanceNorm2d.*got shape \(2, 3, 4\)"),
        (lambda: nn.GroupNorm(2, 4), (2, 3, 4, 4), r"GroupNorm\(2, 4\).*got shape \(2, 3, 4, 4\)"),
    ],
)
def test_bad_input_shapes_name_the_layer_and_shape(make, shape, message):
    layer = make()
    with pytest.raises(ValueError, match=message):
        layer(Tensor(np.zeros(shape)))


def test_bad_shapes_in_the_functional_form():
    x = np.zeros((1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"conv2d.*\(1, 3, 4, 4\).*weight expects 2"):
        F.conv2d(x, np.zeros((2, 2, 3, 3)))
    # strides that do not divide floor the output size, as PyTorch does
    assert F.conv2d(x, np.zeros((2, 3, 3, 3)), stride=2).shape == (1, 2, 1, 1)
    assert F.max_pool2d(np.zeros((1, 1, 5, 5)), 2).shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(2,\)"):
        F.conv2d(x, np.zeros((2, 3, 3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="4-D"):
        F.avg_pool2d(np.zeros((4, 4)), 2)


def test_groups_that_do_not_divide_channels():
    with pytest.raises(ValueError, match="GroupNorm: 3 groups do not divide 4 channels"):
        nn.GroupNorm(3, 4)
    with pytest.raises(ValueError, match="group_norm: 3 groups do not divide 4 channels"):
        F.group_norm(np.zeros((2, 4, 3, 3)), 3)
