"""OmniSat's self-supervised losses: cross-modal patch contrast and reconstruction."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from engine.runtime.distributed import gather_with_grad


def patch_contrastive_loss(tokens: Tensor, temperature: float = 0.1) -> Tensor:
    """Cross-modal patch-level InfoNCE (OmniSat's MIL-NCE), fully vectorized.

    tokens (M, B, P, D): modality m's embedding of patch p of tile b. For each token:
    positives are the same patch of the same tile seen by the other modalities;
    ignored are all tokens of the same tile and the same modality (itself included);
    everything else is a negative. Loss per token = logsumexp over positives and
    negatives - logsumexp over positives, of cosine similarity / temperature,
    averaged over tokens.

    Under torch.distributed the negatives are the tiles of every rank (gathered, with the
    gradient flowing back to each rank's own tokens) and each rank averages over its own
    tokens: the mean of the ranks' losses is the loss of one process on the global batch.
    """
    m, b, p, _ = tokens.shape
    if m < 2:
        raise ValueError("the contrastive loss needs at least two modalities")
    everyone, first = gather_with_grad(tokens, dim=1)
    total = everyone.shape[1]
    anchors = F.normalize(rearrange(tokens, "m b p d -> (m b p) d").float(), dim=-1, eps=1e-8)
    candidates = F.normalize(rearrange(everyone, "m b p d -> (m b p) d").float(), dim=-1, eps=1e-8)
    logits = anchors @ candidates.t() / temperature

    def labels(tiles: int, offset: int) -> tuple[Tensor, ...]:
        grid = torch.meshgrid(torch.arange(m), torch.arange(offset, offset + tiles), torch.arange(p), indexing="ij")
        return tuple(g.reshape(-1).to(tokens.device) for g in grid)

    (mod, tile, patch), (mod_c, tile_c, patch_c) = labels(b, first), labels(total, 0)
    same_tile = tile[:, None] == tile_c[None, :]
    same_mod = mod[:, None] == mod_c[None, :]
    ignored = same_tile & same_mod
    positive = same_tile & ~same_mod & (patch[:, None] == patch_c[None, :])
    everything = torch.logsumexp(logits.masked_fill(ignored, float("-inf")), dim=1)
    positives = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
    return (everything - positives).mean()


def standardize(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """(x - mean) / std over ``dims`` (unbiased variance + 1e-6), as MAE-style targets."""
    return (x - x.mean(dim=dims, keepdim=True)) / (x.var(dim=dims, keepdim=True) + 1e-6).sqrt()


def image_reconstruction_loss(prediction: Tensor, patches: Tensor) -> Tensor:
    """prediction, patches (N, C, p, p); each target patch standardized on its own."""
    return F.mse_loss(prediction.float(), standardize(patches.float(), (1, 2, 3)))


def series_reconstruction_loss(prediction: Tensor, target: Tensor, keep: Tensor, masked: Tensor) -> Tensor:
    """Masked reconstruction of the chosen dates.

    prediction, target (B, K, P, C): K chosen dates; target standardized per
    (tile, date) over patches and bands. keep (B, K): which date slots count;
    masked (B, P): which tokens were masked (only those are scored).
    """
    target = standardize(target.float(), (2, 3))
    error = ((prediction.float() - target) ** 2).mean(dim=-1)  # (B, K, P)
    weight = keep[:, :, None].float() * masked[:, None, :].float()
    return (error * weight).sum() / weight.sum().clamp(min=1.0)
