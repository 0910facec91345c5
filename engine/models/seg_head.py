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


def fit_segmentation_head(dense: torch.Tensor, labels: torch.Tensor, n_classes: int, epochs: int = 200,
                          learning_rate: float = 1e-2, weight_decay: float = 1e-4, class_weighting: bool = True,
                          seed: int = 0) -> DenseSegmentationHead:
    """Fit the head as a probe on frozen dense features.

    ``dense``: (N, Hs, Ws, C); ``labels``: (N, H, W) class indices at the label raster's
    resolution, -1 where unlabelled (ignored by the loss). Full-batch AdamW.
    """
    if labels.ndim != 3 or labels.shape[0] != dense.shape[0]:
        raise ValueError(f"labels must be (N, H, W) with N = {dense.shape[0]}, got {tuple(labels.shape)}")
    labelled = labels[labels >= 0]
    if labelled.numel() == 0:
        raise ValueError("no labelled pixel")
    weight = None
    if class_weighting:
        counts = torch.bincount(labelled, minlength=n_classes).float()
        weight = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), torch.zeros_like(counts))
    torch.manual_seed(seed)
    head = DenseSegmentationHead(dense.shape[-1], n_classes)
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=weight_decay)
    dense = dense.detach()
    for _ in range(epochs):
        optimizer.zero_grad()
        logits = head(dense, output_size=tuple(labels.shape[-2:]))
        loss = F.cross_entropy(logits, labels, weight=weight, ignore_index=-1)
        loss.backward()
        optimizer.step()
    return head.eval()
