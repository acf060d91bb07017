"""Per-coordinate step sizes from the squared gradients: Adagrad, RMSprop and Adadelta.

Each rule repeats PyTorch's single-tensor CPU code operation for operation (the same products,
in the same order, with the same scalars), written as in-place numpy operations into scratch
arrays. `g` below is the gradient plus weight_decay * W (coupled decay, PyTorch's
`grad.add(param, alpha=weight_decay)`).
"""

from __future__ import annotations

import numpy as np
from topograd.engine.averages import ewma_update_
from topograd.engine.optim._support import Workspace, check_flag
from topograd.engine.optim.optimizer import Optimizer, check_range


def _decayed_gradient(param, grad, weight_decay, out):
    """grad + weight_decay * param, into `out` (or `grad` itself when there is no decay)."""
    if weight_decay == 0:
        return grad
    np.multiply(param, weight_decay, out=out)
    return np.add(grad, out, out=out)


def _square_average_(average, g, rho, scratch):
    """In place: average <- rho * average + ((1 - rho) * g) * g (PyTorch's mul_ + addcmul_)."""
    average *= rho
    np.multiply(g, 1 - rho, out=scratch)
    scratch *= g
    average += scratch


class Adagrad(Optimizer):
    """PyTorch's `torch.optim.Adagrad`: steps shrink with the sum of all squared gradients.

    ::

        clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g * g                      (s starts at initial_accumulator_value)
        W = W - clr * g / (sqrt(s) + eps)

    The notes put eps inside the square root (sqrt(s + eps)); this follows PyTorch.

    >>> from topograd.engine import Tensor
    >>> w = Tensor([1.0, -2.0], requires_grad=True)
    >>> (w * w).sum().backward()
    >>> Adagrad([w], lr=0.5).step()
    >>> w.data  # the first step is lr * sign(g), whatever the gradient's size
    array([ 0.5, -1.5])
    """

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
    ):
        self._workspace = Workspace()
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "eps": eps,
        }
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        check_range("lr", group["lr"], low=0.0)
        check_range("lr_decay", group["lr_decay"], low=0.0)
        check_range("weight_decay", group["weight_decay"], low=0.0)
        check_range("initial_accumulator_value", group["initial_accumulator_value"], low=0.0)
        check_range("eps", group["eps"], low=0.0)

    def _update(self, param, grad, state, group):
        work, scratch = self._workspace.take(param, 2)
        g = _decayed_gradient(param, grad, group["weight_decay"], work)
        total = state.get("sum")
        if total is None:
            # NOTE: the group's own initial_accumulator_value. PyTorch fills the sums in its
            # constructor from the constructor's argument, so a per-group value is ignored there.
            total = state["sum"] = np.full_like(param, group["initial_accumulator_value"])
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        total += np.multiply(g, g, out=scratch)
        np.sqrt(total, out=scratch)
        scratch += group["eps"]
        np.multiply(g, -clr, out=work)
        work /= scratch
        param += work


class RMSprop(Optimizer):
    """PyTorch's `torch.optim.RMSprop`: steps scaled by a moving average of squared gradients.

    ::

        s = alpha * s + (1 - alpha) * g * g
        a = alpha * a + (1 - alpha) * g              (centered only)
        r = sqrt(s - a * a) + eps   if centered  else  sqrt(s) + eps
        b = momentum * b + g / r;  W = W - lr * b    if momentum > 0
        W = W - lr * g / r                           otherwise

    `eps_inside_sqrt=True` is the notes' form, r = sqrt(s + eps) (centered: sqrt(s - a*a + eps)),
    where eps = 1e-8 bounds the step by lr * |g| / 1e-4 instead of lr * |g| / 1e-8.

    >>> from topograd.engine import Tensor
    >>> w = Tensor([1.0, -2.0], requires_grad=True)
    >>> (w * w).sum().backward()
    >>> RMSprop([w], lr=0.01).step()
    >>> w.data.round(6)  # the first step is lr / sqrt(1 - alpha) = 0.1 in each coordinate
    array([ 0.9, -1.9])
    """

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        *,
        eps_inside_sqrt=False,
    ):
        self._workspace = Workspace()
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
            "eps_inside_sqrt": eps_inside_sqrt,
        }
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        check_range("lr", group["lr"], low=0.0)
        # NOTE: PyTorch only asks alpha >= 0; above 1 the average's weights turn negative.
        check_range("alpha", group["alpha"], low=0.0, high=1.0)
        check_range("eps", group["eps"], low=0.0)
        check_range("weight_decay", group["weight_decay"], low=0.0)
        check_range("momentum", group["momentum"], low=0.0)
        check_flag("centered", group["centered"])
        check_flag("eps_inside_sqrt", group["eps_inside_sqrt"])

    def _update(self, param, grad, state, group):
        alpha, eps, momentum = group["alpha"], group["eps"], group["momentum"]
        work, scratch = self._workspace.take(param, 2)
        g = _decayed_gradient(param, grad, group["weight_decay"], work)
        if "square_avg" not in state:
            state["square_avg"] = np.zeros_like(param)
            if momentum > 0:
                state["momentum_buffer"] = np.zeros_like(param)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(param)
        _square_average_(state["square_avg"], g, alpha, scratch)
        root = scratch
        variance = state["square_avg"]
        if group["centered"]:  # s - a * a (PyTorch's addcmul with value=-1)
            grad_avg = ewma_update_(state["grad_avg"], g, alpha, scratch)
            np.multiply(grad_avg, grad_avg, out=root)
            variance = np.subtract(variance, root, out=root)
        if group["eps_inside_sqrt"]:
            np.add(variance, eps, out=root)
            np.sqrt(root, out=root)
        else:
            np.sqrt(variance, out=root)
            root += eps
        if momentum > 0:
            buffer = state["momentum_buffer"]
            buffer *= momentum
            buffer += np.divide(g, root, out=root)
            param -= np.multiply(buffer, group["lr"], out=root)
        else:
            np.multiply(g, -group["lr"], out=work)
            work /= root
            param += work


class Adadelta(Optimizer):
    """PyTorch's `torch.optim.Adadelta`: no hand-tuned step size, units from past updates.

    ::

        s = rho * s + (1 - rho) * g * g
        d = sqrt(u + eps) / sqrt(s + eps) * g
        u = rho * u + (1 - rho) * d * d
        W = W - lr * d           (lr = 1.0 is Zeiler's method; it only rescales the steps)
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
        self._workspace = Workspace()
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        check_range("lr", group["lr"], low=0.0)
        check_range("rho", group["rho"], low=0.0, high=1.0)
        check_range("eps", group["eps"], low=0.0)
        check_range("weight_decay", group["weight_decay"], low=0.0)

    def _update(self, param, grad, state, group):
        rho, eps = group["rho"], group["eps"]
        work, scratch, delta = self._workspace.take(param, 3)
        g = _decayed_gradient(param, grad, group["weight_decay"], work)
        if "square_avg" not in state:
            state["square_avg"] = np.zeros_like(param)
            state["acc_delta"] = np.zeros_like(param)
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        _square_average_(square_avg, g, rho, scratch)
        np.add(square_avg, eps, out=scratch)
        np.sqrt(scratch, out=scratch)
        np.add(acc_delta, eps, out=delta)
        np.sqrt(delta, out=delta)
        delta /= scratch
        delta *= g
        _square_average_(acc_delta, delta, rho, scratch)
        param -= np.multiply(delta, group["lr"], out=scratch)
