"""The fit workflow shared by fit-probe and change's probe: feature matrices over the labelled cells,
validation and choice (engine.probes.fit), the saved probe, the report and the summary."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from engine.errors import EngineError
from engine.io.grid import Grid
from engine.io.writers import parse_color
from engine.probes.features import FeatureSet, combine, read_inputs_at
from engine.probes.fit import check_feature_request, fit_honestly
from engine.probes.probe_file import ProbeMetadata, default_colors, save_probe
from engine.probes.report import candidates_html, learning_curve_html, write_fit_report
from engine.probes.sources import EmbeddingSource, LabelledEmbeddings
from engine.runtime.progress import Reporter


@dataclass(frozen=True)
class FitSettings:
    """What a probe fit writes, which classifier / feature sets it tries and how it is validated,
    beside the probe's own ProbeConfig (engine.probes.fit, engine.probes.selection)."""

    output: str
    labels: str
    class_field: str = "class"
    report: str | None = None
    min_coverage: float = 0.5
    folds: int = 5
    seed: int = 0
    colors: tuple[str, ...] | None = None
    classifier: str = "linear"  # a kind of engine.probes.classifiers, or auto
    features: tuple[str, ...] = ("embeddings",)
    buffer: int = 1
    learning_curve: bool = True


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


def feature_matrices(data: LabelledEmbeddings, feature_sets: tuple[str, ...], source: EmbeddingSource, ds,
                     reporter: Reporter) -> tuple[LabelledEmbeddings, dict[str, np.ndarray], FeatureRecords]:
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
            reporter.log(f"{int((~ok).sum())} labelled cells have no valid input value on any date and are left out.",
                         "warning")
            data = data.subset(ok)
            values = [dataclasses.replace(v, values=v.values[ok]) for v in values]
    matrices, records = {}, FeatureRecords(data, values)
    for fs in sets:
        matrices[fs.name], records[fs.name] = combine(data.x, values or [], fs)
    return data, matrices, records


def _notes(data: LabelledEmbeddings, outcome, settings: FitSettings) -> list[str]:
    samples, report = data.samples, data.samples.report
    notes = [f"Validation: {outcome.validation_rule}.",
             f"The saved probe ({outcome.candidate.name}) is refitted on all {len(samples)} labelled cells; the "
             "figures come from probes fitted without the held-out cells of each fold."] + outcome.notes
    if report.get("features_outside_extent"):
        notes.append(f"{report['features_outside_extent']} features lie outside the raster and were dropped.")
    if report.get("polygons_below_min_coverage"):
        notes.append(f"{report['polygons_below_min_coverage']} polygons cover no cell by {settings.min_coverage:.0%} on their own.")
    if data.dropped_nodata:
        notes.append(f"{data.dropped_nodata} labelled cells had no embedding or input value (nodata) and were left out.")
    return notes


def fit_and_report(data: LabelledEmbeddings, config, settings: FitSettings, source: EmbeddingSource, level: str,
                   reporter: Reporter, title: str, ds=None, after_fit=None):
    """Validate (and choose) with engine.probes.fit, save the probe fitted on every label, write the
    report; returns (probe, metadata, summary). ``ds``: the embeddings raster, needed for feature
    sets other than the embeddings. ``after_fit(probe, metadata)``, when given, runs before the
    report is written and returns further report sections (the map's areas)."""
    check_feature_request(settings.classifier, settings.features)
    data, matrices, records = feature_matrices(data, settings.features, source, ds, reporter)
    samples = data.samples
    names = list(samples.class_names)
    colors = list(settings.colors) if settings.colors else default_colors(len(names))
    if len(colors) != len(names):
        raise EngineError(f"{len(colors)} colours for {len(names)} classes ({', '.join(names)}): give one per class.")
    for c in colors:
        parse_color(c)
    reporter.log(f"Fitting a {settings.classifier} probe on {len(samples)} labelled cells, {len(names)} classes, "
                 f"features: {', '.join(matrices)}")
    outcome = fit_honestly(matrices, samples.y, data.units, samples.rows, samples.cols, names, config,
                           settings.classifier, settings.folds, settings.buffer, settings.seed, data.rule,
                           settings.learning_curve, reporter=reporter, columns=records.columns)
    metrics, report, chosen = outcome.metrics(names), samples.report, outcome.candidate
    validation = {"rule": outcome.validation_rule, "classifier_requested": settings.classifier,
                  "chosen": chosen.name, "candidates": outcome.selection.table() if outcome.selection else [],
                  "nested": outcome.selection.nested.summary() if outcome.selection else None,
                  "learning_curve": outcome.curve or []}
    metadata = ProbeMetadata(
        class_names=names, colors=colors, level=level, encoder_hash=source.encoder_hash, encoder=source.encoder,
        config={**dataclasses.asdict(config), "kind": chosen.classifier},
        metrics={k: metrics[k] for k in ("overall_accuracy", "macro_f1", "n_samples", "per_class", "confusion_matrix",
                                         "folds")} if metrics else {},
        labels={k: v for k, v in report.items() if not k.endswith("_ids")},
        features=records[chosen.features], validation=validation,
    )
    save_probe(settings.output, outcome.classifier, metadata)
    counts = {"features": report["features_per_class"],
              "labelled cells": dict(zip(names, np.bincount(samples.y, minlength=len(names)).tolist()))}
    if outcome.folds is not None:
        tested = outcome.folds.test_fold >= 0
        counts["cells ever held out"] = dict(zip(names, np.bincount(samples.y[tested], minlength=len(names)).tolist()))
    extra = after_fit(outcome.classifier, metadata) if after_fit is not None else []
    if settings.report:
        table = {"labels": settings.labels, "class field": settings.class_field, "embeddings": str(source.path),
                 "encoder": source.encoder.get("checkpoint", ""), "encoder sha256": source.encoder_hash,
                 "embedding level": level, "feature sets": ", ".join(matrices), "min coverage": settings.min_coverage,
                 "folds": settings.folds, "buffer (cells)": settings.buffer,
                 "point block (cells)": report["point_block_cells"],
                 **{f"probe {k}": v for k, v in metadata.config.items()}}
        sections = []
        if outcome.selection:
            sections.append(("Candidates", candidates_html(validation["candidates"], validation["nested"])))
        if outcome.curve:
            sections.append(("Learning curve", learning_curve_html(outcome.curve)))
        write_fit_report(settings.report, title=title, metrics=metrics, class_names=names, colors=colors,
                         counts=counts, settings=table, notes=_notes(data, outcome, settings),
                         sections=sections + extra)
    if metrics:
        spread = metrics["folds"]["macro_f1"]
        reporter.log(f"Validation ({chosen.name}): overall accuracy {metrics['overall_accuracy']:.3f}, macro-F1 "
                     f"{metrics['macro_f1']:.3f} on {metrics['n_samples']} held-out cells; per fold macro-F1 "
                     f"{spread['mean']:.3f} ± {spread['std']:.3f}")
    summary = {
        "output": str(settings.output),
        "report": str(settings.report) if settings.report else None,
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
