"""GELU, Softmax and LogSoftmax as layers (`gelu`, `softmax`, `log_softmax` in a model file),
and the one primitive GELU needs: the error function `erf`.

GELU is a composition, x * Φ(x) with Φ(x) = (1 + erf(x / √2)) / 2 (PyTorch's default), or
its tanh approximation (`approximate="tanh"`); the engine derives its backward pass from
erf's VJP. Softmax and LogSoftmax call the primitives of the same names along `axis`.

>>> import numpy as np
>>> from topograd.engine import Tensor
>>> GELU()(Tensor(np.array([-1.0, 0.0, 1.0]))).data.round(4).tolist()
[-0.1587, 0.0, 0.8413]
"""

from __future__ import annotations

import math

import numpy as np
from topograd.engine import functional as F
from topograd.engine.nn.layers import LAYERS, _Activation
from topograd.engine.ops import Op, register_op
from topograd.engine.tensor import Tensor, apply

# NOTE: numpy has no erf; math.erf (correctly rounded to about 1 ulp) is applied element by
# element, about 0.1 s per million values: exact enough to match PyTorch to 1e-15, slow only
# for activations far larger than the models this engine steps through.
_ERF = np.frompyfunc(math.erf, 1, 1)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _erf(x):
    return np.asarray(_ERF(x), dtype=np.result_type(x))


def _erf_vjp(g, out, x):
    return (g * (_TWO_OVER_SQRT_PI * np.exp(-x * x)),)


ERF = register_op(Op("erf", _erf, _erf_vjp, 1, "erf(x)", "dx = g * 2/sqrt(pi) * e^(-x^2)"))


def erf(x):
    """The error function, elementwise (a primitive)."""
    return apply(ERF, x if isinstance(x, Tensor) else Tensor(x))


GELU_APPROXIMATIONS = ("none", "tanh")


@LAYERS.register("gelu")
class GELU(_Activation):
    """x * Φ(x), Φ the standard normal CDF (Hendrycks and Gimpel), as PyTorch's nn.GELU:
    exact with erf by default, or `approximate="tanh"`:
    0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in GELU_APPROXIMATIONS:
            raise ValueError(f"GELU approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        if self.approximate == "tanh":
            inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))
            return 0.5 * x * (1.0 + F.tanh(inner))
        return 0.5 * x * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))

    def extra_repr(self):
        return "" if self.approximate == "none" else f"approximate={self.approximate!r}"


@LAYERS.register("softmax")
class Softmax(_Activation):
    """e^x / sum(e^x) along `axis` (PyTorch's nn.Softmax(dim)); the features of rows by
    default."""

    def __init__(self, axis=1):
        super().__init__()
        self.axis = int(axis)

    def forward(self, x):
        return F.softmax(x, axis=self.axis)

    def extra_repr(self):
        return f"axis={self.axis}"


@LAYERS.register("log_softmax")
class LogSoftmax(Softmax):
    """log(softmax(x)) along `axis`, computed stably (PyTorch's nn.LogSoftmax(dim))."""

    def forward(self, x):
        return F.log_softmax(x, axis=self.axis)


__all__ = ["ERF", "GELU", "GELU_APPROXIMATIONS", "LogSoftmax", "Softmax", "erf"]
