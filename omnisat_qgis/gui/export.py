"""A layer that is not a file (web service, virtual raster) exported to GeoTIFF for the engine.

The engine worker reads files; QGIS's own raster writer renders the layer's raw
values over an extent into a new GeoTIFF (temporary name, renamed when complete),
which the dock then uses in place of the layer. The layer itself is not touched.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from qgis.core import (
    QgsCoordinateTransform,
    QgsProject,
    QgsRasterDataProvider,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
)

MAX_EXPORT_PIXELS = 64_000_000  # a side of 8000 px: beyond that the analyst should export with GDAL


class ExportError(Exception):
    pass


def export_extent(layer: QgsRasterLayer, extent: QgsRectangle, extent_crs, pixel: float, path: Path) -> Path:
    """Write ``layer``'s values over ``extent`` (in ``extent_crs``) at ``pixel`` layer units to ``path``."""
    transform = QgsCoordinateTransform(extent_crs, layer.crs(), QgsProject.instance())
    area = transform.transformBoundingBox(extent).intersect(layer.extent())
    if area.isEmpty():
        raise ExportError(f"The layer '{layer.name()}' does not cover the area to map: nothing to export.")
    width, height = math.ceil(area.width() / pixel), math.ceil(area.height() / pixel)
    if width * height > MAX_EXPORT_PIXELS:
        raise ExportError(
            f"Exporting '{layer.name()}' over this area would write {width} x {height} pixels: "
            "zoom in or draw a smaller area first."
        )
    provider: QgsRasterDataProvider = layer.dataProvider().clone()
    pipe = QgsRasterPipe()
    if not pipe.set(provider):
        raise ExportError(
            f"The layer '{layer.name()}' cannot be read band by band: save it as GeoTIFF yourself "
            "(right-click > Export > Save As, 'Raw data')."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    writer = QgsRasterFileWriter(str(partial))
    writer.setOutputFormat("GTiff")
    error = writer.writeRaster(pipe, width, height, area, layer.crs(), QgsProject.instance().transformContext())
    if error != QgsRasterFileWriter.WriterError.NoError:
        partial.unlink(missing_ok=True)
        raise ExportError(f"Exporting '{layer.name()}' to '{path}' failed ({error.name}).")
    if not _describe_bands(partial, layer):
        partial.unlink(missing_ok=True)
        raise ExportError(f"The export of '{layer.name()}' to '{path}' is unreadable.")
    os.replace(partial, path)
    return path


def _describe_bands(path: Path, layer: QgsRasterLayer) -> bool:
    """The layer's band descriptions on the copy (the band matcher reads them); False when unreadable."""
    from osgeo import gdal  # QGIS's own GDAL

    dataset = gdal.Open(str(path), gdal.GA_Update)
    if dataset is None or dataset.RasterCount != layer.bandCount():
        return False
    provider = layer.dataProvider()
    for band in range(1, layer.bandCount() + 1):
        if provider.bandDescription(band):
            dataset.GetRasterBand(band).SetDescription(provider.bandDescription(band))
    dataset = None  # closes and flushes
    return True
