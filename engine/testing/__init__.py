"""The gradient-testing kit for users' own test suites (needs hypothesis).

>>> import numpy as np
>>> from topograd.engine.testing import arrays, assert_gradients, gradients_hold
>>> _ = assert_gradients(lambda x: (x * x).sum(), np.array([1.0, -2.0]))
>>> test_tanh = gradients_hold(lambda x: x.tanh(), arrays())

- strategies: `shapes`, `broadcastable`, `floats`, `arrays`, `distinct_arrays`, `tensors`
  (values in well-conditioned ranges, away from the kinks they are told about), and
  `op_inputs(op)` for a registered op;
- `assert_gradients(fn, *inputs)`: central differences against the engine, with the worst
  component in the failure message; `fn` may be a Module (all its parameters are checked);
- `gradients_hold(fn, *strategies)`: a hypothesis test in one line;
  `assert_op_gradients(op)`: the same for a registered op, as the built-in ops are tested.
"""

from topograd.engine.gradcheck import LeafCheck
from topograd.engine.testing.gradients import GradientMismatchError, assert_gradients
from topograd.engine.testing.op_inputs import op_inputs
from topograd.engine.testing.properties import assert_op_gradients, gradients_hold
from topograd.engine.testing.strategies import (
    KINK_MARGIN,
    arrays,
    broadcastable,
    distinct_arrays,
    floats,
    shapes,
    tensors,
)

__all__ = [
    "KINK_MARGIN",
    "GradientMismatchError",
    "LeafCheck",
    "arrays",
    "assert_gradients",
    "assert_op_gradients",
    "broadcastable",
    "distinct_arrays",
    "floats",
    "gradients_hold",
    "op_inputs",
    "shapes",
    "tensors",
]
