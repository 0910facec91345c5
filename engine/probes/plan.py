"""A probe fit (and its application) as a plan: what fit-probe (and change's probe) will read, try and write, made once from the
operation's parameters and checked before any work; the steps (engine.probes.workflow) consume it in order.

Like the mapping path (engine.mapping.plan): nothing below the operation sees its raw parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import EngineError
from engine.io.atomic import check_output_path
from engine.probes.classifiers import ProbeConfig
from engine.probes.features import FeatureSet
from engine.probes.fit import AUTO, FitSettings, check_feature_request
from engine.probes.sources import is_job


@dataclass(frozen=True)
class LabelRequest:
    """The labelled points / polygons, and how they become labelled cells on the embeddings' grid."""

    path: str
    class_field: str = "class"
    layer: str | None = None
    ignore_values: tuple[str, ...] = ()
    min_coverage: float = 0.5  # share of a cell a polygon must cover to label it
    block_size_m: float = 0.0  # side of the point blocks (0: the labels' autocorrelation range)


@dataclass(frozen=True)
class EmbeddingRequest:
    """Where the embeddings come from: a job (computed now) or an embeddings raster."""

    value: str | dict
    model: str | None = None  # checkpoint the raster was computed with
    level: str = AUTO  # an embedding level (engine.mapping.levels), or auto: the job's or the raster's own
    # False when no feature set reads embeddings (checked sets it): a job's encoder is then not run at all
    needed: bool = True


@dataclass(frozen=True)
class FitOutputs:
    probe: str
    report: str | None = None
    classes: str | None = None
    confidence: str | None = None

    def written(self) -> list[str]:
        return [p for p in (self.probe, self.report, self.classes, self.confidence) if p]


@dataclass(frozen=True)
class FitPlan:
    labels: LabelRequest
    embeddings: EmbeddingRequest | None  # None: the caller brings its own features (change's probe)
    fit: FitSettings  # classifier(s), feature sets, folds, buffer, seed, the probe's config
    outputs: FitOutputs
    colors: tuple[str, ...] | None = None
    title: str = "Probe fit report"

    def at_level(self, level: str) -> FitPlan:
        """The plan once the embeddings' level is known: a dense probe normalises each vector first
        (LayerNorm + linear: the segmentation head)."""
        config = dataclasses.replace(self.fit.config, layer_norm=level == "dense")
        return dataclasses.replace(self, fit=dataclasses.replace(self.fit, config=config))


def fit_settings(
    classifier: str = "linear",
    feature_sets: Sequence[str] = ("embeddings",),
    *,
    folds: int = 5,
    buffer: int = 1,
    seed: int = 0,
    learning_curve: bool = True,
    **config,
) -> FitSettings:
    """FitSettings with its probe configuration (``config``: ProbeConfig's other fields); with auto,
    each candidate replaces the configuration's kind."""
    probe = ProbeConfig(kind="linear" if classifier == AUTO else classifier, seed=seed, **config)
    return FitSettings(probe, classifier, tuple(feature_sets), folds, buffer, seed, learning_curve)


def checked(plan: FitPlan) -> FitPlan:
    """Clear errors before any work: outputs writable, classifier and feature sets known, input
    feature sets only with a job. Returns the plan with the embeddings marked as not needed when no
    feature set reads them."""
    for key, path in (
        ("output", plan.outputs.probe),
        ("report", plan.outputs.report),
        ("classes", plan.outputs.classes),
        ("confidence", plan.outputs.confidence),
    ):
        if path:
            check_output_path(path, key)
    check_feature_request(plan.fit.classifier, plan.fit.feature_sets)
    inputs_needed = any(FeatureSet.parse(f).input_parts for f in plan.fit.feature_sets)
    if inputs_needed and plan.embeddings is not None and not is_job(plan.embeddings.value):
        raise EngineError(
            "Raw bands, statistics and indices are read from the job's input rasters: give a job as "
            f"embeddings (not the raster '{plan.embeddings.value}'), or use the feature set 'embeddings'."
        )
    if plan.embeddings is not None:
        needed = any(FeatureSet.parse(f).uses_embeddings for f in plan.fit.feature_sets)
        plan = dataclasses.replace(plan, embeddings=dataclasses.replace(plan.embeddings, needed=needed))
    return plan


@dataclass(frozen=True)
class ApplyPlan:
    """What apply-probe reads and writes: the probe file, the embeddings (a job names its own outputs),
    and the outputs over an embeddings raster."""

    probe: str
    embeddings: EmbeddingRequest
    classes: str | None = None
    confidence: str | None = None
