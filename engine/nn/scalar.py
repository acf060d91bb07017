"""Scalar-mode layers: every weight is its own 0-d Parameter, every product its own node.

This is micrograd's MLP in the engine: a graph of scalars that a person can step through
one multiply-add at a time. It is slow by design (a node per weight per example); the
tensor layers compute the same function with one matmul.
"""

from __future__ import annotations

import numpy as np
from topograd.engine import functional as F
from topograd.engine import init as initializers
from topograd.engine.capture import note_unreplayable
from topograd.engine.nn.layers import LAYERS, Sequential
from topograd.engine.nn.module import Module, Parameter
from topograd.engine.tensor import Tensor


class Neuron(Module):
    """One unit: w . x + b over a list of scalar tensors, weights `w0`, `w1`, ... and `b`."""

    def __init__(self, weights, bias=0.0, dtype=None):
        super().__init__()
        for index, value in enumerate(np.asarray(weights, dtype=float).reshape(-1)):
            setattr(self, f"w{index}", Parameter(float(value), dtype=dtype))
        self.b = Parameter(float(bias), dtype=dtype)
        object.__setattr__(self, "_weights", [getattr(self, f"w{i}") for i in range(index + 1)])

    def forward(self, inputs):
        total = self.b
        for weight, x in zip(self._weights, inputs):
            total = total + weight * x
        return total


@LAYERS.register("scalar_linear")
class ScalarLinear(Module):
    """A dense layer of `out_features` Neurons; W[i, j] (the notes' layout) is neuron j's w_i.

    `init` is an engine.init name or a callable `(shape, rng) -> ndarray`; "uniform" is
    micrograd's U(-1, 1)."""

    def __init__(self, in_features, out_features, init="uniform", rng=None, dtype=None):
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(
                f"ScalarLinear needs positive sizes, got in={in_features}, out={out_features}"
            )
        self.in_features, self.out_features = in_features, out_features
        weights = initializers.get(init)((in_features, out_features), rng)
        neurons = [Neuron(weights[:, j], dtype=dtype) for j in range(out_features)]
        for j, neuron in enumerate(neurons):
            setattr(self, f"n{j}", neuron)
        object.__setattr__(self, "_neurons", neurons)

    def forward(self, inputs):
        if len(inputs) != self.in_features:
            raise ValueError(
                f"ScalarLinear({self.in_features}, {self.out_features}): expected "
                f"{self.in_features} inputs, got {len(inputs)}"
            )
        return [neuron(inputs) for neuron in self._neurons]

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"


class ScalarSequential(Sequential):
    """Runs layers over one example at a time as lists of scalars and returns an (N, out)
    tensor, so losses, metrics and `fit` treat it like any network.

    ScalarLinear layers take and give lists; any other module (an activation) is applied to
    each scalar in turn."""

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim != 2:
            raise ValueError(f"a scalar network takes (N, features) inputs, got {x.shape}")
        # Each number of x becomes a leaf of its own, read here in Python: a replay could not
        # see a new batch. Scalar graphs run eagerly (their executor path is micrograd's speed).
        note_unreplayable("a scalar network reads its inputs number by number", expected=True)
        rows = []
        for example in x.data:
            values = [Tensor(v, dtype=x.dtype) for v in example]
            for layer in self:
                if isinstance(layer, ScalarLinear):
                    values = layer(values)
                else:
                    values = [layer(v) for v in values]
            rows.append(F.concat([v.reshape(1, 1) for v in values], axis=1))
        return F.concat(rows, axis=0)
