"""AnySat (Astruc et al., CVPR 2025): one encoder for any resolution, scale and modality.

Pipeline for one tile cut into a G x G grid of square patches of P metres:
1. per-modality projector on fixed-size sub-patches: VHR images through a conv with
   kernel = stride (10 px at 0.2 m, 8 px for NAIP) and an MLP; time series through an
   L-TAE per pixel (a sub-patch is one pixel);
2. a spatial transformer shared by every modality turns each patch's sub-patch tokens
   plus a class token into one token per (modality, patch); its 2-D sin-cos positions
   are in metres (sub-patch index x sub-patch size), so the same weights serve any GSD;
3. the combiner: self-attention over [class, context, modality x patch] tokens with
   sin-cos patch positions scaled by P / 10, then OmniSat's cross block, in which one
   learned query per patch (plus the class query) gathers the modalities.
Coarse sensors (MODIS, 250 m) cover the tile with a few pixels: all of them go through
the spatial encoder as one sequence and enter the combiner as a single context token.

Outputs (channels last): ``tile`` (B, D); ``patch`` (B, G, G, D); ``dense`` (B, G n, G n, 2D)
per sub-patch of one modality (n sub-patches per patch side): the patch token repeated
over its sub-patches, concatenated with the sub-patch token; ``all`` (B, 1 + G G, D),
the class token then the patches in row-major order.

Compatibility with the released weights (flash attention off, the reference's documented
path) is kept exactly, including two quirks: (a) VHR sub-patch tokens of a patch larger
than 10 m come grouped by 10 m cell (cell-major) while the spatial encoder encodes token
k at raster position k; the ``dense`` output places every sub-patch token at its true
ground position (the reference's dense output keeps the cell-major order there);
(b) padded dates are attended to unless ``date_mask`` is given (then they get zero weight).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from einops import rearrange
from torch import Tensor, nn

from engine.errors import EngineError
from engine.io.grid import whole_multiple
from engine.models.attention import Block, CrossBlock
from engine.models.base import EOModel, Features
from engine.models.kernels import Linear
from engine.models.ltae import LTAE, LTAEConfig
from engine.models.modalities import ModalitySpec, sensor
from engine.models.position import euclidean_buckets, n_distance_buckets, sincos_2d_encoding
from engine.models.registry import register_architecture, register_preset

OUTPUTS = ("tile", "patch", "dense", "all")
# iRPE buckets: distances 0, 1, 2-3, 4+ (in grid steps), then one bucket for class/context tokens.
N_BUCKETS = n_distance_buckets() + 1
PREFIX_BUCKET = N_BUCKETS - 1
# The reference groups VHR sub-patches by 10 m cells and scales patch positions by P / 10.
REFERENCE_CELL_M = 10.0
# Work sizes that bound memory on big tiles (results do not depend on them).
LTAE_ROW_CHUNK = 16384  # (pixel, date) rows per L-TAE call: (rows x 2D) activations
SPATIAL_TOKEN_CHUNK = 8192  # tokens per spatial-encoder call: (tokens x 4D) MLP activations
CROSS_QUERY_CHUNK = 512  # queries per cross-block call: (queries x tokens) position bias


@dataclass(frozen=True)
class ProjectorSpec:
    """How AnySat turns one sensor into sub-patch tokens (facts of the released model).

    sub_px: sub-patch side in pixels (VHR conv kernel = stride; 1 for time series).
    context: the whole tile becomes one token (coarse sensors such as MODIS).
    input_norm: GroupNorm after the L-TAE input MLP (Sentinel-2 in the release).
    date_period: period of the L-TAE day-of-year code.
    dropout: L-TAE dropout during training.
    """

    sub_px: int = 1
    context: bool = False
    input_norm: bool = False
    date_period: float = 367.0
    dropout: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        return dict(
            sub_px=self.sub_px,
            context=self.context,
            input_norm=self.input_norm,
            date_period=self.date_period,
            dropout=self.dropout,
        )


# The eleven GeoPlex sensors of the released model, by our sensor names.
GEOPLEX_PROJECTORS: dict[str, ProjectorSpec] = {
    "aerial": ProjectorSpec(sub_px=10),
    "aerial_elevation": ProjectorSpec(sub_px=10),
    "spot": ProjectorSpec(sub_px=10),
    "naip": ProjectorSpec(sub_px=8),
    "s2": ProjectorSpec(input_norm=True, dropout=0.0),
    "s1_asc": ProjectorSpec(),
    "s1_asc_ratio": ProjectorSpec(),
    "alos": ProjectorSpec(),
    "l7": ProjectorSpec(),
    "l8": ProjectorSpec(date_period=366.0),
    "modis": ProjectorSpec(context=True),
}


@dataclass
class AnySatConfig:
    architecture: ClassVar[str] = "anysat"

    embed_dim: int = 768
    depth: int = 6  # blocks of the spatial encoder and of the combiner
    heads: int = 12
    mlp_ratio: float = 4.0
    ltae_heads: int = 16
    ltae_key_dim: int = 8
    patch_size_m: float = 10.0  # default patch size of a forward pass
    drop_path: float = 0.0
    modalities: tuple[ModalitySpec, ...] = ()
    projectors: dict[str, ProjectorSpec] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "heads": self.heads,
            "mlp_ratio": self.mlp_ratio,
            "ltae_heads": self.ltae_heads,
            "ltae_key_dim": self.ltae_key_dim,
            "patch_size_m": self.patch_size_m,
            "drop_path": self.drop_path,
            "modalities": [spec.to_dict() for spec in self.modalities],
            "projectors": {name: spec.to_dict() for name, spec in self.projectors.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnySatConfig:
        values = {k: v for k, v in data.items() if k != "architecture"}
        values["modalities"] = tuple(ModalitySpec.from_dict(m) for m in values.get("modalities", ()))
        values["projectors"] = {k: ProjectorSpec(**v) for k, v in values.get("projectors", {}).items()}
        return cls(**values)


def anysat_config(size: str, modalities: Iterable[str] = tuple(GEOPLEX_PROJECTORS)) -> AnySatConfig:
    """The tiny / small / base architecture with the given GeoPlex sensors."""
    dims = {"tiny": (256, 2, 4), "small": (512, 4, 8), "base": (768, 6, 12)}
    if size not in dims:
        raise EngineError(f"Unknown AnySat size {size!r}: choose one of {', '.join(dims)}.")
    dim, depth, heads = dims[size]
    names = tuple(modalities)
    return AnySatConfig(
        embed_dim=dim,
        depth=depth,
        heads=heads,
        modalities=tuple(sensor(n) for n in names),
        projectors={n: GEOPLEX_PROJECTORS[n] for n in names},
    )


class ImageProjector(nn.Module):
    """Conv with kernel = stride = sub-patch, then MLP [D, 2D, D] (Linear, LayerNorm, ReLU)."""

    def __init__(self, in_channels: int, dim: int, sub_px: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, dim, kernel_size=sub_px, stride=sub_px, bias=False)
        self.mlp = nn.Sequential(
            Linear(dim, 2 * dim), nn.LayerNorm(2 * dim), nn.ReLU(), Linear(2 * dim, dim), nn.LayerNorm(dim), nn.ReLU()
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, h, w, D) sub-patch grid."""
        return self.mlp(rearrange(self.conv(x), "b d h w -> b h w d"))


class SeriesProjector(nn.Module):
    """L-TAE on every pixel's time series; a learned value stands in for missing bands."""

    def __init__(self, in_channels: int, dim: int, spec: ProjectorSpec, heads: int, key_dim: int):
        super().__init__()
        self.ltae = LTAE(
            LTAEConfig(
                in_channels=in_channels,
                in_mlp=(dim // 8, dim // 2, dim, 2 * dim, dim),
                heads=heads,
                key_dim=key_dim,
                out_mlp=(dim,),
                date_period=spec.date_period,
                input_norm=spec.input_norm,
                dropout=spec.dropout,
                mlp_norm="group",
            )
        )
        self.pad_value = nn.Parameter(torch.zeros(()))
        self.row_chunk = LTAE_ROW_CHUNK

    def forward(self, x: Tensor, dates: Tensor, mask: Tensor | None) -> Tensor:
        """(B, T, C, H, W), dates (B, T), mask (B, T) -> (B, H, W, D)."""
        b, t, _, h, w = x.shape
        seq = rearrange(x, "b t c h w -> (b h w) t c")
        pix_dates = dates.repeat_interleave(h * w, dim=0)
        pix_mask = None if mask is None else mask.repeat_interleave(h * w, dim=0)
        # The date code depends on the tile's dates only: computed per tile, not per pixel.
        code = self.ltae.date_code(dates)
        code = code if b == 1 else code.repeat_interleave(h * w, dim=0)
        chunk = max(1, self.row_chunk // t)
        out = [
            self.ltae(
                seq[i : i + chunk],
                pix_dates[i : i + chunk],
                None if pix_mask is None else pix_mask[i : i + chunk],
                date_code=code if b == 1 else code[i : i + chunk],
            )[0]
            for i in range(0, seq.shape[0], chunk)
        ]
        return rearrange(torch.cat(out), "(b h w) d -> b h w d", b=b, h=h, w=w)


def sub_patch_positions(n: int, sub_m: float, device=None) -> Tensor:
    """(x, y) in metres of an n x n sub-patch grid, row-major: (n*n, 2).

    The released model encodes columns in the first half of the channels.
    """
    index = torch.arange(n, device=device, dtype=torch.float32)
    rows, cols = torch.meshgrid(index, index, indexing="ij")
    return torch.stack([cols.flatten(), rows.flatten()], dim=-1) * sub_m


def grid_buckets(n: int, prefix: int, device=None) -> Tensor:
    """Bucket ids (prefix + n*n)^2 for [prefix tokens, n x n grid row-major]."""
    xy = sub_patch_positions(n, 1.0, device)
    buckets = torch.full((prefix + n * n, prefix + n * n), PREFIX_BUCKET, dtype=torch.long, device=device)
    buckets[prefix:, prefix:] = euclidean_buckets(xy, xy, unit=1.0)
    return buckets


class SpatialEncoder(nn.Module):
    """Shared transformer over one patch's sub-patch tokens plus a class token."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(
            [
                Block(
                    dim,
                    heads,
                    mlp_ratio,
                    norm_eps=1e-5,
                    drop_path=drop_path * i / max(depth - 1, 1),
                    rel_pos_buckets=N_BUCKETS,
                    rel_pos_first_head=True,
                )
                for i in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(dim)
        self.token_chunk = SPATIAL_TOKEN_CHUNK

    def forward(self, tokens: Tensor, n: int, sub_m: float, keep_subs: bool = True) -> tuple[Tensor, Tensor | None]:
        """tokens (N, n*n, D) -> (patch token (N, D), sub-patch tokens (N, n*n, D)).

        ``keep_subs`` False (at inference): no sub-patch tokens (None); the last block then
        computes the class token alone, which reads the others' keys and values only.
        """
        first_only = not keep_subs and not self.training
        pos = sincos_2d_encoding(sub_patch_positions(n, sub_m, tokens.device), tokens.shape[-1])
        buckets = grid_buckets(n, 1, tokens.device)
        chunk = max(1, self.token_chunk // (n * n + 1))
        heads, subs = [], []
        for i in range(0, tokens.shape[0], chunk):
            part = tokens[i : i + chunk]
            x = torch.cat([self.cls_token.expand(part.shape[0], -1, -1).to(part.dtype), part + pos.to(part.dtype)], 1)
            for block in self.blocks[:-1] if first_only else self.blocks:
                x = block(x, rel_buckets=buckets)
            if first_only:
                heads.append(self.norm(self.blocks[-1].forward_first(x, rel_buckets=buckets))[:, 0])
                continue
            x = self.norm(x)
            heads.append(x[:, 0])
            subs.append(x[:, 1:])
        return torch.cat(heads), torch.cat(subs) if subs else None


class AnySatCombiner(nn.Module):
    """Class token + self-attention blocks over all (context, modality x patch) tokens."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(
            [Block(dim, heads, mlp_ratio, norm_eps=1e-6, drop_path=drop_path * i / depth) for i in range(depth)]
        )

    def forward(self, tokens: Tensor) -> Tensor:
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], 1)
        for block in self.blocks:
            x = block(x)
        return x


class FusionCross(nn.Module):
    """OmniSat's cross block: a learned query at each patch (and the class query) reads all tokens."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.block = CrossBlock(
            dim,
            heads,
            mlp_ratio,
            norm_eps=1e-6,
            drop_path=drop_path,
            rel_pos_buckets=N_BUCKETS,
            rel_pos_first_head=True,
        )
        self.query_chunk = CROSS_QUERY_CHUNK

    def forward(self, x: Tensor, query_pos: Tensor, buckets: Tensor) -> Tensor:
        """x (B, N, D) tokens; query_pos (Q, D) or (B, Q, D), a zero row for the class query;
        buckets (Q, N) or (B, Q, N)."""
        queries = (self.query + query_pos.to(x.dtype)).expand(x.shape[0], -1, -1)
        return torch.cat(
            [
                self.block(
                    queries[:, i : i + self.query_chunk], x, rel_buckets=buckets[..., i : i + self.query_chunk, :]
                )
                for i in range(0, queries.shape[1], self.query_chunk)
            ],
            dim=1,
        )


@dataclass
class _Layout:
    """Geometry of one forward pass, checked against every modality given."""

    grid: int  # patches per side
    patch_m: float
    subs: dict[str, int]  # sub-patches per patch side, per patch modality


@dataclass
class AnySatEncoded:
    """What the encoder computes before the combiner (used by JEPA pretraining too)."""

    layout: _Layout
    patch_tokens: dict[str, Tensor]  # per patch modality (B, P, D), spatial-encoder output, no position
    context_tokens: list[Tensor]  # (B, 1, D) each
    sub_tokens: dict[str, Tensor] = field(default_factory=dict)  # (B, P, n*n, D) cell-major, when kept


class AnySat(EOModel):
    has_dense_features = True
    square_windows = True

    def __init__(self, config: AnySatConfig):
        super().__init__()
        if not config.modalities:
            raise EngineError("An AnySat config needs at least one modality.")
        self.config = config
        self.embed_dim = d = config.embed_dim
        self.modalities = {spec.name: spec for spec in config.modalities}
        missing = sorted(set(self.modalities) - set(config.projectors))
        if missing:
            raise EngineError(f"AnySat config: no projector settings for {', '.join(missing)}.")
        self.projectors = nn.ModuleDict()
        for name, spec in self.modalities.items():
            proj = config.projectors[name]
            if spec.kind == "image":
                self.projectors[name] = ImageProjector(spec.n_bands, d, proj.sub_px)
            else:
                self.projectors[name] = SeriesProjector(spec.n_bands, d, proj, config.ltae_heads, config.ltae_key_dim)
        self.spatial_encoder = SpatialEncoder(d, config.depth, config.heads, config.mlp_ratio, config.drop_path)
        self.combiner = AnySatCombiner(d, config.depth, config.heads, config.mlp_ratio, config.drop_path)
        self.cross_block = FusionCross(d, config.heads, config.mlp_ratio, config.drop_path)

    def parameter_groups(self) -> dict[str, nn.Module]:
        return {
            "projectors": self.projectors,
            "spatial_encoder": self.spatial_encoder,
            "combiner": self.combiner,
            "cross_block": self.cross_block,
        }

    # ----- geometry -----
    def sub_patch_m(self, name: str) -> float:
        return self.config.projectors[name].sub_px * self.modalities[name].gsd_m

    def sub_patches(self, name: str, patch_size_m: float) -> int:
        """Sub-patches of ``name`` per patch side (the patch must hold a whole number of them)."""
        n = whole_multiple(patch_size_m, self.sub_patch_m(name))
        if n is None:
            raise EngineError(
                f"Patch size {patch_size_m:g} m is not a whole number of {name!r} sub-patches "
                f"({self.sub_patch_m(name):g} m each): choose a multiple of {self.sub_patch_m(name):g} m."
            )
        return n

    def dense_layout(self, modalities: list[str], patch_size_m: float) -> tuple[str, int]:
        """The finest of ``modalities`` (as ``forward_features`` picks it) and its sub-patches per patch side;
        coarse context sensors have no sub-patch grid."""
        sizes = {
            name: self.sub_patches(name, patch_size_m)
            for name in modalities
            if not self.config.projectors[name].context
        }
        if not sizes:
            raise EngineError(f"Dense features need a modality with sub-patches among {', '.join(modalities)}.")
        name = max(sizes, key=lambda m: (sizes[m], m))
        return name, sizes[name]

    def layout(self, inputs: dict[str, Tensor], patch_size_m: float) -> _Layout:
        if not patch_size_m or patch_size_m <= 0:
            raise EngineError(f"Patch size must be a positive number of metres, got {patch_size_m}.")
        extents: dict[str, float] = {}
        subs: dict[str, int] = {}
        for name, x in inputs.items():
            h, w = x.shape[-2:]
            if h != w:
                raise EngineError(
                    f"AnySat needs square tiles: {name!r} is {h} x {w} pixels. Cut the area into square "
                    "windows (tiled inference does this) instead of passing a rectangle."
                )
            if self.config.projectors[name].context:
                continue
            spec, sub_px = self.modalities[name], self.config.projectors[name].sub_px
            if h % sub_px:
                raise EngineError(
                    f"{name!r} is {h} pixels wide, not a multiple of its {sub_px}-pixel sub-patches: "
                    f"crop or pad it to {h - h % sub_px} or {h - h % sub_px + sub_px} pixels."
                )
            extents[name] = h * spec.gsd_m
            subs[name] = self.sub_patches(name, patch_size_m)
        if not extents:
            raise EngineError(
                "AnySat needs at least one modality besides coarse context sensors "
                f"({', '.join(inputs)}): add an image or a 10-30 m time series."
            )
        first, extent = next(iter(extents.items()))
        for name, other in extents.items():
            if abs(other - extent) > 1e-6 * extent:
                raise EngineError(
                    f"Modalities must cover the same ground: {first!r} spans {extent:g} m, {name!r} {other:g} m. "
                    "Align them on one footprint first."
                )
        grid = whole_multiple(extent, patch_size_m)
        if grid is None:
            raise EngineError(
                f"The tile spans {extent:g} m, not a multiple of the {patch_size_m:g} m patch size: choose a "
                f"patch size dividing {extent:g} m, or crop the tile (the reference would crop silently)."
            )
        return _Layout(grid=grid, patch_m=float(patch_size_m), subs=subs)

    def _cell(self, name: str, n: int) -> int:
        """Sub-patches per side of a 10 m cell, the grouping order of the released projectors."""
        cell = max(1, round(REFERENCE_CELL_M / self.sub_patch_m(name)))
        return cell if n % cell == 0 else n

    # ----- encoder stages -----
    def encode(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor],
        date_mask: dict[str, Tensor] | None,
        layout: _Layout,
        keep_subs: Iterable[str] = (),
    ) -> AnySatEncoded:
        """Projectors and spatial encoder: one token per (modality, patch), plus context tokens."""
        date_mask = date_mask or {}
        keep_subs = set(keep_subs)
        enc = AnySatEncoded(layout=layout, patch_tokens={}, context_tokens=[])
        # Patch modalities with the same sub-patch grid share one spatial-encoder call (patches are
        # independent sequences): fewer, larger matrix products and half the small per-op costs.
        groups: dict[tuple[int, float, bool], list[tuple[str, Tensor]]] = {}
        g = layout.grid
        for name in self.modalities:  # config order: independent of the caller's dict order
            if name not in inputs:
                continue
            x, spec, proj = inputs[name], self.modalities[name], self.projectors[name]
            if spec.kind == "image":
                grid = proj(x)
            else:
                t_dates = dates[name] if spec.has_dates else torch.zeros(x.shape[:2], device=x.device)
                grid = proj(x, t_dates, date_mask.get(name))
            if self.config.projectors[name].context:
                n = grid.shape[1]
                seq = rearrange(grid, "b h w d -> b (h w) d")
                token, _ = self.spatial_encoder(seq, n, self.sub_patch_m(name), keep_subs=False)
                enc.context_tokens.append(token[:, None])
                continue
            n = layout.subs[name]
            cell = self._cell(name, n)
            seq = rearrange(grid, "b (g1 c1 r) (g2 c2 s) d -> (b g1 g2) (c1 c2 r s) d", g1=g, g2=g, r=cell, s=cell)
            groups.setdefault((n, self.sub_patch_m(name), name in keep_subs), []).append((name, seq))
        tokens: dict[str, Tensor] = {}
        for (n, sub_m, keep), members in groups.items():
            sizes = [seq.shape[0] for _, seq in members]
            seqs = [seq for _, seq in members]
            token, subs = self.spatial_encoder(seqs[0] if len(seqs) == 1 else torch.cat(seqs), n, sub_m, keep_subs=keep)
            for (name, _), part in zip(members, token.split(sizes)):
                tokens[name] = rearrange(part, "(b p) d -> b p d", p=g * g)
            if keep:
                for (name, _), part in zip(members, subs.split(sizes)):
                    enc.sub_tokens[name] = rearrange(part, "(b p) s d -> b p s d", p=g * g)
        enc.patch_tokens = {name: tokens[name] for name in self.modalities if name in tokens}
        return enc

    def patch_positions(self, layout: _Layout, device=None) -> Tensor:
        """Sin-cos code of the patch grid, positions scaled by P / 10 (as released): (G*G, D)."""
        xy = sub_patch_positions(layout.grid, layout.patch_m / REFERENCE_CELL_M, device)
        return sincos_2d_encoding(xy, self.embed_dim)

    def fuse(
        self,
        layout: _Layout,
        patch_tokens: dict[str, Tensor],
        context_tokens: list[Tensor],
        patch_index: Tensor | None = None,
    ) -> Tensor:
        """Combiner + cross block -> (B, 1 + Q, D): class token then one token per query patch.

        ``patch_tokens`` hold Q tokens per modality (B, Q, D); ``patch_index`` says which
        patches they are, (Q,) or per sample (B, Q) (JEPA context); default: all patches
        in row-major order. Queries are placed at the same patches.
        """
        some = next(iter(patch_tokens.values()))
        device, q = some.device, some.shape[1]
        xy = sub_patch_positions(layout.grid, 1.0, device)
        pos = self.patch_positions(layout, device)
        if patch_index is not None:
            xy, pos = xy[patch_index], pos[patch_index]
        tokens = list(context_tokens) + [tok + pos.to(tok.dtype) for tok in patch_tokens.values()]
        fused = self.combiner(torch.cat(tokens, dim=1))
        # Bucket ids between each query ([class] + patches) and each token ([class, context] + M x patches).
        n_prefix, m = 1 + len(context_tokens), len(patch_tokens)
        patch_b = euclidean_buckets(xy, xy, unit=1.0)
        buckets = torch.full(
            (*patch_b.shape[:-2], 1 + q, n_prefix + q * m), PREFIX_BUCKET, dtype=torch.long, device=device
        )
        buckets[..., 1:, n_prefix:] = patch_b.repeat(*([1] * (patch_b.dim() - 1)), m)
        query_pos = torch.cat([pos.new_zeros(*pos.shape[:-2], 1, pos.shape[-1]), pos], dim=-2)
        return self.cross_block(fused, query_pos, buckets)

    # ----- public API -----
    def forward_features(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor] | None = None,
        date_mask: dict[str, Tensor] | None = None,
        patch_size_m: float | None = None,
        dense_modality: str | None = None,
        with_dense: bool = True,
    ) -> Features:
        """Tile, patch and (optionally) dense features of a modality batch (see module docstring).

        ``dense_modality``: whose sub-patches make the dense grid; default: the finest given.
        """
        self.check_inputs(inputs, dates, date_mask)
        dates = dates or {}
        layout = self.layout(inputs, patch_size_m or self.config.patch_size_m)
        if with_dense:
            dense_modality = dense_modality or self.finest_modality(inputs, layout)
            if dense_modality not in layout.subs:
                raise EngineError(
                    f"Dense output needs a non-context modality among the inputs ({', '.join(layout.subs)}), "
                    f"got {dense_modality!r}."
                )
        enc = self.encode(inputs, dates, date_mask, layout, keep_subs=[dense_modality] if with_dense else [])
        out = self.fuse(layout, enc.patch_tokens, enc.context_tokens)
        g = layout.grid
        patch = rearrange(out[:, 1:], "b (h w) d -> b h w d", h=g, w=g)
        dense = None
        if with_dense:
            n = layout.subs[dense_modality]
            cell = self._cell(dense_modality, n)
            subs = rearrange(
                enc.sub_tokens[dense_modality],
                "b (g1 g2) (c1 c2 r s) d -> b (g1 c1 r) (g2 c2 s) d",
                g1=g,
                g2=g,
                c1=n // cell,
                c2=n // cell,
                r=cell,
                s=cell,
            )
            repeated = patch.repeat_interleave(n, dim=1).repeat_interleave(n, dim=2)
            dense = torch.cat([repeated, subs], dim=-1)
        local = torch.stack(list(enc.patch_tokens.values())).mean(dim=0)
        return Features(
            tile=out[:, 0], patch=patch, dense=dense, local=rearrange(local, "b (h w) d -> b h w d", h=g, w=g)
        )

    def features(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor],
        date_mask: dict[str, Tensor] | None = None,
        patch_size_m: float | None = None,
        dense: str | None = None,
    ) -> Features:
        return self.forward_features(
            inputs, dates, date_mask, patch_size_m, dense_modality=dense, with_dense=dense is not None
        )

    def finest_modality(self, inputs: dict[str, Tensor], layout: _Layout) -> str:
        return max(layout.subs, key=lambda name: (layout.subs[name], name))

    def forward(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor] | None = None,
        date_mask: dict[str, Tensor] | None = None,
        patch_size_m: float | None = None,
        output: str = "patch",
        dense_modality: str | None = None,
    ) -> Tensor:
        """The reference API's outputs: 'tile', 'patch', 'dense' or 'all' (see module docstring)."""
        if output not in OUTPUTS:
            raise EngineError(f"Unknown AnySat output {output!r}: choose one of {', '.join(OUTPUTS)}.")
        feats = self.forward_features(
            inputs, dates, date_mask, patch_size_m, dense_modality, with_dense=output == "dense"
        )
        if output == "tile":
            return feats.tile
        if output == "dense":
            return feats.dense
        if output == "all":
            return torch.cat([feats.tile[:, None], rearrange(feats.patch, "b h w d -> b (h w) d")], dim=1)
        return feats.patch

    # ----- missing bands -----
    def band_fill(self, name: str) -> tuple[float, str]:
        """Time series: the projector's learned padding value (as the paper does); images,
        which have no learned value in the release: 0, the band mean after normalization."""
        proj = self.projectors[self._spec(name).name]
        if isinstance(proj, SeriesProjector):
            value = float(proj.pad_value.detach())
            return value, f"the learned padding value {value:.4g}"
        return 0.0, "0 (the band mean; images have no learned padding value)"


def _preset(size: str):
    return lambda: anysat_config(size)


register_architecture("anysat", AnySatConfig, AnySat)
for _size, _params in (("tiny", "8.1 M"), ("small", "43.8 M"), ("base", "125.9 M")):
    register_preset(
        f"anysat-{_size}",
        _preset(_size),
        {
            "paper": "AnySat, Astruc et al., CVPR 2025",
            "summary": f"AnySat {_size} ({_params} parameters in the reference) with the eleven GeoPlex sensors; "
            "patch size chosen per call, outputs tile / patch / dense.",
            "pretrained": "base: import the released weights with `python -m engine import-anysat`",
        },
    )
