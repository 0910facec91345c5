"""The dense segmentation head on AnySat-style dense features."""

from __future__ import annotations

import pytest
import torch

from engine.errors import EngineError
from engine.models.heads import DenseSegmentationHead

torch.set_num_threads(1)


def test_shapes_and_bilinear_resize():
    head = DenseSegmentationHead(in_dim=32, n_classes=5)
    dense = torch.randn(2, 6, 6, 32)
    assert head(dense).shape == (2, 5, 6, 6)
    logits = head(dense, output_size=(60, 60))
    assert logits.shape == (2, 5, 60, 60)
    # Bilinear resizing keeps the mean logit of each map (up to border effects).
    assert torch.allclose(logits.mean((2, 3)), head(dense).mean((2, 3)), atol=0.2)
    with pytest.raises(EngineError, match="dense features"):
        head(torch.randn(2, 6, 6, 16))


def test_head_learns_a_per_subpatch_rule_as_a_linear_probe():
    torch.manual_seed(0)
    dense = torch.randn(8, 6, 6, 16)
    target = (dense[..., 3] > dense[..., 7]).long()  # a linear rule per sub-patch
    head = DenseSegmentationHead(16, 2)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(100):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(dense), target)
        loss.backward()
        optimizer.step()
    accuracy = (head(dense).argmax(1) == target).float().mean()
    assert accuracy > 0.95
    assert sum(p.numel() for p in head.parameters()) == 2 * 16 + 16 * 2 + 2
