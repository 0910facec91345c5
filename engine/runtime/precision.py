"""Device and numeric precision choices shared by inference, probes and benchmarks.

The choices (DEVICES, PRECISIONS) are the contract's (engine.contract), which the job format
reads too; torch is imported only by the functions that choose.

bf16 autocast pays off only where the hardware multiplies bf16 natively (CPU AMX
or AVX512-BF16, recent CUDA GPUs); elsewhere it is slower than fp32, so "auto"
picks fp32 there.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from engine.contract import DEVICES, PRECISIONS
from engine.errors import EngineError

if TYPE_CHECKING:
    import torch


def choose_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error."""
    import torch  # lazy: keeps torch out of this module

    if name not in DEVICES:
        raise EngineError(f"Unknown device {name!r}: choose one of {', '.join(DEVICES)}.")
    if name == "cuda" and not torch.cuda.is_available():
        raise EngineError(
            "Device 'cuda' was asked for but this PyTorch sees no CUDA GPU "
            f"(torch {torch.__version__}): choose device 'cpu' or 'auto', or use a CUDA build of PyTorch."
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (empty where it does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_bf16() -> bool:
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def choose_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The compute dtype: 'fp32', 'bf16', or 'auto' (bf16 where the hardware has native bf16)."""
    import torch  # lazy: keeps torch out of this module

    if precision not in PRECISIONS:
        raise EngineError(f"Unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}.")
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def autocast_context(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; a no-op for fp32."""
    import torch  # lazy: keeps torch out of this module

    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device``; to a GPU through pinned memory without blocking, so the copy
    runs while the GPU still works on what was queued before it."""
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return (tensor if tensor.is_pinned() else tensor.pin_memory()).to(device, non_blocking=True)


def keep_weights_in(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """For inference under ``autocast_context(device, dtype)``: store the weights of linear
    and convolution layers in ``dtype`` once, so that autocast finds them cast and casts
    nothing per call (otherwise every weight is cast on every call). Norms, position tables and
    other parameters stay fp32, where autocast computes with them. Returns ``model``,
    changed in place; a no-op for fp32. Run the model only under autocast afterwards."""
    import torch  # lazy: keeps torch out of this module
    from torch import nn  # lazy: keeps torch out of this module

    if dtype == torch.float32:
        return model
    matmul_layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # autocast casts their weights per call
    for module in model.modules():
        if isinstance(module, matmul_layers):
            module.to(dtype)
    return model
