"""ValueView against numpy: statistics, the 2-D view and table, the heatmap's arrangement
(wrapped vectors, feature maps) and colour indices, histogram, text."""

import math

import numpy as np
import pytest
from topograd.gui.values import (
    HEAT_EMPTY,
    HEAT_NONFINITE,
    HEAT_SIDE,
    HEAT_TOP,
    HEAT_ZERO,
    HIST_BINS,
    TABLE_COLUMNS,
    TABLE_ROWS,
    WRAP_AT,
    ValueView,
    arrangement,
    format_number,
    row_label,
    short_text,
)


def heat_grid(view: ValueView) -> np.ndarray:
    width, height = view.heat_size
    return np.frombuffer(view.heat, dtype=np.uint8).reshape(height, width)


def with_nonfinite(shape, seed=0):
    rng = np.random.default_rng(seed)
    array = rng.normal(size=shape) * 3.0 + 0.5
    flat = array.reshape(-1)
    flat[rng.choice(flat.size, size=4, replace=False)] = [np.nan, np.inf, -np.inf, np.nan]
    return array


@pytest.mark.parametrize("shape", [(7,), (5, 6), (3, 4, 5), (2, 3, 4, 5)])
def test_statistics_match_numpy_over_the_finite_entries(shape):
    array = with_nonfinite(shape)
    finite = array[np.isfinite(array)]
    view = ValueView.from_array(array)
    assert view.nonfinite == 4
    assert view.mean == pytest.approx(np.mean(finite), rel=1e-12)
    assert view.std == pytest.approx(np.std(finite), rel=1e-12)
    assert (view.min, view.max) == (np.min(finite), np.max(finite))
    assert (view.shape, view.size, view.dtype) == (shape, array.size, "float64")
    assert view.scalar is None


def test_float32_keeps_its_dtype_and_gets_float64_statistics():
    array = np.random.default_rng(1).normal(size=(40, 30)).astype(np.float32)
    view = ValueView.from_array(array)
    assert view.dtype == "float32"
    assert view.mean == pytest.approx(np.mean(array.astype(np.float64)), rel=1e-12)
    assert view.std == pytest.approx(np.std(array.astype(np.float64)), rel=1e-12)


def test_no_finite_entry_gives_nan_statistics_and_no_histogram():
    view = ValueView.from_array(np.array([np.nan, np.inf, -np.inf]))
    assert view.nonfinite == 3
    assert all(math.isnan(x) for x in (view.mean, view.std, view.min, view.max))
    assert view.hist_counts == () and view.hist_edges == ()
    assert set(heat_grid(view).reshape(-1)) == {HEAT_NONFINITE}


@pytest.mark.parametrize(
    ("shape", "view_shape"),
    [((), (1, 1)), ((6,), (1, 6)), ((4, 5), (4, 5)), ((2, 3, 4), (6, 4)), ((2, 3, 4, 5), (24, 5))],
)
def test_two_d_view_rule_and_table(shape, view_shape):
    array = np.arange(math.prod(shape), dtype=np.float64).reshape(shape) - 7.0
    view = ValueView.from_array(array)
    assert view.table_shape == view_shape
    assert view.table == tuple(map(tuple, array.reshape(view_shape).tolist()))
    rows, columns = view.layout.cells
    assert view.heat_size == (columns, rows) and len(view.heat) == rows * columns


def test_table_is_cut_to_the_first_rows_and_columns():
    array = np.random.default_rng(2).normal(size=(300, 70))
    view = ValueView.from_array(array)
    assert view.table_shape == (300, 70) and view.table_cut
    assert len(view.table) == TABLE_ROWS and {len(row) for row in view.table} == {TABLE_COLUMNS}
    assert np.array_equal(np.array(view.table), array[:TABLE_ROWS, :TABLE_COLUMNS])
    assert not ValueView.from_array(array[:200, :50]).table_cut


def test_scalars_have_their_number():
    assert ValueView.from_array(np.float64(2.0) ** -0.5).scalar == 2.0**-0.5
    assert ValueView.from_array(-1.5).scalar == -1.5
    one = ValueView.from_array(np.array([[3.25]]))
    assert (one.scalar, one.shape, one.table) == (3.25, (1, 1), ((3.25,),))


def test_signed_heat_is_symmetric_around_zero():
    array = np.random.default_rng(3).normal(size=(9, 11))
    array[4, 5] = 0.0
    array[0, 0], array[8, 10] = -4.0, 2.0  # the largest magnitude is negative
    grid = heat_grid(ValueView.from_array(array)).astype(int)
    assert grid[0, 0] == 0 and grid[4, 5] == HEAT_ZERO
    assert grid[8, 10] == round(HEAT_ZERO + HEAT_ZERO * 2.0 / 4.0)  # not stretched to the top
    assert np.all(grid[array < 0] <= HEAT_ZERO) and np.all(grid[array > 0] >= HEAT_ZERO)
    mirrored = heat_grid(ValueView.from_array(-array)).astype(int)
    assert np.all(np.abs((grid - HEAT_ZERO) + (mirrored - HEAT_ZERO)) <= 1)
    assert ValueView.from_array(array).scale == (-4.0, 4.0)


def test_heat_follows_the_order_of_the_values():
    array = np.random.default_rng(4).normal(size=(6, 7))
    grid = heat_grid(ValueView.from_array(array)).astype(int)
    order = np.argsort(array, axis=None)
    assert np.all(np.diff(grid.reshape(-1)[order]) >= 0)


def test_one_signed_heat_spans_min_to_max_on_the_sequential_scale():
    array = np.random.default_rng(5).uniform(0.43, 0.57, size=(8, 3))  # softmax-like
    view = ValueView.from_array(array)
    assert not view.signed and view.scale == (array.min(), array.max())
    grid = heat_grid(view)
    expected = np.rint(HEAT_TOP * (array - array.min()) / (array.max() - array.min()))
    assert np.array_equal(grid, expected)


def test_constant_heat_is_the_middle_colour():
    assert set(heat_grid(ValueView.from_array(np.full((3, 4), 2.5))).reshape(-1)) == {HEAT_ZERO}


def test_nan_and_infinities_get_their_own_colour():
    array = np.array([[-2.0, 1.0, np.nan], [np.inf, -np.inf, 0.0]])
    grid = heat_grid(ValueView.from_array(array))
    nonfinite = HEAT_NONFINITE
    assert grid.tolist() == [[0, HEAT_ZERO + 63, nonfinite], [nonfinite, nonfinite, HEAT_ZERO]]


def test_downsampling_keeps_constant_blocks():
    base = np.random.default_rng(6).normal(size=(256, 200))
    big = np.kron(base, np.ones((2, 3)))
    small_view, big_view = ValueView.from_array(base), ValueView.from_array(big)
    assert big_view.heat_size == (200, 256)
    assert big_view.heat == small_view.heat


def test_downsampled_blocks_average_and_skip_nan():
    array = np.zeros((512, 2))
    array[0:2, 0] = [1.0, 3.0]
    array[2, 1], array[3, 1] = np.nan, 4.0
    array[4:6, 0] = -4.0
    view = ValueView.from_array(array)
    assert view.heat_size == (2, 256)
    grid = heat_grid(view)
    # block means 2.0, 4.0 and -4.0 on the symmetric scale -4..4
    assert grid[0, 0] == round(HEAT_ZERO + HEAT_ZERO * 2.0 / 4.0)
    assert grid[1, 1] == HEAT_TOP and grid[2, 0] == 0 and grid[3, 0] == HEAT_ZERO


@pytest.mark.parametrize(("shape", "size"), [((1000, 7), (7, 250)), ((600, 300), (150, 200))])
def test_a_plane_is_at_most_256_cells_a_side(shape, size):
    view = ValueView.from_array(np.ones(shape))
    assert view.heat_size == size
    assert max(view.heat_size) <= HEAT_SIDE and len(view.heat) == size[0] * size[1]


# --- the heatmap's arrangement ---------------------------------------------------------------
@pytest.mark.parametrize("shape", [(256,), (1, 256), (256, 1), (1, 1, 300)])
def test_a_long_vector_wraps_into_rows(shape):
    array = np.arange(math.prod(shape), dtype=np.float64).reshape(shape) + 1.0
    view = ValueView.from_array(array)
    layout = view.layout
    assert layout.kind == "wrapped" and layout.width < array.size
    rows, columns = layout.cells
    assert columns == layout.width and rows == math.ceil(array.size / columns)
    assert 1.0 <= columns / rows <= 2.5  # wider than high, as the panel is
    grid = heat_grid(view)
    assert grid[-1, -1] == HEAT_EMPTY or array.size == rows * columns  # the rest of its row
    for flat in (0, 17, array.size - 1):
        index = np.unravel_index(flat, shape)
        assert layout.cell_of(index) == divmod(flat, columns)
        assert layout.index_at(*divmod(flat, columns)) == tuple(int(i) for i in index)
    assert "wrapped" in layout.describe()


def test_a_short_vector_stays_one_row():
    assert arrangement((WRAP_AT,)).kind == "plane"
    assert arrangement((WRAP_AT + 1,)).kind == "wrapped"


def test_a_4d_tensor_is_a_grid_of_feature_maps():
    array = np.random.default_rng(7).normal(size=(4, 16, 8, 8))  # a batch of conv outputs
    view = ValueView.from_array(array)
    layout = view.layout
    assert (layout.kind, layout.grid, layout.tile) == ("maps", (4, 16), (8, 8))
    assert view.heat_size == (16 * 8, 4 * 8)  # every map whole, none averaged
    grid = heat_grid(view)
    high = view.scale[1]
    for index in [(0, 0, 0, 0), (2, 5, 3, 7), (3, 15, 7, 7)]:
        row, column = layout.cell_of(index)
        assert layout.index_at(row, column) == index
        expected = round(HEAT_ZERO + HEAT_ZERO * array[index] / high)
        assert abs(int(grid[row, column]) - expected) <= 1
    assert layout.describe() == "4 x 16 maps of 8x8 (rows axis 0, columns axis 1)"


def test_conv_weights_lie_along_the_wider_axis_and_big_grids_are_cut():
    weights = arrangement((16, 1, 3, 3))  # 16 filters of one channel: one row of 16 maps
    assert weights.grid == (1, 16) and weights.transposed
    assert weights.index_at(0, 3 * 5 + 1) == (5, 0, 0, 1)
    big = arrangement((64, 4, 8, 8))
    assert big.grid == (4, 32) and "of 4 x 64" in big.describe()
    assert big.index_at(0, 8 * 31) == (31, 0, 0, 0) and big.cell_of((40, 0, 0, 0)) is None


def test_a_3d_tensor_is_maps_that_fill_rows():
    layout = arrangement((5, 7, 9))
    assert layout.kind == "maps" and layout.grid[0] * layout.grid[1] >= 5
    shown = {layout.index_at(r, c) for r in range(layout.cells[0]) for c in range(layout.cells[1])}
    shown.discard(None)
    assert len(shown) == 5 * 7 * 9
    grid = heat_grid(ValueView.from_array(np.ones((5, 7, 9))))
    assert (grid == HEAT_EMPTY).sum() == (layout.grid[0] * layout.grid[1] - 5) * 7 * 9


def test_the_readout_reads_the_exact_element():
    array = np.random.default_rng(8).normal(size=(3, 4)).astype(np.float32)
    view = ValueView.from_array(array)
    assert view.value_at((2, 1)) == float(array[2, 1])
    assert not view.values.flags.writeable


def test_histogram_matches_numpy_over_finite_entries():
    array = with_nonfinite((20, 30), seed=7)
    finite = array[np.isfinite(array)]
    view = ValueView.from_array(array)
    counts, edges = np.histogram(finite, bins=HIST_BINS)
    assert view.hist_counts == tuple(counts.tolist())
    assert np.allclose(view.hist_edges, edges, rtol=0, atol=0)
    assert sum(view.hist_counts) == finite.size == view.size - view.nonfinite


def test_empty_array():
    view = ValueView.from_array(np.zeros((0, 3)))
    assert (view.size, view.table_shape, view.heat, view.heat_size) == (0, (0, 3), b"", (0, 0))
    assert short_text(view) == "empty"


def test_row_labels_are_the_leading_indices():
    shape = (2, 3, 4)
    for row in range(6):
        expected = ", ".join(str(i) for i in np.unravel_index(row, shape[:-1]))
        assert row_label(shape, row) == expected
    assert row_label((5, 4), 3) == "3"
    assert row_label((7,), 0) == "0"


def test_format_number():
    assert format_number(2.0**-0.5) == "0.7071"
    assert format_number(-1.4999999999999996) == "-1.5"
    assert format_number(-0.0) == "0"
    assert format_number(1.23456e-5) == "1.235e-05"
    assert format_number(2.0**-0.5, 6) == "0.707107"
    assert [format_number(x) for x in (math.nan, math.inf, -math.inf)] == ["nan", "inf", "-inf"]


def test_short_text():
    assert short_text(None) == ""
    assert short_text(ValueView.from_array(np.tanh(0.8813735870195432))) == "0.7071"
    assert short_text(ValueView.from_array(np.array([1.0, 3.0]))) == "mean 2 std 1"
    array = np.array([0.1, 0.14, np.nan, 10.0])
    assert short_text(ValueView.from_array(array)) == "mean 3.4 std 4.7 (1 non-finite)"
