"""Learning-rate schedules against torch.optim.lr_scheduler and the notes' formulas.

Every schedule with a PyTorch twin produces, over 1000 steps and two parameter groups, the
same lr sequence as torch's, compared with exact equality: each one does torch's float64
arithmetic (the recursive update where torch's is recursive), so there is no rounding gap to
allow for. The closed forms (`lr_at`) are checked against formulas written out here, to
1e-12 relative: the recursive schedules drift from their closed form by rounding, up to 3e-13
for cosine annealing near its minimum.
"""

import math
import warnings

import numpy as np
import pytest

from topograd import Tensor
from topograd.optim import SGD
from topograd.optim.schedules import (
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    CyclicLR,
    ExponentialLR,
    InverseTimeLR,
    LinearWarmup,
    LRGroups,
    MultiStepLR,
    StepLR,
)

torch = pytest.importorskip("torch")
TS = torch.optim.lr_scheduler

STEPS = 1000
LRS = (0.1, 0.03)
CLOSED_FORM_RTOL = 1e-12


# --- helpers ---------------------------------------------------------------------------------
def engine_optimizer(lrs=LRS):
    groups = [{"params": [Tensor(np.zeros(2), requires_grad=True)], "lr": lr} for lr in lrs]
    return SGD(groups)


def torch_optimizer(lrs=LRS):
    groups = [
        {"params": [torch.zeros(2, dtype=torch.float64, requires_grad=True)], "lr": lr}
        for lr in lrs
    ]
    return torch.optim.SGD(groups)


def run(scheduler, optimizer, steps=STEPS):
    """The lrs after construction and after each of `steps` steps: shape (steps + 1, groups).

    The optimizer is not stepped: its parameters have no gradients, and torch's first
    `optimizer.step()` costs seconds of lazy imports.
    """
    lrs = [scheduler.get_last_lr()]
    for _ in range(steps):
        scheduler.step()
        lrs.append(scheduler.get_last_lr())
        assert [g["lr"] for g in optimizer.param_groups] == lrs[-1]
    return np.array(lrs, dtype=np.float64)


def engine_sequence(make, lrs=LRS, steps=STEPS):
    optimizer = engine_optimizer(lrs)
    return run(make(optimizer), optimizer, steps)


def torch_sequence(make, lrs=LRS, steps=STEPS):
    optimizer = torch_optimizer(lrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that optimizer.step() was not called
        return run(make(optimizer), optimizer, steps)


def closed_forms(scheduler, steps=STEPS):
    return np.array([scheduler.lr_at(t) for t in range(steps + 1)])


# --- the table: (engine factory, torch factory) ----------------------------------------------
def cyclic_torch(**kwargs):
    return lambda o: TS.CyclicLR(o, cycle_momentum=False, **kwargs)


def warmup_torch(warmup_steps, start_factor, after):
    def make(o):
        ramp = TS.LinearLR(o, start_factor, 1.0, total_iters=warmup_steps)
        return TS.SequentialLR(o, [ramp, after(o)], milestones=[warmup_steps])

    return make


EXACT_TWINS = {
    "step": (lambda o: StepLR(o, 7, gamma=0.9), lambda o: TS.StepLR(o, 7, gamma=0.9)),
    "step_default_gamma": (lambda o: StepLR(o, 300), lambda o: TS.StepLR(o, 300)),
    "multistep": (
        lambda o: MultiStepLR(o, [30, 80, 80, 500], gamma=0.5),
        lambda o: TS.MultiStepLR(o, [30, 80, 80, 500], gamma=0.5),
    ),
    "exponential": (lambda o: ExponentialLR(o, 0.995), lambda o: TS.ExponentialLR(o, 0.995)),
    "cosine": (
        lambda o: CosineAnnealingLR(o, T_max=100, eta_min=1e-3),
        lambda o: TS.CosineAnnealingLR(o, T_max=100, eta_min=1e-3),
    ),
    "cosine_odd_period": (
        lambda o: CosineAnnealingLR(o, T_max=37),
        lambda o: TS.CosineAnnealingLR(o, T_max=37),
    ),
    "cosine_one_period": (
        lambda o: CosineAnnealingLR(o, T_max=STEPS),
        lambda o: TS.CosineAnnealingLR(o, T_max=STEPS),
    ),
    "sgdr": (
        lambda o: CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2, eta_min=1e-3),
        lambda o: TS.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2, eta_min=1e-3),
    ),
    "sgdr_fixed_period": (
        lambda o: CosineAnnealingWarmRestarts(o, T_0=7),
        lambda o: TS.CosineAnnealingWarmRestarts(o, T_0=7),
    ),
    "cyclic": (
        lambda o: CyclicLR(o, 0.01, 0.1, step_size_up=10),
        cyclic_torch(base_lr=0.01, max_lr=0.1, step_size_up=10),
    ),
    "cyclic2_asymmetric_per_group": (
        lambda o: CyclicLR(o, [0.01, 0.002], [0.1, 0.05], 10, 23, mode="triangular2"),
        cyclic_torch(
            base_lr=[0.01, 0.002],
            max_lr=[0.1, 0.05],
            step_size_up=10,
            step_size_down=23,
            mode="triangular2",
        ),
    ),
}

WARMUP_TWINS = {
    "warmup_cosine": (
        lambda o: LinearWarmup(o, 10, after=CosineAnnealingLR(o, T_max=200), start_factor=0.1),
        warmup_torch(10, 0.1, lambda o: TS.CosineAnnealingLR(o, T_max=200)),
    ),
    "warmup_step": (
        lambda o: LinearWarmup(o, 25, after=StepLR(o, 100, 0.5), start_factor=0.01),
        warmup_torch(25, 0.01, lambda o: TS.StepLR(o, 100, 0.5)),
    ),
    "warmup_exponential": (
        lambda o: LinearWarmup(o, 5, after=ExponentialLR(o, 0.99), start_factor=0.5),
        warmup_torch(5, 0.5, lambda o: TS.ExponentialLR(o, 0.99)),
    ),
}


@pytest.mark.parametrize("name", sorted(EXACT_TWINS))
def test_sequence_equals_torch_exactly(name):
    ours, theirs = EXACT_TWINS[name]
    np.testing.assert_array_equal(engine_sequence(ours), torch_sequence(theirs))


@pytest.mark.parametrize("name", sorted(WARMUP_TWINS))
def test_warmup_equals_torch_linear_then_sequential(name):
    # The ramp is the closed form, torch's LinearLR a running product: a few ulps apart.
    ours, theirs = WARMUP_TWINS[name]
    np.testing.assert_allclose(engine_sequence(ours), torch_sequence(theirs), rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", sorted(EXACT_TWINS) + sorted(WARMUP_TWINS))
def test_closed_form_matches_the_stepped_sequence(name):
    ours = {**EXACT_TWINS, **WARMUP_TWINS}[name][0]
    optimizer = engine_optimizer()
    scheduler = ours(optimizer)
    expected = closed_forms(scheduler)
    before = [dict(g) for g in optimizer.param_groups]
    closed_forms(scheduler)  # lr_at is pure: the optimizer is untouched
    assert [dict(g) for g in optimizer.param_groups] == before
    np.testing.assert_allclose(run(scheduler, optimizer), expected, rtol=CLOSED_FORM_RTOL, atol=0)


# --- closed forms against the formulas, written out ------------------------------------------
T = np.arange(STEPS + 1)


def lr_curve(scheduler):
    return closed_forms(scheduler)[:, 0]


def test_step_and_multistep_formulas():
    np.testing.assert_allclose(
        lr_curve(StepLR(LRGroups(0.1), 30, gamma=0.5)), 0.1 * 0.5 ** (T // 30), rtol=1e-15
    )
    milestones = np.array([30, 80, 80, 500])
    drops = (T[:, None] >= milestones).sum(axis=1)
    np.testing.assert_allclose(
        lr_curve(MultiStepLR(LRGroups(0.1), list(milestones), 0.5)), 0.1 * 0.5**drops, rtol=1e-15
    )


def test_exponential_decay_in_the_notes_form():
    """a0 * exp(-k t), built as gamma = exp(-k): stepped and closed form both."""
    a0, k = 0.1, 0.004
    expected = a0 * np.exp(-k * T)
    groups = LRGroups(a0)
    scheduler = ExponentialLR.from_decay_rate(groups, k)
    assert scheduler.gamma == math.exp(-k)
    np.testing.assert_allclose(lr_curve(scheduler), expected, rtol=CLOSED_FORM_RTOL)
    np.testing.assert_allclose(run(scheduler, groups)[:, 0], expected, rtol=CLOSED_FORM_RTOL)


def test_inverse_time_decay():
    """The notes' 1/t decay a0 / (1 + k t); no torch counterpart."""
    a0, k = 0.1, 0.05
    expected = a0 / (1 + k * T)
    optimizer = engine_optimizer((a0,))
    scheduler = InverseTimeLR(optimizer, decay_rate=k)
    np.testing.assert_allclose(lr_curve(scheduler), expected, rtol=1e-15)
    np.testing.assert_allclose(run(scheduler, optimizer)[:, 0], expected, rtol=1e-15)
    assert lr_curve(InverseTimeLR(LRGroups(a0), 0.0)).tolist() == [a0] * (STEPS + 1)


def test_cosine_formula_and_its_period():
    base, eta_min, t_max = 0.1, 1e-3, 100
    expected = eta_min + (base - eta_min) * (1 + np.cos(np.pi * T / t_max)) / 2
    curve = lr_curve(CosineAnnealingLR(LRGroups(base), t_max, eta_min))
    np.testing.assert_allclose(curve, expected, rtol=1e-13)
    assert curve[t_max] == pytest.approx(eta_min, rel=1e-12)
    assert curve[2 * t_max] == pytest.approx(base, rel=1e-12)  # torch's: it climbs back


def sgdr_formula(t, base, t0, t_mult, eta_min, max_decay):
    """Walk the cycles by hand: cycle i lasts t0 * t_mult**i steps."""
    cycle, length = 0, t0
    while t >= length:
        t, cycle, length = t - length, cycle + 1, length * t_mult
    height = (base - eta_min) * max_decay**cycle
    return eta_min + height * (1 + math.cos(math.pi * t / length)) / 2


@pytest.mark.parametrize(("t0", "t_mult", "max_decay"), [(10, 2, 0.5), (7, 1, 0.8), (3, 3, 1.0)])
def test_sgdr_with_decaying_peaks(t0, t_mult, max_decay):
    base, eta_min = 0.1, 1e-3
    groups = LRGroups(base)
    scheduler = CosineAnnealingWarmRestarts(groups, t0, t_mult, eta_min, max_decay)
    expected = [sgdr_formula(t, base, t0, t_mult, eta_min, max_decay) for t in T]
    np.testing.assert_allclose(lr_curve(scheduler), expected, rtol=1e-15)
    np.testing.assert_allclose(run(scheduler, groups)[:, 0], expected, rtol=1e-15)
    restarts = np.cumsum([t0 * t_mult**i for i in range(4)])
    peaks = [scheduler.lr_at(int(t))[0] for t in restarts]
    heights = (np.array(peaks) - eta_min) / (base - eta_min)
    np.testing.assert_allclose(heights, max_decay ** np.arange(1, 5), rtol=1e-14)


def test_cyclic_triangles():
    base, peak, up, down = 0.01, 0.1, 10, 30
    curve = lr_curve(CyclicLR(LRGroups(1.0), base, peak, up, down))
    position = T % (up + down)
    rising = np.minimum(position / up, 1.0)
    falling = np.clip((up + down - position) / down, 0.0, 1.0)
    expected = base + (peak - base) * np.where(position <= up, rising, falling)
    # torch's arithmetic, 1 + t / total - cycle, cancels: about 3e-14 relative by t = 600
    np.testing.assert_allclose(curve, expected, rtol=CLOSED_FORM_RTOL)
    halved = lr_curve(CyclicLR(LRGroups(1.0), base, peak, up, down, mode="triangular2"))
    cycle = T // (up + down)
    np.testing.assert_allclose(
        halved - base, (expected - base) / 2.0**cycle, rtol=1e-12, atol=1e-17
    )


# --- warm-up in front of any schedule -------------------------------------------------------
AFTERS = {
    "none": lambda g: None,
    "step": lambda g: StepLR(g, 50, 0.5),
    "multistep": lambda g: MultiStepLR(g, [100, 300]),
    "exponential": lambda g: ExponentialLR(g, 0.99),
    "inverse_time": lambda g: InverseTimeLR(g, 0.01),
    "cosine": lambda g: CosineAnnealingLR(g, 300, 1e-4),
    "sgdr": lambda g: CosineAnnealingWarmRestarts(g, 20, 2, 1e-4, max_decay=0.7),
    "cyclic": lambda g: CyclicLR(g, 0.01, 0.2, 15),
}


@pytest.mark.parametrize("name", sorted(AFTERS))
def test_warmup_ramps_then_runs_any_schedule_shifted(name):
    warmup, start_factor = 40, 0.2
    groups = LRGroups(0.1, 0.03)
    scheduler = LinearWarmup(groups, warmup, after=AFTERS[name](groups), start_factor=start_factor)
    alone = AFTERS[name](LRGroups(0.1, 0.03))
    stepped = run(scheduler, groups)
    targets = np.array(alone.lr_at(0) if alone else [0.1, 0.03])
    ramp = targets * (start_factor + (1 - start_factor) * T[:warmup, None] / warmup)
    np.testing.assert_allclose(stepped[:warmup], ramp, rtol=1e-15)
    rest = [alone.lr_at(t - warmup) if alone else targets for t in T[warmup:]]
    np.testing.assert_allclose(stepped[warmup:], rest, rtol=CLOSED_FORM_RTOL)
    np.testing.assert_allclose(closed_forms(scheduler), stepped, rtol=CLOSED_FORM_RTOL)


def test_warmup_defaults_start_at_zero_and_zero_steps_is_the_schedule_itself():
    groups = LRGroups(0.1)
    warm = LinearWarmup(groups, 4)
    assert [warm.lr_at(t)[0] for t in range(6)] == pytest.approx([0, 0.025, 0.05, 0.075, 0.1, 0.1])
    groups = LRGroups(0.1)
    none = LinearWarmup(groups, 0, after=ExponentialLR(groups, 0.5))
    assert run(none, groups, 3)[:, 0].tolist() == [0.1, 0.05, 0.025, 0.0125]


def test_warmup_checks_its_after_schedule():
    groups, other = LRGroups(0.1), LRGroups(0.1)
    with pytest.raises(ValueError, match="same optimizer"):
        LinearWarmup(groups, 5, after=StepLR(other, 10))
    stepped = StepLR(groups, 10)
    stepped.step()
    with pytest.raises(ValueError, match="last_epoch 1"):
        LinearWarmup(groups, 5, after=stepped)
    with pytest.raises(TypeError, match="scheduler"):
        LinearWarmup(groups, 5, after=0.1)


# --- the protocol ----------------------------------------------------------------------------
def test_initial_lr_is_recorded_and_reused_like_torch():
    optimizer = engine_optimizer()
    first = ExponentialLR(optimizer, 0.5)
    first.step()
    assert [g["initial_lr"] for g in optimizer.param_groups] == list(LRS)
    assert [g["lr"] for g in optimizer.param_groups] == [0.05, 0.015]
    second = StepLR(optimizer, 10)  # its base is initial_lr, not the decayed lr
    assert second.base_lrs == list(LRS)
    assert second.last_epoch == 0
    assert second.lr_at(10) == pytest.approx([0.01, 0.003])


def test_get_last_lr_is_a_copy():
    scheduler = StepLR(LRGroups(0.1), 10)
    scheduler.get_last_lr()[0] = 5.0
    assert scheduler.get_last_lr() == [0.1]


ALL = {**EXACT_TWINS, **WARMUP_TWINS, "inverse_time": (lambda o: InverseTimeLR(o, 0.02), None)}
ALL["warmup_sgdr_decay"] = (
    lambda o: LinearWarmup(o, 9, after=CosineAnnealingWarmRestarts(o, 5, 2, max_decay=0.5)),
    None,
)


@pytest.mark.parametrize("name", sorted(ALL))
def test_state_dict_resumes_bit_for_bit(name):
    make = ALL[name][0]
    optimizer = engine_optimizer()
    scheduler = make(optimizer)
    first = run(scheduler, optimizer, 137)
    saved_optimizer, saved = optimizer.state_dict(), scheduler.state_dict()
    expected = run(scheduler, optimizer, 200)

    fresh_optimizer = engine_optimizer()
    fresh = make(fresh_optimizer)  # build, then load the optimizer, then the scheduler
    fresh_optimizer.load_state_dict(saved_optimizer)
    fresh.load_state_dict(saved)
    assert fresh.get_last_lr() == first[-1].tolist()
    np.testing.assert_array_equal(run(fresh, fresh_optimizer, 200), expected)


def test_schedule_without_an_optimizer():
    """The GUI's view: a curve from base lrs alone, two groups at once."""
    groups = LRGroups(0.1, 0.01)
    curve = closed_forms(CosineAnnealingLR(groups, 10), steps=10)
    assert curve.shape == (11, 2)
    assert curve[0].tolist() == [0.1, 0.01]
    assert curve[10].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(curve[:, 1], curve[:, 0] / 10, rtol=1e-15)


# --- bad arguments ----------------------------------------------------------------------------
BAD = [
    (lambda g: StepLR(g, 0), "step_size", "0"),
    (lambda g: StepLR(g, 2.5), "step_size", "2.5"),
    (lambda g: StepLR(g, 10, gamma=0.0), "gamma", "0.0"),
    (lambda g: MultiStepLR(g, [30, 10]), "milestones", "[30, 10]"),
    (lambda g: MultiStepLR(g, [0, 10]), "milestones", "0"),
    (lambda g: ExponentialLR(g, -0.5), "gamma", "-0.5"),
    (lambda g: ExponentialLR.from_decay_rate(g, -1.0), "decay_rate", "-1.0"),
    (lambda g: InverseTimeLR(g, -0.1), "decay_rate", "-0.1"),
    (lambda g: InverseTimeLR(g, float("nan")), "decay_rate", "nan"),
    (lambda g: CosineAnnealingLR(g, 0), "T_max", "0"),
    (lambda g: CosineAnnealingLR(g, 10, eta_min=-1e-3), "eta_min", "-0.001"),
    (lambda g: CosineAnnealingWarmRestarts(g, 0), "T_0", "0"),
    (lambda g: CosineAnnealingWarmRestarts(g, 10, T_mult=0), "T_mult", "0"),
    (lambda g: CosineAnnealingWarmRestarts(g, 10, T_mult=1.5), "T_mult", "1.5"),
    (lambda g: CosineAnnealingWarmRestarts(g, 10, max_decay=1.5), "max_decay", "1.5"),
    (lambda g: CosineAnnealingWarmRestarts(g, 10, max_decay=0.0), "max_decay", "0.0"),
    (lambda g: CyclicLR(g, 0.2, 0.1), "base_lr", "0.2"),
    (lambda g: CyclicLR(g, -0.1, 0.1), "base_lr", "-0.1"),
    (lambda g: CyclicLR(g, 0.01, [0.1, 0.2, 0.3]), "max_lr", "0.3"),
    (lambda g: CyclicLR(g, 0.01, 0.1, step_size_up=0), "step_size_up", "0"),
    (lambda g: CyclicLR(g, 0.01, 0.1, step_size_down=-3), "step_size_down", "-3"),
    (lambda g: CyclicLR(g, 0.01, 0.1, mode="exp_range"), "mode", "exp_range"),
    (lambda g: LinearWarmup(g, -1), "warmup_steps", "-1"),
    (lambda g: LinearWarmup(g, 5, start_factor=1.5), "start_factor", "1.5"),
    (lambda g: StepLR(g, 10).lr_at(-1), "step t", "-1"),
]


@pytest.mark.parametrize(("make", "name", "value"), BAD)
def test_bad_arguments_name_the_argument_and_value(make, name, value):
    with pytest.raises(ValueError, match=rf"{name}.*{value}"):
        make(LRGroups(0.1, 0.03))


def test_negative_lr_and_a_non_optimizer_are_refused():
    with pytest.raises(ValueError, match=r"lr.*-0\.1"):
        LRGroups(-0.1)
    optimizer = engine_optimizer()
    optimizer.param_groups[1]["lr"] = -0.1
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['lr'\].*-0\.1"):
        StepLR(optimizer, 10)
    with pytest.raises(TypeError, match="param_groups"):
        StepLR([0.1], 10)
