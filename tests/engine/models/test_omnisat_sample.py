"""OmniSat (TreeSatAI-TS preset) on the real TreeSatAI sample tile: aerial + S2 + S1."""

from datetime import date

import h5py
import numpy as np
import pytest
import rasterio
import torch

from engine.models.registry import build_model

torch.set_num_threads(2)
NAME = "Abies_alba_1_1005_WEFL_NLF"


def _day_of_year(products, field: int) -> torch.Tensor:
    """Day of year from product names such as S2A_MSIL2A_20200102T102421_... (field = date position)."""
    days = []
    for raw in products:
        stamp = raw.decode().split("_")[field][:8]
        days.append(date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8])).timetuple().tm_yday)
    return torch.tensor(days, dtype=torch.float32)


@pytest.fixture(scope="module")
def sample(shared_data):
    folder = shared_data / "treesatai_sample"
    with rasterio.open(folder / f"{NAME}.tif") as src:
        aerial = torch.from_numpy(src.read().astype(np.float32))
    # 304 px = 60.8 m: keep the 300 x 300 px (60 m) that cut into 6 x 6 patches of 10 m, as the reference does.
    aerial = aerial[:, :300, :300]
    with h5py.File(folder / f"{NAME}.h5", "r") as f:
        s2 = torch.from_numpy(f["sen-2-data"][()])
        s1 = torch.from_numpy(f["sen-1-asc-data"][()])
        s2_dates = _day_of_year(f["sen-2-products"][()], 2)
        s1_dates = _day_of_year(f["sen-1-asc-products"][()], 4)
    return {"aerial": aerial, "s2": s2, "s1_asc": s1}, {"s2": s2_dates, "s1_asc": s1_dates}


def _batch(model, sample):
    raw, days = sample
    inputs = {k: model.normalize(k, v)[None] for k, v in raw.items()}
    return inputs, {k: v[None] for k, v in days.items()}


def test_sample_shapes_and_dates(sample):
    raw, days = sample
    assert raw["aerial"].shape == (4, 300, 300)
    assert raw["s2"].shape == (146, 10, 6, 6) and raw["s1_asc"].shape == (60, 2, 6, 6)
    assert days["s2"][0] == 2 and days["s2"][-1] == 365  # 2020-01-02 .. 2020-12-30 (leap year)


def test_forward_gives_finite_embeddings_for_all_36_patches(sample):
    torch.manual_seed(0)
    model = build_model("omnisat-treesatai").eval()
    inputs, dates = _batch(model, sample)
    with torch.no_grad():
        features = model.forward_features(inputs, dates, patch_size_m=10.0)
    assert features.patch.shape == (1, 6, 6, 256) and features.tile.shape == (1, 256)
    assert torch.isfinite(features.patch).all() and torch.isfinite(features.tile).all()
    # patches see different ground: their embeddings differ
    flat = features.patch.reshape(36, 256)
    assert torch.cdist(flat, flat).fill_diagonal_(1.0).min() > 0


@pytest.mark.slow
def test_one_pretraining_step_lowers_the_loss_on_a_fixed_batch(sample):
    torch.manual_seed(0)
    model = build_model("omnisat-treesatai").train()
    inputs, dates = _batch(model, sample)
    # two tiles (the sample and its mirror) so BatchNorm and the contrastive loss see a batch
    inputs = {k: torch.cat([v, v.flip(-1)]) for k, v in inputs.items()}
    dates = {k: v.expand(2, -1) for k, v in dates.items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def loss_on_fixed_batch():
        torch.manual_seed(1)  # same dropout and token masks before and after the step
        return model.pretraining_loss(inputs, dates, generator=torch.Generator().manual_seed(2))["loss"]

    before = loss_on_fixed_batch()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = loss_on_fixed_batch()
    assert torch.isfinite(before) and after < before
