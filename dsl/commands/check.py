"""`topograd check FILE`: the file is valid, and the engine's gradients match central
differences on a small batch (float64, the model in training mode); with `--examples N`, on N
batches or values that hypothesis draws, a failure shrunk to the smallest input that fails."""

from __future__ import annotations

import sys

import numpy as np
from topograd.dsl.commands.common import FAILED, OK, fail
from topograd.dsl.gradient_check import EPS, MAX_COMPONENTS, Row, compare
from topograd.dsl.inspect import Subject, open_subject
from topograd.engine.graph import shape_text

ERRORS = (ValueError, TypeError, IndexError, FloatingPointError)  # the model refusing to run


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check a file, then compare its gradients with central differences",
        description="Check a model file, then compare the engine's gradient of every "
        "parameter with central differences (float64) on a small batch of the training "
        "split, the model in training mode with fixed dropout masks. Graph files: every "
        "input and param of each output (a random weighted sum of an output that is not a "
        "scalar). With --examples N, hypothesis draws N batches (or, for a graph file, values "
        "of its inputs and params) and a failure is shrunk to the smallest one that fails.",
    )
    parser.add_argument("file", help="a model file (.tg)")
    parser.add_argument(
        "--batch",
        type=int,
        default=4,
        metavar="N",
        help="examples in the batch; with --examples, the largest batch drawn (default 4)",
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
        help="picks the batch, the dropout masks and the checked components; with "
        "--examples, seeds hypothesis (default 0)",
    )
    parser.add_argument(
        "--examples",
        type=int,
        metavar="N",
        help="check N inputs drawn by hypothesis and report each gradient's worst error",
    )


def run(args) -> int:
    if not args.tolerance > 0:
        return fail(f"--tolerance must be > 0, got {args.tolerance}")
    if args.examples is not None:
        return _run_examples(args)
    looked_at, code = open_subject(args.file, args.batch, args.seed)
    if looked_at is None:
        return code
    try:
        rows = [result.row() for result in compare(looked_at, args.seed, args.tolerance)]
    except ERRORS as error:
        print(f"topograd: the gradient check could not run: {error}", file=sys.stderr)
        return FAILED
    print(f"checking {looked_at.title}")
    if not rows:
        print("nothing to check: no output depends on a parameter or input")
        return OK
    _print_table(rows, args.tolerance, "rel. error", "(chosen by --seed)")
    bad = [row for row in rows if not row.error <= args.tolerance]
    if bad:
        print(_failed(bad, rows, args.tolerance))
        if _has_kinks(looked_at.spec):
            print(
                "note: ReLU-like layers and max pooling have kinks; a step of 1e-6 that "
                "crosses one spoils the difference there. Try another --seed, or --examples."
            )
        return FAILED
    print(_passed(rows, args.tolerance))
    return OK


def _run_examples(args) -> int:
    """`--examples N`: the worst error of each gradient over N drawn inputs."""
    if args.examples < 1:
        return fail(f"--examples must be >= 1, got {args.examples}")
    try:
        from topograd.dsl import gradient_search
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("hypothesis"):
            raise
        return fail("--examples needs hypothesis: pip install hypothesis")
    with np.errstate(all="ignore"):  # the file's own values may be outside a log's domain
        looked_at, code = open_subject(args.file, args.batch, args.seed)
    if looked_at is None:
        return code
    try:
        outcome = gradient_search.search(
            looked_at, args.examples, args.batch, args.tolerance, args.seed
        )
    except (gradient_search.SearchError, *ERRORS) as error:
        print(f"topograd: the gradient check could not run: {error}", file=sys.stderr)
        return FAILED
    print(f"checking {_drawn(looked_at, outcome, args)}")
    rows = list(outcome.rows.values())
    if not rows:
        print("nothing to check: no output depends on a parameter or input")
        return OK
    header = f"worst of {outcome.compared} rel. error"
    _print_table(rows, args.tolerance, header, "(chosen by each example's seed)")
    print(_counted(outcome))
    failure = outcome.failure
    if failure is None:
        print(_passed(rows, args.tolerance))
        return OK
    bad = [row for row in rows if not row.error <= args.tolerance]
    print(_failed(bad, rows, args.tolerance) + f" (first at example {failure.found_at})")
    _print_failure(failure, args)
    return FAILED


def _drawn(looked_at: Subject, outcome, args) -> str:
    """What --examples draws, in words."""
    spec, count, seed = looked_at.spec, args.examples, args.seed
    if spec.network is None:
        return (
            f"{looked_at.title} at {count} drawn values of its inputs and params in [-3, 3] "
            f"(hypothesis, seed {seed})"
        )
    network = spec.network
    what = f"{spec.train.loss.name} loss" if "loss" in looked_at.outputs else "output"
    inputs = "training examples" if spec.data is not None else "random inputs"
    smallest = outcome.smallest_batch
    sizes = f"{smallest} to {args.batch}" if smallest < args.batch else str(args.batch)
    return (
        f"network {network.name}: {what} on {count} drawn batches of {sizes} {inputs} "
        f"(float64, training mode, hypothesis seed {seed})"
    )


def _counted(outcome) -> str:
    skipped = [
        (outcome.kinks, "a kink within the step"),
        (outcome.not_finite, "an output that is not finite"),
    ]
    reasons = "; ".join(f"{k} skipped: {why}" for k, why in skipped if k)
    plural = "s" if outcome.compared != 1 else ""
    return f"{outcome.compared} example{plural} compared" + (f" ({reasons})" if reasons else "")


def _print_failure(failure, args) -> None:
    """The shrunk example, the worst component of each leaf that fails on it, and how to
    run the same search again."""
    example = failure.example
    print("smallest failing input (shrunk by hypothesis):")
    if example.indices is not None:
        plural = "s" if len(example.indices) != 1 else ""
        print(
            f"  batch of {len(example.indices)}: training example{plural} "
            f"{list(example.indices)} (indices into the training split)"
        )
        print(f"  seed {example.seed} (dropout masks and checked components)")
    elif example.batch is not None:
        print(f"  batch of {example.batch} random inputs from seed {example.seed}")
        print(f"  seed {example.seed} (also the dropout masks and checked components)")
    else:
        for name, value in example.values.items():
            print(f"  {name} = {_array_text(value)}")
        print(f"  seed {example.seed} (output weights and checked components)")
    for result in failure.results:
        check = result.check
        if check.engine_shape != check.shape:
            print(
                f"  {result.label}: the engine's gradient has shape "
                f"{shape_text(check.engine_shape)}, the leaf {shape_text(check.shape)}"
            )
            continue
        index = ", ".join(map(str, check.worst_index))
        where = f"; worst component [{index}]" if check.shape else ""
        a, n = check.analytic[check.worst], check.numeric[check.worst]
        print(
            f"  {result.label}: rel. error {check.error:.2g}{where}: engine {a:.10g}, "
            f"central differences {n:.10g}"
        )
    batch = f" --batch {args.batch}" if example.values is None else ""
    plugins = [*getattr(args, "plugins", []), *getattr(args, "command_plugins", [])]
    loading = "".join(f" --plugin {plugin}" for plugin in plugins)
    print(
        f"the same search again: topograd{loading} check {args.file} --examples "
        f"{args.examples}{batch} "
        f"--tolerance {args.tolerance:g} --seed {args.seed}"
    )


def _array_text(value: np.ndarray) -> str:
    if value.ndim == 0:
        return repr(float(value))
    return np.array2string(value, separator=", ", floatmode="unique", threshold=64)


def _passed(rows: list[Row], tolerance: float) -> str:
    worst = max(row.error for row in rows)
    return (
        f"ok: {len(rows)} gradients match, max relative error {worst:.2g} (tolerance {tolerance:g})"
    )


def _failed(bad: list[Row], rows: list[Row], tolerance: float) -> str:
    names = ", ".join(f"{row.name} ({row.error:.2g})" for row in bad)
    return (
        f"FAILED: {len(bad)} of {len(rows)} gradients exceed the tolerance {tolerance:g}: {names}"
    )


def _has_kinks(spec) -> bool:
    if spec is None or spec.network is None:
        return False
    kinked = ("relu", "leaky_relu", "maxout", "maxpool2d", "hinge")
    kinds = {layer.kind for layer in spec.network.layers}
    if spec.train is not None:
        kinds.add(spec.train.loss.name)
    return any(kind in kinds for kind in kinked)


def _print_table(rows: list[Row], tolerance: float, error_header: str, subset: str) -> None:
    table = [("gradient", "layer", "shape", "checked", error_header, "")]
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
        print(f"* a random subset of {MAX_COMPONENTS} components {subset}")
    print(
        "rel. error: ||a - n|| / (||a|| + ||n||) over the checked components, a the engine's\n"
        f"gradient, n central differences (step {EPS:g}); a gradient too small for differences "
        "to\nresolve is measured against that resolution instead of its own size"
    )
