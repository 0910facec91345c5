"""A user's own aligned rasters, as tiles for self-supervised pretraining ("learn this area").

``root`` is a job file in the engine's job format (engine.io.job): the same
modalities (files, dates, bands, cloud masks), extent, CRS, patch and tile sizes
the user runs ``classify`` / ``embed`` with. The engine resolves and aligns the
inputs (engine.mapping.plan); the window grid of tiled inference cuts the area
into tiles, read raw (the trainer normalizes with the model's statistics).
A date takes part in a tile when at least ``min_valid_fraction`` of its pixels are
valid (clear, finite); when none is, the clearest one is kept. Invalid pixels are
filled with the date's band mean.

Options: ``val_every`` (default 10): every n-th tile is held out as the
validation/test split (all tiles when there are fewer than n); ``labels``: none
(self-supervised only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import EngineError
from engine.io.align import ModalityReader
from engine.io.dates import day_of_year
from engine.io.grid import scale_window
from engine.io.job import load_job
from engine.mapping.plan import plan_geometry, resolve_inputs
from engine.mapping.read import keep_dates
from engine.models.base import EOModel
from engine.runtime.progress import Reporter
from training.datasets.common import Sample, TileDataset


class RasterTiles(TileDataset):
    label_kind = "none"

    def __init__(self, root: str | Path, *, model: EOModel, reporter: Reporter | None = None, **kwargs):
        self.available = {name: spec.kind for name, spec in model.modalities.items()}
        super().__init__(root, **kwargs)
        self._unknown_options(["val_every"])
        if not self.root.is_file():
            raise EngineError(f"For format 'rasters', data.datasets[].root must be a job JSON file, not '{self.root}'.")
        job = load_job(self.root)
        chosen = [m for m in self.modalities if m in job.modalities]
        if not chosen:
            raise EngineError(f"The job '{self.root}' names none of the modalities {', '.join(self.modalities)}.")
        self.modalities = chosen
        self.job = job
        self.modality_inputs = resolve_inputs(job, model, reporter)
        self.geometry = plan_geometry(job, model, self.modality_inputs)
        windows = self.geometry.windows.windows()
        every = int(self.options.get("val_every", 10))
        held_out = [w for i, w in enumerate(windows) if i % every == every - 1] if len(windows) >= every else windows
        self.windows = (
            held_out if self.split in ("val", "test") else ([w for w in windows if w not in held_out] or windows)
        )
        self.tile_size_m = self.windows[0].width * self.geometry.patch_size_m
        self.doy = {
            n: np.array([day_of_year(d) for d in m.dates], np.float32)
            for n, m in self.modality_inputs.items()
            if m.spec.has_dates
        }

    def __len__(self) -> int:
        return len(self.windows)

    def load(self, index: int, rng: np.random.Generator) -> Sample:
        window = self.windows[index]
        sample = Sample(inputs={}, name=f"tile_r{window.row_off}_c{window.col_off}")
        for name in self.modalities:
            grid = self.geometry.modality_grids[name]
            factor = self.geometry.patch_grid.res / grid.res
            # Opened per tile: no GDAL handle outlives a read (loader workers, interpreter exit).
            with ModalityReader(self.modality_inputs[name], grid) as reader:
                data, valid = reader.read(scale_window(window, factor))
            if self.modality_inputs[name].spec.kind == "image":
                sample.inputs[name] = data[0]
                continue
            usable = np.flatnonzero(keep_dates(valid, self.job.min_valid_fraction))
            days = self.doy[name][usable] if name in self.doy else np.zeros(len(usable), np.float32)
            sample.inputs[name], sample.dates[name] = self.subsample_dates(data[usable], days, rng)
        return sample
