"""A fitted probe applied: over an embeddings raster block by block, or as the head of a job's tiled inference."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from engine.analysis.class_map import class_map_info, mapped_pixels
from engine.errors import EngineError
from engine.io.atomic import check_output_path
from engine.io.grid import Grid
from engine.io.job import load_job
from engine.io.raster import open_raster
from engine.io.writers import parse_color
from engine.mapping.levels import level as level_of
from engine.probes.features import FeatureSet, check_columns, combine, read_inputs
from engine.probes.plan import ApplyPlan
from engine.probes.probe_file import check_encoder, load_probe
from engine.probes.report import mapped_area_table
from engine.probes.sources import blocks, embedding_source, is_job, raster_level, read_block, with_level
from engine.runtime.progress import Reporter


def map_embeddings(
    ds,
    probe,
    class_names: list[str],
    colors: list[str],
    classes_path: str | None,
    confidence_path: str | None,
    reporter: Reporter,
    features: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    probabilities_path: str | None = None,
) -> None:
    """Apply a probe to an embeddings raster block by block: styled class map (+ confidence).
    A probe on input features (its ``features`` record: raw bands, statistics, indices) reads the
    job's ``inputs`` on the embeddings' grid, window by window, and builds the same columns."""
    import torch  # lazy: keeps torch out of --help

    from engine.mapping.outputs import open_class_outputs, write_class_outputs  # lazy: keeps torch out of --help

    feature_set = FeatureSet.parse(features["set"]) if features else FeatureSet(("embeddings",))
    grid = Grid.of(ds)

    files = {
        k: p
        for k, p in (("classes", classes_path), ("confidence", confidence_path), ("probabilities", probabilities_path))
        if p
    }
    windows = list(blocks(ds.height, ds.width))
    steps = reporter.steps(len(windows), "Applying the probe", 0, 100)
    with contextlib.ExitStack() as stack:
        datasets = open_class_outputs(stack, files, grid, class_names, [parse_color(c) for c in colors])
        for window in windows:
            with steps.part():  # a block of a large probe (a vote with forests) takes a while
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


def mapped_area_html(classes_path: str, reporter: Reporter) -> str:
    """Pixel counts of the class map, which carry the map's errors: the estimate with confidence
    intervals needs a reference sample (sample-map, area-report)."""
    with open_raster(classes_path, "classes output") as ds:
        info = class_map_info(ds, classes_path)
        return mapped_area_table(info.names, mapped_pixels(ds, info, reporter), info.pixel_area, info.area_unit)


def map_job_with_probe(
    job, probe_path: str, probe, meta, reporter: Reporter, level: str | None = None
) -> dict[str, Any]:
    """The job's model embeds and the probe classifies, in one streaming pass: the probe is the head
    of tiled inference (no embeddings raster unless the job names one). ``level``: the embeddings the
    probe reads (None: the probe's own). A probe on input features (raw bands, statistics, indices)
    also reads the job's rasters: its embeddings go through a temporary raster (map_embeddings)."""
    from engine.mapping.run import run_map  # lazy: keeps torch out of --help
    from engine.models.checkpoint import checkpoint_hash, load_checkpoint  # lazy: keeps torch out of --help
    from engine.probes.head import ProbeHead  # lazy: keeps torch out of --help

    if FeatureSet.parse(meta.features.get("set", "embeddings")).input_parts:
        return _apply_on_inputs(job, probe_path, probe, meta, reporter)
    if not any(getattr(job.outputs, k) for k in ("classes", "confidence", "probabilities")):
        raise EngineError('Name "classes" (and optionally "confidence", "probabilities") in the job\'s "outputs".')
    level = level or meta.level
    loaded = load_checkpoint(job.model)
    check_encoder(
        probe, meta, checkpoint_hash(job.model), level, level_of(level).width(loaded.model.embed_dim), probe_path
    )
    metadata = dict(loaded.metadata, classes=meta.class_names, colors=[parse_color(c) for c in meta.colors])
    result = run_map(job, reporter, loaded.model, ProbeHead(probe, level), metadata)
    return dict(result, probe=str(probe_path))


def _apply_on_inputs(job, probe_path: str, probe, meta, reporter: Reporter) -> dict[str, Any]:
    """A probe fitted on input features (raw bands, statistics, indices, maybe with embeddings):
    the job's embeddings are computed as a raster, then the probe reads them and the job's inputs
    window by window (map_embeddings)."""
    feature_set = meta.features["set"]
    outputs = job.outputs
    if not (outputs.classes or outputs.confidence or outputs.probabilities):
        raise EngineError('Name "classes" (and optionally "confidence", "probabilities") in the job\'s "outputs".')
    for key in ("classes", "confidence", "probabilities"):
        if getattr(outputs, key):
            check_output_path(getattr(outputs, key), key)
    with (
        embedding_source(
            job,
            None,
            reporter,
            level=job.outputs.embeddings_level,
            needed=FeatureSet.parse(feature_set).uses_embeddings,
        ) as source,
        open_raster(source.path, "embeddings") as ds,
    ):
        input_columns = sum(not c.startswith("embedding:") for c in meta.features.get("columns", []))
        width = input_columns + (ds.count if FeatureSet.parse(feature_set).uses_embeddings else 0)
        check_encoder(probe, meta, source.encoder_hash, raster_level(ds), width, probe_path)
        map_embeddings(
            ds,
            probe,
            meta.class_names,
            meta.colors,
            outputs.classes,
            outputs.confidence,
            reporter,
            meta.features,
            source.inputs,
            outputs.probabilities,
        )
        shape = {"width": ds.width, "height": ds.height, "crs": ds.crs.to_string() if ds.crs else None}
    reporter.log("Wrote " + ", ".join(p for p in (outputs.classes, outputs.confidence, outputs.probabilities) if p))
    return {
        "classes": outputs.classes,
        "confidence": outputs.confidence,
        "probabilities": outputs.probabilities,
        "probe": str(probe_path),
        "class_names": meta.class_names,
        "features": feature_set,
        **shape,
    }


def apply_probe(plan: ApplyPlan, reporter: Reporter) -> dict[str, Any]:
    """apply-probe's steps: the probe read and checked against the embeddings, then mapped as the head of
    the job's tiled inference (the job names its outputs) or over the embeddings raster."""
    probe, meta = load_probe(plan.probe)
    on_inputs = FeatureSet.parse(meta.features.get("set", "embeddings")).input_parts
    if on_inputs and not is_job(plan.embeddings.value):
        raise EngineError(
            f"The probe '{plan.probe}' was fitted on the feature set {meta.features['set']!r}, read "
            "from the input rasters: give a job (model, modalities and outputs), not an embeddings raster."
        )
    if is_job(plan.embeddings.value):
        if plan.classes or plan.confidence:
            raise EngineError(
                "With a job, name the outputs in the job's \"outputs\" (classes, confidence, probabilities)."
            )
        job = with_level(load_job(plan.embeddings.value), plan.embeddings.level)
        return map_job_with_probe(job, plan.probe, probe, meta, reporter, job.outputs.embeddings_level)
    if not (plan.classes or plan.confidence):
        raise EngineError("Give 'classes' (and/or 'confidence'): the file(s) to write.")
    for key in ("classes", "confidence"):
        if getattr(plan, key):
            check_output_path(getattr(plan, key), key)
    with (
        embedding_source(plan.embeddings.value, plan.embeddings.model, reporter, level=plan.embeddings.level) as source,
        open_raster(source.path, "embeddings") as ds,
    ):
        check_encoder(probe, meta, source.encoder_hash, raster_level(ds), ds.count, plan.probe)
        map_embeddings(ds, probe, meta.class_names, meta.colors, plan.classes, plan.confidence, reporter)
        shape = {"width": ds.width, "height": ds.height, "crs": ds.crs.to_string() if ds.crs else None}
    reporter.log("Wrote " + ", ".join(p for p in (plan.classes, plan.confidence) if p))
    return {
        "classes": plan.classes,
        "confidence": plan.confidence,
        "probe": str(plan.probe),
        "class_names": meta.class_names,
        **shape,
    }
