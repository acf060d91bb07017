"""Convolution and pooling as ResNets use them: conv2d's dilation and groups (depthwise
included), pooling's padding and ceil_mode, PyTorch's floored output size where the stride
does not divide, and global average pooling. Values and gradients (input, weight, bias) are
checked against torch.nn.functional in float64, and by hypothesis against central
differences with the project's kit.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from topograd.engine.conv import adaptive_avg_pool2d
from topograd.engine.nn.conv import AdaptiveAvgPool2d

from topograd import Tensor, engine, nn, no_grad
from topograd import functional as F
from topograd.testing import arrays, assert_gradients

RTOL = 1e-10
ATOL = 1e-12


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def check_against_torch(torch, ours_fn, theirs_fn, arrays_, seed=0):
    """Same inputs through both; compare the outputs and every input's gradient."""
    ours = [Tensor(a, requires_grad=True) for a in arrays_]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays_]
    out, expected = ours_fn(*ours), theirs_fn(*theirs)
    assert out.shape == tuple(expected.shape)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=RTOL, atol=ATOL)
    upstream = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(upstream)
    expected.backward(torch.from_numpy(upstream))
    for index, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        np.testing.assert_allclose(
            mine.grad, reference.grad.numpy(), rtol=RTOL, atol=ATOL, err_msg=f"input {index}"
        )


# --- conv2d against torch ----------------------------------------------------------------------
# (x shape, weight shape, options): odd sizes with stride 2 (PyTorch floors), padding,
# dilation 2, groups 2, depthwise (groups = C, and a channel multiplier of 2), and mixes.
CONV_CASES = {
    "stride2-odd": ((2, 3, 7, 9), (4, 3, 3, 3), {"stride": 2}),
    "stride2-odd-padded": ((2, 3, 8, 7), (4, 3, 3, 2), {"stride": 2, "padding": 1}),
    "stride3-rows-left": ((1, 2, 8, 8), (3, 2, 2, 2), {"stride": (3, 2), "padding": (0, 1)}),
    "dilation2": ((2, 3, 7, 7), (4, 3, 3, 3), {"dilation": 2}),
    "dilation2-padded": ((2, 2, 6, 7), (3, 2, 3, 3), {"dilation": 2, "padding": 2}),
    "dilation-pair": ((1, 2, 7, 8), (2, 2, 2, 3), {"dilation": (3, 1), "stride": 2}),
    "groups2": ((2, 4, 5, 5), (6, 2, 3, 3), {"groups": 2, "padding": 1}),
    "groups2-strided": ((2, 4, 7, 6), (4, 2, 3, 3), {"groups": 2, "stride": 2, "padding": 1}),
    "depthwise": ((2, 3, 6, 6), (3, 1, 3, 3), {"groups": 3, "padding": 1}),
    "depthwise-x2": ((2, 3, 7, 5), (6, 1, 3, 3), {"groups": 3, "stride": 2, "padding": 1}),
    "depthwise-dilated": ((1, 4, 9, 9), (4, 1, 3, 3), {"groups": 4, "dilation": 2, "stride": 2}),
    "pointwise-groups": ((2, 4, 3, 3), (8, 1, 1, 1), {"groups": 4}),
}


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_options_match_torch(torch, rng, case, bias):
    x_shape, w_shape, options = CONV_CASES[case]
    arrays_ = [rng.standard_normal(x_shape), rng.standard_normal(w_shape)]
    if bias:
        arrays_.append(rng.standard_normal(w_shape[0]))
    check_against_torch(
        torch,
        lambda *t: F.conv2d(*t, **options),
        lambda *t: torch.nn.functional.conv2d(*t, **options),
        arrays_,
    )


@pytest.mark.parametrize("chunk_bytes", [1, 2000])
def test_grouped_dilated_conv2d_in_chunks_matches_torch(torch, rng, monkeypatch, chunk_bytes):
    """One sample (and a shorter last chunk) per im2col copy, with groups and dilation."""
    monkeypatch.setattr(engine.conv, "CHUNK_BYTES", chunk_bytes)
    options = {"stride": 2, "padding": 2, "dilation": 2, "groups": 2}
    arrays_ = [rng.standard_normal((5, 4, 7, 7)), rng.standard_normal((6, 2, 3, 3))]
    arrays_.append(rng.standard_normal(6))
    check_against_torch(
        torch,
        lambda *t: F.conv2d(*t, **options),
        lambda *t: torch.nn.functional.conv2d(*t, **options),
        arrays_,
    )


def test_grouped_conv2d_without_saving_columns_matches_torch(torch, rng):
    """Nothing backpropagates: the forward keeps no im2col columns (it never does)."""
    x, w = rng.standard_normal((2, 4, 7, 7)), rng.standard_normal((4, 1, 3, 3))
    options = {"stride": 2, "padding": 1, "dilation": 2, "groups": 4}
    with no_grad():
        out = F.conv2d(x, w, **options)
    plain = F.conv2d(Tensor(x), Tensor(w), **options)  # no input requires grad
    assert plain.ctx is None
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), **options)
    for value in (out.data, plain.data):
        np.testing.assert_allclose(value, expected.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("wanted", ["x", "w"])
def test_grouped_conv2d_computes_only_the_gradients_needed(torch, rng, wanted):
    x, w = rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((6, 2, 3, 3))
    xo, wo = Tensor(x, requires_grad=wanted == "x"), Tensor(w, requires_grad=wanted == "w")
    xt = torch.tensor(x, requires_grad=wanted == "x")
    wt = torch.tensor(w, requires_grad=wanted == "w")
    F.conv2d(xo, wo, groups=2, dilation=2).sum().backward()
    torch.nn.functional.conv2d(xt, wt, groups=2, dilation=2).sum().backward()
    ours, theirs = (xo, xt) if wanted == "x" else (wo, wt)
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=RTOL, atol=ATOL)
    assert (wo if wanted == "x" else xo).grad is None


# --- pooling against torch ---------------------------------------------------------------------
# (x shape, kernel, stride, padding, ceil_mode)
POOL_CASES = {
    "padded": ((2, 3, 6, 6), 3, 2, 1, False),
    "resnet-stem": ((1, 2, 9, 9), 3, 2, 1, False),
    "non-dividing": ((2, 2, 7, 8), 2, None, 0, False),
    "non-dividing-stride3": ((1, 2, 8, 7), 3, 3, 0, False),
    "ceil": ((2, 2, 7, 8), 2, None, 0, True),
    "ceil-overhang": ((1, 2, 6, 6), 3, 2, 0, True),
    "ceil-padded": ((2, 2, 6, 7), 3, 2, 1, True),
    "ceil-drops-last-window": ((1, 2, 5, 5), 2, 2, 1, True),
    "ceil-pairs": ((1, 3, 7, 6), (3, 2), (2, 3), (1, 0), True),
    "ceil-that-changes-nothing": ((1, 1, 6, 6), 2, 2, 0, True),
    "padded-overlap": ((1, 2, 5, 6), (2, 3), 1, (1, 1), False),
}


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_options_match_torch(torch, rng, kind, case):
    shape, kernel, stride, padding, ceil_mode = POOL_CASES[case]
    ours = F.max_pool2d if kind == "max" else F.avg_pool2d
    theirs = getattr(torch.nn.functional, f"{kind}_pool2d")
    check_against_torch(
        torch,
        lambda x: ours(x, kernel, stride, padding, ceil_mode=ceil_mode),
        lambda x: theirs(x, kernel, stride, padding, ceil_mode=ceil_mode),
        [rng.standard_normal(shape)],
    )


def test_max_pool_padding_is_minus_infinity(torch):
    """All inputs negative: zero padding would win the border windows, -inf never does."""
    x = -1.0 - np.arange(2 * 16.0).reshape(1, 2, 4, 4) / 32
    check_against_torch(
        torch,
        lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True),
        lambda t: torch.nn.functional.max_pool2d(t, 3, 2, 1, ceil_mode=True),
        [x],
    )
    assert F.max_pool2d(x, 3, 2, 1).data.max() < 0


def test_avg_pool_divides_padded_windows_by_the_kernel_area():
    """count_include_pad=True: a corner window of ones with padding 1 averages to 4/9."""
    out = F.avg_pool2d(np.ones((1, 1, 4, 4)), 3, 1, 1).data
    assert out[0, 0, 0, 0] == pytest.approx(4 / 9) and out[0, 0, 1, 1] == pytest.approx(1.0)


def test_floor_and_ceil_output_sizes():
    x = np.zeros((1, 1, 5, 5))
    assert F.max_pool2d(x, 2).shape == (1, 1, 2, 2)
    assert F.max_pool2d(x, 2, ceil_mode=True).shape == (1, 1, 3, 3)
    assert F.avg_pool2d(x, 2, 2, 1, ceil_mode=True).shape == (1, 1, 3, 3)  # 4th would start in
    assert F.conv2d(x, np.zeros((1, 1, 3, 3)), stride=2, dilation=2).shape == (1, 1, 1, 1)


# --- global average pooling --------------------------------------------------------------------
@pytest.mark.parametrize("output_size", [1, (1, 1)])
def test_global_average_pooling_matches_torch(torch, rng, output_size):
    check_against_torch(
        torch,
        lambda x: adaptive_avg_pool2d(x, output_size),
        lambda x: torch.nn.functional.adaptive_avg_pool2d(x, output_size),
        [rng.standard_normal((2, 3, 5, 4))],
    )


def test_global_average_pooling_is_a_mean_not_a_primitive():
    out = adaptive_avg_pool2d(Tensor(np.ones((2, 3, 4, 4)), requires_grad=True), 1)
    assert out.shape == (2, 3, 1, 1) and out.op is engine.OPS["mean"]


@pytest.mark.parametrize("output_size", [2, (1, 2), (3, 3)])
def test_adaptive_pooling_to_other_sizes_is_refused(output_size):
    with pytest.raises(ValueError, match=r"supports output_size 1 .* only"):
        adaptive_avg_pool2d(np.zeros((1, 1, 4, 4)), output_size)
    with pytest.raises(ValueError, match="AdaptiveAvgPool2d supports output_size 1"):
        AdaptiveAvgPool2d(output_size)


# --- layers --------------------------------------------------------------------------------------
def test_new_layers_are_registered_and_old_defaults_kept():
    assert nn.LAYERS.get("adaptiveavgpool2d") is AdaptiveAvgPool2d
    conv, pool = nn.Conv2d(3, 4, 3, padding=1, rng=0), nn.MaxPool2d(2)
    assert (conv.dilation, conv.groups, pool.padding, pool.ceil_mode) == ((1, 1), 1, (0, 0), False)
    assert (
        repr(conv) == "Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=True)"
    )
    assert repr(pool) == "MaxPool2d(kernel_size=(2, 2), stride=(2, 2))"


def test_layers_show_their_options():
    depthwise = nn.Conv2d(8, 16, 3, padding=2, dilation=2, groups=8, bias=False, rng=0)
    assert depthwise.weight.shape == (16, 1, 3, 3)
    assert repr(depthwise) == (
        "Conv2d(8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(2, 2), dilation=(2, 2), "
        "groups=8, bias=False)"
    )
    assert repr(nn.MaxPool2d(3, 2, 1, ceil_mode=True)) == (
        "MaxPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True)"
    )
    assert repr(nn.AvgPool2d(2, padding=1)) == (
        "AvgPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(1, 1))"
    )
    assert repr(AdaptiveAvgPool2d(1)) == "AdaptiveAvgPool2d(output_size=(1, 1))"


def test_grouped_conv2d_layer_draws_he_weights_per_group():
    layer = nn.Conv2d(64, 64, 3, groups=64, rng=0)
    assert layer.weight.shape == (64, 1, 3, 3)
    assert layer.weight.data.std() == pytest.approx(np.sqrt(2.0 / 9), rel=0.1)


def test_layer_shapes_through_a_resnet_stem_and_head(rng):
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, rng=0),
        nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8, rng=0),
        nn.AvgPool2d(2, ceil_mode=True),
        AdaptiveAvgPool2d(1),
    )
    shapes = []
    x = Tensor(rng.standard_normal((2, 3, 13, 11)))
    for layer in net:
        x = layer(x)
        shapes.append(x.shape)
    assert shapes == [(2, 8, 7, 6), (2, 8, 4, 3), (2, 8, 4, 3), (2, 8, 2, 2), (2, 8, 1, 1)]


def test_layers_match_torch_modules(torch, rng):
    ours = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1, rng=0),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=4, rng=0),
        nn.AvgPool2d(2, 2, 1),
        AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=torch.float64),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        torch.nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=4, dtype=torch.float64),
        torch.nn.AvgPool2d(2, 2, 1),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )
    convs = [(ours[0], theirs[0]), (ours[3], theirs[3])]
    for mine, reference in convs:
        mine.bias.data = rng.standard_normal(mine.bias.shape)
        with torch.no_grad():
            reference.weight.copy_(torch.from_numpy(mine.weight.data))
            reference.bias.copy_(torch.from_numpy(mine.bias.data))
    x = rng.standard_normal((2, 3, 11, 10))
    xo, xt = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, expected = ours(xo), theirs(xt)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=RTOL, atol=ATOL)
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    expected.backward(torch.from_numpy(upstream))
    pairs = [(xo, xt)] + [(m.weight, r.weight) for m, r in convs]
    for mine, reference in pairs + [(m.bias, r.bias) for m, r in convs]:
        np.testing.assert_allclose(mine.grad, reference.grad.numpy(), rtol=RTOL, atol=ATOL)


# --- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: F.conv2d(np.zeros((1, 4, 5, 5)), np.zeros((6, 3, 3, 3)), groups=2),
            r"input has 4 channels .* but the weight expects 6 \(2 groups of 3\)",
        ),
        (
            lambda: F.conv2d(np.zeros((1, 4, 5, 5)), np.zeros((3, 2, 3, 3)), groups=2),
            r"groups=2 does not divide the weight's 3 output channels",
        ),
        (
            lambda: F.conv2d(np.zeros((1, 2, 5, 5)), np.zeros((2, 2, 3, 3)), groups=0),
            "groups must be a positive int, got 0",
        ),
        (
            lambda: F.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), dilation=2),
            r"kernel 3x3 \(dilated to 5x5\) is larger than the padded input 4x4",
        ),
        (
            lambda: F.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), dilation=0),
            r"dilation must be >= 1, got \(0, 0\)",
        ),
        (
            lambda: F.max_pool2d(np.zeros((1, 1, 6, 6)), 3, padding=2),
            r"padding \(2, 2\) must be at most half the kernel \(3, 3\)",
        ),
        (lambda: nn.Conv2d(4, 6, 3, groups=4), "groups=4 must divide in_channels=4 and out"),
        (lambda: nn.Conv2d(4, 4, 3, dilation=0), "dilation >= 1"),
        (lambda: nn.AvgPool2d(2, padding=-1), "padding >= 0"),
    ],
)
def test_bad_options_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_layer_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=\(2, 2\).*at most half"):
        nn.MaxPool2d(2, padding=2)(Tensor(np.zeros((1, 1, 4, 4))))
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d.*got shape \(2, 3\)"):
        AdaptiveAvgPool2d(1)(Tensor(np.zeros((2, 3))))


# --- properties: gradients against central differences -------------------------------------------
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, database=None)


@st.composite
def conv_cases(draw):
    """x, w, b and options with groups, dilation, padding and a stride that may not divide."""
    groups = draw(st.integers(1, 3))
    c, f = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    padding = draw(st.integers(0, 2))
    spans = [dilation * (k - 1) + 1 for k in kernel]
    sides = [draw(st.integers(max(1, s - 2 * padding), s + 4)) for s in spans]
    x = draw(arrays((draw(st.integers(1, 2)), c, *sides)))
    w, b = draw(arrays((f, c // groups, *kernel))), draw(arrays((f,)))
    options = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return x, w, b, options


@PROPERTY_SETTINGS
@given(conv_cases())
def test_conv2d_gradients_hold(case):
    x, w, b, options = case
    assert_gradients(lambda x, w, b: F.conv2d(x, w, b, **options), x, w, b)


@st.composite
def pool_cases(draw, distinct):
    """x and options with padding (at most half the kernel), any stride and ceil_mode."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    sides = [draw(st.integers(max(1, k - 2 * p), k + 4)) for k, p in zip(kernel, padding)]
    x = draw(arrays((draw(st.integers(1, 2)), 2, *sides), distinct=distinct, margin=0.01))
    options = {"stride": stride, "padding": padding, "ceil_mode": draw(st.booleans())}
    return x, kernel, options


@PROPERTY_SETTINGS
@given(pool_cases(distinct=True))
def test_max_pool2d_gradients_hold(case):
    x, kernel, options = case
    assert_gradients(lambda x: F.max_pool2d(x, kernel, **options), x)


@PROPERTY_SETTINGS
@given(pool_cases(distinct=False))
def test_avg_pool2d_gradients_hold(case):
    x, kernel, options = case
    assert_gradients(lambda x: F.avg_pool2d(x, kernel, **options), x)


@PROPERTY_SETTINGS
@given(
    arrays(st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)))
)
def test_global_average_pooling_gradients_hold(x):
    assert_gradients(lambda x: adaptive_avg_pool2d(x, 1), x)
