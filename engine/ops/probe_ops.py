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


@dataclass(frozen=True)
class FitSettings:
    """What a probe fit writes and how it is validated, beside the probe's own ProbeConfig."""

    output: str
    labels: str
    class_field: str = "class"
    report: str | None = None
    min_coverage: float = 0.5
    val_fraction: float = 0.2
    seed: int = 0
    colors: tuple[str, ...] | None = None


def map_embeddings(ds, probe, class_names: list[str], colors: list[str], classes_path: str | None,
                   confidence_path: str | None, reporter: Reporter) -> None:
    """Apply a probe to an embeddings raster block by block: styled class map (+ confidence)."""
    import torch

    from engine.mapping.outputs import open_class_outputs, write_class_outputs

    files = {k: p for k, p in (("classes", classes_path), ("confidence", confidence_path)) if p}
    windows = list(blocks(ds.height, ds.width))
    steps = reporter.steps(len(windows), "Applying the probe", 0, 100)
    with contextlib.ExitStack() as stack:
        datasets = open_class_outputs(stack, files, Grid.of(ds), class_names, [parse_color(c) for c in colors])
        for window in windows:
            data, valid = read_block(ds, window)
            vectors = data.reshape(ds.count, -1).T[valid.ravel()]
            proba = np.zeros((len(class_names), *valid.shape), np.float32)
            if vectors.size:
                with torch.inference_mode():
                    proba[:, valid] = probe.predict_proba(vectors).T
            write_class_outputs(datasets, window.row_off, proba, valid, col=window.col_off)
            steps.advance()


# ---------------------------------------------------------------- fit-probe


@dataclass
class FitProbeParams(EmbeddingOptions):
    labels: str = field(metadata={"help": "vector file of labelled points or polygons (any OGR format)", "positional": True})
    embeddings: str | dict = field(metadata={"help": EMBEDDINGS_HELP, "positional": True})
    output: str = field(metadata={"help": "probe file to write (.safetensors)", "positional": True})
    class_field: str = field(default="class", metadata={"help": "field holding the class (integer or text)"})
    layer: str | None = field(default=None, metadata={"help": "layer name in the vector file (default: the first)"})
    ignore_values: list[str] = field(default_factory=list, metadata={"help": "class values to skip, e.g. 0 for 'no data'"})
    report: str | None = field(default=None, metadata={"help": "HTML fit report to write (metrics, confusion matrix)"})
    classes: str | None = field(default=None, metadata={"help": "class map to write over the embeddings' area (GeoTIFF)"})
    confidence: str | None = field(default=None, metadata={"help": "probability of the chosen class (GeoTIFF)"})
    min_coverage: float = field(default=0.5, metadata={"help": "share of a cell a polygon must cover to label it"})
    kind: str = field(default="linear", metadata={"help": "linear (logistic regression) or mlp"})
    optimizer: str = field(default="lbfgs", metadata={"help": "lbfgs or adam"})
    l2: float = field(default=1e-3, metadata={"help": "L2 penalty on the weights"})
    epochs: int = field(default=200, metadata={"help": "L-BFGS iterations or Adam epochs"})
    class_weighting: bool = field(default=True, metadata={"help": "weight classes by inverse frequency"})
    hidden: int = field(default=128, metadata={"help": "MLP width"})
    val_fraction: float = field(default=0.2, metadata={"help": "share of polygons / point blocks held out for validation"})
    block_size: float = field(default=0.0, metadata={"help": "side in metres of the blocks grouping points for validation (0: a tenth of the area)"})
    colors: list[str] | None = field(default=None, metadata={"help": "one #rrggbb colour per class, in class order"})
    seed: int = field(default=0, metadata={"help": "random seed of the split and the fit"})

    def probe_config(self, layer_norm: bool = False):
        from engine.probe import ProbeConfig

        return ProbeConfig(kind=self.kind, optimizer=self.optimizer, l2=self.l2, epochs=self.epochs,
                           class_weighting=self.class_weighting, hidden=self.hidden, seed=self.seed,
                           layer_norm=layer_norm)

    def settings(self) -> FitSettings:
        return FitSettings(self.output, self.labels, self.class_field, self.report, self.min_coverage,
                           self.val_fraction, self.seed, tuple(self.colors) if self.colors else None)


def _notes(data: LabelledEmbeddings, fit, names: list[str], settings: FitSettings) -> list[str]:
    samples, report = data.samples, data.samples.report
    notes = [f"The saved probe is refitted on all {len(samples)} labelled cells; the figures above come from "
             f"a probe fitted without the validation cells ({int(fit.validation.sum())} cells in "
             f"{len(np.unique(data.units[fit.validation]))} polygons/blocks)."]
    unmeasured = [names[k] for k in fit.unmeasured]
    if unmeasured:
        notes.append(f"Not validated (all their labels lie in one polygon or block, kept for training): {', '.join(unmeasured)}.")
    if report.get("features_outside_extent"):
        notes.append(f"{report['features_outside_extent']} features lie outside the raster and were dropped.")
    if report.get("polygons_below_min_coverage"):
        notes.append(f"{report['polygons_below_min_coverage']} polygons cover no cell by {settings.min_coverage:.0%} on their own.")
    if data.dropped_nodata:
        notes.append(f"{data.dropped_nodata} labelled cells had no embedding (nodata) and were left out.")
    return notes


def fit_and_report(data: LabelledEmbeddings, config, settings: FitSettings, source: EmbeddingSource, level: str,
                   reporter: Reporter, title: str):
    """Fit ``config``'s probe with validation, save it, write the report; returns (probe, metadata, summary)."""
    from engine.probe import ProbeMetadata, default_colors, fit_validated, save_probe
    from engine.report import write_fit_report

    samples = data.samples
    names = list(samples.class_names)
    colors = list(settings.colors) if settings.colors else default_colors(len(names))
    if len(colors) != len(names):
        raise EngineError(f"{len(colors)} colours for {len(names)} classes ({', '.join(names)}): give one per class.")
    for c in colors:
        parse_color(c)
    reporter.log(f"Fitting a {config.kind} probe on {len(samples)} labelled cells, {len(names)} classes")
    fit = fit_validated(data.x, samples.y, data.units, names, config, settings.val_fraction, settings.seed)
    metrics, report = fit.metrics, samples.report
    metadata = ProbeMetadata(
        class_names=names, colors=colors, level=level, encoder_hash=source.encoder_hash, encoder=source.encoder,
        config=dataclasses.asdict(config),
        metrics={k: metrics[k] for k in ("overall_accuracy", "macro_f1", "n_samples", "per_class", "confusion_matrix")},
        labels={k: v for k, v in report.items() if not k.endswith("_ids")},
    )
    save_probe(settings.output, fit.probe, metadata)
    counts = {
        "features": report["features_per_class"],
        "training cells": dict(zip(names, np.bincount(samples.y[~fit.validation], minlength=len(names)).tolist())),
        "validation cells": dict(zip(names, np.bincount(samples.y[fit.validation], minlength=len(names)).tolist())),
    }
    if settings.report:
        table = {"labels": settings.labels, "class field": settings.class_field, "embeddings": str(source.path),
                 "encoder": source.encoder.get("checkpoint", ""), "encoder sha256": source.encoder_hash,
                 "embedding level": level, "min coverage": settings.min_coverage,
                 "validation share": settings.val_fraction, "point block (cells)": report["point_block_cells"],
                 **{f"probe {k}": v for k, v in dataclasses.asdict(config).items()}}
        write_fit_report(settings.report, title=title, metrics=metrics, class_names=names, colors=colors,
                         counts=counts, settings=table, notes=_notes(data, fit, names, settings))
    reporter.log(f"Validation: overall accuracy {metrics['overall_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
                 f"on {metrics['n_samples']} held-out cells")
    summary = {
        "output": str(settings.output),
        "report": str(settings.report) if settings.report else None,
        "class_names": names,
        "overall_accuracy": metrics["overall_accuracy"],
        "macro_f1": metrics["macro_f1"],
        "validation_cells": metrics["n_samples"],
        "per_class_f1": {n: metrics["per_class"][n]["f1"] for n in names},
        "unvalidated_classes": [names[k] for k in fit.unmeasured],
        "counts": counts,
        "labels": metadata.labels,
    }
    return fit.probe, metadata, summary


@operation("fit-probe", FitProbeParams, outputs=("output", "report", "classes", "confidence"),
           summary="Fit a probe on embeddings under labelled points/polygons; report held-out accuracy.")
def fit_probe_operation(params: FitProbeParams, reporter: Reporter) -> dict[str, Any]:
    """Labels (points or polygons, any CRS) are rasterized on the embeddings' grid (patches,
    sub-patches at the dense level, window cells at the tile level); a probe is fitted on the
    embeddings under them (at the dense level: LayerNorm + linear, the segmentation head).
    Accuracy is measured on whole polygons / point blocks held out from the fit. Optionally
    maps the area with the probe ("classes", "confidence")."""
    for key in ("output", "report", "classes", "confidence"):
        if getattr(params, key):
            check_output_path(getattr(params, key), key)
    with embedding_source(params.embeddings, params.model, reporter, level=params.embeddings_level) as source, \
            open_raster(source.path, "embeddings") as ds:
        data = labelled_embeddings(ds, params.labels, params.class_field, params.layer, params.ignore_values,
                                   params.min_coverage, params.block_size, reporter)
        level = raster_level(ds)
        probe, metadata, summary = fit_and_report(data, params.probe_config(layer_norm=level == "dense"),
                                                  params.settings(), source, level, reporter, "Probe fit report")
        if params.classes or params.confidence:
            map_embeddings(ds, probe, metadata.class_names, metadata.colors, params.classes, params.confidence, reporter)
    summary.update(classes=params.classes, confidence=params.confidence)
    reporter.log(f"Wrote {params.output}" + "".join(f", {p}" for p in (params.report, params.classes, params.confidence) if p))
    return summary


# ---------------------------------------------------------------- apply-probe


@dataclass
class ApplyProbeParams(EmbeddingOptions):
    probe: str = field(metadata={"help": "probe file written by fit-probe", "positional": True})
    embeddings: str | dict = field(metadata={"help": "a job JSON file (model, modalities and outputs \"classes\", "
                                             "\"confidence\", \"probabilities\") or an embeddings raster from 'embed'",
                                             "positional": True})
    classes: str | None = field(default=None, metadata={"help": "class map to write (only with an embeddings raster; a job names its outputs)"})
    confidence: str | None = field(default=None, metadata={"help": "confidence raster (only with an embeddings raster)"})


def _apply_with_job(params: ApplyProbeParams, probe, meta, reporter: Reporter) -> dict[str, Any]:
    """Tiled inference of the job's model with the probe as its head."""
    from engine.io.job import load_job
    from engine.mapping.levels import level as level_of
    from engine.mapping.run import run_map
    from engine.models.checkpoint import checkpoint_hash, load_checkpoint
    from engine.probe import ProbeHead, check_encoder

    job = with_level(load_job(params.embeddings), params.embeddings_level)
    if params.classes or params.confidence:
        raise EngineError("With a job, name the outputs in the job's \"outputs\" (classes, confidence, probabilities).")
    if not any(getattr(job.outputs, k) for k in ("classes", "confidence", "probabilities")):
        raise EngineError('Name "classes" (and optionally "confidence", "probabilities") in the job\'s "outputs".')
    loaded = load_checkpoint(job.model)
    level = job.outputs.embeddings_level
    check_encoder(probe, meta, checkpoint_hash(job.model), level, level_of(level).width(loaded.model.embed_dim),
                  params.probe)
    metadata = dict(loaded.metadata, classes=meta.class_names, colors=[parse_color(c) for c in meta.colors])
    result = run_map(job, reporter, loaded.model, ProbeHead(probe, level), metadata)
    return dict(result, probe=str(params.probe))


@operation("apply-probe", ApplyProbeParams, outputs=("classes", "confidence", "probabilities"),
           summary="Map classes with a fitted probe: styled class map (colour table, class names).")
def apply_probe_operation(params: ApplyProbeParams, reporter: Reporter) -> dict[str, Any]:
    """With a job: tiled inference of the job's model with the probe as its head (outputs named by
    the job). With an embeddings raster: the probe on every pixel. Refuses embeddings of an
    encoder or level other than the probe's. The class map lies on the level's grid: patches,
    sub-patches for a dense probe (no resampling to the input pixels: for 10 m series a
    sub-patch is a pixel), window cells for a tile probe."""
    from engine.probe import check_encoder, load_probe

    probe, meta = load_probe(params.probe)
    if is_job(params.embeddings):
        return _apply_with_job(params, probe, meta, reporter)
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
