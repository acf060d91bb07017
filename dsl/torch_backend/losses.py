"""The train section's loss in PyTorch: the engine's four losses with the same math, options
and checks (engine/functional.py), plus the same L2 penalty (dsl.build.build_loss).

Targets may be numpy arrays (as the engine's batches give them) or tensors; they are checked
and converted here, in the outputs' dtype and device.
"""

from __future__ import annotations

import numpy as np
from topograd.dsl.build import PER_OUTPUT_LOSSES, as_outputs, decayed_parameters
from topograd.dsl.torch_backend import require_torch
from topograd.dsl.torch_backend.modules import torch_parameters
from topograd.engine.functional import class_labels

torch = require_torch()
F = torch.nn.functional


def _reduce(losses, reduction):
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _numpy(targets) -> np.ndarray:
    if isinstance(targets, torch.Tensor):
        return targets.detach().cpu().numpy()
    return np.asarray(targets)


def _labels(targets, outputs, loss):
    """Integer class labels as a long tensor, checked as the engine checks them."""
    labels = class_labels(_numpy(targets), _Shaped(outputs), loss)
    return torch.as_tensor(labels, dtype=torch.long, device=outputs.device)


class _Shaped:
    """What the engine's label check reads of the logits: their shape, as a tuple."""

    def __init__(self, tensor):
        self.shape = tuple(tensor.shape)


def _values(targets, outputs):
    """Targets as a tensor in the outputs' dtype and device (constants: no gradient)."""
    if isinstance(targets, torch.Tensor):
        return targets.detach().to(dtype=outputs.dtype, device=outputs.device)
    return torch.as_tensor(np.asarray(targets), dtype=outputs.dtype, device=outputs.device)


def cross_entropy(logits, labels, reduction="mean"):
    """Softmax cross-entropy of (N, C) logits against N integer class labels."""
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, C), got shape {tuple(logits.shape)}")
    labels = _labels(labels, logits, "cross_entropy")
    return _reduce(F.cross_entropy(logits, labels, reduction="none"), reduction)


def mse_loss(prediction, target, reduction="mean"):
    """Mean of squared differences; shapes must match exactly (no silent broadcasting)."""
    target = _values(target, prediction)
    if prediction.shape != target.shape:
        raise ValueError(
            f"mse_loss: prediction shape {tuple(prediction.shape)} != target shape "
            f"{tuple(target.shape)}"
        )
    diff = prediction - target
    return _reduce(diff * diff, reduction)


def _softplus(x):
    """log(1 + e^x) as the engine computes it (logaddexp: no threshold, nothing lost)."""
    return torch.logaddexp(torch.zeros((), dtype=x.dtype, device=x.device), x)


def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """y * softplus(-x) + (1 - y) * softplus(x), the engine's form (keeps tiny losses)."""
    targets = _values(targets, logits)
    if logits.shape != targets.shape:
        raise ValueError(
            f"binary_cross_entropy_with_logits: logits shape {tuple(logits.shape)} "
            f"!= targets shape {tuple(targets.shape)}"
        )
    losses = targets * _softplus(-logits) + (1.0 - targets) * _softplus(logits)
    return _reduce(losses, reduction)


def hinge_loss(scores, targets, margin=1.0, reduction="mean"):
    """SVM hinge loss: binary for (N,) or (N, 1) scores (labels -1/+1, or 0/1 read as -1/+1),
    multiclass (the cs231n SVM) for (N, C) scores and integer labels."""
    if scores.ndim == 1 or (scores.ndim == 2 and scores.shape[1] == 1):
        y = _numpy(targets).astype(_numpy_dtype(scores)).reshape(tuple(scores.shape))
        if np.all(np.isin(y, (0.0, 1.0))):
            y = 2.0 * y - 1.0
        if not np.all(np.isin(y, (-1.0, 1.0))):
            raise ValueError("hinge_loss: binary targets must be -1 and +1 (or classes 0 and 1)")
        return _reduce(torch.relu(margin - scores * _values(y, scores)), reduction)
    if scores.ndim != 2:
        raise ValueError(
            f"hinge_loss: scores must be (N,), (N, 1) or (N, C), got {tuple(scores.shape)}"
        )
    labels = _labels(targets, scores, "hinge_loss")
    rows = torch.arange(len(labels), device=scores.device)
    correct = scores[rows, labels].reshape(len(labels), 1)
    others = torch.ones_like(scores)
    others[rows, labels] = 0.0
    margins = torch.relu(scores - correct + margin) * others
    return _reduce(margins.sum(dim=1), reduction)


def _numpy_dtype(tensor):
    return np.float32 if tensor.dtype == torch.float32 else np.float64


LOSSES = {
    "cross_entropy": cross_entropy,
    "mse": mse_loss,
    "bce_with_logits": binary_cross_entropy_with_logits,
    "hinge": hinge_loss,
}
"""The engine's LOSSES by the same names, in torch."""


def to_torch_loss(spec, module, model):
    """loss(outputs, targets) in torch: the file's loss with its options, plus
    (l2 / 2) * sum of squared weights over the torch counterparts of the engine model's
    decayed parameters (dsl.build.decayed_parameters, matched by position). For
    bce_with_logits and mse, (N,) targets meet (N, 1) outputs (dsl.build.as_outputs).

    `model` is the engine model that `module` was made from (it says which are the weights).
    """
    entry = spec.train.loss
    if entry.name not in LOSSES:
        raise ValueError(f"unknown loss {entry.name!r} (known: {', '.join(LOSSES)})")
    function, options = LOSSES[entry.name], dict(entry.kwargs)
    strength = spec.train.l2
    weights = []
    if strength > 0:
        chosen = {id(p) for p in decayed_parameters(model)}
        params = torch_parameters(module)
        weights = [t for p, t in zip(model.parameters(), params, strict=True) if id(p) in chosen]

    per_output = entry.name in PER_OUTPUT_LOSSES

    def loss(outputs, targets):
        if per_output:  # (N,) targets meet (N, 1) outputs, as in dsl.build.build_loss
            targets = as_outputs(outputs, targets)
        value = function(outputs, targets, **options)
        if weights:
            penalty = (weights[0] * weights[0]).sum()
            for w in weights[1:]:
                penalty = penalty + (w * w).sum()
            value = value + 0.5 * strength * penalty
        return value

    loss.__name__ = entry.name
    return loss
