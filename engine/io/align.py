"""Reading a modality window by window on its aligned grid.

Every file is opened once per run. A file already on the grid's lattice (same CRS,
same pixel size, whole-pixel offset) is read directly; any other is warped on the
fly by a rasterio ``WarpedVRT`` (bilinear for reflectance, nearest for masks), so
only the window asked for is read and resampled. Invalid values (the file's
nodata, NaN, outside the file) come back as NaN; with cloud masks they become a
per-date validity mask.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from engine.io.grid import Grid
from engine.io.raster import damaged_raster_error, open_raster
from engine.io.series import SCL_INVALID, Modality


def _on_lattice(ds, grid: Grid) -> tuple[int, int] | None:
    """(col, row) offset of the grid's corner in the file's pixels when no resampling is needed."""
    t = ds.transform
    if ds.crs != grid.crs or t.b or t.d or t.e > 0:
        return None
    if abs(t.a - grid.res) > 1e-9 * grid.res or abs(-t.e - grid.res) > 1e-9 * grid.res:
        return None
    col, row = (grid.transform.c - t.c) / grid.res, (t.f - grid.transform.f) / grid.res
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    col, row = round(col), round(row)
    if col < 0 or row < 0 or col + grid.width > ds.width or row + grid.height > ds.height:
        return None
    return col, row


class _Source:
    """One file seen on one grid, read directly or through a WarpedVRT."""

    def __init__(self, path, grid: Grid, resampling: Resampling, setting: str):
        self.dataset = open_raster(path, setting)
        self.offset = _on_lattice(self.dataset, grid)
        self.vrt = None
        if self.offset is None:
            self.vrt = WarpedVRT(
                self.dataset, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                resampling=resampling, nodata=math.nan, dtype="float32",
            )
        self.nodata = self.dataset.nodata

    def read(self, bands: tuple[int, ...], window: Window) -> np.ndarray:
        """(len(bands), h, w) float32, NaN where there is no valid value."""
        try:
            return self._read(bands, window)
        except RasterioIOError as exc:  # e.g. a truncated file: its header opened, its data end early
            raise damaged_raster_error(self.dataset.name, exc) from None

    def _read(self, bands: tuple[int, ...], window: Window) -> np.ndarray:
        if self.vrt is not None:
            return self.vrt.read(list(bands), window=window)
        col, row = self.offset
        shifted = Window(window.col_off + col, window.row_off + row, window.width, window.height)
        data = self.dataset.read(list(bands), window=shifted, out_dtype="float32")
        if self.nodata is not None and not math.isnan(self.nodata):
            data[data == np.float32(self.nodata)] = np.nan
        return data

    def close(self) -> None:
        if self.vrt is not None:
            self.vrt.close()
        self.dataset.close()


def clear_sky(mask: np.ndarray, mask_type: str, threshold: float) -> np.ndarray:
    """True where a mask layer says the view is usable; pixels without mask values count as usable."""
    known = np.isfinite(mask)
    if mask_type == "valid":
        bad = mask == 0
    elif mask_type == "scl":
        bad = np.isin(mask, SCL_INVALID)
    elif mask_type == "probability":
        bad = mask > threshold
    else:  # binary: non-zero means cloud (or anything else to skip)
        bad = mask != 0
    return ~(bad & known)


class ModalityReader(contextlib.AbstractContextManager):
    """Reads windows of one modality on its grid: data (T, C, h, w) and validity (T, h, w).

    Image modalities have T = 1. A pixel of a date is valid when every band is
    finite and its mask (if any) says clear; invalid values are NaN in the data.
    """

    def __init__(self, modality: Modality, grid: Grid):
        self.modality, self.grid = modality, grid
        self._sources: dict[tuple[str, str], _Source] = {}
        self._by_path: dict[object, list[int]] = {}
        for i, layer in enumerate(modality.layers):
            self._by_path.setdefault(layer.path, []).append(i)
        try:
            for layer in modality.layers:
                self._source(layer.path, Resampling.bilinear, f"{modality.name} input")
            for layer in modality.masks or ():
                self._source(layer.path, Resampling.nearest, f"{modality.name} mask")
        except BaseException:
            self.close()
            raise

    def _source(self, path, resampling: Resampling, setting: str) -> _Source:
        key = (str(path), resampling.name)
        if key not in self._sources:
            self._sources[key] = _Source(path, self.grid, resampling, setting)
        return self._sources[key]

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        m = self.modality
        c = len(m.layers[0].bands)  # the spec's bands, less any missing (filled after normalization)
        data = np.empty((len(m.layers), c, int(window.height), int(window.width)), np.float32)
        # One read per file (a dates x channels stack is one call, not one per date).
        for path, indices in self._by_path.items():
            bands = tuple(b for i in indices for b in m.layers[i].bands)
            block = self._source(path, Resampling.bilinear, "").read(bands, window)
            for k, i in enumerate(indices):
                data[i] = block[k * c:(k + 1) * c]
        valid = np.isfinite(data).all(axis=1)
        if m.masks:
            for t, layer in enumerate(m.masks):
                mask = self._source(layer.path, Resampling.nearest, "").read(layer.bands, window)[0]
                valid[t] &= clear_sky(mask, m.mask_type, m.mask_threshold)
        data[~np.broadcast_to(valid[:, None], data.shape)] = np.nan
        return data, valid

    def close(self) -> None:
        for source in self._sources.values():
            source.close()
        self._sources.clear()

    def __exit__(self, *exc) -> None:
        self.close()
