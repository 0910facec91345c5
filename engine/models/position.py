"""Position encodings as pure functions (no parameters, no state).

Coordinates are explicit: a patch grid is described by its patch centres in
metres, never guessed from a sequence length.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoid_encoding(positions: Tensor, dim: int, period: float, repeat: int = 1) -> Tensor:
    """Transformer sinusoid encoding of scalar positions (e.g. day of year).

    positions (...,) -> (..., dim * repeat); channel 2i is sin(p / period^(2i/dim)),
    channel 2i+1 the matching cos. ``repeat`` tiles the code, as the LTAE gives
    each head its own copy.
    """
    index = torch.arange(dim, device=positions.device, dtype=torch.float32)
    denominator = torch.pow(
        torch.tensor(float(period), device=positions.device), 2 * torch.div(index, 2, rounding_mode="floor") / dim
    )
    angles = positions.float().unsqueeze(-1) / denominator
    code = torch.where(index.long() % 2 == 0, torch.sin(angles), torch.cos(angles))
    if repeat > 1:
        code = code.repeat(*([1] * (code.dim() - 1)), repeat)
    return code


def patch_centres(grid_h: int, grid_w: int, patch_size_m: float, device=None) -> Tensor:
    """Centres (row, col) in metres of a grid_h x grid_w patch grid, row-major: (P, 2)."""
    rows = (torch.arange(grid_h, device=device, dtype=torch.float32) + 0.5) * patch_size_m
    cols = (torch.arange(grid_w, device=device, dtype=torch.float32) + 0.5) * patch_size_m
    return torch.cartesian_prod(rows, cols)


def euclidean_buckets(query_xy: Tensor, key_xy: Tensor, unit: float, ratio: float = 1.9) -> Tensor:
    """Bucket index of the Euclidean distance between every query and key position.

    Positions (Nq, 2), (Nk, 2) in metres; ``unit`` is the patch size in metres, so
    distances are counted in patches. Rounded distances up to ``ratio`` keep their
    own bucket; beyond, buckets grow logarithmically (the iRPE piecewise index,
    alpha = ratio, beta = 2 ratio, gamma = 8 ratio). With ratio 1.9 the buckets are
    distance 0, 1, 2-3 and 4 or more. Returns long (Nq, Nk) in [0, n_distance_buckets(ratio)).
    """
    distance = torch.cdist(query_xy.double(), key_xy.double()) / unit
    distance = distance.round()
    alpha, beta, gamma = ratio, 2 * ratio, 8 * ratio
    far = alpha + torch.log(distance.clamp(min=alpha) / alpha) / math.log(gamma / alpha) * (beta - alpha)
    far = far.round().clamp(max=beta)
    return torch.where(distance <= alpha, distance, far).long()


def n_distance_buckets(ratio: float = 1.9) -> int:
    """How many buckets ``euclidean_buckets`` can return."""
    return int(2 * ratio) + 1


def sincos_2d_encoding(positions: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """2-D sin-cos encoding of (row, col) positions (..., 2) -> (..., dim).

    The first half of the channels encodes rows, the second half columns, each as
    [sin, cos] blocks over dim/4 frequencies. Scale the positions beforehand (e.g.
    by a ground sampling distance) to make the code resolution-aware.
    """
    if dim % 4:
        raise ValueError(f"sincos_2d_encoding needs a dimension divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, device=positions.device, dtype=torch.float32) / quarter)
    parts = []
    for axis in range(2):
        angles = positions[..., axis].float().unsqueeze(-1) * omega
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=-1)
