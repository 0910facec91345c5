"""A job becomes one Plan: everything decided before a pixel is read.

The only reader of the Job in the mapping path. ``build_plan`` resolves every modality
(files, bands, dates, masks), checks the outputs (writable, never an input), builds the
reference grid (engine.io.grid) and the window grid of whole patches (engine.mapping.tiling),
chooses device and dtype, loads the normalization statistics and fixes the outputs: which
files, at which level, how wide. Reading (read.py), the model call (forward.py), writing
(outputs.py) and the run (run.py) take the Plan, never the Job.

Defaults the model declares (engine.models.base.EOModel): its patch size, its window (the
patch grid it was trained on) and, for the dense level, which modality's sub-patches make
the dense grid.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from affine import Affine
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from engine.errors import EngineError
from engine.io.atomic import check_output_path
from engine.io.collisions import check_distinct, job_files
from engine.io.grid import Footprint, Grid, check_patch_fits, grid_crs, parse_crs, reference_grid
from engine.io.job import CLASS_OUTPUTS, Job
from engine.io.normalize import load_statistics, modality_statistics
from engine.io.raster import open_raster
from engine.io.scales import CONVERSIONS
from engine.io.series import (
    Modality,
    Part,
    attach_masks,
    check_mask_cover,
    parse_season,
    resolve_modality,
    resolve_parts,
    restrict_season,
)
from engine.io.units import check_units
from engine.mapping.coverage import check_area
from engine.mapping.geometry import DenseLayout, Geometry
from engine.mapping.levels import Level, level
from engine.mapping.shards import Shard
from engine.mapping.tiling import WindowGrid
from engine.models.universat_sensors import describe_sensor
from engine.runtime.precision import choose_device, choose_dtype
from engine.runtime.progress import Reporter
from engine.wording import plural

# Window side when the model states none: enough patches to amortise the model call, few
# enough that attention over all tokens stays cheap on a CPU.
DEFAULT_TILE_PATCHES = 16


@dataclass(frozen=True)
class OutputSpec:
    """The files a run writes, and what goes into them."""

    files: dict[str, str]  # "classes" / "confidence" / "probabilities" / "embeddings" -> path
    class_names: tuple[str, ...] = ()  # empty: no class outputs
    colors: tuple | None = None
    head_level: Level | None = None  # the features the head reads
    embeddings_level: Level | None = None  # None: no embeddings raster
    embeddings_width: int = 0
    half: bool = False  # embeddings stored as float16

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Plan:
    """One complete, immutable description of a mapping run."""

    modalities: dict[str, Modality]
    geometry: Geometry
    outputs: OutputSpec
    statistics: dict[str, tuple[np.ndarray, np.ndarray]]  # per modality: (mean, std) per band
    min_valid_fraction: float
    device: torch.device
    dtype: torch.dtype
    batch_size: int
    threads: int | None = None
    warp_once: bool = True  # off-grid inputs warped whole before the windows (False: window by window)
    shard: Shard | None = None  # a rank's band of a sharded run (engine.mapping.ranks); None: the whole grid

    @property
    def window_count(self) -> int:
        """The windows this run computes (a shard's, margin included)."""
        windows = self.geometry.windows
        if self.shard is None:
            return len(windows)
        first, stop = self.shard.window_rows
        return (stop - first) * len(windows.cols)

    def owns(self, window: Window) -> bool:
        """Whether ``window`` is this run's own, not a shard's margin (counted once over the shards)."""
        return self.shard is None or window.row_off >= self.geometry.windows.rows[self.shard.owned_window_rows[0]]

    def batches(self) -> Iterator[list[Window]]:
        """Row-major batches of windows, generated as they are needed (a huge raster's windows never
        sit in one list)."""
        batch: list[Window] = []
        windows = self.geometry.windows
        for window in windows.in_rows(*self.shard.window_rows) if self.shard else windows:
            batch.append(window)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def describe(self) -> str:
        g, out, windows = self.geometry.patch_grid, self.geometry.output_grid, self.geometry.windows
        shard = (
            ""
            if self.shard is None
            else (
                f"; shard {self.shard.index + 1} of {self.shard.count}: patch rows {self.shard.rows[0]}-{self.shard.rows[1]}, "
                f"{plural(self.window_count, 'window')} with its margin"
            )
        )
        return (
            f"Grid {g.crs.to_string()}, {g.width} x {g.height} patches of {self.geometry.patch_size_m:g} m, "
            f"output {out.width} x {out.height} px at {out.res:g} m; "
            f"{plural(len(windows), 'window')} of {windows.tile} patches (overlap {windows.overlap}); "
            f"{self.device.type} {str(self.dtype).replace('torch.', '')}{shard}"
        )


def resolve_inputs(job: Job, model, reporter: Reporter | None = None) -> dict[str, Modality]:
    """Each modality of the job against the model's: files, bands (missing ones filled as the model
    says, logged), dates, masks."""
    modalities = {}
    for name, entry in job.modalities.items():
        if entry.sensor is not None:
            _describe_sensor(model, name, entry.sensor, reporter)
        if name not in model.modalities:
            raise EngineError(
                f"The job names modality {name!r}, which this model does not know; it was trained with "
                f"{', '.join(model.modalities)}: rename the entry or choose another model."
            )
        if entry.parts is not None:
            modality = resolve_parts(
                name,
                model.modalities[name],
                [Part(p.files, p.bands, p.dates) for p in entry.parts],
                (reporter or Reporter()).log,
            )
        else:
            modality = resolve_modality(name, model.modalities[name], entry.files, entry.dates, entry.bands)
        if modality.missing_bands:
            fill, note = model.missing_band_fill(name, modality.missing_bands)
            modality = replace(modality, fill_value=fill)
            (reporter or Reporter()).log(note)
        if entry.scale is not None:
            modality = replace(modality, scale=entry.scale)
            (reporter or Reporter()).log(f"{name}: {CONVERSIONS[entry.scale]}, while reading (files unchanged)")
        if entry.mask is not None:
            modality = attach_masks(modality, entry.mask.files, entry.mask.type, entry.mask.threshold)
            modality = replace(modality, mask_classes=entry.mask.classes)
            check_mask_cover(modality)
        season = entry.season or job.season
        if season is not None and modality.spec.has_dates:
            first, last = parse_season(season, f"modality {name!r}")
            modality = restrict_season(modality, (first, last))
            (reporter or Reporter()).log(f"{name}: {len(modality.layers)} date(s) in the season {first}..{last}")
        modalities[name] = modality
    return modalities


def _describe_sensor(model, name: str, sensor: dict, reporter: Reporter | None) -> None:
    """A job's sensor given by its bands' wavelengths, for a model that reads bands so (UniverSat)."""
    if not hasattr(model, "add_sensor"):
        raise EngineError(
            f'Modality "{name}" is described by its wavelengths ("sensor"), which only UniverSat '
            "models read: choose a universat-* model or one of this model's modalities."
        )

    spec = describe_sensor(
        name,
        sensor["wavelengths"],
        sensor["resolution"],
        series=bool(sensor.get("series")),
        sub_px=sensor.get("sub_patch"),
    )
    model.add_sensor(spec)
    (reporter or Reporter()).log(
        f"{name}: a sensor described by its wavelengths ({len(spec.channels)} bands, "
        f"{spec.spec.gsd_m:g} m, sub-patches of {spec.sub_px} px)"
    )


def modality_footprint(m: Modality) -> Footprint:
    """Where a modality has data: the union of its dates' files (a date that covers less reads
    as nodata there). Masks do not limit the area: outside a mask, pixels count as clear."""
    prints = []
    for path in sorted({layer.path for layer in m.layers}):
        with open_raster(path, f"{m.name} input") as ds:
            prints.append(Footprint.of(ds, str(path)))
    first = prints[0]
    boxes = [first.bounds] + [
        transform_bounds(fp.crs, first.crs, *fp.bounds, densify_pts=21) if fp.crs != first.crs else fp.bounds
        for fp in prints[1:]
    ]
    union = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    label = first.label if len(prints) == 1 else f"modality {m.name!r} ({len(prints)} files)"
    return Footprint(first.crs, union, min(fp.res for fp in prints if fp.crs == first.crs), label)


def _windows(job: Job, model, patch: float, patch_grid: Grid, edge_to_edge: bool) -> WindowGrid:
    tile = max(1, round(job.tile_size / patch)) if job.tile_size else (model.default_window() or DEFAULT_TILE_PATCHES)
    narrow = min(patch_grid.height, patch_grid.width)
    if model.square_windows and tile > narrow:
        # a window is cut to the area's edge: an area narrower than the window would give oblong windows
        tile = narrow
    overlap = round(job.overlap / patch) if job.overlap is not None else (tile // 6 if tile >= 4 else 0)
    if edge_to_edge:
        if job.overlap:
            raise EngineError(
                'The tile level gives one vector per window, laid edge to edge: remove "overlap" '
                "from the job (or set it to 0)."
            )
        overlap = 0
    if overlap >= tile:
        raise EngineError(
            f"The overlap ({overlap} patches) must be smaller than the tile ({tile} patches): lower \"overlap\"."
        )
    return WindowGrid(patch_grid.height, patch_grid.width, tile, overlap)


def plan_geometry(job: Job, model, modalities: dict[str, Modality], levels: tuple[Level, ...] = ()) -> Geometry:
    """The grids and the window grid of a run (errors for non-overlapping or too small inputs).

    ``levels``: the levels the run writes (a head's or the embeddings'): dense needs its
    sub-patch grid, tile lays windows edge to edge.
    """
    patch = job.patch_size or model.default_patch_size_m()
    if not patch:
        raise EngineError('This model has no default patch size: give "patch_size" (metres) in the job.')
    gsds = {name: float(m.spec.gsd_m) for name, m in modalities.items()}
    for name, gsd in gsds.items():
        check_patch_fits(patch, gsd, f"modality {name!r}")
    resolution = job.resolution or min(gsds.values())
    check_patch_fits(patch, resolution, "the output resolution")
    if hasattr(model, "output_resolution_m"):  # UniverSat: its dense grid is the job's output resolution
        model.output_resolution_m = resolution
    footprints = [modality_footprint(m) for m in modalities.values()]
    crs = grid_crs(footprints, parse_crs(job.crs, '"crs"') if job.crs else None)
    extent = None
    if job.extent is not None:
        bounds, extent_crs = job.extent
        extent = (bounds, parse_crs(extent_crs, '"extent.crs"') if extent_crs else crs)
    patch_grid = reference_grid(footprints, patch, patch, crs=crs, extent=extent)
    check_area(patch_grid.width * patch, patch_grid.height * patch, extent is not None)
    edge_to_edge = any(lv.edge_to_edge for lv in levels)
    windows = _windows(job, model, patch, patch_grid, edge_to_edge)
    tile_grid = None
    if edge_to_edge:
        side, corner = windows.tile * patch, patch_grid.transform
        tile_grid = Grid(
            patch_grid.crs, Affine(side, 0.0, corner.c, 0.0, -side, corner.f), len(windows.cols), len(windows.rows)
        )
    dense = None
    if any(lv.sub_patches for lv in levels):
        name, n = model.dense_layout(list(modalities), patch)
        dense = DenseLayout(name, n, patch_grid.with_resolution(patch / n))
    return Geometry(
        patch_grid=patch_grid,
        output_grid=patch_grid.with_resolution(resolution),
        modality_grids={name: patch_grid.with_resolution(g) for name, g in gsds.items()},
        patch_size_m=patch,
        windows=windows,
        dense=dense,
        tile_grid=tile_grid,
    )


def head_level(head, reporter: Reporter) -> Level:
    """The level a head's classes are mapped at: the features it reads; a checkpoint's whole-tile
    classifier is applied to each patch embedding instead (a map needs more than one class per window)."""
    if getattr(head, "config", None) is not None and head.config.kind == "classification":
        reporter.log("The checkpoint's head classifies whole tiles; it is applied to each patch embedding.", "warning")
        return level("patch")
    return level(head.level)


def _output_spec(job: Job, model, head, metadata: dict, reporter: Reporter) -> OutputSpec:
    files = job.outputs.files()
    wants_classes = any(k in files for k in CLASS_OUTPUTS)
    if wants_classes and head is None:
        raise EngineError(
            f"The model '{job.model}' is an encoder without a classification head: it gives embeddings, not "
            "classes. Three ways to a class map: (1) fit a probe on a few labelled points or polygons "
            "(fit-probe; in QGIS 'Fit a probe on labels') and classify with it (classify --probe, or give the "
            "probe file as the model); (2) use a fine-tuned checkpoint that has a head (python -m training "
            "finetune); (3) download a checkpoint that has one when the catalog offers it (python -m "
            "engine models --json: \"has_head\"; fetch-model downloads)."
        )
    embeddings = level(job.outputs.embeddings_level) if "embeddings" in files else None
    if not wants_classes:
        return OutputSpec(
            files,
            embeddings_level=embeddings,
            embeddings_width=embeddings.width(model.embed_dim) if embeddings else 0,
            half=job.outputs.embeddings_dtype == "float16",
        )
    n_classes = head.config.n_classes
    names = metadata.get("classes") or [f"class {k}" for k in range(n_classes)]
    return OutputSpec(
        files,
        tuple(names),
        metadata.get("colors"),
        head_level(head, reporter),
        embeddings,
        embeddings.width(model.embed_dim) if embeddings else 0,
        job.outputs.embeddings_dtype == "float16",
    )


def build_plan(job: Job, model, head=None, metadata: dict | None = None, reporter: Reporter | None = None) -> Plan:
    """The Plan of a job run with a loaded model (and head, for class outputs)."""
    reporter = reporter or Reporter()
    outputs = _output_spec(job, model, head, metadata or {}, reporter)
    for key, path in outputs.files.items():  # early: a wrong folder must not cost a whole run
        check_output_path(path, f"{key} output")
    check_distinct(job_files(job, "job"))  # run_operation checks too; a Plan is also built directly
    device = choose_device(job.device)
    dtype = choose_dtype(device, job.precision)
    modalities = resolve_inputs(job, model, reporter)
    levels = tuple(lv for lv in (outputs.head_level, outputs.embeddings_level) if lv is not None)
    statistics = load_statistics(job.normalization)
    geometry = plan_geometry(job, model, modalities, levels)
    per_modality = {n: modality_statistics(m.spec, statistics) for n, m in modalities.items()}
    # A sample of every input against the statistics: another scale (dB for linear power) must not
    # run to the end unnoticed.
    check_units(modalities, geometry.modality_grids, per_modality, bool(statistics), reporter.log)
    return Plan(
        modalities=modalities,
        geometry=geometry,
        outputs=outputs,
        statistics=per_modality,
        min_valid_fraction=job.min_valid_fraction,
        device=device,
        dtype=dtype,
        batch_size=job.batch_size,
        threads=job.threads,
    )


def summary(plan: Plan, grids: dict[str, Any]) -> dict[str, Any]:
    """The parts of a run's result the plan fixes."""
    g, out = plan.geometry.patch_grid, plan.geometry.output_grid
    return {
        "crs": g.crs.to_string(),
        "transform": list(out.transform)[:6],
        "width": out.width,
        "height": out.height,
        "patch_size_m": plan.geometry.patch_size_m,
        "windows": len(plan.geometry.windows),
        "class_names": list(plan.outputs.class_names),
        "embeddings_level": plan.outputs.embeddings_level.name if plan.outputs.embeddings_level else None,
        "head_level": plan.outputs.head_level.name if plan.outputs.head_level else None,
        "grids": grids,
        "dates": {n: [d.isoformat() for d in m.dates] for n, m in plan.modalities.items() if m.spec.has_dates},
    }
