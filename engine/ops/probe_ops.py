"""Few labels to a map: fit-probe, apply-probe and change.

Embeddings come either from a job (engine.io.job: model + modalities; the engine
computes them with tiled inference) or from an embeddings raster written by
``embed`` (one band per dimension). A probe remembers the hash of the encoder whose
embeddings it was fitted on and refuses any other.

Levels (engine.inference): labels are rasterized on the embeddings' own grid, so a
probe is fitted per patch (patch, local, both), per sub-patch (dense: the probe is the
segmentation head, LayerNorm + linear per sub-patch) or per window cell (tile); it
remembers its level and refuses embeddings of another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import rasterio
from rasterio.windows import Window

from engine.api import operation
from engine.errors import EngineError
from engine.io.atomic import atomic_output, check_output_path
from engine.io.job import EMBEDDING_LEVEL_TAG
from engine.io.raster import open_raster
from engine.progress import Reporter

# Tags written into embedding rasters computed here, so that they can be reused alone.
HASH_TAG, CHECKPOINT_TAG, LEVEL_TAG = "ENCODER_SHA256", "ENCODER_CHECKPOINT", EMBEDDING_LEVEL_TAG
BLOCK = 256  # cells per side of the windows read from embedding rasters

EMBEDDINGS_HELP = ("embeddings: a job JSON file (model + modalities; its outputs are ignored except "
                   "\"embeddings\", where the embeddings are kept) or an embeddings raster written by 'embed'")
MODEL_HELP = "checkpoint the embeddings raster was computed with (only for a raster written by 'embed')"
LEVEL_HELP = ("embedding level: patch, local, both, dense (AnySat, per sub-patch: class map at the sub-patch "
              "resolution) or tile (one cell per window, windows edge to edge); auto: the job's "
              "outputs.embeddings_level, or the raster's own level (another level given with a raster is refused)")
AUTO = "auto"
CLASSIFIER_HELP = ("linear (logistic regression), mlp, knn, random_forest, gradient_boosting, or auto: the best "
                   "classifier x feature set by nested spatial cross-validation (every candidate's score in the report)")
FEATURES_HELP = ("feature set(s): embeddings, raw (every band of every date), stats (per-band temporal statistics), "
                 "indices (NDVI, NDWI, NDMI, VV/VH), or combinations such as embeddings+raw; several: candidates "
                 "to choose from; input features need a job, not an embeddings raster")
FOLDS_HELP = "spatial cross-validation folds of whole polygons / point blocks (fewer when there are fewer units)"
BLOCK_HELP = ("side in metres of the blocks grouping points for validation (0: the labels' spatial autocorrelation "
              "range, at least twice the points' mean spacing)")


@dataclass
class EmbeddingSource:
    path: Path
    encoder_hash: str
    encoder: dict[str, Any]
    inputs: dict[str, Any] | None = None  # a job's resolved modalities (engine.inference.resolve_inputs)


def _is_job(value: str | dict) -> bool:
    return isinstance(value, dict) or str(value).strip().startswith("{") or str(value).lower().endswith(".json")


def check_level(level: str) -> str:
    from engine.io.job import EMBEDDING_LEVELS

    if level != AUTO and level not in EMBEDDING_LEVELS:
        raise EngineError(f"Unknown embeddings_level {level!r}: use {AUTO} or one of {', '.join(EMBEDDING_LEVELS)}.")
    return level


@contextlib.contextmanager
def embedding_source(value: str | dict, model: str | None, reporter: Reporter, setting: str = "embeddings",
                     level: str = AUTO) -> Iterator[EmbeddingSource]:
    """Yield the embeddings raster for ``value`` (computing it when ``value`` is a job, at ``level``
    unless auto: the job's own)."""
    from engine.models.checkpoint import checkpoint_hash

    check_level(level)
    if not _is_job(value):
        with open_raster(value, setting) as ds:
            tags = ds.tags()
        own = tags.get(LEVEL_TAG, "patch")
        if level != AUTO and level != own:
            raise EngineError(f"The {setting} raster '{value}' holds {own}-level embeddings, not {level}: "
                              f'compute them again at that level, or leave embeddings_level at "{AUTO}".')
        if tags.get(HASH_TAG):
            digest, checkpoint = tags[HASH_TAG], tags.get(CHECKPOINT_TAG, "")
        elif model:
            digest, checkpoint = checkpoint_hash(model), str(model)
        else:
            raise EngineError(
                f"The embeddings raster '{value}' does not say which model computed it: give that checkpoint "
                "as 'model', or give a job instead of the raster."
            )
        yield EmbeddingSource(Path(value), digest, {"name": Path(checkpoint).stem or "unknown", "checkpoint": checkpoint})
        return

    from engine.inference import resolve_inputs, run_map
    from engine.io.job import Outputs, load_job
    from engine.models.checkpoint import load_checkpoint

    job = with_level(load_job(value), level)
    loaded = load_checkpoint(job.model)
    digest = checkpoint_hash(job.model)
    with tempfile.TemporaryDirectory(prefix="omnisat-embeddings-") as folder:
        target = job.outputs.embeddings or str(Path(folder) / "embeddings.tif")
        job = dataclasses.replace(job, outputs=Outputs(embeddings=target, embeddings_dtype=job.outputs.embeddings_dtype,
                                                       embeddings_level=job.outputs.embeddings_level))
        reporter.log(f"Computing embeddings with {job.model} ({', '.join(job.modalities)})")
        result = run_map(job, reporter, loaded.model, None, loaded.metadata)
        with rasterio.open(target, "r+") as ds:
            ds.update_tags(**{HASH_TAG: digest, CHECKPOINT_TAG: str(job.model), LEVEL_TAG: job.outputs.embeddings_level})
        yield EmbeddingSource(Path(target), digest, {
            "name": Path(job.model).stem, "checkpoint": str(job.model), "patch_size_m": result["patch_size_m"],
            "modalities": list(job.modalities), "provenance": loaded.metadata.get("provenance") or {},
        }, resolve_inputs(job, loaded.model))


def with_level(job, level: str):
    """The job at ``level`` (auto: its own outputs.embeddings_level)."""
    if check_level(level) == AUTO:
        return job
    return dataclasses.replace(job, outputs=dataclasses.replace(job.outputs, embeddings_level=level))


MODELS = Path(__file__).resolve().parents[2] / "resources" / "models"


def shipped_checkpoints(modalities: set[str]) -> list[tuple[Path, dict[str, Any]]]:
    """(path, metadata) of the checkpoints under resources/models that have all ``modalities``,
    longest-trained (provenance "steps") first; read from metadata, no weights loaded."""
    from engine.models.checkpoint import read_metadata

    candidates = []
    for path in sorted(MODELS.glob("*.safetensors")) if MODELS.is_dir() else []:
        try:
            meta = read_metadata(path)
        except EngineError:
            continue
        names = {m.get("name") if isinstance(m, dict) else m for m in meta.get("config", {}).get("modalities", [])}
        if modalities <= names:
            candidates.append((-int((meta.get("provenance") or {}).get("steps") or 0), path.name, path, meta))
    return [(path, meta) for _, _, path, meta in sorted(candidates, key=lambda c: c[:2])]


def default_encoder(folder: Path, reporter: Reporter, modalities: set[str]) -> tuple[Path, str]:
    """The best encoder in the tree for ``modalities``: the longest-trained shipped checkpoint
    that has them all, else a randomly initialised omnisat-treesatai saved in ``folder`` (said loudly)."""
    import torch

    from engine.models.checkpoint import save_checkpoint
    from engine.models.registry import build_model

    shipped = shipped_checkpoints(modalities)
    if shipped:
        path, meta = shipped[0]
        return path, f"checkpoint {path.name} (provenance: {json.dumps(meta.get('provenance') or {})})"
    torch.manual_seed(0)
    model = build_model("omnisat-treesatai").eval()
    path = Path(folder) / "omnisat-treesatai-random.safetensors"
    save_checkpoint(path, model, provenance={"weights": "random initialisation, torch seed 0"})
    reporter.log("No trained checkpoint with these modalities under resources/models: the encoder is a "
                 "RANDOMLY INITIALISED omnisat-treesatai (embeddings are random features).", "warning")
    return path, "omnisat-treesatai with RANDOM weights (torch seed 0): no trained checkpoint in resources/models"


def _grid(ds):
    from engine.io.grid import Grid

    return Grid(ds.crs, ds.transform, ds.width, ds.height)


def _blocks(height: int, width: int) -> Iterator[Window]:
    for row in range(0, height, BLOCK):
        for col in range(0, width, BLOCK):
            yield Window(col, row, min(BLOCK, width - col), min(BLOCK, height - row))


def _valid(ds, data: np.ndarray) -> np.ndarray:
    """(h, w) True where every band holds a finite value other than nodata."""
    ok = np.isfinite(data).all(axis=0)
    if ds.nodata is not None and not math.isnan(ds.nodata):
        ok &= (data != ds.nodata).all(axis=0)
    return ok


def gather(ds, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Embeddings (N, D) at cells (rows, cols), reading only the blocks that hold some; NaN where invalid."""
    out = np.full((rows.size, ds.count), np.nan, np.float32)
    block_ids = (rows // BLOCK) * (ds.width // BLOCK + 1) + cols // BLOCK
    for block in np.unique(block_ids):
        pick = np.flatnonzero(block_ids == block)
        r0, c0 = int(rows[pick[0]] // BLOCK * BLOCK), int(cols[pick[0]] // BLOCK * BLOCK)
        window = Window(c0, r0, min(BLOCK, ds.width - c0), min(BLOCK, ds.height - r0))
        data = ds.read(window=window).astype(np.float32)
        valid = _valid(ds, data)
        values = data[:, rows[pick] - r0, cols[pick] - c0].T
        values[~valid[rows[pick] - r0, cols[pick] - c0]] = np.nan
        out[pick] = values
    return out


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    text = color.strip().lstrip("#")
    if len(text) != 6:
        raise EngineError(f"Colour {color!r} is not written as #rrggbb.")
    try:
        return tuple(int(text[i:i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        raise EngineError(f"Colour {color!r} is not written as #rrggbb.") from None


def map_embeddings(ds, probe, class_names: list[str], colors: list[str], classes_path: str | None,
                   confidence_path: str | None, reporter: Reporter, features: dict[str, Any] | None = None,
                   inputs: dict[str, Any] | None = None) -> None:
    """Apply a probe to an embeddings raster block by block: styled class map (+ confidence).
    A probe on input features (its ``features`` record: raw bands, statistics, indices) reads the
    job's ``inputs`` on the embeddings' grid, window by window, and builds the same columns."""
    from engine.features import FeatureSet, check_columns, combine, read_inputs

    feature_set = FeatureSet.parse(features["set"]) if features else FeatureSet(("embeddings",))
    import torch

    from engine.io.writers import CLASS_NODATA, geotiff_profile, open_class_map

    grid = _grid(ds)
    windows = list(_blocks(ds.height, ds.width))
    steps = reporter.steps(len(windows), "Applying the probe", 0, 100)
    with contextlib.ExitStack() as stack:
        outputs = {}
        if classes_path:
            temp = stack.enter_context(atomic_output(classes_path, "classes output"))
            outputs["classes"] = open_class_map(temp, grid, class_names, [hex_to_rgb(c) for c in colors])
            stack.callback(outputs["classes"].close)
        if confidence_path:
            temp = stack.enter_context(atomic_output(confidence_path, "confidence output"))
            outputs["confidence"] = rasterio.open(temp, "w", **geotiff_profile(grid, 1, "float32", math.nan))
            outputs["confidence"].set_band_description(1, "confidence")
            stack.callback(outputs["confidence"].close)
        for window in windows:
            data = ds.read(window=window).astype(np.float32)
            valid = _valid(ds, data)
            vectors = data.reshape(ds.count, -1).T
            if feature_set.input_parts:
                values, has_data = read_inputs(inputs, grid, window)
                vectors, record = combine(vectors, values, feature_set, features.get("radar_db"))
                check_columns(features, record["columns"])
                valid &= has_data.reshape(valid.shape)
            vectors = vectors[valid.ravel()]
            labels = np.full(valid.shape, CLASS_NODATA, np.uint8)
            confidence = np.full(valid.shape, np.nan, np.float32)
            if vectors.size:
                with torch.inference_mode():
                    proba = probe.predict_proba(vectors)
                labels[valid] = proba.argmax(1)
                confidence[valid] = proba.max(1)
            if "classes" in outputs:
                outputs["classes"].write(labels, 1, window=window)
            if "confidence" in outputs:
                outputs["confidence"].write(confidence, 1, window=window)
            steps.advance()


# ---------------------------------------------------------------- fit-probe


@dataclass
class FitProbeParams:
    labels: str = field(metadata={"help": "vector file of labelled points or polygons (any OGR format)", "positional": True})
    embeddings: str | dict = field(metadata={"help": EMBEDDINGS_HELP, "positional": True})
    output: str = field(metadata={"help": "probe file to write (.safetensors)", "positional": True})
    class_field: str = field(default="class", metadata={"help": "field holding the class (integer or text)"})
    layer: str | None = field(default=None, metadata={"help": "layer name in the vector file (default: the first)"})
    ignore_values: list[str] = field(default_factory=list, metadata={"help": "class values to skip, e.g. 0 for 'no data'"})
    model: str | None = field(default=None, metadata={"help": MODEL_HELP})
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
    embeddings_level: str = field(default=AUTO, metadata={"help": LEVEL_HELP})


def probe_config(params, layer_norm: bool = False) -> "ProbeConfig":
    from engine.probe import ProbeConfig

    # With auto, each candidate replaces the kind.
    return ProbeConfig(kind="linear" if params.classifier == AUTO else params.classifier, optimizer=params.optimizer,
                       l2=params.l2, epochs=params.epochs, class_weighting=params.class_weighting, hidden=params.hidden,
                       seed=params.seed, layer_norm=layer_norm, neighbours=params.neighbours, trees=params.trees)


def point_blocks(block_size_m: float, cell_m: float, samples) -> tuple[int, str]:
    """Side in cells of the blocks grouping labelled points for validation, and the rule that set it."""
    from engine.validation import point_block_rule

    if block_size_m < 0:
        raise EngineError(f"block_size must be >= 0 metres, got {block_size_m}.")
    points = samples.from_point
    if not points.any():
        return 1, "whole polygons"
    if block_size_m > 0:
        cells = max(1, round(block_size_m / cell_m))
        return cells, f"point blocks of {cells} x {cells} cells ({block_size_m:g} m, given)"
    rule = point_block_rule(samples.rows[points], samples.cols[points], samples.y[points])
    return rule.block_cells, rule.describe(cell_m)


@dataclass
class LabelledEmbeddings:
    x: np.ndarray
    samples: Any  # engine.labels.LabelSamples (rows without valid embeddings removed)
    units: np.ndarray
    dropped_nodata: int
    rule: str = ""  # how the validation units were made

    def subset(self, keep: np.ndarray) -> "LabelledEmbeddings":
        from engine.labels import LabelSamples

        s = self.samples
        samples = LabelSamples(s.rows[keep], s.cols[keep], s.y[keep], s.groups[keep], s.from_point[keep],
                               s.class_names, s.shape, s.report)
        return LabelledEmbeddings(self.x[keep], samples, self.units[keep], self.dropped_nodata + int((~keep).sum()),
                                  self.rule)


def labelled_embeddings(ds, labels_path: str, class_field: str, layer: str | None, ignore_values, min_coverage: float,
                        block_size_m: float, reporter: Reporter, features=None) -> LabelledEmbeddings:
    """Rasterize the labels on the embeddings' grid and gather the embeddings under them."""
    from engine.labels import LabelSamples, check_trainable, drop_empty_classes, rasterize_labels, read_labels
    from engine.probe import spatial_units

    layer_data = read_labels(labels_path, class_field, ds.crs, layer, ignore_values)
    samples = rasterize_labels(layer_data, ds.transform, (ds.height, ds.width), min_coverage)
    x = features(samples.rows, samples.cols) if features else gather(ds, samples.rows, samples.cols)
    ok = np.isfinite(x).all(axis=1)
    dropped = int((~ok).sum())
    if dropped:
        reporter.log(f"{dropped} labelled cells have no embedding (nodata) and are left out.", "warning")
        samples = LabelSamples(samples.rows[ok], samples.cols[ok], samples.y[ok], samples.groups[ok],
                               samples.from_point[ok], samples.class_names, samples.shape,
                               dict(samples.report, cells_without_embedding=dropped))
        x = x[ok]
    samples, empty = drop_empty_classes(samples)
    if empty:
        reporter.log(f"Classes without any labelled cell on the raster are left out: {', '.join(empty)}.", "warning")
    check_trainable(samples)
    cells, rule = point_blocks(block_size_m, abs(ds.transform.a), samples)
    units = spatial_units(samples.groups, samples.from_point, samples.rows, samples.cols, cells)
    samples.report["point_block_cells"] = cells
    return LabelledEmbeddings(x, samples, units, dropped, rule)


def feature_matrices(data: LabelledEmbeddings, feature_sets: list[str], source: EmbeddingSource, ds,
                     reporter: Reporter) -> tuple[LabelledEmbeddings, dict[str, np.ndarray], dict[str, dict]]:
    """Every requested feature set over the labelled cells (name -> matrix, name -> record); cells
    where the inputs have no valid date are left out."""
    from engine.features import FeatureSet, combine, read_inputs_at

    sets = [FeatureSet.parse(name) for name in feature_sets]
    values = None
    if any(fs.input_parts for fs in sets):
        values, ok = read_inputs_at(source.inputs, _grid(ds), data.samples.rows, data.samples.cols)
        if not ok.all():
            reporter.log(f"{int((~ok).sum())} labelled cells have no valid input value on any date and are left out.",
                         "warning")
            data = data.subset(ok)
            values = [dataclasses.replace(v, values=v.values[ok]) for v in values]
    matrices, records = {}, {}
    for fs in sets:
        matrices[fs.name], records[fs.name] = combine(data.x, values or [], fs)
    return data, matrices, records


def fit_and_report(data: LabelledEmbeddings, params, source: EmbeddingSource, level: str, reporter: Reporter,
                   title: str, layer_norm: bool = False, ds=None, after_fit=None):
    """Validate (and choose) with engine.fitting, save the probe fitted on every label, write the
    report; returns (probe, metadata, summary). ``after_fit(probe, metadata)``, when given, runs
    before the report is written and returns further report sections (the map's areas).

    ``layer_norm``: normalise each vector first (on dense features the linear probe is then the
    segmentation head, LayerNorm + linear per sub-patch). ``ds``: the embeddings raster, needed
    for feature sets other than the embeddings."""
    from engine.fitting import check_feature_request, fit_honestly
    from engine.probe import ProbeMetadata, default_colors, save_probe
    from engine.report import candidates_html, learning_curve_html, write_fit_report

    check_feature_request(params.classifier, params.features)
    data, matrices, records = (feature_matrices(data, list(params.features), source, ds, reporter) if ds is not None
                               else (data, {"embeddings": data.x}, {"embeddings": {"set": "embeddings"}}))
    samples = data.samples
    names = list(samples.class_names)
    config = probe_config(params, layer_norm)
    colors = list(params.colors) if params.colors else default_colors(len(names))
    if len(colors) != len(names):
        raise EngineError(f"{len(colors)} colours for {len(names)} classes ({', '.join(names)}): give one per class.")
    for c in colors:
        hex_to_rgb(c)
    reporter.log(f"Fitting a {params.classifier} probe on {len(samples)} labelled cells, {len(names)} classes, "
                 f"features: {', '.join(matrices)}")
    outcome = fit_honestly(matrices, samples.y, data.units, samples.rows, samples.cols, names, config,
                           params.classifier, params.folds, params.buffer, params.seed, data.rule,
                           params.learning_curve, reporter=reporter)
    metrics = outcome.metrics(names)
    chosen = outcome.candidate
    notes = [f"Validation: {outcome.validation_rule}.",
             f"The saved probe ({chosen.name}) is refitted on all {len(samples)} labelled cells; the figures come "
             "from probes fitted without the held-out cells of each fold."] + outcome.notes
    report = samples.report
    if report.get("features_outside_extent"):
        notes.append(f"{report['features_outside_extent']} features lie outside the raster and were dropped.")
    if report.get("polygons_below_min_coverage"):
        notes.append(f"{report['polygons_below_min_coverage']} polygons cover no cell by {params.min_coverage:.0%} on their own.")
    if data.dropped_nodata:
        notes.append(f"{data.dropped_nodata} labelled cells had no embedding or input value (nodata) and were left out.")
    validation = {"rule": outcome.validation_rule, "classifier_requested": params.classifier,
                  "chosen": chosen.name, "candidates": outcome.selection.table() if outcome.selection else [],
                  "nested": outcome.selection.nested.summary() if outcome.selection else None,
                  "learning_curve": outcome.curve or []}
    metadata = ProbeMetadata(
        class_names=names, colors=colors, level=level, encoder_hash=source.encoder_hash, encoder=source.encoder,
        config=dataclasses.asdict(dataclasses.replace(config, kind=chosen.classifier)),
        metrics={k: metrics[k] for k in ("overall_accuracy", "macro_f1", "n_samples", "per_class", "confusion_matrix",
                                         "folds")} if metrics else {},
        labels={k: v for k, v in report.items() if not k.endswith("_ids")},
        features=records[chosen.features], validation=validation,
    )
    save_probe(params.output, outcome.classifier, metadata)
    counts = {"features": report["features_per_class"],
              "labelled cells": dict(zip(names, np.bincount(samples.y, minlength=len(names)).tolist()))}
    if outcome.folds is not None:
        tested = outcome.folds.test_fold >= 0
        counts["cells ever held out"] = dict(zip(names, np.bincount(samples.y[tested], minlength=len(names)).tolist()))
    if params.report:
        settings = {"labels": params.labels, "class field": params.class_field, "embeddings": str(source.path),
                    "encoder": source.encoder.get("checkpoint", ""), "encoder sha256": source.encoder_hash,
                    "embedding level": level, "feature sets": ", ".join(matrices), "min coverage": params.min_coverage,
                    "folds": params.folds, "buffer (cells)": params.buffer, "point block (cells)": report["point_block_cells"],
                    **{f"probe {k}": v for k, v in metadata.config.items()}}
        sections = []
        if outcome.selection:
            sections.append(("Candidates", candidates_html(validation["candidates"], validation["nested"])))
        if outcome.curve:
            sections.append(("Learning curve", learning_curve_html(outcome.curve)))
        if after_fit is not None:
            sections += after_fit(outcome.classifier, metadata)
        write_fit_report(params.report, title=title, metrics=metrics, class_names=names, colors=colors,
                         counts=counts, settings=settings, notes=notes, sections=sections)
    if metrics:
        spread = metrics["folds"]["macro_f1"]
        reporter.log(f"Validation ({chosen.name}): overall accuracy {metrics['overall_accuracy']:.3f}, macro-F1 "
                     f"{metrics['macro_f1']:.3f} on {metrics['n_samples']} held-out cells; per fold macro-F1 "
                     f"{spread['mean']:.3f} ± {spread['std']:.3f}")
    if not params.report and after_fit is not None:
        after_fit(outcome.classifier, metadata)
    summary = {
        "output": str(params.output),
        "report": str(params.report) if params.report else None,
        "class_names": names,
        "classifier": chosen.classifier,
        "features": chosen.features,
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


@operation("fit-probe", FitProbeParams, outputs=("output", "report", "classes", "confidence"),
           summary="Fit a probe on embeddings under labelled points/polygons; report held-out accuracy.")
def fit_probe_operation(params: FitProbeParams, reporter: Reporter) -> dict[str, Any]:
    """Labels (points or polygons, any CRS) are rasterized on the embeddings' grid (patches,
    sub-patches at the dense level, window cells at the tile level); a probe is fitted on the
    embeddings under them (at the dense level: LayerNorm + linear, the segmentation head).
    Accuracy is measured by spatial cross-validation on whole polygons / point blocks, buffered
    (engine.validation). Classifiers: linear, mlp, knn, random_forest, gradient_boosting, or auto
    (nested choice over classifier x feature set). Feature sets: embeddings, raw bands, temporal
    statistics, spectral indices, combinations (input features need a job). Optionally maps the
    area with the probe ("classes", "confidence")."""
    from engine.features import FeatureSet
    from engine.fitting import check_feature_request

    for key in ("output", "report", "classes", "confidence"):
        if getattr(params, key):
            check_output_path(getattr(params, key), key)
    check_feature_request(params.classifier, params.features)
    if any(FeatureSet.parse(f).input_parts for f in params.features) and not _is_job(params.embeddings):
        raise EngineError("Raw bands, statistics and indices are read from the job's input rasters: give a job as "
                          f"embeddings (not the raster '{params.embeddings}'), or use the feature set 'embeddings'.")
    with embedding_source(params.embeddings, params.model, reporter, level=params.embeddings_level) as source, \
            open_raster(source.path, "embeddings") as ds:
        data = labelled_embeddings(ds, params.labels, params.class_field, params.layer, params.ignore_values,
                                   params.min_coverage, params.block_size, reporter)
        level = ds.tags().get(LEVEL_TAG, "patch")  # rasters from before levels existed hold fused patch features

        def write_maps(probe, metadata) -> list[tuple[str, str]]:
            if not (params.classes or params.confidence):
                return []
            map_embeddings(ds, probe, metadata.class_names, metadata.colors, params.classes, params.confidence,
                           reporter, metadata.features, source.inputs)
            return [("Mapped area", mapped_area_html(params.classes, reporter))] if params.classes else []

        probe, metadata, summary = fit_and_report(data, params, source, level, reporter, "Probe fit report",
                                                  layer_norm=level == "dense", ds=ds, after_fit=write_maps)
    summary.update(classes=params.classes, confidence=params.confidence)
    reporter.log(f"Wrote {params.output}" + "".join(f", {p}" for p in (params.report, params.classes, params.confidence) if p))
    return summary


def mapped_area_html(classes_path: str, reporter: Reporter) -> str:
    """Pixel counts of the class map, which carry the map's errors: the estimate with confidence
    intervals needs a reference sample (sample-map, area-report)."""
    from engine.ops.area_ops import class_map_info, mapped_pixels
    from engine.report import mapped_area_table

    with open_raster(classes_path, "classes output") as ds:
        info = class_map_info(ds, classes_path)
        return mapped_area_table(info.names, mapped_pixels(ds, info, reporter), info.pixel_area, info.area_unit)


# ---------------------------------------------------------------- apply-probe


@dataclass
class ApplyProbeParams:
    probe: str = field(metadata={"help": "probe file written by fit-probe", "positional": True})
    embeddings: str | dict = field(metadata={"help": "a job JSON file (model, modalities and outputs \"classes\", "
                                             "\"confidence\", \"probabilities\") or an embeddings raster from 'embed'",
                                             "positional": True})
    classes: str | None = field(default=None, metadata={"help": "class map to write (only with an embeddings raster; a job names its outputs)"})
    confidence: str | None = field(default=None, metadata={"help": "confidence raster (only with an embeddings raster)"})
    model: str | None = field(default=None, metadata={"help": MODEL_HELP})
    embeddings_level: str = field(default=AUTO, metadata={"help": LEVEL_HELP})


@operation("apply-probe", ApplyProbeParams, outputs=("classes", "confidence", "probabilities"),
           summary="Map classes with a fitted probe: styled class map (colour table, class names).")
def apply_probe_operation(params: ApplyProbeParams, reporter: Reporter) -> dict[str, Any]:
    """With a job: tiled inference of the job's model with the probe as its head (outputs named by
    the job). With an embeddings raster: the probe on every pixel. Refuses embeddings of an
    encoder or level other than the probe's. The class map lies on the level's grid: patches,
    sub-patches for a dense probe (no resampling to the input pixels: for 10 m series a
    sub-patch is a pixel), window cells for a tile probe."""
    from engine.features import FeatureSet
    from engine.probe import ProbeHead, check_encoder, load_probe

    probe, meta = load_probe(params.probe)
    if FeatureSet.parse(meta.features.get("set", "embeddings")).input_parts:
        return apply_on_inputs(params, probe, meta, reporter)
    if _is_job(params.embeddings):
        from engine.inference import embedding_width, run_map
        from engine.io.job import load_job
        from engine.models.checkpoint import checkpoint_hash, load_checkpoint

        job = with_level(load_job(params.embeddings), params.embeddings_level)
        if params.classes or params.confidence:
            raise EngineError("With a job, name the outputs in the job's \"outputs\" (classes, confidence, probabilities).")
        if not any(getattr(job.outputs, k) for k in ("classes", "confidence", "probabilities")):
            raise EngineError('Name "classes" (and optionally "confidence", "probabilities") in the job\'s "outputs".')
        loaded = load_checkpoint(job.model)
        level = job.outputs.embeddings_level
        check_encoder(probe, meta, checkpoint_hash(job.model), level, embedding_width(loaded.model.embed_dim, level),
                      params.probe)
        metadata = dict(loaded.metadata, classes=meta.class_names, colors=[hex_to_rgb(c) for c in meta.colors])
        result = run_map(job, reporter, loaded.model, ProbeHead(probe), metadata, head_level=level)
        return dict(result, probe=str(params.probe))
    if not (params.classes or params.confidence):
        raise EngineError("Give 'classes' (and/or 'confidence'): the file(s) to write.")
    for key in ("classes", "confidence"):
        if getattr(params, key):
            check_output_path(getattr(params, key), key)
    with embedding_source(params.embeddings, params.model, reporter, level=params.embeddings_level) as source, \
            open_raster(source.path, "embeddings") as ds:
        check_encoder(probe, meta, source.encoder_hash, ds.tags().get(LEVEL_TAG, "patch"), ds.count, params.probe)
        map_embeddings(ds, probe, meta.class_names, meta.colors, params.classes, params.confidence, reporter)
        shape = {"width": ds.width, "height": ds.height, "crs": ds.crs.to_string() if ds.crs else None}
    reporter.log("Wrote " + ", ".join(p for p in (params.classes, params.confidence) if p))
    return {"classes": params.classes, "confidence": params.confidence, "probe": str(params.probe),
            "class_names": meta.class_names, **shape}


def apply_on_inputs(params: ApplyProbeParams, probe, meta, reporter: Reporter) -> dict[str, Any]:
    """A probe fitted on input features (raw bands, statistics, indices, maybe with embeddings):
    the job's embeddings are computed as a raster, then the probe reads them and the job's inputs
    window by window (map_embeddings)."""
    from engine.features import FeatureSet
    from engine.io.job import load_job
    from engine.probe import check_encoder

    feature_set = meta.features["set"]
    if not _is_job(params.embeddings):
        raise EngineError(f"The probe '{params.probe}' was fitted on the feature set {feature_set!r}, read from the input "
                          "rasters: give a job (model, modalities and outputs), not an embeddings raster.")
    job = with_level(load_job(params.embeddings), params.embeddings_level)
    if params.classes or params.confidence:
        raise EngineError("With a job, name the outputs in the job's \"outputs\" (classes, confidence).")
    outputs = job.outputs
    if outputs.probabilities:
        raise EngineError(f"A probe on {feature_set!r} writes classes and confidence, not per-class probabilities: "
                          "remove \"probabilities\" from the job's outputs.")
    if not (outputs.classes or outputs.confidence):
        raise EngineError('Name "classes" (and optionally "confidence") in the job\'s "outputs".')
    for key in ("classes", "confidence"):
        if getattr(outputs, key):
            check_output_path(getattr(outputs, key), key)
    with embedding_source(params.embeddings, None, reporter, level=params.embeddings_level) as source, \
            open_raster(source.path, "embeddings") as ds:
        input_columns = sum(not c.startswith("embedding:") for c in meta.features.get("columns", []))
        width = input_columns + (ds.count if FeatureSet.parse(feature_set).uses_embeddings else 0)
        check_encoder(probe, meta, source.encoder_hash, ds.tags().get(LEVEL_TAG, "patch"), width, params.probe)
        map_embeddings(ds, probe, meta.class_names, meta.colors, outputs.classes, outputs.confidence, reporter,
                       meta.features, source.inputs)
        shape = {"width": ds.width, "height": ds.height, "crs": ds.crs.to_string() if ds.crs else None}
    reporter.log("Wrote " + ", ".join(p for p in (outputs.classes, outputs.confidence) if p))
    return {"classes": outputs.classes, "confidence": outputs.confidence, "probe": str(params.probe),
            "class_names": meta.class_names, "features": feature_set, **shape}


# ---------------------------------------------------------------- change


@dataclass
class ChangeParams:
    before: str | dict = field(metadata={"help": "first period: " + EMBEDDINGS_HELP, "positional": True})
    after: str | dict = field(metadata={"help": "second period, same grid: " + EMBEDDINGS_HELP, "positional": True})
    magnitude: str = field(metadata={"help": "change magnitude to write (float32 GeoTIFF)", "positional": True})
    change: str | None = field(default=None, metadata={"help": "binary change layer to write (uint8: 1 change, 0 none, 255 nodata)"})
    metric: str = field(default="cosine", metadata={"help": "distance between embeddings: cosine or euclidean"})
    threshold: float | None = field(default=None, metadata={"help": "change threshold on the magnitude (default: Otsu's)"})
    model: str | None = field(default=None, metadata={"help": MODEL_HELP})
    labels: str | None = field(default=None, metadata={"help": "labelled change / no-change points or polygons: fit a change probe"})
    class_field: str = field(default="class", metadata={"help": "class field of the change labels"})
    probe_output: str | None = field(default=None, metadata={"help": "where to save the change probe (with labels)"})
    report: str | None = field(default=None, metadata={"help": "HTML report of the change probe (with labels)"})
    min_coverage: float = field(default=0.5, metadata={"help": "share of a cell a polygon must cover to label it"})
    folds: int = field(default=5, metadata={"help": FOLDS_HELP})
    block_size: float = field(default=0.0, metadata={"help": "side in metres of the blocks grouping points (0: a tenth of the area)"})
    l2: float = field(default=1e-3, metadata={"help": "L2 penalty of the change probe"})
    seed: int = field(default=0, metadata={"help": "random seed of the split and the fit"})
    embeddings_level: str = field(default=AUTO, metadata={"help": "level of both periods' embeddings; " + LEVEL_HELP})


CHANGE_COLORS = {0: (220, 220, 220, 255), 1: (228, 26, 28, 255), 255: (0, 0, 0, 0)}


@operation("change", ChangeParams, outputs=("magnitude", "change", "probe_output", "report"),
           summary="Change between two periods: embedding distance per patch, Otsu threshold, optional change probe.")
def change_operation(params: ChangeParams, reporter: Reporter) -> dict[str, Any]:
    """Magnitude = distance between the two periods' embeddings per cell of their level (patch,
    sub-patch at the dense level, window at the tile level; both periods the same); the binary layer
    thresholds it (Otsu unless a threshold is given). With change labels, a probe fitted on
    |after - before| and the mean embedding gives the binary layer instead."""
    from engine.change import change_features, change_layer, change_magnitude
    from engine.io.writers import geotiff_profile

    for key in ("magnitude", "change", "probe_output", "report"):
        if getattr(params, key):
            check_output_path(getattr(params, key), key)
    if params.labels and not params.probe_output:
        raise EngineError("With change labels, give 'probe_output': where to save the change probe.")
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(embedding_source(params.before, params.model, reporter, "before", params.embeddings_level))
        b = stack.enter_context(embedding_source(params.after, params.model, reporter, "after", params.embeddings_level))
        if a.encoder_hash != b.encoder_hash:
            raise EngineError("The two periods were embedded by different models: embeddings are only comparable "
                              "from one encoder. Use the same checkpoint for both.")
        before = stack.enter_context(open_raster(a.path, "before"))
        after = stack.enter_context(open_raster(b.path, "after"))
        levels = [ds.tags().get(LEVEL_TAG, "patch") for ds in (before, after)]
        if levels[0] != levels[1]:
            raise EngineError(f"The two periods hold embeddings of different levels ({levels[0]} vs {levels[1]}): "
                              'give both the same "embeddings_level".')
        if (before.crs, before.transform, before.shape, before.count) != (after.crs, after.transform, after.shape, after.count):
            raise EngineError(
                f"The two periods are on different grids ({before.width}x{before.height} vs {after.width}x{after.height}, "
                "or another CRS/origin/width): give both jobs the same \"extent\", \"crs\" and patch size."
            )
        grid = _grid(before)
        # One value per cell (patch, sub-patch or window): the magnitude fits in memory for Otsu's histogram.
        magnitude = np.full(before.shape, np.nan, np.float32)
        windows = list(_blocks(before.height, before.width))
        steps = reporter.steps(len(windows), "Comparing periods", 0, 60)
        for window in windows:
            x, y = before.read(window=window).astype(np.float32), after.read(window=window).astype(np.float32)
            ok = _valid(before, x) & _valid(after, y)
            m = change_magnitude(np.moveaxis(x, 0, -1), np.moveaxis(y, 0, -1), params.metric).astype(np.float32)
            m[~ok] = np.nan
            magnitude[window.row_off:window.row_off + window.height, window.col_off:window.col_off + window.width] = m
            steps.advance()
        binary, threshold = change_layer(magnitude, params.threshold)
        summary: dict[str, Any] = {"magnitude": params.magnitude, "change": params.change, "metric": params.metric,
                                   "threshold": threshold, "threshold_method": "given" if params.threshold is not None else "otsu"}
        if params.labels:
            def features(rows, cols):
                return change_features(gather(before, rows, cols), gather(after, rows, cols))

            data = labelled_embeddings(before, params.labels, params.class_field, None, (), params.min_coverage,
                                       params.block_size, reporter, features)
            probe_params = dataclasses.replace(
                FitProbeParams(labels=params.labels, embeddings="", output=params.probe_output), class_field=params.class_field,
                report=params.report, min_coverage=params.min_coverage, folds=params.folds,
                block_size=params.block_size, l2=params.l2, seed=params.seed,
            )
            source = EmbeddingSource(a.path, a.encoder_hash, dict(a.encoder, change_features="|after-before|, mean"))
            probe, meta, fit_summary = fit_and_report(data, probe_params, source, levels[0], reporter, "Change probe report")
            names = meta.class_names
            summary.update(probe_output=params.probe_output, report=params.report, change_classes=names,
                           probe_overall_accuracy=fit_summary["overall_accuracy"], probe_macro_f1=fit_summary["macro_f1"])
            binary = np.full(before.shape, 255, np.uint8)
            for window in windows:
                rows, cols = np.mgrid[window.row_off:window.row_off + window.height, window.col_off:window.col_off + window.width]
                f = features(rows.ravel(), cols.ravel())
                ok = np.isfinite(f).all(axis=1)
                labels = np.full(rows.size, 255, np.uint8)
                if ok.any():
                    labels[ok] = probe.predict(f[ok]).astype(np.uint8)
                binary[rows, cols] = labels.reshape(rows.shape)
            summary["threshold_method"] = "change probe"
        with atomic_output(params.magnitude, "magnitude") as temp:
            with rasterio.open(temp, "w", **geotiff_profile(grid, 1, "float32", math.nan)) as out:
                out.write(magnitude, 1)
                out.set_band_description(1, f"change magnitude ({params.metric})")
                out.update_tags(CHANGE_THRESHOLD=str(threshold), METRIC=params.metric)
        if params.change:
            with atomic_output(params.change, "change") as temp:
                with rasterio.open(temp, "w", **geotiff_profile(grid, 1, "uint8", 255)) as out:
                    out.write(binary, 1)
                    if params.labels:
                        palette = {k: (*hex_to_rgb(c), 255) for k, c in enumerate(meta.colors)}
                        out.write_colormap(1, {**palette, 255: (0, 0, 0, 0)})
                        out.update_tags(1, CLASS_NAMES=json.dumps(names), **{f"CLASS_{k}": n for k, n in enumerate(names)})
                    else:
                        out.write_colormap(1, CHANGE_COLORS)
                        out.update_tags(1, CLASS_0="no change", CLASS_1="change")
                    out.set_band_description(1, "change")
    valid = np.isfinite(magnitude)
    summary["changed_share"] = float((binary[valid] == 1).mean()) if valid.any() and not params.labels else None
    reporter.log(f"Change threshold {threshold:.4g} ({summary['threshold_method']}); wrote "
                 + ", ".join(str(p) for p in (params.magnitude, params.change) if p))
    return summary
