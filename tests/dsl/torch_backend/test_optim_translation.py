"""Engine optimizers against their torch.optim translations, step by step (float64).

Both sides get the same gradients (computed in numpy from the engine's weights) on a small
problem with two parameter groups, transposed "Linear weights", scalar parameters and a
parameter that has a gradient only every other step; torch.optim is the independent truth.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from topograd.dsl.torch_backend import UnsupportedError
from topograd.dsl.torch_backend.optim import (
    copy_optimizer_state_to_engine,
    copy_optimizer_state_to_torch,
    to_torch_optimizer,
)

from topograd import optim
from topograd.nn import Parameter

SHAPES = [(3, 4), (4,), (), (5, 5), (2, 3, 2), ()]
TRANSPOSED = {0, 3}  # engine (in, out) weights that torch stores as (out, in)
SOMETIMES = 5  # the parameter with a gradient on even steps only
STEPS = 50
RTOL = 1e-12

CASES = {
    "sgd": (optim.SGD, {"lr": 0.05}),
    "sgd-momentum": (optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    "sgd-dampening-wd": (
        optim.SGD,
        {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01},
    ),
    "sgd-nesterov-wd": (
        optim.SGD,
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    ),
    "adam": (optim.Adam, {"lr": 0.01}),
    "adam-amsgrad-wd": (optim.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01}),
    "adam-decoupled": (
        optim.Adam,
        {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    ),
    "adam-betas-eps": (optim.Adam, {"lr": 0.02, "betas": (0.5, 0.9), "eps": 1e-6}),
    "adamw": (optim.AdamW, {"lr": 0.01}),
    "adamw-amsgrad": (optim.AdamW, {"lr": 0.01, "weight_decay": 0.05, "amsgrad": True}),
    "nadam": (optim.NAdam, {"lr": 0.01}),
    "nadam-wd-momentum-decay": (
        optim.NAdam,
        {"lr": 0.01, "weight_decay": 0.01, "momentum_decay": 0.01},
    ),
    "nadam-decoupled": (
        optim.NAdam,
        {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    ),
    "rmsprop": (optim.RMSprop, {"lr": 0.01}),
    "rmsprop-momentum-wd": (
        optim.RMSprop,
        {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01},
    ),
    "rmsprop-centered": (optim.RMSprop, {"lr": 0.01, "centered": True}),
    "rmsprop-centered-momentum": (
        optim.RMSprop,
        {"lr": 0.01, "centered": True, "momentum": 0.5, "alpha": 0.9},
    ),
    "adagrad": (optim.Adagrad, {"lr": 0.1}),
    "adagrad-decay-init-wd": (
        optim.Adagrad,
        {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "weight_decay": 0.01},
    ),
    "adadelta": (optim.Adadelta, {}),
    "adadelta-rho-wd": (optim.Adadelta, {"lr": 0.5, "rho": 0.5, "eps": 1e-5, "weight_decay": 0.01}),
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors: torch's thread pool only costs time (and fights numpy's)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the problem -----------------------------------------------------------------------------
def make_engine(case):
    """Fresh engine parameters (scalars as Python floats, like engine.nn.scalar) and the
    optimizer: group 0 holds 0, 3, 4, 5; group 1 (no weight decay, half the lr) holds 1, 2."""
    rng = np.random.default_rng(0)
    params = [
        Parameter(float(rng.normal())) if shape == () else Parameter(rng.normal(size=shape))
        for shape in SHAPES
    ]
    cls, options = CASES[case]
    lr = options.get("lr", 1.0)
    groups = [
        {"params": [params[0], params[3], params[4], params[5]]},
        {"params": [params[1], params[2]], "weight_decay": 0.0, "lr": lr / 2},
    ]
    return params, cls(groups, **options)


def make_torch(engine_params):
    """Torch parameters holding the engine weights (transposed where torch's layout is)."""
    return [
        torch.nn.Parameter(torch.tensor(to_torch_layout(i, p.data), dtype=torch.float64))
        for i, p in enumerate(engine_params)
    ]


def to_torch_layout(i, array):
    return np.asarray(array).T if i in TRANSPOSED else np.asarray(array)


def engine_weights(params):
    return [np.asarray(p.data, dtype=np.float64) for p in params]


def torch_weights(params):
    return [to_torch_layout(i, p.detach().numpy()) for i, p in enumerate(params)]


SCALES = [
    np.random.default_rng(1 + i).uniform(0.5, 2.0, size=shape) for i, shape in enumerate(SHAPES)
]


def gradients(weights, step):
    """A nonlinear gradient of the weights plus noise that depends on the step (None for the
    parameter that skips odd steps)."""
    noise = np.random.default_rng(1000 + step)
    grads = []
    for i, (w, scale) in enumerate(zip(weights, SCALES)):
        if i == SOMETIMES and step % 2:
            grads.append(None)
            continue
        grads.append(scale * w + np.sin(3 * w) + 0.1 * noise.normal(size=np.shape(w)))
    return grads


def feed(engine_params, torch_params, grads):
    for i, (p, q, g) in enumerate(zip(engine_params, torch_params, grads)):
        p.grad = None if g is None else np.array(g)
        q.grad = None if g is None else torch.tensor(to_torch_layout(i, g), dtype=torch.float64)


def step_both(engine_params, engine_opt, torch_params, torch_opt, step):
    feed(engine_params, torch_params, gradients(engine_weights(engine_params), step))
    engine_opt.step()
    torch_opt.step()
    engine_opt.zero_grad()
    torch_opt.zero_grad()


def step_engine(engine_params, engine_opt, step):
    for p, g in zip(engine_params, gradients(engine_weights(engine_params), step)):
        p.grad = None if g is None else np.array(g)
    engine_opt.step()
    engine_opt.zero_grad()


def step_torch(torch_params, torch_opt, step):
    grads = gradients(torch_weights(torch_params), step)
    for i, (q, g) in enumerate(zip(torch_params, grads)):
        q.grad = None if g is None else torch.tensor(to_torch_layout(i, g), dtype=torch.float64)
    torch_opt.step()
    torch_opt.zero_grad()


def assert_same_weights(engine_params, torch_params, step):
    """Per parameter: max |engine - torch| <= RTOL * max |torch| (tests/engine/
    test_optimizers.py's measure: torch's CPU kernels fuse multiply-adds, so the two agree to
    about 1e-14, not bit for bit)."""
    for i, (a, b) in enumerate(zip(engine_weights(engine_params), torch_weights(torch_params))):
        error = np.max(np.abs(a - b)) / np.max(np.abs(b))
        assert error <= RTOL, f"parameter {i} differs by {error:.1e} (relative) after step {step}"


def translate(engine_params, engine_opt):
    torch_params = make_torch(engine_params)
    torch_opt = to_torch_optimizer(engine_opt, engine_params, torch_params, transposed=TRANSPOSED)
    return torch_params, torch_opt


def assert_same_state(left, right):
    """Two engine state_dicts hold the same values and types (arrays equal exactly)."""
    assert left["param_groups"] == right["param_groups"]
    assert sorted(left["state"]) == sorted(right["state"])
    for position, entry in left["state"].items():
        other = right["state"][position]
        assert sorted(entry) == sorted(other), position
        for key, value in entry.items():
            assert type(value) is type(other[key]), (position, key)
            if isinstance(value, np.ndarray):
                assert value.dtype == other[key].dtype and value.shape == other[key].shape
                np.testing.assert_array_equal(value, other[key])
            else:
                assert value == other[key], (position, key)


# --- trajectories ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_trajectory_from_the_start(case):
    engine_params, engine_opt = make_engine(case)
    torch_params, torch_opt = translate(engine_params, engine_opt)
    assert type(torch_opt).__name__ == type(engine_opt).__name__
    for step in range(STEPS):
        step_both(engine_params, engine_opt, torch_params, torch_opt, step)
        assert_same_weights(engine_params, torch_params, step)


@pytest.mark.parametrize("case", sorted(CASES))
def test_state_round_trip_and_resume_on_torch(case):
    """Engine for 20 steps, then its state to torch and back (equal), then torch and the
    engine go on in lockstep from the translated state."""
    engine_params, engine_opt = make_engine(case)
    for step in range(20):
        step_engine(engine_params, engine_opt, step)
    torch_params, torch_opt = translate(engine_params, engine_opt)

    copies, copy_opt = make_engine(case)
    for p, w in zip(copies, engine_weights(engine_params)):
        p.data = w
    copy_optimizer_state_to_engine(torch_opt, copy_opt, copies, torch_params, transposed=TRANSPOSED)
    assert_same_state(engine_opt.state_dict(), copy_opt.state_dict())

    for step in range(20, STEPS):
        step_both(engine_params, engine_opt, torch_params, torch_opt, step)
        assert_same_weights(engine_params, torch_params, step)


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_on_the_engine_after_torch(case):
    """Torch for 20 steps, then weights and state into a fresh engine optimizer, then both
    go on in lockstep (the torch run itself is the reference)."""
    engine_params, engine_opt = make_engine(case)
    torch_params, torch_opt = translate(engine_params, engine_opt)
    for step in range(20):
        step_torch(torch_params, torch_opt, step)
    for p, w in zip(engine_params, torch_weights(torch_params)):
        p.data = w
    copy_optimizer_state_to_engine(
        torch_opt, engine_opt, engine_params, torch_params, transposed=TRANSPOSED
    )
    assert {s["step"] for s in engine_opt.state.values()} == {20, 10}
    for step in range(20, STEPS):
        step_both(engine_params, engine_opt, torch_params, torch_opt, step)
        assert_same_weights(engine_params, torch_params, step)


def test_state_copy_to_torch_onto_an_existing_optimizer():
    """copy_optimizer_state_to_torch replaces state and hyperparameters (lr set by a schedule)."""
    engine_params, engine_opt = make_engine("adam-amsgrad-wd")
    torch_params, torch_opt = translate(engine_params, engine_opt)
    for step in range(5):
        step_engine(engine_params, engine_opt, step)
    for group in engine_opt.param_groups:
        group["lr"] *= 0.5
    with torch.no_grad():
        for i, (q, w) in enumerate(zip(torch_params, engine_weights(engine_params))):
            q.copy_(torch.tensor(to_torch_layout(i, w)))
    copy_optimizer_state_to_torch(
        engine_opt, torch_opt, engine_params, torch_params, transposed=TRANSPOSED
    )
    assert [g["lr"] for g in torch_opt.param_groups] == [g["lr"] for g in engine_opt.param_groups]
    for step in range(5, 15):
        step_both(engine_params, engine_opt, torch_params, torch_opt, step)
        assert_same_weights(engine_params, torch_params, step)


# --- what has no counterpart, and mistakes -------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "options", "named"),
    [
        (optim.SGD, {"momentum": 0.9, "momentum_form": "ewma"}, "momentum_form"),
        (
            optim.SGD,
            {"momentum": 0.9, "nesterov": True, "nesterov_form": "lookahead"},
            "nesterov_form",
        ),
        (optim.Adam, {"bias_correction": False}, "bias_correction"),
        (optim.Adam, {"eps_inside_sqrt": True}, "eps_inside_sqrt"),
        (optim.AdamW, {"bias_correction": False}, "bias_correction"),
        (optim.RMSprop, {"eps_inside_sqrt": True}, "eps_inside_sqrt"),
    ],
)
def test_options_without_a_counterpart_are_named(cls, options, named):
    params = [Parameter(np.ones(3))]
    with pytest.raises(UnsupportedError, match=named):
        to_torch_optimizer(cls(params, **options), params, make_torch(params))


def test_an_unsupported_option_in_a_second_group_is_named():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(3))
    adam = optim.Adam([{"params": [a]}, {"params": [b], "bias_correction": False}])
    with pytest.raises(UnsupportedError, match="adam's bias_correction=False"):
        to_torch_optimizer(adam, [a, b], make_torch([a, b]))


def test_mismatched_parameter_lists_are_refused():
    engine_params, engine_opt = make_engine("adam")
    torch_params = make_torch(engine_params)
    with pytest.raises(ValueError, match="one to one"):
        to_torch_optimizer(engine_opt, engine_params, torch_params[:-1], transposed=TRANSPOSED)
    with pytest.raises(ValueError, match="missing from transposed"):
        to_torch_optimizer(engine_opt, engine_params, torch_params, transposed={3})
    with pytest.raises(ValueError, match="outside"):
        to_torch_optimizer(engine_opt, engine_params, torch_params, transposed={0, 3, 6})
    with pytest.raises(ValueError, match="not among"):
        to_torch_optimizer(engine_opt, engine_params[:-1], torch_params[:-1], transposed=TRANSPOSED)


def test_adagrad_takes_each_groups_initial_accumulator_value():
    """torch fills Adagrad's sums from the constructor's value; the translation from each
    group's, as the engine does."""
    a, b = Parameter(np.ones(3)), Parameter(np.full(2, -1.0))
    adagrad = optim.Adagrad([{"params": [a]}, {"params": [b], "initial_accumulator_value": 2.0}])
    torch_params = make_torch([a, b])
    torch_adagrad = to_torch_optimizer(adagrad, [a, b], torch_params)
    for step in range(10):
        for p, q in zip((a, b), torch_params):
            g = np.sin(3 * p.data) + 0.1 * step
            p.grad, q.grad = g, torch.tensor(g)
        adagrad.step()
        torch_adagrad.step()
    for p, q in zip((a, b), torch_params):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=RTOL)


def test_the_model_files_decay_weights_groups_with_a_schedule():
    """dsl.build's optimizer (`decay weights`: weights first, then the rest without decay) and
    a warm-up schedule, translated together: the lr the schedule writes drives both."""
    from topograd.dsl.build import build_optimizer, build_schedule
    from topograd.dsl.spec import Entry
    from topograd.dsl.torch_backend.schedules import to_torch_schedule

    from topograd import nn

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 4))
    adam = build_optimizer(Entry("adam", {"lr": 0.01, "weight_decay": 0.1}), model, decay="weights")
    schedule = build_schedule(
        Entry("warmup", {"warmup_steps": 5, "after": Entry("cosine", {"T_max": 30})}), adam
    )
    engine_params = model.parameters()
    transposed = {0, 4}  # the two Linear weights (the second one is square)
    torch_params = [
        torch.nn.Parameter(torch.tensor(p.data.T if i in transposed else p.data))
        for i, p in enumerate(engine_params)
    ]
    torch_adam = to_torch_optimizer(adam, engine_params, torch_params, transposed=transposed)
    scheduler = to_torch_schedule(schedule, torch_adam)
    assert [len(g["params"]) for g in torch_adam.param_groups] == [2, 4]
    assert [g["weight_decay"] for g in torch_adam.param_groups] == [0.1, 0.0]
    for step in range(40):
        for i, (p, q) in enumerate(zip(engine_params, torch_params)):
            g = np.sin(3 * p.data) + p.data + 0.01 * step
            p.grad, q.grad = g, torch.tensor(g.T if i in transposed else g)
        adam.step()
        torch_adam.step()
        schedule.step()
        scheduler.step()
        for i, (p, q) in enumerate(zip(engine_params, torch_params)):
            theirs = q.detach().numpy()
            theirs = theirs.T if i in transposed else theirs
            assert np.max(np.abs(p.data - theirs)) <= RTOL * np.max(np.abs(theirs)), (i, step)
