"""Areas with confidence intervals: draw a reference sample from a class map (``sample-map``),
then estimate the area of every class from the map and the labelled sample (``assess`` in
engine.ops.assess_ops for a sample drawn here, ``area-report`` for any stratified sample).

Each operation turns its parameters into one plan and hands it to its steps:
``sample-map`` to engine.analysis.sample_map (a stratified random, simple random or systematic
sample, written as points with an empty reference field and the design it was drawn with),
``area-report`` to engine.analysis.area_report (each point's map class read from the map, the
stratified estimator of engine.analysis.area).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.analysis import area_report, sample_map
from engine.analysis.class_map import MAP_HELP
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

    def plan(self) -> sample_map.SamplePlan:
        """Everything below this operation reads the plan, never these parameters."""
        accuracies = self.expected_users_accuracy
        return sample_map.checked(
            sample_map.SamplePlan(
                classes=self.classes,
                output=self.output,
                design=self.design,
                total=self.total,
                allocation=self.allocation,
                min_per_class=self.min_per_class,
                target_se=self.target_se,
                target_class=self.target_class,
                expected_users_accuracy=tuple(accuracies) if accuracies is not None else None,
                min_distance=self.min_distance,
                grid_step=self.grid_step,
                reference_field=self.reference_field,
                seed=self.seed,
                dry_run=self.dry_run,
            )
        )


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
    return sample_map.draw_sample(params.plan(), reporter)


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

    def plan(self) -> area_report.AreaPlan:
        """Everything below this operation reads the plan, never these parameters."""
        return area_report.checked(
            area_report.AreaPlan(
                classes=self.classes,
                sample=area_report.SampleRequest(self.reference, self.reference_field, self.layer),
                outputs=area_report.AreaOutputs(self.output, self.html),
            )
        )


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
    return area_report.report_areas(params.plan(), reporter)
