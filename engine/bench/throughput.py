"""Mapping throughput in km² per hour (``python -m engine bench throughput [--models M,...] [--quick] [--threads N]``).

The real pipeline (plan, read, normalize, model, blend, write) of the ``embed`` operation on a
synthetic Sentinel-2 (10 bands, 12 dates, uint16) + Sentinel-1 (12 dates, float32) stack at
10 m, for each model of ``--models`` (default anysat-base and
universat-base) with random weights: the released architecture, so the released cost. The
job's defaults otherwise (each family's patch size and window, batch 4, fp32 on this CPU). The
square is the smallest that holds the family's full-size default windows (AnySat 32 px: 9
windows of 160 m; UniverSat 64 px: one window of 640 m), so that a window costs what it costs
over a large area.
Two levels: ``patch`` (one vector per patch: 10 m for AnySat, 40 m for UniverSat) and
``dense`` (one vector per 10 m pixel: AnySat's sub-patches, UniverSat's output cells at the
job's ``resolution`` of 10 m). Each level runs in a fresh subprocess (its peak RSS alone)
after a warm-up run of one window. Printed per model and level: km²/h, seconds, the share of
the time spent outside the model's forward (reading, normalizing, blending, writing), the peak
RSS (VmHWM) and the hours a whole Sentinel-2 tile (110 x 110 km) would take on this machine:
the measured seconds per window times the windows the job's window grid needs over the tile
(windows are independent), an extrapolation; the tile's km²/h follows from it (the small
square's own km²/h is lower where its windows overlap more than a large area's).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess  # nosec B404  # starts this interpreter for each measured run, no shell
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.transform import from_origin
from torch import nn

from engine.bench.common import write_raster
from engine.errors import EngineError
from engine.io.job import load_job
from engine.mapping.plan import build_plan
from engine.mapping.run import execute
from engine.mapping.tiling import axis_starts
from engine.models.anysat import AnySat, anysat_config
from engine.models.checkpoint import load_checkpoint, save_checkpoint
from engine.models.universat import UniverSat, universat_config
from engine.runtime.progress import Reporter

DATES = 12
QUICK_SIDE = 16
TILE_M = 110_000
TILE_KM2 = (TILE_M / 1000) ** 2
LEVELS = ("patch", "dense")
ORIGIN = (500000.0, 5000000.0)


@dataclasses.dataclass(frozen=True)
class BenchModel:
    """A model the bench builds: its family, size, and how the family names Sentinel-1."""

    family: str  # anysat or universat
    size: str
    s1: str  # the Sentinel-1 modality's name in this family
    s1_bands: int
    side: int  # px at 10 m: full-size default windows
    patch: str  # what one vector covers at each level, for the printed rows
    dense: str

    def build(self) -> nn.Module:
        torch.manual_seed(0)
        if self.family == "anysat":
            return AnySat(anysat_config(self.size, ("s2", self.s1))).eval()
        return UniverSat(universat_config(self.size, ("s2", self.s1))).eval()

    def level_job(self, level: str) -> dict[str, Any]:
        """The job keys a level needs: UniverSat's dense cells come from the output resolution."""
        return {"resolution": 10} if self.family == "universat" and level == "dense" else {}


_ANYSAT = dict(family="anysat", s1="s1_asc", s1_bands=2, patch="10 m patches", dense="10 m sub-patches")
_UNIVERSAT = dict(family="universat", s1="s1", s1_bands=3, patch="40 m patches", dense="10 m cells")
MODELS = {
    "anysat-base": BenchModel(size="base", side=32, **_ANYSAT),
    "universat-base": BenchModel(size="base", side=64, **_UNIVERSAT),
    "anysat-tiny": BenchModel(size="tiny", side=32, **_ANYSAT),  # for a smoke run of the bench itself
    "universat-tiny": BenchModel(size="tiny", side=64, **_UNIVERSAT),
}
DEFAULT_MODELS = ("anysat-base", "universat-base")


def _write_inputs(folder: Path, side: int, bench: BenchModel) -> dict[str, str]:
    transform = from_origin(*ORIGIN, 10.0, 10.0)
    rng = np.random.default_rng(0)
    s2 = rng.integers(200, 6000, (DATES * 10, side, side)).astype(np.uint16)
    s1 = rng.normal(-12, 3, (DATES * bench.s1_bands, side, side)).astype(np.float32)
    return {
        name: str(write_raster(folder / f"{name}.tif", data, "EPSG:32632", transform))
        for name, data in (("s2", s2), (bench.s1, s1))
    }


def _job(folder: Path, checkpoint: Path, files: dict[str, str], bench: BenchModel, level: str, threads) -> Path:
    start = dt.date(2021, 1, 5)
    dates = [(start + dt.timedelta(days=30 * t)).isoformat() for t in range(DATES)]
    job = {
        "model": str(checkpoint),
        "modalities": {n: {"files": f, "dates": dates} for n, f in files.items()},
        "outputs": {"embeddings": str(folder / f"embeddings_{level}.tif"), "embeddings_level": level},
        "device": "cpu",
        "precision": "fp32",
        "normalization": {
            "s2": {"mean": [3000.0] * 10, "std": [1700.0] * 10},
            bench.s1: {"mean": [-12.0] * bench.s1_bands, "std": [3.0] * bench.s1_bands},
        },
        **({"threads": threads} if threads else {}),
        **bench.level_job(level),
    }
    path = folder / f"job_{level}.json"
    path.write_text(json.dumps(job))
    return path


def _peak_rss_gb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def _child(job_path: str) -> dict[str, Any]:
    """Run one window (warm-up: one-off kernel set-up is not a per-area cost), then the whole job,
    timed, in this fresh process."""

    spec = json.loads(Path(job_path).read_text())
    job = load_job(job_path)
    loaded = load_checkpoint(job.model)
    plan = build_plan(job, loaded.model, loaded.head, loaded.metadata)
    windows, patch_m = plan.geometry.windows, plan.geometry.patch_size_m
    window_m = windows.tile * patch_m
    x, y = ORIGIN
    warm = dict(spec, extent={"bounds": [x, y - window_m, x + window_m, y]})
    warm["outputs"] = dict(spec["outputs"], embeddings=str(Path(job_path).with_suffix(".warm.tif")))
    execute(
        build_plan(load_job(warm), loaded.model, loaded.head, loaded.metadata), loaded.model, loaded.head, Reporter()
    )
    started = time.perf_counter()
    result = execute(plan, loaded.model, loaded.head, Reporter())
    seconds = time.perf_counter() - started
    tile_patches = round(TILE_M / patch_m)
    return {
        "seconds": seconds,
        "tile_windows": len(axis_starts(tile_patches, windows.tile, windows.overlap)) ** 2,
        "model_seconds": result["model_seconds"],
        "windows": result["windows_computed"],
        "km2": result["area_km2"],
        "peak_rss_gb": _peak_rss_gb(),
    }


def _measure(job: Path, threads: int | None) -> dict[str, Any]:
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    code = f"import json; from engine.bench.throughput import _child; print(json.dumps(_child({str(job)!r})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)  # nosec B603  # this interpreter, fixed arguments
    if done.returncode != 0:
        raise RuntimeError(f"throughput child failed: {done.stderr[-2000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["km2_per_h"] = row["km2"] / row["seconds"] * 3600
    row["outside_model_share"] = 1 - row["model_seconds"] / row["seconds"]
    row["s2_tile_hours"] = row["seconds"] / row["windows"] * row["tile_windows"] / 3600
    row["s2_tile_km2_per_h"] = TILE_KM2 / row["s2_tile_hours"]
    row["load_average"] = os.getloadavg()[0]
    return row


def _chosen(models: str | None) -> list[str]:
    names = [m.strip() for m in models.split(",") if m.strip()] if models else list(DEFAULT_MODELS)
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        raise EngineError(f"bench throughput --models: unknown {', '.join(unknown)}; choose among {', '.join(MODELS)}.")
    return names


def run(params, reporter) -> dict[str, Any]:
    names = _chosen(params.models)
    threads = params.threads
    reporter.log(
        f"S2 + S1, {DATES} + {DATES} dates at 10 m, threads {threads or 'default'}; a whole S2 tile's "
        "hours are extrapolated: seconds per window x the windows the tile needs"
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="throughput-bench-") as tmp:
        for name in names:
            bench = MODELS[name]
            folder = Path(tmp) / name
            folder.mkdir()
            side = QUICK_SIDE if params.quick else bench.side
            files = _write_inputs(folder, side, bench)
            checkpoint = folder / f"{name}.safetensors"
            save_checkpoint(checkpoint, bench.build(), provenance={"weights": "random, benchmark"})
            for level in LEVELS:
                row = _measure(_job(folder, checkpoint, files, bench, level, threads), threads)
                results[f"{name} {level}"] = row
                reporter.log(
                    f"{name} {level} ({getattr(bench, level)}): {row['km2_per_h']:.2f} km²/h "
                    f"({row['km2']:.3f} km², {side} x {side} px, in {row['seconds']:.1f} s, {row['windows']} windows), "
                    f"outside the model {100 * row['outside_model_share']:.1f}%, "
                    f"peak RSS {row['peak_rss_gb']:.2f} GB, S2 tile {row['s2_tile_hours']:.0f} h "
                    f"({row['tile_windows']} windows, {row['s2_tile_km2_per_h']:.2f} km²/h); "
                    f"load {row['load_average']:.1f}"
                )
    return {"dates": DATES, "threads": threads, "rows": results}
