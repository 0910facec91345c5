"""``assess``: accuracy and areas with confidence intervals from a class map and the sample drawn
from it by ``sample-map`` and labelled (in the dock's panel or any GIS).

The estimator matches the design the sample layer records (engine.analysis.estimators);
the map must be the very file the sample was drawn from (same sha256).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from engine.analysis.assessment_report import write_assessment_report
from engine.analysis.class_map import MAP_HELP, class_map_info, mapped_pixels
from engine.analysis.estimators import assess, by_map_class
from engine.analysis.sample_layer import read_sample, reference_codes
from engine.contract import sha256_of
from engine.errors import EngineError
from engine.io.atomic import atomic_output, check_output_path
from engine.io.raster import open_raster
from engine.runtime.progress import Reporter
from engine.runtime.registry import operation


@dataclass
class AssessParams:
    classes: str = field(metadata={"help": MAP_HELP, "positional": True})
    sample: str = field(
        metadata={"help": "the labelled sample layer drawn from this map by sample-map (.gpkg)", "positional": True}
    )
    output: str = field(metadata={"help": "area and accuracy table to write (CSV)", "positional": True})
    html: str | None = field(
        default=None,
        metadata={"help": "the assessment report (HTML): design, labelling state, error matrices, area table"},
    )
    reference_field: str = field(default="reference", metadata={"help": "field holding the reference class"})
    layer: str | None = field(default=None, metadata={"help": "layer of the sample file (default: reference_sample)"})


def _ids(ids: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(i)) for i in ids[:limit])
    return shown + (f" and {ids.size - limit} more" if ids.size > limit else "")


def _map_codes_at(ds, info, points, path: str, sample: str) -> np.ndarray:
    """The map class under every point; a clear error for points outside the map or on nodata."""
    cols, rows = ~ds.transform * (points.x, points.y)
    rows, cols = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    outside = (rows < 0) | (rows >= ds.height) | (cols < 0) | (cols >= ds.width)
    if outside.any():
        raise EngineError(
            f"Sample point(s) {_ids(points.sample_id[outside])} of '{sample}' lie outside the map "
            f"'{path}': the sample was not drawn from this map (or was moved). Use the map it was "
            "drawn from, or draw a new sample."
        )
    codes = np.array([int(ds.read(1, window=Window(int(c), int(r), 1, 1))[0, 0]) for r, c in zip(rows, cols)], np.int64)
    blank = (codes < 0) | (codes >= len(info.names))
    if info.nodata is not None:
        blank |= codes == info.nodata
    if blank.any():
        raise EngineError(
            f"Sample point(s) {_ids(points.sample_id[blank])} of '{sample}' lie on nodata (unclassified) "
            f"pixels of '{path}': a sample of this map has none there. Use the map it was drawn from, "
            "or draw a new sample."
        )
    return codes


def write_table(path: str, assessment, area_unit: str) -> None:
    rows = assessment.rows()
    with atomic_output(path, "output") as temp:
        with open(temp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            header = list(rows[0])
            writer.writerow(
                [f"{h} ({area_unit})" if "area" in h and h not in ("area_share", "area_cv") else h for h in header]
            )
            for row in rows:
                writer.writerow(["undefined" if row[h] is None else row[h] for h in header])
            overall_se = assessment.summary()["overall_accuracy_se"]
            writer.writerow(
                [
                    "overall accuracy",
                    assessment.overall_accuracy,
                    "standard error",
                    "undefined" if overall_se is None else overall_se,
                ]
            )


@operation(
    "assess",
    AssessParams,
    outputs=("output", "html"),
    summary="Accuracy (user's, producer's, overall) and class areas with 95% intervals from a labelled "
    "sample drawn by sample-map, with the estimator of its design.",
)
def assess_operation(params: AssessParams, reporter: Reporter) -> dict[str, Any]:
    """Reads the sample layer (its design, its labels) and the map it was drawn from (refused if its
    sha256 differs), checks every point (inside the map, on a classified pixel, labelled with a
    map class), and estimates with the design's estimator: stratified by map class, or simple
    random / systematic post-stratified by map class. Points flagged 'not sure' or 'no data'
    and points not labelled yet are left out and counted. Writes the CSV table (one row per
    class: mapped and estimated area with standard error, 95% interval and coefficient of
    variation, user's and producer's accuracy with standard errors; overall accuracy last) and
    the HTML report with the design, the labelling state and both error matrices."""
    for key in ("output", "html"):
        if getattr(params, key):
            check_output_path(getattr(params, key), key)
    points = read_sample(params.sample, params.reference_field, params.layer)
    design = points.design
    if design is None:
        raise EngineError(
            f"'{params.sample}' records no sampling design (it was not drawn by sample-map): the "
            "estimator cannot be chosen. Draw the sample with sample-map, or use area-report for a "
            "stratified sample by map class."
        )
    checksum = sha256_of(Path(params.classes))
    if checksum != design.map_sha256:
        raise EngineError(
            f"The sample '{params.sample}' was drawn from another map ({design.map_name}, sha256 "
            f"{design.map_sha256[:12]}…) than '{params.classes}' (sha256 {checksum[:12]}…): the map "
            "changed since, or it is another map. Assess the map the sample was drawn from, or draw a "
            "new sample from this one."
        )
    with open_raster(params.classes, "class map") as ds:
        info = class_map_info(ds, params.classes)
        pixels = mapped_pixels(ds, info, reporter)
        reporter.progress(50, "Reading the labelled sample")
        codes = _map_codes_at(ds, info, points, params.classes, params.sample)
    if list(info.names) != list(design.class_names):
        raise EngineError(
            f"The map's classes ({', '.join(info.names)}) differ from those the sample recorded "
            f"({', '.join(design.class_names)}): draw a new sample."
        )
    labelled = points.labelled
    if not labelled.any():
        raise EngineError(
            f"No point of '{params.sample}' is labelled yet (field {params.reference_field!r}): label "
            "them in the dock's assessment panel (or fill the field), then assess."
        )
    unlabelled = [
        f"{name} ({int((codes == h).sum())} point(s), none labelled)"
        for h, name in enumerate(info.names)
        if pixels[h] and not (codes[labelled] == h).any()
    ]
    if unlabelled:
        raise EngineError(
            f"No labelled point of '{params.sample}' lies in the mapped class(es) {', '.join(unlabelled)}: "
            "their part of the map cannot be estimated (a class needs at least 2 labelled points for a "
            "standard error). Label points there, or draw a sample with a larger minimum per class."
        )
    reference = reference_codes(
        [r for r, keep in zip(points.reference, labelled) if keep],
        list(info.names),
        params.sample,
        params.reference_field,
    )
    sample = by_map_class(codes[labelled], reference, design.stratum_pixels, info.names)
    assessment = assess(sample, info.names, pixels, design.design, info.pixel_area)
    response = points.response()
    per_stratum = [
        [name, int((codes == h).sum()), int((codes[labelled] == h).sum())]
        for h, name in enumerate(info.names)
        if pixels[h]
    ]
    write_table(params.output, assessment, info.area_unit)
    design_rows = {
        "type": design.design,
        "strata": design.strata,
        **(
            {"allocation": design.allocation, "minimum per class": design.min_per_class}
            if design.design == "stratified"
            else {}
        ),
        **({"grid step (map units)": design.grid_step} if design.design == "systematic" else {}),
        **({"minimum distance (map units)": design.min_distance} if design.min_distance else {}),
        **({"target": design.target} if design.target else {}),
        "seed": design.seed,
        "map": design.map_name,
        "map sha256": design.map_sha256,
        "points drawn per class": dict(zip(design.class_names, design.sample_sizes)),
    }
    if params.html:
        write_assessment_report(
            params.html,
            assessment,
            info.area_unit,
            design_rows,
            response,
            per_stratum,
            {
                "class map": params.classes,
                "sample": params.sample,
                "reference field": params.reference_field,
                "pixel area": f"{info.pixel_area:g} {info.area_unit}",
            },
        )
    for note in assessment.notes:
        reporter.log(note, "warning")
    left_out = response["total"] - response["labelled"]
    written = ", ".join(p for p in (params.output, params.html) if p)
    reporter.log(
        f"{response['labelled']} of {response['total']} points labelled ({left_out} left out); overall "
        f"accuracy {assessment.overall_accuracy:.3f}; wrote {written}"
    )
    return {
        "output": params.output,
        "html": params.html,
        "area_unit": info.area_unit,
        "response": response,
        "labelled": response["labelled"],
        "points_per_stratum": {row[0]: {"points": row[1], "labelled": row[2]} for row in per_stratum},
        **assessment.summary(),
    }
