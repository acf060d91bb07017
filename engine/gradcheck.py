"""Gradient checking with central differences and the notes' relative error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.modes import no_grad
from engine.tensor import Tensor


def relative_error(analytic, numeric) -> float:
    """||a - n|| / (||a|| + ||n||), the notes' measure; 0 when both are exactly zero."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    denominator = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    if denominator == 0.0:
        return 0.0
    return float(np.linalg.norm(analytic - numeric) / denominator)


@dataclass
class GradcheckResult:
    """Per-input analytic and numeric gradients and their relative errors."""

    analytic: list[np.ndarray]
    numeric: list[np.ndarray]
    errors: list[float]

    @property
    def max_error(self) -> float:
        """The worst input's relative error."""
        return max(self.errors, default=0.0)

    @property
    def overall_error(self) -> float:
        """The relative error of all inputs' gradients taken together as one vector."""
        return relative_error(
            np.concatenate([np.ravel(a) for a in self.analytic]),
            np.concatenate([np.ravel(n) for n in self.numeric]),
        )

    def passed(self, tol: float = 1e-6) -> bool:
        return self.max_error < tol

    def __repr__(self):
        per_input = ", ".join(f"{e:.3g}" for e in self.errors)
        return f"GradcheckResult(max_error={self.max_error:.3g}, per_input=[{per_input}])"


def gradcheck(fn, *inputs, eps=1e-6, seed=0) -> GradcheckResult:
    """Compare the engine's gradients of `fn(*inputs)` with central differences.

    Inputs that are Tensors with requires_grad=True are checked (arrays are wrapped and all
    checked). A non-scalar output is reduced to sum(out * w) with fixed random weights w, so
    every output component takes part. Check in float64: in float32 the differences
    themselves are only good to about 1e-3.
    """
    tensors = [x if isinstance(x, Tensor) else Tensor(x, requires_grad=True) for x in inputs]
    checked = [i for i, t in enumerate(tensors) if t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    out = fn(*tensors)
    weights = np.random.default_rng(seed).standard_normal(out.shape) if out.size != 1 else None

    def scalar(output):
        value = np.asarray(output.data, dtype=np.float64)
        return float(value.sum() if weights is None else (value * weights).sum())

    for i in checked:
        tensors[i].grad = None
    if weights is None:
        out.backward(np.ones(out.shape))
    else:
        out.backward(weights)
    analytic = [
        tensors[i].grad if tensors[i].grad is not None else np.zeros(tensors[i].shape)
        for i in checked
    ]
    numeric = []
    with no_grad():
        for i in checked:
            original = tensors[i].data.copy()
            flat = original.reshape(-1).astype(np.float64)
            estimate = np.zeros(flat.size)
            for k in range(flat.size):
                bumped = flat.copy()
                bumped[k] += eps
                tensors[i].data = bumped.reshape(original.shape)
                plus = scalar(fn(*tensors))
                bumped[k] -= 2 * eps
                tensors[i].data = bumped.reshape(original.shape)
                minus = scalar(fn(*tensors))
                estimate[k] = (plus - minus) / (2 * eps)
            tensors[i].data = original
            numeric.append(estimate.reshape(original.shape))
    errors = [relative_error(a, n) for a, n in zip(analytic, numeric, strict=True)]
    return GradcheckResult(analytic, numeric, errors)
