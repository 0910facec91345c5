"""OmniSat (TreeSatAI-TS preset) CPU inference: the reference code, naive, fp32, bf16.

Paths, all with random weights (the same ones for our three):
  reference - the public gastruc/OmniSat encoder built from a checkout given with
              ``--reference PATH`` (the checkout stays outside the project; run the bench
              with a Python that has its dependencies);
  naive     - our model in the textbook formulation: PyTorch's default linear kernel, explicit
              matmul-softmax attention, the image encoder one patch at a time keeping its
              pooling indices, the L-TAE one patch sequence at a time;
  fp32      - our inference path (oneDNN linear layers, SDPA, Winograd convolutions, chunks);
  bf16      - our path under bf16 autocast, only where the CPU multiplies bf16 natively
              (AVX512-BF16 or AMX; elsewhere bf16 is emulated and many times slower).
Inputs have the shapes the reference trains and tests on: aerial 300 x 300 px, S2 and S1
50 dates (its TreeSatAI-TS loader keeps at most 50), 6 x 6 patches of 10 m; batch 1 (the
dock's preview) and 32. The paths run interleaved, repetition by repetition, and the
figures are medians (the best is printed too): the ratios of one run share its load.
Per path and batch size a per-module profile (wall time inside each encoder and the
fusion, from forward hooks) and GFLOP/s (FLOPs counted with FlopCounterMode on the fp32
path) against the best 2048 x 2048 matmul peak of the same run.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from engine.bench.omnisat_reference import NAMES, load_reference_encoder, reference_inputs
from engine.models.attention import explicit_attention
from engine.models.heads import HeadConfig, PatchHead
from engine.models.kernels import default_kernels, linear
from engine.models.registry import build_model
from engine.runtime.precision import autocast_context, cpu_flags, cpu_has_bf16
from engine.runtime.progress import Reporter

T_S2, T_S1 = 50, 50


class PerPatchImageEncoder(nn.Module):
    """Naive baseline: the image encoder applied to one patch at a time, indices kept."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, patches, keep_indices: bool = True):
        return torch.cat([self.encoder(p[None], True)[0] for p in patches]), None


class PerSequenceLTAE(nn.Module):
    """Naive baseline: the L-TAE applied to one patch sequence at a time."""

    def __init__(self, ltae: nn.Module):
        super().__init__()
        self.ltae = ltae

    def forward(self, x, dates, mask=None):
        outs = [
            self.ltae(x[i : i + 1], dates[i : i + 1], None if mask is None else mask[i : i + 1]) for i in range(len(x))
        ]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def naive_copy(model: nn.Module) -> nn.Module:
    naive = copy.deepcopy(model)
    for name, spec in naive.modalities.items():
        if spec.kind == "image":
            naive.encoders[name] = PerPatchImageEncoder(naive.encoders[name])
        else:
            naive.encoders[name].ltae = PerSequenceLTAE(naive.encoders[name].ltae)
    return naive


def make_batch(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    inputs = {
        "aerial": torch.randn(batch, 4, 300, 300, generator=g),
        "s2": torch.randn(batch, T_S2, 10, 6, 6, generator=g),
        "s1_asc": torch.randn(batch, T_S1, 2, 6, 6, generator=g),
    }
    dates = {
        k: torch.sort(torch.randint(1, 366, (batch, t), generator=g).float()).values
        for k, t in (("s2", T_S2), ("s1_asc", T_S1))
    }
    return inputs, dates


def matmul_peaks(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> dict[str, float]:
    """Best GFLOP/s on n x n matrices of PyTorch's default matmul (torch.mm) and of the
    oneDNN kernel our linear layers use at inference (engine/models/kernels.py)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    layer = nn.Linear(n, n, bias=False).to(dtype).requires_grad_(False)
    layer.weight.copy_(b)
    kernels = {"default": lambda: torch.mm(a, b), "onednn": lambda: linear(layer, a)}
    peaks = {}
    for name, fn in kernels.items():
        fn()
        peaks[name] = 2 * n**3 / min(seconds_of(fn) for _ in range(reps)) / 1e9
    return peaks


def matmul_peak(dtype: torch.dtype) -> float:
    """The faster kernel's peak: achieved fractions are counted against what the CPU can do."""
    return max(matmul_peaks(dtype).values())


def seconds_of(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_with_cpu(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call. On a loaded machine the CPU time of a one-thread run
    is the steadier figure: it counts the work, not the turns the scheduler gave it."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def profile_modules(modules: dict[str, list[nn.Module]], fn: Callable[[], Any]) -> dict[str, float]:
    """Seconds spent inside each group of modules during one call of ``fn``, from forward hooks."""
    seconds = {name: 0.0 for name in modules}
    starts: dict[nn.Module, float] = {}
    handles = []

    def enter(module, args):
        starts[module] = time.perf_counter()

    for name, group in modules.items():

        def leave(module, args, output, name=name):
            seconds[name] += time.perf_counter() - starts[module]

        for module in group:
            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        start = time.perf_counter()
        fn()
        seconds["total"] = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
    return seconds


def _our_modules(model: nn.Module) -> dict[str, list[nn.Module]]:
    return {**{f"encoder {n}": [m] for n, m in model.encoders.items()}, "combiner": [model.combiner]}


def _reference_modules(encoder: nn.Module) -> dict[str, list[nn.Module]]:
    modules = {
        f"encoder {ours}": [getattr(encoder, f"projector_{theirs}")]
        for ours, theirs in NAMES.items()
        if hasattr(encoder, f"projector_{theirs}")
    }
    return {**modules, "combiner": list(encoder.blocks)}  # the reference calls its blocks one by one


def run(params, reporter: Reporter) -> dict[str, Any]:
    quick = params.quick
    big = 4 if quick else 32
    reps = {1: 3 if quick else 7, big: 1 if quick else 3}
    torch.manual_seed(0)
    model = build_model("omnisat-treesatai").eval()
    naive = naive_copy(model)
    cpu = torch.device("cpu")
    reference = None
    if params.reference:
        reference = load_reference_encoder(Path(params.reference))
    names = [*(["reference"] if reference is not None else []), "naive", "fp32"]
    if cpu_has_bf16():
        names.append("bf16")
    else:
        reporter.log("bf16 skipped: this CPU has no native bf16 (AVX512-BF16 or AMX), bf16 would be emulated")

    def path(name: str, inputs, dates) -> Callable[[], Any]:
        if name == "reference":
            batch = reference_inputs(inputs, dates)
            return lambda: reference(batch)
        if name == "naive":

            def forward():
                with explicit_attention(), default_kernels():
                    return naive.forward_features(inputs, dates)

            return forward

        def ours():
            with autocast_context(cpu, torch.bfloat16 if name == "bf16" else torch.float32):
                return model.forward_features(inputs, dates)

        return ours

    peaks = {"fp32": matmul_peak(torch.float32)}
    if "bf16" in names:
        peaks["bf16"] = matmul_peak(torch.bfloat16)
    results: dict[str, dict[str, float]] = {n: {} for n in names}
    profiles: dict[str, dict[str, dict[str, float]]] = {n: {} for n in names}
    flops: dict[int, int] = {}
    outputs: dict[tuple[str, int], Any] = {}
    with torch.no_grad():
        for batch in (1, big):
            inputs, dates = make_batch(batch)
            counter = FlopCounterMode(display=False)
            with counter, default_kernels():  # the counter sees aten matmuls, not oneDNN's op
                model.forward_features(inputs, dates)
            flops[batch] = counter.get_total_flops()
            calls = {name: path(name, inputs, dates) for name in names}
            for name, call in calls.items():
                outputs[(name, batch)] = call()  # warm-up, kept for the agreement check
                modules = (
                    _reference_modules(reference)
                    if name == "reference"
                    else _our_modules(naive if name == "naive" else model)
                )
                profiles[name][f"batch{batch}"] = profile_modules(modules, call)
            times: dict[str, list[float]] = {name: [] for name in names}
            cpu_times: dict[str, list[float]] = {name: [] for name in names}
            for _ in range(reps[batch]):
                for name, call in calls.items():  # interleaved: every path sees the same load
                    wall, cpu = timed_with_cpu(call)
                    times[name].append(wall)
                    cpu_times[name].append(cpu)
                reporter.log(
                    f"batch {batch}: "
                    + ", ".join(f"{n} {times[n][-1]:.2f} s (CPU {cpu_times[n][-1]:.2f} s)" for n in names)
                )
            for name in names:
                median, best = statistics.median(times[name]), min(times[name])
                figures = results[name]
                figures[f"batch{batch}_median_s_per_tile"] = median / batch
                figures[f"batch{batch}_best_s_per_tile"] = best / batch
                figures[f"batch{batch}_tiles_per_s"] = batch / median
                figures[f"batch{batch}_cpu_s_per_tile"] = statistics.median(cpu_times[name]) / batch
                figures[f"batch{batch}_gflops"] = flops[batch] / median / 1e9
    # the peak again after the model runs, keeping the higher: the machine's load varies
    peaks = {
        dtype: max(peak, matmul_peak(torch.float32 if dtype == "fp32" else torch.bfloat16))
        for dtype, peak in peaks.items()
    }
    for name, figures in results.items():
        for batch in (1, big):
            figures[f"batch{batch}_peak_fraction"] = (
                figures[f"batch{batch}_gflops"] / peaks["bf16" if name == "bf16" else "fp32"]
            )
            reporter.log(
                f"{name:>9} batch {batch:>2}: {figures[f'batch{batch}_median_s_per_tile'] * 1000:8.1f} ms/tile "
                f"(median; best {figures[f'batch{batch}_best_s_per_tile'] * 1000:.1f}; "
                f"CPU {figures[f'batch{batch}_cpu_s_per_tile'] * 1000:.1f}), "
                f"{figures[f'batch{batch}_tiles_per_s']:6.2f} tiles/s, {figures[f'batch{batch}_gflops']:6.1f} "
                f"GFLOP/s ({100 * figures[f'batch{batch}_peak_fraction']:.0f}% of peak)"
            )
            profile = profiles[name][f"batch{batch}"]
            reporter.log(
                f"{'':>9} profile: "
                + ", ".join(
                    f"{module} {100 * seconds / profile['total']:.0f}%"
                    for module, seconds in profile.items()
                    if module != "total"
                )
            )

    def speedup(a: str, b: str, batch: int) -> float:
        """How many times faster path a runs than path b (throughput ratio, medians)."""
        return results[a][f"batch{batch}_tiles_per_s"] / results[b][f"batch{batch}_tiles_per_s"]

    def cpu_speedup(a: str, b: str, batch: int) -> float:
        """The same by CPU time per tile (medians)."""
        return results[b][f"batch{batch}_cpu_s_per_tile"] / results[a][f"batch{batch}_cpu_s_per_tile"]

    ratios = {f"fp32_vs_naive_batch{b}": speedup("fp32", "naive", b) for b in (1, big)}
    targets: dict[str, bool] = {}
    if reference is not None:
        for name in ("fp32", "bf16", "naive"):
            if name in results:
                ratios.update({f"{name}_vs_reference_batch{b}": speedup(name, "reference", b) for b in (1, big)})
                ratios.update(
                    {f"{name}_vs_reference_batch{b}_by_cpu_time": cpu_speedup(name, "reference", b) for b in (1, big)}
                )
        targets[f"fp32_at_least_2x_reference_batch{big}"] = ratios[f"fp32_vs_reference_batch{big}"] >= 2.0
        targets["fp32_at_least_1.5x_reference_batch1"] = ratios["fp32_vs_reference_batch1"] >= 1.5
    fp32_patch = outputs[("fp32", big)].patch
    agreement = {"naive_vs_fp32_max_abs_diff": float((outputs[("naive", big)].patch - fp32_patch).abs().max())}
    targets["fp32_equals_naive_1e-5"] = agreement["naive_vs_fp32_max_abs_diff"] <= 1e-5
    if "bf16" in results:
        ratios.update({f"bf16_vs_fp32_batch{b}": speedup("bf16", "fp32", b) for b in (1, big)})
        ratios["peak_bf16_vs_fp32"] = peaks["bf16"] / peaks["fp32"]
        bf16_patch = outputs[("bf16", big)].patch.float()
        cosine = nn.functional.cosine_similarity(fp32_patch, bf16_patch, dim=-1)
        torch.manual_seed(1)
        head = PatchHead(HeadConfig("patch", model.embed_dim, 15)).eval()
        with torch.no_grad():
            same = (head(fp32_patch).argmax(-1) == head(bf16_patch).argmax(-1)).float().mean()
        agreement.update(
            {
                "patches": int(cosine.numel()),
                "cosine_min": float(cosine.min()),
                "cosine_mean": float(cosine.mean()),
                "argmax_agreement": float(same),
            }
        )
        targets["bf16_cosine_at_least_0.999"] = agreement["cosine_min"] >= 0.999
        targets["bf16_argmax_agreement_at_least_99.5%"] = agreement["argmax_agreement"] >= 0.995
    reporter.log("matmul peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    for key, value in {**ratios, **agreement}.items():
        reporter.log(f"{key}: {value:.4g}")
    for key, met in targets.items():
        reporter.log(f"target {key}: {'met' if met else 'NOT met'}")
    return {
        "model": "omnisat-treesatai",
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "cpu_bf16_flags": sorted({"amx_bf16", "avx512_bf16"} & cpu_flags()),
        "dates": {"s2": T_S2, "s1_asc": T_S1},
        "gflop_per_tile": flops[1] / 1e9,
        "peak_gflops": peaks,
        "paths": results,
        "profiles": profiles,
        "ratios": ratios,
        "agreement": agreement,
        "targets": targets,
        "quick": quick,
    }
