"""Parity with PyTorch: every op, functional and layer, in values and gradients (float64).

Each check runs the engine and PyTorch on the same float64 inputs, compares the forward values,
backpropagates one random upstream gradient through both and compares the gradient of every
input (and of every parameter and running statistic for layers), to a relative tolerance of
1e-10. The absolute slack of 1e-12 only covers results that cancel to about zero.
"""

import numpy as np
import pytest

from topograd import engine, nn
from topograd import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

RTOL = 1e-10
ATOL = 1e-12


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# --- helpers ---------------------------------------------------------------------------------
def as_numpy(value):
    """An ndarray from a torch tensor, an engine tensor or anything numpy takes."""
    if isinstance(value, torch.Tensor):
        return value.detach().numpy()
    if isinstance(value, engine.Tensor):
        return value.data
    return np.asarray(value)


def assert_close(actual, expected, atol=ATOL, what="value"):
    """Same shape, and equal to RTOL (plus `atol` for entries that are about zero)."""
    assert actual is not None, f"{what}: the engine produced None"
    actual, expected = as_numpy(actual), as_numpy(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=atol, err_msg=what)


def backward_both(ours, theirs, rng):
    """Backpropagate the same random upstream gradient through both outputs."""
    upstream = rng.standard_normal(tuple(theirs.shape))
    ours.backward(upstream)
    theirs.backward(torch.from_numpy(upstream))


def check(engine_fn, torch_fn, *arrays, seed=0):
    """Apply both functions to the same arrays; compare outputs and every input's gradient."""
    ours = [engine.Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out, expected = engine_fn(*ours), torch_fn(*theirs)
    assert_close(out, expected, what="forward")
    backward_both(out, expected, np.random.default_rng(seed))
    for index, (mine, reference) in enumerate(zip(ours, theirs)):
        assert_close(mine.grad, reference.grad, what=f"gradient of input {index}")


def normal(rng, shape):
    return rng.standard_normal(shape)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def away_from_zero(rng, shape):
    """Magnitudes in [0.5, 2] with random signs: safe for division, abs, relu."""
    return positive(rng, shape) * rng.choice([-1.0, 1.0], shape)


def with_ties(rng, shape):
    """Small integers, so that maxima are often shared."""
    return rng.integers(0, 3, shape).astype(np.float64)


# --- binary operators ----------------------------------------------------------------------
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
}

BROADCAST_SHAPES = [
    ((3, 4), (3, 4)),
    ((3, 1, 4), (5, 4)),
    ((5, 4), (3, 1, 4)),
    ((4,), (3, 4)),
    ((2, 1), (1, 3)),
    ((), (2, 3)),
    ((2, 3), ()),
    ((), ()),
]


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_binary_operator(name, shapes, rng):
    # pow needs a positive base; every op gets operands away from zero (division).
    first = positive(rng, shapes[0]) if name == "pow" else away_from_zero(rng, shapes[0])
    check(BINARY[name], BINARY[name], first, away_from_zero(rng, shapes[1]))


def test_binary_operator_on_the_same_tensor_twice(rng):
    check(lambda t: t * t + t / t - t, lambda t: t * t + t / t - t, away_from_zero(rng, (3, 4)))


WITH_NUMBERS = {
    "t + 2.5": lambda t: t + 2.5,
    "2.5 + t": lambda t: 2.5 + t,
    "t - 3": lambda t: t - 3,
    "3 - t": lambda t: 3 - t,
    "t * -1.5": lambda t: t * -1.5,
    "2 * t": lambda t: 2 * t,
    "t / 4": lambda t: t / 4,
    "4 / t": lambda t: 4 / t,
    "t ** 2": lambda t: t**2,
    "t ** 0.5": lambda t: t**0.5,
    "t ** -1.5": lambda t: t**-1.5,
    "2 ** t": lambda t: 2**t,
    "0.5 ** t": lambda t: 0.5**t,
    "-t": lambda t: -t,
}


@pytest.mark.parametrize("shape", [(3, 4), ()], ids=str)
@pytest.mark.parametrize("expression", WITH_NUMBERS)
def test_operator_with_python_number(expression, shape, rng):
    fn = WITH_NUMBERS[expression]
    check(fn, fn, positive(rng, shape))


@pytest.mark.parametrize("exponent", [2, 3, -1, -2.0])
def test_integer_power_of_negative_base(exponent, rng):
    check(lambda t: t**exponent, lambda t: t**exponent, away_from_zero(rng, (3, 4)))


# --- matrix product --------------------------------------------------------------------------
MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((2, 3, 4), (4, 5)),
    ((4, 5), (2, 5, 3)),
    ((2, 3, 4), (2, 4, 5)),
    ((3, 1, 2, 4), (5, 4, 3)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul(shapes, rng):
    check(lambda a, b: a @ b, lambda a, b: a @ b, *(normal(rng, s) for s in shapes))


# --- unary functions -------------------------------------------------------------------------
UNARY_DOMAINS = {
    "exp": normal,
    "log": positive,
    "sqrt": positive,
    "abs": away_from_zero,
    "tanh": normal,
    "sigmoid": normal,
    "relu": away_from_zero,
}


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2), ()], ids=str)
@pytest.mark.parametrize("name", UNARY_DOMAINS)
def test_unary_method(name, shape, rng):
    def method(t):
        return getattr(t, name)()

    check(method, method, UNARY_DOMAINS[name](rng, shape))


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "exp"])
def test_unary_method_at_large_magnitudes(name):
    x = np.array([-800.0, -100.0, -40.0, -20.0, -1e-9, 0.0, 1e-9, 20.0, 40.0, 100.0, 700.0])
    if name != "exp":
        x = np.append(x, 800.0)

    def method(t):
        return getattr(t, name)()

    check(method, method, x)


@pytest.mark.parametrize("name", ["relu", "abs"])
def test_kink_at_zero_follows_torch(name):
    # NOTE: PyTorch takes relu'(0) = 0 and |x|'(0) = 0; the engine documents the same choice.
    def method(t):
        return getattr(t, name)()

    check(method, method, np.array([-1.5, 0.0, 2.0, 0.0]))


# --- reductions ------------------------------------------------------------------------------
def torch_reduce(name, t, axis, keepdims, correction=1):
    dim = tuple(range(t.ndim)) if axis is None else axis
    if name == "max":
        return t.amax(dim=dim, keepdim=keepdims)
    if name == "var":
        return t.var(dim=dim, keepdim=keepdims, correction=correction)
    return getattr(t, name)(dim=dim, keepdim=keepdims)


REDUCE_AXES = [None, 0, 1, -1, (0, 2), (2, 0), (0, 1, 2), (1,)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", REDUCE_AXES, ids=str)
@pytest.mark.parametrize("name", ["sum", "mean", "var", "max"])
def test_reduction(name, axis, keepdims, rng):
    check(
        lambda t: getattr(t, name)(axis=axis, keepdims=keepdims),
        lambda t: torch_reduce(name, t, axis, keepdims),
        normal(rng, (2, 3, 4)),
    )


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
def test_reduction_of_a_scalar(name):
    check(lambda t: getattr(t, name)(), lambda t: torch_reduce(name, t, None, False), 1.5)


@pytest.mark.parametrize("correction", [0, 1, 2])
@pytest.mark.parametrize("axis", [None, 1, (0, 2)], ids=str)
def test_var_correction(axis, correction, rng):
    check(
        lambda t: t.var(axis=axis, correction=correction),
        lambda t: torch_reduce("var", t, axis, False, correction),
        normal(rng, (3, 4, 5)),
    )


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)], ids=str)
def test_max_splits_ties_like_amax(axis, keepdims, rng):
    check(
        lambda t: t.max(axis=axis, keepdims=keepdims),
        lambda t: torch_reduce("max", t, axis, keepdims),
        with_ties(rng, (3, 4, 5)),
    )


# --- shapes and indexing ---------------------------------------------------------------------
SHAPE_OPS = {
    "reshape(6, 4)": (lambda t: t.reshape(6, 4), lambda t: t.reshape(6, 4)),
    "reshape((4, -1))": (lambda t: t.reshape((4, -1)), lambda t: t.reshape((4, -1))),
    "reshape(-1)": (lambda t: t.reshape(-1), lambda t: t.reshape(-1)),
    "transpose()": (lambda t: t.transpose(), lambda t: t.permute(2, 1, 0)),
    "transpose((1, 0, 2))": (lambda t: t.transpose((1, 0, 2)), lambda t: t.permute(1, 0, 2)),
    "transpose(2, 0, 1)": (lambda t: t.transpose(2, 0, 1), lambda t: t.permute(2, 0, 1)),
    "T after reshape": (lambda t: t.reshape(6, 4).T, lambda t: t.reshape(6, 4).T),
}


@pytest.mark.parametrize("name", SHAPE_OPS)
def test_shape_op(name, rng):
    check(*SHAPE_OPS[name], normal(rng, (2, 3, 4)))


def to_torch_index(index):
    if isinstance(index, tuple):
        return tuple(to_torch_index(part) for part in index)
    if isinstance(index, np.ndarray):
        return torch.from_numpy(index)
    return index


INDICES = {
    "int": 1,
    "negative int": -1,
    "slice": slice(1, 3),
    "stepped slices": (slice(None, None, 2), slice(1, None)),
    "int after slice": (slice(None), 2),
    "ellipsis": (Ellipsis, 0),
    "new axis": (None, 1),
    "repeated int array": np.array([0, 2, 0, 3, 0]),
    "repeated int list": [1, 1, 3],
    "paired int arrays": (np.array([0, 0, 1, 0]), np.array([4, 4, 2, 4])),
    "int array after slice": (slice(None), np.array([1, 1, 3])),
    "int arrays around a slice": (np.array([0, 2]), slice(None), np.array([1, 1])),
    "2-d int array": np.array([[0, 1], [1, 0]]),
    "boolean mask on axis 0": np.array([True, False, True, True]),
    "boolean mask after slice": (slice(None), np.array([True, False, False, True, True])),
}


@pytest.mark.parametrize("name", INDICES)
def test_indexing(name, rng):
    index = INDICES[name]
    check(lambda t: t[index], lambda t: t[to_torch_index(index)], normal(rng, (4, 5, 3)))


def test_indexing_with_a_full_boolean_mask(rng):
    x = normal(rng, (4, 5))
    mask = x > 0.2
    check(lambda t: t[mask], lambda t: t[torch.from_numpy(mask)], x)


# --- engine.functional -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "axis"), [((4, 5), -1), ((4, 5), 0), ((2, 3, 4), 1), ((6,), 0)], ids=str
)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family(name, shape, axis, rng):
    check(
        lambda t: getattr(F, name)(t, axis=axis),
        lambda t: getattr(TF, name)(t, dim=axis),
        normal(rng, shape),
    )


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family_with_logits_of_magnitude_1e4(name, rng):
    logits = normal(rng, (4, 6)) * 1e4
    out = getattr(F, name)(logits)
    assert np.all(np.isfinite(out.data))
    check(lambda t: getattr(F, name)(t), lambda t: getattr(TF, name)(t, dim=-1), logits)


@pytest.mark.parametrize("scale", [1.0, 1e4])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(reduction, scale, rng):
    labels = np.array([0, 3, 2, 3, 1, 0])
    check(
        lambda t: F.cross_entropy(t, labels, reduction=reduction),
        lambda t: TF.cross_entropy(t, torch.from_numpy(labels), reduction=reduction),
        normal(rng, (6, 4)) * scale,
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(reduction, rng):
    check(
        lambda p, y: F.mse_loss(p, y, reduction=reduction),
        lambda p, y: TF.mse_loss(p, y, reduction=reduction),
        normal(rng, (5, 3)),
        normal(rng, (5, 3)),
    )


@pytest.mark.parametrize("scale", [1.0, 30.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_with_logits(reduction, scale, rng):
    check(
        lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction=reduction),
        lambda x, y: TF.binary_cross_entropy_with_logits(x, y, reduction=reduction),
        away_from_zero(rng, (6, 2)) * scale,
        rng.uniform(0.0, 1.0, (6, 2)),
    )


@pytest.mark.parametrize("shape", [(7,), (7, 1)], ids=str)
@pytest.mark.parametrize("margin", [1.0, 0.5])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_hinge_loss(reduction, margin, shape, rng):
    signs = np.array([1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0]).reshape(shape)
    reduce = {"mean": torch.mean, "sum": torch.sum, "none": lambda t: t}[reduction]
    check(
        lambda s: F.hinge_loss(s, signs, margin=margin, reduction=reduction),
        lambda s: reduce(torch.relu(margin - torch.from_numpy(signs) * s)),
        normal(rng, shape),
    )


@pytest.mark.parametrize("margin", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_multiclass_hinge_loss_is_multi_margin_loss_times_classes(reduction, margin, rng):
    # The cs231n SVM sums over the wrong classes; multi_margin_loss also divides by C.
    labels = np.array([0, 3, 2, 3, 1, 0])
    check(
        lambda s: F.hinge_loss(s, labels, margin=margin, reduction=reduction),
        lambda s: (
            4
            * TF.multi_margin_loss(s, torch.from_numpy(labels), margin=margin, reduction=reduction)
        ),
        normal(rng, (6, 4)),
    )


ACTIVATIONS = {
    "relu": (F.relu, torch.relu),
    "tanh": (F.tanh, torch.tanh),
    "sigmoid": (F.sigmoid, torch.sigmoid),
    "leaky_relu(0.01)": (F.leaky_relu, TF.leaky_relu),
    "leaky_relu(0.2)": (lambda t: F.leaky_relu(t, 0.2), lambda t: TF.leaky_relu(t, 0.2)),
    "elu(1)": (F.elu, TF.elu),
    "elu(0.5)": (lambda t: F.elu(t, 0.5), lambda t: TF.elu(t, 0.5)),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_function(name, rng):
    check(*ACTIVATIONS[name], away_from_zero(rng, (4, 5)) * 3)


@pytest.mark.parametrize(
    "name", ["leaky_relu(0.2)", "elu(1)", "elu(0.5)", "relu", "sigmoid", "tanh"]
)
def test_activation_gradient_at_zero_follows_torch(name):
    # PyTorch: leaky_relu'(0) = slope and elu'(0) = alpha (the left-hand derivative; for
    # alpha = 1 the ELU is differentiable at 0 with derivative 1).
    check(*ACTIVATIONS[name], np.array([-1.0, 0.0, 0.5, 0.0]))


def test_binary_cross_entropy_with_logits_gradient_at_zero_logit():
    # The loss is smooth at x = 0 with d/dx = sigmoid(0) - y = 0.5 - y (a zero-initialized
    # output layer produces exactly these logits).
    check(
        lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction="sum"),
        lambda x, y: TF.binary_cross_entropy_with_logits(x, y, reduction="sum"),
        np.array([0.0, 0.0, 0.0, 1.5]),
        np.array([1.0, 0.0, 0.3, 1.0]),
    )


TAILS = {
    "sigmoid": (F.sigmoid, torch.sigmoid, [-40.0, -30.0, -20.0, 20.0]),
    "tanh": (F.tanh, torch.tanh, [-1e-9, 1e-12, 1e-200]),
    "elu": (F.elu, TF.elu, [-1e-8, -1e-12]),
    "bce_with_logits": (
        lambda x: F.binary_cross_entropy_with_logits(x, np.ones(x.shape), reduction="none"),
        lambda x: TF.binary_cross_entropy_with_logits(
            x, torch.ones(x.shape, dtype=torch.float64), reduction="none"
        ),
        [20.0, 40.0, 100.0],
    ),
    "log_softmax": (F.log_softmax, lambda t: TF.log_softmax(t, dim=-1), [0.0, -40.0, -800.0]),
}


@pytest.mark.parametrize("name", TAILS)
def test_tiny_results_keep_their_relative_precision(name):
    # Where the true value is tiny but well-conditioned (elu(x) ~ x near 0, the BCE loss of a
    # confident right answer ~ e^-x), the relative tolerance must hold without absolute slack.
    ours, theirs, values = TAILS[name]
    x = np.array(values)
    np.testing.assert_allclose(
        ours(engine.Tensor(x)).data, theirs(torch.from_numpy(x)).numpy(), rtol=RTOL, atol=0
    )


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1, 4), (5, 4)), ((2, 3), ())], ids=str)
def test_maximum(shapes, rng):
    check(F.maximum, torch.maximum, *(normal(rng, s) for s in shapes))


def test_maximum_splits_ties_like_torch(rng):
    check(F.maximum, torch.maximum, with_ties(rng, (4, 5)), with_ties(rng, (4, 5)))


def test_maximum_with_a_python_number(rng):
    x = normal(rng, (3, 4))
    x[0, 0] = 0.25  # a tie with the constant
    check(
        lambda t: F.maximum(t, 0.25),
        lambda t: torch.maximum(t, torch.tensor(0.25, dtype=torch.float64)),
        x,
    )


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis, rng):
    shapes = [(2, 3), (2, 1), (2, 4)] if axis else [(2, 3), (1, 3), (4, 3)]
    check(
        lambda *ts: F.concat(ts, axis=axis),
        lambda *ts: torch.cat(ts, dim=axis),
        *(normal(rng, s) for s in shapes),
    )


BN_SHAPES = [(8, 3), (4, 3, 5)]


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_functional_batch_norm_training_updates_running_statistics(shape, fused, affine, rng):
    running = {"mean": normal(rng, 3), "var": positive(rng, 3)}
    ours_mean, ours_var = running["mean"].copy(), running["var"].copy()
    theirs_mean, theirs_var = torch.tensor(running["mean"]), torch.tensor(running["var"])
    arrays = [normal(rng, shape) * 2 + 1]
    if affine:
        arrays += [positive(rng, 3), normal(rng, 3)]
    check(
        lambda *ts: F.batch_norm(
            ts[0], ours_mean, ours_var, *ts[1:], training=True, momentum=0.3, fused=fused
        ),
        lambda *ts: TF.batch_norm(
            ts[0], theirs_mean, theirs_var, *ts[1:], training=True, momentum=0.3
        ),
        *arrays,
    )
    assert_close(ours_mean, theirs_mean, what="running_mean")
    assert_close(ours_var, theirs_var, what="running_var")


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_functional_batch_norm_eval_uses_running_statistics(shape, fused, rng):
    running_mean, running_var = normal(rng, 3), positive(rng, 3)
    check(
        lambda x, w, b: F.batch_norm(
            x, running_mean, running_var, w, b, training=False, eps=1e-3, fused=fused
        ),
        lambda x, w, b: TF.batch_norm(
            x,
            torch.tensor(running_mean),
            torch.tensor(running_var),
            w,
            b,
            training=False,
            eps=1e-3,
        ),
        normal(rng, shape),
        positive(rng, 3),
        normal(rng, 3),
    )


@pytest.mark.parametrize(
    ("shape", "normalized_shape"),
    [((4, 5), 5), ((2, 3, 5), (5,)), ((2, 3, 5), (3, 5))],
    ids=str,
)
def test_functional_layer_norm(shape, normalized_shape, rng):
    param_shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    check(
        lambda x, w, b: F.layer_norm(x, normalized_shape, w, b, eps=1e-4),
        lambda x, w, b: TF.layer_norm(x, param_shape, w, b, eps=1e-4),
        normal(rng, shape) * 3 + 2,
        positive(rng, param_shape),
        normal(rng, param_shape),
    )


def test_functional_layer_norm_without_affine(rng):
    check(
        lambda x: F.layer_norm(x, 5),
        lambda x: TF.layer_norm(x, (5,)),
        normal(rng, (4, 5)),
    )


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("shape", [(3, 4), (3, 4, 5)], ids=str)
def test_functional_group_norm(shape, groups, rng):
    check(
        lambda x, w, b: F.group_norm(x, groups, w, b, eps=1e-4),
        lambda x, w, b: TF.group_norm(x, groups, w, b, eps=1e-4),
        normal(rng, shape) * 3 + 2,
        positive(rng, 4),
        normal(rng, 4),
    )


@pytest.mark.parametrize(("p", "training"), [(0.0, True), (0.0, False), (0.5, False)])
def test_dropout_without_random_mask_is_identity(p, training, rng):
    check(
        lambda x: F.dropout(x, p=p, training=training),
        lambda x: TF.dropout(x, p=p, training=training),
        normal(rng, (4, 5)),
    )


# --- engine.nn layers ------------------------------------------------------------------------
def linear_weight_names(module):
    """Names of weights that the engine stores transposed relative to torch.nn.Linear."""
    return {
        f"{name}.weight" if name else "weight"
        for name, sub in module.named_modules()
        if isinstance(sub, nn.Linear)
    }


def paired_parameters(ours, theirs):
    """(name, engine parameter, torch parameter, transposed) for every parameter."""
    mine = dict(ours.named_parameters())
    reference = dict(theirs.named_parameters())
    assert set(mine) == set(reference)
    transposed = linear_weight_names(ours)
    return [(name, mine[name], reference[name], name in transposed) for name in sorted(mine)]


def copy_random_parameters(ours, theirs, rng):
    """Give the engine layer random parameters (not the trivial init) and copy them to torch."""
    for _, mine, reference, transposed in paired_parameters(ours, theirs):
        mine.data = rng.uniform(0.5, 1.5, mine.shape) * rng.choice([-1.0, 1.0], mine.shape)
        value = mine.data.T if transposed else mine.data
        with torch.no_grad():
            reference.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def assert_module_parity(ours, theirs, x, rng):
    """One forward and backward of both modules on `x`: outputs, grads of the input and of
    every parameter, and every buffer (running statistics) afterwards."""
    mine_x = engine.Tensor(x, requires_grad=True)
    their_x = torch.tensor(x, requires_grad=True)
    out, expected = ours(mine_x), theirs(their_x)
    assert_close(out, expected, what="forward")
    backward_both(out, expected, rng)
    assert_close(mine_x.grad, their_x.grad, what="input gradient")
    for name, mine, reference, transposed in paired_parameters(ours, theirs):
        expected_grad = reference.grad.T if transposed else reference.grad
        assert_close(mine.grad, expected_grad, what=f"gradient of {name}")
    buffers = dict(theirs.named_buffers())
    for name, value in ours.named_buffers():
        assert_close(value, buffers[name], atol=0 if "num_batches" in name else ATOL, what=name)
    assert {name for name, _ in ours.named_buffers()} == set(buffers)
    ours.zero_grad()
    theirs.zero_grad()


def train_then_eval(ours, theirs, shape, rng, steps=3):
    """Several training steps on shifted batches, then one evaluation step."""
    for _ in range(steps):
        assert_module_parity(ours, theirs, normal(rng, shape) * 2 + 1, rng)
    ours.eval()
    theirs.eval()
    assert_module_parity(ours, theirs, normal(rng, shape) * 2 + 1, rng)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 4), (4,)], ids=str)
def test_linear(shape, bias, rng):
    ours = nn.Linear(4, 3, bias=bias)
    theirs = torch.nn.Linear(4, 3, bias=bias, dtype=torch.float64)
    copy_random_parameters(ours, theirs, rng)
    assert_module_parity(ours, theirs, normal(rng, shape), rng)


def test_square_linear_is_stored_transposed(rng):
    ours, theirs = nn.Linear(4, 4), torch.nn.Linear(4, 4, dtype=torch.float64)
    copy_random_parameters(ours, theirs, rng)
    assert_module_parity(ours, theirs, normal(rng, (5, 4)), rng)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None], ids=str)
@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batchnorm1d_training_steps_then_eval(shape, fused, momentum, rng):
    ours = nn.BatchNorm1d(3, eps=1e-4, momentum=momentum, fused=fused)
    theirs = torch.nn.BatchNorm1d(3, eps=1e-4, momentum=momentum, dtype=torch.float64)
    copy_random_parameters(ours, theirs, rng)
    train_then_eval(ours, theirs, shape, rng)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 3


@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
def test_batchnorm1d_without_affine(fused, rng):
    ours = nn.BatchNorm1d(3, affine=False, fused=fused)
    theirs = torch.nn.BatchNorm1d(3, affine=False, dtype=torch.float64)
    train_then_eval(ours, theirs, (6, 3), rng, steps=2)


@pytest.mark.parametrize(
    ("normalized_shape", "shape"), [(5, (4, 5)), ((5,), (2, 3, 5)), ((3, 5), (2, 3, 5))], ids=str
)
@pytest.mark.parametrize("affine", [True, False])
def test_layernorm(normalized_shape, shape, affine, rng):
    ours = nn.LayerNorm(normalized_shape, eps=1e-4, elementwise_affine=affine)
    theirs = torch.nn.LayerNorm(
        normalized_shape, eps=1e-4, elementwise_affine=affine, dtype=torch.float64
    )
    copy_random_parameters(ours, theirs, rng)
    train_then_eval(ours, theirs, shape, rng, steps=1)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("groups", [1, 2, 6])
@pytest.mark.parametrize("shape", [(3, 6), (3, 6, 4)], ids=str)
def test_groupnorm(shape, groups, affine, rng):
    ours = nn.GroupNorm(groups, 6, eps=1e-4, affine=affine)
    theirs = torch.nn.GroupNorm(groups, 6, eps=1e-4, affine=affine, dtype=torch.float64)
    copy_random_parameters(ours, theirs, rng)
    train_then_eval(ours, theirs, shape, rng, steps=1)


ACTIVATION_LAYERS = {
    "ReLU": (nn.ReLU, torch.nn.ReLU, ()),
    "Tanh": (nn.Tanh, torch.nn.Tanh, ()),
    "Sigmoid": (nn.Sigmoid, torch.nn.Sigmoid, ()),
    "LeakyReLU": (nn.LeakyReLU, torch.nn.LeakyReLU, ()),
    "LeakyReLU(0.3)": (nn.LeakyReLU, torch.nn.LeakyReLU, (0.3,)),
    "ELU": (nn.ELU, torch.nn.ELU, ()),
    "ELU(0.6)": (nn.ELU, torch.nn.ELU, (0.6,)),
    "Dropout(0.0)": (nn.Dropout, torch.nn.Dropout, (0.0,)),
}


@pytest.mark.parametrize("name", ACTIVATION_LAYERS)
def test_parameter_free_layer(name, rng):
    ours_class, theirs_class, args = ACTIVATION_LAYERS[name]
    ours, theirs = ours_class(*args), theirs_class(*args)
    train_then_eval(ours, theirs, (4, 5), rng, steps=1)


def test_dropout_layer_in_eval_is_identity(rng):
    ours, theirs = nn.Dropout(0.5).eval(), torch.nn.Dropout(0.5).eval()
    assert_module_parity(ours, theirs, normal(rng, (4, 5)), rng)


@pytest.mark.parametrize("fused", [False, True], ids=["composed", "fused"])
def test_sequential(fused, rng):
    ours = nn.Sequential(
        nn.Linear(4, 6),
        nn.BatchNorm1d(6, fused=fused),
        nn.ReLU(),
        nn.Linear(6, 6),
        nn.LayerNorm(6),
        nn.Tanh(),
        nn.Linear(6, 4),
        nn.GroupNorm(2, 4),
        nn.LeakyReLU(0.1),
        nn.Linear(4, 4),
        nn.ELU(0.7),
        nn.Dropout(0.0),
        nn.Linear(4, 3),
        nn.Sigmoid(),
    )
    theirs = torch.nn.Sequential(
        torch.nn.Linear(4, 6),
        torch.nn.BatchNorm1d(6),
        torch.nn.ReLU(),
        torch.nn.Linear(6, 6),
        torch.nn.LayerNorm(6),
        torch.nn.Tanh(),
        torch.nn.Linear(6, 4),
        torch.nn.GroupNorm(2, 4),
        torch.nn.LeakyReLU(0.1),
        torch.nn.Linear(4, 4),
        torch.nn.ELU(0.7),
        torch.nn.Dropout(0.0),
        torch.nn.Linear(4, 3),
        torch.nn.Sigmoid(),
    ).double()
    copy_random_parameters(ours, theirs, rng)
    train_then_eval(ours, theirs, (8, 4), rng, steps=2)


class TorchMaxout(torch.nn.Module):
    """Maxout written in torch: a linear map to out * pieces units, then the max of each group.

    The weight uses the engine's (in, out * pieces) layout, so it is copied as is.
    """

    def __init__(self, in_features, out_features, pieces):
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        shape = (in_features, out_features * pieces)
        self.weight = torch.nn.Parameter(torch.zeros(shape, dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.zeros(shape[1], dtype=torch.float64))

    def forward(self, x):
        z = x @ self.weight + self.bias
        return z.view(*x.shape[:-1], self.out_features, self.pieces).amax(-1)


@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("pieces", [2, 3])
def test_maxout(pieces, shape, rng):
    ours, theirs = nn.Maxout(4, 5, pieces=pieces), TorchMaxout(4, 5, pieces)
    copy_random_parameters(ours, theirs, rng)
    assert_module_parity(ours, theirs, normal(rng, shape), rng)


def test_maxout_with_tied_pieces_splits_the_gradient_like_amax(rng):
    ours, theirs = nn.Maxout(4, 3, pieces=2), TorchMaxout(4, 3, 2)
    copy_random_parameters(ours, theirs, rng)
    tied = ours.weight.data.copy()
    tied[:, 1::2] = tied[:, 0::2]  # both pieces of every unit are the same linear map
    ours.weight.data, ours.bias.data = tied, np.zeros(6)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(tied))
        theirs.bias.zero_()
    assert_module_parity(ours, theirs, normal(rng, (5, 4)), rng)
