"""What the inspector shows of an array, computed once from numpy so that widgets only paint.

A `ValueView` holds an array's statistics, a table of its first entries, an 8-bit heatmap and
a histogram, all as plain Python data. The table shows an array through its 2-D view: a 0-D
array is 1x1, a 1-D array one row, a 2-D array as is, and an N-D array keeps its last axis as
columns and stacks the others as rows. The heatmap lays it out as people picture it (an
`Arrangement`): a long vector wrapped into rows, a 3-D or 4-D array as a grid of 2-D maps.

>>> import numpy as np
>>> view = ValueView.from_array(np.array([[-1.0, 0.0], [2.0, np.nan]]))
>>> view.table_shape, view.nonfinite, view.min, view.max
((2, 2), 1, -1.0, 2.0)
>>> short_text(ValueView.from_array(np.float64(2) ** -0.5))
'0.7071'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

TABLE_ROWS = 200
TABLE_COLUMNS = 50
HEAT_SIDE = 256  # a plane or a wrapped vector is averaged down to at most this many cells a side
HIST_BINS = 30
# Heat indices: 0..HEAT_TOP the colour scale, HEAT_ZERO its middle (where 0 sits when values
# have both signs), then one index for NaN and infinite cells and one for cells that show no
# element (the end of a wrapped vector's last row, the tiles after the last feature map).
HEAT_TOP = 252
HEAT_ZERO = HEAT_TOP // 2
HEAT_NONFINITE = 253
HEAT_EMPTY = 254
WRAP_AT = 32  # a vector longer than this wraps into rows ...
WRAP_ASPECT = 1.6  # ... about this many times as long as the wrapped picture is high
MAX_TILE_ROWS, MAX_TILE_COLUMNS = 8, 32  # feature maps shown: rows x columns of tiles


@dataclass(frozen=True)
class Arrangement:
    """How the heatmap lays an array out: a grid of tiles of `tile` (rows, columns) cells. A
    plane is one tile (the array's 2-D view); a long vector wraps into rows of `width`; a
    3-D array is a grid of its 2-D maps, a 4-D array (N, C, H, W) N rows of C feature maps
    (C rows of N when N > C: a picture wider than high)."""

    shape: tuple
    kind: str  # "plane", "wrapped" or "maps"
    grid: tuple[int, int]  # tiles down and across (as many as are shown)
    tile: tuple[int, int]  # cells down and across one tile
    transposed: bool = False  # maps: the grid's rows are the array's second axis
    width: int = 0  # wrapped: elements per row
    maps: tuple[int, int] = (1, 1)  # maps: the array's grid of maps, before any was left out

    @property
    def cells(self) -> tuple[int, int]:
        """Cells down and across the whole picture."""
        return self.grid[0] * self.tile[0], self.grid[1] * self.tile[1]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def index_at(self, row: int, column: int) -> tuple | None:
        """The array index shown at a cell, None where the cell shows no element."""
        rows, columns = self.cells
        if not (0 <= row < rows and 0 <= column < columns) or not self.size:
            return None
        if self.kind == "plane":
            flat = row * columns + column
        elif self.kind == "wrapped":
            flat = row * self.width + column
        else:
            flat = self._map_flat(row, column)
        if flat is None or flat >= self.size:
            return None
        return tuple(int(i) for i in np.unravel_index(flat, self.shape))

    def _map_flat(self, row: int, column: int) -> int | None:
        (tile_rows, tile_columns), across = self.tile, self.maps[1]
        grid_row, y = divmod(row, tile_rows)
        grid_column, x = divmod(column, tile_columns)
        if len(self.shape) == 3:  # maps filling rows of `grid[1]`
            map_index = grid_row * self.grid[1] + grid_column
            if map_index >= self.shape[0]:
                return None
        else:
            first, second = (grid_column, grid_row) if self.transposed else (grid_row, grid_column)
            map_index = first * across + second
        return (map_index * tile_rows + y) * tile_columns + x

    def cell_of(self, index) -> tuple[int, int] | None:
        """The cell that shows the element at `index`, None when it is not shown."""
        try:
            flat = int(np.ravel_multi_index(tuple(index), self.shape)) if self.shape else 0
        except (ValueError, TypeError):
            return None
        if self.kind == "plane":
            return divmod(flat, self.cells[1])
        if self.kind == "wrapped":
            return divmod(flat, self.width)
        (tile_rows, tile_columns), (_, across) = self.tile, self.maps
        map_index, inside = divmod(flat, tile_rows * tile_columns)
        y, x = divmod(inside, tile_columns)
        if len(self.shape) == 3:
            grid_row, grid_column = divmod(map_index, self.grid[1])
        else:
            first, second = divmod(map_index, across)
            grid_row, grid_column = (second, first) if self.transposed else (first, second)
        if grid_row >= self.grid[0] or grid_column >= self.grid[1]:
            return None
        return grid_row * tile_rows + y, grid_column * tile_columns + x

    def describe(self) -> str:
        """In words, for the heatmap's legend: '4 x 16 maps of 8x8 (rows axis 0, columns axis
        1)', 'wrapped, 20 per row'; '' for a plane."""
        if self.kind == "wrapped":
            return f"wrapped, {self.width} per row"
        if self.kind != "maps":
            return ""
        tile = f"{self.tile[0]}x{self.tile[1]}"
        if len(self.shape) == 3:
            shown = min(self.shape[0], self.grid[0] * self.grid[1])
            text = f"{shown} maps of {tile}"
            return text if shown == self.shape[0] else f"{text} (first {shown} of {self.shape[0]})"
        down, across = self.maps
        rows, columns = self.grid
        axes = "rows axis 1, columns axis 0" if self.transposed else "rows axis 0, columns axis 1"
        total = (across, down) if self.transposed else (down, across)
        cut = "" if (rows, columns) == total else f" of {total[0]} x {total[1]}"
        return f"{rows} x {columns} maps of {tile}{cut} ({axes})"


def arrangement(shape: tuple) -> Arrangement:
    """How the heatmap lays out an array of `shape` (see Arrangement)."""
    shape = tuple(int(d) for d in shape)
    size = math.prod(shape)
    long_sides = [d for d in shape if d > 1]
    if len(long_sides) == 1 and size > WRAP_AT:  # a vector, maybe with axes of length 1
        width = math.ceil(math.sqrt(size * WRAP_ASPECT))
        return Arrangement(shape, "wrapped", (1, 1), (math.ceil(size / width), width), width=width)
    if len(shape) >= 3 and shape[-1] > 1 and shape[-2] > 1 and size:
        tile = (shape[-2], shape[-1])
        if len(shape) == 3:
            count = min(shape[0], MAX_TILE_ROWS * MAX_TILE_COLUMNS)
            across = math.ceil(math.sqrt(count * WRAP_ASPECT * tile[0] / tile[1]))
            across = max(1, min(across, count))
            return Arrangement(shape, "maps", (math.ceil(count / across), across), tile)
        down, across = math.prod(shape[:-3]), shape[-3]
        transposed = down > across
        rows, columns = (across, down) if transposed else (down, across)
        grid = (min(rows, MAX_TILE_ROWS), min(columns, MAX_TILE_COLUMNS))
        return Arrangement(shape, "maps", grid, tile, transposed, maps=(down, across))
    plane = two_d_view(np.empty(shape, dtype=np.bool_)).shape
    return Arrangement(shape, "plane", (1, 1), (int(plane[0]), int(plane[1])))


def arranged(values: np.ndarray, layout: Arrangement) -> tuple[np.ndarray, np.ndarray]:
    """The picture's cells as numbers (NaN where the array has NaN) and a mask of the cells
    that show no element."""
    rows, columns = layout.cells
    if layout.kind == "plane":
        return two_d_view(values), np.zeros((rows, columns), dtype=bool)
    flat = values.reshape(-1)
    if layout.kind == "wrapped":
        cells = np.full(rows * columns, np.nan)
        cells[: flat.size] = flat
        empty = np.arange(rows * columns) >= flat.size
        return cells.reshape(rows, columns), empty.reshape(rows, columns)
    (tile_rows, tile_columns), (grid_rows, grid_columns) = layout.tile, layout.grid
    if len(layout.shape) == 3:
        count = grid_rows * grid_columns
        maps = np.full((count, tile_rows, tile_columns), np.nan)
        shown = min(count, layout.shape[0])
        maps[:shown] = values[:shown]
        empty = np.zeros(maps.shape, dtype=bool)
        empty[shown:] = True
        grid = maps.reshape(grid_rows, grid_columns, tile_rows, tile_columns)
        mask = empty.reshape(grid.shape)
    else:
        down, across = layout.maps
        grid = values.reshape(down, across, tile_rows, tile_columns)
        if layout.transposed:
            grid = grid.transpose(1, 0, 2, 3)
        grid = grid[:grid_rows, :grid_columns]
        mask = np.zeros(grid.shape, dtype=bool)
    cells = grid.transpose(0, 2, 1, 3).reshape(rows, columns)
    return cells, mask.transpose(0, 2, 1, 3).reshape(rows, columns)


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
    heat: bytes  # row-major 8-bit colour indices of the (downsampled) arrangement
    heat_size: tuple[int, int]  # (width, height) of `heat`
    hist_counts: tuple[int, ...]  # HIST_BINS counts over the finite entries; () if none
    hist_edges: tuple[float, ...]  # HIST_BINS + 1 bin edges; () if no entry is finite
    layout: Arrangement | None = None  # how `heat` lays the array out (cells before averaging)
    values: np.ndarray | None = field(default=None, compare=False, repr=False)  # float64

    @property
    def signed(self) -> bool:
        """Whether the finite values have both signs, so the heatmap diverges around 0."""
        return is_signed(self.min, self.max)

    @property
    def scale(self) -> tuple[float, float]:
        """The values at the heatmap's lowest and highest colour: -m..m with m the largest
        magnitude when the values have both signs (0 in the middle), else min..max."""
        if self.signed:
            magnitude = max(-self.min, self.max)
            return -magnitude, magnitude
        return self.min, self.max

    @property
    def table_cut(self) -> bool:
        """Whether the table shows fewer rows or columns than the 2-D view has."""
        rows, columns = self.table_shape
        return rows > TABLE_ROWS or columns > TABLE_COLUMNS

    def value_at(self, index) -> float:
        """The element at an array index, as float64."""
        return float(self.values[tuple(index)])

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
        layout = arrangement(values.shape)
        cells, empty = arranged(values, layout)
        heat, heat_size = heat_indices(cells, low, high, empty)
        cut = plane[:TABLE_ROWS, :TABLE_COLUMNS]
        kept = values.copy() if values is original else values
        kept.flags.writeable = False
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
            layout=layout,
            values=kept,
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


def heat_indices(
    plane: np.ndarray, low: float, high: float, empty: np.ndarray | None = None
) -> tuple[bytes, tuple[int, int]]:
    """8-bit colour indices of a 2-D array, row-major, and the image's (width, height).

    Signed ranges map -m..m (m the largest magnitude) to 0..HEAT_TOP, so 0 is the middle
    colour HEAT_ZERO and the colours mean the same distance from 0 both ways; one-signed
    ranges map low..high to 0..HEAT_TOP (a constant maps to the middle). NaN and infinite
    cells get HEAT_NONFINITE, `empty` cells HEAT_EMPTY. A plane over HEAT_SIDE a side is
    averaged down first.
    """
    if plane.size == 0:
        return b"", (0, 0)
    small = block_means(plane)
    gone = np.zeros(small.shape, dtype=bool)
    if empty is not None and empty.any():
        gone = block_means(np.where(empty, np.nan, 0.0)) != 0.0  # a block of nothing but empty
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if math.isnan(low):
            scaled = np.full(small.shape, np.nan)
        elif is_signed(low, high):
            scaled = HEAT_ZERO + HEAT_ZERO * small / max(-low, high)
        elif high > low:
            scaled = HEAT_TOP * (small - low) / (high - low)
        else:
            scaled = np.where(np.isfinite(small), float(HEAT_ZERO), np.nan)
        indices = np.where(np.isfinite(scaled), np.rint(np.clip(scaled, 0, HEAT_TOP)), 0)
    indices[~np.isfinite(small)] = HEAT_NONFINITE
    indices[gone] = HEAT_EMPTY
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
