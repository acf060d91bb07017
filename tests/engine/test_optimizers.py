"""Optimizers against PyTorch, and the notes' variants against their formulas written out here.

Trajectories. Each comparison trains two copies of one network, an MLP
Linear(8, 16, bias=False) -> BatchNorm1d(16) -> ReLU -> Linear(16, 3) with softmax
cross-entropy on a fixed float64 batch: one copy in the engine with our optimizer, one in
PyTorch (same weights, Linear weights transposed) with torch.optim. Each side computes its
own gradients from its own model. After every one of 200 steps every parameter must agree:
max |ours - torch| <= 1e-12 * max |torch|, per parameter. They agree to about 1e-14: the update
rules repeat torch's operations in torch's order, and what is left is rounding, from torch's
CPU kernels (fused multiply-adds in add/lerp/addcmul, MKL's square root, its matmuls), which
moderate learning rates do not amplify.

Why the first Linear has no bias: a bias just before batch norm has gradient exactly zero in
exact arithmetic (the normalization subtracts the batch mean), so what each engine computes
for it is rounding noise, about 1e-17, different in the two. SGD multiplies that noise by lr,
but the adaptive rules divide it by the root of its own running square and turn it into
steps of the order of lr, in random directions: with that bias, RMSprop and NAdam trajectories
part at the 1e-2 level and Adagrad's at 1e-7, while SGD's still agree to 1e-15. Dropping the
bias (what one does before batch norm anyway) compares the optimizers, not the noise.

torch runs on one thread here (its pool fights numpy's on a small machine; it also makes the
file 10x faster) and with float64 as its default dtype, which NAdam needs: torch keeps NAdam's
momentum product in a tensor of the default dtype, float32 otherwise.
"""

from __future__ import annotations

import functools
import inspect
import itertools

import numpy as np
import pytest

from topograd import Tensor, nn
from topograd import functional as F
from topograd.optim import SGD, Adadelta, Adagrad, Adam, AdamW, NAdam, RMSprop

torch = pytest.importorskip("torch")

STEPS = 200
FORMULA_STEPS = 100
RTOL = 1e-12
_data_rng = np.random.default_rng(0)
X = _data_rng.standard_normal((32, 8))
LABELS = _data_rng.integers(0, 3, 32)


@pytest.fixture(scope="module", autouse=True)
def torch_float64_one_thread():
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_num_threads(threads)
    torch.set_default_dtype(dtype)


# --- the two networks ------------------------------------------------------------------------
def initial_weights(bias_before_norm=False, seed=1):
    """Arrays in the engine's layout: W1 (8, 16) [b1], gamma, beta, W2 (16, 3), b2."""
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((8, 16)) / np.sqrt(8)]
    if bias_before_norm:
        weights.append(0.1 * rng.standard_normal(16))
    weights += [1.0 + 0.1 * rng.standard_normal(16), 0.1 * rng.standard_normal(16)]
    weights += [rng.standard_normal((16, 3)) / 4.0, 0.1 * rng.standard_normal(3)]
    return weights


def engine_model(bias_before_norm=False):
    model = nn.Sequential(
        nn.Linear(8, 16, bias=bias_before_norm), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)
    )
    for p, value in zip(model.parameters(), initial_weights(bias_before_norm), strict=True):
        p.data = value
    return model


def torch_model(bias_before_norm=False):
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16, bias=bias_before_norm),
        torch.nn.BatchNorm1d(16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 3),
    ).double()
    with torch.no_grad():
        for p, value in zip(model.parameters(), initial_weights(bias_before_norm), strict=True):
            p.copy_(torch.from_numpy(value.T.copy()))  # Linear weights are stored transposed
    return model


def engine_loss(model, l2=0.0):
    loss = F.cross_entropy(model(Tensor(X)), LABELS)
    if l2:
        loss = loss + l2 / 2 * sum((p * p).sum() for p in model.parameters())
    return loss


def engine_step(model, optimizer, l2=0.0):
    """One step through a closure (which the look-ahead Nesterov form needs)."""

    def closure():
        optimizer.zero_grad()
        loss = engine_loss(model, l2)
        loss.backward()
        return loss

    return optimizer.step(closure)


def engine_gradients(model):
    model.zero_grad()
    engine_loss(model).backward()
    return [p.grad for p in model.parameters()]


def torch_step(model, optimizer):
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(
        model(torch.from_numpy(X)), torch.from_numpy(LABELS)
    ).backward()
    optimizer.step()


def torch_arrays(model):
    """Parameters in the engine's layout."""
    return [p.detach().numpy().T for p in model.parameters()]


def assert_close(ours, expected, rtol=RTOL, what=""):
    """Per parameter: max |ours - expected| <= rtol * max |expected|."""
    for index, (a, b) in enumerate(zip(ours, expected, strict=True)):
        error = np.max(np.abs(a - b)) / np.max(np.abs(b))
        assert error <= rtol, f"{what}: parameter {index} differs by {error:.2e} (relative)"


def assert_follows_torch(ours, theirs, steps=STEPS, bias_before_norm=False):
    """Train both networks; compare every parameter after every step."""
    model, reference = engine_model(bias_before_norm), torch_model(bias_before_norm)
    optimizer, torch_optimizer = ours(model.parameters()), theirs(reference.parameters())
    for step in range(1, steps + 1):
        engine_step(model, optimizer)
        torch_step(reference, torch_optimizer)
        assert_close(
            [p.data for p in model.parameters()], torch_arrays(reference), what=f"step {step}"
        )


def assert_follows_formula(ours, formula, steps=FORMULA_STEPS, rtol=RTOL):
    """Train one network with the optimizer and another with `formula(w, g, state, t) -> w`."""
    model, reference = engine_model(), engine_model()
    optimizer = ours(model.parameters())
    states = [{} for _ in reference.parameters()]
    for t in range(1, steps + 1):
        engine_step(model, optimizer)
        grads = engine_gradients(reference)
        for p, g, state in zip(reference.parameters(), grads, states, strict=True):
            p.data = formula(p.data.copy(), g, state, t)
        expected = [p.data for p in reference.parameters()]
        assert_close([p.data for p in model.parameters()], expected, rtol, what=f"step {t}")


# --- every option combination against torch.optim --------------------------------------------
def combinations(**options):
    """Every combination of the listed option values, as dicts."""
    names = list(options)
    return [
        dict(zip(names, values, strict=True)) for values in itertools.product(*options.values())
    ]


def torch_cases():
    cases = []
    for options in combinations(
        momentum=[0.0, 0.9], dampening=[0.0, 0.5], nesterov=[False, True], weight_decay=[0.0, 1e-2]
    ):
        if (options["nesterov"] and (options["momentum"] == 0 or options["dampening"])) or (
            options["momentum"] == 0 and options["dampening"]
        ):
            continue  # torch refuses these, or they repeat another case
        cases.append(("SGD", dict(lr=0.1, **options)))
    for options in combinations(
        centered=[False, True], momentum=[0.0, 0.9], weight_decay=[0.0, 1e-2]
    ):
        cases.append(("RMSprop", dict(lr=1e-3, **options)))
    for options in combinations(
        lr_decay=[0.0, 1e-2], initial_accumulator_value=[0.0, 0.1], weight_decay=[0.0, 1e-2]
    ):
        cases.append(("Adagrad", dict(lr=0.05, **options)))
    for options in combinations(rho=[0.9, 0.5], weight_decay=[0.0, 1e-2]):
        cases.append(("Adadelta", dict(lr=1.0, **options)))
    for name in ("Adam", "AdamW"):
        for options in combinations(amsgrad=[False, True], weight_decay=[0.0, 1e-2]):
            cases.append((name, dict(lr=1e-2, **options)))
    for options in combinations(decoupled_weight_decay=[False, True], weight_decay=[0.0, 1e-2]):
        cases.append(("NAdam", dict(lr=1e-2, **options)))
    cases.append(("NAdam", dict(lr=1e-2, momentum_decay=0.1)))
    cases += [(name, {}) for name in CLASSES]  # the defaults
    return cases


CLASSES = {
    "SGD": SGD,
    "Adagrad": Adagrad,
    "RMSprop": RMSprop,
    "Adadelta": Adadelta,
    "Adam": Adam,
    "AdamW": AdamW,
    "NAdam": NAdam,
}


def case_id(value):
    if isinstance(value, str):
        return value
    return ",".join(f"{k}={v}" for k, v in value.items()) or "defaults"


@pytest.mark.parametrize(("name", "options"), torch_cases(), ids=case_id)
def test_trajectory_equals_torch(name, options):
    ours = functools.partial(CLASSES[name], **options)
    theirs = functools.partial(getattr(torch.optim, name), **options)
    assert_follows_torch(ours, theirs)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_follows_torch_with_a_bias_before_batch_norm(momentum):
    """SGD only scales the bias's rounding-noise gradient by lr (see the module docstring)."""
    assert_follows_torch(
        functools.partial(SGD, lr=0.1, momentum=momentum),
        functools.partial(torch.optim.SGD, lr=0.1, momentum=momentum),
        bias_before_norm=True,
    )


@pytest.mark.parametrize("name", list(CLASSES))
def test_signature_and_defaults_are_torchs(name):
    """Our positional parameters are a prefix of torch's, with torch's defaults."""
    ours = inspect.signature(CLASSES[name]).parameters.values()
    theirs = list(inspect.signature(getattr(torch.optim, name)).parameters.values())
    positional = [p for p in ours if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert [p.name for p in positional] == [p.name for p in theirs[: len(positional)]]
    torch_defaults = {p.name: p.default for p in theirs}
    for p in ours:
        if p.name in torch_defaults:
            assert p.default == torch_defaults[p.name], p.name


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
        ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
        ("RMSprop", dict(centered=True, momentum=0.5)),
        ("Adadelta", {}),
        ("Adam", dict(lr=0.1, amsgrad=True, weight_decay=0.1)),
        ("AdamW", dict(lr=0.1)),
        ("NAdam", dict(lr=0.1, weight_decay=0.1, decoupled_weight_decay=True)),
    ],
    ids=case_id,
)
def test_scalar_parameter_equals_torch(name, options):
    """A 0-d parameter (stored by the engine as a Python float) follows torch's 0-d tensor."""
    w = Tensor(2.0, requires_grad=True)
    reference = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    optimizer = CLASSES[name]([w], **options)
    torch_optimizer = getattr(torch.optim, name)([reference], **options)
    for _ in range(30):
        optimizer.zero_grad()
        ((w - 3.0) ** 2 * w).backward()
        optimizer.step()
        torch_optimizer.zero_grad()
        ((reference - 3.0) ** 2 * reference).backward()
        torch_optimizer.step()
        assert type(w._data) is float
        assert w.item() == pytest.approx(reference.item(), rel=RTOL)


@pytest.mark.parametrize("name", list(CLASSES))
def test_float32_parameters_stay_float32(name):
    """State and updates keep the parameter's dtype, and follow torch's float32 run."""
    rng = np.random.default_rng(5)
    start = rng.standard_normal(6).astype(np.float32)
    w = Tensor(start, requires_grad=True)
    reference = torch.tensor(start, requires_grad=True)
    optimizer, torch_optimizer = (
        CLASSES[name]([w], lr=0.01),
        getattr(torch.optim, name)([reference], lr=0.01),
    )
    for _ in range(10):
        optimizer.zero_grad()
        (w * w * w).sum().backward()
        optimizer.step()
        torch_optimizer.zero_grad()
        (reference**3).sum().backward()
        torch_optimizer.step()
    assert w.dtype == np.float32
    assert all(
        a.dtype == np.float32 for a in optimizer.state[w].values() if isinstance(a, np.ndarray)
    )
    np.testing.assert_allclose(w.data, reference.detach().numpy(), rtol=1e-5)


# --- the notes' forms, against their formulas written out --------------------------------------
def notes_momentum(w, g, state, t, *, lr, beta):
    """v = beta * v + (1 - beta) * g from v = 0; W = W - lr * v."""
    state["v"] = beta * state.get("v", 0.0) + (1 - beta) * g
    return w - lr * state["v"]


def notes_rmsprop(w, g, state, t, *, lr, alpha, eps, centered=False, momentum=0.0):
    """s = alpha * s + (1 - alpha) * g^2; W = W - lr * g / sqrt(s + eps), with s - a^2 under
    the root when centered (a the average gradient), through a velocity with momentum."""
    state["s"] = alpha * state.get("s", 0.0) + (1 - alpha) * g**2
    variance = state["s"]
    if centered:
        state["a"] = alpha * state.get("a", 0.0) + (1 - alpha) * g
        variance = variance - state["a"] ** 2
    step = g / np.sqrt(variance + eps)
    if momentum:
        state["b"] = step = momentum * state.get("b", 0.0) + step
    return w - lr * step


def notes_adam(w, g, state, t, *, lr, beta1, beta2, eps, corrected, eps_inside, amsgrad=False):
    """The notes' code: m, v averages, optional bias correction, eps inside or outside."""
    state["m"] = beta1 * state.get("m", 0.0) + (1 - beta1) * g
    state["v"] = beta2 * state.get("v", 0.0) + (1 - beta2) * g**2
    v = state["v"]
    if amsgrad:
        v = state["v_max"] = np.maximum(state.get("v_max", 0.0), v)
    m_hat = state["m"] / (1 - beta1**t) if corrected else state["m"]
    v_hat = v / (1 - beta2**t) if corrected else v
    denom = np.sqrt(v_hat + eps) if eps_inside else np.sqrt(v_hat) + eps
    return w - lr * m_hat / denom


def adamw_written_out(w, g, state, t, *, lr, weight_decay, corrected=True, eps_inside=False):
    """Decoupled decay: W = W - lr * weight_decay * W, then the Adam step from the plain g."""
    w = w - lr * weight_decay * w
    options = dict(beta1=0.9, beta2=0.999, eps=1e-8, corrected=corrected, eps_inside=eps_inside)
    return notes_adam(w, g, state, t, lr=lr, **options)


@pytest.mark.parametrize(("beta", "weight_decay"), [(0.9, 0.0), (0.5, 0.0), (0.9, 0.05)])
def test_sgd_ewma_momentum_is_the_notes(beta, weight_decay):
    def with_decay(w, g, state, t):
        return notes_momentum(w, g + weight_decay * w, state, t, lr=0.2, beta=beta)

    assert_follows_formula(
        functools.partial(
            SGD, lr=0.2, momentum=beta, weight_decay=weight_decay, momentum_form="ewma"
        ),
        with_decay,
    )


@pytest.mark.parametrize(("centered", "momentum"), [(False, 0.0), (True, 0.0), (True, 0.5)])
def test_rmsprop_eps_inside_sqrt_is_the_notes(centered, momentum):
    # eps = 1e-4, so that sqrt(s + eps) and sqrt(s) + eps differ visibly (checked below)
    options = dict(lr=1e-2, alpha=0.9, eps=1e-4, centered=centered, momentum=momentum)
    formula = functools.partial(notes_rmsprop, **options)
    assert_follows_formula(functools.partial(RMSprop, eps_inside_sqrt=True, **options), formula)
    with pytest.raises(AssertionError, match="differs"):
        assert_follows_formula(functools.partial(RMSprop, **options), formula, steps=5)


@pytest.mark.parametrize(
    ("corrected", "eps_inside", "amsgrad"),
    [(True, True, False), (False, False, False), (False, True, False), (False, True, True)],
)
def test_adam_notes_variants(corrected, eps_inside, amsgrad):
    options = dict(lr=1e-2, eps=1e-6)
    assert_follows_formula(
        functools.partial(
            Adam, amsgrad=amsgrad, bias_correction=corrected, eps_inside_sqrt=eps_inside, **options
        ),
        functools.partial(
            notes_adam,
            beta1=0.9,
            beta2=0.999,
            corrected=corrected,
            eps_inside=eps_inside,
            amsgrad=amsgrad,
            **options,
        ),
    )


def test_adam_defaults_are_the_formula_too():
    """Torch's rearranged arithmetic is the textbook formula, up to rounding."""
    assert_follows_formula(
        functools.partial(Adam, lr=1e-2),
        functools.partial(
            notes_adam, lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, corrected=True, eps_inside=False
        ),
    )


# --- Nesterov as a look-ahead gradient ---------------------------------------------------------
@pytest.mark.parametrize("shape", [(5,), ()], ids=["vector", "scalar"])
def test_lookahead_nesterov_is_the_notes_formula_on_a_quadratic(shape):
    """v = mu * v - lr * grad(W + mu * v); W = W + v, on 0.5 * W^T A W with grad(W) = A W
    written out. The scalar case is a 0-d parameter, which the engine keeps as a float."""
    rng = np.random.default_rng(3)
    n = int(np.prod(shape))
    basis = rng.standard_normal((n, n))
    A = basis @ basis.T / n + np.eye(n)
    start = rng.standard_normal(shape)
    lr, mu = 0.05, 0.9
    w = Tensor(start, requires_grad=True)
    optimizer = SGD([w], lr=lr, momentum=mu, nesterov=True, nesterov_form="lookahead")

    def closure():
        optimizer.zero_grad()
        flat = w.reshape(n)
        loss = 0.5 * (flat * (flat @ A)).sum()
        loss.backward()
        return loss

    expected, v, scale = start.reshape(n), np.zeros(n), np.abs(start).max()
    for _ in range(FORMULA_STEPS):
        optimizer.step(closure)
        v = mu * v - lr * A @ (expected + mu * v)
        expected = expected + v
        # (the absolute slack is relative to the start: the iterates shrink toward zero)
        np.testing.assert_allclose(w.data.reshape(n), expected, rtol=RTOL, atol=RTOL * scale)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_lookahead_point_follows_torch_nesterov(weight_decay):
    """torch's Nesterov is the look-ahead form written in the variable W + mu * v: the look-ahead
    point of ours must follow torch's parameters."""
    mu = 0.9
    options = dict(lr=0.1, momentum=mu, nesterov=True, weight_decay=weight_decay)
    model, reference = engine_model(), torch_model()
    optimizer = SGD(model.parameters(), nesterov_form="lookahead", **options)
    torch_optimizer = torch.optim.SGD(reference.parameters(), **options)
    for step in range(1, STEPS + 1):
        engine_step(model, optimizer)
        torch_step(reference, torch_optimizer)
        lookahead = [p.data + mu * optimizer.state[p]["velocity"] for p in model.parameters()]
        assert_close(lookahead, torch_arrays(reference), what=f"step {step}")


def test_lookahead_without_closure_raises():
    w = Tensor(np.ones(3), requires_grad=True)
    optimizer = SGD([w], lr=0.1, momentum=0.9, nesterov=True, nesterov_form="lookahead")
    (w * w).sum().backward()
    with pytest.raises(ValueError, match="closure"):
        optimizer.step()
    np.testing.assert_array_equal(w.data, np.ones(3))


def test_lookahead_restores_the_weights_when_the_closure_fails():
    w = Tensor(np.ones(3), requires_grad=True)
    optimizer = SGD([w], lr=0.1, momentum=0.9, nesterov=True, nesterov_form="lookahead")

    def closure():
        optimizer.zero_grad()
        (w * w).sum().backward()

    optimizer.step(closure)
    before = w.data.copy()

    def failing():
        raise RuntimeError("loss exploded")

    with pytest.raises(RuntimeError, match="exploded"):
        optimizer.step(failing)
    np.testing.assert_array_equal(w.data, before)


# --- weight decay, three ways ------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        functools.partial(SGD, lr=0.1),
        functools.partial(SGD, lr=0.1, momentum=0.9),
        functools.partial(SGD, lr=0.1, momentum=0.9, nesterov=True, nesterov_form="lookahead"),
        functools.partial(Adam, lr=1e-2),
        functools.partial(RMSprop, lr=1e-3, centered=True),
    ],
    ids=["sgd", "momentum", "lookahead", "adam", "rmsprop"],
)
def test_coupled_decay_equals_an_l2_term_in_the_loss(make):
    """weight_decay=lambda in the optimizer == lambda/2 * ||W||^2 added to the loss."""
    lam = 0.05
    decayed, penalized = engine_model(), engine_model()
    optimizer, plain = make(decayed.parameters(), weight_decay=lam), make(penalized.parameters())
    for step in range(1, FORMULA_STEPS + 1):
        engine_step(decayed, optimizer)
        engine_step(penalized, plain, l2=lam)
        ours, expected = (
            [p.data for p in decayed.parameters()],
            [p.data for p in penalized.parameters()],
        )
        assert_close(ours, expected, what=f"step {step}")


def test_coupled_decay_is_the_notes_sgd_formula():
    """W <- W - eta * dL0/dW - eta * lambda * W."""
    lam, eta = 0.05, 0.1
    assert_follows_formula(
        functools.partial(SGD, lr=eta, weight_decay=lam),
        lambda w, g, state, t: w - eta * g - eta * lam * w,
    )


@pytest.mark.parametrize(("corrected", "eps_inside"), [(True, False), (False, True)])
def test_adamw_is_decoupled_decay_then_adam(corrected, eps_inside):
    lam, lr = 0.1, 1e-2
    options = dict(lr=lr, weight_decay=lam)
    variant = dict(bias_correction=corrected, eps_inside_sqrt=eps_inside)
    formula = functools.partial(
        adamw_written_out, corrected=corrected, eps_inside=eps_inside, **options
    )
    assert_follows_formula(functools.partial(AdamW, **options, **variant), formula)
    # ... and not Adam's coupled decay, whose decay the 1 / sqrt(v) scaling changes
    with pytest.raises(AssertionError, match="differs"):
        assert_follows_formula(functools.partial(Adam, **options, **variant), formula, steps=20)


# --- parameter groups, zero_grad, saving -------------------------------------------------------
def test_no_decay_on_biases_and_norm_parameters_is_one_line():
    """Two groups from named_parameters(): matrices decay, vectors (biases, gamma, beta) do not;
    each group also has its own lr. Torch, given the same groups, agrees step for step."""
    model, reference = engine_model(), torch_model()

    def groups(named):
        return [
            {"params": [p for _, p in named if p.ndim > 1], "lr": 0.02},
            {"params": [p for _, p in named if p.ndim <= 1], "weight_decay": 0.0},
        ]

    optimizer = AdamW(groups(list(model.named_parameters())), lr=1e-2, weight_decay=0.1)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    assert [len(g["params"]) for g in optimizer.param_groups] == [2, 3]
    torch_optimizer = torch.optim.AdamW(
        groups(list(reference.named_parameters())), lr=1e-2, weight_decay=0.1
    )
    for step in range(1, STEPS + 1):
        engine_step(model, optimizer)
        torch_step(reference, torch_optimizer)
        assert_close(
            [p.data for p in model.parameters()], torch_arrays(reference), what=f"step {step}"
        )


def test_group_weight_decay_zero_matches_no_decay():
    """The undecayed group moves exactly as with weight_decay=0 everywhere (first step)."""
    model, plain = engine_model(), engine_model()
    named = list(model.named_parameters())
    decayed = [p for _, p in named if p.ndim > 1]
    optimizer = SGD(
        [
            {"params": decayed},
            {"params": [p for _, p in named if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=0.1,
        weight_decay=0.5,
    )
    engine_step(model, optimizer)
    engine_step(plain, SGD(plain.parameters(), lr=0.1))
    for p, q in zip(model.parameters(), plain.parameters(), strict=True):
        if p.ndim <= 1:
            np.testing.assert_array_equal(p.data, q.data)
        else:
            assert not np.array_equal(p.data, q.data)


def test_zero_grad_and_parameters_without_gradients():
    model = engine_model()
    optimizer = Adam(model.parameters(), lr=0.1)
    engine_loss(model).backward()
    assert all(p.grad is not None for p in model.parameters())
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    before = [p.data.copy() for p in model.parameters()]
    optimizer.step()  # no gradients: nothing moves, no state appears (as in torch)
    assert optimizer.state == {}
    for p, value in zip(model.parameters(), before, strict=True):
        np.testing.assert_array_equal(p.data, value)
    first = model.parameters()[0]
    first.grad = np.ones(first.shape)
    optimizer.step()
    assert list(optimizer.state) == [first]
    assert optimizer.state[first]["step"] == 1


SAVE_CASES = [
    functools.partial(SGD, lr=0.1, momentum=0.9, nesterov=True),
    functools.partial(SGD, lr=0.1, momentum=0.9, nesterov=True, nesterov_form="lookahead"),
    functools.partial(SGD, lr=0.1, momentum=0.9, momentum_form="ewma"),
    functools.partial(Adagrad, lr=0.1, lr_decay=0.01),
    functools.partial(RMSprop, centered=True, momentum=0.5),
    functools.partial(Adadelta),
    functools.partial(Adam, lr=1e-2, amsgrad=True),
    functools.partial(AdamW, lr=1e-2),
    functools.partial(NAdam, lr=1e-2),
]


@pytest.mark.parametrize(
    "make", SAVE_CASES, ids=lambda m: f"{m.func.__name__}-{case_id(m.keywords)}"
)
def test_state_dict_restores_a_run_bitwise(make):
    """Train 50 steps, save model + optimizer, train 50 more; fresh objects restored from the
    save train the same 50 steps to the identical bits."""
    model = engine_model()
    optimizer = make(
        [{"params": model.parameters()[:2]}, {"params": model.parameters()[2:], "lr": 0.05}]
    )
    for _ in range(50):
        engine_step(model, optimizer)
    saved_model, saved_optimizer = model.state_dict(), optimizer.state_dict()
    for _ in range(50):
        engine_step(model, optimizer)

    fresh = engine_model()
    restored = make([{"params": fresh.parameters()[:2]}, {"params": fresh.parameters()[2:]}])
    fresh.load_state_dict(saved_model)
    restored.load_state_dict(saved_optimizer)
    assert restored.param_groups[1]["lr"] == 0.05
    for _ in range(50):
        engine_step(fresh, restored)
    for p, q in zip(model.parameters(), fresh.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)


# --- bad hyperparameters -----------------------------------------------------------------------
def one_param():
    return [Tensor(np.zeros(2), requires_grad=True)]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SGD(one_param(), lr=-0.1), r"lr: -0\.1"),
        (lambda: Adam(one_param(), lr=-1), r"lr: -1"),
        (lambda: SGD(one_param(), momentum=-0.5), r"momentum: -0\.5"),
        (lambda: RMSprop(one_param(), momentum=-0.5), r"momentum: -0\.5"),
        (lambda: SGD(one_param(), nesterov=True), r"Nesterov.*momentum=0"),
        (lambda: SGD(one_param(), momentum=0.9, dampening=0.1, nesterov=True), r"dampening=0\.1"),
        (lambda: SGD(one_param(), weight_decay=-1e-4), r"weight_decay: -0\.0001"),
        (lambda: SGD(one_param(), momentum_form="notes"), r"momentum_form: 'notes'.*'ewma'"),
        (lambda: SGD(one_param(), momentum=1.0, momentum_form="ewma"), r"momentum: 1\.0"),
        (lambda: SGD(one_param(), momentum=0.9, nesterov_form="lookahead"), r"nesterov=True"),
        (lambda: Adam(one_param(), betas=(1.0, 0.999)), r"betas\[0\]: 1\.0"),
        (lambda: Adam(one_param(), betas=(0.9, -0.1)), r"betas\[1\]: -0\.1"),
        (lambda: NAdam(one_param(), betas=(0.9, 1.5)), r"betas\[1\]: 1\.5"),
        (lambda: AdamW(one_param(), betas=(0.9,)), r"betas.*\(0\.9,\)"),
        (lambda: Adam(one_param(), eps=-1e-8), r"eps: -1e-08"),
        (lambda: Adagrad(one_param(), eps=-1.0), r"eps: -1\.0"),
        (lambda: Adam(one_param(), amsgrad="yes"), r"amsgrad.*'yes'"),
        (lambda: Adadelta(one_param(), rho=1.5), r"rho: 1\.5"),
        (lambda: Adadelta(one_param(), rho=-0.1), r"rho: -0\.1"),
        (lambda: RMSprop(one_param(), alpha=-0.1), r"alpha: -0\.1"),
        (lambda: Adagrad(one_param(), lr_decay=-1.0), r"lr_decay: -1\.0"),
        (lambda: Adagrad(one_param(), initial_accumulator_value=-1.0), r"initial_accumulator"),
        (lambda: NAdam(one_param(), momentum_decay=-1.0), r"momentum_decay: -1\.0"),
        (lambda: SGD([{"params": one_param(), "lr": -2.0}], lr=0.1), r"lr: -2\.0"),
        (lambda: Adam(one_param(), lr=float("nan")), r"lr.*nan"),
    ],
)
def test_bad_hyperparameters_name_the_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()
