"""OmniSat's modality combiner: self-attention over all (modality, patch) tokens,
then one learned query per patch gathers a fused embedding by cross-attention.

Positions are explicit patch centres in metres. Relative positions are Euclidean
distances in patches, bucketed (0, 1, 2-3, 4+), with the class token in its own
bucket; the reference instead guessed a square grid from the sequence length,
which mislabels distances as soon as several modalities share the sequence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from engine.models.attention import Block, CrossBlock
from engine.models.position import euclidean_buckets, n_distance_buckets


def relative_buckets(query_xy: Tensor, key_xy: Tensor, unit: float, ratio: float) -> Tensor:
    """Buckets (1 + Nq, 1 + Nk) for sequences that start with a class token (last bucket)."""
    n_dist = n_distance_buckets(ratio)
    inner = euclidean_buckets(query_xy, key_xy, unit, ratio)
    buckets = inner.new_full((inner.shape[0] + 1, inner.shape[1] + 1), n_dist)
    buckets[1:, 1:] = inner
    return buckets


def resize_grid_table(table: Tensor, grid: tuple[int, int], target: tuple[int, int]) -> Tensor:
    """A learned per-patch table (Gh*Gw, D) resampled bilinearly to another grid size."""
    if tuple(grid) == tuple(target):
        return table
    image = rearrange(table, "(h w) d -> 1 d h w", h=grid[0], w=grid[1])
    image = F.interpolate(image, size=tuple(target), mode="bilinear", align_corners=False)
    return rearrange(image, "1 d h w -> (h w) d")


class Combiner(nn.Module):
    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        grid: tuple[int, int],
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
        rpe_ratio: float = 1.9,
    ):
        super().__init__()
        self.grid, self.rpe_ratio = tuple(grid), rpe_ratio
        n_patches = grid[0] * grid[1]
        buckets = n_distance_buckets(rpe_ratio) + 1  # + the class token's bucket
        self.cls_token = nn.Parameter(torch.zeros(1, dim))
        self.position = nn.Parameter(torch.zeros(1 + n_patches, dim))  # class token + one per patch
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio, True, dropout, attn_drop, rates[i], norm_eps, buckets) for i in range(depth)
        )
        self.query = nn.Parameter(torch.zeros(1, dim))
        self.query_position = nn.Parameter(torch.zeros(1 + n_patches, dim))
        self.cross = CrossBlock(dim, heads, mlp_ratio, True, dropout, attn_drop, rates[depth - 1], norm_eps, buckets)
        for p in (self.cls_token, self.position, self.query_position):
            nn.init.trunc_normal_(p, std=0.02)

    def patch_positions(self, grid: tuple[int, int]) -> Tensor:
        """Learned absolute position of each patch (Gh*Gw, D), added to every modality's tokens."""
        return resize_grid_table(self.position[1:], self.grid, grid)

    def forward(
        self, tokens: Tensor, centres: Tensor, patch_size_m: float, grid: tuple[int, int]
    ) -> tuple[Tensor, Tensor]:
        """tokens (B, M, P, D) with positions added (masked ones replaced); centres (P, 2) in metres.

        Returns the class token (B, D) and the fused patch embeddings (B, P, D).
        """
        b, m, p, _ = tokens.shape
        key_xy = centres.repeat(m, 1)
        self_buckets = relative_buckets(key_xy, key_xy, patch_size_m, self.rpe_ratio)
        cross_buckets = relative_buckets(centres, key_xy, patch_size_m, self.rpe_ratio)
        cls = (self.cls_token + self.position[:1]).to(tokens.dtype).expand(b, 1, -1)
        x = torch.cat([cls, rearrange(tokens, "b m p d -> b (m p) d")], dim=1)
        for block in self.blocks:
            x = block(x, rel_buckets=self_buckets)
        table = torch.cat([self.query_position[:1], resize_grid_table(self.query_position[1:], self.grid, grid)])
        queries = (self.query + table).to(x.dtype).expand(b, -1, -1)
        out = self.cross(queries, x, rel_buckets=cross_buckets)
        return out[:, 0], out[:, 1:]
