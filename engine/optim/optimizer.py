"""`Optimizer`: parameter groups, per-parameter state, zero_grad and exact save/restore.

Subclasses declare their hyperparameters' defaults and checks, and implement `_update`, the
rule for one parameter; the base class walks the groups, skips parameters without a gradient,
and keeps the step count. The layout of `state_dict()` is PyTorch's (parameters referred to by
their position), so a run restored from it continues bit for bit.
"""

from __future__ import annotations

import copy
import math

import numpy as np
from topograd.engine.modes import enable_grad
from topograd.engine.tensor import Tensor


def norm_of(array) -> float:
    """The Euclidean norm of an array of any shape (one dot product, no temporary)."""
    flat = np.ravel(array)
    return math.sqrt(float(np.dot(flat, flat)))


def check_range(name, value, low=None, high=None, low_open=False, high_open=False):
    """Raise ValueError naming `name` and `value` unless low <= value <= high (open ends
    with `low_open` / `high_open`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"invalid {name}: expected a number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"invalid {name}: {value!r} is outside {bounds}")


class Optimizer:
    """Base class. `params` is an iterable of tensors or of dicts (parameter groups) such as
    `[{"params": weights}, {"params": biases, "weight_decay": 0.0}]`; a group's missing
    hyperparameters take the optimizer's defaults."""

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self._check_hyperparameters(self.defaults)
        self.param_groups: list[dict] = []
        self.state: dict[Tensor, dict] = {}
        # Set to a dict by a caller that wants to know how far each step moved each
        # parameter (fit's update/weight ratios): step() stores ||W_after - W_before|| by
        # id(parameter), from the update itself where the rule returns it (no copy). A
        # subclass that replaces step() itself must fill it too (or fit records NaN).
        self.change_norms: dict | None = None
        params = list(params) if not isinstance(params, Tensor) else [params]
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    # --- groups and hyperparameters -------------------------------------------------------
    def add_param_group(self, group: dict) -> None:
        """Add a group of parameters with its own hyperparameters (the rest from defaults)."""
        if not isinstance(group, dict) or "params" not in group:
            raise ValueError("a parameter group must be a dict with a 'params' entry")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for index, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"parameter {index} of a group is a {type(p).__name__}, not a Tensor"
                )
            if not p.requires_grad:
                raise ValueError(f"parameter {index} ({p.name or 'unnamed'}) does not require grad")
        unknown = sorted(set(group) - set(self.defaults) - {"params"})
        if unknown:
            known = ", ".join(sorted(self.defaults))
            raise ValueError(
                f"{type(self).__name__}: unknown option(s) {', '.join(unknown)}; known: {known}"
            )
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("a parameter appears in more than one group")
        full = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        self._check_hyperparameters(full)
        full["params"] = params
        self.param_groups.append(full)

    def _check_hyperparameters(self, group: dict) -> None:
        """Subclasses raise ValueError for values outside their ranges."""

    # --- stepping ----------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Forget every parameter's gradient (sets `.grad` to None, PyTorch's default)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self, closure=None):
        """Update every parameter that has a gradient, group by group.

        `closure`, as in PyTorch, re-evaluates the model and returns the loss (after
        zeroing and backpropagating); its loss is returned.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        changes = self.change_norms
        for group in self.param_groups:
            exact = changes is not None and self._returns_step(group)
            for p in group["params"]:
                grad = p._grad
                if grad is None:
                    continue
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {"step": 0}
                state["step"] += 1
                if type(p._data) is np.ndarray:
                    before = None if exact or changes is None else p._data.copy()
                    applied = self._update(p._data, np.asarray(grad), state, group)
                    p._mark_changed()  # graphs that read the old value may not backpropagate
                    if changes is not None:
                        change = applied if exact else np.subtract(p._data, before, out=before)
                        changes[id(p)] = norm_of(change)
                else:  # a scalar parameter: update a 0-d array, then store it back
                    value = np.array(p._data, dtype=p.dtype)
                    self._update(value, np.asarray(grad, dtype=p.dtype), state, group)
                    if changes is not None:
                        changes[id(p)] = abs(float(value) - float(p._data))
                    p.data = value
        return loss

    def _returns_step(self, group: dict) -> bool:
        """Whether `_update` returns the array it added to (or took from) the parameter, the
        whole change, for this group (see `change_norms`); otherwise the change is measured
        on a copy of the weights."""
        return False

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict):
        """Update `param` IN PLACE from `grad`; `state` is this parameter's (with 'step'
        already counting this step), `group` its hyperparameters. Rules whose change is one
        array added to or subtracted from the weights may return it (see `_returns_step`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _update")

    # --- saving ------------------------------------------------------------------------
    def _positions(self):
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield index, p
                index += 1

    def state_dict(self) -> dict:
        """{'state': {position: {name: value}}, 'param_groups': [...]} with copies of arrays."""
        state = {i: copy.deepcopy(self.state[p]) for i, p in self._positions() if p in self.state}
        groups = []
        index = 0
        for group in self.param_groups:
            saved = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            saved["params"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
            groups.append(saved)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and per-parameter state; shapes and group sizes must match
        (nothing changes if they do not)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"load_state_dict: saved {len(groups)} parameter groups, optimizer has "
                f"{len(self.param_groups)}"
            )
        for number, (saved, group) in enumerate(zip(groups, self.param_groups, strict=True)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"load_state_dict: group {number} saved {len(saved['params'])} parameters, "
                    f"has {len(group['params'])}"
                )
        by_position = dict(self._positions())
        restored = {}
        for position, entry in state_dict["state"].items():
            p = by_position.get(int(position))
            if p is None:
                raise ValueError(f"load_state_dict: no parameter at position {position}")
            for name, value in entry.items():
                if isinstance(value, np.ndarray) and value.shape != p.shape and value.ndim:
                    raise ValueError(
                        f"load_state_dict: state {name!r} of parameter {position} has shape "
                        f"{value.shape}, the parameter {p.shape}"
                    )
            restored[p] = copy.deepcopy(entry)
        for saved, group in zip(groups, self.param_groups, strict=True):
            group.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
        self.state = restored

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for number, group in enumerate(self.param_groups):
            options = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {number}: {len(group['params'])} parameters, {options}")
        return "\n".join(lines) + "\n)"
