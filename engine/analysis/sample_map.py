"""A probability sample of a class map, as a plan and its steps: the sample's size per class
(from a total or a target standard error), then the points drawn and written for labelling.

The sample-map operation builds the SamplePlan once from its parameters and checks it; the steps
read the plan, never the parameters. Designs and allocations: engine.analysis.sampling; the
layer and the design it records: engine.analysis.sample_layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.analysis import sampling
from engine.analysis.class_map import ClassMap, class_map_info, map_blocks, mapped_pixels
from engine.analysis.sample_layer import write_sample
from engine.contract import sha256_of
from engine.errors import EngineError
from engine.io.atomic import check_output_path
from engine.io.raster import open_raster
from engine.runtime.progress import Reporter


@dataclass(frozen=True)
class SamplePlan:
    classes: str  # the class map: its classes are the strata
    output: str  # GeoPackage of points
    design: str = "stratified"  # one of sampling.DESIGNS
    total: int = 500  # without a target standard error
    allocation: str = "proportional"  # stratified: one of sampling.ALLOCATIONS
    min_per_class: int = 50  # stratified: floor of points per mapped class
    target_se: float | None = None  # size for this standard error instead of total
    target_class: str | None = None  # the class whose area share target_se is about (None: overall accuracy)
    expected_users_accuracy: tuple[float, ...] | None = None  # one per map class, in class order
    min_distance: float = 0.0  # random designs, in map units
    grid_step: float | None = None  # systematic, in map units (None: from the size)
    reference_field: str = "reference"
    seed: int = 0
    dry_run: bool = False  # only the size per class; nothing written


def checked(plan: SamplePlan) -> SamplePlan:
    """Clear errors before any work: a GeoPackage output that can be written, a known design and allocation."""
    check_output_path(plan.output, "output")
    if Path(plan.output).suffix.lower() != ".gpkg":
        raise EngineError(f"The sample output '{plan.output}' must be a GeoPackage (.gpkg).")
    if plan.design not in sampling.DESIGNS:
        raise EngineError(f"Unknown design {plan.design!r}: use one of {', '.join(sampling.DESIGNS)}.")
    if plan.allocation not in sampling.ALLOCATIONS:
        raise EngineError(f"Unknown allocation {plan.allocation!r}: use one of {', '.join(sampling.ALLOCATIONS)}.")
    return plan


def _target(plan: SamplePlan, names: list[str]) -> sampling.Target | None:
    if plan.target_se is None:
        return None
    if plan.expected_users_accuracy is None or len(plan.expected_users_accuracy) != len(names):
        raise EngineError(
            f"target_se needs expected_users_accuracy: one value per map class, in the order "
            f"{', '.join(names)} (e.g. 0.8 for each)."
        )
    code = None
    if plan.target_class is not None:
        if plan.target_class not in names:
            raise EngineError(f"target_class {plan.target_class!r} is not a class of the map ({', '.join(names)}).")
        code = names.index(plan.target_class)
    return sampling.Target(plan.target_se, tuple(plan.expected_users_accuracy), code)


@dataclass(frozen=True)
class SampleSize:
    """How many points, and how they are expected to fall per map class."""

    info: ClassMap
    counts: np.ndarray  # mapped pixels per class
    target: sampling.Target | None
    n: int
    planned: np.ndarray  # expected points per class
    sizes: np.ndarray | None = None  # stratified: the allocation
    step: float | None = None  # systematic: grid step in pixels

    @property
    def valid(self) -> int:
        return int(self.counts.sum())


def size_sample(ds, plan: SamplePlan, reporter: Reporter) -> SampleSize:
    """Step 1: the map's pixels per class, the sample's size (total or from the target) and its
    expected spread over the classes; a clear error where a class would get no point."""
    info = class_map_info(ds, plan.classes)
    counts = mapped_pixels(ds, info, reporter)
    valid = int(counts.sum())
    if valid == 0:
        raise EngineError(f"The class map '{plan.classes}' holds no classified pixel: nothing to sample.")
    target = _target(plan, info.names)
    weights = counts / valid
    sd = sampling.stratum_moments(weights, target)[1] if target else None
    if plan.allocation == "neyman" and sd is None:
        if plan.expected_users_accuracy is None:
            raise EngineError("Neyman allocation needs expected_users_accuracy (one per map class).")
        sd = sampling.stratum_moments(weights, sampling.Target(1.0, tuple(plan.expected_users_accuracy)))[1]
    n = sampling.size_for_target(counts, target, plan.design, plan.allocation) if target else plan.total
    if target and n > valid:
        raise EngineError(
            f"{n} points are needed for the target standard error, but the map "
            f"'{plan.classes}' has only {valid} classified pixels: ask for a larger target_se."
        )
    if n > valid:  # a fixed total beyond the map: every pixel is taken (a census), as before
        reporter.log(
            f"The map '{plan.classes}' has only {valid} classified pixels, fewer than the {n} points "
            "asked: every pixel is taken.",
            "warning",
        )
        n = valid
    if plan.design == "stratified":
        sizes = (
            sampling.allocate_for_target(counts, n, plan.allocation, plan.min_per_class, sd)
            if target
            else sampling.allocate(counts, n, plan.allocation, plan.min_per_class, sd)
        )
        return SampleSize(info, counts, target, n, sizes.astype(np.float64), sizes=sizes)
    if plan.design == "simple":
        planned = n * weights
        sampling.check_expected_per_class(
            counts,
            planned,
            info.names,
            "simple random",
            "Use the stratified design (a floor per class), or more points.",
        )
        return SampleSize(info, counts, target, n, planned)
    pixel = abs(ds.transform.a)
    step = plan.grid_step / pixel if plan.grid_step else sampling.systematic_step(valid, n)
    finest = np.sqrt(counts[counts > 0].min() / 2)
    planned = counts / step**2
    sampling.check_expected_per_class(
        counts,
        planned,
        info.names,
        f"systematic (a grid every {step * pixel:g} map units)",
        f"The grid is coarser than the smallest class: use a step of at most "
        f"{finest * pixel:g} map units, or the stratified design.",
    )
    return SampleSize(info, counts, target, n, planned, step=step)


def _mapped(size: SampleSize) -> dict[str, int]:
    return {size.info.names[k]: int(size.counts[k]) for k in range(len(size.counts))}


def planned_summary(plan: SamplePlan, size: SampleSize) -> dict[str, Any]:
    """What a dry run returns: the size per class the dock shows before drawing."""
    names = size.info.names
    return {
        "output": None,
        "dry_run": True,
        "design": plan.design,
        "target_size": size.n if size.target else None,
        "planned_per_class": {names[k]: round(float(size.planned[k]), 1) for k in range(len(names)) if size.counts[k]},
        "samples": round(float(size.planned.sum()), 1),
        "mapped_pixels": _mapped(size),
    }


def draw_points(ds, plan: SamplePlan, size: SampleSize) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 2: the points as (rows, cols, map class codes)."""
    info = size.info
    blocks = map_blocks(ds, info)
    pixel = (ds.transform.a, ds.transform.e)
    if plan.design == "stratified":
        names = [f"map class {c!r}" for c in info.names]
        return sampling.draw_random(blocks, size.counts, size.sizes, plan.seed, plan.min_distance, pixel, names)
    if plan.design == "simple":
        return sampling.draw_random(
            blocks,
            [size.valid],
            [size.n],
            plan.seed,
            plan.min_distance,
            pixel,
            ["the map"],
            strata_of=lambda c: np.where(c >= 0, 0, -1),
        )
    return sampling.draw_systematic(blocks, (ds.height, ds.width), size.step, plan.seed)


def recorded_design(ds, plan: SamplePlan, size: SampleSize, drawn: np.ndarray) -> sampling.SampleDesign:
    """What the layer records about its draw: assess picks its estimator from it and refuses a changed map."""
    info, target, stratified = size.info, size.target, plan.design == "stratified"
    return sampling.SampleDesign(
        design=plan.design,
        class_names=info.names,
        stratum_pixels=size.counts.tolist(),
        sample_sizes=drawn.tolist(),
        seed=plan.seed,
        map_sha256=sha256_of(Path(plan.classes)),
        map_name=Path(plan.classes).name,
        allocation=plan.allocation if stratified else None,
        min_per_class=plan.min_per_class if stratified else 0,
        min_distance=plan.min_distance,
        grid_step=float(size.step * abs(ds.transform.a)) if size.step else 0.0,
        target=(
            {
                "standard_error": target.standard_error,
                "of": plan.target_class or "overall accuracy",
                "expected_users_accuracy": list(target.users_accuracy),
                "size": size.n,
            }
            if target
            else None
        ),
        pixel_area=info.pixel_area,
        area_unit=info.area_unit,
    )


def draw_sample(plan: SamplePlan, reporter: Reporter) -> dict[str, Any]:
    """sample-map's steps in order: the size per class, then (unless a dry run) the points drawn and
    written with the design they were drawn with. Returns the summary."""
    with open_raster(plan.classes, "class map") as ds:
        size = size_sample(ds, plan, reporter)
        if plan.dry_run:
            return planned_summary(plan, size)
        reporter.progress(50, "Drawing the sample")
        rows, cols, codes = draw_points(ds, plan, size)
        drawn = np.bincount(codes, minlength=len(size.info.names))
        reporter.progress(80, "Writing the sample")
        design = recorded_design(ds, plan, size, drawn)
        xs, ys = ds.transform * (cols + 0.5, rows + 0.5)
        write_sample(
            plan.output, size.info.crs.to_wkt(), np.asarray(xs), np.asarray(ys), codes, design, plan.reference_field
        )
    names = size.info.names
    per_class = {names[k]: int(drawn[k]) for k in range(len(names)) if size.counts[k]}
    reporter.log(
        f"Wrote {int(drawn.sum())} sample points ({plan.design}) to {plan.output} ({per_class}); "
        f"label them (the dock's assessment panel, or fill '{plan.reference_field}'), then run assess."
    )
    return {
        "output": plan.output,
        "samples": int(drawn.sum()),
        "samples_per_class": per_class,
        "design": plan.design,
        "target_size": size.n if size.target else None,
        "reference_field": plan.reference_field,
        "mapped_pixels": _mapped(size),
    }
