"""Small OmniSat models and batches for fast tests (imported by the OmniSat/model tests)."""

from __future__ import annotations

import torch

from engine.models.modalities import sensor
from engine.models.omnisat import OmniSat, OmniSatConfig


def tiny_config(**overrides) -> OmniSatConfig:
    values = dict(
        modalities=(sensor("aerial"), sensor("s2"), sensor("s1_asc")),
        patch_size_m=10.0,
        grid=(2, 2),
        embed_dim=32,
        depth=2,
        heads=4,
        ltae_heads=4,
        ltae_key_dim=4,
        ltae_in_mlp=(8, 32),
        ltae_out_mlp=(32, 32),
    )
    values.update(overrides)
    return OmniSatConfig(**values)


def tiny_model(seed: int = 0, **overrides) -> OmniSat:
    torch.manual_seed(seed)
    return OmniSat(tiny_config(**overrides))


def tiny_batch(batch: int = 2, grid: tuple[int, int] = (2, 2), t_s2: int = 5, t_s1: int = 4, seed: int = 0):
    """Normalized-looking inputs for a 10 m patch grid: aerial 50 px per patch, S2/S1 1 px per patch."""
    g = torch.Generator().manual_seed(seed)
    gh, gw = grid
    inputs = {
        "aerial": torch.randn(batch, 4, 50 * gh, 50 * gw, generator=g),
        "s2": torch.randn(batch, t_s2, 10, gh, gw, generator=g),
        "s1_asc": torch.randn(batch, t_s1, 2, gh, gw, generator=g),
    }
    dates = {
        "s2": torch.sort(torch.randint(1, 366, (batch, t_s2), generator=g).float()).values,
        "s1_asc": torch.sort(torch.randint(1, 366, (batch, t_s1), generator=g).float()).values,
    }
    return inputs, dates
