"""`topograd check FILE`: the file is valid, and the engine's gradients match central
differences on a small batch (float64, the model in training mode)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from dsl.commands.common import FAILED, OK, fail
from dsl.inspect import Subject, open_subject
from engine import Graph
from engine.graph import shape_text
from engine.modes import no_grad

EPS = 1e-6  # the central-difference step
MAX_COMPONENTS = 20  # a larger parameter is checked on this many random components
# Central differences in float64 resolve a gradient only to about eps_machine * |f| / EPS, so
# a component much smaller than that cannot be told from zero. Components below
# FLOOR_FACTOR * eps_machine * max(1, |f|) / EPS (about 2e-3 * max(1, |f|)) are measured
# against that floor instead of their own size; a real error still shows at this size.
FLOOR_FACTOR = 1e7


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check a file, then compare its gradients with central differences",
        description="Check a model file, then compare the engine's gradient of every "
        "parameter with central differences (float64) on a small batch of the training "
        "split, the model in training mode with fixed dropout masks. Graph files: every "
        "input and param of each output (the sum of an output that is not a scalar).",
    )
    parser.add_argument("file", help="a model file (.tg)")
    parser.add_argument(
        "--batch", type=int, default=4, metavar="N", help="examples in the batch (default 4)"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-6,
        metavar="T",
        help="largest relative error that passes (default 1e-6)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="picks the batch, the dropout masks and the checked components (default 0)",
    )


@dataclass
class Row:
    """One checked leaf of one output."""

    name: str
    kind: str
    shape: tuple
    checked: int
    error: float


def run(args) -> int:
    if not args.tolerance > 0:
        return fail(f"--tolerance must be > 0, got {args.tolerance}")
    looked_at, code = open_subject(args.file, args.batch, args.seed)
    if looked_at is None:
        return code
    try:
        rows = check_gradients(looked_at, np.random.default_rng(args.seed))
    except (ValueError, TypeError, IndexError, FloatingPointError) as error:
        print(f"topograd: the gradient check could not run: {error}", file=sys.stderr)
        return FAILED
    print(f"checking {looked_at.title}")
    if not rows:
        print("nothing to check: no output depends on a parameter or input")
        return OK
    _print_table(rows, args.tolerance)
    bad = [row for row in rows if not row.error <= args.tolerance]
    worst = max(row.error for row in rows)
    if bad:
        names = ", ".join(f"{row.name} ({row.error:.2g})" for row in bad)
        print(
            f"FAILED: {len(bad)} of {len(rows)} gradients exceed the tolerance "
            f"{args.tolerance:g}: {names}"
        )
        if _has_kinks(looked_at.spec):
            print(
                "note: ReLU-like layers and max pooling have kinks; a step of 1e-6 that "
                "crosses one spoils the difference there. Try another --seed to tell."
            )
        return FAILED
    print(
        f"ok: {len(rows)} gradients match, max relative error {worst:.2g} "
        f"(tolerance {args.tolerance:g})"
    )
    return OK


def check_gradients(looked_at: Subject, rng: np.random.Generator) -> list[Row]:
    """Compare each output's gradient with central differences for every leaf it uses."""
    rows = []
    single = len(looked_at.outputs) == 1
    for output_name, output in looked_at.outputs.items():
        used = {id(node) for node in Graph(output).leaves}
        leaves = {n: t for n, t in looked_at.leaves.items() if id(t) in used and t.requires_grad}
        if not leaves:
            continue
        analytic = _analytic(looked_at, output_name, leaves)
        for name, leaf in leaves.items():
            indices = _components(leaf.size, rng)
            numeric, value = _numeric(looked_at, output_name, leaf, indices)
            floor = FLOOR_FACTOR * np.finfo(np.float64).eps * max(1.0, abs(value)) / EPS
            error = component_error(analytic[name].reshape(-1)[indices], numeric, floor)
            label = name if single else f"{output_name} <- {name}"
            kind = looked_at.kinds.get(name, "")
            rows.append(Row(label, kind, tuple(leaf.shape), len(indices), error))
    return rows


def component_error(analytic, numeric, floor: float = 0.0) -> float:
    """max over components of |a - n| / max(|a|, |n|, floor); 0 where both are 0."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    difference = np.abs(analytic - numeric)
    with np.errstate(invalid="ignore", divide="ignore"):
        errors = np.where(difference == 0, 0.0, difference / scale)
    return float(np.max(errors, initial=0.0))


def _analytic(looked_at: Subject, output_name: str, leaves: dict) -> dict[str, np.ndarray]:
    """The engine's gradient of the output's sum for each leaf."""
    for leaf in leaves.values():
        leaf.grad = None
    output = looked_at.recompute()[output_name]
    output.backward(np.ones(output.shape))
    return {
        name: np.zeros(leaf.shape) if leaf.grad is None else np.array(leaf.grad, dtype=np.float64)
        for name, leaf in leaves.items()
    }


def _numeric(looked_at: Subject, output_name: str, leaf, indices) -> tuple[np.ndarray, float]:
    """Central differences of the output's sum at the chosen components; also its value."""
    original = np.array(leaf.data, dtype=np.float64)
    flat = original.reshape(-1)

    def total(vector) -> float:
        leaf.data = vector.reshape(original.shape)
        with no_grad():
            return float(np.sum(looked_at.recompute()[output_name].data, dtype=np.float64))

    estimates = np.empty(len(indices))
    try:
        for position, k in enumerate(indices):
            bumped = flat.copy()
            bumped[k] += EPS
            plus = total(bumped)
            bumped[k] = flat[k] - EPS
            minus = total(bumped)
            estimates[position] = (plus - minus) / (2 * EPS)
        value = total(flat)
    finally:
        leaf.data = original
    return estimates, value


def _components(size: int, rng: np.random.Generator) -> np.ndarray:
    if size <= MAX_COMPONENTS:
        return np.arange(size)
    return np.sort(rng.choice(size, MAX_COMPONENTS, replace=False))


def _has_kinks(spec) -> bool:
    if spec is None or spec.network is None:
        return False
    kinked = ("relu", "leaky_relu", "maxout", "maxpool2d", "hinge")
    kinds = {layer.kind for layer in spec.network.layers}
    if spec.train is not None:
        kinds.add(spec.train.loss.name)
    return any(kind in kinds for kind in kinked)


def _print_table(rows: list[Row], tolerance: float) -> None:
    table = [("gradient", "layer", "shape", "checked", "rel. error", "")]
    for row in rows:
        size = int(np.prod(row.shape, dtype=np.int64))
        checked = "all" if row.checked == size else f"{row.checked} of {size}*"
        status = "ok" if row.error <= tolerance else "FAIL"
        shape = shape_text(row.shape)
        table.append((row.name, row.kind, shape, checked, f"{row.error:.2e}", status))
    if not any(row.kind for row in rows):  # a graph file: no layers
        table = [line[:1] + line[2:] for line in table]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    if any(row.checked < int(np.prod(row.shape, dtype=np.int64)) for row in rows):
        print(f"* a random subset of {MAX_COMPONENTS} components (chosen by --seed)")
    print(
        "rel. error: max over components of |a - n| / max(|a|, |n|), a the engine's gradient,\n"
        f"n central differences (step {EPS:g}); a component too small for differences to "
        "resolve\nis measured against that resolution instead of its own size"
    )
