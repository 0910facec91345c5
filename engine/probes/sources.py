"""Where a probe's or a change map's embeddings come from, and reading them back.

Embeddings come either from a job (engine.io.job: model + modalities; computed with tiled
inference, engine.mapping) or from an embeddings raster written by ``embed`` (one band per
dimension, its level and encoder in its tags). ``EmbeddingOptions`` holds the parameters
every operation reading embeddings shares (the checkpoint of a raster, the level).

Rasters are read block by block (``blocks``, ``gather``); a cell is valid when every band
holds data (engine.io.raster.valid_mask). ``labelled_embeddings`` gathers
the embeddings under labelled points and polygons, rasterized on the embeddings' own grid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from engine.errors import EngineError
from engine.io.job import Outputs, is_job, load_job
from engine.io.raster import open_raster, valid_mask
from engine.mapping.levels import EMBEDDING_LEVEL_TAG, LEVEL_NAMES, LEVELS
from engine.mapping.levels import level as level_of
from engine.probes.fit import AUTO  # the one spelling of "choose for me", a classifier or a level
from engine.probes.folds import point_block_rule, spatial_units
from engine.probes.labels import LabelSamples, check_trainable, drop_empty_classes, rasterize_labels, read_labels
from engine.runtime.progress import Reporter

# Tags written into embedding rasters computed here, so that they can be reused alone.
HASH_TAG, CHECKPOINT_TAG = "ENCODER_SHA256", "ENCODER_CHECKPOINT"
BLOCK = 256  # cells per side of the windows read from embedding rasters

EMBEDDINGS_HELP = (
    "embeddings: a job JSON file (model + modalities; its outputs are ignored except "
    "\"embeddings\", where the embeddings are kept) or an embeddings raster written by 'embed'"
)
MODEL_HELP = "checkpoint the embeddings raster was computed with (only for a raster written by 'embed')"
LEVEL_HELP = (
    "embedding level: "
    + ", ".join(f"{lv.name} ({lv.help})" for lv in LEVELS.values())
    + "; auto: the job's outputs.embeddings_level, or the raster's own level (another level given with "
    "a raster is refused)"
)


@dataclass(kw_only=True)
class EmbeddingOptions:
    """Parameters shared by every operation that reads embeddings (fit-probe, apply-probe, change)."""

    model: str | None = field(default=None, metadata={"help": MODEL_HELP, "role": "input"})
    embeddings_level: str = field(default=AUTO, metadata={"help": LEVEL_HELP})


@dataclass
class EmbeddingSource:
    path: Path
    encoder_hash: str
    encoder: dict[str, Any]
    inputs: dict[str, Any] | None = None  # a job's resolved modalities, for input feature sets (engine.probes.features)


def check_level(value: str) -> str:
    if value != AUTO and value not in LEVEL_NAMES:
        raise EngineError(f"Unknown embeddings_level {value!r}: use {AUTO} or one of {', '.join(LEVEL_NAMES)}.")
    return value


def raster_level(ds) -> str:
    """The level of an embeddings raster (rasters from before levels existed hold fused patch features)."""
    return ds.tags().get(EMBEDDING_LEVEL_TAG, "patch")


def with_level(job, value: str):
    """The job at level ``value`` (auto: its own outputs.embeddings_level)."""
    if check_level(value) == AUTO:
        return job
    return dataclasses.replace(job, outputs=dataclasses.replace(job.outputs, embeddings_level=value))


def _raster_source(value: str, model: str | None, setting: str, level: str, reporter: Reporter) -> EmbeddingSource:
    with open_raster(value, setting) as ds:
        tags, own = ds.tags(), raster_level(ds)
    if level != AUTO and level != own:
        raise EngineError(
            f"The {setting} raster '{value}' holds {own}-level embeddings, not {level}: "
            f'compute them again at that level, or leave embeddings_level at "{AUTO}".'
        )
    if tags.get(HASH_TAG):
        digest, checkpoint = tags[HASH_TAG], tags.get(CHECKPOINT_TAG, "")
    elif model:
        # Only here: PyTorch takes seconds to import on a loaded machine (said first), a raster that
        # names its encoder does not need it.
        reporter.log(f"Identifying the encoder of the embeddings: hashing {Path(model).name} with PyTorch")
        from engine.models.checkpoint import checkpoint_hash  # lazy: keeps torch out of this module

        digest, checkpoint = checkpoint_hash(model), str(model)
    else:
        raise EngineError(
            f"The embeddings raster '{value}' does not say which model computed it: give that checkpoint "
            "as 'model', or give a job instead of the raster."
        )
    return EmbeddingSource(Path(value), digest, {"name": Path(checkpoint).stem or "unknown", "checkpoint": checkpoint})


@contextlib.contextmanager
def embedding_source(
    value: str | dict,
    model: str | None,
    reporter: Reporter,
    setting: str = "embeddings",
    level: str = AUTO,
    needed: bool = True,
) -> Iterator[EmbeddingSource]:
    """Yield the embeddings raster for ``value`` (computing it when ``value`` is a job, at ``level``
    unless auto: the job's own). ``needed`` False (no feature set reads embeddings): for a job, the
    encoder does not run; a one-band placeholder of zeros on the level's grid stands in, which
    places the labels and the input features on the grid the embeddings would have had."""
    check_level(level)
    if not is_job(value):
        yield _raster_source(value, model, setting, level, reporter)
        return

    job = with_level(load_job(value), level)
    # Said before PyTorch's import, seconds on a loaded machine (the fit's preload thread may have begun it:
    # whether it is done cannot be told from here).
    reporter.log(f"Loading the encoder {Path(job.model).name}")
    from engine.mapping.plan import resolve_inputs  # lazy: keeps torch out of this module
    from engine.mapping.run import run_map  # lazy: keeps torch out of this module
    from engine.models.checkpoint import checkpoint_hash, load_checkpoint  # lazy: keeps torch out of this module

    loaded = load_checkpoint(job.model)
    digest = checkpoint_hash(job.model)
    with tempfile.TemporaryDirectory(prefix="omnisat-embeddings-") as folder:
        if not needed:
            yield _placeholder_source(job, loaded, digest, Path(folder) / "grid.tif", reporter)
            return
        target = job.outputs.embeddings or str(Path(folder) / "embeddings.tif")
        job = dataclasses.replace(
            job,
            outputs=Outputs(
                embeddings=target,
                embeddings_dtype=job.outputs.embeddings_dtype,
                embeddings_level=job.outputs.embeddings_level,
            ),
        )
        reporter.log(f"Computing embeddings with {job.model} ({', '.join(job.modalities)})")
        result = run_map(job, reporter, loaded.model, None, loaded.metadata)
        with rasterio.open(target, "r+") as ds:
            ds.update_tags(
                **{HASH_TAG: digest, CHECKPOINT_TAG: str(job.model), EMBEDDING_LEVEL_TAG: job.outputs.embeddings_level}
            )
        yield EmbeddingSource(
            Path(target),
            digest,
            {
                "name": Path(job.model).stem,
                "checkpoint": str(job.model),
                "patch_size_m": result["patch_size_m"],
                "modalities": list(job.modalities),
                "provenance": loaded.metadata.get("provenance") or {},
            },
            resolve_inputs(job, loaded.model),
        )


def _placeholder_source(job, loaded, digest: str, target: Path, reporter: Reporter) -> EmbeddingSource:
    """A zero-filled one-band raster on the grid the job's embeddings level would have (sparse:
    GDAL reads unwritten blocks as 0, so nothing of the area's size is held or written)."""
    from engine.mapping.plan import plan_geometry, resolve_inputs  # lazy: keeps torch out of this module

    inputs = resolve_inputs(job, loaded.model)
    chosen = level_of(job.outputs.embeddings_level)
    geometry = plan_geometry(job, loaded.model, inputs, (chosen,))
    grid = chosen.grid(geometry)
    reporter.log(
        "No feature set reads embeddings: the encoder does not run"
        + (f" and {job.outputs.embeddings} is not written" if job.outputs.embeddings else "")
    )
    with rasterio.open(
        target,
        "w",
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=1,
        dtype="float32",
        crs=grid.crs,
        transform=grid.transform,
        tiled=True,
        SPARSE_OK="TRUE",
    ) as ds:
        ds.update_tags(
            **{HASH_TAG: digest, CHECKPOINT_TAG: str(job.model), EMBEDDING_LEVEL_TAG: job.outputs.embeddings_level}
        )
    return EmbeddingSource(
        target,
        digest,
        {
            "name": Path(job.model).stem,
            "checkpoint": str(job.model),
            "patch_size_m": geometry.patch_size_m,
            "modalities": list(job.modalities),
            "provenance": loaded.metadata.get("provenance") or {},
        },
        inputs,
    )


def blocks(height: int, width: int) -> Iterator[Window]:
    for row in range(0, height, BLOCK):
        for col in range(0, width, BLOCK):
            yield Window(col, row, min(BLOCK, width - col), min(BLOCK, height - row))


def read_block(ds, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """(C, h, w) float32 values of ``window`` and their (h, w) validity: every band holds data."""
    data = ds.read(window=window).astype(np.float32)
    return data, valid_mask(ds, data).all(axis=0)


def gather(ds, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Embeddings (N, D) at cells (rows, cols), reading only the blocks that hold some; NaN where invalid."""
    out = np.full((rows.size, ds.count), np.nan, np.float32)
    block_ids = (rows // BLOCK) * (ds.width // BLOCK + 1) + cols // BLOCK
    for block in np.unique(block_ids):
        pick = np.flatnonzero(block_ids == block)
        r0, c0 = int(rows[pick[0]] // BLOCK * BLOCK), int(cols[pick[0]] // BLOCK * BLOCK)
        data, valid = read_block(ds, Window(c0, r0, min(BLOCK, ds.width - c0), min(BLOCK, ds.height - r0)))
        values = data[:, rows[pick] - r0, cols[pick] - c0].T
        values[~valid[rows[pick] - r0, cols[pick] - c0]] = np.nan
        out[pick] = values
    return out


def point_blocks(block_size_m: float, cell_m: float, samples) -> tuple[int, str]:
    """Side in cells of the blocks grouping labelled points for validation, and the rule that set it
    (0 m: the labels' autocorrelation range, engine.probes.folds.point_block_rule)."""
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
    samples: Any  # engine.probes.labels.LabelSamples (rows without valid embeddings removed)
    units: np.ndarray
    dropped_nodata: int
    rule: str = ""  # how the validation units were made

    def subset(self, keep: np.ndarray) -> LabelledEmbeddings:
        s = self.samples
        samples = LabelSamples(
            s.rows[keep], s.cols[keep], s.y[keep], s.groups[keep], s.from_point[keep], s.class_names, s.shape, s.report
        )
        return LabelledEmbeddings(
            self.x[keep], samples, self.units[keep], self.dropped_nodata + int((~keep).sum()), self.rule
        )


def labelled_embeddings(
    ds,
    labels_path: str,
    class_field: str,
    layer: str | None,
    ignore_values,
    min_coverage: float,
    block_size_m: float,
    reporter: Reporter,
    features: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> LabelledEmbeddings:
    """Rasterize the labels on the embeddings' grid and gather the embeddings (or ``features``) under them."""
    layer_data = read_labels(labels_path, class_field, ds.crs, layer, ignore_values)
    samples = rasterize_labels(layer_data, ds.transform, (ds.height, ds.width), min_coverage)
    x = features(samples.rows, samples.cols) if features else gather(ds, samples.rows, samples.cols)
    ok = np.isfinite(x).all(axis=1)
    dropped = int((~ok).sum())
    if dropped:
        reporter.log(f"{dropped} labelled cells have no embedding (nodata) and are left out.", "warning")
        samples = LabelSamples(
            samples.rows[ok],
            samples.cols[ok],
            samples.y[ok],
            samples.groups[ok],
            samples.from_point[ok],
            samples.class_names,
            samples.shape,
            dict(samples.report, cells_without_embedding=dropped),
        )
        x = x[ok]
    samples, empty = drop_empty_classes(samples)
    if empty:
        reporter.log(f"Classes without any labelled cell on the raster are left out: {', '.join(empty)}.", "warning")
    check_trainable(samples)
    cells, rule = point_blocks(block_size_m, abs(ds.transform.a), samples)
    units = spatial_units(samples.groups, samples.from_point, samples.rows, samples.cols, cells)
    samples.report["point_block_cells"] = cells
    return LabelledEmbeddings(x, samples, units, dropped, rule)
