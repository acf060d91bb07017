"""Engine lr schedules as torch.optim.lr_scheduler ones that write the same lr at every step.

The engine's schedules follow torch's scheduler protocol (the constructor writes the lr of
step 0, ``step()`` after each ``optimizer.step()``) and, where torch has the schedule, torch's
arithmetic, so the built-in schedulers give the same lrs bit for bit. Where torch has none,
or only one that rounds differently, a small scheduler here does the engine's arithmetic:

================================  ============================================================
engine (model file name)          torch
================================  ============================================================
StepLR (step)                     lr_scheduler.StepLR
MultiStepLR (multistep)           lr_scheduler.MultiStepLR
ExponentialLR (exponential)       lr_scheduler.ExponentialLR
CosineAnnealingLR (cosine)        lr_scheduler.CosineAnnealingLR
CosineAnnealingWarmRestarts       lr_scheduler.CosineAnnealingWarmRestarts; with
(cosine_restarts)                 max_decay != 1, WarmRestartsLR (here: torch has no max_decay)
CyclicLR (cyclic)                 lr_scheduler.CyclicLR(cycle_momentum=False): the engine
                                  cycles the lr only
InverseTimeLR (inverse_time)      InverseTimeLR (here); LambdaLR would compute
                                  base_lr * (1 / (1 + k t)), which rounds differently
LinearWarmup (warmup)             LinearWarmupLR (here) around the translation of ``after``
================================  ============================================================

Why not ``SequentialLR([LinearLR(...), after])`` for the warm-up: LinearLR is a running
product (a few ulps from the engine's closed-form ramp) and needs start_factor > 0 (the
engine's default is 0), and SequentialLR restarts ``after`` through ``step(0)``, which uses
closed forms where the engine keeps torch's recursion (cosine: 1e-13 apart).

``to_torch_schedule`` also carries the engine schedule's position (step count, last lrs, the
groups' lrs, SGDR's place in its cycle, the warm-up's nested schedule) over, so a run resumed
from a checkpoint continues on torch exactly; ``copy_schedule_state_to_engine`` carries a torch
run's position back before the engine writes a checkpoint.

>>> import torch
>>> from topograd.engine.optim.schedules import CosineAnnealingLR, LinearWarmup, LRGroups
>>> groups = LRGroups(0.1)
>>> warmup = LinearWarmup(groups, 5, after=CosineAnnealingLR(groups, T_max=100))
>>> sgd = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
>>> scheduler = to_torch_schedule(warmup, sgd)
>>> type(scheduler).__name__, type(scheduler.after).__name__, scheduler.get_last_lr()
('LinearWarmupLR', 'CosineAnnealingLR', [0.0])
"""

from __future__ import annotations

import math

from topograd.dsl.torch_backend import UnsupportedError, require_torch
from topograd.engine.optim import schedules as engine_schedules

torch = require_torch()
lr_scheduler = torch.optim.lr_scheduler


# --- the schedules torch lacks --------------------------------------------------------------
class InverseTimeLR(lr_scheduler.LRScheduler):
    """The notes' 1/t decay, lr_t = base_lr / (1 + decay_rate * t) (torch has none)."""

    def __init__(self, optimizer, decay_rate: float):
        self.decay_rate = decay_rate
        super().__init__(optimizer)

    def get_lr(self):
        t = self.last_epoch
        return [base_lr / (1.0 + self.decay_rate * t) for base_lr in self.base_lrs]


class WarmRestartsLR(lr_scheduler.LRScheduler):
    """SGDR (torch's CosineAnnealingWarmRestarts) whose height above eta_min is multiplied by
    ``max_decay`` at every restart: in cycle i, lr = eta_min + (base_lr - eta_min) *
    max_decay**i * (1 + cos(pi T_cur / T_i)) / 2."""

    def __init__(self, optimizer, T_0: int, T_mult: int = 1, eta_min=0.0, max_decay=1.0):
        self.T_0, self.T_mult, self.eta_min, self.max_decay = T_0, T_mult, eta_min, max_decay
        super().__init__(optimizer)

    def cycle_at(self, t: int) -> tuple[int, int, int]:
        """(cycle index i, T_cur, T_i) at step t, as the engine counts them."""
        return engine_schedules.restart_cycle(t, self.T_0, self.T_mult)

    def get_lr(self):
        cycle, t_cur, length = self.cycle_at(self.last_epoch)
        lrs = []
        for base_lr in self.base_lrs:
            height = (base_lr - self.eta_min) * self.max_decay**cycle
            lrs.append(self.eta_min + height * (1 + math.cos(math.pi * t_cur / length)) / 2)
        return lrs


class LinearWarmupLR(lr_scheduler.LRScheduler):
    """A linear warm-up in front of another scheduler (the engine's LinearWarmup): for
    t < warmup_steps, lr = target * (start_factor + (1 - start_factor) * t / warmup_steps),
    where target is the lr `after` starts at; then `after` runs from its own step 0.

    Build `after` on the same optimizer first and do not step it yourself.
    """

    def __init__(self, optimizer, warmup_steps: int, after=None, start_factor: float = 0.0):
        self.warmup_steps = warmup_steps
        self.start_factor = start_factor
        self.after = after
        if after is not None:
            self.targets = list(after.get_last_lr())
        else:
            self.targets = [
                group.get("initial_lr", group["lr"]) for group in optimizer.param_groups
            ]
        super().__init__(optimizer)

    def get_lr(self):
        t = self.last_epoch
        if t < self.warmup_steps:
            factor = self.start_factor + (1.0 - self.start_factor) * t / self.warmup_steps
            return [target * factor for target in self.targets]
        if self.after is None:
            return list(self.targets)
        if t > self.warmup_steps:
            self.after.step()
        return list(self.after.get_last_lr())  # at t == warmup_steps: after's own step 0

    def state_dict(self):
        """Everything but the optimizer, with `after`'s state nested (not the object)."""
        state = {k: v for k, v in vars(self).items() if k not in ("optimizer", "after")}
        state["after"] = None if self.after is None else self.after.state_dict()
        return state

    def load_state_dict(self, state_dict):
        state = dict(state_dict)
        after = state.pop("after")
        if (after is None) != (self.after is None):
            raise ValueError("load_state_dict: the saved warm-up and this one differ in `after`")
        self.__dict__.update(state)
        if after is not None:
            self.after.load_state_dict(after)


# --- translation ----------------------------------------------------------------------------
def to_torch_schedule(schedule, torch_optimizer):
    """The torch scheduler on `torch_optimizer` equal to the engine `schedule`, continuing
    from its current step (None for None). Raises UnsupportedError for an unknown schedule.

    `torch_optimizer` must have the engine optimizer's parameter groups in the same order
    (to_torch_optimizer's); the groups' ``initial_lr`` and ``lr`` are set from the engine's.
    """
    if schedule is None:
        return None
    engine_groups = schedule.optimizer.param_groups
    _check_group_count(engine_groups, torch_optimizer.param_groups)
    for target, source in zip(torch_optimizer.param_groups, engine_groups, strict=True):
        target["initial_lr"] = source["initial_lr"]
    scheduler = _build(schedule, torch_optimizer)
    copy_schedule_state_to_torch(schedule, scheduler)
    return scheduler


def copy_schedule_state_to_torch(schedule, torch_scheduler) -> None:
    """Move `torch_scheduler` (made by to_torch_schedule) to the engine schedule's position:
    step count, last lrs, the groups' current lrs and the nested schedule's."""
    _state_to_torch(schedule, torch_scheduler)
    engine_groups = schedule.optimizer.param_groups
    torch_groups = torch_scheduler.optimizer.param_groups
    _check_group_count(engine_groups, torch_groups)
    for target, source in zip(torch_groups, engine_groups, strict=True):
        target["lr"] = source["lr"]


def copy_schedule_state_to_engine(torch_scheduler, schedule) -> None:
    """Move the engine `schedule` to the torch scheduler's position (the reverse of
    copy_schedule_state_to_torch), through the schedule's load_state_dict."""
    schedule.load_state_dict(_engine_state(torch_scheduler, schedule))
    engine_groups = schedule.optimizer.param_groups
    torch_groups = torch_scheduler.optimizer.param_groups
    _check_group_count(engine_groups, torch_groups)
    for target, source in zip(engine_groups, torch_groups, strict=True):
        target["lr"] = _number(source["lr"])


def _build(schedule, optimizer):
    """A fresh torch scheduler with the engine schedule's settings (at its step 0)."""
    kind = type(schedule)
    if kind is engine_schedules.StepLR:
        return lr_scheduler.StepLR(optimizer, step_size=schedule.step_size, gamma=schedule.gamma)
    if kind is engine_schedules.MultiStepLR:
        milestones = sorted(schedule.milestones.elements())
        return lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=schedule.gamma)
    if kind is engine_schedules.ExponentialLR:
        return lr_scheduler.ExponentialLR(optimizer, gamma=schedule.gamma)
    if kind is engine_schedules.CosineAnnealingLR:
        return lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=schedule.T_max, eta_min=schedule.eta_min
        )
    if kind is engine_schedules.CosineAnnealingWarmRestarts:
        if schedule.max_decay == 1.0:
            return lr_scheduler.CosineAnnealingWarmRestarts(
                optimizer, T_0=schedule.T_0, T_mult=schedule.T_mult, eta_min=schedule.eta_min
            )
        return WarmRestartsLR(
            optimizer, schedule.T_0, schedule.T_mult, schedule.eta_min, schedule.max_decay
        )
    if kind is engine_schedules.CyclicLR:
        up, down = _cyclic_steps(schedule)
        return lr_scheduler.CyclicLR(
            optimizer,
            base_lr=list(schedule.base_lrs),
            max_lr=list(schedule.max_lrs),
            step_size_up=up,
            step_size_down=down,
            mode=schedule.mode,
            cycle_momentum=False,
        )
    if kind is engine_schedules.InverseTimeLR:
        return InverseTimeLR(optimizer, schedule.decay_rate)
    if kind is engine_schedules.LinearWarmup:
        after = None if schedule.after is None else _build(schedule.after, optimizer)
        return LinearWarmupLR(optimizer, schedule.warmup_steps, after, schedule.start_factor)
    raise UnsupportedError(f"the schedule {kind.__name__}")


def _cyclic_steps(schedule) -> tuple[int, int]:
    """CyclicLR's step_size_up and step_size_down, which the engine keeps as total and ratio."""
    up = round(schedule.step_ratio * schedule.total_size)
    down = round(schedule.total_size) - up
    if float(up) + float(down) != schedule.total_size or (
        float(up) / (float(up) + float(down)) != schedule.step_ratio
    ):
        raise ValueError(
            f"cannot recover CyclicLR's step sizes from total_size={schedule.total_size!r}, "
            f"step_ratio={schedule.step_ratio!r}"
        )
    return up, down


def _expected_type(schedule):
    kind = type(schedule)
    if kind is engine_schedules.CosineAnnealingWarmRestarts and schedule.max_decay != 1.0:
        return WarmRestartsLR
    if kind is engine_schedules.InverseTimeLR:
        return InverseTimeLR
    if kind is engine_schedules.LinearWarmup:
        return LinearWarmupLR
    return getattr(lr_scheduler, kind.__name__)


def _check_pair(schedule, torch_scheduler) -> None:
    expected = _expected_type(schedule)
    if type(torch_scheduler) is not expected:
        raise ValueError(
            f"the engine {type(schedule).__name__} corresponds to a torch {expected.__name__}, "
            f"got a {type(torch_scheduler).__name__}"
        )


def _check_group_count(engine_groups, torch_groups) -> None:
    if len(engine_groups) != len(torch_groups):
        raise ValueError(
            f"the engine schedule's optimizer has {len(engine_groups)} parameter groups, the "
            f"torch optimizer {len(torch_groups)}"
        )


def _state_to_torch(schedule, torch_scheduler) -> None:
    _check_pair(schedule, torch_scheduler)
    state = schedule.state_dict()
    t = state["last_epoch"]
    torch_scheduler.last_epoch = t
    torch_scheduler._step_count = t + 1  # as after t steps: no "step before optimizer" warning
    torch_scheduler._last_lr = list(state["_last_lr"])
    torch_scheduler.base_lrs = list(state["base_lrs"])
    if isinstance(torch_scheduler, lr_scheduler.CosineAnnealingWarmRestarts):
        _, torch_scheduler.T_cur, torch_scheduler.T_i = schedule.cycle_at(t)
    if isinstance(torch_scheduler, LinearWarmupLR):
        torch_scheduler.targets = list(state["_targets"])
        if schedule.after is not None:
            _state_to_torch(schedule.after, torch_scheduler.after)


def _engine_state(torch_scheduler, schedule) -> dict:
    """The engine schedule's state_dict with the torch scheduler's position."""
    _check_pair(schedule, torch_scheduler)
    state = schedule.state_dict()
    state["last_epoch"] = torch_scheduler.last_epoch
    state["_last_lr"] = [_number(lr) for lr in torch_scheduler.get_last_lr()]
    if isinstance(torch_scheduler, LinearWarmupLR):
        state["_targets"] = [_number(lr) for lr in torch_scheduler.targets]
        if schedule.after is not None:
            state["after"] = _engine_state(torch_scheduler.after, schedule.after)
    return state


def _number(value) -> float:
    return value.item() if isinstance(value, torch.Tensor) else value
