"""Prepared GPU check, at most a few minutes on one GPU: CUDA outputs against the CPU, then speed.

``python -m engine.bench.device_check [--budget-s 270] [--json FILE]`` on a machine with CUDA:
1. for AnySat base (and every UniverSat preset the engine registers, when it has any), random
   weights, the same TreeSatAI-TS inputs (aerial 300 x 300 px at 0.2 m, S2 and S1 ascending
   6 x 6 px, 50 dates; batch 2) on the CPU in fp32 and on CUDA in fp32 (TF32 off) and bf16:
   largest difference and lowest cosine of the tile, patch and dense features, against
   tolerances (fp32: 1e-3 absolute, cosine >= 0.9999; bf16: cosine >= 0.99);
2. inference throughput (tiles/s, host-to-host as a mapping batch) in fp32 and bf16 at
   doubling batch sizes, with the peak device memory, until the memory or the time budget
   runs out.
Every step checks the remaining budget first and is skipped, said so, when it would overrun.
The exit status is 1 when an agreement check fails. ``--device cpu`` runs the same code on
the CPU (a smoke test of the script, not a GPU figure).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from engine.bench.anysat import build
from engine.bench.gpu import random_inputs
from engine.models.registry import build_model, preset_names
from engine.runtime.precision import autocast_context, keep_weights_in, to_device

TILE_M, PATCH_M, DATES, CHECK_BATCH = 60.0, 10.0, 50, 2
TOLERANCE = {"fp32": {"max_abs": 1e-3, "cosine": 0.9999}, "bf16": {"max_abs": None, "cosine": 0.99}}
BATCHES = (1, 4, 16, 64, 256)


def _models(quick: bool) -> dict[str, Callable[[], nn.Module]]:
    """AnySat base, and each UniverSat preset when the engine has that model (random weights)."""
    size = "tiny" if quick else "base"
    models: dict[str, Callable[[], nn.Module]] = {f"anysat-{size}": lambda: build(size)}
    for name in sorted(n for n in preset_names() if n.startswith("universat")):
        if quick and not name.endswith("tiny"):
            continue
        models[name] = lambda name=name: (torch.manual_seed(0), build_model(name).eval())[1]
    return models


def _features(
    model: nn.Module, host: tuple[dict, dict, dict], device: torch.device, dtype: torch.dtype, dense: bool
) -> dict[str, torch.Tensor]:

    inputs, day, mask = ({n: to_device(x, device) for n, x in part.items()} for part in host)
    finest = min(model.modalities, key=lambda n: model.modalities[n].gsd_m) if dense else None
    with torch.inference_mode(), autocast_context(device, dtype):
        feats = model.features(inputs, day, mask, patch_size_m=PATCH_M, dense=finest)
    out = {"tile": feats.tile, "patch": feats.patch}
    if feats.dense is not None:
        out["dense"] = feats.dense
    return {k: v.float().cpu() for k, v in out.items()}


def _agreement(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor], precision: str) -> dict[str, Any]:
    rows = {}
    for key, ref in reference.items():
        a, b = ref.reshape(-1, ref.shape[-1]), other[key].reshape(-1, ref.shape[-1])
        rows[key] = {
            "max_abs": float((a - b).abs().max()),
            "max_ref": float(a.abs().max()),
            "cosine_min": float(nn.functional.cosine_similarity(a, b, dim=-1).min()),
        }
    limits = TOLERANCE[precision]
    ok = all(
        (limits["max_abs"] is None or r["max_abs"] <= limits["max_abs"]) and r["cosine_min"] >= limits["cosine"]
        for r in rows.values()
    )
    return {"outputs": rows, "within_tolerance": ok, "tolerance": limits}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check(device: torch.device, budget_s: float, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:

    start = time.perf_counter()
    left = lambda: budget_s - (time.perf_counter() - start)  # noqa: E731
    dates = 8 if quick else DATES
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    precisions = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if bf16 else {})}
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 in the agreement check
        torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke test, not GPU figures)"
    results: dict[str, Any] = {"device": f"{device} ({name})", "dates": dates, "models": {}, "skipped": []}
    log(f"Device check on {results['device']}: TreeSatAI-TS tiles, {dates} dates, budget {budget_s:.0f} s.")
    for label, make in _models(quick).items():
        entry: dict[str, Any] = {"agreement": {}, "throughput": {}}
        results["models"][label] = entry
        try:
            cpu_model = make()
        except Exception as exc:  # a model the engine lists but cannot build here: say so, go on
            entry["error"] = f"{type(exc).__name__}: {exc}"
            log(f"{label}: cannot be built ({entry['error']})")
            continue
        host = random_inputs(cpu_model, CHECK_BATCH, dates, TILE_M)
        reference = _features(cpu_model, host, torch.device("cpu"), torch.float32, dense=True)
        for precision, dtype in precisions.items():
            if left() < 20:
                results["skipped"].append(f"{label} {precision} agreement")
                continue
            model = keep_weights_in(make().to(device), dtype)
            agreement = _agreement(reference, _features(model, host, device, dtype, dense=True), precision)
            entry["agreement"][precision] = agreement
            log(
                f"{label} {precision} vs CPU fp32: "
                + ", ".join(
                    f"{k} max |diff| {r['max_abs']:.1e} (of {r['max_ref']:.1f}), cosine min {r['cosine_min']:.6f}"
                    for k, r in agreement["outputs"].items()
                )
                + f" -> {'within' if agreement['within_tolerance'] else 'OUTSIDE'} tolerance"
            )
            del model
        for precision, dtype in precisions.items():
            model = keep_weights_in(make().to(device), dtype)
            rows: dict[int, Any] = {}
            for batch in BATCHES[:2] if quick else BATCHES:
                if left() < 15:
                    results["skipped"].append(f"{label} {precision} batch {batch}")
                    break
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                try:
                    host = random_inputs(model, batch, dates, TILE_M, pin=device.type == "cuda")
                    _features(model, host, device, dtype, dense=False)  # warm-up
                    _sync(device)
                    began = time.perf_counter()
                    _features(model, host, device, dtype, dense=False)
                    _sync(device)
                    seconds = time.perf_counter() - began
                except (torch.OutOfMemoryError, MemoryError):
                    rows[batch] = "out of memory"
                    log(f"{label} {precision}: batch {batch} does not fit.")
                    break
                finally:
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
                rows[batch] = {
                    "tiles_per_s": round(batch / seconds, 2),
                    "peak_gib": None if peak is None else round(peak, 2),
                }
                log(
                    f"{label} {precision} batch {batch:4d}: {batch / seconds:9.2f} tiles/s"
                    + (f", peak {peak:.2f} GiB" if peak is not None else "")
                )
                if seconds * 4 > left():  # the next, larger batch would not finish in time
                    break
            entry["throughput"][precision] = rows
            del model
    results["all_within_tolerance"] = all(
        a["within_tolerance"] for m in results["models"].values() for a in m.get("agreement", {}).values()
    )
    results["seconds"] = round(time.perf_counter() - start, 1)
    log(
        f"Done in {results['seconds']} s; agreement {'met' if results['all_within_tolerance'] else 'NOT met'}"
        + (f"; skipped for time: {', '.join(results['skipped'])}" if results["skipped"] else "")
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--budget-s", type=float, default=270.0, help="stop starting new steps after this")
    parser.add_argument("--quick", action="store_true", help="tiny models, few dates (a smoke test)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("No CUDA device here: run on a GPU machine, or --device cpu for a smoke test.", file=sys.stderr)
        return 2
    results = check(torch.device(args.device), args.budget_s, args.quick, lambda line: print(line, flush=True))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0 if results["all_within_tolerance"] else 1


if __name__ == "__main__":
    sys.exit(main())
