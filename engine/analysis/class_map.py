"""A class map read as a map analysis needs it: its class names, nodata, pixel area, and the pixels per class."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.windows import Window

from engine.errors import EngineError
from engine.runtime.progress import Reporter

BLOCK = 1024  # rows and columns of the windows the map is read in
MAP_HELP = "class map (uint8 GeoTIFF with class names, as written by classify / fit-probe / apply-probe)"


@dataclass
class ClassMap:
    names: list[str]
    nodata: int | None
    pixel_area: float
    area_unit: str  # "m2" or the CRS's own unit squared
    crs: Any


def map_windows(ds) -> Iterator[Window]:
    for row in range(0, ds.height, BLOCK):
        for col in range(0, ds.width, BLOCK):
            yield Window(col, row, min(BLOCK, ds.width - col), min(BLOCK, ds.height - row))


def class_map_info(ds, path: str) -> ClassMap:
    if ds.count != 1 or np.dtype(ds.dtypes[0]).kind not in "iu":
        raise EngineError(
            f"The class map '{path}' must hold one integer band of class values, not "
            f"{ds.count} band(s) of {ds.dtypes[0]}: give a classification layer."
        )
    if ds.crs is None:
        raise EngineError(f"The class map '{path}' has no CRS: areas need one. Assign the map's CRS first.")
    if ds.crs.is_geographic:
        raise EngineError(
            f"The class map '{path}' is in a geographic CRS ({ds.crs.to_string()}): pixel areas are "
            "not constant in degrees. Reproject it to a projected CRS (e.g. its UTM zone) first."
        )
    tags = ds.tags(1)
    names = json.loads(tags["CLASS_NAMES"]) if "CLASS_NAMES" in tags else None
    if names is None:
        highest = 0
        for window in map_windows(ds):
            data = ds.read(1, window=window)
            valid = data != ds.nodata if ds.nodata is not None else np.ones(data.shape, bool)
            highest = max(highest, int(data[valid].max(initial=0)))
        names = [str(k) for k in range(highest + 1)]
    unit = ds.crs.linear_units or "unit"
    area_unit = "m2" if unit.lower() in ("metre", "meter", "m") else f"{unit}^2"
    nodata = None if ds.nodata is None or math.isnan(ds.nodata) else int(ds.nodata)
    return ClassMap(
        list(names), nodata, abs(ds.transform.a * ds.transform.e - ds.transform.b * ds.transform.d), area_unit, ds.crs
    )


def mapped_pixels(ds, info: ClassMap, reporter: Reporter) -> np.ndarray:
    """Pixel count per class over the whole map (nodata and values without a class name left out)."""
    windows = list(map_windows(ds))
    steps = reporter.steps(len(windows), "Counting mapped pixels", 0, 40)
    counts = np.zeros(256 if ds.dtypes[0] == "uint8" else 65536, np.int64)
    for window in windows:
        data = ds.read(1, window=window).ravel().astype(np.int64)
        data = data[(data >= 0) & (data < counts.size)]
        counts += np.bincount(data, minlength=counts.size)[: counts.size]
        steps.advance()
    if info.nodata is not None and 0 <= info.nodata < counts.size:
        counts[info.nodata] = 0
    return counts[: len(info.names)]


def map_blocks(ds, info: ClassMap):
    """The map's pixels as class codes block by block, -1 where nodata or a value without a class."""

    def blocks():
        for window in map_windows(ds):
            data = ds.read(1, window=window).astype(np.int64)
            bad = (data < 0) | (data >= len(info.names))
            if info.nodata is not None:
                bad |= data == info.nodata
            yield window.row_off, window.col_off, np.where(bad, -1, data)

    return blocks
