"""Property tests in one line: the engine's gradients of a function, or of a registered op,
against central differences on inputs that hypothesis draws (and shrinks when one fails)."""

from __future__ import annotations

import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from topograd.engine.ops import Op
from topograd.engine.tensor import apply
from topograd.engine.testing.gradients import assert_gradients
from topograd.engine.testing.op_inputs import op_inputs

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]


def gradients_hold(fn, *strategies, eps=1e-6, tol=1e-6, max_examples=100, **options):
    """A test function: `assert_gradients(fn, *inputs)` for inputs drawn from `strategies`
    (one per argument of `fn`; a plain value stands for itself).

    >>> from topograd.engine.testing import arrays, gradients_hold
    >>> test_tanh = gradients_hold(lambda x: x.tanh(), arrays())  # pytest collects it

    A failure is shrunk by hypothesis to a small counterexample and reported with the
    worst component. `options` go to hypothesis's `settings` (database=None, ...).
    """
    drawn = st.tuples(*(_strategy(s) for s in strategies))

    @settings(**_settings(max_examples, options))
    @given(drawn)
    def gradients_match_central_differences(inputs):
        assert_gradients(fn, *inputs, eps=eps, tol=tol)

    name = getattr(fn, "__name__", type(fn).__name__)
    gradients_match_central_differences.__name__ = f"test_gradients_of_{name}"
    return gradients_match_central_differences


def assert_op_gradients(
    op: Op, max_examples=200, eps=1e-6, tol=1e-6, seed: int | None = None, **options
) -> None:
    """Check a registered op's VJP on `max_examples` inputs drawn for its kind and domain
    (`engine.testing.op_inputs`); raises GradientMismatchError with the shrunk counterexample.
    `seed` fixes hypothesis's draws (by default they follow hypothesis's own settings)."""
    cases = op_inputs(op)  # raises at once for a kind or domain without a strategy

    @settings(**_settings(max_examples, options))
    @given(case=cases, seed=st.integers(0, 2**32 - 1))
    def op_gradients_match_central_differences(case, seed):
        arrays, attrs = case
        assert_gradients(
            lambda *tensors: apply(op, *tensors, **attrs), *arrays, eps=eps, tol=tol, seed=seed
        )

    if seed is not None:
        op_gradients_match_central_differences = hypothesis.seed(seed)(
            op_gradients_match_central_differences
        )
    op_gradients_match_central_differences()


def _settings(max_examples, options) -> dict:
    """Hypothesis settings for a gradient property: no deadline (differences are slow), and
    one failure reported, shrunk (not several at once), unless `options` say otherwise."""
    chosen = {
        "max_examples": max_examples,
        "deadline": None,
        "suppress_health_check": _SLOW_IS_FINE,
        "report_multiple_bugs": False,
    }
    return chosen | options


def _strategy(value):
    return value if isinstance(value, st.SearchStrategy) else st.just(value)
