"""Stochastic gradient descent with momentum, Nesterov momentum and coupled weight decay."""

from __future__ import annotations

import numpy as np
from topograd.engine.averages import ewma_update_
from topograd.engine.optim._support import Workspace, check_choice, check_flag
from topograd.engine.optim.optimizer import Optimizer, check_range


class SGD(Optimizer):
    """PyTorch's `torch.optim.SGD`, step for step, plus the notes' two other ways to write it.

    With g = dL/dW + weight_decay * W (coupled decay: the gradient of an L2 term
    weight_decay/2 * ||W||^2 in the loss), the default (`momentum_form="torch"`) is::

        b = g                                 on the first step
        b = momentum * b + (1 - dampening) * g  afterwards
        d = g + momentum * b  if nesterov  else  b     (d = g when momentum == 0)
        W = W - lr * d

    `momentum_form="ewma"` is the notes' momentum, an exponential moving average of the
    gradients started from zero (``v = momentum * v + (1 - momentum) * g; W = W - lr * v``).
    It takes steps (1 - momentum) times as long as PyTorch's for the same lr, so an lr tuned
    for one form is wrong for the other; it has no dampening and no Nesterov variant.

    `nesterov_form="lookahead"` (with nesterov=True) is the notes' Nesterov momentum, the
    gradient taken at the point the momentum is about to carry the weights to::

        v = momentum * v - lr * grad(W + momentum * v);   W = W + v

    It needs that gradient, so `step(closure)` moves the weights to W + momentum * v, calls the
    closure (which must zero the gradients, compute the loss and call backward), moves them
    back and updates; calling `step()` without a closure raises ValueError. Weight decay here
    is the L2 gradient at the look-ahead point too, so it still equals an L2 term in the loss.
    PyTorch's form is this same method rewritten in the variable W + momentum * v, so that it
    needs only the ordinary gradient: the look-ahead weights W + momentum * v follow PyTorch's
    trajectory (the tests check it), while W itself lags behind it by momentum * v.

    >>> from topograd.engine import Tensor
    >>> w = Tensor([1.0, -2.0], requires_grad=True)
    >>> optimizer = SGD([w], lr=0.1, momentum=0.9)
    >>> (w * w).sum().backward()
    >>> optimizer.step()
    >>> w.data
    array([ 0.8, -1.6])
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0.0,
        dampening=0.0,
        weight_decay=0.0,
        nesterov=False,
        *,
        momentum_form="torch",
        nesterov_form="torch",
    ):
        # NOTE: PyTorch's order and defaults (lr=1e-3; weight_decay before nesterov).
        self._workspace = Workspace()
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "momentum_form": momentum_form,
            "nesterov_form": nesterov_form,
        }
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        check_range("lr", group["lr"], low=0.0)
        check_range("momentum", group["momentum"], low=0.0)
        # NOTE: stricter than PyTorch, which takes any dampening: outside [0, 1] the gradient's
        # weight (1 - dampening) would be negative or larger than one.
        check_range("dampening", group["dampening"], low=0.0, high=1.0)
        check_range("weight_decay", group["weight_decay"], low=0.0)
        check_flag("nesterov", group["nesterov"])
        check_choice("momentum_form", group["momentum_form"], ("torch", "ewma"))
        check_choice("nesterov_form", group["nesterov_form"], ("torch", "lookahead"))
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum > 0 and zero dampening, got "
                f"momentum={group['momentum']!r}, dampening={group['dampening']!r}"
            )
        if group["momentum_form"] == "ewma":
            if group["nesterov"] or group["dampening"] != 0:
                raise ValueError(
                    "momentum_form='ewma' has no Nesterov variant and no dampening, got "
                    f"nesterov={group['nesterov']!r}, dampening={group['dampening']!r}"
                )
            check_range("momentum", group["momentum"], low=0.0, high=1.0, high_open=True)
        if group["nesterov_form"] == "lookahead" and not group["nesterov"]:
            raise ValueError("nesterov_form='lookahead' needs nesterov=True")

    # --- the look-ahead form moves the weights around the closure ----------------------------
    def step(self, closure=None):
        """Update every parameter that has a gradient (see the class docstring for closures)."""
        groups = [
            g for g in self.param_groups if g["nesterov"] and g["nesterov_form"] == "lookahead"
        ]
        if not groups:
            return super().step(closure)
        if closure is None:
            raise ValueError(
                "SGD(nesterov_form='lookahead') takes the gradient at W + momentum * v: pass "
                "step(closure), where closure() zeroes the gradients, computes the loss, calls "
                "backward() and returns the loss"
            )

        def closure_at_lookahead():
            moved = _move_to_lookahead(groups, self.state)
            try:
                return closure()
            finally:
                for p, original in moved:
                    _restore(p, original)

        return super().step(closure_at_lookahead)

    # --- one parameter ---------------------------------------------------------------------
    def _update(self, param, grad, state, group):
        if group["nesterov_form"] == "lookahead":  # (the checks made sure nesterov is on)
            return self._lookahead_update(param, grad, state, group)
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        work, scratch = self._workspace.take(param, 2)
        if weight_decay != 0:  # g = grad + weight_decay * W (PyTorch's grad.add(param, alpha))
            np.multiply(param, weight_decay, out=work)
            grad = np.add(grad, work, out=work)
        if group["momentum_form"] == "ewma":
            velocity = state.get("momentum_buffer")
            if velocity is None:
                velocity = state["momentum_buffer"] = np.zeros_like(param)
            grad = ewma_update_(velocity, grad, momentum, scratch)
        elif momentum != 0:
            buffer = state.get("momentum_buffer")
            if buffer is None:  # PyTorch starts the buffer at the first gradient, not at zero
                buffer = state["momentum_buffer"] = np.array(grad, copy=True)
            else:
                buffer *= momentum
                if group["dampening"] == 0:
                    buffer += grad
                else:
                    buffer += np.multiply(grad, 1 - group["dampening"], out=scratch)
            if group["nesterov"]:
                np.multiply(buffer, momentum, out=scratch)
                grad = np.add(grad, scratch, out=scratch)
            else:
                grad = buffer
        step = np.multiply(grad, lr, out=scratch)
        param -= step
        return step

    def _returns_step(self, group):
        return True  # the step subtracted (or, looking ahead, the velocity added)

    def _lookahead_update(self, param, grad, state, group):
        """v = momentum * v - lr * (grad + weight_decay * (W + momentum * v)); W = W + v."""
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        velocity = state.get("velocity")
        if velocity is None:
            velocity = state["velocity"] = np.zeros_like(param)
        work, scratch = self._workspace.take(param, 2)
        if weight_decay != 0:  # the L2 gradient at the look-ahead point, where grad was taken
            np.multiply(velocity, momentum, out=work)
            work += param
            work *= weight_decay
            grad = np.add(grad, work, out=work)
        velocity *= momentum
        velocity -= np.multiply(grad, lr, out=scratch)
        param += velocity
        return velocity


def _move_to_lookahead(groups, state):
    """Shift each parameter with a velocity to W + momentum * v; return (param, original W)."""
    moved = []
    for group in groups:
        for p in group["params"]:
            velocity = state.get(p, {}).get("velocity")
            if velocity is None:  # no step yet: v = 0, the look-ahead point is W itself
                continue
            original = p.data.copy()
            if type(p._data) is np.ndarray:
                p._data += group["momentum"] * velocity
                p._mark_changed()
            else:  # a scalar parameter is stored as a Python float
                p.data = original + group["momentum"] * velocity
            moved.append((p, original))
    return moved


def _restore(p, original):
    """Put the exact original weights back (in place for arrays, keeping aliases valid)."""
    if type(p._data) is np.ndarray:
        p._data[...] = original
        p._mark_changed()
    else:
        p.data = original
