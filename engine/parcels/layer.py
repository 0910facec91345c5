"""Parcels (an agency's parcel register, LPIS) on a raster grid, and the parcel map written back.

Reading: any OGR polygon layer in any CRS, reprojected to the grid's CRS; each parcel keeps a
status saying why it gets no class (empty or invalid geometry, outside the grid, no pixel centre
inside). Pixels claimed by two overlapping parcels belong to neither (counted in both rows).
Writing: a new GeoPackage layer (the input is never opened for writing) with one row per input
parcel, its geometry in the input's CRS, and a categorised style in the map's class colours stored
in the GeoPackage's ``layer_styles`` table (QGIS loads it as the layer's default style) and as a
``.qml`` beside the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape  # nosec B406  # escapes text written into a style; nothing is parsed

import numpy as np
from affine import Affine
from rasterio.features import rasterize

from engine.errors import EngineError
from engine.io.atomic import atomic_output
from engine.probes.labels import ogr_modules

OK = "ok"


@dataclass
class Parcels:
    path: str
    layer: str
    fid: list[int]  # OGR feature ids, for the output rows
    geometries: list[Any]  # ogr.Geometry in the INPUT's CRS (written back as given), None when empty
    grid_geometries: list[dict | None]  # GeoJSON in the grid's CRS, None when unusable
    status: list[str]  # OK or why the parcel gets no class
    attributes: list[dict[str, Any]]
    fields: list[tuple[str, int, int, int]]  # the input's fields: name, OGR type, width, precision
    srs_wkt: str | None
    skipped_empty: int = 0

    def __len__(self) -> int:
        return len(self.fid)


def read_parcels(path: str, grid_crs, layer: str | None = None) -> Parcels:
    """Every feature of the polygon layer, its geometry reprojected to ``grid_crs``."""
    ogr, osr = ogr_modules()
    if not path or not os.path.exists(path):
        raise EngineError(
            f"The parcels layer '{path}' does not exist: give a polygon layer (GeoPackage, shapefile...)."
        )
    try:
        source = ogr.Open(str(path), 0)  # read only: the input is never modified
    except RuntimeError as exc:
        raise EngineError(
            f"The parcels layer '{path}' cannot be read ({exc}): give a vector file GDAL reads."
        ) from None
    lyr = source.GetLayerByName(layer) if layer else source.GetLayer(0)
    if lyr is None:
        names = [source.GetLayer(i).GetName() for i in range(source.GetLayerCount())]
        raise EngineError(f"'{path}' has no layer {layer!r}; its layers: {', '.join(names)}.")
    if lyr.GetFeatureCount() == 0:
        raise EngineError(f"The parcels layer '{path}' ({lyr.GetName()}) has no feature: give a layer with parcels.")
    srs = lyr.GetSpatialRef()
    if srs is None:
        raise EngineError(
            f"The parcels layer '{path}' has no coordinate reference system: set it (e.g. in QGIS, "
            "Layer > Set CRS) and save the layer."
        )
    target = osr.SpatialReference()
    target.ImportFromWkt(grid_crs.to_wkt())
    for s in (srs, target):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = None if srs.IsSame(target) else osr.CoordinateTransformation(srs, target)
    defn = lyr.GetLayerDefn()
    fields = [
        (f.GetName(), f.GetType(), f.GetWidth(), f.GetPrecision())
        for f in (defn.GetFieldDefn(i) for i in range(defn.GetFieldCount()))
    ]
    out = Parcels(str(path), lyr.GetName(), [], [], [], [], [], fields, srs.ExportToWkt())
    for feature in lyr:
        geometry = feature.GetGeometryRef()
        out.fid.append(feature.GetFID())
        out.attributes.append({name: feature.GetField(name) for name, *_ in fields})
        out.geometries.append(geometry.Clone() if geometry is not None else None)
        status, gj = OK, None
        if geometry is None or geometry.IsEmpty():
            status = "empty geometry"
        elif ogr.GT_Flatten(geometry.GetGeometryType()) not in (ogr.wkbPolygon, ogr.wkbMultiPolygon):
            status = f"not a polygon ({geometry.GetGeometryName().lower()})"
        else:
            g = geometry.Clone()
            if not g.IsValid():
                fixed = g.MakeValid() if hasattr(g, "MakeValid") else g.Buffer(0)
                if fixed is None or fixed.IsEmpty() or not fixed.IsValid():
                    status = "invalid geometry (could not be repaired)"
                else:
                    g, status = fixed, OK
            if status == OK:
                if transform is not None:
                    g.Transform(transform)
                gj = json.loads(g.ExportToJson())
        out.status.append(status)
        out.grid_geometries.append(gj)
    return out


@dataclass
class ParcelPixels:
    """Which parcel each pixel of a grid belongs to (-1: none) and per parcel its pixel count and
    the pixels it shares with an overlapping parcel (left out of both)."""

    index: np.ndarray  # (H, W) int32: position of the parcel in Parcels, -1 outside every parcel
    pixels: np.ndarray  # (P,) pixel centres inside each parcel, shared ones included
    shared: np.ndarray  # (P,) pixels shared with another parcel


def parcel_pixels(parcels: Parcels, transform: Affine, shape: tuple[int, int]) -> ParcelPixels:
    """Rasterize the parcels by pixel centre; overlaps are given to no parcel."""
    n = len(parcels)
    usable = [i for i in range(n) if parcels.grid_geometries[i] is not None]
    index = np.full(shape, -1, np.int32)
    count = np.zeros(shape, np.int32)
    pixels, shared = np.zeros(n, np.int64), np.zeros(n, np.int64)
    masks = {}
    for i in usable:
        mask = rasterize(
            [(parcels.grid_geometries[i], 1)], out_shape=shape, transform=transform, fill=0, dtype="uint8"
        ).astype(bool)
        masks[i] = mask
        pixels[i] = mask.sum()
        count += mask
        index[mask] = i
    overlap = count > 1
    index[overlap] = -1
    for i, mask in masks.items():
        shared[i] = (mask & overlap).sum()
    return ParcelPixels(index, pixels, shared)


@dataclass
class ParcelResult:
    """One output row per input parcel."""

    class_index: np.ndarray  # (P,) int, -1: no class
    probability: np.ndarray  # (P,) float, NaN without class
    runner_up: np.ndarray  # (P,) int, -1 when none
    runner_up_probability: np.ndarray
    valid_share: np.ndarray  # (P,) share of the parcel's pixels with a valid value
    pixels: np.ndarray  # (P,) pixels inside
    status: list[str] = field(default_factory=list)


def _qml(class_field: str, names: Sequence[str], colors: Sequence[str]) -> str:
    categories, symbols = [], []
    for k, (name, color) in enumerate(zip(names, colors)):
        rgb = color.lstrip("#")
        r, g, b = (int(rgb[i : i + 2], 16) for i in (0, 2, 4))
        categories.append(f'<category render="true" symbol="{k}" value="{escape(name)}" label="{escape(name)}"/>')
        symbols.append(
            f'<symbol type="fill" name="{k}" alpha="1"><layer class="SimpleFill">'
            f'<Option type="Map"><Option type="QString" name="color" value="{r},{g},{b},255"/>'
            f'<Option type="QString" name="outline_color" value="35,35,35,255"/>'
            f'<Option type="QString" name="outline_width" value="0.26"/>'
            f'<Option type="QString" name="style" value="solid"/></Option>'
            f'<prop k="color" v="{r},{g},{b},255"/><prop k="outline_color" v="35,35,35,255"/>'
            f'<prop k="style" v="solid"/></layer></symbol>'
        )
    k = len(names)
    categories.append(f'<category render="true" symbol="{k}" value="" label="no class"/>')
    symbols.append(
        f'<symbol type="fill" name="{k}" alpha="1"><layer class="SimpleFill"><Option type="Map">'
        f'<Option type="QString" name="color" value="0,0,0,0"/><Option type="QString" '
        f'name="outline_color" value="120,120,120,255"/><Option type="QString" name="style" '
        f'value="no"/></Option><prop k="style" v="no"/><prop k="outline_color" v="120,120,120,255"/>'
        f'</layer></symbol>'
    )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.40" styleCategories="Symbology">'
        f'<renderer-v2 type="categorizedSymbol" attr="{escape(class_field)}" forceraster="0" enableorderby="0">'
        f'<categories>{"".join(categories)}</categories><symbols>{"".join(symbols)}</symbols></renderer-v2>'
        '</qgis>\n'
    )


OUTPUT_FIELDS = ("class", "probability", "runner_up", "runner_up_probability", "valid_share", "pixels", "status")


def write_parcel_map(
    parcels: Parcels,
    result: ParcelResult,
    class_names: Sequence[str],
    colors: Sequence[str],
    path: str,
    layer: str,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A new GeoPackage at ``path`` (written to a temporary name, then renamed) with the parcels,
    their attributes and the result columns, styled by class."""
    ogr, osr = ogr_modules()

    clash = [name for name, *_ in parcels.fields if name.lower() in OUTPUT_FIELDS]
    prefix = "parcel_" if clash else ""
    qml = _qml(f"{prefix}class", class_names, colors)
    with atomic_output(path) as temp:
        driver = ogr.GetDriverByName("GPKG")
        out = driver.CreateDataSource(str(temp))
        srs = osr.SpatialReference()
        srs.ImportFromWkt(parcels.srs_wkt)
        lyr = out.CreateLayer(layer, srs, ogr.wkbMultiPolygon)
        for name, kind, width, precision in parcels.fields:
            definition = ogr.FieldDefn(name, kind)
            definition.SetWidth(width)
            definition.SetPrecision(precision)
            lyr.CreateField(definition)
        kinds = {
            "class": ogr.OFTString,
            "probability": ogr.OFTReal,
            "runner_up": ogr.OFTString,
            "runner_up_probability": ogr.OFTReal,
            "valid_share": ogr.OFTReal,
            "pixels": ogr.OFTInteger,
            "status": ogr.OFTString,
        }
        for name in OUTPUT_FIELDS:
            lyr.CreateField(ogr.FieldDefn(prefix + name, kinds[name]))
        lyr.StartTransaction()
        for i in range(len(parcels)):
            feature = ogr.Feature(lyr.GetLayerDefn())
            for key, value in parcels.attributes[i].items():
                if value is not None:
                    feature.SetField(key, value)
            k, r = int(result.class_index[i]), int(result.runner_up[i])
            if k >= 0:
                feature.SetField(prefix + "class", class_names[k])
                feature.SetField(prefix + "probability", float(result.probability[i]))
            if r >= 0:
                feature.SetField(prefix + "runner_up", class_names[r])
                feature.SetField(prefix + "runner_up_probability", float(result.runner_up_probability[i]))
            feature.SetField(prefix + "valid_share", float(result.valid_share[i]))
            feature.SetField(prefix + "pixels", int(result.pixels[i]))
            feature.SetField(prefix + "status", result.status[i])
            g = parcels.geometries[i]
            if g is not None and not g.IsEmpty():
                feature.SetGeometry(ogr.ForceToMultiPolygon(g))
            lyr.CreateFeature(feature)
        lyr.CommitTransaction()
        _store_style(out, layer, qml, extra or {})
        out = None  # closes the GeoPackage before it is renamed
    Path(path).with_suffix(".qml").write_text(qml)
    return {"output": str(path), "layer": layer, "style": str(Path(path).with_suffix(".qml"))}


def _store_style(source, layer: str, qml: str, extra: dict[str, str]) -> None:
    """The style as the layer's default in the GeoPackage's ``layer_styles`` table (QGIS's convention)."""
    ogr, _ = ogr_modules()
    styles = source.CreateLayer("layer_styles", None, ogr.wkbNone)
    columns = {
        "f_table_catalog": ogr.OFTString,
        "f_table_schema": ogr.OFTString,
        "f_table_name": ogr.OFTString,
        "f_geometry_column": ogr.OFTString,
        "styleName": ogr.OFTString,
        "styleQML": ogr.OFTString,
        "styleSLD": ogr.OFTString,
        "useAsDefault": ogr.OFTInteger,
        "description": ogr.OFTString,
        "owner": ogr.OFTString,
        "ui": ogr.OFTString,
        "update_time": ogr.OFTDateTime,
    }
    for name, kind in columns.items():
        styles.CreateField(ogr.FieldDefn(name, kind))
    feature = ogr.Feature(styles.GetLayerDefn())
    for key, value in {
        "f_table_catalog": "",
        "f_table_schema": "",
        "f_table_name": layer,
        "f_geometry_column": "geom",
        "styleName": layer,
        "styleQML": qml,
        "styleSLD": "",
        "useAsDefault": 1,
        "description": extra.get("description", "OmniSat parcel map"),
        "owner": "",
        "ui": "",
    }.items():
        feature.SetField(key, value)
    styles.CreateFeature(feature)
