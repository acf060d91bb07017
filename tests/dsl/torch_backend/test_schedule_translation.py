"""Engine lr schedules against their torch.optim.lr_scheduler translations: the same lr at
every step for 350 steps (two parameter groups), also when a run moves from one backend to the
other mid-way. The lrs agree bit for bit: the translations do the engine's arithmetic."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from topograd.dsl.torch_backend import UnsupportedError
from topograd.dsl.torch_backend.schedules import (
    InverseTimeLR,
    LinearWarmupLR,
    WarmRestartsLR,
    copy_schedule_state_to_engine,
    copy_schedule_state_to_torch,
    to_torch_schedule,
)
from topograd.engine.optim import schedules as S

pytestmark = pytest.mark.filterwarnings("error")  # torch's "step order" warnings included

LRS = (0.1, 0.03)
STEPS = 350
SWITCH = 137  # where a run moves to the other backend
RTOL = 0.0  # both sides do the same Python float arithmetic: bit for bit (1e-12 asked)

lr_scheduler = torch.optim.lr_scheduler
CASES = {
    "step": (lambda g: S.StepLR(g, step_size=7, gamma=0.5), lr_scheduler.StepLR),
    "multistep": (
        lambda g: S.MultiStepLR(g, milestones=[10, 50, 50, 200], gamma=0.3),
        lr_scheduler.MultiStepLR,
    ),
    "exponential": (lambda g: S.ExponentialLR(g, gamma=0.99), lr_scheduler.ExponentialLR),
    "exponential-decay-rate": (
        lambda g: S.ExponentialLR.from_decay_rate(g, 0.02),
        lr_scheduler.ExponentialLR,
    ),
    "inverse_time": (lambda g: S.InverseTimeLR(g, decay_rate=0.05), InverseTimeLR),
    "cosine": (
        lambda g: S.CosineAnnealingLR(g, T_max=60, eta_min=0.001),
        lr_scheduler.CosineAnnealingLR,
    ),
    "cosine-to-zero": (lambda g: S.CosineAnnealingLR(g, T_max=45), lr_scheduler.CosineAnnealingLR),
    "cosine_restarts": (
        lambda g: S.CosineAnnealingWarmRestarts(g, T_0=10, T_mult=2, eta_min=1e-3),
        lr_scheduler.CosineAnnealingWarmRestarts,
    ),
    "cosine_restarts-mult1": (
        lambda g: S.CosineAnnealingWarmRestarts(g, T_0=17),
        lr_scheduler.CosineAnnealingWarmRestarts,
    ),
    "cosine_restarts-max_decay": (
        lambda g: S.CosineAnnealingWarmRestarts(g, T_0=10, T_mult=2, eta_min=1e-3, max_decay=0.7),
        WarmRestartsLR,
    ),
    "cosine_restarts-max_decay-mult1": (
        lambda g: S.CosineAnnealingWarmRestarts(g, T_0=23, max_decay=0.9),
        WarmRestartsLR,
    ),
    "cyclic": (
        lambda g: S.CyclicLR(g, base_lr=0.001, max_lr=0.1, step_size_up=20, step_size_down=13),
        lr_scheduler.CyclicLR,
    ),
    "cyclic-triangular2": (
        lambda g: S.CyclicLR(
            g, base_lr=[0.001, 0.002], max_lr=[0.1, 0.05], step_size_up=15, mode="triangular2"
        ),
        lr_scheduler.CyclicLR,
    ),
    "warmup-cosine": (
        lambda g: S.LinearWarmup(g, 20, after=S.CosineAnnealingLR(g, T_max=100)),
        LinearWarmupLR,
    ),
    "warmup-step-start_factor": (
        lambda g: S.LinearWarmup(g, 15, after=S.StepLR(g, 30, 0.5), start_factor=0.25),
        LinearWarmupLR,
    ),
    "warmup-alone": (lambda g: S.LinearWarmup(g, 25), LinearWarmupLR),
    "warmup-zero-steps": (
        lambda g: S.LinearWarmup(g, 0, after=S.ExponentialLR(g, 0.98)),
        LinearWarmupLR,
    ),
    "warmup-restarts-max_decay": (
        lambda g: S.LinearWarmup(
            g, 10, after=S.CosineAnnealingWarmRestarts(g, T_0=20, max_decay=0.5)
        ),
        LinearWarmupLR,
    ),
    "warmup-cyclic": (
        lambda g: S.LinearWarmup(g, 8, after=S.CyclicLR(g, 0.01, 0.1, step_size_up=12)),
        LinearWarmupLR,
    ),
}


def engine_schedule(case):
    return CASES[case][0](S.LRGroups(*LRS))


def torch_optimizer():
    """Two groups with lrs that the translation must overwrite."""
    params = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    return torch.optim.SGD([{"params": [params[0]]}, {"params": [params[1]]}], lr=1.0)


def assert_same_lrs(schedule, scheduler, step):
    engine_lrs = schedule.get_last_lr()
    for lrs in (scheduler.get_last_lr(), [g["lr"] for g in scheduler.optimizer.param_groups]):
        for ours, theirs in zip(engine_lrs, lrs, strict=True):
            assert abs(ours - theirs) <= RTOL * abs(ours), (step, engine_lrs, lrs)
    assert [g["lr"] for g in schedule.optimizer.param_groups] == engine_lrs


def step_both(schedule, scheduler, step):
    schedule.step()
    scheduler.optimizer.step()  # (no gradients: only marks the step for torch's order check)
    scheduler.step()
    assert_same_lrs(schedule, scheduler, step)


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_lr_at_every_step(case):
    schedule = engine_schedule(case)
    scheduler = to_torch_schedule(schedule, torch_optimizer())
    assert type(scheduler) is CASES[case][1]
    assert_same_lrs(schedule, scheduler, 0)
    for step in range(1, STEPS + 1):
        step_both(schedule, scheduler, step)


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_engine_run_continues_on_torch(case):
    schedule = engine_schedule(case)
    for _ in range(SWITCH):
        schedule.step()
    scheduler = to_torch_schedule(schedule, torch_optimizer())
    assert scheduler.last_epoch == SWITCH
    assert_same_lrs(schedule, scheduler, SWITCH)
    for step in range(SWITCH + 1, STEPS + 1):
        step_both(schedule, scheduler, step)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_torch_run_continues_on_the_engine(case):
    """Torch for SWITCH steps, its position into a fresh engine schedule (whose state then
    equals an engine run's at that step), then both go on."""
    reference = engine_schedule(case)
    scheduler = to_torch_schedule(engine_schedule(case), torch_optimizer())
    for _ in range(SWITCH):
        reference.step()
        scheduler.optimizer.step()
        scheduler.step()
    schedule = engine_schedule(case)
    copy_schedule_state_to_engine(scheduler, schedule)
    assert_same_state(schedule.state_dict(), reference.state_dict())
    assert_same_lrs(schedule, scheduler, SWITCH)
    for step in range(SWITCH + 1, STEPS + 1):
        step_both(schedule, scheduler, step)


def assert_same_state(ours, expected):
    assert sorted(ours) == sorted(expected)
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_same_state(ours[key], value)
        elif isinstance(value, list) and value and isinstance(value[0], float):
            for a, b in zip(ours[key], value, strict=True):
                assert abs(a - b) <= RTOL * abs(b), key
        else:
            assert ours[key] == value, key


def test_copy_to_torch_moves_an_existing_scheduler():
    schedule = engine_schedule("warmup-cosine")
    scheduler = to_torch_schedule(schedule, torch_optimizer())
    for _ in range(60):
        schedule.step()
    copy_schedule_state_to_torch(schedule, scheduler)
    assert (scheduler.last_epoch, scheduler.after.last_epoch) == (60, 40)
    assert_same_lrs(schedule, scheduler, 60)
    for step in range(61, 120):
        step_both(schedule, scheduler, step)


def test_none_is_none():
    assert to_torch_schedule(None, torch_optimizer()) is None


def test_a_schedule_without_counterpart_is_named():
    class Halving(S.LRScheduler):
        def _lr(self, t, base_lr):
            return base_lr / 2**t

    with pytest.raises(UnsupportedError, match="Halving"):
        to_torch_schedule(Halving(S.LRGroups(*LRS)), torch_optimizer())


def test_mismatches_are_refused():
    schedule = engine_schedule("step")
    scheduler = to_torch_schedule(engine_schedule("cosine"), torch_optimizer())
    with pytest.raises(ValueError, match="StepLR"):
        copy_schedule_state_to_torch(schedule, scheduler)
    with pytest.raises(ValueError, match="StepLR"):
        copy_schedule_state_to_engine(scheduler, schedule)
    with pytest.raises(ValueError, match="parameter groups"):
        to_torch_schedule(S.StepLR(S.LRGroups(0.1), 5), torch_optimizer())
