"""`topograd check FILE --examples N`: the gradient check over N inputs that hypothesis draws,
so that a mismatch is shrunk to the smallest input that still shows it.

A network file's example is a batch of 1 to `batch` training examples (2 to `batch` with
batch norm; random inputs when the file has no data section) and a seed for the dropout masks
and the checked components; a graph file's is a value in [-3, 3] for each input and param
(same shapes) and a seed for the output's weights. Examples whose output is not finite, or
whose mismatch is a kink within the step (`dsl.gradient_check.on_a_kink`), are skipped and
counted. Needs hypothesis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, reject, settings
from hypothesis import seed as seeded
from hypothesis import strategies as st
from hypothesis.errors import Flaky, HypothesisException, Unsatisfiable
from topograd.dsl.build import build_data
from topograd.dsl.gradient_check import LeafResult, Row, compare, on_a_kink
from topograd.dsl.inspect import Subject, network_subject
from topograd.engine.testing import arrays

LOW, HIGH = -3.0, 3.0  # the range of a graph file's drawn values
SEEDS = st.integers(0, 2**32 - 1)
SETTINGS = {
    "deadline": None,  # each example runs hundreds of forward passes
    "database": None,  # the same --seed draws the same examples, whatever ran before
    "derandomize": False,  # (a profile that derandomizes would ignore --seed)
    "phases": (Phase.generate, Phase.shrink),
    "report_multiple_bugs": False,  # one failure, shrunk
    "verbosity": Verbosity.quiet,  # the command prints the outcome itself
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,  # a graph with log(x) rejects half its draws
        HealthCheck.large_base_example,
    ],
}


class SearchError(Exception):
    """Hypothesis could not run the search (every draw skipped, a flaky failure, ...)."""


@dataclass
class Example:
    """One drawn input: exactly one of `indices`, `batch`, `values` is set."""

    seed: int  # dropout masks and checked components (networks), output weights (graphs)
    indices: tuple[int, ...] | None = None  # a network with data: training-split examples
    batch: int | None = None  # a network without data: this many random inputs from `seed`
    values: dict[str, np.ndarray] | None = None  # a graph file: a value for each leaf


@dataclass
class Failure:
    """The smallest failing example hypothesis found, and its leaves that failed."""

    example: Example
    results: list[LeafResult]
    found_at: int  # the example that first failed (before shrinking), counting from 1


@dataclass
class Outcome:
    """Per leaf the worst relative error over the examples compared up to the first failure,
    how many were compared and skipped, and the shrunk failure if there was one."""

    rows: dict[str, Row] = field(default_factory=dict)
    smallest_batch: int = 1  # of a network (batch norm needs 2 in training mode)
    compared: int = 0
    kinks: int = 0
    not_finite: int = 0
    failure: Failure | None = None


class _MismatchError(Exception):
    def __init__(self, example: Example, results: list[LeafResult]):
        super().__init__(f"{len(results)} gradients do not match")
        self.example = example
        self.results = results


def search(looked_at: Subject, count: int, batch: int, tolerance: float, seed: int) -> Outcome:
    """Check `count` examples drawn with hypothesis from `seed` for the file `looked_at` was
    built from (a network's subject is built again for each; a graph's leaves take the
    drawn values). Raises SearchError when hypothesis cannot run the search."""
    spec = looked_at.spec
    outcome = Outcome()
    if spec.network is not None:
        outcome.smallest_batch = 1 if _runs_on_one(spec) else min(2, batch)
        strategy, subject_of = _network_examples(spec, outcome.smallest_batch, batch)
    else:
        strategy, subject_of = _graph_examples(looked_at)

    def attempt(example: Example) -> None:
        counting = outcome.failure is None  # shrinking runs more examples: not counted
        with np.errstate(all="ignore"):
            subject = subject_of(example)
            if not _finite(subject):
                _skip(outcome, "not_finite", counting)
            results = compare(subject, example.seed, tolerance, _followed(outcome))
            if not all(np.all(np.isfinite(r.check.numeric)) for r in results):
                _skip(outcome, "not_finite", counting)
            failing = [r for r in results if not r.error <= tolerance]
            wrong = [r for r in failing if not on_a_kink(subject, r, example.seed, tolerance)]
        if failing and not wrong:
            _skip(outcome, "kinks", counting)
        if counting:
            outcome.compared += 1
            for result in results:
                _keep_worst(outcome.rows, result.row())
        if wrong:
            if counting:
                outcome.failure = Failure(example, wrong, outcome.compared)
            raise _MismatchError(example, wrong)

    run = seeded(seed)(settings(max_examples=count, **SETTINGS)(given(strategy)(attempt)))
    try:
        run()
    except _MismatchError as mismatch:
        outcome.failure.example, outcome.failure.results = mismatch.example, mismatch.results
    except HypothesisException as error:
        raise SearchError(_explain(error, outcome)) from None
    return outcome


def _followed(outcome: Outcome) -> set[str] | None:
    """The leaves to compare: all until the first failure; while hypothesis shrinks it, only
    the leaves that failed (a candidate is smaller if it still fails on one of them)."""
    if outcome.failure is None:
        return None
    return {result.label for result in outcome.failure.results}


def _network_examples(spec, smallest: int, batch: int):
    """Batches of `smallest` to `batch` distinct training examples (shrinking towards the
    first ones), or of random inputs without a data section, each with a seed."""
    if spec.data is None:
        strategy = st.builds(Example, seed=SEEDS, batch=st.integers(smallest, batch))

        def subject_of(example: Example) -> Subject:
            return network_subject(spec, example.batch, example.seed)

        return strategy, subject_of
    size = len(build_data(spec).splits.train.y)
    picks = st.lists(
        st.integers(0, size - 1), min_size=smallest, max_size=min(batch, size), unique=True
    ).map(lambda drawn: tuple(sorted(drawn)))
    strategy = st.builds(Example, seed=SEEDS, indices=picks)

    def subject_of(example: Example) -> Subject:
        return network_subject(spec, len(example.indices), example.seed, examples=example.indices)

    return strategy, subject_of


def _runs_on_one(spec) -> bool:
    """Whether the network runs on a batch of one: batch norm in training mode refuses it
    (no variance to estimate), so such a network is checked on batches of 2 or more."""
    try:
        network_subject(spec, 1, 0, examples=[0] if spec.data is not None else None)
    except ValueError:
        return False
    return True


def _graph_examples(looked_at: Subject):
    """New values for every leaf of the graph file, in [LOW, HIGH], with a seed."""
    leaves = looked_at.leaves
    values = st.fixed_dictionaries(
        {name: arrays(tuple(leaf.shape), LOW, HIGH) for name, leaf in leaves.items()}
    )
    strategy = st.builds(Example, seed=SEEDS, values=values)

    def subject_of(example: Example) -> Subject:
        for name, value in example.values.items():
            leaves[name].data = value.astype(leaves[name].dtype)
        looked_at.recompute()
        return looked_at

    return strategy, subject_of


def _finite(subject: Subject) -> bool:
    return all(np.all(np.isfinite(output.data)) for output in subject.outputs.values())


def _skip(outcome: Outcome, reason: str, counting: bool) -> None:
    if counting:
        setattr(outcome, reason, getattr(outcome, reason) + 1)
    reject()


def _keep_worst(rows: dict[str, Row], row: Row) -> None:
    kept = rows.get(row.name)
    if kept is None or not row.error <= kept.error:  # a NaN error is the worst
        rows[row.name] = row


def _explain(error: HypothesisException, outcome: Outcome) -> str:
    if isinstance(error, Unsatisfiable):
        return (
            f"no example could be compared: {outcome.not_finite} had an output that is not "
            f"finite, {outcome.kinks} a kink within the step"
        )
    if isinstance(error, Flaky):
        return "a failing example passed when run again (the model is not deterministic)"
    lines = str(error).strip().splitlines()
    return f"hypothesis stopped the search ({type(error).__name__}): {lines[0] if lines else ''}"
