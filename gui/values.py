"""What the inspector shows of an array, computed once from numpy so that widgets only paint.

A `ValueView` holds an array's statistics, a table of its first entries, an 8-bit heatmap and
a histogram, all as plain Python data. Arrays of any rank are shown through their 2-D view:
a 0-D array is 1x1, a 1-D array one row, a 2-D array as is, and an N-D array keeps its last
axis as columns and stacks the others as rows.

>>> import numpy as np
>>> view = ValueView.from_array(np.array([[-1.0, 0.0], [2.0, np.nan]]))
>>> view.table_shape, view.nonfinite, view.min, view.max
((2, 2), 1, -1.0, 2.0)
>>> short_text(ValueView.from_array(np.float64(2) ** -0.5))
'0.7071'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TABLE_ROWS = 200
TABLE_COLUMNS = 50
HEAT_SIDE = 256
HIST_BINS = 30
# NaN cells (and cells of a downsampled block holding nothing but NaN) get heat index 0, the
# colour of the low end; +Inf and -Inf cells clip to the high and low ends.
HEAT_NAN = 0
HEAT_ZERO = 128  # where 0 sits in a signed heatmap: the middle of the diverging colours


@dataclass(frozen=True)
class ValueView:
    """An array as the inspector shows it: statistics, a table, a heatmap and a histogram.

    Statistics are float64 over the finite entries only (std is numpy's, ddof 0); they are
    NaN when no entry is finite. `nonfinite` counts the NaN and Inf entries.
    """

    shape: tuple
    dtype: str
    size: int
    scalar: float | None  # the one number of a one-element array, else None
    mean: float
    std: float
    min: float
    max: float
    nonfinite: int
    table: tuple[tuple[float, ...], ...]  # the 2-D view cut to TABLE_ROWS x TABLE_COLUMNS
    table_shape: tuple[int, int]  # the whole 2-D view's shape, before the cut
    heat: bytes  # row-major 8-bit colour indices of the (downsampled) 2-D view
    heat_size: tuple[int, int]  # (width, height) of `heat`, each at most HEAT_SIDE
    hist_counts: tuple[int, ...]  # HIST_BINS counts over the finite entries; () if none
    hist_edges: tuple[float, ...]  # HIST_BINS + 1 bin edges; () if no entry is finite

    @property
    def signed(self) -> bool:
        """Whether the finite values have both signs, so the heatmap diverges around 0."""
        return is_signed(self.min, self.max)

    @property
    def table_cut(self) -> bool:
        """Whether the table shows fewer rows or columns than the 2-D view has."""
        rows, columns = self.table_shape
        return rows > TABLE_ROWS or columns > TABLE_COLUMNS

    @classmethod
    def from_array(cls, array) -> ValueView:
        """Summarize `array` (anything numpy accepts: an ndarray, a numpy scalar, a float)."""
        original = np.asarray(array)
        values = original.astype(np.float64, copy=False)
        finite_mask = np.isfinite(values)
        finite = values[finite_mask]
        if finite.size:
            low, high = float(finite.min()), float(finite.max())
            mean, std = float(finite.mean()), float(finite.std())
            counts, edges = np.histogram(finite, bins=HIST_BINS)
            hist_counts = tuple(int(c) for c in counts)
            hist_edges = tuple(float(e) for e in edges)
        else:
            low = high = mean = std = math.nan
            hist_counts, hist_edges = (), ()
        plane = two_d_view(values)
        heat, heat_size = heat_indices(plane, low, high)
        cut = plane[:TABLE_ROWS, :TABLE_COLUMNS]
        return cls(
            shape=tuple(original.shape),
            dtype=str(original.dtype),
            size=int(original.size),
            scalar=float(values.reshape(-1)[0]) if original.size == 1 else None,
            mean=mean,
            std=std,
            min=low,
            max=high,
            nonfinite=int(original.size - finite.size),
            table=tuple(tuple(row) for row in cut.tolist()),
            table_shape=(int(plane.shape[0]), int(plane.shape[1])),
            heat=heat,
            heat_size=heat_size,
            hist_counts=hist_counts,
            hist_edges=hist_edges,
        )


def is_signed(low: float, high: float) -> bool:
    """Whether a range holds both negative and positive numbers."""
    return low < 0.0 < high


def two_d_view(values: np.ndarray) -> np.ndarray:
    """0-D -> 1x1, 1-D -> 1xN, 2-D as is, N-D -> (product of the leading axes, last axis)."""
    if values.ndim == 0:
        return values.reshape(1, 1)
    if values.ndim == 1:
        return values.reshape(1, -1)
    return values.reshape(math.prod(values.shape[:-1]), values.shape[-1])


def block_means(plane: np.ndarray, side: int = HEAT_SIDE) -> np.ndarray:
    """Shrink a 2-D array to at most side x side by averaging blocks, NaN entries left out
    (a block of only NaN stays NaN; an Inf in a block makes the block infinite)."""
    rows, columns = plane.shape
    block_rows, block_columns = math.ceil(rows / side), math.ceil(columns / side)
    if block_rows == 1 and block_columns == 1:
        return plane
    height, width = math.ceil(rows / block_rows), math.ceil(columns / block_columns)
    padded = np.full((height * block_rows, width * block_columns), np.nan)
    padded[:rows, :columns] = plane
    blocks = padded.reshape(height, block_rows, width, block_columns)
    present = ~np.isnan(blocks)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        sums = np.where(present, blocks, 0.0).sum(axis=(1, 3))
        return sums / present.sum(axis=(1, 3))


def heat_indices(plane: np.ndarray, low: float, high: float) -> tuple[bytes, tuple[int, int]]:
    """8-bit colour indices of a 2-D array, row-major, and the image's (width, height).

    Signed ranges map low..0 to 0..HEAT_ZERO and 0..high to HEAT_ZERO..255, so 0 is the
    middle colour and both ends are used; one-signed ranges map low..high to 0..255 (a
    constant maps to the middle). Infinities clip to the ends; NaN gets HEAT_NAN.
    """
    if plane.size == 0:
        return b"", (0, 0)
    small = block_means(plane)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if math.isnan(low):
            scaled = np.full(small.shape, np.nan)
        elif is_signed(low, high):
            below = HEAT_ZERO * (1.0 - small / low)
            above = HEAT_ZERO + (255 - HEAT_ZERO) * (small / high)
            scaled = np.where(small < 0.0, below, above)
        elif high > low:
            scaled = 255.0 * (small - low) / (high - low)
        else:
            scaled = np.where(small > high, 255.0, np.where(small < low, 0.0, float(HEAT_ZERO)))
            scaled[np.isnan(small)] = np.nan
        indices = np.where(np.isnan(scaled), HEAT_NAN, np.rint(np.clip(scaled, 0.0, 255.0)))
    return indices.astype(np.uint8).tobytes(), (int(small.shape[1]), int(small.shape[0]))


def row_label(shape: tuple, row: int) -> str:
    """The index of a 2-D view row in the array's leading axes: '3', or '1, 2' for 3-D."""
    leading = tuple(shape[:-1])
    if len(leading) <= 1:
        return str(row)
    index = []
    for extent in reversed(leading):
        row, position = divmod(row, extent)
        index.append(position)
    return ", ".join(str(i) for i in reversed(index))


def format_number(x: float, digits: int = 4) -> str:
    """A number in `digits` significant digits: 0.7071, -1.5, 1.235e-05, nan, inf."""
    return f"{float(x) + 0.0:.{digits}g}"


def short_text(value: ValueView | None) -> str:
    """A one-line summary for a graph box: '0.7071' for one number, 'mean 0.12 std 2.3' else."""
    if value is None:
        return ""
    if value.scalar is not None:
        return format_number(value.scalar)
    if value.size == 0:
        return "empty"
    text = f"mean {format_number(value.mean, 2)} std {format_number(value.std, 2)}"
    if value.nonfinite:
        text += f" ({value.nonfinite} non-finite)"
    return text
