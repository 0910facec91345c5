"""Fitting the dense segmentation head as a probe on frozen AnySat dense features.

The head itself (LayerNorm + one linear layer per sub-patch vector, logits resized
bilinearly to the label raster's resolution) is engine.models.heads.DenseSegmentationHead,
the "dense" kind of the head registry: the same module is fine-tuned with the encoder
in training and saved in checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.models.heads import DenseSegmentationHead


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
