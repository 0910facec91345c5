"""Reading a modality window by window on its aligned grid.

Every file is opened once per run. A file already on the grid's lattice (same CRS,
same pixel size, whole-pixel offset) is read directly; any other is resampled onto the
grid (bilinear for reflectance, nearest for masks). With a ``WarpCache`` (a mapping run
reads every window of the grid) each such file is warped once, whole, into a float32
GeoTIFF on the grid in the run's temporary folder and read directly from there: warping
window by window redid GDAL's set-up and the overlapping rows for every window (measured:
the non-model part of a reprojected S1/S2 run fell from 609 s to 14 s). Without one (a
training sample, a few cells), or when the temporary folder lacks the space, a rasterio
``WarpedVRT`` resamples only the window asked for. Invalid values (the file's nodata, NaN,
outside the file) come back as NaN; with cloud masks they become a per-date validity mask.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from engine.errors import EngineError
from engine.io.grid import Grid
from engine.io.raster import damaged_raster_error, open_raster
from engine.io.series import SCL_CLASSES, SCL_INVALID, Modality


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


# Warped files: rows of blocks as short as GeoTIFF allows (windows are a few pixels tall), every
# band of a pixel together (one block read serves all dates); uncompressed: a scratch file.
WARP_BLOCK = (256, 16)  # columns, rows
WARP_MEM_MB = 256
# At least this many rows a strip: GDAL scales its resampling kernel by each chunk's source/destination
# ratio, which strips of a few rows shift (values then differ by up to 1e-3 relative from one warp).
WARP_STRIP_ROWS = 256
DISK_MARGIN = 0.8  # share of the temporary folder's free space a warped file may take


class WarpReporter(Protocol):
    """What warping reports to (engine.runtime.progress.Reporter is one): named here so that io
    imports nothing of the runtime above it."""

    def log(self, message: str, level: str = "info") -> None: ...

    def steps(self, total: int, message: str) -> Any: ...


class _Uncounted:
    """The step counter of a warp nobody listens to."""

    def count(self) -> None:
        pass


class WarpCache(contextlib.AbstractContextManager):
    """A run's temporary folder of inputs warped once onto their grid, made when first needed."""

    def __init__(self, threads: int = 1, reporter: WarpReporter | None = None):
        """``reporter``: told before each warp and how far it is (a large file takes a while before
        the first window)."""
        self.threads, self.reporter = threads, reporter
        self.warped: list[str] = []  # the inputs warped so far
        self.per_window: list[str] = []  # inputs too large for the folder: warped window by window
        self.seconds = 0.0
        self._folder: tempfile.TemporaryDirectory | None = None

    def folder(self) -> Path:
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="omnisat-warped-")
        return Path(self._folder.name)

    def warp(self, dataset, bands: tuple[int, ...], grid: Grid, resampling: Resampling):
        """``dataset``'s ``bands`` warped onto ``grid``, open for reading (band k+1 holds bands[k]);
        None when the temporary folder lacks the space."""
        folder = self.folder()
        size = grid.width * grid.height * len(bands) * 4
        if size > DISK_MARGIN * shutil.disk_usage(folder).free:
            self.per_window.append(dataset.name)
            return None
        if self.reporter is not None:
            self.reporter.log(f"Warping {dataset.name} onto the grid once ({size / 2**20:,.0f} MB at most in {folder})")
        started = time.perf_counter()
        path = folder / f"{len(self.warped) + len(self.per_window)}-{resampling.name}.tif"
        profile = dict(
            driver="GTiff",
            width=grid.width,
            height=grid.height,
            count=len(bands),
            dtype="float32",
            crs=grid.crs,
            transform=grid.transform,
            nodata=math.nan,
            tiled=True,
            blockxsize=WARP_BLOCK[0],
            blockysize=WARP_BLOCK[1],
            interleave="pixel",
            sparse_ok=True,
            bigtiff="IF_SAFER",
        )
        # Strips of rows, each warped in memory and written where the file reaches (blocks it does
        # not reach stay unwritten: NaN, no disk): progress and a chance to cancel between strips.
        per_row = max(grid.width * len(bands) * 4, 1)
        rows = max(WARP_STRIP_ROWS, WARP_MEM_MB * 2**20 // per_row // WARP_BLOCK[1] * WARP_BLOCK[1])
        message = f"Warping {Path(dataset.name).name} onto the grid"
        steps = self.reporter.steps(math.ceil(grid.height / rows), message) if self.reporter else _Uncounted()
        with rasterio.open(path, "w", **profile) as out:
            for top in range(0, grid.height, rows):
                strip = Window(0, top, grid.width, min(rows, grid.height - top))
                data = np.full((len(bands), strip.height, strip.width), np.nan, np.float32)
                reproject(
                    rasterio.band(dataset, list(bands)),
                    data,
                    dst_transform=window_transform(strip, grid.transform),
                    dst_crs=grid.crs,
                    resampling=resampling,
                    src_nodata=dataset.nodata,
                    dst_nodata=math.nan,
                    num_threads=self.threads,
                    warp_mem_limit=WARP_MEM_MB,
                    init_dest_nodata=True,
                )
                if not np.isnan(data).all():
                    out.write(data, window=strip)
                steps.count()
        self.warped.append(dataset.name)
        self.seconds += time.perf_counter() - started
        return rasterio.open(path)

    def close(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def __exit__(self, *exc) -> None:
        self.close()


class _Source:
    """One file seen on one grid: read directly, from its warped copy, or through a WarpedVRT."""

    def __init__(
        self,
        path,
        grid: Grid,
        resampling: Resampling,
        setting: str,
        bands: tuple[int, ...] = (),
        cache: WarpCache | None = None,
    ):
        self.dataset = open_raster(path, setting)
        self.name = self.dataset.name  # messages name the input, never its warped copy
        self.offset = _on_lattice(self.dataset, grid)
        self.vrt = None
        self.band_map: dict[int, int] | None = None  # input band -> band of the warped copy
        if self.offset is None and cache is not None:
            try:
                warped = cache.warp(self.dataset, bands, grid, resampling)
            except RasterioIOError as exc:
                self.dataset.close()
                raise damaged_raster_error(self.name, exc) from None
            if warped is not None:
                self.dataset.close()
                self.dataset, self.offset = warped, (0, 0)
                self.band_map = {b: k + 1 for k, b in enumerate(bands)}
        if self.offset is None:
            self.vrt = WarpedVRT(
                self.dataset,
                crs=grid.crs,
                transform=grid.transform,
                width=grid.width,
                height=grid.height,
                resampling=resampling,
                nodata=math.nan,
                dtype="float32",
            )
        self.nodata = self.dataset.nodata

    def read(self, bands: tuple[int, ...], window: Window) -> np.ndarray:
        """(len(bands), h, w) float32, NaN where there is no valid value."""
        try:
            return self._read(bands, window)
        except RasterioIOError as exc:  # e.g. a truncated file: its header opened, its data end early
            raise damaged_raster_error(self.name, exc) from None

    def _read(self, bands: tuple[int, ...], window: Window) -> np.ndarray:
        if self.vrt is not None:
            return self.vrt.read(list(bands), window=window)
        if self.band_map is not None:
            bands = tuple(self.band_map[b] for b in bands)
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


def clear_sky(mask: np.ndarray, mask_type: str, threshold: float, classes: tuple[int, ...] | None = None) -> np.ndarray:
    """True where a mask layer says the view is usable; pixels without mask values count as usable.
    ``classes``: the scene classes an scl mask masks (default SCL_INVALID)."""
    known = np.isfinite(mask)
    if mask_type == "valid":
        bad = mask == 0
    elif mask_type == "scl":
        bad = np.isin(mask, SCL_INVALID if classes is None else classes)
    elif mask_type == "probability":
        bad = mask > threshold
    else:  # binary: non-zero means cloud (or anything else to skip)
        bad = mask != 0
    return ~(bad & known)


def _check_scl(mask: np.ndarray, label: str) -> None:
    values = np.unique(mask[np.isfinite(mask)])
    unknown = values[~np.isin(values, SCL_CLASSES)]
    if unknown.size:
        raise EngineError(
            f"The scene classification mask '{label}' holds values {', '.join(f'{v:g}' for v in unknown[:5])}, "
            f"which are not Sentinel-2 SCL classes (0-11): give the SCL band of the L2A product, or another mask "
            'type ("binary", "valid", "probability").'
        )


class ModalityReader(contextlib.AbstractContextManager):
    """Reads windows of one modality on its grid: data (T, C, h, w) and validity (T, h, w).

    Image modalities have T = 1. A pixel of a date is valid when every band is
    finite and its mask (if any) says clear; invalid values are NaN in the data.
    """

    def __init__(self, modality: Modality, grid: Grid, cache: WarpCache | None = None):
        """``cache``: warp off-grid files once, whole (a run over the grid), instead of window by window."""
        self.modality, self.grid = modality, grid
        self._sources: dict[tuple[str, str], _Source] = {}
        # Per file, the (date, first channel, bands) it gives: a date's bands may lie in several files.
        self._by_path: dict[object, list[tuple[int, int, tuple[int, ...]]]] = {}
        for i, layer in enumerate(modality.layers):
            channel = 0
            for path, bands in layer.pieces():
                self._by_path.setdefault(path, []).append((i, channel, bands))
                channel += len(bands)
        used: dict[tuple[str, str], set[int]] = {}  # the bands read of each file: only those are warped
        for layer in modality.layers:
            for path, bands in layer.pieces():
                used.setdefault((str(path), Resampling.bilinear.name), set()).update(bands)
        for layer in modality.masks or ():
            used.setdefault((str(layer.path), Resampling.nearest.name), set()).update(layer.bands)
        try:
            for (path, resampling), bands in used.items():
                setting = f"{modality.name} {'input' if resampling == Resampling.bilinear.name else 'mask'}"
                self._sources[(path, resampling)] = _Source(
                    path, grid, Resampling[resampling], setting, tuple(sorted(bands)), cache
                )
        except BaseException:
            self.close()
            raise

    def _source(self, path, resampling: Resampling) -> _Source:
        return self._sources[(str(path), resampling.name)]

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        m = self.modality
        c = m.layers[0].n_bands  # the spec's bands, less any missing (filled after normalization)
        data = np.empty((len(m.layers), c, int(window.height), int(window.width)), np.float32)
        # One read per file (a dates x channels stack is one call, not one per date).
        for path, pieces in self._by_path.items():
            bands = tuple(b for _, _, piece in pieces for b in piece)
            block = self._source(path, Resampling.bilinear).read(bands, window)
            start = 0
            for i, channel, piece in pieces:
                data[i, channel : channel + len(piece)] = block[start : start + len(piece)]
                start += len(piece)
        if m.band_order is not None:
            data = data[:, list(m.band_order)]
        valid = np.isfinite(data).all(axis=1)
        if m.masks:
            for t, layer in enumerate(m.masks):
                mask = self._source(layer.path, Resampling.nearest).read(layer.bands, window)[0]
                if m.mask_type == "scl":
                    _check_scl(mask, layer.label)
                valid[t] &= clear_sky(mask, m.mask_type, m.mask_threshold, m.mask_classes)
        data[~np.broadcast_to(valid[:, None], data.shape)] = np.nan
        return data, valid

    def close(self) -> None:
        for source in self._sources.values():
            source.close()
        self._sources.clear()

    def __exit__(self, *exc) -> None:
        self.close()
