"""Exponentially weighted moving averages: the one piece that batch norm's running statistics
and the optimizers' moment estimates share.

The notes' average is v_t = beta * v_{t-1} + (1 - beta) * x_t from v_0 = 0. It is written
here as v += (1 - beta) * (x - v) (a "lerp"), the form PyTorch's optimizers use, so that
trajectories match theirs to the last bits.
"""

from __future__ import annotations

import numpy as np


def ewma_update_(average: np.ndarray, value, beta: float, scratch=None) -> np.ndarray:
    """In place: average <- beta * average + (1 - beta) * value. Returns `average`.

    `scratch`, an array shaped like `average`, holds the intermediate instead of a new array
    (the optimizers pass one; the result is the same to the last bit)."""
    weight = 1.0 - beta
    if scratch is None:
        scratch = value - average
    else:
        np.subtract(value, average, out=scratch)
    if weight < 0.5:
        scratch *= weight
        average += scratch
    else:  # the other side of the lerp is the better-conditioned one here (as torch.lerp)
        scratch *= 1.0 - weight
        np.subtract(value, scratch, out=average)
    return average


class EWMA:
    """The notes' exponentially weighted average of a stream of numbers or arrays.

    With `bias_correction`, `value` is v_t / (1 - beta^t), which removes the pull toward the
    zero start: the average of a constant stream is exact from the first step. The last
    (1 + beta) / (1 - beta) points carry about 86% of the weight (19 points for beta = 0.9).

    >>> average = EWMA(0.9)
    >>> average.update(5.0)
    5.0
    """

    def __init__(self, beta: float, bias_correction: bool = True):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"EWMA beta must be in [0, 1), got {beta}")
        self.beta = beta
        self.bias_correction = bias_correction
        self.steps = 0
        self._average = None

    def update(self, value):
        """Add one observation and return the (corrected) average."""
        value = np.asarray(value, dtype=np.float64)
        if self._average is None:
            self._average = np.zeros_like(value)
        ewma_update_(self._average, value, self.beta)
        self.steps += 1
        return self.value

    @property
    def value(self):
        """The current average (a float for scalar streams); None before the first update."""
        if self._average is None:
            return None
        average = self._average
        if self.bias_correction:
            average = average / (1.0 - self.beta**self.steps)
        return float(average) if average.ndim == 0 else average.copy()

    @property
    def raw(self):
        """The uncorrected average v_t."""
        return None if self._average is None else self._average.copy()

    def state_dict(self) -> dict:
        return {
            "beta": self.beta,
            "bias_correction": self.bias_correction,
            "steps": self.steps,
            "average": None if self._average is None else self._average.copy(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.beta = float(state["beta"])
        self.bias_correction = bool(state["bias_correction"])
        self.steps = int(state["steps"])
        average = state["average"]
        self._average = None if average is None else np.array(average, dtype=np.float64)
