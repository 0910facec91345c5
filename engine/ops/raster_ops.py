"""Simple raster operations: per-band statistics and a normalized difference index.

Both stream the raster in row strips, so memory stays bounded whatever its size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from engine.io.atomic import atomic_output, check_output_path
from engine.io.grid import Grid
from engine.io.raster import check_band, open_raster, valid_mask
from engine.io.writers import geotiff_profile
from engine.runtime.progress import Reporter
from engine.runtime.registry import operation

STRIP_ROWS = 256


def row_strips(dataset, rows: int = STRIP_ROWS) -> Iterator[Window]:
    for row in range(0, dataset.height, rows):
        yield Window(0, row, dataset.width, min(rows, dataset.height - row))


@dataclass
class StatsParams:
    input: str = field(metadata={"help": "raster file", "positional": True, "role": "input"})


@operation("stats", StatsParams, summary="Per-band statistics of a raster (min, max, mean, std, valid pixels).")
def band_statistics(params: StatsParams, reporter: Reporter) -> dict[str, Any]:
    """Per-band statistics, streaming the raster strip by strip; nodata and NaN are excluded."""
    with open_raster(params.input) as ds:
        count = np.zeros(ds.count, np.int64)
        total = np.zeros(ds.count)
        squares = np.zeros(ds.count)
        low = np.full(ds.count, np.inf)
        high = np.full(ds.count, -np.inf)
        strips = list(row_strips(ds))
        steps = reporter.steps(len(strips), "Reading")
        for window in strips:
            data = ds.read(window=window)
            for b in range(ds.count):
                values = data[b][valid_mask(ds, data[b])].astype(np.float64)
                if values.size:
                    count[b] += values.size
                    total[b] += values.sum()
                    squares[b] += np.square(values).sum()
                    low[b] = min(low[b], values.min())
                    high[b] = max(high[b], values.max())
            steps.advance()
        bands = []
        for b in range(ds.count):
            n = int(count[b])
            mean = total[b] / n if n else None
            std = math.sqrt(max(squares[b] / n - mean**2, 0.0)) if n else None
            bands.append(
                {
                    "band": b + 1,
                    "description": ds.descriptions[b],
                    "valid_pixels": n,
                    "nodata_pixels": ds.width * ds.height - n,
                    "min": float(low[b]) if n else None,
                    "max": float(high[b]) if n else None,
                    "mean": mean,
                    "std": std,
                }
            )
        return {
            "input": str(params.input),
            "width": ds.width,
            "height": ds.height,
            "crs": ds.crs.to_string() if ds.crs else None,
            "transform": list(ds.transform)[:6],
            "nodata": ds.nodata,
            "bands": bands,
        }


INDEX_NODATA = -9999.0


def index_nodata(input_nodata: float | None) -> float:
    if input_nodata is not None and math.isfinite(input_nodata) and not -1.0 <= input_nodata <= 1.0:
        return float(input_nodata)
    return INDEX_NODATA


@dataclass
class IndexParams:
    input: str = field(metadata={"help": "raster file", "positional": True, "role": "input"})
    output: str = field(metadata={"help": "output GeoTIFF (float32)", "positional": True})
    band_a: int = field(default=4, metadata={"help": "band A of (A - B) / (A + B), 1-based (e.g. NIR)"})
    band_b: int = field(default=3, metadata={"help": "band B of (A - B) / (A + B), 1-based (e.g. red)"})


@operation(
    "normalized-index",
    IndexParams,
    outputs=("output",),
    summary="Normalized difference index (A - B) / (A + B) of two bands, e.g. NDVI, as a GeoTIFF.",
)
def normalized_index(params: IndexParams, reporter: Reporter) -> dict[str, Any]:
    """Write (A - B) / (A + B) as float32 on the input's grid (CRS, transform), nodata kept.

    Pixels where either band is nodata/NaN, or where A + B = 0, become nodata:
    the input's nodata value when it cannot be a valid index (outside [-1, 1]),
    otherwise -9999 (an input nodata of 0 would erase every index value of 0).
    """
    check_output_path(params.output)
    with open_raster(params.input) as ds:
        check_band(ds, params.band_a, "band_a")
        check_band(ds, params.band_b, "band_b")
        nodata = index_nodata(ds.nodata)
        if ds.nodata is not None and nodata != ds.nodata:
            reporter.log(f"The input's nodata value {ds.nodata} is a valid index value; the output uses {nodata}.")
        profile = geotiff_profile(Grid.of(ds), 1, "float32", nodata)
        strips = list(row_strips(ds))
        steps = reporter.steps(len(strips), "Computing index")
        with atomic_output(params.output) as temp:
            with rasterio.open(temp, "w", **profile) as out:
                out.set_band_description(1, f"({params.band_a}-{params.band_b})/({params.band_a}+{params.band_b})")
                for window in strips:
                    a = ds.read(params.band_a, window=window)
                    b = ds.read(params.band_b, window=window)
                    ok = valid_mask(ds, a) & valid_mask(ds, b)
                    a64, b64 = a.astype(np.float64), b.astype(np.float64)
                    denominator = a64 + b64
                    ok &= denominator != 0
                    result = np.full(a.shape, nodata, np.float32)
                    result[ok] = ((a64[ok] - b64[ok]) / denominator[ok]).astype(np.float32)
                    out.write(result, 1, window=window)
                    steps.advance()
    reporter.log(f"Wrote {params.output}")
    return {"output": str(params.output)}
