"""A 2-D classifier's decision boundary, as TensorFlow Playground shows it: the plane of the
two input features coloured by the class the model picks at each point (paler where it is
less sure), with the training points on top.

Plain numpy and the engine, no Qt: `BoundaryJob.compute(model)` evaluates the model on a grid
(evaluation mode, no graph recorded; every module's training flag is put back) and returns a
`Boundary` whose pixels the training panel only paints. The panel computes one when a model
is opened, and the training thread computes them while it trains, between steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from topograd.engine import Tensor, no_grad

GRID = 64  # cells a side for a tensor network
SCALAR_GRID = 16  # ... and for a scalar one, whose every point is a graph of scalars
MAX_POINTS = 400  # training points drawn
PAD = 0.1  # the plane reaches this share of the data's range beyond it, each way
# Class colours: TensorFlow Playground's orange and blue first.
CLASS_COLOURS = (
    (245, 147, 34),
    (8, 119, 189),
    (46, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
)
BACKGROUND = (250, 250, 250)  # where the model cannot tell the classes apart
STRONGEST = 0.8  # how far a cell of full confidence goes from BACKGROUND to its class colour


def class_colour(label: int) -> tuple[int, int, int]:
    return CLASS_COLOURS[label % len(CLASS_COLOURS)]


@dataclass(frozen=True)
class Boundary:
    """The picture: `pixels` (RGB888, rows from the top, i.e. from the largest second
    feature) over `extent`, and the training points as (x, y, class)."""

    extent: tuple[float, float, float, float]  # first feature low, high; second low, high
    size: tuple[int, int]  # cells across, down
    pixels: bytes
    points: tuple[tuple[float, float, int], ...]
    classes: int
    labels: tuple[int, ...]  # the class the model picks at each cell, row-major


def applies(built) -> bool:
    """Whether `built` is a classifier of two input features with data to show."""
    if built is None or built.data is None or built.spec.network is None:
        return False
    train = built.data.splits.train
    x = np.asarray(train.x)
    return x.ndim == 2 and x.shape[1] == 2 and len(train.classes) >= 2 and len(x) > 0


@dataclass(frozen=True)
class BoundaryJob:
    """What a boundary is drawn from: the training points, the class count, the plane's
    extent and how many cells a side."""

    points: np.ndarray  # (n, 2)
    labels: np.ndarray  # (n,) int
    classes: int
    extent: tuple[float, float, float, float]
    cells: int

    @classmethod
    def of(cls, built) -> BoundaryJob | None:
        """The job for `built`, None when it is not a 2-D classifier."""
        if not applies(built):
            return None
        train = built.data.splits.train
        x = np.asarray(train.x, dtype=np.float64)
        y = np.asarray(train.y).astype(np.int64)
        if len(x) > MAX_POINTS:
            keep = np.random.default_rng(0).choice(len(x), MAX_POINTS, replace=False)
            x, y = x[np.sort(keep)], y[np.sort(keep)]
        low, high = x.min(axis=0), x.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        low, high = low - PAD * span, high + PAD * span
        extent = (float(low[0]), float(high[0]), float(low[1]), float(high[1]))
        cells = SCALAR_GRID if built.spec.network.scalar else GRID
        return cls(x, y, len(train.classes), extent, cells)

    def grid(self) -> np.ndarray:
        """The cells' centres, row-major from the top row (the largest second feature)."""
        x0, x1, y0, y1 = self.extent
        n = self.cells
        xs = x0 + (np.arange(n) + 0.5) * (x1 - x0) / n
        ys = y1 - (np.arange(n) + 0.5) * (y1 - y0) / n
        across, down = np.meshgrid(xs, ys)
        return np.stack([across.reshape(-1), down.reshape(-1)], axis=1)

    def compute(self, model) -> Boundary:
        """Evaluate `model` on the grid and colour each cell by its class and confidence."""
        flags = [(module, module.training) for module in model.modules()]
        model.eval()
        try:
            with no_grad():
                dtype = next((p.data.dtype for p in model.parameters()), np.float64)
                scores = np.asarray(model(Tensor(self.grid().astype(dtype))).data, np.float64)
        finally:
            for module, training in flags:
                module.training = training  # this module only: train() would recurse
        labels, confidence = decide(scores.reshape(len(scores), -1))
        return Boundary(
            self.extent,
            (self.cells, self.cells),
            colours(labels, confidence).tobytes(),
            tuple((float(a), float(b), int(c)) for (a, b), c in zip(self.points, self.labels)),
            self.classes,
            tuple(int(label) for label in labels),
        )


def decide(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's class and how sure the model is, in [0, 1]: one output is a score for
    class 1 (positive) against class 0, its confidence |tanh(score)|; several outputs are
    logits, the confidence how far the top softmax probability is above a uniform guess."""
    if scores.shape[1] == 1:
        score = scores[:, 0]
        with np.errstate(invalid="ignore"):
            return (score > 0).astype(np.int64), np.abs(np.tanh(score))
    shifted = scores - scores.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        p = np.exp(shifted)
        p /= p.sum(axis=1, keepdims=True)
    uniform = 1.0 / scores.shape[1]
    top = np.nan_to_num(p.max(axis=1), nan=uniform)
    return scores.argmax(axis=1), (top - uniform) / (1.0 - uniform)


def colours(labels: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """RGB bytes (n, 3): each cell from BACKGROUND towards its class colour by confidence."""
    palette = np.array([class_colour(int(k)) for k in range(int(labels.max(initial=0)) + 1)])
    weight = STRONGEST * np.clip(np.nan_to_num(confidence), 0.0, 1.0)[:, None]
    mixed = np.array(BACKGROUND) * (1.0 - weight) + palette[labels] * weight
    return np.rint(mixed).astype(np.uint8)
