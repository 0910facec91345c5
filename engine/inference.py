"""Tiled inference: from a job to class maps and embedding rasters, in bounded memory.

Plan: resolve every modality (files, bands, dates, masks), build the reference
grid (engine.io.grid), cut it into overlapping windows of whole patches
(engine.tiling). Run: read and normalise a batch of windows (every file opened
once, warped on the fly when off-grid; in a background thread while the model
runs on the previous batch when a core is free), run the model, blend the
per-patch results with smooth weights into a row band (engine.io.writers) whose
finished rows go straight into tiled, compressed GeoTIFFs written under
temporary names and renamed at the end.

Embedding levels (``outputs.embeddings_level``; a probe applied with the job reads the
same level): ``patch``, ``local`` and ``both`` give one vector per patch, written on the
patch grid. ``dense`` (AnySat) gives one vector per sub-patch of the finest modality
([patch token, sub-patch token], 2D wide), written on the sub-patch grid (n times finer
than the patch grid); inside the engine the n x n sub-patches of a patch travel as
channels of that patch, so windows blend exactly as at the patch level; a window where
that modality has no data is nodata. ``tile`` gives one vector per window: windows are
then laid edge to edge without overlap, and the raster has one cell per window (tile x
tile patches from the grid's top-left corner; the last row and column hold the windows
moved back to end on the area's edge, as everywhere in tiled inference). Class outputs of
a dense or tile-level head are written on that level's grid.

A patch is nodata in the outputs when no modality has a valid observation in it.
A date takes part in a window when at least ``min_valid_fraction`` of its pixels
are valid (clouds, nodata); otherwise it is masked (``date_mask``). Invalid pixels
of kept dates read as the band mean.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import rasterio
import torch
from affine import Affine
from einops import rearrange
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from engine.errors import Cancelled, EngineError
from engine.io.align import ModalityReader
from engine.io.atomic import atomic_output, check_output_path
from engine.io.dates import day_of_year
from engine.io.grid import Footprint, Grid, check_patch_fits, grid_crs, parse_crs, reference_grid, scale_window
from engine.io.job import CLASS_OUTPUTS, EMBEDDING_LEVEL_TAG, Job
from engine.io.normalize import load_statistics, modality_statistics, normalize
from engine.io.raster import open_raster
from engine.io.series import Modality, attach_masks, resolve_modality
from engine.io.writers import CLASS_NODATA, RowBandAccumulator, expand, geotiff_profile, open_class_map, write_cells
from engine.precision import autocast_context, choose_device, choose_dtype, keep_weights_in
from engine.progress import Reporter
from engine.tiling import WindowGrid

# Default window when the model states none: enough patches to amortise the model
# call, few enough that attention over all tokens stays cheap on a CPU.
DEFAULT_TILE_PATCHES = 16
GDAL_CACHE_MB = 64
# Rows of results held before writing: wide rasters with many channels (dense or "both"
# embeddings of a large model) flush sooner to stay within this.
BAND_BUDGET_MB = 512
HALF_MAX = 65504.0
PATCH_LEVELS = ("patch", "local", "both")  # one vector per patch, on the patch grid


@dataclass(frozen=True)
class DenseLayout:
    """Where dense (per-sub-patch) features lie: the finest modality's sub-patches."""

    modality: str
    n: int  # sub-patches per patch side
    grid: Grid  # one cell per sub-patch


@dataclass(frozen=True)
class Plan:
    """Everything decided before reading pixels."""

    modalities: dict[str, Modality]
    patch_grid: Grid  # one cell per patch
    output_grid: Grid  # class map / confidence / probabilities of a patch-level head
    modality_grids: dict[str, Grid]
    patch_size_m: float
    windows: WindowGrid
    dense: DenseLayout | None = None  # when a dense level is written
    tile_grid: Grid | None = None  # one cell per window, when a tile level is written

    @property
    def output_factor(self) -> int:
        return round(self.patch_grid.res / self.output_grid.res)

    def level_grid(self, level: str, classes: bool = False) -> Grid:
        """The grid of the outputs of a level (class outputs of a patch-level head: the output grid)."""
        if level == "dense":
            return self.dense.grid
        if level == "tile":
            return self.tile_grid
        return self.output_grid if classes else self.patch_grid

    def tile_cell(self, window: Window) -> tuple[int, int]:
        """(row, col) of a window's cell on the tile grid."""
        return self.windows.rows.index(window.row_off), self.windows.cols.index(window.col_off)


def _model_attribute(model, name: str) -> float | None:
    value = getattr(model, name, None)
    if value is None:
        value = getattr(getattr(model, "config", None), name, None)
    return float(value) if value is not None else None


def default_tile(model) -> int:
    """Window side in patches: the patch grid the model was trained on, when it states one."""
    grid = getattr(getattr(model, "config", None), "grid", None)
    if grid:
        return int(max(grid))
    size = _model_attribute(model, "tile_size_m")
    patch = _model_attribute(model, "patch_size_m")
    return max(1, round(size / patch)) if size and patch else DEFAULT_TILE_PATCHES


def resolve_inputs(job: Job, model, reporter: Reporter | None = None) -> dict[str, Modality]:
    modalities = {}
    for name, entry in job.modalities.items():
        if name not in model.modalities:
            raise EngineError(
                f"The job names modality {name!r}, which this model does not know; it was trained with "
                f"{', '.join(model.modalities)}: rename the entry or choose another model."
            )
        modality = resolve_modality(name, model.modalities[name], entry.files, entry.dates, entry.bands)
        if modality.missing_bands:
            fill, note = model.missing_band_fill(name, modality.missing_bands)
            modality = replace(modality, fill_value=fill)
            (reporter or Reporter()).log(note)
        if entry.mask is not None:
            modality = attach_masks(modality, entry.mask.files, entry.mask.type, entry.mask.threshold)
        modalities[name] = modality
    return modalities


def modality_footprint(m: Modality) -> Footprint:
    """Where a modality has data: the union of its dates' files (a date that covers less reads
    as nodata there). Masks do not limit the area: outside a mask, pixels count as clear."""
    prints = []
    for path in sorted({layer.path for layer in m.layers}):
        with open_raster(path, f"{m.name} input") as ds:
            prints.append(Footprint.of(ds, str(path)))
    first = prints[0]
    boxes = [first.bounds] + [transform_bounds(fp.crs, first.crs, *fp.bounds, densify_pts=21) if fp.crs != first.crs
                              else fp.bounds for fp in prints[1:]]
    union = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    label = first.label if len(prints) == 1 else f"modality {m.name!r} ({len(prints)} files)"
    return Footprint(first.crs, union, min(fp.res for fp in prints if fp.crs == first.crs), label)


def dense_layout(model, modalities: dict[str, Modality], patch_m: float, patch_grid: Grid) -> DenseLayout:
    """The modality whose sub-patches make the dense grid (the finest, as AnySat chooses) and that grid."""
    sub_patch_m = getattr(model, "sub_patch_m", None)
    if not callable(sub_patch_m):
        raise EngineError(
            f'"embeddings_level": "dense" needs per-sub-patch features, which only AnySat models give; '
            f'{type(model).__name__} has none: choose "patch", "local", "both" or "tile", or an anysat-* model.')
    projectors = getattr(getattr(model, "config", None), "projectors", {})
    sizes = {}
    for name in modalities:
        if name in projectors and projectors[name].context:
            continue  # coarse context sensors have no sub-patch grid
        n = patch_m / sub_patch_m(name)
        if abs(n - round(n)) > 1e-6 or round(n) < 1:
            raise EngineError(f"The patch size {patch_m:g} m is not a whole number of {name!r} sub-patches "
                              f"({sub_patch_m(name):g} m each): choose a multiple of {sub_patch_m(name):g} m.")
        sizes[name] = round(n)
    if not sizes:
        raise EngineError(f"Dense features need a modality with sub-patches among {', '.join(modalities)}.")
    name = max(sizes, key=lambda m: (sizes[m], m))
    return DenseLayout(name, sizes[name], patch_grid.with_resolution(patch_m / sizes[name]))


def plan(job: Job, model, modalities: dict[str, Modality], levels: tuple[str, ...] = ()) -> Plan:
    """The grids and the window grid of a run (errors for non-overlapping or too small inputs).

    ``levels``: the embedding levels the run writes (a head's or the embeddings'): dense
    needs its sub-patch grid, tile lays windows edge to edge.
    """
    patch = job.patch_size or _model_attribute(model, "patch_size_m")
    if not patch:
        raise EngineError('This model has no default patch size: give "patch_size" (metres) in the job.')
    gsds = {name: float(m.spec.gsd_m) for name, m in modalities.items()}
    for name, gsd in gsds.items():
        check_patch_fits(patch, gsd, f"modality {name!r}")
    resolution = job.resolution or min(gsds.values())
    check_patch_fits(patch, resolution, "the output resolution")
    footprints = [modality_footprint(m) for m in modalities.values()]
    crs = grid_crs(footprints, parse_crs(job.crs, '"crs"') if job.crs else None)
    extent = None
    if job.extent is not None:
        bounds, extent_crs = job.extent
        extent = (bounds, parse_crs(extent_crs, '"extent.crs"') if extent_crs else crs)
    patch_grid = reference_grid(footprints, patch, patch, crs=crs, extent=extent)
    tile = max(1, round(job.tile_size / patch)) if job.tile_size else default_tile(model)
    overlap = round(job.overlap / patch) if job.overlap is not None else (tile // 6 if tile >= 4 else 0)
    if "tile" in levels:
        if job.overlap:
            raise EngineError('The tile level gives one vector per window, laid edge to edge: remove "overlap" '
                              "from the job (or set it to 0).")
        overlap = 0
    if overlap >= tile:
        raise EngineError(f"The overlap ({overlap} patches) must be smaller than the tile ({tile} patches): lower \"overlap\".")
    windows = WindowGrid(patch_grid.height, patch_grid.width, tile, overlap)
    tile_grid = None
    if "tile" in levels:
        side = tile * patch
        corner = patch_grid.transform
        tile_grid = Grid(patch_grid.crs, Affine(side, 0.0, corner.c, 0.0, -side, corner.f),
                         len(windows.cols), len(windows.rows))
    return Plan(
        modalities=modalities,
        patch_grid=patch_grid,
        output_grid=patch_grid.with_resolution(resolution),
        modality_grids={name: patch_grid.with_resolution(g) for name, g in gsds.items()},
        patch_size_m=patch,
        windows=windows,
        dense=dense_layout(model, modalities, patch, patch_grid) if "dense" in levels else None,
        tile_grid=tile_grid,
    )


@dataclass
class Batch:
    windows: list[Window]  # patch units; only windows with some valid data
    inputs: dict[str, np.ndarray]
    dates: dict[str, np.ndarray]
    date_mask: dict[str, np.ndarray]
    valid: np.ndarray  # (B, Gh, Gw) bool: a patch holds at least one valid observation
    present: list[tuple[str, ...]]  # per window, the modalities with any valid pixel
    skipped: int  # windows without any valid data

    def groups(self) -> dict[tuple[str, ...], list[int]]:
        """Windows that see the same modalities (one model call each)."""
        out: dict[tuple[str, ...], list[int]] = {}
        for i, names in enumerate(self.present):
            out.setdefault(names, []).append(i)
        return out

    def having(self, name: str) -> "Batch":
        """The windows where modality ``name`` has data; the others count as skipped."""
        keep = [i for i, names in enumerate(self.present) if name in names]
        if len(keep) == len(self.windows):
            return self
        pick = np.array(keep, np.int64)
        return Batch(
            windows=[self.windows[i] for i in keep],
            inputs={n: x[pick] for n, x in self.inputs.items()},
            dates={n: d[pick] for n, d in self.dates.items()},
            date_mask={n: m[pick] for n, m in self.date_mask.items()},
            valid=self.valid[pick],
            present=[self.present[i] for i in keep],
            skipped=self.skipped + len(self.windows) - len(keep),
        )


class BatchReader(contextlib.AbstractContextManager):
    """Reads and normalises batches of windows for every modality of a plan."""

    def __init__(self, plan: Plan, statistics: dict, min_valid_fraction: float):
        self.plan, self.min_valid = plan, min_valid_fraction
        self.stats = {n: modality_statistics(m.spec, statistics) for n, m in plan.modalities.items()}
        self.readers: dict[str, ModalityReader] = {}
        try:
            for name, m in plan.modalities.items():
                self.readers[name] = ModalityReader(m, plan.modality_grids[name])
        except BaseException:
            self.close()
            raise
        self.doy = {n: np.array([day_of_year(d) for d in m.dates], np.float32)
                    for n, m in plan.modalities.items() if m.spec.has_dates}

    def _normalize(self, name: str, data: np.ndarray) -> np.ndarray:
        """(..., C_read, h, w) -> (..., C, h, w): missing bands get the model's fill value."""
        m, (mean, std) = self.plan.modalities[name], self.stats[name]
        if m.band_index is None:
            return normalize(data, mean, std)
        index = list(m.band_index)
        full = np.full((*data.shape[:-3], m.spec.n_bands, *data.shape[-2:]), m.fill_value, np.float32)
        full[..., index, :, :] = normalize(data, mean[index], std[index])
        return full

    def _read_rows(self, windows: list[Window]) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
        """Per modality, (data, valid) of each window; one read per row of windows (fewer GDAL calls)."""
        rows: dict[int, list[int]] = {}
        for i, w in enumerate(windows):
            rows.setdefault(w.row_off, []).append(i)
        out: dict[str, list] = {name: [None] * len(windows) for name in self.readers}
        for row, members in rows.items():
            left = min(windows[i].col_off for i in members)
            right = max(windows[i].col_off + windows[i].width for i in members)
            box = Window(left, row, right - left, windows[members[0]].height)
            for name, reader in self.readers.items():
                factor = self.plan.patch_grid.res / self.plan.modality_grids[name].res
                k = round(factor)
                data, ok = reader.read(scale_window(box, factor))
                for i in members:
                    w = windows[i]
                    cols = slice((w.col_off - left) * k, (w.col_off - left + w.width) * k)
                    out[name][i] = (data[..., cols], ok[..., cols])
        return out

    def read(self, windows: list[Window]) -> Batch:
        per_window = []
        blocks = self._read_rows(windows)
        for index, window in enumerate(windows):
            arrays, masks, valid, present = {}, {}, np.zeros((window.height, window.width), bool), []
            for name in self.readers:
                k = round(self.plan.patch_grid.res / self.plan.modality_grids[name].res)
                data, ok = blocks[name][index]
                # A patch counts as observed when any date has a valid pixel in it.
                seen = ok.any(axis=0).reshape(window.height, k, window.width, k).any(axis=(1, 3))
                valid |= seen
                share = ok.reshape(ok.shape[0], -1).mean(axis=1)
                keep = share >= self.min_valid
                if not keep.any():
                    keep[int(np.argmax(share))] = True  # the model needs one date; the least bad
                if seen.any():  # a modality without any valid pixel here is left out of the model call
                    present.append(name)
                arrays[name] = self._normalize(name, data)
                masks[name] = keep
            per_window.append((window, arrays, masks, valid, tuple(present)))
        used = [w for w in per_window if w[3].any()]
        names = list(self.readers)
        batch = Batch(
            windows=[w[0] for w in used],
            inputs={n: np.stack([w[1][n] for w in used]) if used else None for n in names},
            dates={n: np.broadcast_to(self.doy[n], (len(used), self.doy[n].size)) for n in self.doy},
            date_mask={n: np.stack([w[2][n] for w in used]) if used else None
                       for n in names if self.plan.modalities[n].spec.kind == "series"},
            valid=np.stack([w[3] for w in used]) if used else np.zeros((0, 1, 1), bool),
            present=[w[4] for w in used],
            skipped=len(per_window) - len(used),
        )
        for n in names:  # images are (B, C, H, W): drop the single "date"
            if used and self.plan.modalities[n].spec.kind == "image":
                batch.inputs[n] = batch.inputs[n][:, 0]
        return batch

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Request:
    """What a model call returns: class probabilities of a head at ``head_level``, embeddings at ``embeddings_level``."""

    head: Any  # None: no class outputs
    head_level: str
    embeddings_level: str | None  # None: no embeddings
    patch_size_m: float
    dense: DenseLayout | None


def _model_outputs(model, batch: Batch, device, dtype, request: Request) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per window, (B, channels, Gh, Gw) float32 for the patch grid (class probabilities then
    embeddings, dense sub-patches packed into channels) and (B, channels) for the tile level.

    Windows are grouped by the modalities they see, so a window where one sensor
    has no data is encoded from the others instead of from filled-in means.
    """
    cells = tiles = None
    for names, index in batch.groups().items():
        part_cells, part_tiles = _forward(
            model, {n: batch.inputs[n][index] for n in names},
            {n: batch.dates[n][index] for n in names if n in batch.dates},
            {n: batch.date_mask[n][index] for n in names if n in batch.date_mask},
            batch.valid.shape[1:], device, dtype, request)
        if part_cells is not None:
            if cells is None:
                cells = np.empty((len(batch.windows), *part_cells.shape[1:]), np.float32)
            cells[index] = part_cells
        if part_tiles is not None:
            if tiles is None:
                tiles = np.empty((len(batch.windows), *part_tiles.shape[1:]), np.float32)
            tiles[index] = part_tiles
    return cells, tiles


def embedding_level(features, level: str) -> torch.Tensor:
    """The embeddings a job asks for: fused 'patch', pre-fusion 'local', 'both' = [patch, local],
    per-sub-patch 'dense' or per-window 'tile'."""
    if level == "patch":
        return features.patch
    if level == "tile":
        return features.tile
    if level == "dense":
        if features.dense is None:
            raise EngineError('This model gives no dense (per-sub-patch) features: use another "embeddings_level".')
        return features.dense
    if features.local is None:
        raise EngineError('This model gives no local (pre-fusion) patch features: use "embeddings_level": "patch".')
    return features.local if level == "local" else torch.cat([features.patch, features.local], dim=-1)


def embedding_width(embed_dim: int, level: str) -> int:
    return 2 * embed_dim if level in ("both", "dense") else embed_dim


def _forward(model, inputs, dates, masks, grid, device, dtype, request: Request):
    inputs = {n: torch.from_numpy(np.ascontiguousarray(x)).to(device) for n, x in inputs.items()}
    dates = {n: torch.from_numpy(np.array(d)).to(device) for n, d in dates.items()}
    masks = {n: torch.from_numpy(np.ascontiguousarray(m)).to(device) for n, m in masks.items()}
    dense = {"dense_modality": request.dense.modality} if request.dense else {}
    with torch.inference_mode(), autocast_context(device, dtype):
        features = model.forward_features(inputs, dates, masks, patch_size_m=request.patch_size_m, **dense)
        patch = features.patch
        gh, gw = grid
        if tuple(patch.shape[1:3]) != (gh, gw):
            raise EngineError(
                f"The model returned a {patch.shape[1]} x {patch.shape[2]} patch grid for a {gh} x {gw}-patch "
                "window: the job's patch_size does not match the model's; remove it or set the model's."
            )
        cells, tiles = [], []

        def add(values: torch.Tensor, level: str) -> None:
            if level == "tile":
                tiles.append(values)
            elif level == "dense":  # each patch carries its n x n sub-patches as channels
                cells.append(rearrange(values, "b (h r) (w s) c -> b h w (c r s)", r=request.dense.n, s=request.dense.n))
            else:
                cells.append(values)

        if request.head is not None:
            head = request.head
            probs = head.probabilities(head(embedding_level(features, request.head_level)).float())
            if getattr(head, "class_axis", -1) == 1:  # segmentation heads give (B, K, H, W)
                probs = rearrange(probs, "b k h w -> b h w k")
            add(probs, request.head_level)
        if request.embeddings_level:
            add(embedding_level(features, request.embeddings_level).float(), request.embeddings_level)
        cells = torch.cat(cells, dim=-1).permute(0, 3, 1, 2).contiguous().cpu().numpy() if cells else None
        tiles = torch.cat(tiles, dim=-1).cpu().numpy() if tiles else None
    return cells, tiles


@contextlib.contextmanager
def _batches(reader: BatchReader, batches: list[list[Window]], ahead: bool):
    """Batches in order; with ``ahead``, the next one is read in a thread while the model runs.

    Reading ahead pays only with a core to spare: on a CPU whose cores all run torch
    threads, the extra thread slows the model more than it hides reading (measured).
    """
    if not ahead:
        yield (reader.read(b) for b in batches)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="omnisat-read") as pool:
        def generate():
            pending = pool.submit(reader.read, batches[0]) if batches else None
            for i in range(len(batches)):
                batch = pending.result()
                pending = pool.submit(reader.read, batches[i + 1]) if i + 1 < len(batches) else None
                yield batch

        yield generate()


class _Outputs:
    """The open output datasets and the functions that write finished rows into them.

    Two streams of results: per patch (patch-level outputs, and dense ones with their
    sub-patches as channels) and per window (tile level). Each output knows its stream,
    its channels there and its level.
    """

    def __init__(self, stack: contextlib.ExitStack, job: Job, plan: Plan, classes: list[str], colors, embed_dim: int,
                 head_level: str):
        files = job.outputs.files()
        self.plan = plan
        self.k = len(classes) if any(k in files for k in CLASS_OUTPUTS) else 0
        self.level = job.outputs.embeddings_level
        self.d = embedding_width(embed_dim, self.level) if "embeddings" in files else 0
        self.half = job.outputs.embeddings_dtype == "float16"
        self.channels = {"patch": 0, "tile": 0}
        self.parts: dict[str, tuple[str, slice, str]] = {}  # "classes" / "embeddings" -> stream, channels, level
        for part, level, width in (("classes", head_level, self.k), ("embeddings", self.level, self.d)):
            if width:
                stream = "tile" if level == "tile" else "patch"
                size = width * plan.dense.n ** 2 if level == "dense" else width
                self.parts[part] = (stream, slice(self.channels[stream], self.channels[stream] + size), level)
                self.channels[stream] += size
        self.grids: dict[str, Grid] = {}
        self.datasets: dict[str, Any] = {}
        for key, path in files.items():
            grid = plan.level_grid(head_level, classes=True) if key in CLASS_OUTPUTS else plan.level_grid(self.level)
            self.grids[key] = grid
            temp = stack.enter_context(atomic_output(path, f"{key} output"))
            if key == "classes":
                ds = open_class_map(temp, grid, classes, colors)
            elif key == "confidence":
                ds = rasterio.open(temp, "w", **geotiff_profile(grid, 1, "float32", math.nan))
                ds.set_band_description(1, "confidence")
            elif key == "probabilities":
                ds = rasterio.open(temp, "w", **geotiff_profile(grid, self.k, "float32", math.nan))
                for i, name in enumerate(classes):
                    ds.set_band_description(i + 1, name)
            else:
                ds = rasterio.open(temp, "w", **geotiff_profile(grid, self.d, "float32", math.nan,
                                                                nbits=16 if self.half else None))
                for i in range(self.d):
                    ds.set_band_description(i + 1, f"embedding {i}")
                # Probes read the level back: one fitted on fused features must not run on local ones.
                ds.update_tags(**{EMBEDDING_LEVEL_TAG: self.level})
            stack.callback(ds.close)  # closed (flushed) before its atomic rename
            self.datasets[key] = ds

    def sink(self, stream: str) -> Callable[[int, np.ndarray, np.ndarray], None]:
        """The writer of one stream's finished rows (patch rows, or rows of tile cells)."""
        def write(row0: int, mean: np.ndarray, covered: np.ndarray) -> None:
            try:
                self._write(stream, row0, mean, covered)
            except OSError as exc:
                if "No space left" in str(exc) and exc.errno is None:  # GDAL's message carries no errno
                    raise OSError(errno.ENOSPC, str(exc)) from None
                raise
        return write

    def _write(self, stream: str, row0: int, mean: np.ndarray, covered: np.ndarray) -> None:
        for part, (where, channels, level) in self.parts.items():
            if where != stream:
                continue
            values, ok, row, factor = mean[channels], covered, row0, 1
            if level == "dense":  # unpack the sub-patches: rows of the sub-patch grid
                n = self.plan.dense.n
                values = rearrange(values, "(c r s) h w -> c (h r) (w s)", r=n, s=n)
                ok, row = expand(covered, n), row0 * n
            elif level in PATCH_LEVELS and part == "classes":
                factor = self.plan.output_factor
            if part == "classes":
                if "classes" in self.datasets:
                    classes = np.where(ok, values.argmax(axis=0), CLASS_NODATA).astype(np.uint8)
                    write_cells(self.datasets["classes"], row, classes, factor)
                if "confidence" in self.datasets:
                    write_cells(self.datasets["confidence"], row, np.where(ok, values.max(axis=0), np.nan), factor)
                if "probabilities" in self.datasets:
                    write_cells(self.datasets["probabilities"], row, np.where(ok, values, np.nan), factor)
            else:
                if self.half:  # beyond half precision's range would read back as infinity
                    values = np.clip(values, -HALF_MAX, HALF_MAX)
                write_cells(self.datasets["embeddings"], row, np.where(ok, values, np.nan))


def class_names(metadata: dict, n_classes: int) -> tuple[list[str], list | None]:
    classes = metadata.get("classes") or [f"class {k}" for k in range(n_classes)]
    return list(classes), metadata.get("colors")


def check_outputs_apart(job: Job, modalities: dict[str, Modality]) -> None:
    """Outputs are writable and never overwrite an input."""
    inputs = {p.resolve() for m in modalities.values() for p in m.files} | {Path(job.model).resolve()}
    for key, path in job.outputs.files().items():
        out = check_output_path(path, f"{key} output")
        if out.resolve() in inputs:
            raise EngineError(f"The {key} output '{out}' is one of the inputs: choose another file name.")


def run_map(job: Job, reporter: Reporter, model, head=None, metadata: dict | None = None,
            should_cancel: Callable[[], bool] | None = None, head_level: str = "patch") -> dict[str, Any]:
    """Run a job with a loaded model (and head for class outputs); returns the result summary.

    ``head_level``: the embeddings the head reads (a probe fitted on local features reads those;
    a checkpoint's dense segmentation head reads dense features).
    """
    started = time.perf_counter()
    metadata = metadata or {}
    files = job.outputs.files()
    wants_classes = any(k in files for k in CLASS_OUTPUTS)
    if wants_classes and head is None:
        raise EngineError(
            f"The model '{job.model}' has no classification head: it can only give embeddings "
            '(use "embed", or a checkpoint with a head, e.g. one fitted by the probe).'
        )
    for key in files:  # early: a wrong folder must not cost a whole run
        check_output_path(files[key], f"{key} output")
    if job.threads:
        torch.set_num_threads(job.threads)
    device = choose_device(job.device)
    dtype = choose_dtype(device, job.precision)
    head_kind = getattr(getattr(head, "config", None), "kind", "patch") if wants_classes else None
    if head_kind == "dense":
        head_level = "dense"
    modalities = resolve_inputs(job, model, reporter)
    check_outputs_apart(job, modalities)
    levels = ((head_level,) if wants_classes else ()) + ((job.outputs.embeddings_level,) if "embeddings" in files else ())
    the_plan = plan(job, model, modalities, levels)
    windows = the_plan.windows.windows()
    n_classes = head.config.n_classes if wants_classes else 0
    classes, colors = class_names(metadata, n_classes) if wants_classes else ([], None)
    model = keep_weights_in(model.to(device).eval(), dtype)  # bf16: no per-call weight casts
    head = head.to(device).eval() if wants_classes else None
    if head_kind == "classification" and head_level != "tile":
        reporter.log("The checkpoint's head classifies whole tiles; it is applied to each patch embedding.", "warning")
    g = the_plan.patch_grid
    reporter.log(
        f"Grid {g.crs.to_string()}, {g.width} x {g.height} patches of {the_plan.patch_size_m:g} m, "
        f"output {the_plan.output_grid.width} x {the_plan.output_grid.height} px at {the_plan.output_grid.res:g} m; "
        f"{len(windows)} windows of {the_plan.windows.tile} patches (overlap {the_plan.windows.overlap}); "
        f"{device.type} {str(dtype).replace('torch.', '')}"
    )
    batch_size = job.batch_size
    batches = [windows[i:i + batch_size] for i in range(0, len(windows), batch_size)]
    steps = reporter.steps(len(windows), "Mapping windows")
    skipped, model_seconds = 0, 0.0
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), contextlib.ExitStack() as stack:
        outputs = _Outputs(stack, job, the_plan, classes, colors, model.embed_dim, head_level)
        channels = outputs.channels["patch"]
        affordable = BAND_BUDGET_MB * 2**20 // (4 * max(channels, 1) * g.width) - the_plan.windows.tile
        flush_rows = max(1, min(math.ceil(256 / the_plan.output_factor), affordable))
        band = RowBandAccumulator(g.height, g.width, channels, flush_rows, outputs.sink("patch"))
        tiles = (RowBandAccumulator(the_plan.tile_grid.height, the_plan.tile_grid.width, outputs.channels["tile"], 1,
                                    outputs.sink("tile")) if outputs.channels["tile"] else None)
        request = Request(head, head_level, job.outputs.embeddings_level if outputs.d else None,
                          the_plan.patch_size_m, the_plan.dense)
        reader = stack.enter_context(BatchReader(the_plan, load_statistics(job.normalization), job.min_valid_fraction))
        ahead = device.type == "cuda" or (os.cpu_count() or 1) > torch.get_num_threads()
        for batch_windows, batch in zip(batches, stack.enter_context(_batches(reader, batches, ahead))):
            if should_cancel is not None and should_cancel():
                raise Cancelled("cancelled between windows")
            if the_plan.dense is not None:  # no sub-patch features where the dense modality has no data
                batch = batch.having(the_plan.dense.modality)
            skipped += batch.skipped
            tick = time.perf_counter()
            cells, vectors = _model_outputs(model, batch, device, dtype, request) if batch.windows else (None, None)
            model_seconds += time.perf_counter() - tick
            for i, (window, valid) in enumerate(zip(batch.windows, batch.valid)):
                if cells is not None:
                    band.release(window.row_off)
                    band.add(window, cells[i], the_plan.windows.weights(window) * valid)
                if vectors is not None:
                    row, col = the_plan.tile_cell(window)
                    tiles.release(row)
                    tiles.add(Window(col, row, 1, 1), vectors[i][:, None, None], np.ones((1, 1), np.float32))
            steps.advance(len(batch_windows))
        band.finish()
        if tiles is not None:
            tiles.finish()
    seconds = time.perf_counter() - started
    area_km2 = g.width * g.height * the_plan.patch_size_m**2 / 1e6
    reporter.log(f"Mapped {area_km2:.3f} km2 in {seconds:.1f} s ({len(windows)} windows, {skipped} without data)")
    return {
        **{key: str(path) for key, path in files.items()},
        "crs": g.crs.to_string(),
        "transform": list(the_plan.output_grid.transform)[:6],
        "width": the_plan.output_grid.width,
        "height": the_plan.output_grid.height,
        "patch_size_m": the_plan.patch_size_m,
        "windows": len(windows),
        "windows_without_data": skipped,
        "class_names": classes,
        "embeddings_level": job.outputs.embeddings_level if "embeddings" in files else None,
        "head_level": head_level if wants_classes else None,
        # Each output's grid: dense and tile levels have their own.
        "grids": {key: {"transform": list(grid.transform)[:6], "width": grid.width, "height": grid.height}
                  for key, grid in outputs.grids.items()},
        "dates": {n: [d.isoformat() for d in m.dates] for n, m in modalities.items() if m.spec.has_dates},
        "area_km2": area_km2,
        "seconds": seconds,
        "model_seconds": model_seconds,  # inside the model and head; the rest is reading, blending, writing
    }
