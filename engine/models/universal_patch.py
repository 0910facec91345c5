"""UniverSat's building blocks and its Universal Patch Encoder (UPE).

The UPE turns one sensor's patch, whatever its bands, dates and pixel size, into one token
(plus one token per sub-patch) through four axis-wise pooling attentions, in this order:
S1 over the pixels of a sub-patch (2-D rotary positions in metres / 10), C over the bands
(each band's wavelength Fourier code or learned SAR / elevation code added first), T over
the dates (two registers; 1-D rotary positions = day of year, truncated to an integer),
S over the sub-patches of the patch (four registers; 2-D rotary positions). Each pooling
attention has a single query built from the mean and the max of its tokens and widens the
channels by its ``expand`` factor (residual: [mean, max] for 2, max for 1).

Facts of the released code kept for equality: RMSNorm adds its epsilon (1e-8) to the RMS,
not under the root; the 2-D rotary frequencies are learned parameters and rotate the keys
only in the pooling attentions (the query sits at no position); a pooling attention over a
single token is its value projection alone. Positions are pure functions of the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from engine.models.kernels import Linear, linear
from engine.models.universat_sensors import CHANNEL_CODES

ROPE_1D_BASE = 100_000
TEMPORAL_REGISTERS = 2
SPATIAL_REGISTERS = 4
UNIQUE_SHARE = 0.7  # below this share of distinct pixel values, the first axis runs once per value


class RMSNorm(nn.Module):
    """x / (rms(x) + eps) * scale."""

    def __init__(self, dim: int, eps: float = 1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * (self.inverse_rms(x) * self.scale)

    def inverse_rms(self, x: Tensor) -> Tensor:
        """1 / (rms(x) + eps) over the last axis, keepdim (a multiply on the big tensor instead of a divide)."""
        return 1.0 / (x.norm(2, dim=-1, keepdim=True) * self.dim**-0.5 + self.eps)


class FourierEmbedding(nn.Module):
    """A scalar (a pixel value, a wavelength) -> dim features: frozen random cosines, learned projection."""

    def __init__(self, dim: int, bandwidth: float = 1.0):
        super().__init__()
        self.register_buffer("freqs", 2 * math.pi * torch.randn(dim // 4) * bandwidth)
        self.register_buffer("phases", 2 * math.pi * torch.rand(dim // 4))
        self.proj = Linear(dim // 4, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(...) -> (..., dim)."""
        y = torch.cos(x.float()[..., None] * self.freqs.float() + self.phases.float()) * math.sqrt(2)
        return self.proj(y.to(x.dtype))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(linear(self.fc1, x, "gelu"))


# ----- positions: pure functions -----
def grid_coords(side: int, registers: int = 0, device=None) -> Tensor:
    """(registers + side^2, 2): register positions, then a side x side grid over [0, 1]^2, row-major.

    Four or more registers sit along the unit square's edges; fewer sit at the origin.
    """
    axis = torch.linspace(0, 1, side, device=device, dtype=torch.float32)
    grid = torch.cartesian_prod(axis, axis).reshape(side * side, 2)
    return torch.cat([register_coords(registers, device), grid], dim=0)


def register_coords(n: int, device=None) -> Tensor:
    reg = torch.zeros(n, 2, device=device, dtype=torch.float32)
    if n <= 3:
        return reg
    side = n // 4
    c = torch.arange(side, device=device, dtype=torch.float32) / side
    reg[0 * side : 1 * side, 0] = c
    reg[1 * side : 2 * side, 0] = 1
    reg[1 * side : 2 * side, 1] = c
    reg[2 * side : 3 * side, 0] = 1 - c
    reg[2 * side : 3 * side, 1] = 1
    reg[3 * side : 4 * side, 1] = 1 - c
    return reg


def sub_grid_coords(size: int, sub: int, device=None) -> Tensor:
    """Positions of a size x size patch grid's sub-patches (sub x sub each) over [0, 1]^2,
    patch-major then sub-patch row-major: (size^2 sub^2, 2)."""
    full = grid_coords(size * sub, 0, device)
    return rearrange(full, "(p r q s) c -> (p q r s) c", p=size, r=sub, q=size, s=sub)


def rotate_2d(x: Tensor, angle: Tensor) -> Tensor:
    """2-D rotary embedding: channel quarters (x1, x2, x3, x4) rotate as pairs (x1, x2), (x3, x4)."""
    x1, x2, x3, x4 = x.chunk(4, dim=-1)
    return x * angle.cos() + torch.cat((-x2, x1, -x4, x3), dim=-1) * angle.sin()


def rope_1d_angles(positions: Tensor, head_dim: int) -> tuple[Tensor, Tensor]:
    """(cos, sin) of integer positions (...,) for interleaved channel pairs: (..., head_dim / 2) each."""
    theta = 1.0 / (
        ROPE_1D_BASE ** (torch.arange(0, head_dim, 2, device=positions.device)[: head_dim // 2].float() / head_dim)
    )
    angle = positions.float()[..., None] * theta
    return angle.cos(), angle.sin()


def rotate_1d(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """1-D rotary embedding on interleaved pairs (x[2i], x[2i+1])."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2).to(x.dtype)


@dataclass
class KeyPositions:
    """Where a pooling attention's keys lie: 2-D coordinates (G|1, L, 2), or 1-D (cos, sin) (G, L, d/2)."""

    coords: Tensor | None = None
    cos: Tensor | None = None
    sin: Tensor | None = None


# ----- pooling attention (the released ACABlock) -----
class PoolingAttention(nn.Module):
    """One query from [mean, max] of the tokens attends to them; channels widen by ``expand``."""

    def __init__(self, dim: int, heads: int, expand: int, qkv_bias: bool, gating: bool, rope: str | None):
        super().__init__()
        width = dim * expand
        self.heads, self.head_dim, self.gating, self.rope = heads, width // heads, gating, rope
        self.wq = Linear(2 * dim, width * (2 if gating else 1), bias=True)
        self.wk = Linear(dim, width, bias=qkv_bias)
        self.wv = Linear(dim, width, bias=qkv_bias)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)
        if rope == "2d":
            self.rope_freqs = nn.Parameter(torch.zeros(2, self.head_dim))

    def forward(self, x: Tensor, positions: KeyPositions | None = None) -> Tensor:
        """(G, L, dim) -> (G, 1, dim * expand)."""
        g, n, _ = x.shape
        if n == 1:  # nothing to pool: the value of the only token
            return self.wv(x)
        h, d = self.heads, self.head_dim
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=-1)
        q = self.wq(pooled).view(g, 1, h, -1)
        if self.gating:
            q, gate = q.split([d, d], dim=-1)
        q = self.q_norm(q).transpose(1, 2)
        raw = self.wk(x).view(g, n, h, d)
        if self.rope is None:
            # no rotation: the key norm's scale moves onto the query and its 1 / rms onto the scores,
            # so the (tokens x width) keys are never normalised
            inv = self.k_norm.inverse_rms(raw).squeeze(-1).transpose(1, 2)[:, :, None]  # (g, h, 1, n)
            scores = ((q * self.k_norm.scale) @ raw.permute(0, 2, 3, 1)) * inv
        else:
            k = self.k_norm(raw).transpose(1, 2)
            if self.rope == "2d" and positions is not None:
                k = rotate_2d(k, (positions.coords @ self.rope_freqs)[:, None])
            elif self.rope == "1d" and positions is not None:
                k = rotate_1d(k, positions.cos[:, None], positions.sin[:, None])
            scores = q @ k.transpose(-2, -1)
        weights = torch.softmax(scores * d**-0.5, dim=-1)  # (g, h, 1, n)
        # One query: the weighted mean of the values is the value of the weighted mean of the tokens
        # (the weights sum to 1), so the value projection runs once per head, not once per token.
        # one bmm over the groups, heads as rows: a broadcast (g, h, 1, n) @ (g, 1, n, dim) would copy x per head
        mean = torch.bmm(weights.squeeze(2), x)  # (g, h, dim)
        w_v = self.wv.weight.view(h, d, -1)
        out = torch.bmm(mean.transpose(0, 1), w_v.transpose(1, 2)).transpose(0, 1)  # (g, h, d)
        if self.wv.bias is not None:
            out = out + self.wv.bias.view(h, d)
        out = out[:, None]
        if self.gating:
            out = out * torch.sigmoid(gate)
        return out.reshape(g, 1, h * d)


class PoolingBlock(nn.Module):
    def __init__(
        self, dim: int, heads: int, expand: int, mlp_ratio: float, qkv_bias: bool, gating: bool, rope: str | None
    ):
        super().__init__()
        if expand not in (1, 2):
            raise ValueError(f"pooling expand factor must be 1 or 2, got {expand}")
        self.expand = expand
        self.norm1 = RMSNorm(dim)
        self.attn = PoolingAttention(dim, heads, expand, qkv_bias, gating, rope)
        width = dim * expand
        self.norm2 = RMSNorm(width)
        self.mlp = Mlp(width, int(width * mlp_ratio))
        self.gamma_1 = nn.Parameter(torch.full((width,), 1e-6))
        self.gamma_2 = nn.Parameter(torch.full((width,), 1e-6))

    def forward(self, x: Tensor, positions: KeyPositions | None = None) -> Tensor:
        """(G, L, dim) -> (G, 1, dim * expand)."""
        if x.shape[1] == 1:  # one token (one-pixel sub-patches): its mean and max are itself, no reduction
            res = torch.cat([x, x], dim=-1) if self.expand == 2 else x
        elif self.expand == 2:
            res = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=-1)
        else:
            res = x.amax(dim=1, keepdim=True)
        x = res + self.gamma_1 * self.attn(self.norm1(x), positions)
        return x + self.gamma_2 * self.mlp(self.norm2(x))


# ----- the Universal Patch Encoder -----
AXES = ("S1", "C", "T", "S")


@dataclass
class PatchEncoding:
    tokens: Tensor  # (B, P, final_dim): one token per patch, P row-major
    subs: Tensor  # (B, P, S, final_dim): one token per sub-patch, sub-patches row-major in each patch


class UniversalPatchEncoder(nn.Module):
    def __init__(
        self, dim: int, final_dim: int, heads: int, expand: tuple[int, ...], mlp_ratio: float = 4.0, gating: bool = True
    ):
        super().__init__()
        if len(expand) != len(AXES):
            raise ValueError(f"one expand factor per axis {AXES}, got {expand}")
        self.dim = dim
        self.value_embed = FourierEmbedding(dim, bandwidth=2.5)
        self.wavelength_embed = FourierEmbedding(dim)

        self.channel_codes = nn.ParameterDict({code: nn.Parameter(torch.randn(dim)) for code in CHANNEL_CODES})
        axis_heads = {"S1": 1 if heads < 3 else heads // 6, "C": heads // 4, "T": heads // 2, "S": heads}
        axis_rope = {"S1": "2d", "C": None, "T": "1d", "S": "2d"}
        self.blocks = nn.ModuleDict()
        width = dim
        for axis, e in zip(AXES, expand):
            if axis == "S":
                self.sub_proj = Linear(width, final_dim)
            self.blocks[axis] = PoolingBlock(width, axis_heads[axis], e, mlp_ratio, True, gating, axis_rope[axis])
            width *= e
        self.registers_temporal = nn.Parameter(torch.zeros(1, TEMPORAL_REGISTERS, dim * expand[0] * expand[1]))
        self.registers_spatial = nn.Parameter(
            torch.zeros(1, SPATIAL_REGISTERS, dim * expand[0] * expand[1] * expand[2])
        )
        self.norm = RMSNorm(width)
        self.final_proj = Linear(width, final_dim)
        self.widths = [dim * math.prod(expand[:i]) for i in range(len(AXES) + 1)]

    def pixel_values(self, values: Tensor) -> Tensor:
        """The first axis for one-pixel sub-patches: a function of each pixel value alone, (rows,) -> (rows, 1, w1).

        Real products repeat values (digital numbers of a band, normalised), so each distinct value is
        computed once when fewer than UNIQUE_SHARE of them are distinct (the same result: row-wise maths)."""
        unique, inverse = torch.unique(values, return_inverse=True)
        if unique.numel() <= UNIQUE_SHARE * values.numel():
            return self.blocks["S1"](self.value_embed(unique[:, None]))[inverse]
        return self.blocks["S1"](self.value_embed(values[:, None]))

    def channel_code(self, channels: tuple, device, dtype) -> Tensor:
        """(C, dim): each band's wavelength Fourier code or learned code."""
        codes = []
        for c in channels:
            if isinstance(c, str):
                codes.append(self.channel_codes[c].view(1, -1))
            else:
                codes.append(self.wavelength_embed(torch.tensor([float(c)], device=device, dtype=dtype)))
        return torch.cat(codes, dim=0)

    def forward(
        self,
        x: Tensor,
        dates: Tensor | None,
        channels: tuple,
        patch_px: int,
        sub_px: int,
        gsd_m: float,
        patch_size_m: float,
    ) -> PatchEncoding:
        """x (B, T, C, H, W) (T = 1 for an image), dates (B, T) day of year or None ->
        tokens of the (H / patch_px) x (W / patch_px) patches, row-major."""
        b, t, c, hh, ww = x.shape
        gh, gw, n = hh // patch_px, ww // patch_px, patch_px // sub_px
        s_count, p_count = n * n, gh * gw
        # rows: (batch, patch, sub-patch, date, band); tokens: the sub-patch's pixels
        x = rearrange(
            x, "b t c (gh n r) (gw m q) -> (b gh gw n m t c) (r q)", gh=gh, gw=gw, n=n, m=n, r=sub_px, q=sub_px
        )
        device, dtype = x.device, x.dtype
        scale = patch_size_m / 10
        if sub_px == 1:
            x = self.pixel_values(x[:, 0])
        else:
            pos_sub = KeyPositions(coords=(grid_coords(sub_px, 0, device) * (sub_px * gsd_m / 10))[None])
            x = self.blocks["S1"](self.value_embed(x), pos_sub)  # (rows, 1, w1)
        w1 = x.shape[-1]
        code = self.channel_code(channels, device, dtype)
        code = code.repeat(1, w1 // self.dim) if w1 > self.dim else code
        x = x.view(-1, c, w1) + code
        x = self.blocks["C"](x)  # (b p s t, 1, w2)
        w2 = x.shape[-1]
        x = x.view(-1, t, w2)
        if t > 1:
            x = torch.cat([self.registers_temporal.expand(x.shape[0], -1, -1).to(dtype), x], dim=1)
            days = dates.to(torch.int32)
            days = torch.cat([days.new_zeros(b, TEMPORAL_REGISTERS), days], dim=1)
            cos, sin = rope_1d_angles(days, self.blocks["T"].attn.head_dim)
            rows = p_count * s_count
            x = self.blocks["T"](
                x, KeyPositions(cos=cos.repeat_interleave(rows, dim=0), sin=sin.repeat_interleave(rows, dim=0))
            )
        else:
            x = self.blocks["T"](x)
        w3 = x.shape[-1]
        x = x.view(b * p_count, s_count, w3)
        subs = self.sub_proj(x)
        x = torch.cat([self.registers_spatial.expand(x.shape[0], -1, -1).to(dtype), x], dim=1)
        coords = grid_coords(n, SPATIAL_REGISTERS, device) * (scale * n / 100)
        x = self.blocks["S"](x, KeyPositions(coords=coords[None]))
        tokens = self.final_proj(self.norm(x))
        return PatchEncoding(tokens.view(b, p_count, -1), subs.view(b, p_count, s_count, -1))
