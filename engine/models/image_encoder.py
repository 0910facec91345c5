"""OmniSat's per-patch image encoder (a small residual CNN) and its decoder.

The encoder keeps the indices of its max-pools; the decoder unpools with them,
so the reconstruction puts each maximum back where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.models.kernels import derived
from engine.models.winograd import transform_filters, winograd_conv3x3


@dataclass
class PoolTrace:
    """What the decoder needs to undo the encoder's pools, last pool first."""

    indices: list[Tensor]
    sizes: list[tuple[int, int]]  # spatial size before each pool


class ResidualBlock(nn.Module):
    """conv3x3 - GroupNorm - GELU - conv3x3 - the same GroupNorm - add - GELU."""

    def __init__(self, dim: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.norm = nn.GroupNorm(groups, dim)

    def forward(self, x: Tensor) -> Tensor:
        out = F.gelu(self.norm(self.conv1(x)))
        return F.gelu(self.norm(self.conv2(out)) + x)

    def infer_pooled(self, x: Tensor) -> Tensor:
        """``max_pool2d(forward(x), 2)`` at inference on a channels-last map."""
        out = F.gelu(self.norm(_conv3x3(self.conv1, x)))
        return _gelu_max_pool2(self.norm(_conv3x3(self.conv2, out)) + x)


def _conv3x3(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A residual block's convolution on a channels-last map: Winograd on even fp32 maps
    (12 x 12 and 6 x 6 in OmniSat), PyTorch's convolution otherwise (3 x 3 maps, autocast)."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2 or x.dtype != torch.float32 or torch.is_autocast_enabled(x.device.type):
        return conv(x)
    filters = derived(conv, "_winograd", (conv.weight,), lambda: transform_filters(conv.weight))
    return winograd_conv3x3(x.permute(0, 2, 3, 1), filters).permute(0, 3, 1, 2)


def _pool2(x: Tensor, reduce) -> Tensor:
    """2 x 2 pooling (odd last rows / columns dropped) by ``reduce`` (torch.maximum or
    minimum) of four strided views: on a channels-last map several times faster than the
    pooling kernel, the same values."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    return reduce(
        reduce(x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2]), reduce(x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2])
    )


def _gelu_max_pool2(x: Tensor) -> Tensor:
    """``max_pool2d(gelu(x), 2)`` with GELU on a quarter of the values twice instead of on all.

    GELU falls, then rises (minimum near -0.75): over any set of inputs its largest value
    is at the smallest or the largest input. So the pooled maximum is the larger of GELU at
    each window's minimum and at its maximum: the same values, up to the float rounding of
    GELU itself (its computed values wobble by under 1e-7 around the exact curve)."""
    return torch.maximum(F.gelu(_pool2(x, torch.maximum)), F.gelu(_pool2(x, torch.minimum)))


def pooled_size(patch_px: int, n_blocks: int = 3) -> int:
    """Spatial size left after the stride-2 stem and n_blocks + 1 max-pools."""
    size = (patch_px + 1) // 2
    for _ in range(n_blocks + 1):
        size //= 2
    return size


# Patches per call at inference (results do not depend on it; speed does, see forward).
INFERENCE_PATCH_CHUNK = 16


class ImagePatchEncoder(nn.Module):
    """Patches (N, C, p, p) -> embeddings (N, D): stem conv stride 2 + BN + GELU, then
    [max-pool 2, residual block] x n_blocks and a last max-pool (50 px: 25-12-6-3-1)."""

    def __init__(self, in_channels: int, dim: int, groups: int = 4, n_blocks: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, dim, 3, stride=2, padding=1)
        self.stem_norm = nn.BatchNorm2d(dim)
        self.blocks = nn.ModuleList(ResidualBlock(dim, groups) for _ in range(n_blocks))

    def forward(self, patches: Tensor, keep_indices: bool = True) -> tuple[Tensor, PoolTrace | None]:
        """Embeddings (N, D) and, when ``keep_indices`` (pretraining), the pooling trace."""
        if keep_indices or self.training or torch.is_grad_enabled():
            return self._encode(patches, keep_indices)
        # (Training keeps whole batches: BatchNorm's statistics are the batch's.)
        # A few patches at a time keep the 256-channel maps in cache: a 32-tile batch
        # (1152 patches) ran 1.4x faster per tile in fp32 in chunks of 16 than whole.
        return torch.cat([self._infer(part) for part in patches.split(INFERENCE_PATCH_CHUNK)]), None

    def _infer(self, patches: Tensor) -> Tensor:
        """``_encode`` at inference, the same values: channels-last maps, the stem's BatchNorm
        folded into its convolution, and only the stem outputs the first pool keeps."""
        h, w = patches.shape[-2:]
        # The pool drops an odd last stem row / column; the stem's row i reads input rows
        # 2i - 1 to 2i + 1, so 2 * (kept rows) input rows give exactly the kept outputs.
        keep_h, keep_w = (h + 1) // 2 // 2 * 4, (w + 1) // 2 // 2 * 4
        x = patches[..., :keep_h, :keep_w].contiguous(memory_format=torch.channels_last)
        weight, bias = derived(
            self,
            "_folded_stem",
            (
                self.stem.weight,
                self.stem.bias,
                self.stem_norm.weight,
                self.stem_norm.bias,
                self.stem_norm.running_mean,
                self.stem_norm.running_var,
            ),
            self._fold_stem,
        )
        x = _gelu_max_pool2(F.conv2d(x, weight.to(x.dtype), bias.to(x.dtype), stride=2, padding=1))
        for block in self.blocks:
            x = block.infer_pooled(x)
        return x.flatten(1)

    def _fold_stem(self) -> tuple[Tensor, Tensor]:
        """Stem weights with the eval BatchNorm folded in: BN(conv(x)) = conv'(x)."""
        norm = self.stem_norm
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        weight = (self.stem.weight * scale[:, None, None, None]).contiguous(memory_format=torch.channels_last)
        return weight.detach(), ((self.stem.bias - norm.running_mean) * scale + norm.bias).detach()

    def _encode(self, patches: Tensor, keep_indices: bool) -> tuple[Tensor, PoolTrace | None]:
        x = F.gelu(self.stem_norm(self.stem(patches)))
        trace = PoolTrace([], []) if keep_indices else None
        for block in [*self.blocks, None]:
            if trace is None:
                x = F.max_pool2d(x, 2)  # inference: no indices to keep, a cheaper kernel
            else:
                trace.sizes.insert(0, tuple(x.shape[-2:]))
                x, index = F.max_pool2d(x, 2, return_indices=True)
                trace.indices.insert(0, index)
            if block is not None:
                x = block(x)
        return x.flatten(1), trace


class ImagePatchDecoder(nn.Module):
    """Embeddings (N, D) -> patches (N, C, p, p): unpool with the encoder's indices,
    transposed conv after each unpool, a last stride-2 transposed conv to C bands."""

    def __init__(self, out_channels: int, dim: int, n_blocks: int = 3):
        super().__init__()
        self.deconvs = nn.ModuleList(nn.ConvTranspose2d(dim, dim, 3, padding=1, bias=False) for _ in range(n_blocks))
        self.out = nn.ConvTranspose2d(dim, out_channels, 3, stride=2, padding=1)

    def forward(self, embedding: Tensor, trace: PoolTrace, patch_px: int) -> Tensor:
        x = embedding[:, :, None, None]
        for i, (index, size) in enumerate(zip(trace.indices, trace.sizes)):
            x = F.max_unpool2d(x, index.to(x.device), 2, output_size=size)
            if i < len(self.deconvs):
                x = self.deconvs[i](x)
        return self.out(x, output_size=(patch_px, patch_px))
