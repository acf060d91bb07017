"""Networks that branch: a residual block, a concatenating block, and a merge with a layer's
output from earlier in the same Sequential.

Each is an ordinary Module made of ordinary modules, so the graph it records is made of the
usual primitives (one `add` or `concat` joins the branches) and its backward is derived: the
gradient reaching the join is handed to both branches and summed where they split.

>>> import numpy as np
>>> from topograd.engine import Tensor, nn
>>> block = nn.Residual(nn.Sequential(nn.Linear(4, 4, rng=0), nn.ReLU()))
>>> block(Tensor(np.ones((2, 4)))).shape
(2, 4)
"""

from __future__ import annotations

from topograd.engine.functional import concat
from topograd.engine.nn.module import Module

MERGE_MODES = ("add", "concat")


def _check_join(what: str, shapes: list[tuple], axis: int | None) -> None:
    """Shapes that can be added (equal) or concatenated (equal but along `axis`)."""
    first = shapes[0]
    for shape in shapes[1:]:
        if axis is None:
            same = shape == first
        else:
            same = len(shape) == len(first) and all(
                a == b for i, (a, b) in enumerate(zip(shape, first)) if i != axis % len(first)
            )
        if not same:
            verb = "added" if axis is None else f"concatenated along axis {axis}"
            listed = " and ".join(str(s[1:]) for s in shapes)
            raise ValueError(f"{what}: outputs of shapes {listed} per example cannot be {verb}")


class Residual(Module):
    """`body(x) + x`, or `body(x) + shortcut(x)` when the shortcut changes the shape (a
    strided 1x1 convolution, as ResNet's projection shortcut)."""

    def __init__(self, body: Module, shortcut: Module | None = None):
        super().__init__()
        self.body = body
        if shortcut is not None:
            self.shortcut = shortcut

    def forward(self, x):
        out = self.body(x)
        skip = self.shortcut(x) if "shortcut" in self.__dict__ else x
        _check_join("residual", [tuple(out.shape), tuple(skip.shape)], None)
        return out + skip


class Concat(Module):
    """`[x, body(x)]` joined along `axis` (channels of images, features of rows): DenseNet's
    layer, whose output keeps its input beside what the body computed."""

    def __init__(self, body: Module, axis: int = 1):
        super().__init__()
        self.body = body
        self.axis = int(axis)

    def forward(self, x):
        out = self.body(x)
        _check_join("concat", [tuple(x.shape), tuple(out.shape)], self.axis)
        return concat([x, out], axis=self.axis)

    def extra_repr(self):
        return f"axis={self.axis}"


class Merge(Module):
    """The current value joined with the outputs of earlier layers of the same Sequential,
    named by their labels: `mode` "add" sums them, "concat" joins them along `axis`.

    Its parent Sequential hands it those outputs (`forward(x, *earlier)`); on its own it
    is refused, as it has nothing to merge with. Sequential knows a merge by its `sources`."""

    def __init__(self, mode: str, sources, axis: int = 1):
        super().__init__()
        if mode not in MERGE_MODES:
            raise ValueError(f"merge mode must be one of {', '.join(MERGE_MODES)}, got {mode!r}")
        sources = (sources,) if isinstance(sources, str) else tuple(sources)
        if not sources:
            raise ValueError(f"{mode}: name at least one earlier layer to merge with")
        self.mode, self.sources, self.axis = mode, sources, int(axis)

    def forward(self, x, *earlier):
        if len(earlier) != len(self.sources):
            raise ValueError(
                f"{self.mode}({', '.join(self.sources)}) merges with earlier layers of the "
                "Sequential that holds it; called on its own it has nothing to merge with"
            )
        values = [x, *earlier]
        if self.mode == "add":
            _check_join(self.mode, [tuple(v.shape) for v in values], None)
            out = values[0]
            for value in values[1:]:
                out = out + value
            return out
        _check_join(self.mode, [tuple(v.shape) for v in values], self.axis)
        return concat(values, axis=self.axis)

    def extra_repr(self):
        axis = f", axis={self.axis}" if self.mode == "concat" else ""
        return f"{self.mode}, {', '.join(self.sources)}{axis}"


__all__ = ["MERGE_MODES", "Concat", "Merge", "Residual"]
