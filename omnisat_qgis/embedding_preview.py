"""A false-colour view of an embeddings raster: its first three principal components.

Computed in QGIS's process with numpy and QGIS's own GDAL (never torch): the
components are fitted on a sample of at most ``SAMPLE_PIXELS`` pixels read at
reduced resolution, then every row block is projected and written to a 3-band
float32 GeoTIFF beside the embeddings (``NAME.pca.tif``), under a temporary name
renamed when complete.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SAMPLE_PIXELS = 20000
ROWS_PER_BLOCK = 64


def preview_path(embeddings: str | Path) -> Path:
    path = Path(embeddings)
    return path.with_name(f"{path.stem}.pca.tif")


def _sample(dataset) -> np.ndarray:
    scale = max(1.0, (dataset.RasterXSize * dataset.RasterYSize / SAMPLE_PIXELS) ** 0.5)
    width, height = max(1, int(dataset.RasterXSize / scale)), max(1, int(dataset.RasterYSize / scale))
    data = dataset.ReadAsArray(buf_xsize=width, buf_ysize=height).astype(np.float64)
    return data.reshape(dataset.RasterCount, -1).T


def principal_axes(samples: np.ndarray, count: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(mean, axes) of the finite rows: axes has ``count`` columns, largest variance first."""
    samples = samples[np.isfinite(samples).all(axis=1)]
    if len(samples) < 2:
        raise ValueError("the embeddings raster has fewer than two valid pixels")
    mean = samples.mean(axis=0)
    _, _, vt = np.linalg.svd(samples - mean, full_matrices=False)
    axes = vt[:count].T
    if axes.shape[1] < count:  # fewer dimensions than components: repeat the last
        axes = np.pad(axes, ((0, 0), (0, count - axes.shape[1])), mode="edge")
    # A deterministic sign: the largest loading of each axis is positive.
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), range(count)])
    return mean, axes * np.where(signs == 0, 1, signs)


def write_preview(embeddings: str | Path) -> Path:
    """Write ``NAME.pca.tif`` (3 bands, NaN nodata) and return its path."""
    from osgeo import gdal

    source = gdal.Open(str(embeddings), gdal.GA_ReadOnly)
    if source is None:
        raise ValueError(f"'{embeddings}' could not be read as a raster")
    mean, axes = principal_axes(_sample(source))
    target = preview_path(embeddings)
    temp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    driver = gdal.GetDriverByName("GTiff")
    out = driver.Create(
        str(temp),
        source.RasterXSize,
        source.RasterYSize,
        3,
        gdal.GDT_Float32,
        options=["COMPRESS=DEFLATE", "TILED=YES"],
    )
    try:
        out.SetGeoTransform(source.GetGeoTransform())
        out.SetProjection(source.GetProjection())
        for row in range(0, source.RasterYSize, ROWS_PER_BLOCK):
            rows = min(ROWS_PER_BLOCK, source.RasterYSize - row)
            block = source.ReadAsArray(0, row, source.RasterXSize, rows).astype(np.float64)
            pixels = block.reshape(source.RasterCount, -1).T
            projected = ((pixels - mean) @ axes).T.reshape(3, rows, source.RasterXSize).astype(np.float32)
            projected[:, ~np.isfinite(pixels).all(axis=1).reshape(rows, -1)] = np.nan
            for band in range(3):
                out.GetRasterBand(band + 1).WriteArray(projected[band], 0, row)
        for band, name in enumerate(("principal component 1", "principal component 2", "principal component 3")):
            out.GetRasterBand(band + 1).SetDescription(name)
            out.GetRasterBand(band + 1).SetNoDataValue(float("nan"))
        out.FlushCache()
        out = None
        temp.replace(target)
    except BaseException:
        out = None
        temp.unlink(missing_ok=True)
        raise
    return target
