"""The fit workflow shared by fit-probe, change's probe, the demo and learn-area, as steps that consume a
FitPlan (engine.probes.plan) in order: open the embeddings, label the cells, then fit_and_report (feature
matrices, validation and choice by engine.probes.fit, the saved probe, the report, the summary);
run_fit runs them all (and maps the area when the plan names a class map)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from engine.errors import EngineError
from engine.io.grid import Grid
from engine.io.raster import open_raster
from engine.io.writers import parse_color
from engine.probes.apply import map_embeddings, mapped_area_html
from engine.probes.features import FeatureSet, combine, read_inputs_at
from engine.probes.fit import check_feature_request, fit_honestly
from engine.probes.plan import EmbeddingRequest, FitPlan, LabelRequest
from engine.probes.probe_file import ProbeMetadata, class_colors, save_probe
from engine.probes.report import candidates_html, learning_curve_html, write_fit_report
from engine.probes.sources import (
    EmbeddingSource,
    LabelledEmbeddings,
    embedding_source,
    labelled_embeddings,
    raster_level,
)
from engine.runtime.preload import preload
from engine.runtime.progress import Reporter
from engine.wording import article, plural


@contextlib.contextmanager
def open_embeddings(request: EmbeddingRequest, reporter: Reporter) -> Iterator[tuple[EmbeddingSource, Any]]:
    """Step 1: the embeddings (computed now for a job) and their raster, open. What the fit and its
    report import later (the optimizers' torch._dynamo, matplotlib) loads meanwhile."""
    preload("torch._dynamo", "matplotlib.figure")
    with (
        embedding_source(request.value, request.model, reporter, level=request.level, needed=request.needed) as source,
        open_raster(source.path, "embeddings") as ds,
    ):
        yield source, ds


def label_cells(
    ds, labels: LabelRequest, reporter: Reporter, features: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
) -> LabelledEmbeddings:
    """Step 2: the labels read and rasterised on the embeddings' grid, with the features under them."""
    return labelled_embeddings(
        ds,
        labels.path,
        labels.class_field,
        labels.layer,
        labels.ignore_values,
        labels.min_coverage,
        labels.block_size_m,
        reporter,
        features,
    )


class FeatureRecords(dict):
    """Feature set name -> its engine.probes.features.combine record, made on first use for sets that were
    not requested (the union a soft vote reads)."""

    def __init__(self, data: LabelledEmbeddings, values):
        super().__init__()
        self.data, self.values = data, values

    def __missing__(self, name: str) -> dict:
        self[name] = combine(self.data.x, self.values or [], FeatureSet.parse(name))[1]
        return self[name]

    def columns(self, name: str) -> list[str]:
        return self[name]["columns"]


def feature_matrices(
    data: LabelledEmbeddings, feature_sets: tuple[str, ...], source: EmbeddingSource, ds, reporter: Reporter
) -> tuple[LabelledEmbeddings, dict[str, np.ndarray], FeatureRecords]:
    """Every requested feature set over the labelled cells (name -> matrix, name -> record); cells
    where the inputs have no valid date are left out. Without ``ds`` (the change probe's features),
    only the embeddings."""
    if ds is None:
        records = FeatureRecords(data, None)
        records["embeddings"] = {"set": "embeddings"}  # one set: never a vote, no columns needed
        return data, {"embeddings": data.x}, records
    sets = [FeatureSet.parse(name) for name in feature_sets]
    values = None
    if any(fs.input_parts for fs in sets):
        values, ok = read_inputs_at(source.inputs, Grid.of(ds), data.samples.rows, data.samples.cols)
        if not ok.all():
            reporter.log(
                f"{int((~ok).sum())} labelled cells have no valid input value on any date and are left out.", "warning"
            )
            data = data.subset(ok)
            values = [dataclasses.replace(v, values=v.values[ok]) for v in values]
    matrices, records = {}, FeatureRecords(data, values)
    for fs in sets:
        matrices[fs.name], records[fs.name] = combine(data.x, values or [], fs)
    return data, matrices, records


def _notes(data: LabelledEmbeddings, outcome, labels: LabelRequest) -> list[str]:
    samples, report = data.samples, data.samples.report
    notes = [
        f"Validation: {outcome.validation_rule}.",
        f"The saved probe ({outcome.candidate.name}) is refitted on all {plural(len(samples), 'labelled cell')}; the "
        "figures come from probes fitted without the held-out cells of each fold.",
    ] + outcome.notes
    if report.get("features_outside_extent"):
        outside = report["features_outside_extent"]
        notes.append(
            f"{plural(outside, 'feature')} {'lies' if outside == 1 else 'lie'} outside the raster and "
            f"{'was' if outside == 1 else 'were'} dropped."
        )
    if report.get("polygons_below_min_coverage"):
        thin = report["polygons_below_min_coverage"]
        notes.append(
            f"{plural(thin, 'polygon')} {'covers' if thin == 1 else 'cover'} no cell by "
            f"{labels.min_coverage:.0%} on {'its' if thin == 1 else 'their'} own."
        )
    if data.dropped_nodata:
        dropped = data.dropped_nodata
        notes.append(
            f"{plural(dropped, 'labelled cell')} had no embedding or input value (nodata) and "
            f"{'was' if dropped == 1 else 'were'} left out."
        )
    return notes


def fit_and_report(
    plan: FitPlan,
    data: LabelledEmbeddings,
    source: EmbeddingSource,
    level: str,
    reporter: Reporter,
    ds=None,
    after_fit=None,
):
    """Step 3: validate (and choose) with engine.probes.fit, save the probe fitted on every label, write the
    report; returns (probe, metadata, summary). ``ds``: the embeddings raster, needed for feature
    sets other than the embeddings. ``after_fit(probe, metadata)``, when given, runs before the
    report is written and returns further report sections (the map's areas)."""
    settings, outputs = plan.fit, plan.outputs
    config = settings.config
    check_feature_request(settings.classifier, settings.feature_sets)
    data, matrices, records = feature_matrices(data, settings.feature_sets, source, ds, reporter)
    samples = data.samples
    names = list(samples.class_names)
    colors = class_colors(names, plan.colors)
    if len(colors) != len(names):
        raise EngineError(f"{len(colors)} colours for {len(names)} classes ({', '.join(names)}): give one per class.")
    for c in colors:
        parse_color(c)
    reporter.log(
        f"Fitting {article(settings.classifier)} probe on {plural(len(samples), 'labelled cell')}, "
        f"{plural(len(names), 'class')}, features: {', '.join(matrices)}"
    )
    outcome = fit_honestly(
        matrices,
        samples.y,
        data.units,
        samples.rows,
        samples.cols,
        names,
        settings,
        data.rule,
        reporter=reporter,
        columns=records.columns,
    )
    metrics, report, chosen = outcome.metrics(names), samples.report, outcome.candidate
    validation = {
        "rule": outcome.validation_rule,
        "classifier_requested": settings.classifier,
        "chosen": chosen.name,
        "candidates": outcome.selection.table() if outcome.selection else [],
        "nested": outcome.selection.nested.summary() if outcome.selection else None,
        "learning_curve": outcome.curve or [],
    }
    metadata = ProbeMetadata(
        class_names=names,
        colors=colors,
        level=level,
        encoder_hash=source.encoder_hash,
        encoder=source.encoder,
        config={**dataclasses.asdict(config), "kind": chosen.classifier},
        metrics={
            k: metrics[k]
            for k in ("overall_accuracy", "macro_f1", "n_samples", "per_class", "confusion_matrix", "folds")
        }
        if metrics
        else {},
        labels={k: v for k, v in report.items() if not k.endswith("_ids")},
        features=records[chosen.features],
        validation=validation,
    )
    save_probe(outputs.probe, outcome.classifier, metadata)
    counts = {
        "features": report["features_per_class"],
        "labelled cells": dict(zip(names, np.bincount(samples.y, minlength=len(names)).tolist())),
    }
    if outcome.folds is not None:
        tested = outcome.folds.test_fold >= 0
        counts["cells ever held out"] = dict(zip(names, np.bincount(samples.y[tested], minlength=len(names)).tolist()))
    extra = after_fit(outcome.classifier, metadata) if after_fit is not None else []
    if outputs.report:
        reporter.log(f"Writing the report {outputs.report}")
        table = {
            "labels": plan.labels.path,
            "class field": plan.labels.class_field,
            "embeddings": str(source.path),
            # The hash probes are matched on: of the encoder's tensors, so it differs from the file's sha256.
            "encoder": source.encoder.get("checkpoint", ""),
            "encoder tensors sha256 (not the file's)": source.encoder_hash,
            "embedding level": level,
            "feature sets": ", ".join(matrices),
            "min coverage": plan.labels.min_coverage,
            "folds": settings.folds,
            "buffer (cells)": settings.buffer,
            "point block (cells)": report["point_block_cells"],
            **{f"probe {k}": v for k, v in metadata.config.items()},
        }
        sections = []
        if outcome.selection:
            sections.append(("Candidates", candidates_html(validation["candidates"], validation["nested"])))
        if outcome.curve:
            sections.append(("Learning curve", learning_curve_html(outcome.curve)))
        write_fit_report(
            outputs.report,
            title=plan.title,
            metrics=metrics,
            class_names=names,
            colors=colors,
            counts=counts,
            settings=table,
            notes=_notes(data, outcome, plan.labels),
            sections=sections + extra,
        )
    if metrics:
        spread = metrics["folds"]["macro_f1"]
        reporter.log(
            f"Validation ({chosen.name}): overall accuracy {metrics['overall_accuracy']:.3f}, macro-F1 "
            f"{metrics['macro_f1']:.3f} on {metrics['n_samples']} held-out cells; per fold macro-F1 "
            f"{spread['mean']:.3f} ± {spread['std']:.3f}"
        )
    summary = {
        "output": str(outputs.probe),
        "report": str(outputs.report) if outputs.report else None,
        "class_names": names,
        "classifier": chosen.classifier,
        "features": chosen.features,
        "chosen": chosen.name,
        "overall_accuracy": metrics["overall_accuracy"] if metrics else None,
        "macro_f1": metrics["macro_f1"] if metrics else None,
        "fold_scores": metrics["folds"] if metrics else None,
        "validation_cells": metrics["n_samples"] if metrics else 0,
        "validation_rule": outcome.validation_rule,
        "per_class_f1": {n: metrics["per_class"][n]["f1"] for n in names} if metrics else {},
        "unvalidated_classes": [names[k] for k in outcome.folds.unvalidated] if outcome.folds else names,
        "candidates": validation["candidates"],
        "nested_estimate": validation["nested"],
        "learning_curve": outcome.curve,
        "counts": counts,
        "labels": metadata.labels,
    }
    return outcome.classifier, metadata, summary


def run_fit(plan: FitPlan, reporter: Reporter) -> dict[str, Any]:
    """fit-probe's steps in order: the embeddings opened, the labels on their grid, the probe fitted,
    validated, saved and reported; the class map (and confidence) over the embeddings' area when the
    plan names them. Returns the summary."""
    outputs = plan.outputs
    with open_embeddings(plan.embeddings, reporter) as (source, ds):
        data = label_cells(ds, plan.labels, reporter)
        level = raster_level(ds)

        def write_maps(probe, metadata) -> list[tuple[str, str]]:
            if not (outputs.classes or outputs.confidence):
                return []
            map_embeddings(
                ds,
                probe,
                metadata.class_names,
                metadata.colors,
                outputs.classes,
                outputs.confidence,
                reporter,
                metadata.features,
                source.inputs,
            )
            return [("Mapped area", mapped_area_html(outputs.classes, reporter))] if outputs.classes else []

        _, _, summary = fit_and_report(plan.at_level(level), data, source, level, reporter, ds=ds, after_fit=write_maps)
    summary.update(classes=outputs.classes, confidence=outputs.confidence)
    reporter.log("Wrote " + ", ".join(outputs.written()))
    return summary
