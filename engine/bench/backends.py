"""Inference backends, windows and batches for AnySat on CPU: ``python -m engine bench backends``.

What the mapping runs (Sentinel-2 12 dates + Sentinel-1 ascending 12 dates, 10 m patches, patch
features), AnySat base with random weights, fp32, in one run with interleaved medians:

- backends (8-patch windows): our eager path, and with PyTorch's own linear kernel; ``torch.compile`` (inductor; compile time, then steady time; the
  compile is paid once a process, so it amortises when a run maps more windows than
  compile / saving per window); ONNX Runtime when ``onnxruntime`` and ``onnx`` are importable
  (export time, steady time); our opt-in dynamic int8 linear layers. Each one's largest
  difference from the eager output.
- windows: seconds per km² at window sides of 4, 8 and 16 patches (batch 1);
- batches: seconds per km² at batch 1, 2 and 4 (8-patch windows).
- ``--datasets eolearn``: the int8 layers' cost in accuracy instead: eo-learn's land cover embedded by
  the shipped anysat checkpoint in fp32 and with int8 linear layers, the accuracy bench's fixed
  linear probe on the same spatial folds, macro-F1 of each and the largest feature difference.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import EngineError
from engine.models.anysat import AnySat, anysat_config
from engine.models.catalog import with_modalities
from engine.models.kernels import default_kernels, int8_linears
from engine.probes.classifiers import ProbeConfig
from engine.probes.folds import BUFFER_CELLS, FOLDS, spatial_folds
from engine.probes.selection import Candidate, Setup, cross_validate
from engine.runtime.progress import Reporter

DATES = 12
PATCH_M = 10
WINDOW = 8  # patches a side: a forward of AnySat base takes seconds here, 16 would take a minute at load 10


def build(seed: int = 0) -> AnySat:
    torch.manual_seed(seed)
    return AnySat(anysat_config("base", ("s2", "s1_asc"))).eval()


def window_batch(side: int, batch: int, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    inputs = {
        "s2": torch.randn(batch, DATES, 10, side, side, generator=g),
        "s1_asc": torch.randn(batch, DATES, 2, side, side, generator=g),
    }
    dates = {k: torch.sort(torch.randint(1, 366, (batch, DATES), generator=g).float()).values for k in inputs}
    return inputs, dates


class Patches(torch.nn.Module):
    """The model's patch features from positional tensors (what export and compile take)."""

    def __init__(self, model: AnySat):
        super().__init__()
        self.model = model

    def forward(self, s2, s1, s2_dates, s1_dates):
        return self.model.forward_features(
            {"s2": s2, "s1_asc": s1}, {"s2": s2_dates, "s1_asc": s1_dates}, patch_size_m=PATCH_M, with_dense=False
        ).patch


def _args(inputs, dates):
    return inputs["s2"], inputs["s1_asc"], dates["s2"], dates["s1_asc"]


def _timed(call) -> tuple[float, Any]:
    started = time.perf_counter()
    out = call()
    return time.perf_counter() - started, out


def _onnx_session(module: Patches, args, folder: Path, reporter: Reporter):
    """An ONNX Runtime session of ``module`` exported at the shapes of ``args``, or the reason there is none."""
    try:
        import onnxruntime  # lazy: an optional measurement
    except ImportError:
        return None, "onnxruntime is not installed (pip install onnxruntime onnx to measure it)"
    path = folder / "anysat.onnx"
    reporter.log("Exporting to ONNX")
    try:
        torch.onnx.export(
            module, args, str(path), input_names=["s2", "s1", "s2_dates", "s1_dates"], dynamo=False, opset_version=17
        )
    except Exception as exc:  # noqa: BLE001 - any exporter failure is a result of the measurement
        return None, f"export failed: {type(exc).__name__}: {str(exc)[:300]}"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), ""


def backends(reps: int, side: int, reporter: Reporter) -> dict[str, Any]:
    model = build()
    module = Patches(model).eval()
    inputs, dates = window_batch(side, 1)
    args = _args(inputs, dates)
    calls: dict[str, Any] = {}
    setup: dict[str, float] = {}
    notes: dict[str, str] = {}
    with torch.no_grad():
        calls["eager"] = lambda: module(*args)
        reference = calls["eager"]()
        calls["eager, PyTorch's linear kernel"] = lambda: _default(module, args)
        calls["int8 linears"] = lambda: _int8(module, args)
        reporter.log("torch.compile (inductor): compiling")
        # PyTorch's own linear layers: dynamo cannot follow our oneDNN layers' cached weights
        compiled = torch.compile(module, backend="inductor", dynamic=False)
        try:
            setup["torch.compile"], _ = _timed(lambda: _default(compiled, args))
            calls["torch.compile"] = lambda: _default(compiled, args)
        except Exception as exc:  # noqa: BLE001 - a compile failure is a result of the measurement
            notes["torch.compile"] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
        with tempfile.TemporaryDirectory(prefix="omnisat-onnx-") as folder:
            started = time.perf_counter()
            session, why = _onnx_session(module, args, Path(folder), reporter)
            if session is None:
                notes["onnxruntime"] = why
            else:
                setup["onnxruntime"] = time.perf_counter() - started
                feed = {k: v.numpy() for k, v in zip(("s2", "s1", "s2_dates", "s1_dates"), args)}
                calls["onnxruntime"] = lambda: torch.from_numpy(session.run(None, feed)[0])
            times: dict[str, list[float]] = {name: [] for name in calls}
            outputs: dict[str, torch.Tensor] = {}
            for r in range(reps):
                for name, call in calls.items():
                    seconds, outputs[name] = _timed(call)
                    times[name].append(seconds)
                    reporter.progress(100 * (r + 1) / reps, f"backends: {name}, repetition {r + 1} of {reps}")
    eager = statistics.median(times["eager"])
    rows = {}
    for name in calls:
        median = statistics.median(times[name])
        row = {
            "seconds": median,
            "speed_vs_eager": eager / median,
            "max_abs_diff": float((outputs[name] - reference).abs().max()),
        }
        if name in setup:
            row["setup_seconds"] = setup[name]
            saving = eager - median
            row["windows_to_amortise"] = setup[name] / saving if saving > 0 else None
        rows[name] = row
    return {"window_patches": side, "reps": reps, "backends": rows, "notes": notes}


def _default(module, args):
    with default_kernels():
        return module(*args)


def _int8(module: Patches, args):
    with int8_linears():
        return module(*args)


def sweeps(reps: int, reporter: Reporter) -> dict[str, Any]:
    """Seconds per km² (patch features) by window side at batch 1 and by batch at 16-patch windows."""
    module = Patches(build()).eval()
    cases = [(side, 1) for side in (4, WINDOW, 2 * WINDOW)] + [(WINDOW, b) for b in (2, 4)]
    times: dict[tuple[int, int], list[float]] = {c: [] for c in cases}
    with torch.no_grad():
        module(*_args(*window_batch(4, 1)))  # warm-up
        for r in range(reps):
            for side, batch in cases:
                args = _args(*window_batch(side, batch))
                seconds, _ = _timed(lambda a=args: module(*a))
                times[side, batch].append(seconds)
                reporter.progress(100 * (r + 1) / reps, f"sweeps: window {side}, batch {batch}, repetition {r + 1}")
    rows = []
    for side, batch in cases:
        km2 = batch * (side * PATCH_M) ** 2 / 1e6
        median = statistics.median(times[side, batch])
        rows.append({"window_patches": side, "batch": batch, "seconds": median, "seconds_per_km2": median / km2})
    return {"rows": rows}


def int8_accuracy(reporter: Reporter) -> dict[str, Any]:
    """Macro-F1 of the fixed linear probe on eo-learn's land cover, embeddings in fp32 and with int8 linears."""
    from engine.bench.accuracy import (  # lazy: the accuracy bench's datasets load rasterio and scikit-learn
        FIXED_PROBE,
        SEED,
        Encoder,
        embed_cells,
        encoder_job,
        eolearn_dataset,
        label_grid,
        labelled_cells,
    )

    with tempfile.TemporaryDirectory(prefix="omnisat-int8-") as tmp:
        folder = Path(tmp)
        dataset = eolearn_dataset(folder)
        shipped = [e for e in with_modalities({"s2"}) if e.architecture == "anysat"]
        if not shipped:
            raise EngineError("No AnySat checkpoint with a Sentinel-2 modality under resources/models.")
        checkpoint, text = shipped[0].path, shipped[0].describe()
        job = encoder_job(dataset, Encoder("anysat", checkpoint, text), folder)
        grid = label_grid(job)
        data = labelled_cells(dataset, grid, reporter)
        s = data.samples
        features = {}
        for name, context in (("fp32", contextlib.nullcontext()), ("int8", int8_linears())):
            reporter.log(f"eo-learn: embedding with {Path(checkpoint).name}, {name} linear layers")
            with context:
                features[name] = embed_cells(dataset, job, grid, s.rows, s.cols, folder, reporter)
    keep = np.isfinite(features["fp32"]).all(1) & np.isfinite(features["int8"]).all(1)
    y, units, rows, cols = s.y[keep], data.units[keep], s.rows[keep], s.cols[keep]
    folds = spatial_folds(y, units, rows, cols, FOLDS, BUFFER_CELLS, SEED, dataset.split)
    setup = Setup({k: v[keep] for k, v in features.items()}, y, list(s.class_names), ProbeConfig(**FIXED_PROBE))
    scores = cross_validate(setup, [Candidate("linear", "fp32"), Candidate("linear", "int8")], folds, reporter)
    diff = np.abs(features["fp32"][keep] - features["int8"][keep])
    return {
        "encoder": text,
        "cells": int(keep.sum()),
        "max_abs_feature_diff": float(diff.max()),
        "max_abs_feature": float(np.abs(features["fp32"][keep]).max()),
        "macro_f1": {c.features: scores[c].summary()["macro_f1"] for c in scores},
        "overall_accuracy": {c.features: scores[c].summary()["overall_accuracy"] for c in scores},
    }


def run(params, reporter: Reporter) -> dict[str, Any]:

    load = os.getloadavg()[0]
    if params.datasets == "eolearn":
        result = int8_accuracy(reporter)
        reporter.log(
            f"int8 linear layers on eo-learn ({result['cells']} cells, {result['encoder']}): macro-F1 "
            + ", ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in result["macro_f1"].items())
            + f"; largest feature difference {result['max_abs_feature_diff']:.4f} (features up to "
            f"{result['max_abs_feature']:.2f}); load {load:.1f}"
        )
        return dict(result, load=load, threads=torch.get_num_threads())
    reps = 1 if params.quick else 2
    result = backends(reps, WINDOW, reporter)
    lines = [f"AnySat base, S2 + S1 x {DATES} dates, {result['window_patches']}-patch window, batch 1, {reps} reps:"]
    for name, row in result["backends"].items():
        setup = f", set-up {row['setup_seconds']:.0f} s" if "setup_seconds" in row else ""
        lines.append(
            f"  {name:<14} {row['seconds']:7.2f} s  ({row['speed_vs_eager']:.2f}x eager, largest difference "
            f"{row['max_abs_diff']:.1e}{setup})"
        )
    lines += [f"  {name}: {why}" for name, why in result["notes"].items()]
    if not params.quick:
        result["sweeps"] = sweeps(reps, reporter)
        lines.append("Windows and batches (eager fp32):")
        for row in result["sweeps"]["rows"]:
            lines.append(
                f"  window {row['window_patches']:>2} patches, batch {row['batch']}: {row['seconds']:6.2f} s, "
                f"{row['seconds_per_km2']:7.1f} s per km²"
            )
    load_after = os.getloadavg()[0]
    lines.append(f"threads {torch.get_num_threads()}, load {load:.1f} -> {load_after:.1f}")
    reporter.log("\n".join(lines))
    return dict(result, threads=torch.get_num_threads(), load=[load, load_after])
