"""Training labels from any OGR vector layer, rasterized onto an embedding grid.

Points take the cell that contains them; polygons label every cell they cover by at
least ``min_coverage`` (a fraction of the cell's area, estimated by rasterizing on a
finer grid). Each labelled cell remembers the feature it came from, so that
validation splits can keep all cells of one polygon on the same side.

Vectors are read with the system GDAL's ``osgeo.ogr``: the same GDAL/PROJ as
rasterio, so a single copy of each library is loaded in the process.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import rasterize

from engine.errors import EngineError

POINT, POLYGON = "point", "polygon"
# Cells are split into SUPERSAMPLE x SUPERSAMPLE sub-cells to estimate polygon coverage.
SUPERSAMPLE = 8


@dataclass
class LabelLayer:
    """Labelled features of a vector layer, already in the target CRS."""

    path: str
    layer: str
    class_field: str
    class_names: tuple[str, ...]
    geometries: list[dict[str, Any]]  # GeoJSON-like, in ``crs``
    kinds: list[str]  # POINT or POLYGON, one per geometry
    codes: np.ndarray  # (N,) class index into class_names
    feature_ids: np.ndarray  # (N,) OGR feature ids, for reports
    crs: CRS | None
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def counts(self) -> dict[str, int]:
        return {name: int((self.codes == k).sum()) for k, name in enumerate(self.class_names)}


@dataclass
class LabelSamples:
    """Labelled cells of a grid: one row per cell."""

    rows: np.ndarray
    cols: np.ndarray
    y: np.ndarray  # class index
    groups: np.ndarray  # index of the feature (polygon or point) the label came from
    from_point: np.ndarray  # bool: the label came from a point, not a polygon
    class_names: tuple[str, ...]
    shape: tuple[int, int]
    report: dict[str, Any]

    def __len__(self) -> int:
        return int(self.y.size)

    def class_counts(self) -> dict[str, int]:
        return {name: int((self.y == k).sum()) for k, name in enumerate(self.class_names)}

    def label_image(self, nodata: int = -1) -> np.ndarray:
        image = np.full(self.shape, nodata, np.int32)
        image[self.rows, self.cols] = self.y
        return image


def ogr_modules():
    try:
        from osgeo import ogr, osr  # lazy: keeps GDAL out of this module
    except ImportError:
        raise EngineError(
            "Reading vector labels needs GDAL's Python bindings (osgeo.ogr), which are missing "
            "from this Python environment: install the system package python3-gdal (the same GDAL "
            "as rasterio) and create the environment with --system-site-packages."
        ) from None
    ogr.UseExceptions()
    osr.UseExceptions()
    return ogr, osr


def _class_value(raw: Any, field_name: str, path: str) -> int | str:
    if isinstance(raw, float):
        if not math.isfinite(raw) or raw != round(raw):
            raise EngineError(
                f"The class field {field_name!r} of '{path}' holds the non-whole number {raw}: "
                "use an integer or text field for classes."
            )
        return int(raw)
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    return text


def read_labels(
    path: str | os.PathLike,
    class_field: str,
    target_crs: CRS | str | None = None,
    layer: str | None = None,
    ignore_values: Sequence[str] = (),
) -> LabelLayer:
    """Read points/polygons and their class from ``path`` (any OGR format), reprojected to ``target_crs``.

    Integer classes (also whole-valued real fields) are ordered by value, text classes
    alphabetically. Features whose class is null/empty or listed in ``ignore_values``
    (compared as text, e.g. "0" for a no-data class) are skipped and counted.
    """
    ogr, osr = ogr_modules()
    file = Path(path).expanduser()
    if not str(path) or not file.exists():
        raise EngineError(f"The label file '{file}' does not exist: check the path.")
    try:
        source = ogr.Open(str(file))
    except RuntimeError as exc:
        raise EngineError(f"The label file '{file}' is not a vector file GDAL can read ({exc}).") from None
    if source is None or source.GetLayerCount() == 0:
        raise EngineError(f"The label file '{file}' holds no vector layer.")
    if layer:
        lyr = source.GetLayerByName(layer)
        if lyr is None:
            names = [source.GetLayerByIndex(i).GetName() for i in range(source.GetLayerCount())]
            raise EngineError(f"The label file '{file}' has no layer {layer!r}; its layers: {', '.join(names)}.")
    else:
        lyr = source.GetLayerByIndex(0)
    defn = lyr.GetLayerDefn()
    fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    if class_field not in fields:
        raise EngineError(
            f"The label layer '{file}' ({lyr.GetName()}) has no field {class_field!r}. "
            f"Its fields: {', '.join(fields) or 'none'}. Choose the field that holds the class."
        )
    if lyr.GetFeatureCount() == 0:
        raise EngineError(
            f"The label layer '{file}' ({lyr.GetName()}) is empty: draw or load some labelled points or polygons."
        )

    source_srs = lyr.GetSpatialRef()
    transform = None
    crs = CRS.from_user_input(target_crs) if target_crs is not None else None
    if source_srs is not None:
        source_srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        if crs is None:
            crs = CRS.from_wkt(source_srs.ExportToWkt())
        else:
            target_srs = osr.SpatialReference()
            target_srs.ImportFromWkt(crs.to_wkt())
            target_srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            if not source_srs.IsSame(target_srs):
                transform = osr.CoordinateTransformation(source_srs, target_srs)

    ignored = {str(v).strip() for v in ignore_values}
    skipped = {"null class": 0, "ignored class": 0, "no geometry": 0, "lines or other geometry": 0}
    values, geometries, kinds, fids = [], [], [], []
    index = defn.GetFieldIndex(class_field)
    lyr.ResetReading()
    for feature in lyr:
        if not feature.IsFieldSetAndNotNull(index):
            skipped["null class"] += 1
            continue
        value = _class_value(feature.GetField(index), class_field, str(file))
        if value == "":
            skipped["null class"] += 1
            continue
        if str(value) in ignored:
            skipped["ignored class"] += 1
            continue
        geom = feature.GetGeometryRef()
        if geom is None or geom.IsEmpty():
            skipped["no geometry"] += 1
            continue
        flat = ogr.GT_Flatten(geom.GetGeometryType())
        if flat in (ogr.wkbPoint, ogr.wkbMultiPoint):
            kind = POINT
        elif flat in (ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbCurvePolygon, ogr.wkbMultiSurface):
            kind = POLYGON
        else:
            skipped["lines or other geometry"] += 1
            continue
        geom = geom.Clone()
        if kind == POLYGON and flat not in (ogr.wkbPolygon, ogr.wkbMultiPolygon):
            geom = geom.GetLinearGeometry()
        geom.FlattenTo2D()
        if transform is not None:
            geom.Transform(transform)
        values.append(value)
        geometries.append(json.loads(geom.ExportToJson()))
        kinds.append(kind)
        fids.append(feature.GetFID())

    if not values:
        reasons = ", ".join(f"{n} {r}" for r, n in skipped.items() if n)
        if skipped["null class"] and not (skipped["ignored class"] or skipped["no geometry"]):
            raise EngineError(
                f"Every feature of '{file}' has an empty class field {class_field!r}: fill in the classes "
                "or choose another field."
            )
        raise EngineError(f"No usable label in '{file}' ({reasons}): use points or polygons with a class.")
    if any(isinstance(v, str) for v in values) and not all(isinstance(v, str) for v in values):
        values = [str(v) for v in values]
    ordered = sorted(set(values))
    code_of = {v: k for k, v in enumerate(ordered)}
    return LabelLayer(
        path=str(file),
        layer=lyr.GetName(),
        class_field=class_field,
        class_names=tuple(str(v) for v in ordered),
        geometries=geometries,
        kinds=kinds,
        codes=np.array([code_of[v] for v in values], np.int64),
        feature_ids=np.array(fids, np.int64),
        crs=crs,
        skipped={k: v for k, v in skipped.items() if v},
    )


def geometry_bounds(geometry: dict[str, Any]) -> tuple[float, float, float, float]:
    coords = np.array(list(_flatten(geometry["coordinates"])), np.float64)
    return coords[:, 0].min(), coords[:, 1].min(), coords[:, 0].max(), coords[:, 1].max()


def _flatten(coords):
    if isinstance(coords[0], (int, float)):
        yield coords[:2]
    else:
        for c in coords:
            yield from _flatten(c)


def _cell_range(geometry, inverse: Affine, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Rows/cols [r0, r1) x [c0, c1) of the grid touched by the geometry's envelope, or None."""
    x0, y0, x1, y1 = geometry_bounds(geometry)
    cs, rs = zip(*(inverse * (x, y) for x in (x0, x1) for y in (y0, y1)))
    r0, r1 = max(int(math.floor(min(rs))), 0), min(int(math.ceil(max(rs))), shape[0])
    c0, c1 = max(int(math.floor(min(cs))), 0), min(int(math.ceil(max(cs))), shape[1])
    if r0 >= r1 or c0 >= c1:
        return None
    return r0, r1, c0, c1


def rasterize_labels(
    labels: LabelLayer,
    transform: Affine,
    shape: tuple[int, int],
    min_coverage: float = 0.5,
    crs: CRS | None = None,
) -> LabelSamples:
    """Label the cells of the grid (``transform``, ``shape``) from ``labels`` (already in the grid's CRS).

    A polygon cell is labelled with the class covering the largest fraction of it, when
    that fraction is at least ``min_coverage``; a tie between classes leaves it unlabelled.
    Several points in one cell: one sample when they agree, none when they disagree.
    Features outside the grid are dropped and counted in the report.
    """
    if not 0.0 < min_coverage <= 1.0:
        raise EngineError(f"min_coverage must be in (0, 1], got {min_coverage}.")
    if crs is not None and labels.crs is not None and CRS.from_user_input(crs) != labels.crs:
        raise EngineError(
            f"The labels of '{labels.path}' are in {labels.crs.to_string()} but the grid is in "
            f"{CRS.from_user_input(crs).to_string()}: read them with target_crs set to the grid's CRS."
        )
    height, width = shape
    inverse = ~transform
    # Sparse records, one per (feature, touched cell): memory follows the labels, not the grid.
    poly_cell, poly_class, poly_share, poly_feature = [], [], [], []
    point_cell, point_class, point_feature = [], [], []
    outside = []
    per_feature_cells = np.zeros(len(labels.geometries), np.int64)

    for i, (geometry, kind, code) in enumerate(zip(labels.geometries, labels.kinds, labels.codes)):
        cells = _cell_range(geometry, inverse, shape)
        if cells is None:
            outside.append(int(labels.feature_ids[i]))
            continue
        r0, r1, c0, c1 = cells
        if kind == POINT:
            coords = geometry["coordinates"]
            points = [coords] if geometry["type"] == "Point" else coords
            hits = set()
            for x, y, *_ in points:
                col, row = inverse * (x, y)
                row, col = int(math.floor(row)), int(math.floor(col))
                if 0 <= row < height and 0 <= col < width:
                    hits.add(row * width + col)
            if not hits:
                outside.append(int(labels.feature_ids[i]))
            point_cell += sorted(hits)
            point_class += [int(code)] * len(hits)
            point_feature += [i] * len(hits)
            per_feature_cells[i] = len(hits)
            continue
        # Rasterize the polygon on a finer grid over its window, then count sub-cells per cell.
        fine = transform * Affine.translation(c0, r0) * Affine.scale(1.0 / SUPERSAMPLE)
        mask = rasterize(
            [(geometry, 1)],
            out_shape=((r1 - r0) * SUPERSAMPLE, (c1 - c0) * SUPERSAMPLE),
            transform=fine,
            fill=0,
            dtype="uint8",
        )
        share = mask.reshape(r1 - r0, SUPERSAMPLE, c1 - c0, SUPERSAMPLE).mean(axis=(1, 3), dtype=np.float32)
        rows, cols = np.nonzero(share)
        if rows.size == 0:  # the envelope touches the grid, the polygon itself does not
            outside.append(int(labels.feature_ids[i]))
            continue
        poly_cell.append((rows + r0).astype(np.int64) * width + cols + c0)
        poly_share.append(share[rows, cols])
        poly_class.append(np.full(rows.size, code, np.int64))
        poly_feature.append(np.full(rows.size, i, np.int64))
        per_feature_cells[i] = int((share >= min_coverage).sum())

    polygon_labels, mixed_cells = _polygon_cells(
        poly_cell, poly_class, poly_share, poly_feature, len(labels.class_names), min_coverage
    )
    point_labels, merged_points, point_conflicts = _point_cells(point_cell, point_class, point_feature)
    # Points take precedence over polygons in the cells they fall in: they are deliberate picks;
    # cells with disagreeing points are left out altogether.
    cells, y, groups = polygon_labels
    taken = np.isin(cells, point_labels[0]) | np.isin(cells, point_conflicts)
    cells, y, groups = cells[~taken], y[~taken], groups[~taken]
    from_point = np.r_[np.zeros(cells.size, bool), np.ones(point_labels[0].size, bool)]
    cells, y, groups = (np.r_[cells, point_labels[0]], np.r_[y, point_labels[1]], np.r_[groups, point_labels[2]])
    order = np.argsort(cells, kind="stable")
    cells, y, groups, from_point = cells[order], y[order], groups[order], from_point[order]
    dropped = set(outside)
    too_small = [
        int(fid)
        for fid, kind, n in zip(labels.feature_ids, labels.kinds, per_feature_cells)
        if kind == POLYGON and n == 0 and int(fid) not in dropped
    ]

    samples = LabelSamples(
        rows=cells // width,
        cols=cells % width,
        y=y.astype(np.int64),
        groups=groups.astype(np.int64),
        from_point=from_point,
        class_names=labels.class_names,
        shape=(height, width),
        report={},
    )
    samples.report = {
        "label_file": labels.path,
        "class_field": labels.class_field,
        "features_read": len(labels.geometries),
        "features_skipped": labels.skipped,
        "features_outside_extent": len(outside),
        "outside_feature_ids": outside[:50],
        "polygons_below_min_coverage": len(too_small),
        "below_coverage_feature_ids": too_small[:50],
        "points_merged_in_one_cell": merged_points,
        "cells_with_disagreeing_points": int(point_conflicts.size),
        "cells_with_tied_classes": mixed_cells,
        "min_coverage": min_coverage,
        "features_per_class": labels.counts(),
        "cells_per_class": samples.class_counts(),
    }
    if len(samples) == 0:
        grid = _grid_bounds(transform, shape)
        extent = _layer_bounds(labels)
        raise EngineError(
            f"No label of '{labels.path}' falls on the raster: the labels span {_fmt(extent)} and the raster "
            f"{_fmt(grid)} (both in {labels.crs.to_string() if labels.crs else 'the raster CRS'}). "
            "Check that the labels cover the raster and that both have the right CRS"
            + (", or lower min_coverage (polygons smaller than a cell)." if too_small else ".")
        )
    return samples


def _polygon_cells(cells, classes, shares, features, n_classes: int, min_coverage: float):
    """((cells, class, group), tied-cell count) from sparse polygon records.

    A cell takes the class with the largest summed share (capped at 1) when it reaches
    ``min_coverage`` and no other class ties with it; its group is the polygon with the
    largest share of it.
    """
    empty = (np.zeros(0, np.int64),) * 3
    if not cells:
        return empty, 0
    cells, classes = np.concatenate(cells), np.concatenate(classes)
    shares, features = np.concatenate(shares), np.concatenate(features)
    keys, where = np.unique(cells * n_classes + classes, return_inverse=True)
    coverage = np.minimum(np.bincount(where, weights=shares), 1.0)
    key_cell, key_class = keys // n_classes, keys % n_classes
    # Per cell (keys are sorted by cell): the best class and whether another class ties with it.
    unique_cells, first = np.unique(key_cell, return_index=True)
    top = np.maximum.reduceat(coverage, first)
    top_of_key = np.repeat(top, np.diff(np.r_[first, keys.size]))
    winners = coverage >= top_of_key - 1e-6
    n_winners = np.add.reduceat(winners.astype(np.int64), first)
    best_key = np.flatnonzero(winners)[np.unique(key_cell[winners], return_index=True)[1]]
    enough = top >= min_coverage - 1e-6
    labelled = enough & (n_winners == 1)
    # Group: the single polygon holding the largest share of the cell.
    order = np.lexsort((-shares, cells))
    group_cells, group_first = np.unique(cells[order], return_index=True)
    group = features[order][group_first]
    label_cells = unique_cells[labelled]
    result = (label_cells, key_class[best_key][labelled], group[np.searchsorted(group_cells, label_cells)])
    return result, int((enough & (n_winners > 1)).sum())


def _point_cells(cells, classes, features):
    """((cells, class, group) of cells whose points agree, merged-point count, disagreeing cells)."""
    if not cells:
        return (np.zeros(0, np.int64),) * 3, 0, np.zeros(0, np.int64)
    order = np.argsort(np.array(cells, np.int64), kind="stable")
    cells, classes = np.array(cells, np.int64)[order], np.array(classes, np.int64)[order]
    features = np.array(features, np.int64)[order]
    unique_cells, first, counts = np.unique(cells, return_index=True, return_counts=True)
    low, high = np.minimum.reduceat(classes, first), np.maximum.reduceat(classes, first)
    agree = low == high
    merged = int((counts[agree] - 1).sum())
    return (unique_cells[agree], low[agree], features[first][agree]), merged, unique_cells[~agree]


def _grid_bounds(transform: Affine, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    xs, ys = zip(*(transform * (c, r) for c in (0, shape[1]) for r in (0, shape[0])))
    return min(xs), min(ys), max(xs), max(ys)


def _layer_bounds(labels: LabelLayer) -> tuple[float, float, float, float]:
    boxes = np.array([geometry_bounds(g) for g in labels.geometries])
    return boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()


def _fmt(box: tuple[float, float, float, float]) -> str:
    return f"x {box[0]:.1f}..{box[2]:.1f}, y {box[1]:.1f}..{box[3]:.1f}"


def check_trainable(samples: LabelSamples, min_per_class: int = 2) -> None:
    """Clear errors for label sets no classifier can learn from."""
    counts = samples.class_counts()
    present = [name for name, n in counts.items() if n > 0]
    if len(present) < 2:
        only = present[0] if present else "none"
        raise EngineError(
            f"The labels on the raster hold a single class ({only}): a classifier needs at least two "
            "classes. Add samples of other classes."
        )
    thin = [f"{name!r} ({n})" for name, n in counts.items() if 0 < n < min_per_class]
    if thin:
        raise EngineError(
            f"Class {', '.join(thin)} has fewer than {min_per_class} labelled cells on the raster: add "
            "samples for it, or remove it from the labels (one sample cannot be both learned and checked)."
        )


def drop_empty_classes(samples: LabelSamples) -> tuple[LabelSamples, list[str]]:
    """Remove classes with no labelled cell (e.g. all their features lay outside the raster)."""
    counts = np.bincount(samples.y, minlength=len(samples.class_names))
    keep = np.flatnonzero(counts > 0)
    dropped = [samples.class_names[k] for k in np.flatnonzero(counts == 0)]
    if not dropped:
        return samples, []
    new_index = np.full(len(samples.class_names), -1, np.int64)
    new_index[keep] = np.arange(keep.size)
    names = tuple(samples.class_names[k] for k in keep)
    report = dict(samples.report, classes_without_cells=dropped)
    return LabelSamples(
        rows=samples.rows,
        cols=samples.cols,
        y=new_index[samples.y],
        groups=samples.groups,
        from_point=samples.from_point,
        class_names=names,
        shape=samples.shape,
        report=report,
    ), dropped
