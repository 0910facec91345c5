"""The output rasters of a mapping run, written block by block under temporary names.

Two streams of results reach the writers (engine.mapping.levels): per patch (patch-level
outputs, and dense ones with their sub-patches as channels) and per window (tile level).
Each part of the output (the class outputs of the head, the embeddings) knows its stream,
its channels there and its level, which lays the finished rows out on its own grid:
class outputs of a patch-level head on the output grid, dense ones on the sub-patch grid,
tile ones on the grid of window cells.
"""

from __future__ import annotations

import contextlib
import errno
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio

from engine.io.atomic import atomic_output
from engine.io.grid import Grid
from engine.io.job import CLASS_OUTPUTS
from engine.io.writers import CLASS_NODATA, geotiff_profile, open_class_map, write_cells
from engine.mapping.geometry import Geometry
from engine.mapping.levels import EMBEDDING_LEVEL_TAG, Level
from engine.mapping.plan import Plan

HALF_MAX = 65504.0


@dataclass(frozen=True)
class Part:
    """One part of the results: where it rides (stream, channels) and at which level."""

    name: str  # "classes" (every class output) or "embeddings"
    level: Level
    stream: str
    channels: slice


def open_float_raster(path, grid: Grid, descriptions: Sequence[str], nbits: int | None = None):
    """A float32 GeoTIFF, NaN nodata, one described band per entry."""
    ds = rasterio.open(path, "w", **geotiff_profile(grid, len(descriptions), "float32", math.nan, nbits=nbits))
    for i, text in enumerate(descriptions):
        ds.set_band_description(i + 1, text)
    return ds


def open_atomic(stack: contextlib.ExitStack, path, setting: str, opener: Callable[[Any], Any]):
    """``opener(temporary path)``: renamed to ``path`` when ``stack`` closes without error, after the
    dataset is closed (flushed)."""
    temp = stack.enter_context(atomic_output(path, setting))
    ds = opener(temp)
    stack.callback(ds.close)
    return ds


def open_class_outputs(
    stack: contextlib.ExitStack, files: dict[str, str], grid: Grid, class_names: Sequence[str], colors
) -> dict[str, Any]:
    """The class outputs named in ``files`` (classes, confidence, probabilities) on ``grid``."""
    openers = {
        "classes": lambda temp: open_class_map(temp, grid, class_names, colors),
        "confidence": lambda temp: open_float_raster(temp, grid, ["confidence"]),
        "probabilities": lambda temp: open_float_raster(temp, grid, class_names),
    }
    return {
        key: open_atomic(stack, path, f"{key} output", openers[key])
        for key, path in files.items()
        if key in CLASS_OUTPUTS
    }


def write_class_outputs(
    datasets: dict[str, Any], row: int, values: np.ndarray, covered: np.ndarray, factor: int = 1, col: int = 0
) -> None:
    """Class map (argmax), confidence (max) and probabilities from (K, h, w) probabilities, nodata
    where not ``covered``; each to the dataset of that key present in ``datasets``."""
    if "classes" in datasets:
        classes = np.where(covered, values.argmax(axis=0), CLASS_NODATA).astype(np.uint8)
        write_cells(datasets["classes"], row, classes, factor, col0=col)
    if "confidence" in datasets:
        write_cells(datasets["confidence"], row, np.where(covered, values.max(axis=0), np.nan), factor, col0=col)
    if "probabilities" in datasets:
        write_cells(datasets["probabilities"], row, np.where(covered, values, np.nan), factor, col0=col)


def _parts(plan: Plan) -> tuple[list[Part], dict[str, int]]:
    """The parts of the results and the channels of each stream."""
    spec, geometry = plan.outputs, plan.geometry
    channels = {"patch": 0, "tile": 0}
    parts = []
    for name, lv, width in (
        ("classes", spec.head_level, spec.n_classes),
        ("embeddings", spec.embeddings_level, spec.embeddings_width),
    ):
        if lv is not None and width:
            size = lv.channels(width, geometry)
            parts.append(Part(name, lv, lv.stream, slice(channels[lv.stream], channels[lv.stream] + size)))
            channels[lv.stream] += size
    return parts, channels


def owned_rows(plan: Plan) -> dict[str, tuple[int, int]]:
    """Per stream, the rows a run writes: all of them, or its shard's (engine.mapping.shards)."""
    if plan.shard is None:
        tiles = plan.geometry.tile_grid.height if plan.geometry.tile_grid is not None else 0
        return {"patch": (0, plan.geometry.patch_grid.height), "tile": (0, tiles)}
    return {"patch": plan.shard.rows, "tile": plan.shard.owned_window_rows}


def output_grids(plan: Plan) -> dict[str, Grid]:
    """Each output file's grid (dense and tile levels have their own), cropped to a shard's rows."""
    spec, geometry, owned = plan.outputs, plan.geometry, owned_rows(plan)
    grids = {}
    for key in spec.files:
        lv = spec.head_level if key in CLASS_OUTPUTS else spec.embeddings_level
        grid = lv.grid(geometry, classes=key in CLASS_OUTPUTS)
        if plan.shard is not None:
            # patch rows -> this grid's rows (output pixels, sub-patches); tile rows are window rows
            scale = 1 if lv.stream == "tile" else grid.height // geometry.patch_grid.height
            start, stop = owned[lv.stream]
            grid = grid.crop_rows(start * scale, stop * scale)
        grids[key] = grid
    return grids


def grid_summary(grids: dict[str, Grid]) -> dict[str, dict[str, Any]]:
    return {
        key: {"transform": list(grid.transform)[:6], "width": grid.width, "height": grid.height}
        for key, grid in grids.items()
    }


class Outputs:
    """The open output datasets of a plan and the writers of each stream's finished rows."""

    def __init__(self, stack: contextlib.ExitStack, plan: Plan):
        self.plan = plan
        self.parts, self.channels = _parts(plan)
        self.owned = owned_rows(plan)
        spec = plan.outputs
        self.grids = output_grids(plan)
        self.datasets: dict[str, Any] = {}
        for key, path in spec.files.items():
            if key == "embeddings":
                self.datasets[key] = open_atomic(stack, path, f"{key} output", self._open_embeddings)
            else:
                self.datasets.update(
                    open_class_outputs(stack, {key: path}, self.grids[key], spec.class_names, spec.colors)
                )

    def _open_embeddings(self, path):
        spec = self.plan.outputs
        ds = open_float_raster(
            path,
            self.grids["embeddings"],
            [f"embedding {i}" for i in range(spec.embeddings_width)],
            nbits=16 if spec.half else None,
        )
        # Probes read the level back: one fitted on fused features must not run on local ones.
        ds.update_tags(**{EMBEDDING_LEVEL_TAG: spec.embeddings_level.name})
        return ds

    def sink(self, stream: str) -> Callable[[int, np.ndarray, np.ndarray], None]:
        """The writer of one stream's finished rows (patch rows, or rows of tile cells)."""
        start, stop = self.owned[stream]

        def write(row0: int, mean: np.ndarray, covered: np.ndarray) -> None:
            # a shard's margin rows belong to the shard above it
            first, last = max(row0, start), min(row0 + covered.shape[0], stop)
            if first >= last:
                return
            rows = slice(first - row0, last - row0)
            try:
                self._write(stream, first - start, mean[:, rows], covered[rows])
            except OSError as exc:
                if "No space left" in str(exc) and exc.errno is None:  # GDAL's message carries no errno
                    raise OSError(errno.ENOSPC, str(exc)) from None
                raise

        return write

    def _write(self, stream: str, row0: int, mean: np.ndarray, covered: np.ndarray) -> None:
        geometry: Geometry = self.plan.geometry
        for part in self.parts:
            if part.stream != stream:
                continue
            classes = part.name == "classes"
            values, ok, row, factor = part.level.unpack(mean[part.channels], covered, row0, geometry, classes)
            if classes:
                write_class_outputs(self.datasets, row, values, ok, factor)
                continue
            if self.plan.outputs.half:  # beyond half precision's range would read back as infinity
                values = np.clip(values, -HALF_MAX, HALF_MAX)
            write_cells(self.datasets["embeddings"], row, np.where(ok, values, np.nan))

    def grid_summary(self) -> dict[str, dict[str, Any]]:
        """Each output's grid: dense and tile levels have their own."""
        return grid_summary(self.grids)
