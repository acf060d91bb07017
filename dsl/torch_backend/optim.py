"""Engine optimizers as torch.optim ones: the same rule, hyperparameters, groups and state.

Every engine optimizer repeats torch.optim's single-tensor update (see engine/optim), so the
translation is a table: the same class, the same hyperparameters under the same names, the
same parameter groups in the same order, and the per-parameter state under the same keys.
Trajectories agree to about 1e-14 relative over 50 steps (float64), not bit for bit: torch's
CPU kernels fuse some multiply-adds (tests/dsl/torch_backend/test_optim_translation.py).

=========================  ====================================================
engine (model file name)   torch
=========================  ====================================================
SGD (sgd)                  torch.optim.SGD (+ a step counter, see below)
Adam (adam)                torch.optim.Adam (decoupled_weight_decay, amsgrad)
AdamW (adamw)              torch.optim.AdamW
NAdam (nadam)              torch.optim.NAdam (mu_product kept in float64)
RMSprop (rmsprop)          torch.optim.RMSprop
Adagrad (adagrad)          torch.optim.Adagrad
Adadelta (adadelta)        torch.optim.Adadelta
=========================  ====================================================

The lecture notes' variants that the engine offers as options have no torch counterpart and
raise UnsupportedError naming the option: SGD ``momentum_form="ewma"`` and
``nesterov_form="lookahead"``, Adam/AdamW ``bias_correction=False`` and
``eps_inside_sqrt=True``, RMSprop ``eps_inside_sqrt=True``.

Parameters are matched by position: ``engine_params[i]`` (the engine model's
``parameters()``, in order) is ``torch_params[i]``. The engine optimizer's groups may list them
in another order (the model file's ``decay weights`` puts the weights first); the torch groups
list the counterparts in the engine groups' order, so the two ``state_dict()`` layouts number
the parameters alike. ``transposed`` holds the positions i whose torch tensor is the engine
array transposed (a Linear weight: the engine's W is (in, out), torch's (out, in)); their state
arrays (momentum buffers, moments) are transposed the same way in both directions.

Where the two libraries keep state differently, the translation makes torch keep the engine's:

- torch's SGD counts no steps; the engine keeps ``step`` for every parameter. The torch SGD
  made here has a step post-hook that counts them (``state["step"]``, an int), so a
  checkpoint's step counts survive a run on torch.
- torch's NAdam keeps ``mu_product`` in float32 unless the default dtype is float64; the engine
  keeps it in float64 (a Python float). The translation creates NAdam's state up front with a
  float64 ``mu_product`` (step 0, zero moments), which torch then uses as is.
- torch's Adagrad fills its sums from the constructor's ``initial_accumulator_value``; the
  engine from each group's own. The translation fills them from each group's.

State created up front (step 0) is not copied back: the engine creates state at a parameter's
first step.

>>> import torch
>>> from topograd.engine import nn, optim
>>> model = nn.Linear(3, 2)
>>> module = torch.nn.Linear(3, 2, dtype=torch.float64)
>>> adam = optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
>>> torch_adam = to_torch_optimizer(
...     adam, model.parameters(), list(module.parameters()), transposed={0}
... )
>>> type(torch_adam).__name__, torch_adam.param_groups[0]["amsgrad"]
('Adam', True)
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Collection, Sequence

import numpy as np
from topograd.dsl.torch_backend import UnsupportedError, require_torch
from topograd.dsl.torch_backend.counterparts import OPTIMIZER_TABLE, TORCH_LACKS
from topograd.engine import optim as engine_optim

torch = require_torch()

# engine class -> (model file name, torch.optim class name, hyperparameters torch shares)
_SHARED = {
    engine_optim.OPTIMIZERS.get(name): (name, torch_name, shared)
    for name, (torch_name, shared) in OPTIMIZER_TABLE.items()
}

_SCALAR_STATE = ("step", "mu_product")  # numbers, not arrays shaped like the parameter


def to_torch_optimizer(
    optimizer,
    engine_params: Sequence,
    torch_params: Sequence,
    *,
    transposed: Collection[int] = (),
    foreach: bool | None = None,
):
    """A torch.optim optimizer equal to the engine `optimizer`, state included.

    Same class, hyperparameters and parameter groups; `torch_params[i]` stands for
    `engine_params[i]`, and `transposed` lists the positions whose torch tensor is the engine
    array transposed (see the module docstring). The optimizer's current state (moments, step
    counts, the groups' lr and initial_lr) is copied, so a run continues where the engine one
    is. `foreach` is passed to torch (None: torch's choice, single-tensor on the CPU, which
    is the engine's arithmetic). Raises UnsupportedError naming an option torch lacks.
    """
    name, torch_name, shared = _describe(optimizer)
    pairs = _pairs(optimizer, engine_params, torch_params, transposed)
    groups = [
        {"params": [torch_param for _, torch_param, _ in group], **_hyperparameters(source, shared)}
        for group, source in zip(pairs, optimizer.param_groups, strict=True)
    ]
    torch_class = getattr(torch.optim, torch_name)
    accepted = inspect.signature(torch_class).parameters  # (AdamW takes no decoupled_weight_decay)
    defaults = {
        k: v for k, v in _hyperparameters(optimizer.defaults, shared).items() if k in accepted
    }
    torch_optimizer = torch_class(groups, **defaults, foreach=foreach)
    if name == "sgd":
        torch_optimizer.register_step_post_hook(_count_steps)
    copy_optimizer_state_to_torch(
        optimizer, torch_optimizer, engine_params, torch_params, transposed=transposed
    )
    return torch_optimizer


def copy_optimizer_state_to_torch(
    optimizer,
    torch_optimizer,
    engine_params: Sequence,
    torch_params: Sequence,
    *,
    transposed: Collection[int] = (),
) -> None:
    """Overwrite `torch_optimizer`'s state and group hyperparameters with the engine's."""
    name, _, shared = _describe(optimizer)
    pairs = _pairs(optimizer, engine_params, torch_params, transposed)
    _check_groups(pairs, torch_optimizer)
    state = defaultdict(dict)
    for group, source, target in zip(
        pairs, optimizer.param_groups, torch_optimizer.param_groups, strict=True
    ):
        target.update(_hyperparameters(source, shared))
        for engine_param, torch_param, transpose in group:
            entry = optimizer.state.get(engine_param)
            if entry is None:
                fresh = _fresh_state(name, source, torch_param)
                if fresh:
                    state[torch_param] = fresh
                continue
            state[torch_param] = {
                key: _to_torch(name, key, value, torch_param, transpose)
                for key, value in entry.items()
            }
    torch_optimizer.state = state


def copy_optimizer_state_to_engine(
    torch_optimizer,
    optimizer,
    engine_params: Sequence,
    torch_params: Sequence,
    *,
    transposed: Collection[int] = (),
) -> None:
    """Overwrite the engine `optimizer`'s state and group hyperparameters with torch's
    (through its load_state_dict, which checks the shapes)."""
    _, _, shared = _describe(optimizer)
    pairs = _pairs(optimizer, engine_params, torch_params, transposed)
    _check_groups(pairs, torch_optimizer)
    saved = optimizer.state_dict()
    state = {}
    index = 0
    for group, target, source in zip(
        pairs, saved["param_groups"], torch_optimizer.param_groups, strict=True
    ):
        for key in (*shared, "initial_lr"):
            if key in source:
                target[key] = _engine_hyperparameter(source[key])
        for engine_param, torch_param, transpose in group:
            entry = torch_optimizer.state.get(torch_param)
            if entry:
                if "step" not in entry:
                    raise ValueError(
                        f"the torch {type(torch_optimizer).__name__}'s state of parameter "
                        f"{index} has no step count (build it with to_torch_optimizer)"
                    )
                if int(entry["step"]) > 0:
                    state[index] = {
                        key: _to_engine(key, value, engine_param, transpose)
                        for key, value in entry.items()
                    }
            index += 1
    saved["state"] = state
    optimizer.load_state_dict(saved)


# --- helpers --------------------------------------------------------------------------------
def _describe(optimizer):
    """(model file name, torch class name, shared hyperparameters); UnsupportedError for an
    optimizer or option without a counterpart."""
    entry = _SHARED.get(type(optimizer))
    if entry is None:
        raise UnsupportedError(f"the optimizer {type(optimizer).__name__}")
    name = entry[0]
    for option, only, hint in TORCH_LACKS.get(name, ()):
        for group in optimizer.param_groups:
            if group[option] != only:
                raise UnsupportedError(f"{name}'s {option}={group[option]!r}", hint)
    return entry


def _pairs(optimizer, engine_params, torch_params, transposed):
    """Per engine group: (engine param, its torch counterpart, whether torch's is transposed).

    Checks that the lists correspond (length, and each shape in torch's layout)."""
    engine_params, torch_params = list(engine_params), list(torch_params)
    if len(engine_params) != len(torch_params):
        raise ValueError(
            f"{len(engine_params)} engine parameters but {len(torch_params)} torch parameters; "
            "they must correspond one to one, in order"
        )
    transposed = frozenset(int(i) for i in transposed)
    outside = sorted(i for i in transposed if not 0 <= i < len(engine_params))
    if outside:
        raise ValueError(f"transposed positions {outside} are outside 0..{len(engine_params) - 1}")
    positions = {id(p): index for index, p in enumerate(engine_params)}
    pairs = []
    for number, group in enumerate(optimizer.param_groups):
        entries = []
        for p in group["params"]:
            position = positions.get(id(p))
            if position is None:
                raise ValueError(
                    f"parameter {p.name or tuple(p.shape)} of optimizer group {number} is not "
                    "among the engine parameters given"
                )
            torch_param, transpose = torch_params[position], position in transposed
            shape = tuple(p.shape)[::-1] if transpose else tuple(p.shape)
            if shape != tuple(torch_param.shape):
                raise ValueError(
                    f"engine parameter {position} has shape {tuple(p.shape)}, its torch "
                    f"counterpart {tuple(torch_param.shape)}"
                    + ("" if transpose else " (is the position missing from transposed?)")
                )
            entries.append((p, torch_param, transpose))
        pairs.append(entries)
    return pairs


def _check_groups(pairs, torch_optimizer) -> None:
    """Raise ValueError unless torch's groups hold the counterparts in the engine's order."""
    if len(pairs) != len(torch_optimizer.param_groups):
        raise ValueError(
            f"the engine optimizer has {len(pairs)} parameter groups, the torch one "
            f"{len(torch_optimizer.param_groups)}"
        )
    for number, (group, target) in enumerate(zip(pairs, torch_optimizer.param_groups)):
        expected = [id(torch_param) for _, torch_param, _ in group]
        if expected != [id(p) for p in target["params"]]:
            raise ValueError(
                f"torch parameter group {number} does not hold the counterparts of the engine "
                f"group's parameters in the same order"
            )


def _hyperparameters(group: dict, shared) -> dict:
    """The torch group's entries for an engine group: the shared names and initial_lr (which
    a schedule adds and torch's schedulers read)."""
    values = {key: group[key] for key in shared}
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    if "initial_lr" in group:
        values["initial_lr"] = group["initial_lr"]
    return values


def _engine_hyperparameter(value):
    if isinstance(value, torch.Tensor):
        return value.item()
    return tuple(_engine_hyperparameter(v) for v in value) if isinstance(value, tuple) else value


def _scalar_dtype():
    """The dtype torch gives its step counts (torch.optim.optimizer._get_scalar_dtype)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _fresh_state(name: str, group: dict, torch_param) -> dict:
    """The state torch must start from to match the engine, where torch's own start differs
    (see the module docstring); empty where torch's lazy start is the engine's."""
    if name == "adagrad":
        value = group["initial_accumulator_value"]
        return {
            "step": torch.tensor(0.0, dtype=_scalar_dtype()),
            "sum": torch.full_like(torch_param, value, memory_format=torch.preserve_format),
        }
    if name == "nadam":
        return {
            "step": torch.tensor(0.0, dtype=_scalar_dtype()),
            "mu_product": torch.tensor(1.0, dtype=torch.float64),
            "exp_avg": torch.zeros_like(torch_param, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(torch_param, memory_format=torch.preserve_format),
        }
    return {}


def _to_torch(name: str, key: str, value, torch_param, transpose: bool):
    """One engine state entry in torch's form."""
    if key == "step":
        if name == "sgd":
            return int(value)
        return torch.tensor(float(value), dtype=_scalar_dtype())
    if key == "mu_product":
        return torch.tensor(float(value), dtype=torch.float64)
    array = np.asarray(value)
    if transpose:
        array = array.T
    if array.shape != tuple(torch_param.shape):
        raise ValueError(
            f"optimizer state {key!r} has shape {array.shape} in torch's layout, the torch "
            f"parameter {tuple(torch_param.shape)}"
        )
    return torch.tensor(array, dtype=torch_param.dtype, device=torch_param.device)


def _to_engine(key: str, value, engine_param, transpose: bool):
    """One torch state entry in the engine's form (a copy in C order, the parameter's dtype)."""
    if key == "step":
        return int(value)
    if key in _SCALAR_STATE:
        return float(value)
    array = value.detach().cpu().numpy()
    if transpose:
        array = array.T
    return np.array(array, dtype=engine_param.dtype, order="C")


def _count_steps(torch_optimizer, args, kwargs) -> None:
    """SGD's step post-hook: count each parameter's steps as the engine does (those with a
    gradient), because torch.optim.SGD keeps no step count."""
    for group in torch_optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                state = torch_optimizer.state[p]
                state["step"] = state.get("step", 0) + 1
