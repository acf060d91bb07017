"""A model file's gradients beside central differences: what `topograd check` compares.

The numbers come from `engine.gradcheck.compare_gradients`, the engine's one numeric
differentiation; this module picks what to compare for a `dsl.inspect.Subject` (each output
by each leaf it uses, large leaves on a random subset of components) and tells a kink from a
wrong gradient when the two disagree.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

import numpy as np
from topograd.dsl.inspect import Subject
from topograd.engine import Graph, Tensor
from topograd.engine.gradcheck import LeafCheck, compare_gradients

EPS = 1e-6  # the central-difference step
MAX_COMPONENTS = 20  # a larger leaf is checked on this many random components
# NOTE: a kink within the step. Where a function has a kink (ReLU at 0, a tie in max
# pooling, the hinge) a distance t < EPS from the point, the central difference averages the
# slopes on both sides and misses the engine's one-sided gradient by |a - n| = j (EPS - t) /
# 2 EPS (j the jump in slope), while the one-sided differences (f(x + EPS) - f(x)) / EPS and
# (f(x) - f(x - EPS)) / EPS differ by j (EPS - t) / EPS = 2 |a - n|. On a smooth function
# they differ by about EPS |f''| and a wrong gradient leaves them that close. A mismatch
# whose one-sided differences differ by more than KINK_RATIO |a - n| is taken for a kink: it
# says nothing about the engine, and `topograd check --examples` skips that example.
KINK_RATIO = 1.0


@dataclass
class Row:
    """A line of the check table: one leaf of one output and its (worst) relative error."""

    name: str
    kind: str
    shape: tuple
    checked: int  # components compared (per example)
    error: float


@dataclass
class LeafResult:
    """One leaf checked for one output, named as the check table shows it."""

    label: str  # the leaf's name, or `output <- leaf` when the file has several outputs
    kind: str  # the leaf's layer kind ("" in a graph file)
    output: str
    leaf: Tensor
    check: LeafCheck

    @property
    def error(self) -> float:
        return self.check.error

    def row(self) -> Row:
        check = self.check
        return Row(self.label, self.kind, check.shape, int(check.indices.size), check.error)


def compare(
    subject: Subject, seed: int, tolerance: float, labels: Container[str] | None = None
) -> list[LeafResult]:
    """The engine's gradient of each output by each leaf it uses beside central differences
    (`seed` picks the components of large leaves and weights a non-scalar output); only the
    leaves whose labels are in `labels` if given, on the same components as when not."""
    rng = np.random.default_rng(seed)
    single = len(subject.outputs) == 1
    results = []
    for output_name, output in subject.outputs.items():
        used = {id(node) for node in Graph(output).leaves}
        leaves = {
            name if single else f"{output_name} <- {name}": (name, leaf)
            for name, leaf in subject.leaves.items()
            if id(leaf) in used and leaf.requires_grad
        }
        components = {label: _components(leaf.size, rng) for label, (_, leaf) in leaves.items()}
        chosen = {
            label: leaf for label, (_, leaf) in leaves.items() if labels is None or label in labels
        }
        if not chosen:
            continue
        checks = compare_gradients(
            _output_of(subject, output_name), chosen, EPS, tolerance, seed, components
        )
        for (label, leaf), check in zip(chosen.items(), checks, strict=True):
            kind = subject.kinds.get(leaves[label][0], "")
            results.append(LeafResult(label, kind, output_name, leaf, check))
    return results


def on_a_kink(subject: Subject, result: LeafResult, seed: int, tolerance: float) -> bool:
    """Whether the worst component of a mismatch sits on a kink within the step (see the
    NOTE on KINK_RATIO): its one-sided differences disagree far more than smoothness allows."""
    check = result.check
    if check.engine_shape != check.shape or not check.indices.size:
        return False
    gap = abs(check.analytic[check.worst] - check.numeric[check.worst])
    if not np.isfinite(gap):
        return False
    k = int(check.indices[check.worst])
    leaf = result.leaf
    original = np.array(leaf.data, copy=True)
    slopes = []
    try:
        # a central difference with step EPS/2 around x + EPS/2 is (f(x + EPS) - f(x)) / EPS
        for shift in (EPS / 2, -EPS / 2):
            moved = original.astype(np.float64, copy=True)
            moved.reshape(-1)[k] += shift
            leaf.data = moved.astype(original.dtype, copy=False)
            (one_sided,) = compare_gradients(
                _output_of(subject, result.output),
                {result.label: leaf},
                EPS / 2,
                tolerance,
                seed,
                {result.label: np.array([k])},
            )
            slopes.append(one_sided.numeric[0])
    finally:
        leaf.data = original
    return bool(abs(slopes[0] - slopes[1]) > KINK_RATIO * gap)


def _output_of(subject: Subject, output_name: str):
    def output() -> Tensor:
        return subject.recompute()[output_name]

    return output


def _components(size: int, rng: np.random.Generator) -> np.ndarray:
    if size <= MAX_COMPONENTS:
        return np.arange(size)
    return np.sort(rng.choice(size, MAX_COMPONENTS, replace=False))
