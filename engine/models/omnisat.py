"""OmniSat (Astruc et al., ECCV 2024): multimodal fusion of aligned EO patches.

Each modality is cut on one shared grid of square patches; a per-modality encoder
turns every patch into a token (CNN for images, L-TAE for time series), the
combiner fuses all tokens into one embedding per patch plus a class token.
Pretraining: 75% of tokens masked, cross-modal patch contrast on the encoder
tokens + reconstruction of every modality from the fused patch embeddings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import torch
from einops import rearrange
from torch import Tensor, nn

from engine.errors import EngineError
from engine.io.grid import whole_multiple
from engine.models.base import EOModel, Features
from engine.models.combiner import Combiner
from engine.models.image_encoder import ImagePatchDecoder, ImagePatchEncoder, PoolTrace, pooled_size
from engine.models.losses import image_reconstruction_loss, patch_contrastive_loss, series_reconstruction_loss
from engine.models.ltae import LTAE, LTAEConfig
from engine.models.masking import random_token_mask, top_attention_dates
from engine.models.modalities import ModalitySpec, sensor
from engine.models.position import patch_centres, sinusoid_encoding
from engine.models.registry import register_architecture, register_preset


@dataclass(frozen=True)
class OmniSatConfig:
    architecture: ClassVar[str] = "omnisat"

    modalities: tuple[ModalitySpec, ...]
    patch_size_m: float = 10.0
    grid: tuple[int, int] = (6, 6)  # patch grid the learned position tables were made for
    embed_dim: int = 256
    depth: int = 6
    heads: int = 16
    mlp_ratio: float = 4.0
    dropout: float = 0.2
    attn_dropout: float = 0.2
    drop_path: float = 0.2
    image_groups: int = 4
    ltae_heads: int = 16
    ltae_key_dim: int = 8
    ltae_in_mlp: tuple[int, ...] = (32, 128, 256)
    ltae_out_mlp: tuple[int, ...] = (256, 512, 256)
    ltae_input_norm: tuple[str, ...] = ("s2",)  # the reference normalizes the S2 L-TAE input only
    ltae_dropout: float = 0.2
    date_period: float = 367.0
    mask_ratio: float = 0.75
    temperature: float = 0.1
    top_dates: float = 0.25

    def __post_init__(self) -> None:
        if not self.modalities:
            raise EngineError("An OmniSat config needs at least one modality.")
        names = [m.name for m in self.modalities]
        if len(set(names)) != len(names):
            raise EngineError(f"Modality names must be unique, got {names}.")
        for spec in self.modalities:
            px = self.patch_px(spec)
            if spec.kind == "image" and pooled_size(px) != 1:
                raise EngineError(
                    f"Modality {spec.name!r}: {px} px patches do not pool down to one vector; "
                    "the image encoder expects patches of 32 to 63 px."
                )
        if self.ltae_out_mlp[-1] != self.embed_dim:
            raise EngineError(f"The L-TAE output width {self.ltae_out_mlp[-1]} must equal embed_dim {self.embed_dim}.")

    def patch_px(self, spec: ModalitySpec) -> int:
        """Pixels per patch side for a modality: patch size / ground sampling distance."""
        ratio = whole_multiple(self.patch_size_m, spec.gsd_m)
        if ratio is None:
            raise EngineError(
                f"Patch size {self.patch_size_m} m is not a whole number of {spec.gsd_m} m pixels "
                f"of modality {spec.name!r}."
            )
        return ratio

    def ltae_config(self, spec: ModalitySpec) -> LTAEConfig:
        px = self.patch_px(spec)
        return LTAEConfig(
            in_channels=spec.n_bands * px * px,
            in_mlp=self.ltae_in_mlp,
            heads=self.ltae_heads,
            key_dim=self.ltae_key_dim,
            out_mlp=self.ltae_out_mlp,
            date_period=self.date_period,
            input_norm=spec.name in self.ltae_input_norm,
            dropout=self.ltae_dropout,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["modalities"] = [m.to_dict() for m in self.modalities]
        data["architecture"] = self.architecture
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OmniSatConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["modalities"] = tuple(ModalitySpec.from_dict(m) for m in data["modalities"])
        for key in ("grid", "ltae_in_mlp", "ltae_out_mlp", "ltae_input_norm"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass
class Encoded:
    """Per-modality encoder outputs for one batch."""

    tokens: dict[str, Tensor]  # (B, P, D)
    grid: tuple[int, int]
    traces: dict[str, PoolTrace] = field(default_factory=dict)  # images: pooling indices
    attention: dict[str, Tensor] = field(default_factory=dict)  # series: (B, P, T), mean over heads


# (sequence, date) rows per L-TAE call at inference: the (rows x 256) activations stay in
# cache (results do not depend on it; eval BatchNorm treats rows independently).
LTAE_ROW_CHUNK = 4096


class SeriesPatchEncoder(nn.Module):
    """(B, T, C, H, W) -> one L-TAE token per patch; a patch of k x k pixels is one
    sequence of C k^2 values per date."""

    def __init__(self, config: LTAEConfig, patch_px: int):
        super().__init__()
        self.patch_px = patch_px
        self.ltae = LTAE(config)

    def forward(self, x: Tensor, dates: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        b, k = x.shape[0], self.patch_px
        sequences = rearrange(x, "b t c (gh kh) (gw kw) -> (b gh gw) t (c kh kw)", kh=k, kw=k)
        per_tile = sequences.shape[0] // b
        dates = dates.repeat_interleave(per_tile, dim=0)
        mask = mask.repeat_interleave(per_tile, dim=0) if mask is not None else None
        if self.training or torch.is_grad_enabled():  # training BatchNorm needs the whole batch
            embedding, attention = self.ltae(sequences, dates, mask)
        else:
            step = max(1, LTAE_ROW_CHUNK // x.shape[1])
            parts = [
                self.ltae(sequences[i : i + step], dates[i : i + step], None if mask is None else mask[i : i + step])
                for i in range(0, sequences.shape[0], step)
            ]
            embedding, attention = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return (
            rearrange(embedding, "(b p) d -> b p d", b=b),
            rearrange(attention.mean(dim=1), "(b p) t -> b p t", b=b),
        )


class TemporalDecoder(nn.Module):
    """Fused patch embedding + date code -> the patch's values on that date."""

    def __init__(self, dim: int, out_channels: int, period: float):
        super().__init__()
        self.period = period
        self.linear = nn.Linear(dim, out_channels)

    def forward(self, patches: Tensor, dates: Tensor) -> Tensor:
        """patches (B, P, D), dates (B, K) -> (B, K, P, C)."""
        code = sinusoid_encoding(dates, patches.shape[-1], self.period).to(patches.dtype)
        return self.linear(patches[:, None] + code[:, :, None])


class OmniSat(EOModel):
    def __init__(self, config: OmniSatConfig):
        super().__init__()
        self.config = config
        self.modalities = {m.name: m for m in config.modalities}
        self.embed_dim = d = config.embed_dim
        self.encoders = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        for spec in config.modalities:
            px = config.patch_px(spec)
            if spec.kind == "image":
                self.encoders[spec.name] = ImagePatchEncoder(spec.n_bands, d, config.image_groups)
                self.decoders[spec.name] = ImagePatchDecoder(spec.n_bands, d)
            else:
                self.encoders[spec.name] = SeriesPatchEncoder(config.ltae_config(spec), px)
                self.decoders[spec.name] = TemporalDecoder(d, spec.n_bands * px * px, config.date_period)
        self.combiner = Combiner(
            d,
            config.depth,
            config.heads,
            config.grid,
            config.mlp_ratio,
            config.dropout,
            config.attn_dropout,
            config.drop_path,
        )
        self.mask_token = nn.Parameter(torch.zeros(1, d))

    def parameter_groups(self) -> dict[str, nn.Module | nn.Parameter]:
        groups: dict[str, nn.Module | nn.Parameter] = {f"encoder.{n}": m for n, m in self.encoders.items()}
        groups["combiner"] = self.combiner
        groups.update({f"decoder.{n}": m for n, m in self.decoders.items()})
        groups["mask_token"] = self.mask_token
        return groups

    # -- shapes ---------------------------------------------------------------------------
    def default_window(self) -> int:
        """The patch grid the learned position tables were made for."""
        return int(max(self.config.grid))

    def patch_grid(self, inputs: dict[str, Tensor]) -> tuple[int, int]:
        """The common patch grid of all inputs; each must cut into whole patches."""
        grids = {}
        for name, x in inputs.items():
            spec = self.modalities[name]
            px = self.config.patch_px(spec)
            h, w = x.shape[-2:]
            if h % px or w % px:
                raise EngineError(
                    f"Modality {name!r} is {h} x {w} px, not a whole number of {px} x {px} px patches "
                    f"({self.config.patch_size_m} m at {spec.gsd_m} m): crop or pad it to a multiple of {px} px."
                )
            grids[name] = (h // px, w // px)
        if len(set(grids.values())) > 1:
            detail = ", ".join(f"{n}: {g[0]} x {g[1]}" for n, g in grids.items())
            raise EngineError(
                f"The modalities do not cover the same ground: patch grids differ ({detail}). "
                "Align them on one footprint first."
            )
        return next(iter(grids.values()))

    # -- encoding -------------------------------------------------------------------------
    def encode(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor] | None = None,
        date_mask: dict[str, Tensor] | None = None,
        keep_traces: bool = False,
    ) -> Encoded:
        """Per-modality tokens; ``keep_traces`` keeps the image pooling indices for the decoders."""
        self.check_inputs(inputs, dates, date_mask)
        grid = self.patch_grid(inputs)
        dates, date_mask = dates or {}, date_mask or {}
        encoded = Encoded({}, grid)
        for name in self.modalities:  # config order: a stable token order whatever the dict order
            if name not in inputs:
                continue
            x, spec = inputs[name], self.modalities[name]
            if spec.kind == "image":
                px = self.config.patch_px(spec)
                patches = rearrange(x, "b c (gh p1) (gw p2) -> (b gh gw) c p1 p2", p1=px, p2=px)
                tokens, trace = self.encoders[name](patches, keep_traces)
                if trace is not None:
                    encoded.traces[name] = trace
                encoded.tokens[name] = rearrange(tokens, "(b p) d -> b p d", b=x.shape[0])
            else:
                day = dates[name] if spec.has_dates else torch.zeros(x.shape[:2], device=x.device)
                encoded.tokens[name], encoded.attention[name] = self.encoders[name](x, day, date_mask.get(name))
        return encoded

    def fuse(self, encoded: Encoded, masked: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Combiner over the encoded tokens; ``masked`` (B, M*P) bool replaces tokens by the mask token."""
        tokens = torch.stack(list(encoded.tokens.values()), dim=1)  # (B, M, P, D)
        tokens = tokens + self.combiner.patch_positions(encoded.grid).to(tokens.dtype)
        if masked is not None:
            masked = rearrange(masked, "b (m p) -> b m p 1", m=tokens.shape[1])
            tokens = torch.where(masked, self.mask_token.to(tokens.dtype), tokens)
        centres = patch_centres(*encoded.grid, self.config.patch_size_m, device=tokens.device)
        return self.combiner(tokens, centres, self.config.patch_size_m, encoded.grid)

    def forward_features(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor] | None = None,
        date_mask: dict[str, Tensor] | None = None,
        patch_size_m: float | None = None,
    ) -> Features:
        if patch_size_m is not None and abs(patch_size_m - self.config.patch_size_m) > 1e-6:
            raise EngineError(
                f"OmniSat works on the patch size it was trained with ({self.config.patch_size_m} m), "
                f"not {patch_size_m} m."
            )
        encoded = self.encode(inputs, dates, date_mask)
        tile, patches = self.fuse(encoded)
        gh, gw = encoded.grid
        local = torch.stack(list(encoded.tokens.values())).mean(dim=0)
        return Features(
            tile=tile,
            patch=rearrange(patches, "b (h w) d -> b h w d", h=gh, w=gw),
            local=rearrange(local, "b (h w) d -> b h w d", h=gh, w=gw),
        )

    def forward(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor] | None = None,
        date_mask: dict[str, Tensor] | None = None,
    ) -> Features:
        return self.forward_features(inputs, dates, date_mask)

    # -- pretraining ----------------------------------------------------------------------
    def pretraining_loss(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor] | None = None,
        date_mask: dict[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Masked-token pretraining losses: {'loss', 'contrastive', 'reconstruction.<modality>'}."""
        cfg = self.config
        encoded = self.encode(inputs, dates, date_mask, keep_traces=True)
        dates, date_mask = dates or {}, date_mask or {}
        names = list(encoded.tokens)
        b, p = next(iter(encoded.tokens.values())).shape[:2]
        masked = random_token_mask(b, len(names) * p, cfg.mask_ratio, generator=generator).to(inputs[names[0]].device)
        _, patches = self.fuse(encoded, masked)
        masked_by_modality = rearrange(masked, "b (m p) -> m b p", m=len(names))

        losses: dict[str, Tensor] = {}
        if len(names) > 1:
            losses["contrastive"] = patch_contrastive_loss(
                torch.stack([encoded.tokens[n] for n in names]), cfg.temperature
            )
        for i, name in enumerate(names):
            spec, x = self.modalities[name], inputs[name]
            px = cfg.patch_px(spec)
            if spec.kind == "image":
                # As in the reference, every patch of the image is reconstructed.
                target = rearrange(x, "b c (gh p1) (gw p2) -> (b gh gw) c p1 p2", p1=px, p2=px)
                prediction = self.decoders[name](rearrange(patches, "b p d -> (b p) d"), encoded.traces[name], px)
                losses[f"reconstruction.{name}"] = image_reconstruction_loss(prediction, target)
            else:
                index, keep = top_attention_dates(
                    encoded.attention[name].mean(dim=1), date_mask.get(name), cfg.top_dates
                )
                day = dates[name] if spec.has_dates else torch.zeros(x.shape[:2], device=x.device)
                values = rearrange(x, "b t c (gh kh) (gw kw) -> b t (gh gw) (c kh kw)", kh=px, kw=px)
                target = values.gather(1, index[:, :, None, None].expand(-1, -1, *values.shape[2:]))
                prediction = self.decoders[name](patches, day.gather(1, index))
                losses[f"reconstruction.{name}"] = series_reconstruction_loss(
                    prediction, target, keep, masked_by_modality[i]
                )
        losses["loss"] = sum(losses.values())
        return losses


register_architecture(OmniSatConfig.architecture, OmniSatConfig, OmniSat)


def treesatai_config() -> OmniSatConfig:
    """TreeSatAI-TS: aerial RGBNIR 0.2 m + S2 + S1 ascending, 60 m tiles of 6 x 6 patches of 10 m."""
    return OmniSatConfig(
        modalities=(sensor("aerial"), sensor("s2"), sensor("s1_asc")), patch_size_m=10.0, grid=(6, 6), date_period=367.0
    )


def pastis_config() -> OmniSatConfig:
    """PASTIS-HD: SPOT 1 m + S2 + S1 ascending (with ratio), 1280 m tiles of 32 x 32 patches of 40 m.

    Dates are days since the series' reference date, hence the longer period.
    """
    return OmniSatConfig(
        modalities=(sensor("spot"), sensor("s2"), sensor("s1_asc_ratio")),
        patch_size_m=40.0,
        grid=(32, 32),
        date_period=734.0,
    )


def flair_config() -> OmniSatConfig:
    """FLAIR: aerial RGB + NIR + elevation 0.2 m + S2, 100 m tiles of 10 x 10 patches of 10 m."""
    return OmniSatConfig(
        modalities=(sensor("aerial_elevation"), sensor("s2")), patch_size_m=10.0, grid=(10, 10), date_period=367.0
    )


TREESATAI_CLASSES = (
    "Abies",
    "Acer",
    "Alnus",
    "Betula",
    "Cleared",
    "Fagus",
    "Fraxinus",
    "Larix",
    "Picea",
    "Pinus",
    "Populus",
    "Prunus",
    "Pseudotsuga",
    "Quercus",
    "Tilia",
)

register_preset(
    "omnisat-treesatai",
    treesatai_config,
    {
        "paper": "OmniSat (ECCV 2024)",
        "dataset": "TreeSatAI-TS",
        "task": "multi-label tree species",
        "n_classes": len(TREESATAI_CLASSES),
        "multilabel": True,
        "classes": list(TREESATAI_CLASSES),
        "tile_m": 60,
    },
)
register_preset(
    "omnisat-pastis",
    pastis_config,
    {
        "paper": "OmniSat (ECCV 2024)",
        "dataset": "PASTIS-HD",
        "task": "multi-label crop types",
        "n_classes": 18,
        "multilabel": True,
        "tile_m": 1280,
    },
)
register_preset(
    "omnisat-flair",
    flair_config,
    {
        "paper": "OmniSat (ECCV 2024)",
        "dataset": "FLAIR",
        "task": "land cover classes",
        "n_classes": 13,
        "multilabel": True,
        "tile_m": 100,
    },
)
