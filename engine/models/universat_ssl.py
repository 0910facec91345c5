"""UniverSat's self-supervised objective, as the released training code defines it (its ``SSLUniverSat``,
``Predictor``, ``RandomMasker`` and the ``MAEMLP-Contra`` loss config), for ``learn-area``.

One step on a batch of square tiles (an L x L latent patch grid):
- masks: per sample, 75% of the latent patches are hidden (shared by the sensors); per sensor, a share of
  the bands is kept in two circular blocks (keep 1 + Binomial(C - 1, 1 - p), p = 1 / (1 + sqrt(5 / C)))
  and of the dates (one date with chance 0.1, otherwise 1 + Binomial(T - 1, 0.5)); each sensor is left
  out of the fusion with chance 0.3, one of them always kept;
- the encoder sees only the visible patches: Universal Patch Encoder, fusion, registers, the trunk with
  the visible patches' positions, and the sub-patch cross-attention (keys: the visible sub-patch
  tokens, detached as in the release) at the visible positions;
- a predictor (8 blocks of the trunk's kind) takes those tokens and one mask token per (sensor, hidden
  patch), carrying a learned sensor embedding and, for a time series, the Fourier code of the day it must
  predict (per sample four dates are drawn, per patch one of them);
- targets: each hidden patch's raw pixels (normalised input, every band, the drawn date), resampled to at
  most 32 px a side, through a frozen random orthogonal projection to the model width; a per-sensor
  linear layer maps the prediction into that space; InfoNCE (temperature 0.1) between predictions and
  instance-normalised targets, over the batch's patches, summed over sensors ("LM3");
- plus the cross-sensor contrast (MIL-NCE, temperature 0.2) on the visible patch tokens the encoder gives
  each sensor: the same patch seen by another sensor is the positive.

Chosen here where the release differs or is silent (said in the README): band and date subsets are drawn
once per batch, not per sample (our patch encoder reads one band list per call); every sensor must lie
on the latent patch grid (the release's masks assume it too); the frozen targets' projections are drawn
from a seed per (sensor, bands, side), so a resumed run rebuilds the same ones without storing them; a
patch wider than 32 px is resampled with its bands kept apart (the release's reshape interleaves them).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from engine.errors import EngineError
from engine.models.universal_patch import FourierEmbedding, RMSNorm, grid_coords, register_coords
from engine.models.universat import TrunkBlock, UniverSat


@dataclass(frozen=True)
class UniverSatSSLConfig:
    hidden_share: float = 0.75  # latent patches hidden from the encoder (the ones predicted)
    monodate_chance: float = 0.1  # chance that a time series shows the encoder one date only
    date_drop: float = 0.5  # otherwise, chance of each other date being left out
    band_alpha: float = 5.0  # band keep rate 1 - 1 / (1 + sqrt(alpha / C))
    band_blocks: int = 2  # the kept bands form this many circular blocks
    sensor_drop: float = 0.3  # chance of a sensor being left out of the fusion (one always stays)
    predictor_depth: int = 8
    dates_to_predict: int = 4  # per sample, the dates a time series' targets are drawn from
    target_side: int = 32  # a target patch wider than this many pixels is resampled to it
    prediction_temperature: float = 0.1
    contrast_temperature: float = 0.2
    contrast_weight: float = 1.0


# ----- random draws (torch's generator: the trainer seeds and checkpoints it) -----
def split_patches(n: int, hidden_share: float, batch: int, device=None) -> tuple[Tensor, Tensor]:
    """Per sample, sorted indices of the visible and of the hidden patches among ``n``: (B, K), (B, n - K)."""
    keep = math.ceil(n * (1 - hidden_share))
    order = torch.rand(batch, n, device=device).argsort(dim=1)
    return order[:, :keep].sort(dim=1).values, order[:, keep:].sort(dim=1).values


def partition(total: int, parts: int) -> Tensor:
    """``total`` split into ``parts`` non-negative counts, each unit placed at random."""
    return torch.bincount(torch.randint(0, parts, (total,)), minlength=parts)


def draw_bands(c: int, alpha: float, blocks: int) -> Tensor:
    """Sorted indices of the bands the encoder sees: circular blocks of kept bands between random gaps."""
    p = 1 / (1 + math.sqrt(alpha / c))
    keep = 1 + int((torch.rand(c - 1) < 1 - p).sum())
    n = max(1, min(blocks, c))
    lengths, gaps = partition(keep, n), partition(c - keep, n)
    starts = int(torch.randint(0, c, ())) + gaps.cumsum(0) + lengths.cumsum(0) - lengths
    kept = torch.cat([torch.arange(int(s), int(s) + int(n_)) for s, n_ in zip(starts, lengths)]) % c
    return kept.sort().values


def draw_dates(valid: Tensor, monodate: float, drop: float) -> Tensor:
    """Sorted indices of the dates the encoder sees, among the ``valid`` ones (a bool per date)."""
    candidates = valid.nonzero().flatten().cpu()
    t = candidates.numel()
    keep = 1 if t == 1 or float(torch.rand(())) < monodate else 1 + int((torch.rand(t - 1) < 1 - drop).sum())
    return candidates[torch.randperm(t)[:keep]].sort().values


def take(x: Tensor, index: Tensor) -> Tensor:
    """x (B, N, ...) at index (B, K) along dim 1 -> (B, K, ...)."""
    return torch.take_along_dim(x, index.view(*index.shape, *([1] * (x.dim() - 2))), dim=1)


def patchify(x: Tensor, px: int) -> Tensor:
    """(B, T, C, H, W) -> (B, patches row-major, T, C, px, px)."""
    return rearrange(x, "b t c (h p) (w q) -> b (h w) t c p q", p=px, q=px)


def rope_2d_frequencies(head_dim: int, high: float = 7.0, low: float = 7e-4) -> Tensor:
    """A fresh 2-D rotary block's frequencies (2, head_dim): geometric from ``high`` to ``low``, x on the first
    half of the channels, y on the second (the release's initialisation; the trunk's are loaded weights)."""
    one = high * (high / low) ** torch.linspace(0, -1, head_dim // 4)
    one = torch.cat([one, one])
    freqs = torch.zeros(2, head_dim)
    freqs[0, : head_dim // 2] = one
    freqs[1, -(head_dim // 2) :] = one
    return freqs * 2 * math.pi


# ----- losses -----
def prediction_nce(pred: Tensor, target: Tensor, temperature: float) -> Tensor:
    """InfoNCE between predictions and targets (B, N, D): each prediction's positive is its own patch's target,
    the batch's other patches are the negatives; targets are standardised per sample first."""
    target = (target - target.mean(dim=(1, 2), keepdim=True)) / (target.std(dim=(1, 2), keepdim=True) + 1e-6)
    p = F.normalize(pred.flatten(0, 1), dim=-1)
    t = F.normalize(target.flatten(0, 1), dim=-1)
    scores = p @ t.T / temperature
    return F.cross_entropy(scores, torch.arange(len(p), device=p.device))


def cross_sensor_nce(tokens: list[Tensor], temperature: float) -> Tensor:
    """MIL-NCE over sensors' tokens of the same patches [(B, K, D), ...]: positives are the patch's tokens of
    the other sensors; the tokens of the same sample and sensor are left out of the negatives."""
    if len(tokens) < 2:
        return tokens[0].new_zeros(())
    k = tokens[0].shape[1]
    per_sensor = tokens[0].shape[0] * k
    f = F.normalize(torch.cat(tokens, dim=0).flatten(0, 1), dim=-1)
    logits = f @ f.T
    group = torch.arange(len(f), device=f.device) // k
    logits = logits.masked_fill(group[:, None] == group[None, :], float("-inf")) / temperature
    loss = torch.logsumexp(logits, dim=1).sum()
    row = torch.arange(len(f), device=f.device)
    sensor, position = row // per_sensor, row % per_sensor
    others = torch.stack([position + j * per_sensor for j in range(len(tokens))], dim=1)
    others = others[torch.arange(len(tokens), device=f.device)[None, :] != sensor[:, None]].view(len(f), -1)
    loss = loss - torch.logsumexp(logits.gather(1, others), dim=1).sum()
    return loss / len(f)


# ----- predictor -----
class Predictor(nn.Module):
    """Visible tokens + one mask token per (sensor, hidden patch) -> one prediction per mask token."""

    def __init__(self, model: UniverSat, depth: int):
        super().__init__()
        c = model.config
        d = c.embed_dim
        self.registers = c.n_registers
        self.embed = nn.Linear(d, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.sensor_embed = nn.ParameterDict({name: nn.Parameter(torch.randn(d)) for name in model.sensors})
        self.date_embed = FourierEmbedding(d)
        self.blocks = nn.ModuleList([TrunkBlock(d, c.heads, c.mlp_ratio, c.gating) for _ in range(depth)])
        self.norm = RMSNorm(d)
        self.proj = nn.Linear(d, d)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.mask_token, std=0.02)
        for block in self.blocks:
            block.attn.rope_freqs.data.copy_(rope_2d_frequencies(block.attn.head_dim))

    def forward(
        self, tokens: Tensor, coords: Tensor, hidden_coords: Tensor, queries: list[tuple[str, Tensor | None]]
    ) -> Tensor:
        """tokens (B, R + K, D) at coords (B, R + K, 2); hidden_coords (B, H, 2); queries: per sensor its name and
        the day of year to predict per hidden patch (B, H) or None -> (B, sensors, H, D)."""
        b, n, d = tokens.shape
        h = hidden_coords.shape[1]
        parts = [self.embed(tokens)]
        for name, days in queries:
            if name not in self.sensor_embed:
                raise EngineError(
                    f"The predictor has no embedding for sensor {name!r}: it was added after the objective was "
                    "built; start the run again."
                )
            q = self.mask_token + self.sensor_embed[name]
            if days is not None:
                q = q + self.date_embed(days / 365)
            parts.append(q.expand(b, h, d))
        x = torch.cat(parts, dim=1)
        all_coords = torch.cat([coords] + [hidden_coords] * len(queries), dim=1)
        for block in self.blocks:
            x = block(x, all_coords)
        return self.proj(self.norm(x[:, n:])).view(b, len(queries), h, d)


@dataclass
class Visible:
    """What the encoder gives for the visible patches."""

    tokens: Tensor  # (B, R + K, D): registers, then the visible patches after the sub-patch cross-attention
    coords: Tensor  # (B, R + K, 2)
    sensor_tokens: dict[str, Tensor]  # per sensor, its patch tokens at the visible patches (B, K, D)


class UniverSatSSL(nn.Module):
    """The objective's modules: the model (trained), the predictor and the per-sensor prediction heads."""

    def __init__(self, model: UniverSat, config: UniverSatSSLConfig = UniverSatSSLConfig()):
        super().__init__()
        self.model, self.config = model, config
        d = model.config.embed_dim
        self.predictor = Predictor(model, config.predictor_depth)
        self.heads = nn.ModuleDict({name: nn.Linear(d, d) for name in model.sensors})
        self._projections: dict[tuple[str, int, int], Tensor] = {}

    def projection(self, name: str, width: int, device, dtype) -> Tensor:
        """The frozen random orthogonal target projection (D, width) of a sensor's flattened patch."""
        key = (name, width, self.model.config.embed_dim)
        if key not in self._projections:
            weight = torch.empty(self.model.config.embed_dim, width)
            seed = zlib.crc32(f"{name}/{width}".encode())
            nn.init.orthogonal_(weight, generator=torch.Generator().manual_seed(seed))
            self._projections[key] = weight
        return self._projections[key].to(device=device, dtype=dtype)

    def check_grid(self, inputs: dict[str, Tensor], patch_size_m: float) -> int:
        latent = self.model.latent_side(inputs, patch_size_m)
        for name, x in inputs.items():
            side = x.shape[-1] // self.model.patch_px(name, patch_size_m)
            if side != latent:
                raise EngineError(
                    f"UniverSat's pretraining hides patches of one grid shared by the sensors, but {name!r} gives "
                    f"{side} x {side} patches of {patch_size_m:g} m where the tile has {latent} x {latent}: choose a "
                    f"patch size that is a whole number of {name!r}'s {self.model.sensors[name].spec.gsd_m:g} m "
                    "pixels, or leave that sensor out."
                )
        if latent * latent < 2:
            raise EngineError(
                f"A tile of one {patch_size_m:g} m patch leaves nothing to predict: use larger windows "
                "(tile_size) or a smaller patch size."
            )
        return latent

    def encode_visible(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor],
        date_mask: dict[str, Tensor],
        patch_size_m: float,
        latent: int,
        visible: Tensor,
    ) -> Visible:
        model, cfg = self.model, self.config
        b, k = visible.shape
        d = model.config.embed_dim
        device = visible.device
        sensor_tokens, subs, sub_coords = {}, [], []
        for name, sensor in model.sensors.items():
            if name not in inputs:
                continue
            x = inputs[name]
            series = x.dim() == 5
            x5 = x if series else x[:, None]
            bands = draw_bands(x5.shape[2], cfg.band_alpha, cfg.band_blocks).to(device)
            x5 = x5[:, :, bands]
            days = None
            if series:
                valid = date_mask[name].all(dim=0) if name in date_mask else torch.ones(x5.shape[1], dtype=torch.bool)
                if not bool(valid.any()):
                    raise EngineError(f"No date of {name!r} is valid in every tile of the batch: use batches of 1.")
                kept = draw_dates(valid, cfg.monodate_chance, cfg.date_drop).to(device)
                x5, days = x5[:, kept], dates[name][:, kept].repeat_interleave(k, dim=0)
            px = model.patch_px(name, patch_size_m)
            n = px // sensor.sub_px
            patches = rearrange(take(patchify(x5, px), visible), "b k t c p q -> (b k) t c p q")
            channels = tuple(sensor.channels[int(i)] for i in bands)
            enc = model.patch_encoder(patches, days, channels, px, sensor.sub_px, sensor.spec.gsd_m, patch_size_m)
            sensor_tokens[name] = enc.tokens.view(b, k, d)
            subs.append(enc.subs.view(b, k * n * n, d))
            where = rearrange(grid_coords(latent * n, 0, device), "(p r q s) c -> (p q) (r s) c", p=latent, r=n, s=n)
            sub_coords.append(take(where[None].expand(b, -1, -1, -1), visible).flatten(1, 2))
        names = list(sensor_tokens)
        dropped = torch.rand(len(names)) < cfg.sensor_drop
        dropped[int(torch.randint(0, len(names), ()))] = False
        fused_names = [n for n, out in zip(names, dropped) if not out]
        stacked = torch.stack([sensor_tokens[n] for n in fused_names], dim=2)
        x = model.fusion(stacked.reshape(b * k, len(fused_names), d)).view(b, k, d)
        r = model.config.n_registers
        x = torch.cat([model.registers.expand(b, -1, -1).to(x.dtype), x], dim=1)
        coords = torch.cat(
            [
                register_coords(r, device)[None].expand(b, -1, -1),
                take(grid_coords(latent, 0, device)[None].expand(b, -1, -1), visible),
            ],
            dim=1,
        )
        for block in model.blocks:
            x = block(x, coords)
        keep_subs = [i for i, n in enumerate(names) if n in fused_names]
        kv = torch.cat([subs[i] for i in keep_subs], dim=1).detach()
        kv_coords = torch.cat([sub_coords[i] for i in keep_subs], dim=1)
        out = model.sub_cross(x, coords, kv, kv_coords)
        return Visible(out, coords, sensor_tokens)

    def targets(self, name: str, x: Tensor, patch_size_m: float, hidden: Tensor, day_index: Tensor | None) -> Tensor:
        """Each hidden patch's pixels (at the drawn date of a series), projected: (B, H, D)."""
        px = self.model.patch_px(name, patch_size_m)
        p = take(patchify(x if x.dim() == 5 else x[:, None], px), hidden)  # (B, H, T, C, px, px)
        if day_index is not None:
            p = torch.take_along_dim(p, day_index.view(*day_index.shape, 1, 1, 1, 1), dim=2)
        p = p[:, :, 0]
        b, h, c = p.shape[:3]
        side = min(px, self.config.target_side)
        if side != px:
            p = F.interpolate(p.flatten(0, 1), size=(side, side), mode="bilinear", align_corners=False)
            p = p.view(b, h, c, side, side)
        flat = p.flatten(2)
        return flat @ self.projection(name, flat.shape[-1], flat.device, flat.dtype).T

    def draw_days(self, valid: Tensor, hidden: int) -> Tensor:
        """Per sample ``dates_to_predict`` valid dates, per hidden patch one of them: (B, hidden) date indices."""
        b, t = valid.shape
        scores = torch.rand(b, t, device=valid.device).masked_fill(~valid, 2.0)
        chosen = scores.argsort(dim=1)[:, : max(1, min(self.config.dates_to_predict, int(valid.sum(1).min())))]
        return chosen.gather(1, torch.randint(0, chosen.shape[1], (b, hidden), device=valid.device))

    def forward(
        self,
        inputs: dict[str, Tensor],
        dates: dict[str, Tensor] | None = None,
        date_mask: dict[str, Tensor] | None = None,
        patch_size_m: float | None = None,
    ) -> dict[str, Tensor]:
        """The loss ("loss" = prediction + contrast_weight * contrast) and its terms for one batch."""
        model, cfg = self.model, self.config
        dates, date_mask = dates or {}, date_mask or {}
        model.check_inputs(inputs, dates, date_mask)
        patch = patch_size_m or model.config.patch_size_m
        latent = self.check_grid(inputs, patch)
        first = next(iter(inputs.values()))
        b, device = first.shape[0], first.device
        visible, hidden = split_patches(latent * latent, cfg.hidden_share, b, device)
        seen = self.encode_visible(inputs, dates, date_mask, patch, latent, visible)
        hidden_coords = take(grid_coords(latent, 0, device)[None].expand(b, -1, -1), hidden)
        names = sorted(n for n in inputs if n in model.sensors)
        day_index = {}
        for name in names:
            if inputs[name].dim() == 5:
                valid = date_mask.get(name)
                if valid is None:
                    valid = torch.ones(inputs[name].shape[:2], dtype=torch.bool, device=device)
                day_index[name] = self.draw_days(valid, hidden.shape[1])
        queries = [
            (n, dates[n].gather(1, day_index[n]).float() if n in day_index and n in dates else None) for n in names
        ]
        predicted = self.predictor(seen.tokens, seen.coords, hidden_coords, queries)
        terms, prediction = {}, predicted.new_zeros(())
        for i, name in enumerate(names):
            target = self.targets(name, inputs[name], patch, hidden, day_index.get(name))
            term = prediction_nce(self.heads[name](predicted[:, i]), target, cfg.prediction_temperature)
            terms[f"prediction.{name}"] = term
            prediction = prediction + term
        contrast = cross_sensor_nce([seen.sensor_tokens[n] for n in names], cfg.contrast_temperature)
        terms.update(prediction=prediction, contrast=contrast, loss=prediction + cfg.contrast_weight * contrast)
        return terms
