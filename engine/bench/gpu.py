"""Inference throughput on a GPU (or on the CPU where there is none): fp32 and bf16, batch sizes up to the memory.

``python -m engine bench gpu [--device cuda] [--quick] [--json]``: one command to run as
soon as a GPU is lent. Models: OmniSat TreeSatAI-TS and AnySat base (``--quick``: AnySat
tiny and fewer dates), random weights, on TreeSatAI-TS tiles (aerial 300 x 300 px at 0.2 m,
S2 and S1 ascending at 6 x 6 px, 50 dates). Each step is what a mapping batch costs: the
host inputs (pinned memory on CUDA) copied to the device without blocking, the model's
features under inference mode and autocast, the results back on the host; bf16 keeps the
weights in bf16 as the mapping does (engine.runtime.precision.keep_weights_in). Batch sizes double
from 1 until the device runs out of memory (the last one that fits is reported) or
MAX_BATCH; figures are tiles/s (best of the timed repetitions), the peak device memory and
bf16 against fp32 at the same batch, all in the same run. Without CUDA the same code runs on
the CPU, with small batches: those are CPU figures, not GPU ones (the result says so).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from engine.bench.anysat import build
from engine.errors import EngineError
from engine.models.registry import build_model
from engine.runtime.precision import autocast_context, choose_device, cpu_has_bf16, keep_weights_in, to_device
from engine.runtime.progress import Reporter

MAX_BATCH = {"cuda": 1024, "cpu": 8}
DATES, TILE_M, PATCH_M = 50, 60.0, 10.0


def random_inputs(
    model, batch: int, dates: int, tile_m: float, device: torch.device | str = "cpu", pin: bool = False
) -> tuple[dict, dict, dict]:
    """Random inputs of a model's modalities at their real sizes for a ``tile_m`` tile: (inputs, dates,
    date masks); in pinned host memory with ``pin`` (fast, non-blocking copies to a GPU)."""
    g = torch.Generator().manual_seed(0)
    inputs, day, mask = {}, {}, {}
    for name, spec in model.modalities.items():
        px = round(tile_m / spec.gsd_m)
        shape = (batch, spec.n_bands, px, px) if spec.kind == "image" else (batch, dates, spec.n_bands, px, px)
        inputs[name] = torch.randn(shape, generator=g)
        if spec.kind != "image":
            day[name] = torch.sort(torch.randint(1, 366, (batch, dates), generator=g).float(), dim=1).values
            mask[name] = torch.ones(batch, dates, dtype=torch.bool)
    move = (lambda t: t.pin_memory()) if pin else (lambda t: t.to(device))
    return (
        {n: move(x) for n, x in inputs.items()},
        {n: move(x) for n, x in day.items()},
        {n: move(x) for n, x in mask.items()},
    )


def _models(quick: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    return {
        "omnisat-treesatai": lambda: build_model("omnisat-treesatai").eval(),
        f"anysat-{'tiny' if quick else 'base'}": lambda: build("tiny" if quick else "base"),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model, host: tuple[dict, dict, dict], device: torch.device, dtype: torch.dtype) -> None:
    inputs, day, mask = ({n: to_device(x, device) for n, x in part.items()} for part in host)
    with torch.inference_mode(), autocast_context(device, dtype):
        features = model.features(inputs, day, mask, patch_size_m=PATCH_M)
    features.patch.float().cpu()


def _throughput(model, batch: int, device: torch.device, dtype: torch.dtype, repeats: int, dates: int) -> float:
    host = random_inputs(model, batch, dates, TILE_M, pin=device.type == "cuda")
    _step(model, host, device, dtype)  # warm-up: kernels chosen, memory pooled
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        _step(model, host, device, dtype)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return batch / best


def run(params, reporter: Reporter) -> dict[str, Any]:
    device = choose_device(getattr(params, "device", "auto"))
    bf16 = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16()
    precisions = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if bf16 else {})}
    dates, repeats = (8, 1) if params.quick else (DATES, 3)
    ceiling = 2 if params.quick else MAX_BATCH[device.type]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    results: dict[str, Any] = {"device": f"{device} ({name})", "dates": dates, "models": {}}
    if device.type != "cuda":
        results["note"] = "no CUDA device: these are CPU figures, not GPU ones"
    reporter.log(f"Inference throughput on {results['device']}, TreeSatAI-TS tiles with {dates} dates.")
    for label, make in _models(params.quick).items():
        rows: dict[str, dict[int, Any]] = {}
        for precision, dtype in precisions.items():
            model = keep_weights_in(make().to(device), dtype)
            rows[precision] = {}
            batch = 1
            while batch <= ceiling:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                try:
                    rate = _throughput(model, batch, device, dtype, repeats, dates)
                except (torch.OutOfMemoryError, MemoryError):
                    rows[precision][batch] = "out of memory"
                    reporter.log(f"{label} {precision}: batch {batch} does not fit; the largest is {batch // 2}.")
                    break
                finally:
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
                rows[precision][batch] = {"tiles_per_s": round(rate, 3), "peak_gib": round(peak, 2) if peak else None}
                reporter.log(
                    f"{label:18s} {precision} batch {batch:4d}: {rate:9.2f} tiles/s"
                    + (f", peak {peak:.2f} GiB" if peak else "")
                )
                batch *= 2
            del model
        fits = {p: [b for b, v in r.items() if isinstance(v, dict)] for p, r in rows.items()}
        if not fits["fp32"]:
            raise EngineError(f"{label} does not fit on {device} at batch 1: use a device with more memory.")
        entry: dict[str, Any] = {"batches": rows, "largest_batch_run": {p: max(b) for p, b in fits.items() if b}}
        if "bf16" in rows:
            entry["bf16_vs_fp32"] = {
                b: round(rows["bf16"][b]["tiles_per_s"] / rows["fp32"][b]["tiles_per_s"], 3)
                for b in fits["fp32"]
                if b in fits["bf16"]
            }
        results["models"][label] = entry
    return results
