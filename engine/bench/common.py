"""What the accuracy benches share (engine.bench.accuracy, crops, flanders): how a bench input is
written, how fold scores are summarised, and the fixed probe they compare against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

# The probe every bench fits as is, never tuned: the accuracy tables compare encoders with it.
FIXED_PROBE = {"kind": "linear", "optimizer": "lbfgs", "l2": 1e-3, "epochs": 200, "class_weighting": True}


def write_raster(path: Path, data: np.ndarray, crs: str, transform: Affine, nodata=None, descriptions=()) -> Path:
    """A bench input as a user would have it: one GeoTIFF, its bands named by ``descriptions``."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as ds:
        ds.write(data)
        for b, text in enumerate(descriptions, 1):
            ds.set_band_description(b, text)
    return path


def summarise(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "folds": [float(v) for v in values]}
