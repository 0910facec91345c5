"""Change between two periods: the change operation.

Magnitude = distance between the two periods' embeddings (engine.probes.sources) per cell of
their level; the binary layer thresholds it (Otsu's, engine.analysis.change) or, with change
labels, comes from a change probe fitted on |after - before| and the mean embedding.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio

from engine.analysis.change import change_features, change_layer, change_magnitude
from engine.errors import EngineError
from engine.io.atomic import atomic_output, check_output_path
from engine.io.grid import Grid
from engine.io.raster import open_raster
from engine.io.writers import geotiff_profile, parse_color
from engine.probes.classifiers import ProbeConfig
from engine.probes.fit import FitSettings
from engine.probes.plan import FitOutputs, FitPlan, LabelRequest
from engine.probes.sources import (
    EMBEDDINGS_HELP,
    LEVEL_HELP,
    EmbeddingOptions,
    EmbeddingSource,
    blocks,
    embedding_source,
    gather,
    raster_level,
    read_block,
)
from engine.probes.workflow import fit_and_report, label_cells
from engine.runtime.progress import Reporter
from engine.runtime.registry import operation

CHANGE_COLORS = {0: (220, 220, 220, 255), 1: (228, 26, 28, 255), 255: (0, 0, 0, 0)}


@dataclass
class ChangeParams(EmbeddingOptions):
    before: str | dict = field(metadata={"help": "first period: " + EMBEDDINGS_HELP, "positional": True})
    after: str | dict = field(metadata={"help": "second period, same grid: " + EMBEDDINGS_HELP, "positional": True})
    magnitude: str = field(metadata={"help": "change magnitude to write (float32 GeoTIFF)", "positional": True})
    change: str | None = field(
        default=None, metadata={"help": "binary change layer to write (uint8: 1 change, 0 none, 255 nodata)"}
    )
    metric: str = field(default="cosine", metadata={"help": "distance between embeddings: cosine or euclidean"})
    threshold: float | None = field(
        default=None, metadata={"help": "change threshold on the magnitude (default: Otsu's)"}
    )
    labels: str | None = field(
        default=None,
        metadata={"help": "labelled change / no-change points or polygons: fit a change probe", "role": "input"},
    )
    class_field: str = field(default="class", metadata={"help": "class field of the change labels"})
    probe_output: str | None = field(default=None, metadata={"help": "where to save the change probe (with labels)"})
    report: str | None = field(default=None, metadata={"help": "HTML report of the change probe (with labels)"})
    min_coverage: float = field(default=0.5, metadata={"help": "share of a cell a polygon must cover to label it"})
    folds: int = field(default=5, metadata={"help": "spatial cross-validation folds of the change probe"})
    block_size: float = field(
        default=0.0,
        metadata={
            "help": "side in metres of the blocks grouping points (0: the "
            "labels' autocorrelation range, at least twice their spacing)"
        },
    )
    l2: float = field(default=1e-3, metadata={"help": "L2 penalty of the change probe"})
    seed: int = field(default=0, metadata={"help": "random seed of the split and the fit"})
    embeddings_level: str = field(
        default="auto", kw_only=True, metadata={"help": "level of both periods' embeddings; " + LEVEL_HELP}
    )


def _open_periods(stack: contextlib.ExitStack, params: ChangeParams, reporter: Reporter):
    """The two periods' sources and open rasters, checked comparable: one encoder, one level, one grid."""
    a = stack.enter_context(embedding_source(params.before, params.model, reporter, "before", params.embeddings_level))
    b = stack.enter_context(embedding_source(params.after, params.model, reporter, "after", params.embeddings_level))
    if a.encoder_hash != b.encoder_hash:
        raise EngineError(
            "The two periods were embedded by different models: embeddings are only comparable "
            "from one encoder. Use the same checkpoint for both."
        )
    before = stack.enter_context(open_raster(a.path, "before"))
    after = stack.enter_context(open_raster(b.path, "after"))
    levels = [raster_level(ds) for ds in (before, after)]
    if levels[0] != levels[1]:
        raise EngineError(
            f"The two periods hold embeddings of different levels ({levels[0]} vs {levels[1]}): "
            'give both the same "embeddings_level".'
        )
    if (before.crs, before.transform, before.shape, before.count) != (
        after.crs,
        after.transform,
        after.shape,
        after.count,
    ):
        raise EngineError(
            f"The two periods are on different grids ({before.width}x{before.height} vs {after.width}x{after.height}, "
            "or another CRS/origin/width): give both jobs the same \"extent\", \"crs\" and patch size."
        )
    return a, before, after, levels[0]


def _magnitude(before, after, metric: str, reporter: Reporter) -> np.ndarray:
    """One value per cell (patch, sub-patch or window): it fits in memory for Otsu's histogram."""
    magnitude = np.full(before.shape, np.nan, np.float32)
    windows = list(blocks(before.height, before.width))
    steps = reporter.steps(len(windows), "Comparing periods", 0, 60)
    for window in windows:
        (x, x_ok), (y, y_ok) = read_block(before, window), read_block(after, window)
        m = change_magnitude(np.moveaxis(x, 0, -1), np.moveaxis(y, 0, -1), metric).astype(np.float32)
        m[~(x_ok & y_ok)] = np.nan
        magnitude[window.row_off : window.row_off + window.height, window.col_off : window.col_off + window.width] = m
        steps.advance()
    return magnitude


def _change_probe(params: ChangeParams, source: EmbeddingSource, before, after, level: str, reporter: Reporter):
    """A probe on change features fitted on the change labels; returns (binary layer, metadata, summary)."""

    def features(rows, cols):
        return change_features(gather(before, rows, cols), gather(after, rows, cols))

    plan = FitPlan(
        labels=LabelRequest(params.labels, params.class_field, None, (), params.min_coverage, params.block_size),
        embeddings=None,
        fit=FitSettings(ProbeConfig(l2=params.l2, seed=params.seed), folds=params.folds, seed=params.seed),
        outputs=FitOutputs(params.probe_output, params.report),
        title="Change probe report",
    )
    data = label_cells(before, plan.labels, reporter, features)
    source = EmbeddingSource(
        source.path, source.encoder_hash, dict(source.encoder, change_features="|after-before|, mean")
    )
    probe, meta, fit_summary = fit_and_report(plan, data, source, level, reporter)
    binary = np.full(before.shape, 255, np.uint8)
    for window in blocks(before.height, before.width):
        rows, cols = np.mgrid[
            window.row_off : window.row_off + window.height, window.col_off : window.col_off + window.width
        ]
        f = features(rows.ravel(), cols.ravel())
        ok = np.isfinite(f).all(axis=1)
        labels = np.full(rows.size, 255, np.uint8)
        if ok.any():
            labels[ok] = probe.predict(f[ok]).astype(np.uint8)
        binary[rows, cols] = labels.reshape(rows.shape)
    return binary, meta, fit_summary


def _write_change(path: str, grid, binary: np.ndarray, names: list[str] | None, colors: list[str] | None) -> None:
    """The binary (or change probe's) layer, with its colour table and class names."""
    with atomic_output(path, "change") as temp:
        with rasterio.open(temp, "w", **geotiff_profile(grid, 1, "uint8", 255)) as out:
            out.write(binary, 1)
            if names is not None:
                palette = {k: (*parse_color(c), 255) for k, c in enumerate(colors)}
                out.write_colormap(1, {**palette, 255: (0, 0, 0, 0)})
                out.update_tags(1, CLASS_NAMES=json.dumps(names), **{f"CLASS_{k}": n for k, n in enumerate(names)})
            else:
                out.write_colormap(1, CHANGE_COLORS)
                out.update_tags(1, CLASS_0="no change", CLASS_1="change")
            out.set_band_description(1, "change")


@operation(
    "change",
    ChangeParams,
    outputs=("magnitude", "change", "probe_output", "report"),
    summary="Change between two periods: embedding distance per patch, Otsu threshold, optional change probe.",
)
def change_operation(params: ChangeParams, reporter: Reporter) -> dict[str, Any]:
    """Magnitude = distance between the two periods' embeddings per cell of their level (patch,
    sub-patch at the dense level, window at the tile level; both periods the same); the binary layer
    thresholds it (Otsu unless a threshold is given). With change labels, a probe fitted on
    |after - before| and the mean embedding gives the binary layer instead."""
    from engine.mapping.outputs import open_atomic, open_float_raster  # lazy: keeps torch out of --help

    for key in ("magnitude", "change", "probe_output", "report"):
        if getattr(params, key):
            check_output_path(getattr(params, key), key)
    if params.labels and not params.probe_output:
        raise EngineError("With change labels, give 'probe_output': where to save the change probe.")
    names = colors = None
    with contextlib.ExitStack() as stack:
        source, before, after, level = _open_periods(stack, params, reporter)
        grid = Grid.of(before)
        magnitude = _magnitude(before, after, params.metric, reporter)
        binary, threshold = change_layer(magnitude, params.threshold)
        summary: dict[str, Any] = {
            "magnitude": params.magnitude,
            "change": params.change,
            "metric": params.metric,
            "threshold": threshold,
            "threshold_method": "given" if params.threshold is not None else "otsu",
        }
        if params.labels:
            binary, meta, fit = _change_probe(params, source, before, after, level, reporter)
            names, colors = meta.class_names, meta.colors
            summary.update(
                probe_output=params.probe_output,
                report=params.report,
                change_classes=names,
                probe_overall_accuracy=fit["overall_accuracy"],
                probe_macro_f1=fit["macro_f1"],
                threshold_method="change probe",
            )
        with contextlib.ExitStack() as files:
            out = open_atomic(
                files,
                params.magnitude,
                "magnitude",
                lambda temp: open_float_raster(temp, grid, [f"change magnitude ({params.metric})"]),
            )
            out.write(magnitude, 1)
            out.update_tags(CHANGE_THRESHOLD=str(threshold), METRIC=params.metric)
        if params.change:
            _write_change(params.change, grid, binary, names, colors)
    valid = np.isfinite(magnitude)
    summary["changed_share"] = float((binary[valid] == 1).mean()) if valid.any() and not params.labels else None
    reporter.log(
        f"Change threshold {threshold:.4g} ({summary['threshold_method']}); wrote "
        + ", ".join(str(p) for p in (params.magnitude, params.change) if p)
    )
    return summary
