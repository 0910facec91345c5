"""Small AnySat models and batches for fast tests."""

from __future__ import annotations

import torch

from engine.models.anysat import GEOPLEX_PROJECTORS, AnySat, AnySatConfig
from engine.models.modalities import sensor


def small_config(names=("aerial", "s2", "s1_asc", "modis"), **overrides) -> AnySatConfig:
    values = dict(
        embed_dim=32,
        depth=1,
        heads=4,
        ltae_heads=4,
        ltae_key_dim=4,
        modalities=tuple(sensor(n) for n in names),
        projectors={n: GEOPLEX_PROJECTORS[n] for n in names},
    )
    values.update(overrides)
    return AnySatConfig(**values)


def small_model(seed: int = 0, **overrides) -> AnySat:
    torch.manual_seed(seed)
    return AnySat(small_config(**overrides)).eval()


def batch(extent_m: int = 20, names=("aerial", "s2", "s1_asc", "modis"), b: int = 2, t: int = 5, seed: int = 0):
    """Inputs covering extent_m x extent_m metres, with dates for the series."""
    g = torch.Generator().manual_seed(seed)
    inputs, dates = {}, {}
    for name in names:
        spec = sensor(name)
        px = max(1, round(extent_m / spec.gsd_m))
        if spec.kind == "image":
            inputs[name] = torch.randn(b, spec.n_bands, px, px, generator=g)
        else:
            inputs[name] = torch.randn(b, t, spec.n_bands, px, px, generator=g)
            dates[name] = torch.randint(1, 366, (b, t), generator=g).float()
    return inputs, dates
