"""The sample layer: a GeoPackage of points to label, with the design it was drawn with.

Layer ``reference_sample`` (points, the map's CRS): ``sample_id``, ``stratum`` (map class
code: the stratum of a stratified draw, the post-stratum otherwise), ``map_code``,
``map_class``, the reference field (empty until labelled), ``flag`` ("" / "not sure" /
"no data"), ``comment`` and ``labelled_at`` (UTC time of the label). Table
``sample_design`` (no geometry): one row whose ``value`` is the design as JSON
(engine.analysis.sampling.SampleDesign). The labelling panel in QGIS writes the same
fields, one feature at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.analysis.sampling import SampleDesign
from engine.errors import EngineError
from engine.io.atomic import atomic_output
from engine.probes.labels import ogr_modules

LAYER = "reference_sample"
DESIGN_TABLE = "sample_design"
NOT_SURE, NO_DATA = "not sure", "no data"
FLAGS = ("", NOT_SURE, NO_DATA)


@dataclass
class SamplePoints:
    sample_id: np.ndarray
    x: np.ndarray
    y: np.ndarray
    stratum: np.ndarray
    map_code: np.ndarray
    reference: list[str]  # "" where not labelled
    flag: list[str]
    design: SampleDesign | None

    @property
    def labelled(self) -> np.ndarray:
        return np.array([bool(r) and not f for r, f in zip(self.reference, self.flag)], bool)

    def response(self) -> dict[str, int]:
        """How far the labelling got: labelled, not sure, no data, not yet labelled, of the total."""
        flags = np.array(self.flag, object)
        labelled = self.labelled
        return {
            "total": int(self.sample_id.size),
            "labelled": int(labelled.sum()),
            "not sure": int((flags == NOT_SURE).sum()),
            "no data": int((flags == NO_DATA).sum()),
            "not labelled": int((~labelled & (flags == "")).sum()),
        }


def write_sample(
    path: str,
    crs_wkt: str,
    xs: np.ndarray,
    ys: np.ndarray,
    strata: np.ndarray,
    design: SampleDesign,
    reference_field: str = "reference",
) -> None:
    ogr, osr = ogr_modules()
    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs_wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    with atomic_output(path, "output") as temp:
        source = ogr.GetDriverByName("GPKG").CreateDataSource(str(temp))
        layer = source.CreateLayer(LAYER, srs, ogr.wkbPoint)
        for name, kind in (
            ("sample_id", ogr.OFTInteger),
            ("stratum", ogr.OFTInteger),
            ("map_code", ogr.OFTInteger),
            ("map_class", ogr.OFTString),
            (reference_field, ogr.OFTString),
            ("flag", ogr.OFTString),
            ("comment", ogr.OFTString),
            ("labelled_at", ogr.OFTString),
        ):
            layer.CreateField(ogr.FieldDefn(name, kind))
        layer.StartTransaction()
        for i, (x, y, h) in enumerate(zip(xs, ys, strata)):
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("sample_id", i + 1)
            feature.SetField("stratum", int(h))
            feature.SetField("map_code", int(h))
            feature.SetField("map_class", design.class_names[int(h)])
            feature.SetField("flag", "")
            point = ogr.Geometry(ogr.wkbPoint)
            point.AddPoint_2D(float(x), float(y))
            feature.SetGeometry(point)
            layer.CreateFeature(feature)
        layer.CommitTransaction()
        table = source.CreateLayer(DESIGN_TABLE, None, ogr.wkbNone)
        table.CreateField(ogr.FieldDefn("key", ogr.OFTString))
        table.CreateField(ogr.FieldDefn("value", ogr.OFTString))
        row = ogr.Feature(table.GetLayerDefn())
        row.SetField("key", "design")
        row.SetField("value", design.to_json())
        table.CreateFeature(row)
        source = None  # closes and flushes the GeoPackage before the rename


def read_design(source, path: str) -> SampleDesign | None:
    table = source.GetLayerByName(DESIGN_TABLE)
    if table is None:
        return None
    for row in table:
        if row.GetField("key") == "design":
            return SampleDesign.from_json(row.GetField("value") or "", path)
    return None


def read_sample(path: str, reference_field: str = "reference", layer: str | None = None) -> SamplePoints:
    """The points of a sample layer with their labels and design (None for a layer without one)."""
    ogr, _ = ogr_modules()
    file = Path(path)
    if not file.is_file():
        raise EngineError(f"The sample layer '{path}' does not exist: draw one with sample-map.")
    try:
        source = ogr.Open(str(file))
    except RuntimeError as exc:
        raise EngineError(f"The sample layer '{path}' is not a vector file GDAL can read ({exc}).") from None
    lyr = source.GetLayerByName(layer or LAYER) or (None if layer else source.GetLayerByIndex(0))
    if lyr is None:
        raise EngineError(f"The sample file '{path}' has no layer {layer or LAYER!r}.")
    fields = [lyr.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(lyr.GetLayerDefn().GetFieldCount())]
    if reference_field not in fields:
        raise EngineError(
            f"The sample layer '{path}' has no field {reference_field!r} (its fields: "
            f"{', '.join(fields)}): name the field holding the reference class."
        )
    ids, xs, ys, strata, codes, refs, flags = [], [], [], [], [], [], []
    for feature in lyr:
        geometry = feature.GetGeometryRef()
        if geometry is None or geometry.GetGeometryName() != "POINT":
            raise EngineError(
                f"Feature {feature.GetFID()} of the sample layer '{path}' is not a point: a sample "
                "layer holds one point per sample."
            )
        ids.append(feature.GetField("sample_id") if "sample_id" in fields else feature.GetFID())
        xs.append(geometry.GetX())
        ys.append(geometry.GetY())
        strata.append(feature.GetField("stratum") if "stratum" in fields else -1)
        codes.append(feature.GetField("map_code") if "map_code" in fields else -1)
        refs.append(
            (feature.GetField(reference_field) or "").strip() if feature.IsFieldSetAndNotNull(reference_field) else ""
        )
        flags.append((feature.GetField("flag") or "") if "flag" in fields else "")
    design = read_design(source, path)
    source = None
    as_int = lambda values: np.array([-1 if v is None else int(v) for v in values], np.int64)  # noqa: E731
    return SamplePoints(
        np.asarray(ids, np.int64),
        np.asarray(xs, np.float64),
        np.asarray(ys, np.float64),
        as_int(strata),
        as_int(codes),
        refs,
        flags,
        design,
    )


def reference_codes(values: list[str], names: list[str], path: str, field: str) -> np.ndarray:
    """Reference labels (class names, or codes) as map class codes; a clear error for others."""
    codes, unknown = [], set()
    for value in values:
        if value in names:
            codes.append(names.index(value))
        elif value.isdigit() and int(value) < len(names):
            codes.append(int(value))
        else:
            unknown.add(value)
    if unknown:
        raise EngineError(
            f"The labels {', '.join(sorted(repr(u) for u in unknown))} in field {field!r} of '{path}' are not classes "
            f"of the map (its classes: {', '.join(names)}): relabel those points with a map class (or mark them "
            "'not sure' / 'no data')."
        )
    return np.asarray(codes, np.int64)
