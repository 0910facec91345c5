"""Benchmarks: scripts that print figures (ratios against baselines measured in the same run).

``python -m engine bench TARGET [--quick] [--json]``. Each target is a module with
``run(params: BenchParams, reporter) -> dict``; register it in BENCHMARKS.
Never used by tests as timing assertions: shared machines are noisy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from engine.errors import EngineError
from engine.runtime.progress import Reporter
from engine.runtime.registry import operation

# target name -> module path
BENCHMARKS: dict[str, str] = {
    "tiled": "engine.bench.tiled",
    "accuracy": "engine.bench.accuracy",
    "omnisat": "engine.bench.omnisat",
    "anysat": "engine.bench.anysat",
    "gpu": "engine.bench.gpu",
    "ranks": "engine.bench.ranks",
    "auto": "engine.bench.auto",
    "throughput": "engine.bench.throughput",
    "universat": "engine.bench.universat",
    "backends": "engine.bench.backends",
}


@dataclass
class BenchParams:
    target: str = field(metadata={"help": "what to benchmark: " + ", ".join(sorted(BENCHMARKS)), "positional": True})
    quick: bool = field(default=False, metadata={"help": "fewer repetitions and smaller inputs (a smoke run)"})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: the cores idle now)"})
    reprojected: bool = field(
        default=False,
        metadata={
            "help": "tiled: inputs in EPSG:4326 on a UTM grid, warped once against window by window (the old path) "
            "in the same run: the share of time outside the model"
        },
    )
    device: str = field(
        default="auto",
        metadata={"help": "gpu: auto (CUDA when there is one), cuda or cpu", "choices": ("auto", "cpu", "cuda")},
    )
    datasets: str | None = field(
        default=None,
        metadata={
            "help": "accuracy: only these datasets, comma-separated: eolearn, ndvi, peru, crops (default: all; "
            "--quick: eolearn); backends: eolearn for the int8 layers' macro-F1 instead of the timings; auto: the scene, "
            "eolearn (default) or crops"
        },
    )
    models: str | None = field(
        default=None,
        metadata={
            "help": "throughput: these models, comma-separated: anysat-base, universat-base (default: both), "
            "anysat-tiny, universat-tiny (a smoke run)"
        },
    )
    reference: str | None = field(
        default=None,
        metadata={
            "help": "omnisat / anysat / universat: a gastruc/OmniSat, gastruc/AnySat or gastruc/UniverSat checkout "
            "(outside the project) to time in the same run; OmniSat's needs a Python with timm and easydict, "
            "UniverSat's torch only"
        },
    )


@operation("bench", BenchParams, summary="Run a benchmark script that prints measured figures.")
def run_benchmark(params: BenchParams, reporter: Reporter) -> dict[str, Any]:
    """Run one benchmark target: omnisat and anysat time the encoders (against the reference code or our
    naive path), tiled the mapping over growing areas, ranks the mapping over several processes, gpu
    inference on a GPU, accuracy every method on the labelled real samples. docs/bench/ gives the
    figures measured so far, each with its command and the load it ran at."""
    if params.target not in BENCHMARKS:
        raise EngineError(f"Unknown benchmark {params.target!r}. Available: {', '.join(sorted(BENCHMARKS))}.")
    if params.threads:
        import torch  # lazy: keeps torch out of --help

        torch.set_num_threads(params.threads)
    module = importlib.import_module(BENCHMARKS[params.target])
    return module.run(params, reporter)
