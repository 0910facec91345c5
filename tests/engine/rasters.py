"""Small GeoTIFFs written by tests (never inside ../shared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

UTM33 = "EPSG:32633"


def write_geotiff(
    path: Path,
    data: np.ndarray,
    *,
    crs: str = UTM33,
    origin=(500000.0, 5100000.0),
    pixel: float = 10.0,
    nodata=None,
    **profile,
) -> Path:
    """Write (bands, rows, cols) data as a GeoTIFF with a north-up transform."""
    count, height, width = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=data.dtype,
        crs=crs,
        transform=from_origin(origin[0], origin[1], pixel, pixel),
        nodata=nodata,
        **profile,
    ) as ds:
        ds.write(data)
    return path


def eolearn_reference_scene(shared_data: Path, path: Path, date: int = 2) -> Path:
    """One eo-learn Sentinel-2 L1C date (13 bands, reflectance) on its real UTM 33N grid.

    Date 2 (2015-08-20) is clear; date 0 is hazy.
    """
    import json

    from rasterio.transform import from_bounds

    scenes = np.load(shared_data / "eolearn_patch" / "REFERENCE_SCENES.npy", allow_pickle=False)
    ring = json.loads((shared_data / "eolearn_patch" / "TestEOPatch" / "bbox.geojson").read_text())["coordinates"][0]
    xs, ys = [c[0] for c in ring], [c[1] for c in ring]
    data = np.moveaxis(scenes[date], -1, 0).astype(np.float32)  # (13, 101, 100)
    transform = from_bounds(min(xs), min(ys), max(xs), max(ys), data.shape[2], data.shape[1])
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=13,
        dtype="float32",
        crs=UTM33,
        transform=transform,
    ) as ds:
        ds.write(data)
    return path
