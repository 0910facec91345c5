"""Mapping over ranks: one process against 2 ranks on this machine, and what a resumed rerun costs.

``python -m engine bench ranks [--quick] [--json]``

Inputs and model as ``bench tiled`` (Sentinel-2 + Sentinel-1 ratio stacks, 30 dates, a
random OmniSat TreeSatAI-architecture checkpoint with a patch head), on its 16x area
(--quick: 1x). In the same run, interleaved (2 rounds, --quick 1, fastest kept):
``classify`` in one process (the free cores' threads) and with ``"ranks": 2`` (half the
threads each; the ranks' start-up, model loading and the assembly included). Then a rerun
after removing one shard's part (a crashed rank): only that shard is mapped again.
Printed: seconds, the 2-rank speed-up, the windows each shard computed and the margin's
share of extra windows, the rerun's time against the full 2-rank run, and whether the
2-rank class map equals the one-process one bit for bit.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from engine.bench.tiled import (
    AREAS,
    BATCH,
    OVERLAP,
    PATCH_M,
    TILE,
    bench_dates,
    bench_model_config,
    window_side,
    write_inputs,
)
from engine.runtime.registry import run_operation
from engine.runtime.threads import default_threads


def _timed(job: dict) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    result = run_operation("classify", {"job": job})
    return time.perf_counter() - started, result


def run(params, reporter) -> dict[str, Any]:
    import torch  # lazy: keeps torch out of --help

    from engine.models.checkpoint import save_checkpoint  # lazy: keeps torch out of --help
    from engine.models.heads import HeadConfig, build_head  # lazy: keeps torch out of --help
    from engine.models.registry import build_model  # lazy: keeps torch out of --help

    factor = AREAS[0] if params.quick else AREAS[-1]
    rounds = 1 if params.quick else 2
    threads = params.threads or default_threads()
    with tempfile.TemporaryDirectory(prefix="omnisat-bench-ranks-") as tmp:
        folder = Path(tmp)
        torch.manual_seed(0)
        model = build_model(bench_model_config()).eval()
        save_checkpoint(
            folder / "model.safetensors",
            model,
            head=build_head(HeadConfig("patch", model.embed_dim, 10)),
            provenance={"weights": "random, benchmark"},
        )
        del model
        files = write_inputs(folder, window_side(4, factor))

        def job(name: str, ranks: int) -> dict:
            (folder / name).mkdir(exist_ok=True)
            return {
                "model": str(folder / "model.safetensors"),
                "modalities": {n: {"files": f, "dates": bench_dates()} for n, f in files.items()},
                "outputs": {"classes": str(folder / name / "classes.vrt")},
                "tile_size": TILE * PATCH_M,
                "overlap": OVERLAP * PATCH_M,
                "batch_size": BATCH,
                "precision": "fp32",
                "ranks": ranks,
                "threads": max(1, threads // ranks),
            }

        best: dict[int, float] = {}
        results: dict[int, dict] = {}
        for r in range(rounds):
            for ranks in (1, 2):
                seconds, results[ranks] = _timed(job(f"r{r}_{ranks}", ranks))
                best[ranks] = min(best.get(ranks, float("inf")), seconds)
                reporter.log(f"round {r + 1}: {ranks} rank(s) {seconds:.1f} s")
        last = f"r{rounds - 1}_2"
        (folder / last / "classes.vrt.parts" / "part-002-of-002.tif").unlink()  # rank 1 "crashed"
        rerun, resumed = _timed(job(last, 2))
        with (
            rasterio.open(folder / f"r{rounds - 1}_1" / "classes.vrt") as one,
            rasterio.open(folder / last / "classes.vrt") as two,
        ):
            equal = bool(np.array_equal(one.read(), two.read()))
    windows = results[1]["windows"]
    computed = [s["windows_computed"] for s in results[2]["shards"]]
    figures = {
        "area_km2": round(results[1]["area_km2"], 2),
        "windows": windows,
        "threads": threads,
        "seconds": {"1 process": round(best[1], 2), "2 ranks": round(best[2], 2)},
        "speedup_2_ranks": round(best[1] / best[2], 3),
        "windows_per_shard": computed,
        "margin_extra_windows": round(sum(computed) / windows - 1, 4),
        "rerun_one_shard_missing_s": round(rerun, 2),
        "rerun_vs_full_2_ranks": round(rerun / best[2], 3),
        "rerun_resumed": [s["resumed"] for s in resumed["shards"]],
        "bit_equal_1_vs_2_ranks": equal,
    }
    reporter.log(
        f"1 process {best[1]:.1f} s, 2 ranks {best[2]:.1f} s ({figures['speedup_2_ranks']}x); margin "
        f"{figures['margin_extra_windows']:.1%} extra windows; rerun with one shard missing "
        f"{rerun:.1f} s ({figures['rerun_vs_full_2_ranks']}x the full run); bit-equal: {equal}"
    )
    return figures
