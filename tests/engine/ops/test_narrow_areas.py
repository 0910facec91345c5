"""Models that take square inputs only (AnySat, UniverSat) map an area narrower than their window: the
windows shrink to the area's narrow side (square, overlapping along the long side) instead of being cut
into oblongs the model refuses."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from engine.models.checkpoint import save_checkpoint
from engine.models.universat import UniverSat, universat_config
from engine.runtime.registry import run_operation
from tests.engine.rasters import write_geotiff

S2_BANDS = 10


@pytest.fixture
def tall_stack(tmp_path):
    """Two Sentinel-2 dates of 40 x 80 px at 10 m: 400 m wide, 800 m tall."""
    rng = np.random.default_rng(0)
    files = []
    for day in ("20200601", "20200701"):
        data = rng.integers(200, 3000, (S2_BANDS, 80, 40)).astype(np.float32)
        files.append(str(write_geotiff(tmp_path / f"S2_{day}.tif", data)))
    return files


@pytest.mark.parametrize("model", ["universat", "anysat-tiny"])
def test_an_area_narrower_than_a_window(model, tall_stack, tmp_path):
    if model == "universat":
        torch.manual_seed(0)
        model = str(save_checkpoint(tmp_path / "u.safetensors", UniverSat(universat_config("tiny", ("s2",)))))
    job = {
        "model": model,
        "modalities": {"s2": {"files": tall_stack}},
        "outputs": {"embeddings": str(tmp_path / "emb.tif")},
        "patch_size": 40,
        "tile_size": 640,  # 16 patches: wider than the area's 10
        "threads": 1,
        "precision": "fp32",
    }
    result = run_operation("embed", {"job": job})
    with rasterio.open(tmp_path / "emb.tif") as ds:
        assert (ds.width, ds.height) == (10, 20) and ds.res == (40.0, 40.0)
        assert np.isfinite(ds.read()).all()
    assert result["windows"] >= 2  # square 10 x 10 windows down the 20 patches
