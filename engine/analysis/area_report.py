"""The area report as a plan and its steps: the map read (its classes are the strata, its pixels
per class their weights), the reference sample read under it, the stratified estimate
(engine.analysis.area), the outputs written.

The area-report operation builds the AreaPlan once from its parameters and checks it; the steps
below read the plan, never the parameters (as engine.probes.plan and engine.mapping.plan). The
map is read block by block: memory does not grow with its size.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rasterio.windows import Window

from engine.analysis.area import AreaEstimate, stratified_estimate
from engine.analysis.class_map import ClassMap, class_map_info, mapped_pixels
from engine.analysis.sample_layer import reference_codes
from engine.errors import EngineError
from engine.io.atomic import atomic_output, check_output_path
from engine.io.raster import open_raster
from engine.probes.labels import POINT, read_labels
from engine.probes.report import write_area_report
from engine.runtime.progress import Reporter


@dataclass(frozen=True)
class SampleRequest:
    """The reference sample: points, each with its true class (a map class name or code) in a field."""

    path: str
    reference_field: str = "reference"
    layer: str | None = None  # default: the file's first layer


@dataclass(frozen=True)
class AreaOutputs:
    table: str  # CSV
    html: str | None = None

    def written(self) -> list[str]:
        return [p for p in (self.table, self.html) if p]


@dataclass(frozen=True)
class AreaPlan:
    classes: str  # the class map: its classes are the strata
    sample: SampleRequest
    outputs: AreaOutputs


def checked(plan: AreaPlan) -> AreaPlan:
    """Clear errors before any work: the outputs can be written."""
    check_output_path(plan.outputs.table, "output")
    if plan.outputs.html:
        check_output_path(plan.outputs.html, "html")
    return plan


@dataclass(frozen=True)
class Strata:
    """The map's classes (the strata) and their mapped pixels (the strata's weights)."""

    info: ClassMap
    pixels: np.ndarray


@dataclass(frozen=True)
class SampleCounts:
    """The sample's error matrix (rows: map class under each point, columns: reference class) and
    the points left out, by reason."""

    matrix: np.ndarray
    left_out: dict[str, int] = field(default_factory=dict)


def read_strata(ds, plan: AreaPlan, reporter: Reporter) -> Strata:
    """Step 1: the map's classes and the pixels mapped to each."""
    info = class_map_info(ds, plan.classes)
    return Strata(info, mapped_pixels(ds, info, reporter))


def sample_counts(ds, strata: Strata, sample: SampleRequest, reporter: Reporter) -> SampleCounts:
    """Step 2: each reference point's map class read under it, against its reference class."""
    info = strata.info
    labels = read_labels(sample.path, sample.reference_field, ds.crs, sample.layer)
    if any(kind != POINT for kind in labels.kinds):
        raise EngineError(f"The reference sample '{sample.path}' must hold points (one per sample), not polygons.")
    codes = reference_codes(list(labels.class_names), info.names, sample.path, sample.reference_field)
    xs = np.array([g["coordinates"][0] if g["type"] == "Point" else g["coordinates"][0][0] for g in labels.geometries])
    ys = np.array([g["coordinates"][1] if g["type"] == "Point" else g["coordinates"][0][1] for g in labels.geometries])
    cols, rows = ~ds.transform * (xs, ys)
    rows, cols = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    inside = (rows >= 0) & (rows < ds.height) & (cols >= 0) & (cols < ds.width)
    map_class = np.full(rows.size, -1, np.int64)
    for i in np.flatnonzero(inside):
        map_class[i] = int(ds.read(1, window=Window(int(cols[i]), int(rows[i]), 1, 1))[0, 0])
    valid = inside & (map_class >= 0) & (map_class < len(info.names))
    if info.nodata is not None:
        valid &= map_class != info.nodata
    left_out = {
        "outside the map": int((~inside).sum()),
        "on unclassified pixels": int((inside & ~valid).sum()),
        **{f"skipped ({k})": v for k, v in labels.skipped.items()},
    }
    if not valid.any():
        raise EngineError(
            f"No reference point of '{sample.path}' lies on a classified pixel of the map: check "
            "that both cover the same area."
        )
    matrix = np.zeros((len(info.names),) * 2, np.int64)
    np.add.at(matrix, (map_class[valid], codes[labels.codes][valid]), 1)
    if left_out["outside the map"] or left_out["on unclassified pixels"]:
        reporter.log(f"Reference points left out: {left_out}", "warning")
    return SampleCounts(matrix, {k: v for k, v in left_out.items() if v})


def write_area_csv(path: str, estimate: AreaEstimate, area_unit: str) -> None:
    rows = estimate.rows()
    with atomic_output(path, "output") as temp:
        with open(temp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            header = list(rows[0])
            writer.writerow(
                [
                    f"{h} ({area_unit})" if "area" in h and "accuracy" not in h and h != "area_share" else h
                    for h in header
                ]
            )
            for row in rows:
                writer.writerow([row[h] for h in header])
            writer.writerow(["overall accuracy", estimate.overall_accuracy, "standard error", estimate.overall_se])


def write_outputs(plan: AreaPlan, estimate: AreaEstimate, strata: Strata, counts: SampleCounts) -> None:
    """Step 4: the CSV table, and the same table as an HTML report with what it was made from."""
    info = strata.info
    write_area_csv(plan.outputs.table, estimate, info.area_unit)
    if plan.outputs.html:
        write_area_report(
            plan.outputs.html,
            estimate,
            info.area_unit,
            {
                "class map": plan.classes,
                "reference sample": plan.sample.path,
                "reference field": plan.sample.reference_field,
                "pixel area": f"{info.pixel_area:g} {info.area_unit}",
                **({"points left out": counts.left_out} if counts.left_out else {}),
            },
        )


def report_areas(plan: AreaPlan, reporter: Reporter) -> dict[str, Any]:
    """area-report's steps in order: strata from the map, the sample's error matrix, the stratified
    estimate (step 3), the outputs. Returns the summary."""
    with open_raster(plan.classes, "class map") as ds:
        strata = read_strata(ds, plan, reporter)
        reporter.progress(50, "Reading the reference sample")
        counts = sample_counts(ds, strata, plan.sample, reporter)
    info = strata.info
    estimate = stratified_estimate(counts.matrix, strata.pixels, info.names, info.pixel_area)
    write_outputs(plan, estimate, strata, counts)
    for caveat in estimate.caveats():
        reporter.log(caveat, "warning")
    reporter.log(
        f"Overall accuracy {estimate.overall_accuracy:.3f} ± {estimate.overall_se:.3f} (SE); wrote "
        + ", ".join(plan.outputs.written())
    )
    return {
        "output": plan.outputs.table,
        "html": plan.outputs.html,
        "area_unit": info.area_unit,
        "points_left_out": counts.left_out,
        **estimate.summary(),
    }
