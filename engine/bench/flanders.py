"""The WorldCereal Flanders sample (../shared/data/worldcereal_flanders) as a crop analyst has it:
GeoTIFFs per date (Sentinel-2 L2A 10 m bands, 20 m bands, the SCL layer; Sentinel-1 ascending VV/VH
in dB) and a parcels GeoPackage (a parcel = a connected region of one crop code of the 2018 parcel
register's raster, 4-connected), written into a folder of the caller's (never the shared data).

Sentinel-1 has several ascending acquisitions on some days (relative orbits): a file per day holds
their mean in dB where both see the ground, as a same-day mosaic would.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage

from engine.bench.common import write_raster
from engine.errors import EngineError

SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "worldcereal_flanders"
CRS = "EPSG:32631"
LEFT, TOP = 501360.0, 5629680.0  # the sample's bounds (501360, 5629040, 502000, 5629680)
BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B05", "B06", "B07", "B8A", "B11", "B12")
MODEL_BANDS = {
    "B02": "B2",
    "B03": "B3",
    "B04": "B4",
    "B05": "B5",
    "B06": "B6",
    "B07": "B7",
    "B08": "B8",
    "B8A": "B8A",
    "B11": "B11",
    "B12": "B12",
}


@dataclass(frozen=True)
class FlandersFiles:
    s2_10m: list[Path]
    s2_20m: list[Path]
    scl: list[Path]
    s1: list[Path]
    s2_dates: list[dt.date]
    s1_dates: list[dt.date]
    crop_codes: Path  # uint16 raster of the crop codes on the 10 m grid (0: no label)
    parcels: Path  # GeoPackage, layer "parcels": parcel_id, crop_code


def _source(prefix: str) -> Path:
    found = sorted(SOURCE.glob(f"{prefix}*.nc"))
    if not found:
        raise EngineError(
            f"The Flanders sample has no {prefix}*.nc under {SOURCE}: it needs ../shared/data beside the project."
        )
    return found[0]


def _dates(h5) -> list[dt.date]:
    units = h5["timestamp"].attrs["units"]
    units = units.decode() if isinstance(units, bytes) else str(units)
    match = re.match(r"seconds since (\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)", units)
    origin = dt.datetime.fromisoformat(f"{match[1]}T{match[2]}")
    return [(origin + dt.timedelta(seconds=float(s))).date() for s in h5["timestamp"][:]]


def _write(path: Path, data: np.ndarray, res: float, descriptions, nodata) -> Path:
    return write_raster(path, data, CRS, Affine(res, 0.0, LEFT, 0.0, -res, TOP), nodata, descriptions)


def build(folder: Path, s2_dates: slice | None = None, s1_dates: slice | None = None) -> FlandersFiles:
    """Write the per-date GeoTIFFs (``s2_dates``/``s1_dates``: a slice of the dates, all by default)
    and the parcels under ``folder``."""
    for sub in ("s2_10m", "s2_20m", "scl", "s1"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {k: [] for k in ("s2_10m", "s2_20m", "scl", "s1")}
    with h5py.File(_source("S2_L2A_10m"), "r") as ten, h5py.File(_source("S2_L2A_20m"), "r") as twenty:
        dates = _dates(ten)
        if dates != _dates(twenty):
            raise EngineError("The Flanders sample's 10 m and 20 m files disagree on dates.")
        pick = range(len(dates))[s2_dates or slice(None)]
        for t in pick:
            stamp = dates[t].strftime("%Y%m%d")
            out["s2_10m"].append(
                _write(
                    folder / "s2_10m" / f"S2_L2A_{stamp}_10m.tif",
                    np.stack([ten[b][t] for b in BANDS_10M]).astype(np.uint16),
                    10.0,
                    BANDS_10M,
                    0,
                )
            )
            out["s2_20m"].append(
                _write(
                    folder / "s2_20m" / f"S2_L2A_{stamp}_20m.tif",
                    np.stack([twenty[b][t] for b in BANDS_20M]).astype(np.uint16),
                    20.0,
                    BANDS_20M,
                    0,
                )
            )
            out["scl"].append(
                _write(
                    folder / "scl" / f"S2_L2A_{stamp}_SCL.tif",
                    twenty["SCL"][t][None].astype(np.uint8),
                    20.0,
                    ("SCL",),
                    None,
                )
            )
        s2 = [dates[t] for t in pick]
    with h5py.File(_source("S1_GRD"), "r") as s1:
        dates = _dates(s1)
        days = sorted(set(dates))
        days = days[s1_dates or slice(None)]
        for day in days:
            same = [t for t, d in enumerate(dates) if d == day]
            stack = []
            for band in ("VV", "VH"):
                raw = np.stack([s1[band][t] for t in same]).astype(np.float64)
                db = np.where(raw == 0, np.nan, raw * float(s1[band].attrs.get("scale_factor", 1.0)))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a pixel no acquisition saw: NaN
                    stack.append(np.nanmean(db, axis=0))
            out["s1"].append(
                _write(
                    folder / "s1" / f"S1_ASC_{day.strftime('%Y%m%d')}.tif",
                    np.stack(stack).astype(np.float32),
                    20.0,
                    ("VV", "VH"),
                    float("nan"),
                )
            )
    with h5py.File(_source("OUTPUT_POLY"), "r") as labels:
        codes = labels["CT"][:].astype(np.uint16)
    crop_codes = _write(folder / "crop_codes.tif", codes[None], 10.0, ("CT",), 0)
    parcels = write_parcels(codes, folder / "parcels.gpkg")
    return FlandersFiles(out["s2_10m"], out["s2_20m"], out["scl"], out["s1"], s2, days, crop_codes, parcels)


def parcel_regions(codes: np.ndarray) -> np.ndarray:
    """(H, W) parcel number (1..) of every labelled pixel: connected (4-neighbour) regions of one code; 0 elsewhere."""
    regions = np.zeros(codes.shape, np.int32)
    for code in np.unique(codes[codes > 0]):
        labelled, n = ndimage.label(codes == code)
        regions[labelled > 0] = labelled[labelled > 0] + regions.max()
    return regions


def write_parcels(codes: np.ndarray, path: Path) -> Path:
    """The parcels of a crop-code raster on the sample's 10 m grid as a GeoPackage (parcel_id, crop_code)."""
    from osgeo import ogr, osr  # lazy: keeps GDAL out of this module

    regions = parcel_regions(codes)
    transform = Affine(10.0, 0.0, LEFT, 0.0, -10.0, TOP)
    driver = ogr.GetDriverByName("GPKG")
    if path.exists():
        driver.DeleteDataSource(str(path))
    source = driver.CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    layer = source.CreateLayer("parcels", srs, ogr.wkbMultiPolygon)
    layer.CreateField(ogr.FieldDefn("parcel_id", ogr.OFTInteger))
    layer.CreateField(ogr.FieldDefn("crop_code", ogr.OFTInteger))
    pieces: dict[int, list] = {}
    for geometry, value in shapes(regions, mask=regions > 0, transform=transform, connectivity=4):
        pieces.setdefault(int(value), []).append(geometry)
    for region, geometries in sorted(pieces.items()):
        multi = ogr.Geometry(ogr.wkbMultiPolygon)
        for g in geometries:
            multi.AddGeometry(ogr.CreateGeometryFromJson(json.dumps(g)))
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("parcel_id", region)
        feature.SetField("crop_code", int(codes[regions == region][0]))
        feature.SetGeometry(multi)
        layer.CreateFeature(feature)
    source = None  # closes the file
    return path
