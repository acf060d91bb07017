"""Learning-rate schedules with PyTorch's names and its scheduler protocol.

A scheduler wraps an optimizer. On construction it records each group's starting learning
rate as ``group["initial_lr"]`` (kept if already there, as PyTorch does, so a second scheduler
on the same optimizer sees the same base), sets ``last_epoch = 0`` and writes the lr for step 0.
Each ``step()`` (call it after ``optimizer.step()``) advances ``last_epoch`` and writes the next
lr into every group; ``get_last_lr()`` returns the lrs just written, one per group.

Every schedule also has ``lr_at(t)``: the closed-form lrs at step ``t``, computed without
touching the optimizer, so a plot or the GUI can draw a whole curve. To draw a schedule with
no model at all, give the scheduler an ``LRGroups(0.1)`` in place of an optimizer.

The sequences ``step()`` produces equal ``torch.optim.lr_scheduler``'s bit for bit, because
each schedule does torch's arithmetic: StepLR, MultiStepLR, ExponentialLR and
CosineAnnealingLR follow torch's recursive ("chainable") update, which multiplies the
current ``group["lr"]``; CosineAnnealingWarmRestarts and CyclicLR use torch's closed forms.
For the recursive four, ``lr_at(t)`` (the closed form) and ``step()`` agree to about 1e-13
relative: cosine annealing's closed form differs from torch's recursion by up to 3e-13 near
its minimum, where ``1 + cos`` loses digits, which is why ``step()`` replicates the recursion
rather than using ``lr_at``.

Where topograd differs from PyTorch:

- The ``last_epoch`` constructor argument is left out (torch's resume path through it is
  subtle); resume with ``load_state_dict``, which continues bit for bit.
- ``CyclicLR`` cycles the learning rate only (torch also cycles momentum by default).
- Additions: ``ExponentialLR.from_decay_rate`` (the notes' a0 * exp(-k t)), ``InverseTimeLR``
  (the notes' a0 / (1 + k t)), ``max_decay`` in ``CosineAnnealingWarmRestarts`` and
  ``LinearWarmup``, a warm-up in front of any other schedule.

>>> from topograd.engine.optim.schedules import CosineAnnealingLR, LinearWarmup, LRGroups
>>> groups = LRGroups(0.1)
>>> schedule = LinearWarmup(groups, 5, after=CosineAnnealingLR(groups, T_max=100))
>>> [round(schedule.lr_at(t)[0], 4) for t in (0, 1, 5, 55, 105)]
[0.0, 0.02, 0.1, 0.05, 0.0]
"""

from __future__ import annotations

import copy
import math
import operator
from bisect import bisect_right
from collections import Counter

from topograd.engine.optim.optimizer import check_range
from topograd.engine.registry import Registry


def _check_int(name: str, value, low: int) -> int:
    """Return `value` as an int, or raise ValueError naming it unless it is an integer >= low."""
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or isinstance(value, bool) or number < low:
        raise ValueError(f"invalid {name}: expected an integer >= {low}, got {value!r}")
    return number


def _per_group(name: str, value, count: int) -> list[float]:
    """One value per parameter group: a number is repeated, a list must have `count` entries."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * count
    if len(values) != count:
        raise ValueError(f"invalid {name}: expected {count} values (one per group), got {value!r}")
    for index, item in enumerate(values):
        check_range(name if count == 1 else f"{name}[{index}]", item, low=0.0)
    return [float(item) for item in values]


class LRGroups:
    """A stand-in for an optimizer that holds only learning rates, one per parameter group.

    Schedulers only read and write ``param_groups[i]["lr"]``, so this lets a schedule be
    stepped, saved and drawn without a model:

    >>> StepLR(LRGroups(1.0), step_size=2, gamma=0.5).lr_at(5)
    [0.25]
    """

    def __init__(self, *lrs: float):
        if not lrs:
            raise ValueError("LRGroups needs at least one learning rate")
        self.param_groups = [{"lr": lr} for lr in _per_group("lr", list(lrs), len(lrs))]

    def __repr__(self):
        return f"LRGroups({', '.join(repr(g['lr']) for g in self.param_groups)})"


class LRScheduler:
    """Base class: PyTorch's protocol (``step``, ``get_last_lr``, ``state_dict``) plus
    ``lr_at``. Subclasses give the closed form in ``_lr(t, base_lr)``; those whose PyTorch
    twin is recursive also override ``_next_lrs`` to repeat its arithmetic."""

    def __init__(self, optimizer):
        groups = getattr(optimizer, "param_groups", None)
        if not isinstance(groups, list) or not groups:
            raise TypeError(
                f"{type(self).__name__} needs an optimizer (or LRGroups) with param_groups, "
                f"got {type(optimizer).__name__}"
            )
        for index, group in enumerate(groups):
            check_range(f"param_groups[{index}]['lr']", group["lr"], low=0.0)
            group.setdefault("initial_lr", group["lr"])
        self.optimizer = optimizer
        self.base_lrs = [group["initial_lr"] for group in groups]
        self.last_epoch = -1
        self._last_lr: list[float] = []
        self.step()

    # --- the protocol ---------------------------------------------------------------------
    def step(self) -> None:
        """Advance one step (after ``optimizer.step()``) and write the new lr into each group."""
        self.last_epoch += 1
        lrs = self._next_lrs()
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def get_last_lr(self) -> list[float]:
        """The lrs the last ``step()`` (or the constructor) wrote, one per group."""
        return list(self._last_lr)

    def lr_at(self, t: int) -> list[float]:
        """The closed-form lrs at step ``t`` (one per group); changes nothing."""
        t = _check_int("step t", t, 0)
        return [self._lr(t, base_lr) for base_lr in self.base_lrs]

    def state_dict(self) -> dict:
        """Everything but the optimizer (PyTorch's layout); save the optimizer's state too."""
        return {k: copy.deepcopy(v) for k, v in vars(self).items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        """Continue from a saved state. As in PyTorch, build the scheduler first, then load the
        optimizer's state (the constructor writes the lr), then this."""
        self.__dict__.update(copy.deepcopy(state_dict))

    # --- for subclasses -------------------------------------------------------------------
    def _next_lrs(self) -> list[float]:
        return self.lr_at(self.last_epoch)

    def _lr(self, t: int, base_lr: float) -> float:
        raise NotImplementedError(f"{type(self).__name__} must implement _lr")

    def _chain(self, update) -> list[float]:
        """PyTorch's recursive form: the new lr from each group's current lr and base lr."""
        return [
            update(group["lr"], base_lr)
            for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True)
        ]

    def _current_lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def __repr__(self):
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self._last_lr})"


class StepLR(LRScheduler):
    """Step decay (the notes): multiply the lr by ``gamma`` every ``step_size`` steps,
    lr_t = base_lr * gamma ** (t // step_size)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        self.step_size = _check_int("step_size", step_size, 1)
        check_range("gamma", gamma, low=0.0, low_open=True)
        self.gamma = gamma
        super().__init__(optimizer)

    def _lr(self, t, base_lr):
        return base_lr * self.gamma ** (t // self.step_size)

    def _next_lrs(self):
        t = self.last_epoch
        if t == 0 or t % self.step_size != 0:
            return self._current_lrs()
        return self._chain(lambda lr, _: lr * self.gamma)


class MultiStepLR(LRScheduler):
    """Multiply the lr by ``gamma`` at each milestone step (a milestone listed twice counts
    twice, as in PyTorch): lr_t = base_lr * gamma ** (number of milestones <= t)."""

    def __init__(self, optimizer, milestones, gamma: float = 0.1):
        steps = [_check_int("milestones entry", m, 1) for m in milestones]
        if steps != sorted(steps):
            raise ValueError(f"invalid milestones: must be increasing, got {list(milestones)!r}")
        check_range("gamma", gamma, low=0.0, low_open=True)
        self.milestones = Counter(steps)
        self._sorted_milestones = steps
        self.gamma = gamma
        super().__init__(optimizer)

    def _lr(self, t, base_lr):
        return base_lr * self.gamma ** bisect_right(self._sorted_milestones, t)

    def _next_lrs(self):
        count = self.milestones.get(self.last_epoch, 0)
        if count == 0:
            return self._current_lrs()
        return self._chain(lambda lr, _: lr * self.gamma**count)


class ExponentialLR(LRScheduler):
    """lr_t = base_lr * gamma ** t (PyTorch's form). The notes write it a0 * exp(-k t):
    build that with ``ExponentialLR.from_decay_rate(optimizer, k)``, which is gamma = exp(-k)."""

    def __init__(self, optimizer, gamma: float):
        check_range("gamma", gamma, low=0.0, low_open=True)
        self.gamma = gamma
        super().__init__(optimizer)

    @classmethod
    def from_decay_rate(cls, optimizer, decay_rate: float) -> ExponentialLR:
        """The notes' exponential decay lr_t = a0 * exp(-decay_rate * t)."""
        check_range("decay_rate", decay_rate, low=0.0)
        return cls(optimizer, gamma=math.exp(-decay_rate))

    def _lr(self, t, base_lr):
        return base_lr * self.gamma**t

    def _next_lrs(self):
        if self.last_epoch == 0:
            return self._current_lrs()
        return self._chain(lambda lr, _: lr * self.gamma)


class InverseTimeLR(LRScheduler):
    """The notes' 1/t decay, lr_t = base_lr / (1 + decay_rate * t). PyTorch has no
    counterpart. It decays fast at first and then slowly, never reaching zero."""

    def __init__(self, optimizer, decay_rate: float):
        check_range("decay_rate", decay_rate, low=0.0)
        self.decay_rate = decay_rate
        super().__init__(optimizer)

    def _lr(self, t, base_lr):
        return base_lr / (1.0 + self.decay_rate * t)


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from base_lr down to ``eta_min`` over ``T_max`` steps (SGDR without
    restarts): lr_t = eta_min + (base_lr - eta_min) * (1 + cos(pi t / T_max)) / 2.

    As in PyTorch, past T_max the curve climbs again (its period is 2 T_max); for restarts use
    ``CosineAnnealingWarmRestarts``. ``step()`` repeats torch's recursive formula (see the
    module docstring for why); ``lr_at`` is the closed form above.
    """

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        self.T_max = _check_int("T_max", T_max, 1)
        check_range("eta_min", eta_min, low=0.0)
        self.eta_min = eta_min
        super().__init__(optimizer)

    def _lr(self, t, base_lr):
        return (
            self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2
        )

    def _next_lrs(self):
        t, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if t == 0:
            return self._current_lrs()
        if (t - 1 - T) % (2 * T) == 0:  # leaving the minimum, where the ratio below is 0/0
            rise = (1 - math.cos(math.pi / T)) / 2
            return self._chain(lambda lr, base_lr: lr + (base_lr - eta_min) * rise)
        ratio = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
        return self._chain(lambda lr, _: ratio * (lr - eta_min) + eta_min)


def restart_cycle(t: int, T_0: int, T_mult: int) -> tuple[int, int, int]:
    """(cycle index i, T_cur, T_i) at step t of warm restarts: cycles of T_0, T_0 * T_mult,
    ... steps, in exact integer arithmetic."""
    if T_mult == 1:
        cycle, t_cur = divmod(t, T_0)
        return cycle, t_cur, T_0
    cycle, length = 0, T_0
    while t >= length:
        t -= length
        cycle, length = cycle + 1, length * T_mult
    return cycle, t, length


class CosineAnnealingWarmRestarts(LRScheduler):
    """SGDR: cosine annealing that restarts at the peak after ``T_0`` steps, each cycle
    ``T_mult`` times longer than the one before.

    In cycle i (i = 0, 1, ...) of length T_i = T_0 * T_mult**i, with T_cur steps into it:
    lr = eta_min + (base_lr - eta_min) * max_decay**i * (1 + cos(pi T_cur / T_i)) / 2.

    ``max_decay`` is the notes' option of lowering the peak after each cycle: every restart
    multiplies the cycle's height above ``eta_min`` by it, so with eta_min = 0 the peak lr
    itself is multiplied by ``max_decay``. Scaling the height (not the peak) keeps eta_min the
    minimum lr, as its name says, so the peak can never sink below it. The default 1.0 is
    PyTorch's schedule.
    """

    def __init__(
        self,
        optimizer,
        T_0: int,
        T_mult: int = 1,
        eta_min: float = 0.0,
        max_decay: float = 1.0,
    ):
        self.T_0 = _check_int("T_0", T_0, 1)
        self.T_mult = _check_int("T_mult", T_mult, 1)
        check_range("eta_min", eta_min, low=0.0)
        check_range("max_decay", max_decay, low=0.0, high=1.0, low_open=True)
        self.eta_min = eta_min
        self.max_decay = max_decay
        super().__init__(optimizer)

    def cycle_at(self, t: int) -> tuple[int, int, int]:
        """(cycle index i, T_cur, T_i) at step t, in exact integer arithmetic."""
        return restart_cycle(_check_int("step t", t, 0), self.T_0, self.T_mult)

    def _lr(self, t, base_lr):
        cycle, t_cur, length = self.cycle_at(t)
        height = (base_lr - self.eta_min) * self.max_decay**cycle
        return self.eta_min + height * (1 + math.cos(math.pi * t_cur / length)) / 2


class CyclicLR(LRScheduler):
    """Cyclical learning rates (Smith): the lr climbs linearly from ``base_lr`` to ``max_lr``
    over ``step_size_up`` steps, falls back over ``step_size_down`` (default: the same), and
    repeats. ``mode="triangular2"`` halves the height of each new cycle.

    Like PyTorch, it overrides the optimizer's lr with ``base_lr`` (a number, or one per
    group) and is meant to be stepped after every batch. It cycles only the lr: PyTorch's
    default also cycles momentum inversely (``cycle_momentum``), which is not implemented.
    The arithmetic is torch's, so the sequences match it exactly.
    """

    MODES = ("triangular", "triangular2")

    def __init__(
        self,
        optimizer,
        base_lr,
        max_lr,
        step_size_up: int = 2000,
        step_size_down: int | None = None,
        mode: str = "triangular",
    ):
        groups = getattr(optimizer, "param_groups", None)
        count = len(groups) if isinstance(groups, list) else 1
        base_lrs = _per_group("base_lr", base_lr, count)
        self.max_lrs = _per_group("max_lr", max_lr, count)
        for index, (low, high) in enumerate(zip(base_lrs, self.max_lrs, strict=True)):
            if low > high:
                raise ValueError(
                    f"invalid base_lr: {low!r} is above max_lr {high!r} (group {index})"
                )
        up = _check_int("step_size_up", step_size_up, 1)
        down = up if step_size_down is None else _check_int("step_size_down", step_size_down, 1)
        if mode not in self.MODES:
            raise ValueError(f"invalid mode: {mode!r}; known: {', '.join(self.MODES)}")
        self.mode = mode
        self.total_size = float(up) + float(down)
        self.step_ratio = float(up) / self.total_size
        if isinstance(groups, list):
            for group, lr in zip(groups, base_lrs, strict=True):
                group["lr"] = lr
        super().__init__(optimizer)
        self.base_lrs = base_lrs

    def lr_at(self, t):
        t = _check_int("step t", t, 0)
        cycle = math.floor(1 + t / self.total_size)
        x = 1.0 + t / self.total_size - cycle
        rising = x <= self.step_ratio  # x: the position in the cycle, from 0 to 1
        scale = x / self.step_ratio if rising else (x - 1) / (self.step_ratio - 1)
        shrink = 1 / (2.0 ** (cycle - 1)) if self.mode == "triangular2" else 1.0
        return [
            base_lr + (max_lr - base_lr) * scale * shrink
            for base_lr, max_lr in zip(self.base_lrs, self.max_lrs, strict=True)
        ]


class LinearWarmup(LRScheduler):
    """A linear warm-up in front of any schedule: for t < warmup_steps the lr grows linearly,
    lr_t = target * (start_factor + (1 - start_factor) * t / warmup_steps), where target is
    the lr that ``after`` starts at; from t = warmup_steps on, ``after`` runs from its own
    step 0, so it is shifted by the warm-up. With ``after=None`` the lr stays at the base lr.

    Build ``after`` on the same optimizer first (it must not have been stepped):

    >>> groups = LRGroups(0.1)
    >>> warm = LinearWarmup(groups, 4, after=StepLR(groups, step_size=10, gamma=0.5))
    >>> [warm.lr_at(t)[0] for t in (0, 2, 4, 14)]
    [0.0, 0.05, 0.1, 0.05]

    It equals torch's ``SequentialLR([LinearLR(opt, start_factor, 1.0, warmup_steps), after],
    milestones=[warmup_steps])`` to a few ulps (5e-16 relative): the ramp here is the closed
    form, while torch's LinearLR is a running product, which is also why torch needs
    start_factor > 0 and this does not (the default 0 starts from lr 0, the usual warm-up).
    """

    def __init__(self, optimizer, warmup_steps: int, after=None, start_factor: float = 0.0):
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
        check_range("start_factor", start_factor, low=0.0, high=1.0)
        self.start_factor = start_factor
        if after is not None:
            self._check_after(optimizer, after)
            self._targets = after.get_last_lr()
        else:
            groups = getattr(optimizer, "param_groups", None) or []
            self._targets = [group.get("initial_lr", group["lr"]) for group in groups]
        self.after = after
        super().__init__(optimizer)

    @staticmethod
    def _check_after(optimizer, after) -> None:
        if not isinstance(after, LRScheduler):
            raise TypeError(f"after must be a learning-rate scheduler, got {type(after).__name__}")
        if after.optimizer is not optimizer:
            raise ValueError("after must be built on the same optimizer as the warm-up")
        if after.last_epoch != 0:
            raise ValueError(
                f"after must be fresh (last_epoch 0), got last_epoch {after.last_epoch}"
            )

    def _ramp(self, t: int) -> list[float]:
        factor = self.start_factor + (1.0 - self.start_factor) * t / self.warmup_steps
        return [target * factor for target in self._targets]

    def lr_at(self, t):
        t = _check_int("step t", t, 0)
        if t < self.warmup_steps:
            return self._ramp(t)
        if self.after is None:
            return list(self._targets)
        return self.after.lr_at(t - self.warmup_steps)

    def _next_lrs(self):
        t = self.last_epoch
        if t < self.warmup_steps:
            return self._ramp(t)
        if self.after is None:
            return list(self._targets)
        if t > self.warmup_steps:
            self.after.step()
        return self.after.get_last_lr()  # at t == warmup_steps: after's own step 0

    def state_dict(self):
        state = {
            k: copy.deepcopy(v) for k, v in vars(self).items() if k not in ("optimizer", "after")
        }
        state["after"] = None if self.after is None else self.after.state_dict()
        return state

    def load_state_dict(self, state_dict):
        state = dict(state_dict)
        after = state.pop("after")
        if (after is None) != (self.after is None):
            raise ValueError("load_state_dict: the saved warm-up and this one differ in `after`")
        super().load_state_dict(state)
        if after is not None:
            self.after.load_state_dict(after)


SCHEDULES = Registry("schedule")
"""Schedules by name (model files write `schedule cosine(T_max=100)`); each takes the
optimizer first, then its options."""
for _name, _schedule in (
    ("step", StepLR),
    ("multistep", MultiStepLR),
    ("exponential", ExponentialLR),
    ("inverse_time", InverseTimeLR),
    ("cosine", CosineAnnealingLR),
    ("cosine_restarts", CosineAnnealingWarmRestarts),
    ("cyclic", CyclicLR),
    ("warmup", LinearWarmup),
):
    SCHEDULES.register(_name)(_schedule)

__all__ = [
    "SCHEDULES",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "InverseTimeLR",
    "LRGroups",
    "LRScheduler",
    "LinearWarmup",
    "MultiStepLR",
    "StepLR",
    "restart_cycle",
]
