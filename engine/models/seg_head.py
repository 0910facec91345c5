"""Segmentation head on AnySat's dense features.

Each sub-patch vector (patch token and sub-patch token side by side, 2D wide) goes
through a LayerNorm and one linear layer: a few thousand parameters, usable as a
linear probe on frozen features or as a head fine-tuned with the encoder. Logits
are then resized bilinearly to the label raster's resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class DenseSegmentationHead(nn.Module):
    """(B, Hs, Ws, C) dense features -> (B, K, H, W) logits."""

    def __init__(self, in_dim: int, n_classes: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.classifier = nn.Linear(in_dim, n_classes)
        self.in_dim, self.n_classes = in_dim, n_classes

    def forward(self, dense: torch.Tensor, output_size: tuple[int, int] | None = None) -> torch.Tensor:
        if dense.ndim != 4 or dense.shape[-1] != self.in_dim:
            raise ValueError(f"expected dense features (B, Hs, Ws, {self.in_dim}), got {tuple(dense.shape)}")
        logits = rearrange(self.classifier(self.norm(dense)), "b h w k -> b k h w")
        if output_size is not None and tuple(output_size) != tuple(logits.shape[-2:]):
            logits = F.interpolate(logits, size=tuple(output_size), mode="bilinear", align_corners=False)
        return logits
