"""Window grid of tiled inference: coverage and blending weights (property tests)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from engine.mapping.tiling import WindowGrid, axis_starts


@st.composite
def grids(draw):
    tile = draw(st.integers(1, 12))
    return WindowGrid(draw(st.integers(1, 40)), draw(st.integers(1, 40)), tile, draw(st.integers(0, tile - 1)))


@settings(max_examples=300, deadline=None)
@given(grids())
def test_every_patch_covered_and_weights_sum_to_one(grid):
    coverage = np.zeros((grid.height, grid.width), int)
    total = np.zeros((grid.height, grid.width))
    windows = grid.windows()
    sizes = {(w.height, w.width) for w in windows}
    assert sizes == {(min(grid.tile, grid.height), min(grid.tile, grid.width))}  # one batchable shape
    raw = []
    for w in windows:
        assert 0 <= w.row_off and w.row_off + w.height <= grid.height
        assert 0 <= w.col_off and w.col_off + w.width <= grid.width
        weights = grid.weights(w)
        assert weights.shape == (w.height, w.width) and (weights > 0).all()
        rows, cols = slice(w.row_off, w.row_off + w.height), slice(w.col_off, w.col_off + w.width)
        coverage[rows, cols] += 1
        total[rows, cols] += weights
        raw.append((rows, cols, weights))
    assert (coverage >= 1).all()
    normalised = np.zeros_like(total)
    for rows, cols, weights in raw:
        normalised[rows, cols] += weights / total[rows, cols]
    np.testing.assert_allclose(normalised, 1.0, rtol=1e-6)


def test_weights_are_flat_inside_and_ramp_across_overlaps():
    grid = WindowGrid(20, 8, tile=8, overlap=2)
    assert axis_starts(20, 8, 2) == [0, 6, 12]
    middle = grid.weights(Window(0, 6, 8, 8))
    assert middle[:, 0].tolist() == middle[:, -1].tolist()  # no neighbours left/right: flat across
    np.testing.assert_allclose(middle[:, 3], [0.25, 0.75, 1, 1, 1, 1, 0.75, 0.25])
    # The last window is moved back to end on the edge: its ramp spans the larger overlap.
    assert axis_starts(21, 8, 2) == [0, 6, 12, 13]


def test_invalid_tiles_are_refused():
    with pytest.raises(ValueError):
        WindowGrid(10, 10, tile=4, overlap=4)


def test_windows_are_counted_and_made_lazily():
    grid = WindowGrid(1_000_000, 1_000_000, 16, 2)  # 5e9 windows: none is made before it is asked for
    assert len(grid) == len(grid.rows) * len(grid.cols) > 5e9
    first = next(iter(grid))
    assert (first.col_off, first.row_off, first.width, first.height) == (0, 0, 16, 16)
    assert list(WindowGrid(20, 20, 16, 4)) == WindowGrid(20, 20, 16, 4).windows()


def test_a_window_knows_its_cell_in_the_grid_of_windows():
    grid = WindowGrid(50, 37, 8, 3)
    cells = [grid.cell(w) for w in grid]
    assert cells == [(r, c) for r in range(len(grid.rows)) for c in range(len(grid.cols))]
    assert cells[-1] == (len(grid.rows) - 1, len(grid.cols) - 1)  # the last window, moved back to the edge
