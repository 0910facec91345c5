"""Random token masking and attention-based date selection for pretraining."""

from __future__ import annotations

import torch
from torch import Tensor


def random_token_mask(
    batch: int, n_tokens: int, ratio: float, device=None, generator: torch.Generator | None = None
) -> Tensor:
    """bool (B, N), True = masked; exactly N - int(N (1 - ratio)) tokens per sample."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    n_masked = n_tokens - int(n_tokens * (1 - ratio))
    noise = torch.rand(batch, n_tokens, generator=generator, device=device)
    rank = noise.argsort(dim=1).argsort(dim=1)
    return rank < n_masked


def top_attention_dates(attention: Tensor, valid: Tensor | None, fraction: float) -> tuple[Tensor, Tensor]:
    """The dates with the most encoder attention, per sample.

    attention (B, T); valid (B, T) bool or None. Keeps ceil(fraction x valid dates)
    (at least one) per sample. Returns index (B, K) of the chosen dates, most
    attended first, and keep (B, K) bool saying which of the K slots are used
    (samples with fewer valid dates choose fewer).
    """
    if valid is None:
        valid = torch.ones_like(attention, dtype=torch.bool)
    counts = valid.sum(dim=1)
    chosen = torch.clamp(torch.ceil(counts.float() * fraction).long(), min=1)
    k = int(chosen.max())
    scores = attention.float().masked_fill(~valid, float("-inf"))
    index = scores.topk(k, dim=1).indices
    keep = torch.arange(k, device=attention.device)[None, :] < chosen[:, None]
    return index, keep
