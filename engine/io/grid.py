"""The reference grid every input is aligned onto.

One grid in metres for the whole run: a CRS, a top-left corner and a size that is a
whole number of model patches. Each modality is read on its own pixel grid (its
ground sampling distance) with that same corner and extent, so a window given in
patches maps onto whole pixels in every modality, and the output is written at
the finest modality's resolution with the same corner.

Default choices: the CRS of the finest-resolution input (a local UTM zone when that
CRS is geographic); the extent is the intersection of every modality's footprint
(for a series, the union of its dates' files) and of the user's extent, trimmed inward to whole patches counted from the finest
input's corner (so inputs already on that lattice are read without resampling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from engine.errors import EngineError

# Snapping tolerance, in pixels, for coordinates computed in floating point.
_EPS = 1e-6


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: CRS, affine transform (square pixels) and size."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @classmethod
    def of(cls, dataset) -> Grid:
        """The grid of an open raster."""
        return cls(dataset.crs, dataset.transform, dataset.width, dataset.height)

    @property
    def res(self) -> float:
        return self.transform.a

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform.c, self.transform.f
        return left, top - self.height * self.res, left + self.width * self.res, top

    def crop_rows(self, start: int, stop: int) -> Grid:
        """Rows [start, stop) of this grid, full width (a shard's band)."""
        return Grid(self.crs, self.transform * Affine.translation(0, start), self.width, stop - start)

    def with_resolution(self, res: float) -> Grid:
        """The same corner and extent at another pixel size (which must divide the extent)."""
        width, height = whole_multiple(self.width * self.res, res), whole_multiple(self.height * self.res, res)
        if width is None or height is None:
            raise ValueError(
                f"a {res} m grid does not fit a {self.width * self.res} x {self.height * self.res} m extent"
            )
        return Grid(self.crs, Affine(res, 0.0, self.transform.c, 0.0, -res, self.transform.f), width, height)


@dataclass(frozen=True)
class Footprint:
    """Where an input lies: its CRS, bounds (left, bottom, right, top), pixel size and a label."""

    crs: CRS
    bounds: tuple[float, float, float, float]
    res: float
    label: str

    @classmethod
    def of(cls, dataset, label: str) -> Footprint:
        if dataset.crs is None:
            raise EngineError(
                f"'{label}' has no coordinate reference system: assign one (e.g. with QGIS "
                "'Assign projection' or gdal_edit.py -a_srs) so that it can be aligned with the other inputs."
            )
        t = dataset.transform
        if t.is_identity:
            # GDAL's answer for a raster without georeferencing (e.g. a netCDF whose x/y coordinates it did
            # not recognise): pixels of 1 map unit at the CRS's origin, never a real grid.
            raise EngineError(
                f"'{label}' has no geotransform (GDAL finds no pixel grid in it; for a netCDF, its x/y coordinates "
                "were not recognised): write it as a GeoTIFF with its grid, or set the corners with "
                "gdal_translate -a_ullr XMIN YMAX XMAX YMIN."
            )
        if t.b != 0 or t.d != 0:
            raise EngineError(f"'{label}' is rotated or sheared: warp it to a north-up grid first (gdalwarp).")
        return cls(dataset.crs, tuple(dataset.bounds), abs(t.a), label)

    @property
    def res_m(self) -> float:
        """Approximate pixel size in metres (degrees counted at the equator for geographic CRSs)."""
        return self.res * 111_320.0 if self.crs.is_geographic else self.res * _linear_units_m(self.crs)


def _linear_units_m(crs: CRS) -> float:
    try:
        factor = crs.linear_units_factor[1]
    except CRSError:
        return 1.0
    return float(factor)


def parse_crs(value: str, setting: str) -> CRS:
    try:
        return CRS.from_user_input(value)
    except CRSError:
        raise EngineError(
            f"The {setting} '{value}' is not a coordinate reference system: write it like 'EPSG:32633'."
        ) from None


def local_utm(lon: float, lat: float) -> CRS:
    """The UTM zone (WGS 84) containing a point."""
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _intersection(boxes: list[tuple[float, float, float, float]]) -> tuple[float, float, float, float]:
    return (max(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes), min(b[3] for b in boxes))


def _in_crs(fp: Footprint, crs: CRS) -> tuple[float, float, float, float]:
    if fp.crs == crs:
        return fp.bounds
    try:
        return tuple(transform_bounds(fp.crs, crs, *fp.bounds, densify_pts=21))
    except Exception as exc:  # PROJ cannot transform (e.g. outside the projection's area)
        raise EngineError(
            f"'{fp.label}' ({fp.crs.to_string()}) cannot be transformed into {crs.to_string()} ({exc}): "
            "the inputs are too far apart to overlap."
        ) from None


def grid_crs(footprints: list[Footprint], crs: CRS | None = None) -> CRS:
    """The user's CRS, else the finest input's, else (geographic) the local UTM zone."""
    if not footprints:
        raise EngineError("No input raster was given: add at least one modality with files.")
    if crs is not None:
        return crs
    finest = min(footprints, key=lambda fp: fp.res_m)
    if not finest.crs.is_geographic:
        return finest.crs
    left, bottom, right, top = _in_crs(finest, CRS.from_epsg(4326))
    return local_utm((left + right) / 2, (bottom + top) / 2)


def reference_grid(
    footprints: list[Footprint],
    patch_size_m: float,
    resolution_m: float,
    crs: CRS | None = None,
    extent: tuple[tuple[float, float, float, float], CRS] | None = None,
) -> Grid:
    """The run's grid (see the module docstring); errors when inputs do not overlap by a patch.

    ``resolution_m`` must divide ``patch_size_m``: it is the output pixel size.
    """
    crs = grid_crs(footprints, crs)
    finest = min(footprints, key=lambda fp: fp.res_m)
    if crs.is_geographic:
        raise EngineError(
            f"The grid CRS {crs.to_string()} is geographic (degrees): choose a projected CRS in metres, e.g. a UTM zone."
        )
    boxes = [_in_crs(fp, crs) for fp in footprints]
    left, bottom, right, top = _intersection(boxes)
    if left >= right or bottom >= top:
        listing = "; ".join(f"'{fp.label}' ({fp.crs.to_string()})" for fp in footprints)
        raise EngineError(
            f"The inputs do not overlap: {listing}. Check that the files cover the same area and that "
            "each one carries its correct CRS."
        )
    if extent is not None:
        box, extent_crs = extent
        ex = _in_crs(Footprint(extent_crs, box, 0.0, "the extent"), crs)
        left, bottom, right, top = _intersection([(left, bottom, right, top), ex])
        if left >= right or bottom >= top:
            raise EngineError(
                f"The extent {list(box)} ({extent_crs.to_string()}) does not overlap the inputs: "
                "choose an extent inside the layers."
            )
    # Trim inward to whole patches counted from the finest input's corner (if in the grid CRS).
    anchor_x, anchor_y = (finest.bounds[0], finest.bounds[3]) if finest.crs == crs else (0.0, 0.0)
    p = patch_size_m
    x0 = anchor_x + math.ceil((left - anchor_x) / p - _EPS) * p
    x1 = anchor_x + math.floor((right - anchor_x) / p + _EPS) * p
    y1 = anchor_y - math.ceil((anchor_y - top) / p - _EPS) * p
    y0 = anchor_y - math.floor((anchor_y - bottom) / p + _EPS) * p
    cols, rows = round((x1 - x0) / p), round((y1 - y0) / p)
    if cols < 1 or rows < 1:
        raise EngineError(
            f"The inputs overlap on {right - left:.1f} x {top - bottom:.1f} m only, less than one "
            f"{p:g} m patch: choose inputs (or an extent) that share at least {p:g} x {p:g} m."
        )
    patch_grid = Grid(crs, Affine(p, 0.0, x0, 0.0, -p, y1), cols, rows)
    return patch_grid.with_resolution(resolution_m)


def whole_multiple(value: float, unit: float) -> int | None:
    """How many ``unit`` make ``value`` when that is a whole number of at least 1 (to 1e-6); else None."""
    ratio = value / unit
    return round(ratio) if abs(ratio - round(ratio)) <= _EPS and round(ratio) >= 1 else None


def check_patch_fits(patch_size_m: float, gsd_m: float, what: str) -> int:
    """Pixels per patch side for a modality; the patch must hold a whole number of its pixels."""
    ratio = whole_multiple(patch_size_m, gsd_m)
    if ratio is None:
        raise EngineError(
            f"The patch size {patch_size_m:g} m is not a whole number of {what}'s {gsd_m:g} m pixels: "
            f"choose a patch size that is a multiple of {gsd_m:g} m."
        )
    return ratio


def scale_window(window: Window, factor: float) -> Window:
    """A window on one grid expressed on a grid ``factor`` times finer (same corner)."""
    return Window(
        round(window.col_off * factor),
        round(window.row_off * factor),
        round(window.width * factor),
        round(window.height * factor),
    )
