"""A mapping run: plan -> read -> model -> outputs, in bounded memory.

``run_map`` turns the job into a Plan (plan.py), logs it, then walks its windows batch by
batch: read (read.py), model call (forward.py), smooth-weight blending of the per-patch
results into a row band (engine.io.writers.RowBandAccumulator) whose finished rows go
straight to the outputs (outputs.py), tiled, compressed GeoTIFFs renamed when complete.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from engine.errors import Cancelled
from engine.io.job import Job
from engine.io.writers import RowBandAccumulator
from engine.mapping.coverage import Coverage
from engine.mapping.forward import ModelCall, Results
from engine.mapping.outputs import Outputs
from engine.mapping.plan import Plan, build_plan, summary
from engine.mapping.read import WindowBatch, WindowReader, read_batches
from engine.runtime.progress import Reporter
from engine.wording import plural

GDAL_CACHE_MB = 64
# Rows of results held before writing: wide rasters with many channels (dense or "both"
# embeddings of a large model) flush sooner to stay within this.
BAND_BUDGET_MB = 512


class Blender:
    """The two streams' accumulators: window results in, finished rows out to the outputs."""

    def __init__(self, plan: Plan, outputs: Outputs):
        self.plan, geometry = plan, plan.geometry
        g, channels = geometry.patch_grid, outputs.channels["patch"]
        affordable = BAND_BUDGET_MB * 2**20 // (4 * max(channels, 1) * g.width) - geometry.windows.tile
        flush_rows = max(1, min(math.ceil(256 / geometry.output_factor), affordable))
        # A shard's accumulators start at its first window (margin included) and end at its last owned row.
        first = plan.shard.window_rows[0] if plan.shard else 0
        stop = outputs.owned["patch"][1]
        self.band = RowBandAccumulator(
            stop, g.width, channels, flush_rows, outputs.sink("patch"), start=geometry.windows.rows[first]
        )
        self.tiles = (
            RowBandAccumulator(
                outputs.owned["tile"][1],
                geometry.tile_grid.width,
                outputs.channels["tile"],
                1,
                outputs.sink("tile"),
                start=first,
            )
            if outputs.channels["tile"]
            else None
        )

    def add(self, batch: WindowBatch, results: Results) -> None:
        geometry = self.plan.geometry
        for i, (window, valid) in enumerate(zip(batch.windows, batch.valid)):
            if results.cells is not None:
                self.band.release(window.row_off)
                self.band.add(window, results.cells[i], geometry.windows.weights(window) * valid)
            if results.tiles is not None:
                row, col = geometry.windows.cell(window)
                self.tiles.release(row)
                self.tiles.add(Window(col, row, 1, 1), results.tiles[i][:, None, None], np.ones((1, 1), np.float32))

    def finish(self) -> None:
        self.band.finish()
        if self.tiles is not None:
            self.tiles.finish()


def _log_warps(reader: WindowReader, reporter: Reporter) -> None:
    warps = reader.warps
    if warps is not None and warps.warped:
        reporter.log(f"Warped {len(warps.warped)} input file(s) onto the grid once, in {warps.seconds:.1f} s")
    if warps is not None and warps.per_window:
        reporter.log(
            f"Not enough free space in the temporary folder to warp {', '.join(warps.per_window)} "
            "once: warping it window by window (slower); set TMPDIR to a larger folder.",
            "warning",
        )


def execute(
    plan: Plan, model, head, reporter: Reporter, should_cancel: Callable[[], bool] | None = None
) -> dict[str, Any]:
    """Run a plan; returns the result summary."""
    if plan.threads:
        torch.set_num_threads(plan.threads)
    call = ModelCall(plan, model, head)
    try:
        return _execute(plan, call, reporter, should_cancel)
    finally:
        call.close()


def _execute(plan: Plan, call: ModelCall, reporter: Reporter, should_cancel: Callable[[], bool] | None) -> dict:
    started = time.perf_counter()
    reporter.log(plan.describe())
    steps = reporter.steps(plan.window_count, "Mapping windows")
    skipped, model_seconds = 0, 0.0
    coverage = Coverage(
        {name: list(dict.fromkeys(str(layer.path) for layer in m.layers)) for name, m in plan.modalities.items()}
    )
    ahead = plan.device.type == "cuda" or (os.cpu_count() or 1) > torch.get_num_threads()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), contextlib.ExitStack() as stack:
        outputs = Outputs(stack, plan)
        blender = Blender(plan, outputs)
        reader = stack.enter_context(WindowReader(plan, torch.get_num_threads(), reporter))
        _log_warps(reader, reporter)
        for windows, batch in stack.enter_context(read_batches(reader, plan.batches(), ahead)):
            if should_cancel is not None and should_cancel():
                raise Cancelled("cancelled between windows")
            coverage.add(
                [names for w, names in zip(batch.windows, batch.present) if plan.owns(w)], sum(map(plan.owns, windows))
            )
            if plan.geometry.dense is not None:  # no sub-patch features where the dense modality has no data
                batch = batch.having(plan.geometry.dense.modality)
            skipped += batch.skipped
            tick = time.perf_counter()
            with steps.part():  # a batch of a large model takes many seconds: progress from its layers
                results = call(batch) if batch.windows else Results()
            model_seconds += time.perf_counter() - tick
            blender.add(batch, results)
            steps.advance(len(windows))
        if plan.shard is None:  # a shard may lie where there is no data: the assembly checks the whole run
            coverage.check(reporter)  # before the rename: a run that saw no data writes nothing
        blender.finish()
    seconds = time.perf_counter() - started
    g = plan.geometry.patch_grid
    area_km2 = g.width * g.height * plan.geometry.patch_size_m**2 / 1e6
    reporter.log(
        f"Mapped {area_km2:.3f} km2 in {seconds:.1f} s ({plural(plan.window_count, 'window')}, {skipped} without data)"
    )
    return {
        **plan.outputs.files,
        **summary(plan, outputs.grid_summary()),
        "windows_computed": plan.window_count,
        "coverage": coverage.counts(),
        "windows_without_data": skipped,
        "area_km2": area_km2,
        "seconds": seconds,
        "model_seconds": model_seconds,  # inside the model and head; the rest is reading, blending, writing
    }


def run_map(
    job: Job,
    reporter: Reporter,
    model,
    head=None,
    metadata: dict | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run a job with a loaded model (and head for class outputs: a checkpoint's, or a probe's,
    each reading the features of its level); returns the result summary."""
    return execute(build_plan(job, model, head, metadata, reporter), model, head, reporter, should_cancel)
