"""UniverSat Base on CPU: ours against the reference code (same weights, same inputs), memory, mapping km²/h.

``python -m engine bench universat --reference DIR [--quick]`` (DIR: a checkout of the public
reference repository, outside the project; see engine/bench/universat_reference.py).

- speed: fp32, 2 threads (unless --threads), the two models called in turn on the same input,
  ``reps`` times each, medians of the wall times; goal: ours >= 1.3x the reference's throughput.
  Inputs: a 240 m square of Sentinel-2 (12 dates, 10 bands) + Sentinel-1 (12 dates, VV, VH,
  VV/VH) at 10 m, 40 m patches, read out at the patch grid (6 x 6) and at 10 m (24 x 24); S2 as
  random floats (every value distinct) and as integer digital numbers like real products;
  the TreeSatAI sample (aerial 0.2 m + S2 + S1, 60 m square) at 10 m patches.
- memory: peak RSS of a fresh process per model running the S2 + S1 square at 10 m output
  (weights included: Base without the SSL projectors is 0.58 GB in fp32; the reference also
  builds none here).
- mapping: the ``embed`` operation on a synthetic S2 + S1 stack (12 + 12 dates, 10 m) with a
  random Base checkpoint, patch level and 10 m dense level; km²/h = area / wall time. The area is
  small (the machine is shared): the figure is extrapolated linearly, which tiled mapping justifies
  (windows are independent; reading and writing are a small share).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess  # nosec B404  # starts this interpreter for a memory probe, no shell
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.transform import from_origin
from torch.utils.flop_counter import FlopCounterMode

from engine.bench.common import write_raster
from engine.bench.omnisat import matmul_peak, profile_modules
from engine.bench.universat_reference import reference_tokens, treesat_inputs, twin_models
from engine.errors import EngineError
from engine.models.checkpoint import save_checkpoint
from engine.models.kernels import default_kernels
from engine.models.universat import UniverSat, universat_config
from engine.runtime.progress import Reporter
from engine.runtime.registry import run_operation

GOAL = 1.3


def _s2_s1(px: int = 24, dates: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    inputs = {"s2": torch.randn(1, dates, 10, px, px, generator=g), "s1": torch.randn(1, dates, 3, px, px, generator=g)}
    days = {n: torch.sort(torch.randint(1, 366, (1, dates), generator=g).float()).values for n in inputs}
    return inputs, days


def _s2_dn_s1(px: int = 24, dates: int = 12):
    """S2 as real products store it (integer digital numbers, reflectance x 10000) normalised per band;
    S1 as floats (dB): how values repeat in real data, which the encoder's first axis exploits."""
    inputs, days = _s2_s1(px, dates)
    inputs["s2"] = (torch.round(inputs["s2"] * 1500 + 3000) - 3000) / 1500
    return inputs, days


def _cases(quick: bool):
    cases = [
        ("s2 (digital numbers)+s1 12 dates, 240 m, 40 m patches, patch level", _s2_dn_s1, 40.0, None),
        ("s2+s1 12 dates (random floats), 240 m, 40 m patches, 10 m output", _s2_s1, 40.0, 24),
    ]
    if not quick:
        cases += [
            ("s2+s1 12 dates (random floats), 240 m, 40 m patches, patch level", _s2_s1, 40.0, None),
            (
                "treesat aerial+s2+s1, 10 m patches, patch level",
                lambda: treesat_inputs(("aerial", "s2", "s1")),
                10.0,
                None,
            ),
        ]
    return cases


def _stages(ref: torch.nn.Module, ours) -> dict[str, dict[str, list[torch.nn.Module]]]:
    """The same four stages in both models: patch encoder, fusion, trunk, sub-patch cross-attention
    (the reference's ``Bilinear_out`` is an identity module: its resampling is inline, in no stage)."""
    kinds = {"Bi_ACA_in": "fusion", "SA": "trunk", "CA_Sub": "sub-patch cross"}
    theirs: dict[str, list[torch.nn.Module]] = {"patch encoder": [ref.spatial_encoder]}
    for kind, block in zip(ref.block_type, ref.blocks):
        if kind in kinds:
            theirs.setdefault(kinds[kind], []).append(block)
    mine = {
        "patch encoder": [ours.patch_encoder],
        "fusion": [ours.fusion],
        "trunk": list(ours.blocks),
        "sub-patch cross": [ours.sub_cross],
    }
    return {"ours": mine, "reference": theirs}


def _flops(fn) -> float:
    """FLOPs of one call as FlopCounterMode counts aten's matmuls and attention (oneDNN's op is not counted:
    our layers run PyTorch's default kernel inside the count)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter, default_kernels():
        fn()
    return float(counter.get_total_flops())


def speed(reference: str, reps: int, quick: bool, reporter: Reporter) -> dict[str, Any]:
    ref, ours = twin_models(reference, "base")
    stages = _stages(ref, ours)
    peak = matmul_peak(torch.float32)
    out = {}
    for name, make, patch, side in _cases(quick):
        inputs, days = make()
        latent = ours.latent_side(inputs, patch)
        side = side or latent
        runs = {
            "ours": partial(ours.tokens, inputs, days, patch, side),
            "reference": partial(reference_tokens, ref, inputs, days, patch, latent, side),
        }
        flops = {k: _flops(fn) for k, fn in runs.items()}
        times: dict[str, list[float]] = {k: [] for k in runs}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        results, profile = {}, {}
        with torch.no_grad():
            for key, fn in runs.items():  # warm-up, profiled by stage; its output kept for the equality check
                profile[key] = profile_modules(stages[key], partial(_keep, results, key, fn))
            for _ in range(reps):
                for key, fn in runs.items():  # interleaved: both see the same load
                    start, start_cpu = time.perf_counter(), time.process_time()
                    fn()
                    times[key].append(time.perf_counter() - start)
                    cpu[key].append(time.process_time() - start_cpu)
        med = {k: statistics.median(v) for k, v in times.items()}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
        diff = float((results["ours"] - results["reference"]).abs().max())
        shares = {k: {st: v / p["total"] for st, v in p.items() if st != "total"} for k, p in profile.items()}
        out[name] = {
            "gflop": {k: f / 1e9 for k, f in flops.items()},
            "peak_fraction": {k: flops[k] / med[k] / (peak * 1e9) for k in runs},
            "profile_share": shares,
            "ours_s": med["ours"],
            "reference_s": med["reference"],
            "speedup": med["reference"] / med["ours"],
            "cpu_speedup": med_cpu["reference"] / med_cpu["ours"],
            "max_abs_diff": diff,
            "times": times,
            "cpu_times": cpu,
        }
        reporter.log(
            f"{name}: ours {med['ours']:.3f} s, reference {med['reference']:.3f} s (wall medians of {reps}), "
            f"{med['reference'] / med['ours']:.2f}x; CPU-time ratio {med_cpu['reference'] / med_cpu['ours']:.2f}x; "
            f"max |diff| {diff:.1e}"
        )
        for key in runs:
            reporter.log(
                f"  {key}: {flops[key] / 1e9:.1f} GFLOP, {100 * out[name]['peak_fraction'][key]:.0f}% of the "
                f"{peak:.0f} GFLOP/s matmul peak; time by stage "
                + ", ".join(f"{st} {100 * v:.0f}%" for st, v in shares[key].items())
            )
    return out


def _keep(store: dict, key: str, fn) -> None:
    store[key] = fn()


_MEMORY_CHILD = """
import json, sys, time, torch
torch.set_num_threads({threads})
which, reference = sys.argv[1], sys.argv[2]
from engine.bench.universat import _s2_s1
inputs, days = _s2_s1()
if which == "ours":
    from engine.models.universat import UniverSat, universat_config
    model = UniverSat(universat_config("base")).eval()
    run = lambda: model.tokens(inputs, days, 40.0, 24)
else:
    from engine.bench.universat_reference import reference_model, reference_tokens
    model = reference_model(reference, "base")
    run = lambda: reference_tokens(model, inputs, days, 40.0, 6, 24)
def hwm():  # VmHWM: this process's own peak (ru_maxrss would carry the parent's over exec)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
    return int(line.split()[1]) / 1e6
before = hwm()
with torch.no_grad():
    run()
print(json.dumps({{"peak_rss_gb": hwm(), "rss_after_build_gb": before}}))
"""


def memory(reference: str, threads: int) -> dict[str, Any]:
    out = {}
    for which in ("ours", "reference"):
        done = subprocess.run(  # nosec B603  # this interpreter, fixed arguments
            [sys.executable, "-c", _MEMORY_CHILD.format(threads=threads), which, reference],
            capture_output=True,
            text=True,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        out[which] = (
            json.loads(done.stdout.strip().splitlines()[-1])
            if done.returncode == 0
            else {"error": done.stderr.strip().splitlines()[-1:]}
        )
    return out


def mapping(px: int, threads: int, reporter: Reporter) -> dict[str, Any]:
    """km²/h of the embed operation, patch level and 10 m dense level, on a px x px stack at 10 m."""

    out = {}
    with tempfile.TemporaryDirectory(prefix="universat-bench-") as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        for name, bands in (("s2", 10), ("s1", 3)):
            (root / name).mkdir()
            for t in range(12):
                write_raster(
                    root / name / f"{name}_2021{t + 1:02d}15.tif",
                    rng.normal(size=(bands, px, px)).astype(np.float32),
                    "EPSG:32633",
                    from_origin(500000.0, 5100000.0, 10, 10),
                )
        torch.manual_seed(0)
        ckpt = save_checkpoint(
            root / "base.safetensors",
            UniverSat(universat_config("base", ("s2", "s1"))),
            provenance={"weights": "random, for the benchmark"},
        )
        area_km2 = (px * 10 / 1000) ** 2
        for level in ("patch", "dense"):
            job = {
                "model": str(ckpt),
                "patch_size": 40,
                "device": "cpu",
                "threads": threads,
                "modalities": {"s2": {"files": "s2"}, "s1": {"files": "s1"}},
                "outputs": {"embeddings": f"emb_{level}.tif", "embeddings_level": level},
            }
            (root / f"job_{level}.json").write_text(json.dumps(job))
            start = time.perf_counter()
            result = run_operation("embed", {"job": str(root / f"job_{level}.json")}, Reporter())
            wall = time.perf_counter() - start
            out[level] = {
                "area_km2": area_km2,
                "seconds": wall,
                "km2_per_hour": area_km2 / wall * 3600,
                "windows": result.get("windows"),
            }
            reporter.log(
                f"mapping {level} level ({'10 m cells' if level == 'dense' else '40 m patches'}): "
                f"{area_km2:.3f} km² in {wall:.1f} s = {area_km2 / wall * 3600:.2f} km²/h "
                f"({result.get('windows')} windows)"
            )
    return out


def run(params, reporter: Reporter) -> dict[str, Any]:
    if not params.reference:
        raise EngineError(
            "bench universat needs --reference DIR: a checkout of the reference repository "
            "(outside the project) to time in the same run."
        )
    threads = params.threads or 2
    torch.set_num_threads(threads)
    reps = 3 if params.quick else 5
    result = {"threads": threads, "speed": speed(params.reference, reps, params.quick, reporter)}
    speedups = [c["speedup"] for c in result["speed"].values()]
    reporter.log(f"load average while measuring: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    result["goal_met"] = min(speedups) >= GOAL
    reporter.log(
        f"speedup over the reference: min {min(speedups):.2f}x (goal {GOAL}x: "
        f"{'met' if result['goal_met'] else 'NOT met'})"
    )
    result["memory"] = memory(params.reference, threads)
    for which, fig in result["memory"].items():
        reporter.log(
            f"peak RSS {which}: "
            + (
                f"{fig['peak_rss_gb']:.2f} GB (after building {fig['rss_after_build_gb']:.2f})"
                if "error" not in fig
                else f"failed: {fig['error']}"
            )
        )
    result["mapping"] = mapping(24 if params.quick else 32, threads, reporter)
    return result
