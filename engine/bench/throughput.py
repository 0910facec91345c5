"""Mapping throughput in km² per hour (``python -m engine bench throughput [--quick] [--threads N]``).

The real pipeline (plan, read, normalize, model, blend, write) of the ``embed`` operation on
a synthetic Sentinel-2 (10 bands, 12 dates, uint16) + Sentinel-1 ascending (VV, VH, 12 dates,
float32) stack at 10 m, side ``SIDE`` px, with AnySat base (random weights: the same
architecture and cost as the released model) and the job's defaults (10 m patches, 16-patch
windows with their default overlap, batch 4, fp32 on this CPU). Two levels: ``patch`` (one
768-wide vector per 10 m patch) and ``dense`` (1536 per sub-patch, here per 10 m pixel). Each
level runs in a fresh subprocess (its peak RSS alone) after a one-window warm-up. Printed per
level: km²/h, seconds, the share of the time spent outside the model (reading, warping,
blending, writing), the peak RSS, and the hours a whole Sentinel-2 tile (110 x 110 km) would
take at that rate on this machine. Models of other families add their rows in their own docs
with the same command once registered here (``MODELS``).
"""

from __future__ import annotations

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
import rasterio
import torch
from rasterio.transform import from_origin

from engine.io.job import load_job
from engine.mapping.plan import build_plan
from engine.mapping.run import execute
from engine.models.anysat import AnySat, anysat_config
from engine.models.checkpoint import load_checkpoint, save_checkpoint
from engine.runtime.progress import Reporter

DATES = 12
SIDE = 64  # px at 10 m: 0.41 km²
TILE_KM2 = 110 * 110
LEVELS = ("patch", "dense")
MODELS = {"anysat-base": ("anysat", "base")}


def _write_inputs(folder: Path, side: int) -> dict[str, str]:

    transform = from_origin(500000.0, 5000000.0, 10.0, 10.0)
    rng = np.random.default_rng(0)
    files = {}
    for name, bands, dtype in (("s2", 10, "uint16"), ("s1_asc", 2, "float32")):
        data = (
            rng.integers(200, 6000, (DATES * bands, side, side)).astype(np.uint16)
            if dtype == "uint16"
            else rng.normal(-12, 3, (DATES * bands, side, side)).astype(np.float32)
        )
        path = folder / f"{name}.tif"
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=side,
            height=side,
            count=DATES * bands,
            dtype=dtype,
            crs="EPSG:32632",
            transform=transform,
            tiled=True,
            blockxsize=64,
            blockysize=64,
            interleave="pixel",
        ) as ds:
            ds.write(data)
        files[name] = str(path)
    return files


def _checkpoint(folder: Path, model: str) -> Path:

    family, size = MODELS[model]
    torch.manual_seed(0)
    encoder = AnySat(anysat_config(size, ("s2", "s1_asc"))).eval()
    path = folder / f"{model}.safetensors"
    save_checkpoint(path, encoder, provenance={"weights": "random, benchmark"})
    return path


def _job(folder: Path, checkpoint: Path, files: dict[str, str], level: str) -> Path:
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
            "s1_asc": {"mean": [-12.0] * 2, "std": [3.0] * 2},
        },
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
    """Warm up on one window, then run the whole job (timed) in this fresh process."""

    job = load_job(job_path)
    loaded = load_checkpoint(job.model)
    warm = {n: torch.randn(1, DATES, s.n_bands, 16, 16) for n, s in loaded.model.modalities.items()}
    days = {n: torch.arange(1.0, DATES + 1)[None] * 30 for n in warm}
    with torch.inference_mode():  # one-off kernel set-up is not a per-area cost
        loaded.model.forward_features(warm, days, patch_size_m=10, with_dense=job.outputs.embeddings_level == "dense")
    started = time.perf_counter()
    plan = build_plan(job, loaded.model, loaded.head, loaded.metadata)
    result = execute(plan, loaded.model, loaded.head, Reporter())
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "model_seconds": result["model_seconds"],
        "windows": result["windows"],
        "km2": result["area_km2"],
        "peak_rss_gb": _peak_rss_gb(),
    }


def run(params, reporter) -> dict[str, Any]:
    side = 32 if params.quick else SIDE
    threads = params.threads
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = _write_inputs(folder, side)
        for model in MODELS:
            checkpoint = _checkpoint(folder, model)
            for level in LEVELS:
                job = _job(folder, checkpoint, files, level)
                env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
                code = (
                    "import json, torch; from engine.bench.throughput import _child; "
                    + (f"torch.set_num_threads({threads}); " if threads else "")
                    + f"print(json.dumps(_child({str(job)!r})))"
                )
                done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)  # nosec B603  # this interpreter, fixed arguments
                if done.returncode != 0:
                    raise RuntimeError(f"throughput child failed: {done.stderr[-2000:]}")
                row = json.loads(done.stdout.strip().splitlines()[-1])
                row["km2_per_h"] = row["km2"] / row["seconds"] * 3600
                row["outside_model_share"] = 1 - row["model_seconds"] / row["seconds"]
                row["s2_tile_hours"] = TILE_KM2 / row["km2_per_h"]
                row["load_average"] = os.getloadavg()[0]
                results[f"{model} {level}"] = row
                reporter.log(
                    f"{model} {level:>5}: {row['km2_per_h']:7.2f} km²/h ({row['km2']:.3f} km² in "
                    f"{row['seconds']:.1f} s, {row['windows']} windows), outside the model "
                    f"{100 * row['outside_model_share']:.0f}%, peak RSS {row['peak_rss_gb']:.2f} GB, "
                    f"S2 tile {row['s2_tile_hours']:.0f} h; load {row['load_average']:.1f}"
                )
    return {"side_px": side, "dates": DATES, "threads": threads, "rows": results}
