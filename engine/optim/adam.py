"""Adam and its relatives: AdamW (decoupled weight decay) and NAdam (Nesterov momentum).

The rules repeat PyTorch's single-tensor CPU code operation for operation, as in-place numpy
operations into scratch arrays (see engine/optim/_support.py for why).
"""

from __future__ import annotations

import numpy as np
from topograd.engine.averages import ewma_update_
from topograd.engine.optim._support import Workspace, check_flag
from topograd.engine.optim.optimizer import Optimizer, check_range


def _check_betas(betas):
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise ValueError(f"invalid betas: expected a pair (beta1, beta2), got {betas!r}")
    for index, beta in enumerate(betas):
        check_range(f"betas[{index}]", beta, low=0.0, high=1.0, high_open=True)


def _check_common(group):
    """The checks every Adam variant shares: lr, betas, eps and weight decay."""
    check_range("lr", group["lr"], low=0.0)
    _check_betas(group["betas"])
    check_range("eps", group["eps"], low=0.0)
    check_range("weight_decay", group["weight_decay"], low=0.0)


def _decay_(param, grad, group, out):
    """Apply weight decay: shrink W now (decoupled) or return grad + weight_decay * W."""
    weight_decay = group["weight_decay"]
    if weight_decay == 0:
        return grad
    if group["decoupled_weight_decay"]:
        param *= 1 - group["lr"] * weight_decay
        return grad
    np.multiply(param, weight_decay, out=out)
    return np.add(grad, out, out=out)


def _moments_(state, g, beta1, beta2, scratch):
    """m <- lerp(m, g, 1 - beta1); v <- beta2 * v + ((1 - beta2) * g) * g (PyTorch's order)."""
    ewma_update_(state["exp_avg"], g, beta1, scratch)
    exp_avg_sq = state["exp_avg_sq"]
    exp_avg_sq *= beta2
    np.multiply(g, 1 - beta2, out=scratch)
    scratch *= g
    exp_avg_sq += scratch


class Adam(Optimizer):
    """PyTorch's `torch.optim.Adam` (and AMSGrad), plus the notes' variants as options.

    With g = dL/dW (+ weight_decay * W unless `decoupled_weight_decay`) at step t::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v); use v_max for v below         (amsgrad only)
        W = W - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    `decoupled_weight_decay=True` shrinks the weights first, W = W - lr * weight_decay * W,
    and leaves the gradient alone (that is AdamW).

    The notes' variants:

    - `eps_inside_sqrt=True`: W = W - lr * m_hat / sqrt(v_hat + eps), with
      m_hat = m / (1 - beta1^t) and v_hat = v / (1 - beta2^t) (the notes' code). eps then
      bounds the step by lr * |m_hat| / sqrt(eps) (1e-4 for eps = 1e-8), not lr * |m_hat| / eps.
    - `bias_correction=False`: m_hat = m and v_hat = v (the notes: "can in practice be
      ignored"). The first steps are then much smaller: m starts at (1 - beta1) * g.

    >>> from topograd.engine import Tensor
    >>> w = Tensor([1.0, -2.0], requires_grad=True)
    >>> (w * w).sum().backward()
    >>> Adam([w], lr=0.1).step()
    >>> w.data.round(6)  # the first step is about lr * sign(g)
    array([ 0.9, -1.9])
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        *,
        decoupled_weight_decay=False,
        bias_correction=True,
        eps_inside_sqrt=False,
    ):
        self._workspace = Workspace()
        defaults = {
            "lr": lr,
            "betas": tuple(betas) if isinstance(betas, list) else betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "decoupled_weight_decay": decoupled_weight_decay,
            "bias_correction": bias_correction,
            "eps_inside_sqrt": eps_inside_sqrt,
        }
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        _check_common(group)
        for name in ("amsgrad", "decoupled_weight_decay", "bias_correction", "eps_inside_sqrt"):
            check_flag(name, group[name])

    def _update(self, param, grad, state, group):
        lr, eps = group["lr"], group["eps"]
        beta1, beta2 = group["betas"]
        work, scratch = self._workspace.take(param, 2)
        if "exp_avg" not in state:
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(param)
        g = _decay_(param, grad, group, work)
        _moments_(state, g, beta1, beta2, scratch)
        second = state["exp_avg_sq"]
        if group["amsgrad"]:
            second = np.maximum(state["max_exp_avg_sq"], second, out=state["max_exp_avg_sq"])

        step = state["step"]
        if group["bias_correction"]:
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
        else:
            bias_correction1 = bias_correction2 = 1.0  # dividing by 1.0 is exact: same code
        step_size = lr / bias_correction1
        denom = scratch
        if group["eps_inside_sqrt"]:  # sqrt(v / (1 - beta2^t) + eps)
            np.divide(second, bias_correction2, out=denom)
            denom += eps
            np.sqrt(denom, out=denom)
        else:  # PyTorch: sqrt(v) / sqrt(1 - beta2^t) + eps
            np.sqrt(second, out=denom)
            denom /= bias_correction2**0.5
            denom += eps
        # PyTorch's addcdiv_(m, denom, value=-step_size): W + ((-step_size) * m) / denom
        np.multiply(state["exp_avg"], -step_size, out=work)
        work /= denom
        param += work
        return work

    def _returns_step(self, group):
        # decoupled decay shrinks the weights before the step: two changes, not one array
        return not (group["decoupled_weight_decay"] and group["weight_decay"] != 0)


class AdamW(Adam):
    """PyTorch's `torch.optim.AdamW`: Adam with decoupled weight decay (default 1e-2).

    Each step first shrinks the weights, W = W - lr * weight_decay * W, then takes the Adam
    step from the plain gradient, so the decay is not rescaled by 1 / sqrt(v) as an L2 term
    (or Adam's coupled weight_decay) would be. Options as `Adam`.
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        bias_correction=True,
        eps_inside_sqrt=False,
    ):
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            decoupled_weight_decay=True,
            bias_correction=bias_correction,
            eps_inside_sqrt=eps_inside_sqrt,
        )


class NAdam(Optimizer):
    """PyTorch's `torch.optim.NAdam`: Adam with Nesterov momentum (Dozat 2016).

    With a momentum schedule mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay)) and
    P_t = mu_1 * ... * mu_t::

        m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g * g
        r = sqrt(v / (1 - beta2^t)) + eps
        W = W - lr * (1 - mu_t) / (1 - P_t) * g / r - lr * mu_{t+1} / (1 - P_t * mu_{t+1}) * m / r

    NOTE: this follows PyTorch (Dozat's paper, with its warming-up momentum schedule). The
    notes' NAdam is the simpler form with a constant beta1, Adam with m_{t-1} replaced by m_t:
    W = W - lr / sqrt(v_hat + eps) * (beta1 * m_hat + (1 - beta1) * g / (1 - beta1^t)).
    `decoupled_weight_decay=True` shrinks the weights first (W = W - lr * weight_decay * W),
    as AdamW does; otherwise weight_decay * W is added to the gradient.

    NOTE: P_t is kept as a Python float (float64). PyTorch keeps it in a 0-d tensor of the
    default dtype, which is float32 unless `torch.set_default_dtype(torch.float64)`.
    """

    def __init__(
        self,
        params,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        momentum_decay=4e-3,
        decoupled_weight_decay=False,
    ):
        self._workspace = Workspace()
        defaults = {
            "lr": lr,
            "betas": tuple(betas) if isinstance(betas, list) else betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum_decay": momentum_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def _check_hyperparameters(self, group):
        _check_common(group)
        check_range("momentum_decay", group["momentum_decay"], low=0.0)
        check_flag("decoupled_weight_decay", group["decoupled_weight_decay"])

    def _update(self, param, grad, state, group):
        lr, eps, momentum_decay = group["lr"], group["eps"], group["momentum_decay"]
        beta1, beta2 = group["betas"]
        work, scratch = self._workspace.take(param, 2)
        if "exp_avg" not in state:
            state["mu_product"] = 1.0
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
        step = state["step"]
        bias_correction2 = 1 - beta2**step
        g = _decay_(param, grad, group, work)
        mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
        mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
        mu_product = state["mu_product"] = state["mu_product"] * mu
        _moments_(state, g, beta1, beta2, scratch)
        denom = np.divide(state["exp_avg_sq"], bias_correction2, out=scratch)
        np.sqrt(denom, out=denom)
        denom += eps
        mu_product_next = mu_product * mu_next
        np.multiply(g, -lr * (1.0 - mu) / (1.0 - mu_product), out=work)
        work /= denom
        param += work
        np.multiply(state["exp_avg"], (-lr * mu_next) / (1.0 - mu_product_next), out=work)
        work /= denom
        param += work
