"""Normalization statistics of a job's own data: per-band mean and std of the valid, cloud-free
pixels of every date, read on the job's grid as the mapping reads them (engine.mapping.plan).

They replace the checkpoint's statistics when the data differ from the training data (another
processing level, units or sensor): the job names the file as its "normalization".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.io.align import ModalityReader
from engine.io.atomic import atomic_output, check_output_path
from engine.io.grid import scale_window
from engine.io.job import Job
from engine.io.normalize import RunningStats
from engine.mapping.tiling import WindowGrid
from engine.runtime.progress import Reporter


def write_job_statistics(job: Job, output: str | Path, reporter: Reporter) -> dict[str, Any]:
    """Statistics per modality (bands, mean, std, valid pixels) written to ``output`` as JSON;
    returns {"output", "statistics"}."""
    from engine.mapping.plan import plan_geometry, resolve_inputs  # lazy: keeps torch out of --help
    from engine.models.checkpoint import load_checkpoint  # lazy: keeps torch out of --help

    check_output_path(output)
    model = load_checkpoint(job.model).model
    modalities = resolve_inputs(job, model, reporter)
    geometry = plan_geometry(job, model, modalities)
    g = geometry.patch_grid
    windows = WindowGrid(g.height, g.width, geometry.windows.tile, 0)  # generated as they are read
    steps = reporter.steps(len(windows) * len(modalities), "Reading")
    result = {}
    for name, m in modalities.items():
        stats = RunningStats(m.layers[0].n_bands)
        factor = g.res / geometry.modality_grids[name].res
        with ModalityReader(m, geometry.modality_grids[name]) as reader:
            for window in windows:
                data, _ = reader.read(scale_window(window, factor))
                stats.update(data.transpose(1, 0, 2, 3))  # (C, T, h, w): every date of a band together
                steps.advance()
        mean, std, count = stats.result()
        if min(count) == 0:
            raise EngineError(f"Modality {name!r} has no valid pixel on the job's grid: check its nodata and masks.")
        std = [max(s, 1e-6) for s in std]
        if m.band_index is not None:  # missing bands keep the model's statistics: they are filled, not read
            full = [list(m.spec.mean), list(m.spec.std), [0] * m.spec.n_bands]
            for k, i in enumerate(m.band_index):
                full[0][i], full[1][i], full[2][i] = mean[k], std[k], count[k]
            mean, std, count = full
        result[name] = {"bands": list(m.spec.bands), "mean": mean, "std": std, "valid_pixels": count}
    with atomic_output(output) as temp:
        temp.write_text(json.dumps(result, indent=2))
    reporter.log(f"Wrote {output}")
    return {"output": str(output), "statistics": result}
