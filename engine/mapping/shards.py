"""Shards of a mapping run: bands of whole window rows, one per rank, blended exactly as in one process.

A shard owns a band of window rows and writes the patch rows from its first window row's
start to the next shard's (tile-level outputs: its window cells). The windows of earlier
rows that reach into its band are computed again by the shard (its margin) instead of
being exchanged between ranks: every patch then receives the same window results, added
in the same row-major order, as in one process, so the outputs are bit-equal to a
one-process run (given a model whose result for a window does not depend on its batch
mates); and ranks never wait on each other before the end, so a crashed rank costs its
own shard only. The margin costs ``ceil(overlap / stride)`` window rows per shard.

Shards are balanced by the windows that hold data: a window counts when it meets the
bounds of any input file (a scene of a mosaic, a date of a series), so ranks whose band
is mostly sea or outside the scenes get more rows.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from engine.io.grid import Grid
from engine.mapping.tiling import WindowGrid


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    window_rows: tuple[int, int]  # [first, stop) indices into WindowGrid.rows this shard computes, margin included
    owned_window_rows: tuple[int, int]  # [first, stop) window rows it writes (rows of window cells)
    rows: tuple[int, int]  # [start, stop) patch rows it writes

    @property
    def name(self) -> str:
        return f"part-{self.index + 1:03d}-of-{self.count:03d}"


def balanced_bounds(weights: Sequence[float], count: int) -> list[int]:
    """Cut points 0 = b0 < b1 < ... < bK = len(weights) of ``count`` contiguous groups whose sums
    are as even as a prefix cut makes them (equal numbers of items when every weight is 0)."""
    n = len(weights)
    count = max(1, min(count, n))
    if not any(weights):
        weights = [1.0] * n
    prefix, total = [], 0.0
    for w in weights:
        total += w
        prefix.append(total)
    bounds = [0]
    for k in range(1, count):
        cut = bisect.bisect_left(prefix, total * k / count) + 1
        # each group keeps at least one item, and leaves one for each group after it
        bounds.append(min(max(cut, bounds[-1] + 1), n - (count - k)))
    return bounds + [n]


def split_rows(windows: WindowGrid, weights: Sequence[float], count: int) -> list[Shard]:
    """The shards of a window grid, ``weights[i]``: the windows with data in window row ``i``.
    Fewer shards than ``count`` when the grid has fewer window rows."""
    rows, height = windows.rows, min(windows.tile, windows.height)
    bounds = balanced_bounds(weights, count)
    shards = []
    for k, (first, stop) in enumerate(zip(bounds, bounds[1:])):
        start = 0 if first == 0 else rows[first]
        end = windows.height if stop == len(rows) else rows[stop]
        margin = first
        while margin > 0 and rows[margin - 1] + height > start:
            margin -= 1
        shards.append(Shard(k, len(bounds) - 1, (margin, stop), (first, stop), (start, end)))
    return shards


def data_weights(
    windows: WindowGrid, patch_grid: Grid, footprints: Sequence[tuple[float, float, float, float]]
) -> list[int]:
    """Per window row, its windows that meet any of ``footprints`` (bounds in the grid's CRS)."""
    res, left, top = patch_grid.res, patch_grid.transform.c, patch_grid.transform.f
    spans = []  # per footprint: its patch rows and columns [r0, r1) x [c0, c1)
    for x0, y0, x1, y1 in footprints:
        spans.append(((top - y1) / res, (top - y0) / res, (x0 - left) / res, (x1 - left) / res))
    th, tw = min(windows.tile, windows.height), min(windows.tile, windows.width)
    weights = []
    for r in windows.rows:
        meets = [(c0, c1) for r0, r1, c0, c1 in spans if r < r1 and r + th > r0]
        weights.append(sum(1 for c in windows.cols if any(c < c1 and c + tw > c0 for c0, c1 in meets)))
    return weights
