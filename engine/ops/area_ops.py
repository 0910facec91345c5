"""Areas with confidence intervals: draw a reference sample from a class map (``sample-map``),
then estimate the area of every class from the map and the labelled sample (``area-report``).

The estimator is engine.analysis.area (Olofsson et al. 2014). The map's classes are the strata:
``sample-map`` draws a stratified random sample (a floor per class, the rest in
proportion to the area) and writes it as points with an empty reference field for the
analyst to fill in (in the dock or any GIS); ``area-report`` reads the filled layer,
takes each point's map class from the map itself, and writes the area table as CSV and
HTML. The map is read block by block: memory does not grow with its size.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from engine.analysis.area import allocate_sample, stratified_estimate
from engine.analysis.class_map import ClassMap, class_map_info, map_windows, mapped_pixels
from engine.errors import EngineError
from engine.io.atomic import atomic_output, check_output_path
from engine.io.raster import open_raster
from engine.probes.labels import POINT, ogr_modules, read_labels
from engine.probes.report import write_area_report
from engine.runtime.progress import Reporter
from engine.runtime.registry import operation

MAP_HELP = "class map (uint8 GeoTIFF with class names, as written by classify / fit-probe / apply-probe)"


# ---------------------------------------------------------------- sample-map


@dataclass
class SampleMapParams:
    classes: str = field(metadata={"help": MAP_HELP, "positional": True})
    output: str = field(metadata={"help": "points to write (GeoPackage .gpkg), one per sample, for labelling",
                                  "positional": True})
    total: int = field(default=500, metadata={"help": "number of sample points"})
    min_per_class: int = field(default=50, metadata={"help": "floor of points per mapped class (good practice: 50 "
                                                             "or more); the rest in proportion to the area"})
    reference_field: str = field(default="reference", metadata={"help": "empty text field to fill in with the true class"})
    seed: int = field(default=0, metadata={"help": "random seed of the draw"})


def _draw(ds, info: ClassMap, sizes: np.ndarray, counts: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, class) of a uniform random draw of ``sizes[k]`` pixels of each class k, in a second
    pass over the map: the ranks of the chosen pixels within their class are drawn first."""
    rng = np.random.default_rng(seed)
    chosen = [np.sort(rng.choice(int(counts[k]), int(sizes[k]), replace=False)) if sizes[k] else np.zeros(0, np.int64)
              for k in range(len(sizes))]
    seen = np.zeros(len(sizes), np.int64)
    rows, cols, classes = [], [], []
    for window in map_windows(ds):
        data = ds.read(1, window=window)
        for k in np.flatnonzero(sizes):
            flat = np.flatnonzero(data.ravel() == k)
            ranks = chosen[k][(chosen[k] >= seen[k]) & (chosen[k] < seen[k] + flat.size)] - seen[k]
            r, c = np.divmod(flat[ranks], data.shape[1])
            rows.append(r + window.row_off)
            cols.append(c + window.col_off)
            classes.append(np.full(ranks.size, k))
            seen[k] += flat.size
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(classes)


def write_sample_points(path: str, ds, info: ClassMap, rows, cols, classes, reference_field: str) -> None:
    ogr, osr = ogr_modules()
    srs = osr.SpatialReference()
    srs.ImportFromWkt(info.crs.to_wkt())
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    with atomic_output(path, "output") as temp:
        source = ogr.GetDriverByName("GPKG").CreateDataSource(str(temp))
        layer = source.CreateLayer("reference_sample", srs, ogr.wkbPoint)
        for name, kind in (("sample_id", ogr.OFTInteger), ("map_code", ogr.OFTInteger), ("map_class", ogr.OFTString),
                           (reference_field, ogr.OFTString)):
            layer.CreateField(ogr.FieldDefn(name, kind))
        xs, ys = ds.transform * (cols + 0.5, rows + 0.5)
        layer.StartTransaction()
        for i, (x, y, k) in enumerate(zip(xs, ys, classes)):
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("sample_id", i + 1)
            feature.SetField("map_code", int(k))
            feature.SetField("map_class", info.names[int(k)])
            point = ogr.Geometry(ogr.wkbPoint)
            point.AddPoint_2D(float(x), float(y))
            feature.SetGeometry(point)
            layer.CreateFeature(feature)
        layer.CommitTransaction()
        source = None  # closes and flushes the GeoPackage before the rename


@operation("sample-map", SampleMapParams, outputs=("output",),
           summary="Draw a stratified random sample of points from a class map, ready to label for area-report.")
def sample_map_operation(params: SampleMapParams, reporter: Reporter) -> dict[str, Any]:
    """Strata are the map's classes: each mapped class gets min_per_class points (all its pixels if it
    has fewer), the rest of total in proportion to its area; points lie at pixel centres, drawn
    uniformly within each class. The layer has sample_id, map_code, map_class and an empty
    reference field: fill it with the class seen on the ground / in imagery, then run area-report."""
    check_output_path(params.output, "output")
    if Path(params.output).suffix.lower() != ".gpkg":
        raise EngineError(f"The sample output '{params.output}' must be a GeoPackage (.gpkg).")
    with open_raster(params.classes, "class map") as ds:
        info = class_map_info(ds, params.classes)
        counts = mapped_pixels(ds, info, reporter)
        if counts.sum() == 0:
            raise EngineError(f"The class map '{params.classes}' holds no classified pixel: nothing to sample.")
        sizes = allocate_sample(counts, params.total, params.min_per_class)
        reporter.progress(50, "Drawing the sample")
        rows, cols, classes = _draw(ds, info, sizes, counts, params.seed)
        write_sample_points(params.output, ds, info, rows, cols, classes, params.reference_field)
    per_class = {info.names[k]: int(sizes[k]) for k in range(len(sizes)) if counts[k]}
    reporter.log(f"Wrote {int(sizes.sum())} sample points to {params.output} ({per_class}); fill in "
                 f"'{params.reference_field}', then run area-report.")
    return {"output": params.output, "samples": int(sizes.sum()), "samples_per_class": per_class,
            "reference_field": params.reference_field,
            "mapped_pixels": {info.names[k]: int(counts[k]) for k in range(len(counts))}}


# ---------------------------------------------------------------- area-report


@dataclass
class AreaReportParams:
    classes: str = field(metadata={"help": MAP_HELP, "positional": True})
    reference: str = field(metadata={"help": "reference sample points (e.g. from sample-map) with the true class",
                                     "positional": True})
    output: str = field(metadata={"help": "area table to write (CSV)", "positional": True})
    html: str | None = field(default=None, metadata={"help": "the same table as an HTML report"})
    reference_field: str = field(default="reference", metadata={"help": "field of the reference layer holding the true class"})
    layer: str | None = field(default=None, metadata={"help": "layer of the reference file (default: the first)"})


def _match_reference(values: tuple[str, ...], names: list[str], path: str, field_name: str) -> dict[int, int]:
    """Reference class index -> map class index: by name, else by class code."""
    mapping, unknown = {}, []
    for i, value in enumerate(values):
        if value in names:
            mapping[i] = names.index(value)
        elif value.isdigit() and int(value) < len(names):
            mapping[i] = int(value)
        else:
            unknown.append(value)
    if unknown:
        raise EngineError(
            f"The reference classes {', '.join(repr(u) for u in unknown)} in field {field_name!r} of '{path}' are not "
            f"classes of the map (its classes: {', '.join(names)}): write the map's class names (or codes) in the "
            "reference field.")
    return mapping


def sample_counts(ds, info: ClassMap, reference_path: str, reference_field: str, layer: str | None,
                  reporter: Reporter) -> tuple[np.ndarray, dict[str, int]]:
    """The sample error matrix (rows: map class read under each point, columns: reference class)."""
    labels = read_labels(reference_path, reference_field, ds.crs, layer)
    if any(kind != POINT for kind in labels.kinds):
        raise EngineError(f"The reference sample '{reference_path}' must hold points (one per sample), not polygons.")
    mapping = _match_reference(labels.class_names, info.names, reference_path, reference_field)
    xs = np.array([g["coordinates"][0] if g["type"] == "Point" else g["coordinates"][0][0] for g in labels.geometries])
    ys = np.array([g["coordinates"][1] if g["type"] == "Point" else g["coordinates"][0][1] for g in labels.geometries])
    inverse = ~ds.transform
    cols, rows = inverse * (xs, ys)
    rows, cols = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    inside = (rows >= 0) & (rows < ds.height) & (cols >= 0) & (cols < ds.width)
    map_class = np.full(rows.size, -1, np.int64)
    for i in np.flatnonzero(inside):
        map_class[i] = int(ds.read(1, window=Window(int(cols[i]), int(rows[i]), 1, 1))[0, 0])
    valid = inside & (map_class >= 0) & (map_class < len(info.names))
    if info.nodata is not None:
        valid &= map_class != info.nodata
    skipped = {"outside the map": int((~inside).sum()), "on unclassified pixels": int((inside & ~valid).sum()),
               **{f"skipped ({k})": v for k, v in labels.skipped.items()}}
    if not valid.any():
        raise EngineError(f"No reference point of '{reference_path}' lies on a classified pixel of the map: check "
                          "that both cover the same area.")
    counts = np.zeros((len(info.names),) * 2, np.int64)
    reference = np.array([mapping[int(c)] for c in labels.codes])
    np.add.at(counts, (map_class[valid], reference[valid]), 1)
    if skipped["outside the map"] or skipped["on unclassified pixels"]:
        reporter.log(f"Reference points left out: {skipped}", "warning")
    return counts, {k: v for k, v in skipped.items() if v}


def write_area_csv(path: str, estimate, area_unit: str) -> None:
    rows = estimate.rows()
    with atomic_output(path, "output") as temp:
        with open(temp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            header = list(rows[0])
            writer.writerow([f"{h} ({area_unit})" if "area" in h and "accuracy" not in h and h != "area_share"
                             else h for h in header])
            for row in rows:
                writer.writerow([row[h] for h in header])
            writer.writerow(["overall accuracy", estimate.overall_accuracy, "standard error", estimate.overall_se])


@operation("area-report", AreaReportParams, outputs=("output", "html"),
           summary="Area per class with 95% confidence intervals, user's/producer's accuracy (Olofsson et al. 2014).")
def area_report_operation(params: AreaReportParams, reporter: Reporter) -> dict[str, Any]:
    """Stratified estimation from a class map and a reference sample drawn in it (sample-map): the
    map gives each class's mapped area (its stratum weight) and each point's map class; the
    reference field gives its true class (a map class name or code). Writes one CSV row per class:
    mapped area, estimated area with standard error and 95% interval, user's and producer's
    accuracy with standard errors; the overall accuracy last. The estimate is only valid for a
    probability sample of the map (a stratified random one, as sample-map draws)."""
    for key in ("output", "html"):
        if getattr(params, key):
            check_output_path(getattr(params, key), key)
    with open_raster(params.classes, "class map") as ds:
        info = class_map_info(ds, params.classes)
        pixels = mapped_pixels(ds, info, reporter)
        reporter.progress(50, "Reading the reference sample")
        counts, skipped = sample_counts(ds, info, params.reference, params.reference_field, params.layer, reporter)
    estimate = stratified_estimate(counts, pixels, info.names, info.pixel_area)
    write_area_csv(params.output, estimate, info.area_unit)
    if params.html:
        write_area_report(params.html, estimate, info.area_unit, {
            "class map": params.classes, "reference sample": params.reference,
            "reference field": params.reference_field, "pixel area": f"{info.pixel_area:g} {info.area_unit}",
            **({"points left out": skipped} if skipped else {})})
    for caveat in estimate.caveats():
        reporter.log(caveat, "warning")
    reporter.log(f"Overall accuracy {estimate.overall_accuracy:.3f} ± {estimate.overall_se:.3f} (SE); wrote "
                 + ", ".join(p for p in (params.output, params.html) if p))
    return {"output": params.output, "html": params.html, "area_unit": info.area_unit, "points_left_out": skipped,
            **estimate.summary()}
