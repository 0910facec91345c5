"""Training throughput: samples/s of one forward+backward+optimizer step of a preset.

Inputs are random tensors of the preset's modalities at the dataset's real sizes
(TreeSatAI-TS: aerial 300 x 300 px, S2 and S1 with ``dates`` dates, 6 x 6 px), held on
the host (pinned on CUDA) and copied to the device every step, as a data loader's are;
the step is the fine-tuning step (class-token head, BCE, Adam). ``batch=0`` searches the
largest batch whose fp32 step fits in the device's memory first. Variants run in
the same process: fp32 eager is the baseline; bf16 autocast when the device
multiplies bf16 natively (engine.runtime.precision); torch.compile on and off. Each
variant gets one untimed warm-up step (compilation happens there).
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from engine.bench.gpu import random_inputs
from engine.errors import EngineError
from engine.models.heads import HeadConfig, build_head
from engine.models.registry import build_model
from engine.runtime.precision import autocast_context, choose_device, cpu_has_bf16, to_device
from engine.runtime.progress import Reporter


def _variant(
    preset_name: str, batch: int, steps: int, dates: int, device: torch.device, dtype: torch.dtype, compiled: bool
) -> float:
    torch.manual_seed(0)
    model = build_model(preset_name).to(device)
    tile_m = model.config.patch_size_m * max(getattr(model.config, "grid", (6, 6)))
    head = build_head(HeadConfig("classification", model.embed_dim, 15, multilabel=True)).to(device)
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-4)
    # host batches as a data loader gives them (pinned on CUDA), copied every step as training does
    host = random_inputs(model, batch, dates, tile_m, pin=device.type == "cuda")
    target = (torch.rand(batch, 15, device=device) < 0.2).float()

    def step(*host):
        inputs, day, mask = ({n: to_device(x, device) for n, x in part.items()} for part in host)
        with autocast_context(device, dtype):
            logits = head(model.forward_features(inputs, day, mask).tile)
        loss = F.binary_cross_entropy_with_logits(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    run = torch.compile(step) if compiled else step
    run(*host)  # warm-up (and compilation)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        run(*host)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


AUTO_CEILING = {"cuda": 2048, "cpu": 8}  # the search's last batch where memory does not stop it first


def largest_batch(preset_name: str, dates: int, device: torch.device, reporter: Reporter) -> int:
    """The largest batch, doubling from 8, whose fp32 training step fits on ``device``."""
    fits, batch = 0, 8
    while batch <= AUTO_CEILING[device.type]:
        try:
            _variant(preset_name, batch, 1, dates, device, torch.float32, False)
        except (torch.OutOfMemoryError, MemoryError):
            break
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        fits, batch = batch, batch * 2
    if not fits:
        raise EngineError(f"A batch of 8 does not fit on {device}: give a smaller --batch.")
    reporter.log(f"Largest batch that fits on {device} (doubling from 8, up to {AUTO_CEILING[device.type]}): {fits}")
    return fits


def run_bench(
    *,
    batch: int = 128,
    steps: int = 3,
    preset_name: str = "omnisat-treesatai",
    device: str = "auto",
    threads: int = 0,
    dates: int = 50,
    compile_variants: bool = True,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    reporter = reporter or Reporter()
    if threads:
        torch.set_num_threads(threads)
    dev = choose_device(device)
    if batch == 0:
        batch = largest_batch(preset_name, dates, dev, reporter)
    bf16 = cpu_has_bf16() if dev.type == "cpu" else torch.cuda.is_bf16_supported()
    variants = [("fp32", torch.float32, False)] + ([("bf16", torch.bfloat16, False)] if bf16 else [])
    if compile_variants:
        variants += [(f"{name}+compile", dtype, True) for name, dtype, _ in variants]
    results: dict[str, Any] = {
        "preset": preset_name,
        "batch": batch,
        "steps": steps,
        "dates": dates,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "samples_per_s": {},
    }
    for name, dtype, compiled in variants:
        try:
            rate = _variant(preset_name, batch, steps, dates, dev, dtype, compiled)
        except (torch.OutOfMemoryError, MemoryError):
            raise EngineError(f"Out of memory at batch {batch} on {dev}: rerun with a smaller --batch.") from None
        except Exception as exc:  # compile back ends missing on some machines: report, go on
            if not compiled:
                raise
            reporter.log(f"{name}: torch.compile failed ({type(exc).__name__}: {str(exc)[:120]})", "warning")
            continue
        results["samples_per_s"][name] = round(rate, 3)
        reporter.log(f"{name:14s} {rate:9.2f} samples/s")
    base = results["samples_per_s"]["fp32"]
    results["speedup_vs_fp32"] = {k: round(v / base, 3) for k, v in results["samples_per_s"].items()}
    if not bf16:
        results["note"] = f"bf16 skipped: {dev} has no native bf16 (engine.runtime.precision)"
    return results
