"""Tiled inference at growing areas: time and peak memory must scale with area, not worse.

``python -m engine bench tiled [--quick] [--reprojected] [--json] [--threads N]``

Builds inputs on the fly in a temporary folder: Sentinel-2 (10 bands x 30 dates,
uint16) and Sentinel-1 (VV, VH, VV/VH x 30 dates, float32) at 10 m, one
dates x channels GeoTIFF per modality, for areas of 1x, 4x, 16x and 64x a base area,
and a randomly initialised OmniSat (TreeSatAI architecture, 6 x 6 patches of 10 m,
with S2 + S1 three-band) checkpoint with a 10-class patch head. Each area runs
``classify`` (class map + confidence) in a fresh subprocess so that peak RSS values
do not mix; right after the run, the same subprocess times the bare model forward
pass (model + head on random batches of the same shape: no reading, warping,
blending or writing), because a shared machine's load changes from minute to
minute; the pipeline also reports the share of its own time spent inside the
model (measured in the very same run, so immune to the machine's load). The
sizes run interleaved in two rounds (one with --quick); each keeps its fastest
run and its highest peak RSS. Printed per area: ms per window, windows/s, km2/min,
wall and CPU seconds, peak RSS, bare forward windows/s, model share; ratios of the time
per window (wall and CPU) at 16x and 64x over 1x, rss(64x)/rss(1x) and pipeline over
bare forward throughput. Targets (issue 16): time per window flat within 10 % from 1x
to 16x (and 64x), RSS ratio <= 1.3, pipeline >= 0.8 of bare forward.

Window counts: the base side is 6 windows of 6 patches with 1 patch overlap
(31 patches; --quick: 4 windows, 21 patches); doubling the side gives 13, 25 and 49
windows per side, so 16x the area holds 17.4x the windows (edge windows): hence the
time per window. Each child warms the model up on one batch before
the timed run (one-off kernel set-up is not a per-area cost) and loads the
checkpoint outside the timed part: the times are those of planning, reading,
warping, the model, blending and writing.

``--reprojected``: one area (4x) whose inputs come in EPSG:4326 while the grid is UTM,
mapped with the inputs warped once per run (engine.io.align.WarpCache, today's path) and
window by window (the path before), interleaved in the same run. Printed: the share of
each run's time outside the model (target for warped once: < 15 %), the time ratio of
the two paths and the pipeline over the bare forward pass.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import resource
import subprocess  # nosec B404  # starts this interpreter per thread count, no shell
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

from engine.io.job import load_job
from engine.models.modalities import sensor
from engine.runtime.precision import autocast_context, choose_device, choose_dtype
from engine.runtime.progress import Reporter

DATES = 30
AREAS = (1, 4, 16, 64)
UTM = "EPSG:32632"
REPROJECTED_AREA = 4  # --reprojected: one size, both reading paths
TILE, OVERLAP, PATCH_M = 6, 1, 10.0
BATCH = 16
PRECISION = "auto"


def window_side(base_windows: int, factor: int) -> int:
    """Grid side in patches for ``factor`` times the base area (base: n windows of TILE with OVERLAP)."""
    base = (TILE - OVERLAP) * base_windows + OVERLAP
    return base * int(round(factor**0.5))


def bench_model_config():
    from engine.models.omnisat import treesatai_config  # lazy: keeps torch out of --help

    return dataclasses.replace(treesatai_config(), modalities=(sensor("s2"), sensor("s1_asc_ratio")))


def write_inputs(folder: Path, side: int, lon_lat: bool = False) -> dict[str, Any]:
    """Two dates x channels stacks on a UTM grid, written in strips (the parent stays small); with
    ``lon_lat``, warped to EPSG:4326 as S1/S2 products often come."""
    transform = from_origin(500000.0, 5000000.0, PATCH_M, PATCH_M)
    rng = np.random.default_rng(side)
    files = {}
    for name, bands, dtype in (("s2", 10, "uint16"), ("s1_asc_ratio", 3, "float32")):
        path = folder / f"{name}_{side}.tif"
        profile = dict(
            driver="GTiff",
            width=side,
            height=side,
            count=DATES * bands,
            dtype=dtype,
            crs=UTM,
            transform=transform,
            tiled=True,
            blockxsize=64,
            blockysize=64,
            interleave="pixel",
            compress="deflate",
        )
        with rasterio.open(path, "w", **profile) as ds:
            for row in range(0, side, 64):
                h = min(64, side - row)
                if dtype == "uint16":
                    block = rng.integers(200, 6000, (DATES * bands, h, side)).astype(np.uint16)
                else:
                    block = rng.normal(-12, 3, (DATES * bands, h, side)).astype(np.float32)
                ds.write(block, window=Window(0, row, side, h))
        files[name] = str(_to_lon_lat(path) if lon_lat else path)
    return files


def _to_lon_lat(path: Path) -> Path:
    out = path.with_name(f"{path.stem}_4326.tif")
    with rasterio.open(path) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        profile = dict(src.profile, crs="EPSG:4326", transform=transform, width=width, height=height, nodata=0)
        with rasterio.open(out, "w", **profile) as dst:
            reproject(
                rasterio.band(src, list(range(1, src.count + 1))),
                rasterio.band(dst, list(range(1, src.count + 1))),
                resampling=Resampling.nearest,
            )
    return out


def bench_dates() -> list[str]:
    start = dt.date(2021, 1, 5)
    return [(start + dt.timedelta(days=12 * t)).isoformat() for t in range(DATES)]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def _child_pipeline(job_path: str, warp_once: bool = True) -> dict[str, Any]:
    """Warm up, run classify (timed, peak RSS), then time the bare forward pass in the same process.
    ``warp_once`` False: off-grid inputs warped window by window (the path before warping once)."""
    from engine.mapping.plan import build_plan  # lazy: keeps torch out of --help
    from engine.mapping.run import execute  # lazy: keeps torch out of --help
    from engine.models.checkpoint import load_checkpoint  # lazy: keeps torch out of --help

    job = load_job(job_path)
    loaded = load_checkpoint(job.model)  # as the classify operation does, outside the timed part
    _bare_forward(job.model, 0, job.precision)  # one-off kernel set-up, on a throwaway model copy
    rss_before = _peak_rss_mb()
    started, cpu = time.perf_counter(), _cpu_seconds()
    plan = build_plan(job, loaded.model, loaded.head, loaded.metadata)  # as run_map, with the reading path chosen
    result = execute(dataclasses.replace(plan, warp_once=warp_once), loaded.model, loaded.head, Reporter())
    seconds, cpu_seconds = time.perf_counter() - started, _cpu_seconds() - cpu
    peak = _peak_rss_mb()  # read before the baseline allocates anything
    repeats = min(8, max(3, result["windows"] // BATCH))
    bare = _bare_forward(job.model, repeats, job.precision)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "model_seconds": result["model_seconds"],
        "windows": result["windows"],
        "km2": result["area_km2"],
        "peak_rss_mb": peak,
        "rss_before_run_mb": rss_before,
        "bare_forward": bare,
    }


def _bare_forward(checkpoint: str, repeats: int, precision: str) -> dict[str, Any]:
    """Model + head forward on random batches of the pipeline's shape (after one warm-up step)."""
    import torch  # lazy: keeps torch out of --help

    from engine.models.checkpoint import load_checkpoint  # lazy: keeps torch out of --help

    loaded = load_checkpoint(checkpoint)
    model, head = loaded.model, loaded.head
    device = choose_device("auto")
    dtype = choose_dtype(device, precision)
    gen = torch.Generator().manual_seed(0)
    inputs = {n: torch.randn(BATCH, DATES, s.n_bands, TILE, TILE, generator=gen) for n, s in model.modalities.items()}
    days = torch.arange(1, DATES + 1, dtype=torch.float32).mul(12).expand(BATCH, DATES).contiguous()
    dates = {n: days for n in model.modalities}
    masks = {n: torch.ones(BATCH, DATES, dtype=torch.bool) for n in model.modalities}

    def step():
        with torch.inference_mode(), autocast_context(device, dtype):
            features = model.forward_features(inputs, dates, masks, patch_size_m=PATCH_M)
            head.probabilities(head(features.patch).float())

    step()
    started, cpu = time.perf_counter(), _cpu_seconds()
    for _ in range(repeats):
        step()
    seconds, cpu_seconds = time.perf_counter() - started, _cpu_seconds() - cpu
    windows = repeats * BATCH
    return {
        "windows": windows,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "windows_per_s": windows / seconds if repeats else None,
        "windows_per_cpu_s": windows / cpu_seconds if repeats else None,
    }


def _spawn(args: list[str], threads: int | None) -> dict[str, Any]:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "engine.bench.tiled", *args] + (["--threads", str(threads)] if threads else [])
    done = subprocess.run(command, capture_output=True, text=True, env=env)  # nosec B603  # this interpreter, fixed arguments
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _checkpoint(folder: Path) -> Path:
    import torch  # lazy: keeps torch out of --help

    from engine.models.checkpoint import save_checkpoint  # lazy: keeps torch out of --help
    from engine.models.heads import HeadConfig, build_head  # lazy: keeps torch out of --help
    from engine.models.registry import build_model  # lazy: keeps torch out of --help

    torch.manual_seed(0)
    model = build_model(bench_model_config()).eval()
    head = build_head(HeadConfig("patch", model.embed_dim, 10))
    checkpoint = folder / "model.safetensors"
    save_checkpoint(checkpoint, model, head=head, provenance={"weights": "random, benchmark"})
    return checkpoint


def _write_job(folder: Path, checkpoint: Path, factor: int, files: dict[str, str], grid_crs: str | None) -> Path:
    job = {
        "model": str(checkpoint),
        "modalities": {n: {"files": f, "dates": bench_dates()} for n, f in files.items()},
        "outputs": {
            "classes": str(folder / f"classes_{factor}.tif"),
            "confidence": str(folder / f"confidence_{factor}.tif"),
        },
        "tile_size": TILE * PATCH_M,
        "overlap": OVERLAP * PATCH_M,
        "batch_size": BATCH,
        "device": "auto",
        "precision": PRECISION,
        # Generic statistics: the data are synthetic.
        "normalization": {
            "s2": {"mean": [3000.0] * 10, "std": [1700.0] * 10},
            "s1_asc_ratio": {"mean": [-12.0] * 3, "std": [3.0] * 3},
        },
    }
    if grid_crs:
        job["crs"] = grid_crs
    path = folder / f"job_{factor}.json"
    path.write_text(json.dumps(job))
    return path


def _summary(label: str, runs: list[dict], **extra) -> dict[str, Any]:
    """The least disturbed run of a case, with its highest peak RSS and its fastest bare forward pass."""
    best = min(runs, key=lambda r: r["seconds"])
    best = dict(
        best,
        case=label,
        rounds=len(runs),
        all_seconds=[r["seconds"] for r in runs],
        peak_rss_mb=max(r["peak_rss_mb"] for r in runs),
        **extra,
    )
    best.update(
        windows_per_s=best["windows"] / best["seconds"],
        windows_per_cpu_s=best["windows"] / best["cpu_seconds"],
        ms_per_window=1000 * best["seconds"] / best["windows"],
        km2_per_min=best["km2"] / best["seconds"] * 60,
        model_share=best["model_seconds"] / best["seconds"],
    )
    best["bare_forward"] = max((r["bare_forward"] for r in runs), key=lambda b: b["windows_per_s"])
    best["pipeline_over_bare"] = best["windows_per_s"] / best["bare_forward"]["windows_per_s"]
    return best


def _table(cases: list[dict]) -> list[str]:
    lines = [
        f"{'case':>16} {'windows':>8} {'s':>8} {'cpu s':>8} {'ms/win':>7} {'win/s':>7} {'bare':>7} "
        f"{'ratio':>6} {'model %':>8} {'km2/min':>8} {'peak RSS MB':>12}"
    ]
    for c in cases:
        lines.append(
            f"{c['case']:>16} {c['windows']:>8} {c['seconds']:>8.2f} {c['cpu_seconds']:>8.2f} "
            f"{c['ms_per_window']:>7.1f} {c['windows_per_s']:>7.2f} {c['bare_forward']['windows_per_s']:>7.2f} "
            f"{c['pipeline_over_bare']:>6.2f} {100 * c['model_share']:>8.1f} {c['km2_per_min']:>8.2f} "
            f"{c['peak_rss_mb']:>12.0f}"
        )
    return lines


def _run_areas(folder: Path, checkpoint: Path, base_windows: int, rounds: int, threads, reporter) -> dict[str, Any]:
    jobs = {}
    for factor in AREAS:
        side = window_side(base_windows, factor)
        reporter.log(f"area {factor}x: writing {side} x {side} px inputs")
        jobs[factor] = (side, _write_job(folder, checkpoint, factor, write_inputs(folder, side), None))
    runs: dict[int, list[dict]] = {factor: [] for factor in AREAS}
    for round_ in range(rounds):  # sizes interleaved, so a burst of load on the machine hits all of them
        for factor in AREAS:
            reporter.log(f"round {round_ + 1}/{rounds}, area {factor}x: classify in a fresh process")
            runs[factor].append(_spawn(["--child-pipeline", str(jobs[factor][1])], threads))
    sizes = [_summary(f"{factor}x", runs[factor], area_factor=factor, side_px=jobs[factor][0]) for factor in AREAS]
    by_area = {s["area_factor"]: s for s in sizes}
    first, at16, last = by_area[1], by_area[16], by_area[AREAS[-1]]
    top = f"{AREAS[-1]}x"
    return {
        "sizes": sizes,
        "ratios": {
            "time_16x_over_1x": at16["seconds"] / first["seconds"],
            "windows_16x_over_1x": at16["windows"] / first["windows"],
            "ms_per_window_16x_over_1x": at16["ms_per_window"] / first["ms_per_window"],
            f"ms_per_window_{top}_over_1x": last["ms_per_window"] / first["ms_per_window"],
            f"cpu_ms_per_window_{top}_over_1x": (last["cpu_seconds"] / last["windows"])
            / (first["cpu_seconds"] / first["windows"]),
            f"rss_{top}_over_1x": last["peak_rss_mb"] / first["peak_rss_mb"],
            "pipeline_over_bare_forward_16x": at16["pipeline_over_bare"],
            f"pipeline_over_bare_forward_{top}": last["pipeline_over_bare"],
            f"model_share_of_pipeline_time_{top}": last["model_share"],
        },
        "targets": {
            "ms_per_window_16x_over_1x": "0.9 .. 1.1",
            f"ms_per_window_{top}_over_1x": "0.9 .. 1.1",
            f"cpu_ms_per_window_{top}_over_1x": "0.9 .. 1.1",
            f"rss_{top}_over_1x": "<= 1.3",
            "pipeline_over_bare_forward_16x": ">= 0.8",
            f"pipeline_over_bare_forward_{top}": ">= 0.8",
        },
    }


def _run_reprojected(
    folder: Path, checkpoint: Path, base_windows: int, rounds: int, threads, reporter
) -> dict[str, Any]:
    """One area with inputs in EPSG:4326 on a UTM grid: warped once, and window by window (the old path)."""
    side = window_side(base_windows, REPROJECTED_AREA)
    reporter.log(f"area {REPROJECTED_AREA}x: writing {side} x {side} px inputs, warped to EPSG:4326")
    job = _write_job(folder, checkpoint, REPROJECTED_AREA, write_inputs(folder, side, lon_lat=True), UTM)
    paths = {"warped once": [], "window by window": []}
    for round_ in range(rounds):  # interleaved, so a burst of load hits both
        for label, flags in (("warped once", []), ("window by window", ["--per-window"])):
            reporter.log(f"round {round_ + 1}/{rounds}, {label}: classify in a fresh process")
            paths[label].append(_spawn(["--child-pipeline", str(job), *flags], threads))
    cases = [_summary(label, runs, area_factor=REPROJECTED_AREA, side_px=side) for label, runs in paths.items()]
    once, windowed = cases
    return {
        "sizes": cases,
        "ratios": {
            "outside_model_share_warped_once": 1 - once["model_share"],
            "outside_model_share_window_by_window": 1 - windowed["model_share"],
            "time_window_by_window_over_warped_once": windowed["seconds"] / once["seconds"],
            "pipeline_over_bare_forward_warped_once": once["pipeline_over_bare"],
        },
        "targets": {"outside_model_share_warped_once": "< 0.15"},
    }


def run(params, reporter) -> dict[str, Any]:
    import torch  # lazy: keeps torch out of --help

    base_windows = 4 if params.quick else 6
    rounds = 1 if params.quick else 2
    with tempfile.TemporaryDirectory(prefix="omnisat-bench-tiled-") as tmp:
        folder = Path(tmp)
        checkpoint = _checkpoint(folder)
        cases = (_run_reprojected if params.reprojected else _run_areas)(
            folder, checkpoint, base_windows, rounds, params.threads, reporter
        )
    device = choose_device("auto")
    result = {
        "device": device.type,
        "dtype": str(choose_dtype(device, PRECISION)).replace("torch.", ""),
        "threads": params.threads or torch.get_num_threads(),
        "model": "omnisat (TreeSatAI architecture, s2 + s1_asc_ratio), random weights, 10 classes",
        "inputs": f"S2 10 bands x {DATES} dates + S1 3 bands x {DATES} dates at 10 m"
        f"{' in EPSG:4326 on a UTM grid' if params.reprojected else ''}; windows {TILE}x{TILE} "
        f"patches of {PATCH_M:g} m, overlap {OVERLAP}, batch {BATCH}",
        **cases,
    }
    lines = _table(result["sizes"])
    lines += [f"{k}: {v:.3f} (target {result['targets'].get(k, '-')})" for k, v in result["ratios"].items()]
    reporter.log("\n".join(lines))
    return result


def _main(argv: list[str]) -> int:
    threads = None
    if "--threads" in argv:
        i = argv.index("--threads")
        threads = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2 :]
    if threads:
        import torch  # lazy: keeps torch out of --help

        torch.set_num_threads(threads)
    if argv[0] == "--child-pipeline":
        out = _child_pipeline(argv[1], warp_once="--per-window" not in argv)
    else:
        raise SystemExit("usage: python -m engine bench tiled (the --child-* modes are internal)")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
