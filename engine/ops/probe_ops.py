"""Few labels to a map: the fit-probe and apply-probe operations.

Embeddings come from a job or an embeddings raster (engine.embeddings). A probe remembers
the hash of the encoder whose embeddings it was fitted on and refuses any other.

Levels (engine.mapping.levels): labels are rasterized on the embeddings' own grid, so a
probe is fitted per patch (patch, local, both), per sub-patch (dense: the probe is the
segmentation head, LayerNorm + linear per sub-patch) or per window cell (tile); it
remembers its level and refuses embeddings of another.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.api import operation
from engine.embeddings import (EMBEDDINGS_HELP, EmbeddingOptions, EmbeddingSource, LabelledEmbeddings, blocks,
                               embedding_source, is_job, labelled_embeddings, raster_level, read_block,
                               with_level)
from engine.errors import EngineError
from engine.io.atomic import check_output_path
from engine.io.grid import Grid
from engine.io.raster import open_raster
from engine.io.writers import parse_color
from engine.progress import Reporter


CLASSIFIER_HELP = ("linear (logistic regression), mlp, knn, random_forest, extra_trees, gradient_boosting, or auto: "
                   "the soft vote of the best (up to 5) of linear, mlp, knn, random_forest and extra_trees x "
                   "feature set by nested spatial cross-validation (every candidate's score in the report)")
FEATURES_HELP = ("feature set(s): embeddings, raw (every band of every date), stats (per-band temporal statistics), "
                 "indices (NDVI, NDWI, NDMI, VV/VH), or combinations such as embeddings+raw; several: candidates "
                 "to choose from; input features need a job, not an embeddings raster")
FOLDS_HELP = "spatial cross-validation folds of whole polygons / point blocks (fewer when there are fewer units)"
BLOCK_HELP = ("side in metres of the blocks grouping points for validation (0: the labels' spatial autocorrelation "
              "range, at least twice the points' mean spacing)")


@dataclass(frozen=True)
class FitSettings:
    """What a probe fit writes, which classifier / feature sets it tries and how it is validated,
    beside the probe's own ProbeConfig (engine.fitting, engine.validation)."""

    output: str
    labels: str
    class_field: str = "class"
    report: str | None = None
    min_coverage: float = 0.5
    folds: int = 5
    seed: int = 0
    colors: tuple[str, ...] | None = None
    classifier: str = "linear"  # a kind of engine.classifiers, or auto
    features: tuple[str, ...] = ("embeddings",)
    buffer: int = 1
    learning_curve: bool = True


def map_embeddings(ds, probe, class_names: list[str], colors: list[str], classes_path: str | None,
                   confidence_path: str | None, reporter: Reporter, features: dict[str, Any] | None = None,
                   inputs: dict[str, Any] | None = None) -> None:
    """Apply a probe to an embeddings raster block by block: styled class map (+ confidence).
    A probe on input features (its ``features`` record: raw bands, statistics, indices) reads the
    job's ``inputs`` on the embeddings' grid, window by window, and builds the same columns."""
    import torch

    from engine.features import FeatureSet, check_columns, combine, read_inputs
    from engine.mapping.outputs import open_class_outputs, write_class_outputs

    feature_set = FeatureSet.parse(features["set"]) if features else FeatureSet(("embeddings",))
    grid = Grid.of(ds)

    files = {k: p for k, p in (("classes", classes_path), ("confidence", confidence_path)) if p}
    windows = list(blocks(ds.height, ds.width))
    steps = reporter.steps(len(windows), "Applying the probe", 0, 100)
    with contextlib.ExitStack() as stack:
        datasets = open_class_outputs(stack, files, grid, class_names, [parse_color(c) for c in colors])
        for window in windows:
            data, valid = read_block(ds, window)
            vectors = data.reshape(ds.count, -1).T
            if feature_set.input_parts:
                values, has_data = read_inputs(inputs, grid, window)
                vectors, record = combine(vectors, values, feature_set, features.get("radar_db"))
                check_columns(features, record["columns"])
                valid = valid & has_data.reshape(valid.shape)
            vectors = vectors[valid.ravel()]
            proba = np.zeros((len(class_names), *valid.shape), np.float32)
            if vectors.size:
                with torch.inference_mode():
                    proba[:, valid] = probe.predict_proba(vectors).T
            write_class_outputs(datasets, window.row_off, proba, valid, col=window.col_off)
            steps.advance()


# ---------------------------------------------------------------- fit-probe


@dataclass
class FitProbeParams(EmbeddingOptions):
    labels: str = field(metadata={"help": "vector file of labelled points or polygons (any OGR format)", "positional": True,
                                  "role": "input"})
    embeddings: str | dict = field(metadata={"help": EMBEDDINGS_HELP, "positional": True})
    output: str = field(metadata={"help": "probe file to write (.safetensors)", "positional": True})
    class_field: str = field(default="class", metadata={"help": "field holding the class (integer or text)"})
    layer: str | None = field(default=None, metadata={"help": "layer name in the vector file (default: the first)"})
    ignore_values: list[str] = field(default_factory=list, metadata={"help": "class values to skip, e.g. 0 for 'no data'"})
    report: str | None = field(default=None, metadata={"help": "HTML fit report to write (metrics, confusion matrix)"})
    classes: str | None = field(default=None, metadata={"help": "class map to write over the embeddings' area (GeoTIFF)"})
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
    buffer: int = field(default=1, metadata={"help": "cells around each validation cell left out of that fold's training"})
    block_size: float = field(default=0.0, metadata={"help": BLOCK_HELP})
    learning_curve: bool = field(default=True, metadata={"help": "add a learning curve to the report (more fits)"})
    colors: list[str] | None = field(default=None, metadata={"help": "one #rrggbb colour per class, in class order"})
    seed: int = field(default=0, metadata={"help": "random seed of the split and the fit"})

    def probe_config(self, layer_norm: bool = False):
        from engine.probe import ProbeConfig

        from engine.fitting import AUTO

        # With auto, each candidate replaces the kind.
        return ProbeConfig(kind="linear" if self.classifier == AUTO else self.classifier, optimizer=self.optimizer,
                           l2=self.l2, epochs=self.epochs, class_weighting=self.class_weighting, hidden=self.hidden,
                           seed=self.seed, layer_norm=layer_norm, neighbours=self.neighbours, trees=self.trees)

    def settings(self) -> FitSettings:
        return FitSettings(self.output, self.labels, self.class_field, self.report, self.min_coverage,
                           self.folds, self.seed, tuple(self.colors) if self.colors else None, self.classifier,
                           tuple(self.features), self.buffer, self.learning_curve)


class FeatureRecords(dict):
    """Feature set name -> its engine.features.combine record, made on first use for sets that were
    not requested (the union a soft vote reads)."""

    def __init__(self, data: LabelledEmbeddings, values):
        super().__init__()
        self.data, self.values = data, values

    def __missing__(self, name: str) -> dict:
        from engine.features import FeatureSet, combine

        self[name] = combine(self.data.x, self.values or [], FeatureSet.parse(name))[1]
        return self[name]

    def columns(self, name: str) -> list[str]:
        return self[name]["columns"]


def feature_matrices(data: LabelledEmbeddings, feature_sets: tuple[str, ...], source: EmbeddingSource, ds,
                     reporter: Reporter) -> tuple[LabelledEmbeddings, dict[str, np.ndarray], FeatureRecords]:
    """Every requested feature set over the labelled cells (name -> matrix, name -> record); cells
    where the inputs have no valid date are left out. Without ``ds`` (the change probe's features),
    only the embeddings."""
    from engine.features import FeatureSet, combine, read_inputs_at

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
    """Validate (and choose) with engine.fitting, save the probe fitted on every label, write the
    report; returns (probe, metadata, summary). ``ds``: the embeddings raster, needed for feature
    sets other than the embeddings. ``after_fit(probe, metadata)``, when given, runs before the
    report is written and returns further report sections (the map's areas)."""
    from engine.fitting import check_feature_request, fit_honestly
    from engine.probe import ProbeMetadata, default_colors, save_probe
    from engine.report import candidates_html, learning_curve_html, write_fit_report

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


def mapped_area_html(classes_path: str, reporter: Reporter) -> str:
    """Pixel counts of the class map, which carry the map's errors: the estimate with confidence
    intervals needs a reference sample (sample-map, area-report)."""
    from engine.ops.area_ops import class_map_info, mapped_pixels
    from engine.report import mapped_area_table

    with open_raster(classes_path, "classes output") as ds:
        info = class_map_info(ds, classes_path)
        return mapped_area_table(info.names, mapped_pixels(ds, info, reporter), info.pixel_area, info.area_unit)


@operation("fit-probe", FitProbeParams, outputs=("output", "report", "classes", "confidence"),
           summary="Fit a probe on embeddings under labelled points/polygons; report held-out accuracy.")
def fit_probe_operation(params: FitProbeParams, reporter: Reporter) -> dict[str, Any]:
    """Labels (points or polygons, any CRS) are rasterized on the embeddings' grid (patches,
    sub-patches at the dense level, window cells at the tile level); a probe is fitted on the
    features under them (at the dense level the linear probe is LayerNorm + linear, the segmentation head).
    Accuracy is measured by spatial cross-validation on whole polygons / point blocks, buffered
    (engine.validation). Classifiers: linear, mlp, knn, random_forest, extra_trees, gradient_boosting, or auto
    (nested choice over classifier x feature set, saved as the soft vote of the best). Feature sets: embeddings, raw bands, temporal
    statistics, spectral indices, combinations (input features need a job). Optionally maps the
    area with the probe ("classes", "confidence")."""
    from engine.features import FeatureSet
    from engine.fitting import check_feature_request

    for key in ("output", "report", "classes", "confidence"):
        if getattr(params, key):
            check_output_path(getattr(params, key), key)
    check_feature_request(params.classifier, params.features)
    if any(FeatureSet.parse(f).input_parts for f in params.features) and not is_job(params.embeddings):
        raise EngineError("Raw bands, statistics and indices are read from the job's input rasters: give a job as "
                          f"embeddings (not the raster '{params.embeddings}'), or use the feature set 'embeddings'.")
    needed = any(FeatureSet.parse(f).uses_embeddings for f in params.features)
    with embedding_source(params.embeddings, params.model, reporter, level=params.embeddings_level,
                          needed=needed) as source, open_raster(source.path, "embeddings") as ds:
        data = labelled_embeddings(ds, params.labels, params.class_field, params.layer, params.ignore_values,
                                   params.min_coverage, params.block_size, reporter)
        level = raster_level(ds)

        def write_maps(probe, metadata) -> list[tuple[str, str]]:
            if not (params.classes or params.confidence):
                return []
            map_embeddings(ds, probe, metadata.class_names, metadata.colors, params.classes, params.confidence,
                           reporter, metadata.features, source.inputs)
            return [("Mapped area", mapped_area_html(params.classes, reporter))] if params.classes else []

        probe, metadata, summary = fit_and_report(data, params.probe_config(layer_norm=level == "dense"),
                                                  params.settings(), source, level, reporter, "Probe fit report",
                                                  ds=ds, after_fit=write_maps)
    summary.update(classes=params.classes, confidence=params.confidence)
    reporter.log(f"Wrote {params.output}" + "".join(f", {p}" for p in (params.report, params.classes, params.confidence) if p))
    return summary


# ---------------------------------------------------------------- apply-probe


@dataclass
class ApplyProbeParams(EmbeddingOptions):
    probe: str = field(metadata={"help": "probe file written by fit-probe", "positional": True, "role": "input"})
    embeddings: str | dict = field(metadata={"help": "a job JSON file (model, modalities and outputs \"classes\", "
                                             "\"confidence\", \"probabilities\") or an embeddings raster from 'embed'",
                                             "positional": True})
    classes: str | None = field(default=None, metadata={"help": "class map to write (only with an embeddings raster; a job names its outputs)"})
    confidence: str | None = field(default=None, metadata={"help": "confidence raster (only with an embeddings raster)"})


def map_job_with_probe(job, probe_path: str, probe, meta, reporter: Reporter, level: str | None = None) -> dict[str, Any]:
    """The job's model embeds and the probe classifies, in one streaming pass: the probe is the head
    of tiled inference (no embeddings raster unless the job names one). ``level``: the embeddings the
    probe reads (None: the probe's own). A probe on input features (raw bands, statistics, indices)
    also reads the job's rasters: its embeddings go through a temporary raster (map_embeddings)."""
    from engine.features import FeatureSet
    from engine.mapping.levels import level as level_of
    from engine.mapping.run import run_map
    from engine.models.checkpoint import checkpoint_hash, load_checkpoint
    from engine.probe import ProbeHead, check_encoder

    if FeatureSet.parse(meta.features.get("set", "embeddings")).input_parts:
        return _apply_on_inputs(job, probe_path, probe, meta, reporter)
    if not any(getattr(job.outputs, k) for k in ("classes", "confidence", "probabilities")):
        raise EngineError('Name "classes" (and optionally "confidence", "probabilities") in the job\'s "outputs".')
    level = level or meta.level
    loaded = load_checkpoint(job.model)
    check_encoder(probe, meta, checkpoint_hash(job.model), level, level_of(level).width(loaded.model.embed_dim),
                  probe_path)
    metadata = dict(loaded.metadata, classes=meta.class_names, colors=[parse_color(c) for c in meta.colors])
    result = run_map(job, reporter, loaded.model, ProbeHead(probe, level), metadata)
    return dict(result, probe=str(probe_path))


def _apply_on_inputs(job, probe_path: str, probe, meta, reporter: Reporter) -> dict[str, Any]:
    """A probe fitted on input features (raw bands, statistics, indices, maybe with embeddings):
    the job's embeddings are computed as a raster, then the probe reads them and the job's inputs
    window by window (map_embeddings)."""
    from engine.features import FeatureSet
    from engine.probe import check_encoder

    feature_set = meta.features["set"]
    outputs = job.outputs
    if outputs.probabilities:
        raise EngineError(f"A probe on {feature_set!r} writes classes and confidence, not per-class probabilities: "
                          "remove \"probabilities\" from the job's outputs.")
    if not (outputs.classes or outputs.confidence):
        raise EngineError('Name "classes" (and optionally "confidence") in the job\'s "outputs".')
    for key in ("classes", "confidence"):
        if getattr(outputs, key):
            check_output_path(getattr(outputs, key), key)
    with embedding_source(job, None, reporter, level=job.outputs.embeddings_level,
                          needed=FeatureSet.parse(feature_set).uses_embeddings) as source, \
            open_raster(source.path, "embeddings") as ds:
        input_columns = sum(not c.startswith("embedding:") for c in meta.features.get("columns", []))
        width = input_columns + (ds.count if FeatureSet.parse(feature_set).uses_embeddings else 0)
        check_encoder(probe, meta, source.encoder_hash, raster_level(ds), width, probe_path)
        map_embeddings(ds, probe, meta.class_names, meta.colors, outputs.classes, outputs.confidence, reporter,
                       meta.features, source.inputs)
        shape = {"width": ds.width, "height": ds.height, "crs": ds.crs.to_string() if ds.crs else None}
    reporter.log("Wrote " + ", ".join(p for p in (outputs.classes, outputs.confidence) if p))
    return {"classes": outputs.classes, "confidence": outputs.confidence, "probe": str(probe_path),
            "class_names": meta.class_names, "features": feature_set, **shape}


@operation("apply-probe", ApplyProbeParams, outputs=("classes", "confidence", "probabilities"),
           summary="Map classes with a fitted probe: styled class map (colour table, class names).")
def apply_probe_operation(params: ApplyProbeParams, reporter: Reporter) -> dict[str, Any]:
    """With a job: tiled inference of the job's model with the probe as its head (outputs named by
    the job). With an embeddings raster: the probe on every pixel. Refuses embeddings of an
    encoder or level other than the probe's. The class map lies on the level's grid: patches,
    sub-patches for a dense probe (no resampling to the input pixels: for 10 m series a
    sub-patch is a pixel), window cells for a tile probe."""
    from engine.features import FeatureSet
    from engine.probe import check_encoder, load_probe

    probe, meta = load_probe(params.probe)
    on_inputs = FeatureSet.parse(meta.features.get("set", "embeddings")).input_parts
    if on_inputs and not is_job(params.embeddings):
        raise EngineError(f"The probe '{params.probe}' was fitted on the feature set {meta.features['set']!r}, read "
                          "from the input rasters: give a job (model, modalities and outputs), not an embeddings raster.")
    if is_job(params.embeddings):
        from engine.io.job import load_job

        if params.classes or params.confidence:
            raise EngineError("With a job, name the outputs in the job's \"outputs\" (classes, confidence, probabilities).")
        job = with_level(load_job(params.embeddings), params.embeddings_level)
        return map_job_with_probe(job, params.probe, probe, meta, reporter, job.outputs.embeddings_level)
    if not (params.classes or params.confidence):
        raise EngineError("Give 'classes' (and/or 'confidence'): the file(s) to write.")
    for key in ("classes", "confidence"):
        if getattr(params, key):
            check_output_path(getattr(params, key), key)
    with embedding_source(params.embeddings, params.model, reporter, level=params.embeddings_level) as source, \
            open_raster(source.path, "embeddings") as ds:
        check_encoder(probe, meta, source.encoder_hash, raster_level(ds), ds.count, params.probe)
        map_embeddings(ds, probe, meta.class_names, meta.colors, params.classes, params.confidence, reporter)
        shape = {"width": ds.width, "height": ds.height, "crs": ds.crs.to_string() if ds.crs else None}
    reporter.log("Wrote " + ", ".join(p for p in (params.classes, params.confidence) if p))
    return {"classes": params.classes, "confidence": params.confidence, "probe": str(params.probe),
            "class_names": meta.class_names, **shape}
