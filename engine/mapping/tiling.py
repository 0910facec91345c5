"""The window grid of tiled inference and the weights that blend overlapping windows.

Units are model patches: the reference grid is a whole number of patches and every
window starts and ends on patch boundaries, so each modality's window is a whole
number of its pixels. Windows have the tile size (shrunk to the raster when the
raster is smaller), step by ``tile - overlap``, and the last window of a row or
column is moved back so that it ends on the raster's edge: every patch is covered.

Blending: each window weighs its patches by a linear ramp across the overlap on
every side it shares with a neighbour (weight 1 inside and on the raster's
border); the accumulated result is divided by the sum of the weights, so the
weights of every patch sum to one and seams vanish.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Window starts along one axis of ``length`` patches."""
    if length <= 0 or tile <= 0:
        raise ValueError("length and tile must be positive")
    tile = min(tile, length)
    stride = max(tile - overlap, 1)
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def axis_weights(size: int, ramp_before: int, ramp_after: int) -> np.ndarray:
    """Linear ramps (strictly positive) over the first/last patches shared with neighbours."""
    i = np.arange(size, dtype=np.float64) + 0.5
    w = np.ones(size)
    if ramp_before > 0:
        w = np.minimum(w, i / ramp_before)
    if ramp_after > 0:
        w = np.minimum(w, (size - i) / ramp_after)
    return w


@dataclass(frozen=True)
class WindowGrid:
    """Windows of ``tile`` x ``tile`` patches with ``overlap`` patches over a height x width grid."""

    height: int
    width: int
    tile: int
    overlap: int

    def __post_init__(self) -> None:
        if self.tile < 1 or not 0 <= self.overlap < self.tile:
            raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got tile={self.tile}, overlap={self.overlap}")

    # Computed once: weights() looks up neighbours for every window of a large grid.
    @functools.cached_property
    def rows(self) -> list[int]:
        return axis_starts(self.height, self.tile, self.overlap)

    @functools.cached_property
    def cols(self) -> list[int]:
        return axis_starts(self.width, self.tile, self.overlap)

    @functools.cached_property
    def _index(self) -> tuple[dict[int, int], dict[int, int]]:
        return {r: i for i, r in enumerate(self.rows)}, {c: i for i, c in enumerate(self.cols)}

    def cell(self, window: Window) -> tuple[int, int]:
        """(row, col) of a window in the grid of windows (constant time: called for every window)."""
        rows, cols = self._index
        return rows[window.row_off], cols[window.col_off]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def __iter__(self) -> Iterator[Window]:
        """Row-major windows (the order the row-band writer needs), made as they are asked for."""
        return self.in_rows(0, len(self.rows))

    def in_rows(self, first: int, stop: int) -> Iterator[Window]:
        """Row-major windows of window rows [first, stop) (a shard's, engine.mapping.shards)."""
        th, tw = min(self.tile, self.height), min(self.tile, self.width)
        cols = self.cols
        return (Window(c, r, tw, th) for r in self.rows[first:stop] for c in cols)

    def windows(self) -> list[Window]:
        return list(self)

    def weights(self, window: Window) -> np.ndarray:
        """(h, w) float32 blending weights of one window (not yet normalised)."""

        def ramps(start: int, size: int, starts: list[int]) -> tuple[int, int]:
            # The ramp spans the overlap with the nearest neighbour on each side (windows of one size:
            # the neighbours start within ``size`` of ``start``, found by bisection in the sorted starts).
            before = bisect.bisect_left(starts, start)
            after = bisect.bisect_right(starts, start)
            ramp_before = starts[before - 1] + size - start if before and starts[before - 1] > start - size else 0
            ramp_after = start + size - starts[after] if after < len(starts) and starts[after] < start + size else 0
            return ramp_before, ramp_after

        r_before, r_after = ramps(window.row_off, window.height, self.rows)
        c_before, c_after = ramps(window.col_off, window.width, self.cols)
        wy = axis_weights(window.height, r_before, r_after)
        wx = axis_weights(window.width, c_before, c_after)
        return np.outer(wy, wx).astype(np.float32)
