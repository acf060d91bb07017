"""Gradient checking with central differences and the notes' relative error.

`compare_gradients` is the one place that differentiates numerically: `gradcheck` (the
engine's quick check), `engine.testing.assert_gradients` (the kit for users' test suites) and
`topograd check` all call it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from topograd.engine.executor import topological_order
from topograd.engine.modes import no_grad
from topograd.engine.tensor import Tensor

FLOAT64_EPS = float(np.finfo(np.float64).eps)
# NOTE: the noise floor. A central difference of f = sum(w * out) is exact only to about
# eps_machine * S / step, S the size of the numbers that were added up (and may have
# cancelled) on the way to f: taken as the largest sum(|value|) of any node of the graph, and
# sum(|w * out|) at every point evaluated. A gradient near that size cannot be told from zero,
# so the relative error is measured against NOISE_FACTOR times that resolution (scaled by
# 1 / tol) when the gradients themselves are smaller: an exactly zero gradient then passes
# against a difference of 1e-10, and a real error still shows at any size differences see.
# Only when a leaf fails, its differences are taken again with twice the step: where the two
# disagree (truncation at a flat point, such as x^3 at 0), that disagreement is noise too.
NOISE_FACTOR = 10.0


def relative_error(analytic, numeric, floor: float = 0.0) -> float:
    """The notes' xi = ||a - n|| / (||a|| + ||n||); 0 when both are exactly zero. With a
    `floor`, the denominator is at least that (for gradients below what differences resolve)."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    denominator = max(np.linalg.norm(analytic) + np.linalg.norm(numeric), floor)
    if denominator == 0.0:
        return 0.0
    return float(np.linalg.norm(analytic - numeric) / denominator)


@dataclass
class LeafCheck:
    """The engine's and the numeric gradient of one leaf at the checked components."""

    label: str
    shape: tuple
    indices: np.ndarray  # flat indices of the checked components
    analytic: np.ndarray  # the engine's gradient at those components
    numeric: np.ndarray  # central differences at those components
    error: float  # the notes' relative error over the checked components
    engine_shape: tuple  # the shape of the engine's gradient (== shape unless the VJP is wrong)

    @property
    def complete(self) -> bool:
        return self.indices.size == int(np.prod(self.shape, dtype=np.int64))

    @property
    def worst(self) -> int:
        """Position (in `indices`) of the component with the largest |a - n|."""
        return int(np.argmax(np.abs(self.analytic - self.numeric))) if self.indices.size else 0

    @property
    def worst_index(self) -> tuple:
        """The worst component's index in the leaf, e.g. (1, 2)."""
        if not self.indices.size:
            return ()
        flat = int(self.indices[self.worst])
        return tuple(int(i) for i in np.unravel_index(flat, self.shape)) if self.shape else ()

    @property
    def worst_error(self) -> float:
        """|a - n| / max(|a|, |n|) at the worst component."""
        a, n = self.analytic[self.worst], self.numeric[self.worst]
        scale = max(abs(a), abs(n))
        return 0.0 if scale == 0 else float(abs(a - n) / scale)


def compare_gradients(
    output_of: Callable[[], Tensor],
    leaves: dict[str, Tensor],
    eps: float = 1e-6,
    tol: float = 1e-6,
    seed: int = 0,
    components: dict[str, np.ndarray] | None = None,
) -> list[LeafCheck]:
    """The engine's gradients of `output_of()` with respect to `leaves` beside central
    differences, one LeafCheck per leaf.

    `output_of` recomputes the output from the leaves' current values (it must be a pure
    function of them: replay any randomness). A non-scalar output is reduced to
    sum(out * w) with fixed random weights w from `seed`, so every component takes part.
    `components` picks flat indices per leaf (all by default); `tol` sets the noise floor.
    """
    for leaf in leaves.values():
        leaf.grad = None
    out = output_of()
    if not isinstance(out, Tensor):
        raise TypeError(f"the function must return a Tensor, got {type(out).__name__}")
    weights = np.random.default_rng(seed).standard_normal(out.shape) if out.size != 1 else None
    out.backward(np.ones(out.shape) if weights is None else weights)
    engine_grads = {
        name: np.zeros(leaf.shape) if leaf.grad is None else np.asarray(leaf.grad, np.float64)
        for name, leaf in leaves.items()
    }
    scale = max(_magnitude(node.data, None) for node in topological_order([out]))
    seen = [_magnitude(out.data, weights)]  # the largest sum(|w * out|) at any point

    def reduced() -> float:
        with no_grad():
            value = np.asarray(output_of().data, dtype=np.float64)
        seen[0] = max(seen[0], _magnitude(value, weights))
        return float(value.sum() if weights is None else (value * weights).sum())

    checks = []
    for name, leaf in leaves.items():
        size = int(np.prod(leaf.shape, dtype=np.int64))
        indices = np.arange(size) if components is None else np.asarray(components[name])
        numeric = central_differences(reduced, leaf, indices, eps)
        engine_grad = engine_grads[name]
        right_shape = engine_grad.shape == tuple(leaf.shape)
        # a VJP that returned the wrong shape leaves nothing to compare component-wise
        analytic = (
            engine_grad.reshape(-1)[indices] if right_shape else np.full(indices.size, np.nan)
        )
        resolution = FLOAT64_EPS * max(scale, seen[0]) * np.sqrt(max(indices.size, 1)) / eps
        floor = NOISE_FACTOR * resolution / tol
        error = relative_error(analytic, numeric, floor)
        if right_shape and not error < tol:
            wider = central_differences(reduced, leaf, indices, 2 * eps)
            floor = max(floor, NOISE_FACTOR * float(np.linalg.norm(numeric - wider)) / tol)
            error = relative_error(analytic, numeric, floor)
        if not right_shape or not np.isfinite(error):
            error = float("inf")
        checks.append(
            LeafCheck(
                name,
                tuple(leaf.shape),
                indices,
                analytic,
                numeric,
                error,
                tuple(engine_grad.shape),
            )
        )
    return checks


def _magnitude(value, weights) -> float:
    """sum(|w * value|) (or sum(|value|)): the size of the terms a difference of f rounds."""
    value = np.abs(np.asarray(value, dtype=np.float64))
    return float(value.sum() if weights is None else (value * np.abs(weights)).sum())


def central_differences(f: Callable[[], float], leaf: Tensor, indices, eps: float) -> np.ndarray:
    """(f(x + eps e_k) - f(x - eps e_k)) / 2 eps for each flat index k of `leaf`, the leaf's
    value restored afterwards (also when f raises)."""
    original = np.array(leaf.data, dtype=np.float64)
    flat = original.reshape(-1)
    estimates = np.empty(len(indices))
    try:
        for position, k in enumerate(indices):
            bumped = flat.copy()
            bumped[k] = flat[k] + eps
            leaf.data = bumped.reshape(original.shape)
            plus = f()
            bumped[k] = flat[k] - eps
            leaf.data = bumped.reshape(original.shape)
            minus = f()
            estimates[position] = (plus - minus) / (2 * eps)
    finally:
        leaf.data = original
    return estimates


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
    themselves are only good to about 1e-3. (The kit's `engine.testing.assert_gradients`
    raises with the worst component instead of returning numbers.)
    """
    tensors = [x if isinstance(x, Tensor) else Tensor(x, requires_grad=True) for x in inputs]
    checked = {str(i): t for i, t in enumerate(tensors) if t.requires_grad}
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    checks = compare_gradients(lambda: fn(*tensors), checked, eps=eps, seed=seed)
    analytic = [c.analytic.reshape(c.shape) for c in checks]
    numeric = [c.numeric.reshape(c.shape) for c in checks]
    errors = [relative_error(a, n) for a, n in zip(analytic, numeric, strict=True)]
    return GradcheckResult(analytic, numeric, errors)
