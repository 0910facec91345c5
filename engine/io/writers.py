"""Streaming results into tiled, compressed GeoTIFFs.

``RowBandAccumulator`` sums weighted window results over a band of rows as wide as
the raster; rows no later window can reach are normalised and handed to the
writers, then dropped. Memory therefore depends on the tile height and the raster
width, never on the raster's area.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Callable, Sequence

import numpy as np
import rasterio
from rasterio.windows import Window

from engine.errors import EngineError
from engine.io.grid import Grid

CLASS_NODATA = 255
BLOCK = 256


def geotiff_profile(grid: Grid, count: int, dtype: str, nodata: float | int | None, nbits: int | None = None) -> dict:
    """Tiled (when large enough), deflate-compressed GeoTIFF on ``grid``."""
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": count,
        "dtype": dtype,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
        "compress": "deflate",
        "predictor": 3 if dtype.startswith("float") else 2,
        "BIGTIFF": "IF_SAFER",
        "interleave": "band",
    }
    if grid.width >= BLOCK and grid.height >= BLOCK:
        profile.update(tiled=True, blockxsize=BLOCK, blockysize=BLOCK)
    if nbits:
        profile["nbits"] = nbits  # float32 stored as IEEE half precision (GDAL < 3.11 has no Float16 type)
    return profile


def parse_color(color: str | Sequence[int]) -> tuple[int, int, int]:
    """(r, g, b) of a colour written as "#rrggbb" (or already as RGB); a clear error otherwise."""
    if not isinstance(color, str):
        return int(color[0]), int(color[1]), int(color[2])
    text = color.strip().lstrip("#")
    try:
        if len(text) != 6:
            raise ValueError(text)
        return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
    except ValueError:
        raise EngineError(f"Colour {color!r} is not written as #rrggbb.") from None


def class_colormap(
    colors: Sequence[str | Sequence[int]] | None, n_classes: int
) -> dict[int, tuple[int, int, int, int]]:
    """Colour table: the checkpoint's colours ("#rrggbb" or RGB), or a distinct default palette."""
    table = {}
    for k in range(n_classes):
        if colors and k < len(colors):
            rgb = parse_color(colors[k])
        else:  # golden-angle hues: neighbouring classes get clearly different colours
            rgb = tuple(int(255 * v) for v in colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.65, 0.9))
        table[k] = (*rgb, 255)
    table[CLASS_NODATA] = (0, 0, 0, 0)
    return table


def open_class_map(path, grid: Grid, classes: Sequence[str], colors) -> rasterio.io.DatasetWriter:
    ds = rasterio.open(path, "w", **geotiff_profile(grid, 1, "uint8", CLASS_NODATA))
    ds.write_colormap(1, class_colormap(colors, len(classes)))
    ds.set_band_description(1, "class")
    # Class names travel in the file: as JSON and one CLASS_<value> key each.
    ds.update_tags(1, CLASS_NAMES=json.dumps(list(classes)), **{f"CLASS_{k}": name for k, name in enumerate(classes)})
    return ds


class RowBandAccumulator:
    """Weighted sums of window results over rows [start, height) x the full width, a band at a time.

    ``add`` a window's values (C, h, w) with weights (h, w); ``release(row)`` tells that
    no later window starts above ``row``, which finalises every row above it;
    ``finish`` finalises the rest. ``sink(row0, mean (C, h, W), covered (h, W))``
    receives finished rows in order, at most ``flush_rows`` (or all remaining) at a time.
    """

    def __init__(
        self,
        height: int,
        width: int,
        channels: int,
        flush_rows: int,
        sink: Callable[[int, np.ndarray, np.ndarray], None],
        start: int = 0,
    ):
        self.height, self.width, self.channels = height, width, channels
        self.flush_rows, self.sink = max(flush_rows, 1), sink
        self.start = start  # a shard's band begins below the raster's top
        self.sums = np.zeros((channels, 0, width), np.float32)
        self.weight = np.zeros((0, width), np.float32)

    def _grow(self, rows: int) -> None:
        if rows > self.weight.shape[0]:
            extra = rows - self.weight.shape[0]
            self.sums = np.concatenate([self.sums, np.zeros((self.channels, extra, self.width), np.float32)], axis=1)
            self.weight = np.concatenate([self.weight, np.zeros((extra, self.width), np.float32)], axis=0)

    def add(self, window: Window, values: np.ndarray, weights: np.ndarray) -> None:
        r0 = window.row_off - self.start
        if r0 < 0:
            raise ValueError("window above rows already written")
        self._grow(r0 + window.height)
        rows = slice(r0, r0 + window.height)
        cols = slice(window.col_off, window.col_off + window.width)
        self.sums[:, rows, cols] += values * weights
        self.weight[rows, cols] += weights

    def release(self, row: int) -> None:
        while row - self.start >= self.flush_rows:
            self._flush(self.flush_rows)

    def finish(self) -> None:
        while self.start < self.height:
            self._flush(min(self.flush_rows, self.height - self.start))

    def _flush(self, n: int) -> None:
        self._grow(n)
        weight = self.weight[:n]
        covered = weight > 0
        mean = np.divide(self.sums[:, :n], weight, out=np.zeros_like(self.sums[:, :n]), where=covered)
        self.sink(self.start, mean, covered)
        self.sums = self.sums[:, n:].copy()
        self.weight = self.weight[n:].copy()
        self.start += n


def expand(array: np.ndarray, factor: int) -> np.ndarray:
    """Repeat each cell ``factor`` x ``factor`` times along the last two axes (patches to pixels)."""
    if factor == 1:
        return array
    return np.repeat(np.repeat(array, factor, axis=-2), factor, axis=-1)


def write_cells(ds, row0: int, cells: np.ndarray, factor: int = 1, chunk_px: int = 4 * BLOCK, col0: int = 0) -> None:
    """Write rows of patch cells (C, h, w) or (h, w) starting at patch row ``row0`` (column ``col0``),
    each cell as ``factor`` x ``factor`` pixels, in column chunks (a wide VHR strip never sits whole
    in memory)."""
    cells = cells if cells.ndim == 3 else cells[None]
    step = max(1, chunk_px // factor)
    for col in range(0, cells.shape[-1], step):
        block = expand(cells[..., col : col + step], factor)
        ds.write(block, window=Window((col0 + col) * factor, row0 * factor, block.shape[-1], block.shape[-2]))
