"""Few labels to a map: the fit-probe and apply-probe operations.

Embeddings come from a job or an embeddings raster (engine.probes.sources). A probe remembers
the hash of the encoder whose embeddings it was fitted on and refuses any other.

Levels (engine.mapping.levels): labels are rasterized on the embeddings' own grid, so a
probe is fitted per patch (patch, local, both), per sub-patch (dense: the probe is the
segmentation head, LayerNorm + linear per sub-patch) or per window cell (tile); it
remembers its level and refuses embeddings of another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.probes.apply import apply_probe
from engine.probes.plan import ApplyPlan, EmbeddingRequest, FitOutputs, FitPlan, LabelRequest, checked, fit_settings
from engine.probes.sources import EMBEDDINGS_HELP, EmbeddingOptions
from engine.probes.workflow import run_fit
from engine.runtime.progress import Reporter
from engine.runtime.registry import operation

CLASSIFIER_HELP = (
    "linear (logistic regression), mlp, knn, random_forest, extra_trees, gradient_boosting, or auto: "
    "the soft vote of the best (up to 5) of linear, mlp, knn, random_forest and extra_trees x "
    "feature set by nested spatial cross-validation (every candidate's score in the report)"
)
FEATURES_HELP = (
    "feature set(s): embeddings, raw (every band of every date), stats (per-band temporal statistics), "
    "indices (NDVI, NDWI, NDMI, VV/VH), monthly (per-month cloud-free medians of bands and indices), "
    "or combinations such as embeddings+raw; '@' and a modality reads that input alone (monthly+stats@s2); "
    "several: candidates "
    "to choose from; input features need a job, not an embeddings raster"
)
FOLDS_HELP = "spatial cross-validation folds of whole polygons / point blocks (fewer when there are fewer units)"
BLOCK_HELP = (
    "side in metres of the blocks grouping points for validation (0: the labels' spatial autocorrelation "
    "range, at least twice the points' mean spacing)"
)


# ---------------------------------------------------------------- fit-probe


@dataclass
class FitProbeParams(EmbeddingOptions):
    labels: str = field(
        metadata={
            "help": "vector file of labelled points or polygons (any OGR format)",
            "positional": True,
            "role": "input",
        }
    )
    embeddings: str | dict = field(metadata={"help": EMBEDDINGS_HELP, "positional": True})
    output: str = field(metadata={"help": "probe file to write (.safetensors)", "positional": True})
    class_field: str = field(default="class", metadata={"help": "field holding the class (integer or text)"})
    layer: str | None = field(default=None, metadata={"help": "layer name in the vector file (default: the first)"})
    ignore_values: list[str] = field(
        default_factory=list, metadata={"help": "class values to skip, e.g. 0 for 'no data'"}
    )
    report: str | None = field(default=None, metadata={"help": "HTML fit report to write (metrics, confusion matrix)"})
    classes: str | None = field(
        default=None, metadata={"help": "class map to write over the embeddings' area (GeoTIFF)"}
    )
    confidence: str | None = field(default=None, metadata={"help": "probability of the chosen class (GeoTIFF)"})
    min_coverage: float = field(default=0.5, metadata={"help": "share of a cell a polygon must cover to label it"})
    classifier: str = field(default="linear", metadata={"help": CLASSIFIER_HELP})
    features: list[str] = field(default_factory=lambda: ["embeddings"], metadata={"help": FEATURES_HELP})
    optimizer: str = field(default="lbfgs", metadata={"help": "lbfgs or adam"})
    l2: float = field(default=1e-3, metadata={"help": "L2 penalty on the weights"})
    epochs: int = field(default=200, metadata={"help": "L-BFGS iterations or Adam epochs"})
    class_weighting: bool = field(default=True, metadata={"help": "weight classes by inverse frequency"})
    hidden: int = field(default=128, metadata={"help": "MLP width"})
    neighbours: int = field(default=10, metadata={"help": "kNN: neighbours that vote"})
    trees: int = field(default=200, metadata={"help": "random forest trees / gradient boosting rounds"})
    folds: int = field(default=5, metadata={"help": FOLDS_HELP})
    buffer: int = field(
        default=1, metadata={"help": "cells around each validation cell left out of that fold's training"}
    )
    block_size: float = field(default=0.0, metadata={"help": BLOCK_HELP})
    learning_curve: bool = field(default=True, metadata={"help": "add a learning curve to the report (more fits)"})
    colors: list[str] | None = field(
        default=None,
        metadata={
            "help": "one #rrggbb colour per class, in class order, or "
            "NAME=#rrggbb pairs (a class not named keeps "
            "the default palette)"
        },
    )
    seed: int = field(default=0, metadata={"help": "random seed of the split and the fit"})

    def plan(self) -> FitPlan:
        """Everything below this operation reads the plan, never these parameters."""
        settings = fit_settings(
            self.classifier,
            self.features,
            folds=self.folds,
            buffer=self.buffer,
            seed=self.seed,
            learning_curve=self.learning_curve,
            optimizer=self.optimizer,
            l2=self.l2,
            epochs=self.epochs,
            class_weighting=self.class_weighting,
            hidden=self.hidden,
            neighbours=self.neighbours,
            trees=self.trees,
        )
        return checked(
            FitPlan(
                labels=LabelRequest(
                    self.labels,
                    self.class_field,
                    self.layer,
                    tuple(self.ignore_values),
                    self.min_coverage,
                    self.block_size,
                ),
                embeddings=EmbeddingRequest(self.embeddings, self.model, self.embeddings_level),
                fit=settings,
                outputs=FitOutputs(self.output, self.report, self.classes, self.confidence),
                colors=tuple(self.colors) if self.colors else None,
            )
        )


@operation(
    "fit-probe",
    FitProbeParams,
    outputs=("output", "report", "classes", "confidence"),
    summary="Fit a probe on embeddings under labelled points/polygons; report held-out accuracy.",
)
def fit_probe_operation(params: FitProbeParams, reporter: Reporter) -> dict[str, Any]:
    """Labels (points or polygons, any CRS) are rasterized on the embeddings' grid (patches,
    sub-patches at the dense level, window cells at the tile level); a probe is fitted on the
    features under them (at the dense level the linear probe is LayerNorm + linear, the
    segmentation head). Accuracy is measured by spatial cross-validation on whole polygons /
    point blocks, buffered. Classifiers: linear, mlp, knn, random_forest, extra_trees,
    gradient_boosting, or auto (nested choice over classifier x feature set, saved as the soft
    vote of the best). Feature sets: embeddings, raw bands, temporal statistics, spectral
    indices, combinations (input features need a job). Optionally maps the area with the probe
    ("classes", "confidence")."""
    return run_fit(params.plan(), reporter)


# ---------------------------------------------------------------- apply-probe


@dataclass
class ApplyProbeParams(EmbeddingOptions):
    probe: str = field(metadata={"help": "probe file written by fit-probe", "positional": True, "role": "input"})
    embeddings: str | dict = field(
        metadata={
            "help": "a job JSON file (model, modalities and outputs \"classes\", "
            "\"confidence\", \"probabilities\") or an embeddings raster from 'embed'",
            "positional": True,
        }
    )
    classes: str | None = field(
        default=None, metadata={"help": "class map to write (only with an embeddings raster; a job names its outputs)"}
    )
    confidence: str | None = field(
        default=None, metadata={"help": "confidence raster (only with an embeddings raster)"}
    )

    def plan(self) -> ApplyPlan:
        return ApplyPlan(
            self.probe,
            EmbeddingRequest(self.embeddings, self.model, self.embeddings_level),
            self.classes,
            self.confidence,
        )


@operation(
    "apply-probe",
    ApplyProbeParams,
    outputs=("classes", "confidence", "probabilities"),
    summary="Map classes with a fitted probe: styled class map (colour table, class names).",
)
def apply_probe_operation(params: ApplyProbeParams, reporter: Reporter) -> dict[str, Any]:
    """With a job: tiled inference of the job's model with the probe as its head (outputs named by
    the job). With an embeddings raster: the probe on every pixel. Refuses embeddings of an
    encoder or level other than the probe's. The class map lies on the level's grid: patches,
    sub-patches for a dense probe (no resampling to the input pixels: for 10 m series a
    sub-patch is a pixel), window cells for a tile probe."""
    return apply_probe(params.plan(), reporter)
