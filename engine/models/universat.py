"""UniverSat (the OmniSat / AnySat authors' 2026 successor): any sensor by wavelength, output grid chosen per call.

Pipeline for one square tile cut into an L x L latent grid of P-metre patches:
1. the Universal Patch Encoder (engine.models.universal_patch) turns every sensor into one
   token per patch and one per sub-patch, reading bands by wavelength or SAR / elevation code;
2. fusion (the released ``Bi_ACA_in``): each sensor's tokens are resampled (bilinear, corners
   aligned) to the latent grid, and one pooling attention over the sensors gives one token per
   patch; four register tokens are prepended;
3. ``depth`` self-attention blocks (``SAx12`` in the Base) with gated queries, RMS-normed
   queries and keys, 2-D rotary positions over [0, 1]^2 and layer scales;
4. ``Bilinear_out``: the latent tokens resampled to the output grid, G x G cells chosen at
   inference (G = L for patch features, L * P / r for an r-metre map);
5. ``CA_Sub``: every output cell (and register) attends to all sub-patch tokens of all
   sensors (the skip connection that brings back the detail), then an MLP.

Outputs (channels last): ``patch`` (B, L, L, D): the output at the latent grid; ``dense``
(B, L n, L n, 2 D): [the cell's patch vector, the cell's own output vector] for n cells per patch
side (the engine's dense layout, as AnySat's); ``tile``: the mean of the patch vectors (the
release has no class token); ``local``: the sensors' patch tokens before fusion, averaged.
Queries of the last block are independent, so the patch and the dense cells come from one pass.

Not reproduced (training only): the per-(dataset, sensor) SSL projectors (their checkpoint keys
are dropped at load), masking, modality dropout, the predictor. MODIS as one context token
(the release's special path for sensors coarser than the tile) is refused with a message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from engine.errors import EngineError
from engine.io.grid import whole_multiple
from engine.models.attention import attend
from engine.models.base import EOModel, Features
from engine.models.kernels import Linear
from engine.models.registry import register_architecture, register_preset
from engine.models.universal_patch import (
    Mlp,
    PoolingBlock,
    RMSNorm,
    UniversalPatchEncoder,
    grid_coords,
    register_coords,
    rotate_2d,
    sub_grid_coords,
)
from engine.models.universat_sensors import SENSORS, UniverSatSensor

QUERY_CHUNK = 2048  # output cells per sub-patch cross-attention call: bounds (cells x sub-patches) scores
FUSION_HEADS = 8  # the release's fusion block has 8 heads at every size


@dataclass
class UniverSatConfig:
    architecture: ClassVar[str] = "universat"

    embed_dim: int = 768
    heads: int = 12
    depth: int = 12  # self-attention blocks of the trunk
    upe_div: int = 8  # UPE width = embed_dim / upe_div
    upe_expand: tuple[int, ...] = (2, 2, 2, 2)  # UPE widening per axis S1, C, T, S
    n_registers: int = 4
    mlp_ratio: float = 4.0
    gating: bool = True
    patch_size_m: float = 40.0  # the release's default patch
    sensors: tuple[UniverSatSensor, ...] = ()

    @property
    def modalities(self) -> tuple:
        """The sensors' engine specs (what generic code lists and normalises)."""
        return tuple(s.spec for s in self.sensors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "embed_dim": self.embed_dim,
            "heads": self.heads,
            "depth": self.depth,
            "upe_div": self.upe_div,
            "upe_expand": list(self.upe_expand),
            "n_registers": self.n_registers,
            "mlp_ratio": self.mlp_ratio,
            "gating": self.gating,
            "patch_size_m": self.patch_size_m,
            "sensors": [s.to_dict() for s in self.sensors],
            # the generic catalog reads modality names from here
            "modalities": [s.spec.to_dict() for s in self.sensors],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UniverSatConfig:
        values = {k: v for k, v in data.items() if k not in ("architecture", "modalities")}
        values["upe_expand"] = tuple(values.get("upe_expand", (2, 2, 2, 2)))
        values["sensors"] = tuple(UniverSatSensor.from_dict(s) for s in values.get("sensors", ()))
        return cls(**values)


SIZES = {
    "base": dict(embed_dim=768, heads=12, depth=12, upe_div=8, upe_expand=(2, 2, 2, 2)),
    "tiny": dict(embed_dim=192, heads=8, depth=6, upe_div=4, upe_expand=(1, 2, 2, 2)),
}


def universat_config(size: str, sensors: Iterable[str | UniverSatSensor] = tuple(SENSORS)) -> UniverSatConfig:
    if size not in SIZES:
        raise EngineError(f"Unknown UniverSat size {size!r}: choose one of {', '.join(SIZES)}.")
    specs = tuple(s if isinstance(s, UniverSatSensor) else SENSORS[s] for s in sensors)
    return UniverSatConfig(**SIZES[size], sensors=specs)


# ----- trunk blocks -----
class TrunkAttention(nn.Module):
    """Self-attention: gated queries, RMS-normed queries and keys, learned 2-D rotary frequencies."""

    def __init__(self, dim: int, heads: int, gating: bool):
        super().__init__()
        self.heads, self.head_dim, self.gating = heads, dim // heads, gating
        self.wq = Linear(dim, dim * (2 if gating else 1), bias=False)
        self.wk = Linear(dim, dim, bias=False)
        self.wv = Linear(dim, dim, bias=False)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)
        self.rope_freqs = nn.Parameter(torch.zeros(2, self.head_dim))
        self.proj = Linear(dim, dim)

    def forward(self, x: Tensor, coords: Tensor) -> Tensor:
        b, n, c = x.shape
        h, d = self.heads, self.head_dim
        q = self.wq(x).view(b, n, h, -1)
        if self.gating:
            q, gate = q.split([d, d], dim=-1)
        angle = (coords @ self.rope_freqs)[:, None]
        q = rotate_2d(self.q_norm(q).transpose(1, 2), angle)
        k = rotate_2d(self.k_norm(self.wk(x).view(b, n, h, d)).transpose(1, 2), angle)
        v = self.wv(x).view(b, n, h, d).transpose(1, 2)
        out = attend(q, k, v).transpose(1, 2)
        if self.gating:
            out = out * torch.sigmoid(gate)
        return self.proj(out.reshape(b, n, c))


class TrunkBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, gating: bool):
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.attn = TrunkAttention(dim, heads, gating)
        self.norm2 = RMSNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.gamma_1 = nn.Parameter(torch.full((dim,), 1e-6))
        self.gamma_2 = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: Tensor, coords: Tensor) -> Tensor:
        x = x + self.gamma_1 * self.attn(self.norm1(x), coords)
        return x + self.gamma_2 * self.mlp(self.norm2(x))


class SubPatchCross(nn.Module):
    """Output cells attend to every sub-patch token (the release's ``CA_Sub``); queries are independent.

    Its query / key norms are LayerNorms (the release builds this attention with the default norm)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, gating: bool):
        super().__init__()
        self.heads, self.head_dim, self.gating = heads, dim // heads, gating
        self.norm_q = RMSNorm(dim)
        self.norm_kv = RMSNorm(dim)
        self.wq = Linear(dim, dim * (2 if gating else 1), bias=False)
        self.wk = Linear(dim, dim, bias=False)
        self.wv = Linear(dim, dim, bias=False)
        self.q_norm = nn.LayerNorm(self.head_dim)
        self.k_norm = nn.LayerNorm(self.head_dim)
        self.rope_freqs = nn.Parameter(torch.zeros(2, self.head_dim))
        self.proj = Linear(dim, dim)
        self.norm2 = RMSNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.query_chunk = QUERY_CHUNK

    def angles(self, coords: Tensor) -> Tensor:
        """Rotary angles of positions shared by the batch (N, 2) or per sample (B, N, 2), with a head axis."""
        angle = coords @ self.rope_freqs
        return angle[:, None] if angle.dim() == 3 else angle[None, None]

    def forward(self, queries: Tensor, coords_q: Tensor, kv: Tensor, coords_kv: Tensor) -> Tensor:
        """queries (B, Q, D) at coords_q (Q, 2) or (B, Q, 2); kv (B, N, D) at coords_kv (N, 2) or (B, N, 2)."""
        b, n, c = kv.shape
        h, d = self.heads, self.head_dim
        kv_n = self.norm_kv(kv)
        k = rotate_2d(self.k_norm(self.wk(kv_n).view(b, n, h, d)).transpose(1, 2), self.angles(coords_kv))
        v = self.wv(kv_n).view(b, n, h, d).transpose(1, 2)
        out = []
        for i in range(0, queries.shape[1], self.query_chunk):
            part = queries[:, i : i + self.query_chunk]
            m = part.shape[1]
            q = self.wq(self.norm_q(part)).view(b, m, h, -1)
            if self.gating:
                q, gate = q.split([d, d], dim=-1)
            q = rotate_2d(self.q_norm(q).transpose(1, 2), self.angles(coords_q[..., i : i + m, :]))
            y = attend(q, k, v).transpose(1, 2)
            if self.gating:
                y = y * torch.sigmoid(gate)
            x = part + self.proj(y.reshape(b, m, c))
            out.append(x + self.mlp(self.norm2(x)))
        return torch.cat(out, dim=1)


def resample(tokens: Tensor, side: int, out_side: int) -> Tensor:
    """(B, side^2, D) grid tokens -> (B, out_side^2, D), bilinear with corners aligned."""
    if side == out_side:
        return tokens
    grid = rearrange(tokens, "b (h w) d -> b d h w", h=side, w=side)
    grid = F.interpolate(grid, size=(out_side, out_side), mode="bilinear", align_corners=True)
    return rearrange(grid, "b d h w -> b (h w) d")


@dataclass
class Encoded:
    """The UPE's output for one forward pass, before fusion."""

    latent: int  # latent grid side
    tokens: dict[str, Tensor]  # per sensor (B, size^2, D)
    sizes: dict[str, int]  # per sensor: patch grid side
    subs: Tensor  # (B, N, D): every sub-patch token of every sensor
    sub_coords: Tensor  # (N, 2)


class UniverSat(EOModel):
    has_dense_features = True
    square_windows = True
    # metres per output cell of the dense level; None: the finest input's pixel size (set by the job's plan)
    output_resolution_m: float | None = None

    def __init__(self, config: UniverSatConfig):
        super().__init__()
        if not config.sensors:
            raise EngineError("A UniverSat config needs at least one sensor.")
        self.config = config
        self.embed_dim = d = config.embed_dim
        self.sensors: dict[str, UniverSatSensor] = {s.name: s for s in config.sensors}
        self.modalities = {name: s.spec for name, s in self.sensors.items()}
        self.patch_encoder = UniversalPatchEncoder(
            d // config.upe_div, d, config.heads, tuple(config.upe_expand), config.mlp_ratio, config.gating
        )
        self.fusion = PoolingBlock(d, FUSION_HEADS, 1, config.mlp_ratio, False, config.gating, None)
        self.registers = nn.Parameter(torch.zeros(1, config.n_registers, d))
        nn.init.normal_(self.registers, std=0.02)
        self.blocks = nn.ModuleList(
            [TrunkBlock(d, config.heads, config.mlp_ratio, config.gating) for _ in range(config.depth)]
        )
        self.sub_cross = SubPatchCross(d, config.heads, config.mlp_ratio, config.gating)

    def parameter_groups(self) -> dict[str, nn.Module]:
        return {
            "patch_encoder": self.patch_encoder,
            "fusion": self.fusion,
            "blocks": self.blocks,
            "sub_cross": self.sub_cross,
        }

    # ----- sensors -----
    def add_sensor(self, sensor: UniverSatSensor) -> None:
        """Accept a sensor described by its wavelengths (no weights to add: bands are read by wavelength)."""
        self.sensors[sensor.name] = sensor
        self.modalities[sensor.name] = sensor.spec
        self.config.sensors = tuple(self.sensors.values())

    # ----- geometry -----
    def patch_px(self, name: str, patch_size_m: float) -> int:
        """Pixels per patch side (the release's rule: the whole pixels in a patch, at least one)."""
        return max(int(patch_size_m / 10 * 10 / self.sensors[name].spec.gsd_m), 1)

    def latent_side(self, inputs: dict[str, Tensor], patch_size_m: float) -> int:
        """Patches per tile side; every sensor must cover the same square and hold whole sub-patches."""
        if not patch_size_m or patch_size_m <= 0:
            raise EngineError(f"Patch size must be a positive number of metres, got {patch_size_m}.")
        extents = {}
        for name, x in inputs.items():
            h, w = x.shape[-2:]
            if h != w:
                raise EngineError(
                    f"UniverSat needs square tiles: {name!r} is {h} x {w} pixels. Cut the area into square "
                    "windows (tiled mapping does this) instead of passing a rectangle."
                )
            sensor = self.sensors[name]
            if sensor.spec.gsd_m * 4 > patch_size_m * h and sensor.spec.gsd_m > 100:
                raise EngineError(
                    f"{name!r} ({sensor.spec.gsd_m:g} m) is coarser than the tile: UniverSat's "
                    "single-token path for such sensors (MODIS) is not supported; leave it out."
                )
            px = self.patch_px(name, patch_size_m)
            if h % px:
                raise EngineError(
                    f"{name!r} is {h} pixels wide, not a whole number of {px}-pixel patches "
                    f"({patch_size_m:g} m at {sensor.spec.gsd_m:g} m): crop or pad it to a multiple of {px} pixels."
                )
            if px % sensor.sub_px:
                raise EngineError(
                    f"A {patch_size_m:g} m patch is {px} pixels of {name!r}, not a whole number of its "
                    f"{sensor.sub_px}-pixel sub-patches: choose a patch size that is a multiple of "
                    f"{sensor.sub_px * sensor.spec.gsd_m:g} m."
                )
            extents[name] = h * sensor.spec.gsd_m
        first, extent = next(iter(extents.items()))
        for name, other in extents.items():
            if abs(other - extent) > 1e-6 * extent:
                raise EngineError(
                    f"Sensors must cover the same ground: {first!r} spans {extent:g} m, {name!r} {other:g} m. "
                    "Align them on one footprint first."
                )
        side = whole_multiple(extent, patch_size_m)
        if side is None:
            raise EngineError(
                f"The tile spans {extent:g} m, not a whole number of {patch_size_m:g} m patches: choose a patch "
                f"size dividing {extent:g} m."
            )
        return side

    def cells_per_patch(self, patch_size_m: float, modalities: Iterable[str]) -> int:
        """Output cells per patch side at ``output_resolution_m`` (default: the finest input's pixel)."""
        names = list(modalities)
        res = self.output_resolution_m or min(self.sensors[n].spec.gsd_m for n in names)
        n = whole_multiple(patch_size_m, res)
        if n is None:
            raise EngineError(
                f"The output resolution {res:g} m does not divide the {patch_size_m:g} m patch: choose a "
                f"resolution such as {patch_size_m / max(1, round(patch_size_m / res)):g} m."
            )
        return n

    def dense_layout(self, modalities: list[str], patch_size_m: float) -> tuple[str, int]:
        """UniverSat's dense grid does not follow a sensor: the first one names it, n cells per patch side."""
        return modalities[0], self.cells_per_patch(patch_size_m, modalities)

    # ----- stages -----
    def encode(
        self, inputs: dict[str, Tensor], dates: dict[str, Tensor], patch_size_m: float, latent: int | None = None
    ) -> Encoded:
        latent = latent or self.latent_side(inputs, patch_size_m)
        tokens, sizes, subs, sub_coords = {}, {}, [], []
        for name, sensor in self.sensors.items():  # table order: independent of the caller's dict order
            if name not in inputs:
                continue
            x = inputs[name]
            spec = sensor.spec
            series = x.dim() == 5
            x5 = x if series else x[:, None]
            px = self.patch_px(name, patch_size_m)
            enc = self.patch_encoder(
                x5, dates.get(name) if series else None, sensor.channels, px, sensor.sub_px, spec.gsd_m, patch_size_m
            )
            size = x.shape[-1] // px
            n = px // sensor.sub_px
            tokens[name], sizes[name] = enc.tokens, size
            subs.append(enc.subs.flatten(1, 2))
            sub_coords.append(sub_grid_coords(size, n, x.device))
        return Encoded(latent, tokens, sizes, torch.cat(subs, dim=1), torch.cat(sub_coords, dim=0))

    def fuse(self, enc: Encoded) -> Tensor:
        """Sensors -> one token per latent patch, registers prepended, self-attention: (B, R + L^2, D)."""
        grids = [resample(t, enc.sizes[name], enc.latent) for name, t in enc.tokens.items()]
        stacked = torch.stack(grids, dim=2)
        b, n, m, d = stacked.shape
        x = self.fusion(stacked.reshape(b * n, m, d)).view(b, n, d)
        x = torch.cat([self.registers.expand(b, -1, -1).to(x.dtype), x], dim=1)
        coords = grid_coords(enc.latent, self.config.n_registers, x.device)[None]
        for block in self.blocks:
            x = block(x, coords)
        return x

    def read_out(self, enc: Encoded, latent_tokens: Tensor, sides: tuple[int, ...]) -> list[Tensor]:
        """The output tokens at each requested grid side, registers first: [(B, R + G^2, D), ...]."""
        r = self.config.n_registers
        registers, grid = latent_tokens[:, :r], latent_tokens[:, r:]
        device = latent_tokens.device
        queries = [registers] + [resample(grid, enc.latent, side) for side in sides]
        coords = [register_coords(r, device)] + [grid_coords(side, 0, device) for side in sides]
        out = self.sub_cross(torch.cat(queries, dim=1), torch.cat(coords), enc.subs, enc.sub_coords)
        parts, start = [], r
        for side in sides:
            parts.append(torch.cat([out[:, :r], out[:, start : start + side * side]], dim=1))
            start += side * side
        return parts

    # ----- public API -----
    def tokens(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor] | None = None,
        patch_size_m: float | None = None,
        output_side: int | None = None,
        latent: int | None = None,
    ) -> Tensor:
        """The release's forward: (B, registers + G^2, D) at an output grid of G x G cells (default: the latent)."""
        self.check_inputs(inputs, dates, None)
        patch = patch_size_m or self.config.patch_size_m
        enc = self.encode(inputs, dates or {}, patch, latent)
        return self.read_out(enc, self.fuse(enc), (output_side or enc.latent,))[0]

    def forward_features(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor] | None = None,
        date_mask: dict[str, Tensor] | None = None,
        patch_size_m: float | None = None,
        cells: int | None = None,
    ) -> Features:
        """Patch, tile and local features; dense ones with ``cells`` output cells per patch side."""
        self.check_inputs(inputs, dates, date_mask)
        if date_mask and not all(bool(m.all()) for m in date_mask.values()):
            return self._valid_dates_only(inputs, dates or {}, date_mask, patch_size_m, cells)
        patch = patch_size_m or self.config.patch_size_m
        enc = self.encode(inputs, dates or {}, patch)
        latent_tokens = self.fuse(enc)
        side = enc.latent
        sides = (side,) if not cells or cells == 1 else (side, side * cells)
        outs = self.read_out(enc, latent_tokens, sides)
        r = self.config.n_registers
        patch_grid = rearrange(outs[0][:, r:], "b (h w) d -> b h w d", h=side, w=side)
        dense = None
        if cells:
            fine = (
                patch_grid
                if len(outs) == 1
                else rearrange(outs[1][:, r:], "b (h w) d -> b h w d", h=side * cells, w=side * cells)
            )
            repeated = patch_grid.repeat_interleave(cells, dim=1).repeat_interleave(cells, dim=2)
            dense = torch.cat([repeated, fine], dim=-1)
        local = torch.stack([resample(t, enc.sizes[n], side) for n, t in enc.tokens.items()]).mean(dim=0)
        return Features(
            tile=patch_grid.mean(dim=(1, 2)),
            patch=patch_grid,
            dense=dense,
            local=rearrange(local, "b (h w) d -> b h w d", h=side, w=side),
        )

    def features(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor],
        date_mask: dict[str, Tensor] | None = None,
        patch_size_m: float | None = None,
        dense: str | None = None,
    ) -> Features:
        patch = patch_size_m or self.config.patch_size_m
        cells = self.cells_per_patch(patch, inputs) if dense is not None else None
        return self.forward_features(inputs, dates, date_mask, patch, cells=cells)

    def forward(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor] | None = None,
        date_mask: dict[str, Tensor] | None = None,
        patch_size_m: float | None = None,
        output_side: int | None = None,
    ) -> Tensor:
        """(B, G, G, D) output tokens at a G x G output grid (default: the patch grid)."""
        out = self.tokens(inputs, dates, patch_size_m, output_side)
        g = round((out.shape[1] - self.config.n_registers) ** 0.5)
        return rearrange(out[:, self.config.n_registers :], "b (h w) d -> b h w d", h=g, w=g)

    def _valid_dates_only(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor],
        date_mask: dict[str, Tensor],
        patch_size_m: float | None,
        cells: int | None,
    ) -> Features:
        """UniverSat has no date mask (it attends to every date given): each sample gets its valid dates only."""
        parts = []
        for i in range(next(iter(inputs.values())).shape[0]):
            keep = {n: m[i] for n, m in date_mask.items()}
            x = {n: t[i : i + 1, keep[n]] if n in keep else t[i : i + 1] for n, t in inputs.items()}
            d = {n: t[i : i + 1, keep[n]] if n in keep else t[i : i + 1] for n, t in dates.items()}
            parts.append(self.forward_features(x, d, None, patch_size_m, cells))
        return Features(
            *(
                None if getattr(parts[0], f) is None else torch.cat([getattr(p, f) for p in parts])
                for f in ("tile", "patch", "dense", "local")
            )
        )

    def band_fill(self, name: str) -> tuple[float, str]:
        raise EngineError(
            f"UniverSat reads bands by wavelength: describe {name!r} with only the bands you have (their "
            "wavelengths) instead of filling the missing ones."
        )


def _preset(size: str):
    return lambda: universat_config(size)


register_architecture("universat", UniverSatConfig, UniverSat)
for _size, _params in (("tiny", "8.9 M"), ("base", "201 M with the training projectors")):
    register_preset(
        f"universat-{_size}",
        _preset(_size),
        {
            "paper": "UniverSat, Astruc et al., 2026 (AnySat v2)",
            "summary": f"UniverSat {_size} ({_params}): any sensor described by its bands' wavelengths, "
            "patch size and output resolution chosen per run; outputs tile / patch / dense.",
            "pretrained": "base: `python -m engine fetch-model universat-base` downloads the released weights",
        },
    )
