"""Dates of layers as the engine reads them, shown in the dock before anything runs.

The engine's date rules (engine/contract.py: pure Python, no torch, no rasterio) are
used as they are, so the dock shows what the engine will see.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from qgis.core import QgsRasterLayer

from omnisat_qgis.contract import contract


def date_of_layer(layer: QgsRasterLayer) -> dt.date | None:
    """The acquisition date in the layer's file name, else in its layer name, else None."""
    source = Path(layer.source().split("|")[0]).name
    return contract.date_from_name(source) or contract.date_from_name(layer.name())


def parse_typed_date(text: str) -> dt.date:
    """A date typed by the analyst; ValueError when it is not one."""
    try:
        return contract.parse_date(text)
    except contract.ContractError as exc:  # the caller words the message
        raise ValueError(str(exc)) from None


def band_dates(layer: QgsRasterLayer, count: int, per_date: int) -> list[dt.date | None]:
    """The date of each of ``count`` dates of a stack whose bands are dates x channels (``per_date`` bands a
    date): from the first band of each date's description ("2020-06-15 B2", "B2_20200615"), else its GDAL
    metadata (ACQUISITIONDATE, ..., a netCDF time axis "NETCDF_DIM_time" with its units); None where none."""
    provider = layer.dataProvider()
    metadata = _band_metadata(layer)
    found: list[dt.date | None] = []
    for t in range(count):
        band = t * per_date + 1
        date = contract.date_from_name(provider.bandDescription(band) or "")
        tags = metadata[band - 1] if band - 1 < len(metadata) else {}
        found.append(date or contract.date_from_tags(tags) or _netcdf_date(tags, metadata))
    return found


def _band_metadata(layer: QgsRasterLayer) -> list[dict[str, str]]:
    """Each band's GDAL metadata plus the dataset's (a netCDF time axis' units live there)."""
    try:
        from osgeo import gdal
    except ImportError:  # QGIS always ships GDAL's bindings; without them, descriptions only
        return []
    dataset = gdal.OpenEx(layer.source().split("|")[0], gdal.OF_RASTER | gdal.OF_READONLY)
    if dataset is None:
        return []
    common = dataset.GetMetadata() or {}
    return [dict(common, **(dataset.GetRasterBand(b).GetMetadata() or {})) for b in range(1, dataset.RasterCount + 1)]


def _netcdf_date(tags: dict[str, str], metadata: list[dict[str, str]]) -> dt.date | None:
    """A netCDF band's time ("NETCDF_DIM_time" = 18429) in the units of its time axis ("days since 1970-01-01")."""
    value = tags.get("NETCDF_DIM_time")
    units = tags.get("time#units", "")
    if value is None or " since " not in units:
        return None
    step, _, origin = units.partition(" since ")
    seconds = {
        "days": 86400,
        "day": 86400,
        "hours": 3600,
        "hour": 3600,
        "seconds": 1,
        "second": 1,
        "minutes": 60,
        "minute": 60,
    }.get(step.strip().lower())
    try:
        start = dt.datetime.fromisoformat(origin.strip()[:19].replace(" ", "T"))
        return (start + dt.timedelta(seconds=float(value) * seconds)).date() if seconds else None
    except ValueError:
        return None
