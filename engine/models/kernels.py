"""Linear layers through oneDNN at inference on CPU.

PyTorch sends an fp32 ``nn.Linear`` on CPU to MKL's sgemm, which takes a generic code
path on AMD processors: on this project's AMD EPYC (AVX-512) it reaches 110-190 GFLOP/s
on the model's shapes where oneDNN, also inside every PyTorch CPU build, reaches
270-400 (same shapes, 2 threads; ``python -m engine bench anysat`` prints both peaks).
oneDNN also applies the MLP's GELU inside the matmul instead of in a second pass.

The oneDNN kernel has no backward: with gradients needed, and off the CPU, layers fall
back to ``torch.nn.functional.linear``. ``default_kernels()`` forces that fallback
everywhere (the benchmarks' naive baseline, cross-checks in the tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

T = TypeVar("T")

_ACTIVATIONS = {"none": (None, ""), "gelu": (F.gelu, "none")}  # name -> (fallback, oneDNN algorithm)
ONEDNN_AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
# oneDNN has no bf16 inner product without AVX512-BF16 / AMX (it refuses to build the primitive):
# there bf16 layers take PyTorch's own kernel.
_DTYPES = (
    (torch.float32, torch.bfloat16)
    if ONEDNN_AVAILABLE and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    else (torch.float32,)
)


class Switch:
    """A process-wide setting that a ``with`` block changes and then restores."""

    def __init__(self, value: bool):
        self.value = value

    @contextlib.contextmanager
    def set(self, value: bool) -> Iterator[None]:
        previous, self.value = self.value, value
        try:
            yield
        finally:
            self.value = previous


_use_onednn = Switch(ONEDNN_AVAILABLE)
_int8 = Switch(False)


def int8_linears() -> contextlib.AbstractContextManager:
    """Within this block, fp32 linear layers on CPU at inference run as dynamic int8 (weights
    quantized per output channel once and kept, activations per call): faster on CPUs without
    a fast fp32 path, at an accuracy cost (``python -m engine bench anysat --reference`` prints
    both); never the default."""
    return _int8.set(True)


def _int8_linear(layer: nn.Linear, x: Tensor) -> Tensor:
    def pack():
        weight = layer.weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        qweight = torch.quantize_per_channel(
            weight, scales.double(), torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8
        )
        return torch.ops.quantized.linear_prepack(qweight, None if layer.bias is None else layer.bias.detach().float())

    packed = derived(layer, "_int8_packed", (layer.weight, layer.bias), pack)
    shape = x.shape
    y = torch.ops.quantized.linear_dynamic(x.reshape(-1, shape[-1]).contiguous(), packed, True)
    return y.reshape(*shape[:-1], y.shape[-1])


def default_kernels() -> contextlib.AbstractContextManager:
    """Within this block every linear layer runs PyTorch's default kernel."""
    return _use_onednn.set(False)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype autocast would give the matmul: the oneDNN op is not autocast-aware."""
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return x.dtype


def linear(layer: nn.Linear, x: Tensor, activation: str = "none", residual: Tensor | None = None) -> Tensor:
    """``activation(layer(x))`` with activation 'none' or 'gelu' (exact, erf form); with ``residual``
    (activation 'none' only), ``residual + layer(x)``, which oneDNN adds inside the matmul: one
    pass less over the activations (a transformer block's two residual adds)."""
    fallback, algorithm = _ACTIVATIONS[activation]
    if residual is not None and fallback is not None:
        raise ValueError("a fused residual add takes no activation")
    dtype = _compute_dtype(x) if x.device.type == "cpu" else None
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad)
    if _int8.value and dtype == torch.float32 and not needs_grad:
        y = _int8_linear(layer, x)
    elif not _use_onednn.value or dtype not in _DTYPES or needs_grad:
        y = F.linear(x, layer.weight, layer.bias)
    else:
        weight, bias = _weights(layer, dtype)
        x = x.to(dtype)
        if residual is not None and residual.dtype == dtype and residual.shape[:-1] == x.shape[:-1]:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual.contiguous(), weight, bias, "add")
        y = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu" if fallback else "none", [], algorithm)
        fallback = None
    if fallback is not None:
        y = fallback(y)
    return y if residual is None else residual + y


def linear_rows(layer: nn.Linear, x: Tensor, start: int, stop: int) -> Tensor:
    """Output features ``start:stop`` of ``layer(x)`` only (e.g. the keys and values of a fused qkv
    layer), the weight rows sliced once and kept."""
    dtype = _compute_dtype(x) if x.device.type == "cpu" else None
    bias = None if layer.bias is None else layer.bias[start:stop]
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad)
    if not _use_onednn.value or dtype not in _DTYPES or needs_grad:
        return F.linear(x, layer.weight[start:stop], bias)
    weight, bias = derived(
        layer,
        f"_onednn_rows_{start}_{stop}_{dtype}",
        (layer.weight, layer.bias),
        lambda: (
            layer.weight[start:stop].to(dtype).contiguous(),
            None if bias is None else bias.to(dtype).contiguous(),
        ),
    )
    return torch.ops.mkldnn._linear_pointwise(x.to(dtype), weight, bias, "none", [], "")


def derived(module: nn.Module, name: str, sources: tuple[Tensor | None, ...], build: Callable[[], T]) -> T:
    """``build()`` computed once from ``sources`` (parameters, buffers) and kept on ``module``
    under ``name`` until one of them changes (an optimizer step, a state dict load)."""
    key = tuple(None if t is None else (t._version, t.data_ptr(), t.dtype) for t in sources)
    cached = getattr(module, name, None)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, build())
        setattr(module, name, cached)  # a plain attribute (a tuple): not in the state dict
    return cached[1]


def _weights(layer: nn.Linear, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
    """The layer's weights in ``dtype``, cast once and kept until the weights change."""
    if layer.weight.dtype == dtype:
        return layer.weight.detach(), None if layer.bias is None else layer.bias.detach()
    return derived(
        layer,
        f"_onednn_{dtype}",
        (layer.weight, layer.bias),
        lambda: (layer.weight.to(dtype), None if layer.bias is None else layer.bias.to(dtype)),
    )


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state dict) running oneDNN at inference on CPU."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(self, x)
