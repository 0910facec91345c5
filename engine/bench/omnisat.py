"""OmniSat (TreeSatAI-TS preset) CPU inference: naive vs fp32 vs bf16, against the matmul peak.

Paths, all with the same random weights:
  naive - the textbook formulation: PyTorch's default linear kernel, explicit matmul-softmax attention, the image
          encoder run one patch at a time keeping its pooling indices, the L-TAE
          run one patch sequence at a time;
  fp32  - our path (SDPA, batched patches and sequences);
  bf16  - our path under bf16 autocast.
Per path: latency per tile at batch 1, throughput at batch 32 (tiles/s), achieved
GFLOP/s (FLOPs counted with FlopCounterMode on the fp32 path) as a fraction of the
best 2048 x 2048 matmul peak in the matching dtype (torch.mm or oneDNN), measured in the same run. Times are
the best of several repetitions (shared machines are noisy). Inputs have the real
sample's shapes: aerial 300 x 300 px, S2 146 dates, S1 60 dates, 6 x 6 patches.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from engine.models.attention import explicit_attention
from engine.models.kernels import default_kernels, linear
from engine.models.heads import HeadConfig, PatchHead
from engine.models.registry import build_model
from engine.precision import autocast_context, cpu_flags
from engine.progress import Reporter

T_S2, T_S1 = 146, 60


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
        outs = [self.ltae(x[i:i + 1], dates[i:i + 1], None if mask is None else mask[i:i + 1]) for i in range(len(x))]
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
    dates = {k: torch.sort(torch.randint(1, 366, (batch, t), generator=g).float()).values
             for k, t in (("s2", T_S2), ("s1_asc", T_S1))}
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
        peaks[name] = 2 * n ** 3 / min(_timed(fn) for _ in range(reps)) / 1e9
    return peaks


def matmul_peak(dtype: torch.dtype) -> float:
    """The faster kernel's peak: achieved fractions are counted against what the CPU can do."""
    return max(matmul_peaks(dtype).values())


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(params, reporter: Reporter) -> dict[str, Any]:
    quick = params.quick
    big = 4 if quick else 32
    reps = {1: 2 if quick else 5, big: 1 if quick else 3}
    torch.manual_seed(0)
    model = build_model("omnisat-treesatai").eval()
    naive = naive_copy(model)
    cpu = torch.device("cpu")

    def path(name: str) -> Callable[[dict, dict], Any]:
        def forward(inputs, dates):
            if name == "naive":
                with explicit_attention(), default_kernels():
                    return naive.forward_features(inputs, dates)
            with autocast_context(cpu, torch.bfloat16 if name == "bf16" else torch.float32):
                return model.forward_features(inputs, dates)
        return forward

    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}

    results: dict[str, dict[str, float]] = {n: {} for n in ("naive", "fp32", "bf16")}
    flops: dict[int, int] = {}
    outputs: dict[str, Any] = {}
    with torch.no_grad():
        for batch in (1, big):
            inputs, dates = make_batch(batch)
            counter = FlopCounterMode(display=False)
            with counter, default_kernels():  # the counter sees aten matmuls, not oneDNN's op
                model.forward_features(inputs, dates)
            flops[batch] = counter.get_total_flops()
            for name in results:
                forward = path(name)
                outputs[(name, batch)] = forward(inputs, dates)  # warm-up, kept for the agreement check
                times = [_timed(lambda: forward(inputs, dates)) for _ in range(reps[batch])]
                best = min(times)
                results[name][f"batch{batch}_s_per_tile"] = best / batch
                results[name][f"batch{batch}_median_s_per_tile"] = statistics.median(times) / batch
                results[name][f"batch{batch}_tiles_per_s"] = batch / best
                results[name][f"batch{batch}_gflops"] = flops[batch] / best / 1e9
    # the peak again after the model runs, keeping the higher: the machine's load varies
    peaks = {"fp32": max(peaks["fp32"], matmul_peak(torch.float32)),
             "bf16": max(peaks["bf16"], matmul_peak(torch.bfloat16))}
    for name, figures in results.items():
        for batch in (1, big):
            figures[f"batch{batch}_peak_fraction"] = figures[f"batch{batch}_gflops"] / peaks["bf16" if name == "bf16" else "fp32"]
            reporter.log(f"{name:>5} batch {batch:>2}: {figures[f'batch{batch}_s_per_tile'] * 1000:8.1f} ms/tile, "
                         f"{figures[f'batch{batch}_tiles_per_s']:6.2f} tiles/s, {figures[f'batch{batch}_gflops']:7.1f} "
                         f"GFLOP/s ({100 * figures[f'batch{batch}_peak_fraction']:.0f}% of peak)")

    fp32_patch, bf16_patch = outputs[("fp32", big)].patch, outputs[("bf16", big)].patch.float()
    cosine = nn.functional.cosine_similarity(fp32_patch, bf16_patch, dim=-1)
    torch.manual_seed(1)
    head = PatchHead(HeadConfig("patch", model.embed_dim, 15)).eval()
    with torch.no_grad():
        same = (head(fp32_patch).argmax(-1) == head(bf16_patch).argmax(-1)).float().mean()
    naive_error = (outputs[("naive", big)].patch - fp32_patch).abs().max()

    ratios = {
        f"fp32_vs_naive_batch{big}": results["fp32"][f"batch{big}_tiles_per_s"] / results["naive"][f"batch{big}_tiles_per_s"],
        "fp32_vs_naive_batch1": results["naive"]["batch1_s_per_tile"] / results["fp32"]["batch1_s_per_tile"],
        f"bf16_vs_fp32_batch{big}": results["bf16"][f"batch{big}_tiles_per_s"] / results["fp32"][f"batch{big}_tiles_per_s"],
        "bf16_vs_fp32_batch1": results["fp32"]["batch1_s_per_tile"] / results["bf16"]["batch1_s_per_tile"],
        "peak_bf16_vs_fp32": peaks["bf16"] / peaks["fp32"],
    }
    agreement = {
        "patches": int(cosine.numel()),
        "cosine_min": float(cosine.min()),
        "cosine_mean": float(cosine.mean()),
        "argmax_agreement": float(same),
        "naive_vs_fp32_max_abs_diff": float(naive_error),
    }
    targets = {
        "fp32_at_least_2x_naive": ratios[f"fp32_vs_naive_batch{big}"] >= 2.0,
        "bf16_at_least_3x_fp32": ratios[f"bf16_vs_fp32_batch{big}"] >= 3.0,
        "bf16_cosine_at_least_0.999": agreement["cosine_min"] >= 0.999,
        "bf16_argmax_agreement_at_least_99.5%": agreement["argmax_agreement"] >= 0.995,
    }
    reporter.log(f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    for key, value in {**ratios, **agreement}.items():
        reporter.log(f"{key}: {value:.4g}")
    for key, met in targets.items():
        reporter.log(f"target {key}: {'met' if met else 'NOT met'}")
    return {
        "model": "omnisat-treesatai",
        "threads": torch.get_num_threads(),
        "cpu_bf16_flags": sorted({"amx_bf16", "avx512_bf16"} & cpu_flags()),
        "gflop_per_tile": flops[1] / 1e9,
        "peak_gflops": peaks,
        "paths": results,
        "ratios": ratios,
        "agreement": agreement,
        "targets": targets,
        "quick": quick,
    }
