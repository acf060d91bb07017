"""Networks that branch: Residual, Concat and Merge against central differences (the kit)
and against the same network written in PyTorch, in float64, outputs and every gradient."""

from __future__ import annotations

import numpy as np
import pytest

from topograd import Tensor, nn
from topograd.testing import assert_gradients


def residual_mlp(rng=0):
    """x + f(x), then a projection shortcut (4 -> 6 features), in training mode."""
    return nn.Sequential(
        nn.Residual(nn.Sequential(nn.Linear(4, 4, rng=rng), nn.Tanh(), nn.Linear(4, 4, rng=rng))),
        nn.Residual(
            nn.Sequential(nn.Linear(4, 6, rng=rng), nn.BatchNorm1d(6), nn.ReLU()),
            nn.Sequential(nn.Linear(4, 6, rng=rng)),
        ),
    )


def dense_cnn(rng=0):
    """A stem, a concat block (3 + 2 channels), a merge adding the stem's output back after
    a 1x1 conv maps the channels down, and a concat merge with the stem."""
    stem = nn.Conv2d(1, 3, 3, padding=1, rng=rng)
    object.__setattr__(stem, "_local_name", "stem")
    return nn.Sequential(
        stem,
        nn.Concat(nn.Sequential(nn.Conv2d(3, 2, 3, padding=1, rng=rng), nn.ReLU())),
        nn.Conv2d(5, 3, 1, rng=rng),
        nn.Merge("add", "stem"),
        nn.Merge("concat", ["stem"]),
        nn.BatchNorm2d(6),
    )


def test_residual_adds_the_input_to_the_body():
    block = nn.Residual(nn.Sequential(nn.Linear(3, 3, rng=1), nn.Tanh()))
    x = np.random.default_rng(0).standard_normal((5, 3))
    body = block.body(Tensor(x)).data
    np.testing.assert_array_equal(block(Tensor(x)).data, body + x)


def test_concat_keeps_the_input_beside_the_body():
    block = nn.Concat(nn.Sequential(nn.Linear(3, 2, rng=1)))
    x = np.random.default_rng(0).standard_normal((4, 3))
    out = block(Tensor(x)).data
    np.testing.assert_array_equal(out[:, :3], x)
    np.testing.assert_array_equal(out[:, 3:], block.body(Tensor(x)).data)


def test_merge_uses_the_labelled_earlier_output():
    model = dense_cnn()
    x = np.random.default_rng(1).standard_normal((2, 1, 5, 5))
    stem = model[0](Tensor(x)).data
    after = model[2](model[1](model[0](Tensor(x)))).data
    merged = model[4](model[3](Tensor(after), Tensor(stem)), Tensor(stem)).data
    np.testing.assert_allclose(merged, np.concatenate([after + stem, stem], axis=1))
    model.eval()
    expected = model[5](Tensor(merged)).data
    np.testing.assert_allclose(model(Tensor(x)).data, expected)


@pytest.mark.parametrize("build, shape", [(residual_mlp, (5, 4)), (dense_cnn, (3, 1, 4, 4))])
def test_gradients_match_central_differences(build, shape):
    x = np.random.default_rng(2).standard_normal(shape)
    assert_gradients(build(), x)


def test_a_shape_mismatch_names_both_shapes():
    block = nn.Residual(nn.Sequential(nn.Linear(3, 2, rng=0)))
    with pytest.raises(ValueError, match=r"\(2,\) and \(3,\).*cannot be added"):
        block(Tensor(np.ones((1, 3))))


def test_a_merge_needs_an_earlier_item():
    later = nn.Linear(2, 2, rng=0)
    object.__setattr__(later, "_local_name", "later")
    model = nn.Sequential(nn.Merge("add", "later"), later)
    with pytest.raises(ValueError, match="'later' is not an earlier item"):
        model(Tensor(np.ones((1, 2))))
    with pytest.raises(ValueError, match="nothing to merge with"):
        nn.Merge("add", "x")(Tensor(np.ones((1, 2))))


# --- against PyTorch ---------------------------------------------------------------------------
@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def copy_linear(torch, ours):
    layer = torch.nn.Linear(ours.in_features, ours.out_features, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(ours.weight.data.T))
        layer.bias.copy_(torch.from_numpy(ours.bias.data))
    return layer


def copy_conv(torch, ours):
    layer = torch.nn.Conv2d(
        ours.in_channels,
        ours.out_channels,
        ours.kernel_size,
        padding=ours.padding,
        dtype=torch.float64,
    )
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(ours.weight.data))
        layer.bias.copy_(torch.from_numpy(ours.bias.data))
    return layer


def compare(torch, model, theirs_fn, their_params, x, seed=0):
    ours_x = Tensor(x, requires_grad=True)
    theirs_x = torch.tensor(x, requires_grad=True)
    out, expected = model(ours_x), theirs_fn(theirs_x)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    upstream = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(upstream)
    expected.backward(torch.from_numpy(upstream))
    np.testing.assert_allclose(ours_x.grad, theirs_x.grad.numpy(), rtol=1e-9, atol=1e-12)
    for (name, mine), theirs in zip(model.named_parameters(), their_params, strict=True):
        reference = theirs.grad.numpy()
        if mine.ndim == 2:  # a Linear's weight: (in, out) here, (out, in) in PyTorch
            reference = reference.T
        np.testing.assert_allclose(mine.grad, reference, rtol=1e-9, atol=1e-12, err_msg=name)


def test_residual_mlp_equals_pytorch(torch):
    model = residual_mlp(rng=3)
    first, second = model[0], model[1]
    a, b = copy_linear(torch, first.body[0]), copy_linear(torch, first.body[2])
    c, s = copy_linear(torch, second.body[0]), copy_linear(torch, second.shortcut[0])
    bn = torch.nn.BatchNorm1d(6, dtype=torch.float64)

    def theirs(x):
        h = x + b(torch.tanh(a(x)))
        return torch.relu(bn(c(h))) + s(h)

    params = [
        a.weight,
        a.bias,
        b.weight,
        b.bias,
        c.weight,
        c.bias,
        bn.weight,
        bn.bias,
        s.weight,
        s.bias,
    ]
    x = np.random.default_rng(4).standard_normal((6, 4))
    compare(torch, model, theirs, params, x)


def test_dense_cnn_equals_pytorch(torch):
    model = dense_cnn(rng=5)
    stem, inner, down = (
        copy_conv(torch, model[0]),
        copy_conv(torch, model[1].body[0]),
        copy_conv(torch, model[2]),
    )
    bn = torch.nn.BatchNorm2d(6, dtype=torch.float64)

    def theirs(x):
        s = stem(x)
        h = torch.cat([s, torch.relu(inner(s))], dim=1)
        h = down(h) + s
        return bn(torch.cat([h, s], dim=1))

    params = [
        stem.weight,
        stem.bias,
        inner.weight,
        inner.bias,
        down.weight,
        down.bias,
        bn.weight,
        bn.bias,
    ]
    x = np.random.default_rng(6).standard_normal((3, 1, 5, 5))
    compare(torch, model, theirs, params, x)
