"""Areas with confidence intervals: draw a reference sample from a class map (``sample-map``),
then estimate the area of every class from the map and the labelled sample (``assess`` in
engine.ops.assess_ops for a sample drawn here, ``area-report`` for any stratified sample).

``sample-map`` draws a stratified random (by map class), simple random or systematic sample
(engine.analysis.sampling) and writes it as points with an empty reference field and the
design it was drawn with (engine.analysis.sample_layer). ``area-report`` reads any point
layer with a reference field, takes each point's map class from the map itself, and uses
the stratified estimator of engine.analysis.area. The map is read block by block: memory does not
grow with its size.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from engine.analysis.area import stratified_estimate
from engine.analysis.class_map import MAP_HELP, ClassMap, class_map_info, map_blocks, mapped_pixels
from engine.contract import sha256_of
from engine.errors import EngineError
from engine.io.atomic import atomic_output, check_output_path
from engine.io.raster import open_raster
from engine.probes.labels import POINT, read_labels
from engine.probes.report import write_area_report
from engine.runtime.progress import Reporter
from engine.runtime.registry import operation

# ---------------------------------------------------------------- sample-map


@dataclass
class SampleMapParams:
    classes: str = field(metadata={"help": MAP_HELP, "positional": True})
    output: str = field(
        metadata={"help": "points to write (GeoPackage .gpkg), one per sample, for labelling", "positional": True}
    )
    design: str = field(
        default="stratified",
        metadata={
            "help": "stratified (by map class), simple (random) or systematic (a regular grid with a random offset)"
        },
    )
    total: int = field(default=500, metadata={"help": "number of sample points (without a target standard error)"})
    allocation: str = field(
        default="proportional",
        metadata={
            "help": "stratified: proportional (to the mapped area), equal, or neyman (optimal for the target; needs "
            "expected_users_accuracy)"
        },
    )
    min_per_class: int = field(
        default=50, metadata={"help": "stratified: floor of points per mapped class (good practice: 50 or more)"}
    )
    target_se: float | None = field(
        default=None,
        metadata={
            "help": "size the sample for this standard error of the overall accuracy, or of target_class's area "
            "share (0..1); replaces total"
        },
    )
    target_class: str | None = field(
        default=None, metadata={"help": "the class whose area share target_se is about (default: the overall accuracy)"}
    )
    expected_users_accuracy: list[float] | None = field(
        default=None,
        metadata={"help": "expected user's accuracy of every map class, in class order (for target_se and neyman)"},
    )
    min_distance: float = field(
        default=0.0, metadata={"help": "random designs: minimum distance between points, in map units (0: none)"}
    )
    grid_step: float | None = field(
        default=None,
        metadata={"help": "systematic: distance between grid points in map units (default: from total or target_se)"},
    )
    reference_field: str = field(
        default="reference", metadata={"help": "empty text field to fill in with the true class"}
    )
    seed: int = field(default=0, metadata={"help": "random seed of the draw"})
    dry_run: bool = field(
        default=False,
        metadata={"help": "only compute the size per class (what the dock shows before drawing); write nothing"},
    )


def _target(params: SampleMapParams, names: list[str]):
    from engine.analysis.sampling import Target

    if params.target_se is None:
        return None
    if params.expected_users_accuracy is None or len(params.expected_users_accuracy) != len(names):
        raise EngineError(
            f"target_se needs expected_users_accuracy: one value per map class, in the order "
            f"{', '.join(names)} (e.g. 0.8 for each)."
        )
    code = None
    if params.target_class is not None:
        if params.target_class not in names:
            raise EngineError(f"target_class {params.target_class!r} is not a class of the map ({', '.join(names)}).")
        code = names.index(params.target_class)
    return Target(params.target_se, tuple(params.expected_users_accuracy), code)


@operation(
    "sample-map",
    SampleMapParams,
    outputs=("output",),
    summary="Draw a probability sample of points from a class map (stratified, simple random or systematic), "
    "ready to label for assess.",
)
def sample_map_operation(params: SampleMapParams, reporter: Reporter) -> dict[str, Any]:
    """Points at pixel centres, for the accuracy assessment of the map. stratified: the map's
    classes are the strata, each gets its allocation's share (with a floor per class), drawn
    uniformly within it; simple: uniformly among classified pixels; systematic: a regular grid
    with a random offset. The size is total, or comes from target_se and the expected user's
    accuracies (Olofsson et al. 2014). The layer records its design (type, strata, allocation,
    seed, the map's sha256) so that assess uses the matching estimator and refuses a changed
    map; its fields sample_id, stratum, map_code, map_class, an empty reference field, flag and
    comment are filled in the dock's labelling panel or any GIS."""
    from engine.analysis import sampling
    from engine.analysis.sample_layer import write_sample

    check_output_path(params.output, "output")
    if Path(params.output).suffix.lower() != ".gpkg":
        raise EngineError(f"The sample output '{params.output}' must be a GeoPackage (.gpkg).")
    if params.design not in sampling.DESIGNS:
        raise EngineError(f"Unknown design {params.design!r}: use one of {', '.join(sampling.DESIGNS)}.")
    if params.allocation not in sampling.ALLOCATIONS:
        raise EngineError(f"Unknown allocation {params.allocation!r}: use one of {', '.join(sampling.ALLOCATIONS)}.")
    with open_raster(params.classes, "class map") as ds:
        info = class_map_info(ds, params.classes)
        counts = mapped_pixels(ds, info, reporter)
        valid = int(counts.sum())
        if valid == 0:
            raise EngineError(f"The class map '{params.classes}' holds no classified pixel: nothing to sample.")
        target = _target(params, info.names)
        weights = counts / valid
        sd = sampling.stratum_moments(weights, target)[1] if target else None
        if params.allocation == "neyman" and sd is None:
            if params.expected_users_accuracy is None:
                raise EngineError("Neyman allocation needs expected_users_accuracy (one per map class).")
            sd = sampling.stratum_moments(weights, sampling.Target(1.0, tuple(params.expected_users_accuracy)))[1]
        n = sampling.size_for_target(counts, target, params.design, params.allocation) if target else params.total
        if target and n > valid:
            raise EngineError(
                f"{n} points are needed for the target standard error, but the map "
                f"'{params.classes}' has only {valid} classified pixels: ask for a larger target_se."
            )
        if n > valid:  # a fixed total beyond the map: every pixel is taken (a census), as before
            reporter.log(
                f"The map '{params.classes}' has only {valid} classified pixels, fewer than the {n} points "
                "asked: every pixel is taken.",
                "warning",
            )
            n = valid
        blocks = map_blocks(ds, info)
        pixel = (ds.transform.a, ds.transform.e)
        step = None
        names = [f"map class {c!r}" for c in info.names]
        if params.design == "stratified":
            sizes = (
                sampling.allocate_for_target(counts, n, params.allocation, params.min_per_class, sd)
                if target
                else sampling.allocate(counts, n, params.allocation, params.min_per_class, sd)
            )
            planned = sizes.astype(np.float64)
        elif params.design == "simple":
            planned = n * weights
            sampling.check_expected_per_class(
                counts,
                planned,
                info.names,
                "simple random",
                "Use the stratified design (a floor per class), or more points.",
            )
        else:
            step = params.grid_step / abs(ds.transform.a) if params.grid_step else sampling.systematic_step(valid, n)
            finest = np.sqrt(counts[counts > 0].min() / 2)
            planned = counts / step**2
            sampling.check_expected_per_class(
                counts,
                planned,
                info.names,
                f"systematic (a grid every {step * abs(ds.transform.a):g} map units)",
                f"The grid is coarser than the smallest class: use a step of at most "
                f"{finest * abs(ds.transform.a):g} map units, or the stratified design.",
            )
        if params.dry_run:
            per_class = {info.names[k]: round(float(planned[k]), 1) for k in range(len(info.names)) if counts[k]}
            return {
                "output": None,
                "dry_run": True,
                "design": params.design,
                "target_size": n if target else None,
                "planned_per_class": per_class,
                "samples": round(float(planned.sum()), 1),
                "mapped_pixels": {info.names[k]: int(counts[k]) for k in range(len(counts))},
            }
        reporter.progress(50, "Drawing the sample")
        if params.design == "stratified":
            rows, cols, codes = sampling.draw_random(
                blocks, counts, sizes, params.seed, params.min_distance, pixel, names
            )
        elif params.design == "simple":
            rows, cols, codes = sampling.draw_random(
                blocks,
                [valid],
                [n],
                params.seed,
                params.min_distance,
                pixel,
                ["the map"],
                strata_of=lambda c: np.where(c >= 0, 0, -1),
            )
        else:
            rows, cols, codes = sampling.draw_systematic(blocks, (ds.height, ds.width), step, params.seed)
        sizes_drawn = np.bincount(codes, minlength=len(info.names))
        reporter.progress(80, "Writing the sample")
        design = sampling.SampleDesign(
            design=params.design,
            class_names=info.names,
            stratum_pixels=counts.tolist(),
            sample_sizes=sizes_drawn.tolist(),
            seed=params.seed,
            map_sha256=sha256_of(Path(params.classes)),
            map_name=Path(params.classes).name,
            allocation=params.allocation if params.design == "stratified" else None,
            min_per_class=params.min_per_class if params.design == "stratified" else 0,
            min_distance=params.min_distance,
            grid_step=float(step * abs(ds.transform.a)) if step else 0.0,
            target=(
                {
                    "standard_error": target.standard_error,
                    "of": params.target_class or "overall accuracy",
                    "expected_users_accuracy": list(target.users_accuracy),
                    "size": n,
                }
                if target
                else None
            ),
            pixel_area=info.pixel_area,
            area_unit=info.area_unit,
        )
        xs, ys = ds.transform * (cols + 0.5, rows + 0.5)
        write_sample(
            params.output, info.crs.to_wkt(), np.asarray(xs), np.asarray(ys), codes, design, params.reference_field
        )
    per_class = {info.names[k]: int(sizes_drawn[k]) for k in range(len(info.names)) if counts[k]}
    reporter.log(
        f"Wrote {int(sizes_drawn.sum())} sample points ({params.design}) to {params.output} ({per_class}); "
        f"label them (the dock's assessment panel, or fill '{params.reference_field}'), then run assess."
    )
    return {
        "output": params.output,
        "samples": int(sizes_drawn.sum()),
        "samples_per_class": per_class,
        "design": params.design,
        "target_size": n if target else None,
        "reference_field": params.reference_field,
        "mapped_pixels": {info.names[k]: int(counts[k]) for k in range(len(counts))},
    }


# ---------------------------------------------------------------- area-report


@dataclass
class AreaReportParams:
    classes: str = field(metadata={"help": MAP_HELP, "positional": True})
    reference: str = field(
        metadata={"help": "reference sample points (e.g. from sample-map) with the true class", "positional": True}
    )
    output: str = field(metadata={"help": "area table to write (CSV)", "positional": True})
    html: str | None = field(default=None, metadata={"help": "the same table as an HTML report"})
    reference_field: str = field(
        default="reference", metadata={"help": "field of the reference layer holding the true class"}
    )
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
            "reference field."
        )
    return mapping


def sample_counts(
    ds, info: ClassMap, reference_path: str, reference_field: str, layer: str | None, reporter: Reporter
) -> tuple[np.ndarray, dict[str, int]]:
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
    skipped = {
        "outside the map": int((~inside).sum()),
        "on unclassified pixels": int((inside & ~valid).sum()),
        **{f"skipped ({k})": v for k, v in labels.skipped.items()},
    }
    if not valid.any():
        raise EngineError(
            f"No reference point of '{reference_path}' lies on a classified pixel of the map: check "
            "that both cover the same area."
        )
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
            writer.writerow(
                [
                    f"{h} ({area_unit})" if "area" in h and "accuracy" not in h and h != "area_share" else h
                    for h in header
                ]
            )
            for row in rows:
                writer.writerow([row[h] for h in header])
            writer.writerow(["overall accuracy", estimate.overall_accuracy, "standard error", estimate.overall_se])


@operation(
    "area-report",
    AreaReportParams,
    outputs=("output", "html"),
    summary="Area per class with 95% confidence intervals, user's/producer's accuracy (Olofsson et al. 2014).",
)
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
        write_area_report(
            params.html,
            estimate,
            info.area_unit,
            {
                "class map": params.classes,
                "reference sample": params.reference,
                "reference field": params.reference_field,
                "pixel area": f"{info.pixel_area:g} {info.area_unit}",
                **({"points left out": skipped} if skipped else {}),
            },
        )
    for caveat in estimate.caveats():
        reporter.log(caveat, "warning")
    reporter.log(
        f"Overall accuracy {estimate.overall_accuracy:.3f} ± {estimate.overall_se:.3f} (SE); wrote "
        + ", ".join(p for p in (params.output, params.html) if p)
    )
    return {
        "output": params.output,
        "html": params.html,
        "area_unit": info.area_unit,
        "points_left_out": skipped,
        **estimate.summary(),
    }
