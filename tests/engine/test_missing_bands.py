"""A band the rasters lack (job "bands" with null) is filled with AnySat's learned padding
value, reported, and refused by models that have none."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from engine.errors import EngineError
from engine.models.anysat import ProjectorSpec
from engine.models.checkpoint import save_checkpoint
from engine.models.modalities import sensor
from engine.runtime.progress import Reporter
from engine.runtime.registry import run_operation
from tests.engine import anysat_helpers, omnisat_helpers
from tests.engine.ops.test_probe_ops import ORIGIN
from tests.engine.rasters import write_geotiff

torch.set_num_threads(1)
PAD = 0.7  # the padding value "learned" by the test model
MISSING = 7  # index of the band the rasters lack (B8A in the Sentinel-2 spec)


class Logs(Reporter):
    def __init__(self):
        self.lines: list[str] = []

    def log(self, message: str, level: str = "info") -> None:
        self.lines.append(message)


def scenes(folder, with_band: float | None) -> list[str]:
    """Three 10 x 10 px dates; all 10 bands with the missing one at ``with_band`` (raw
    value), or the 9 others only when ``with_band`` is None."""
    rng = np.random.default_rng(0)
    files = []
    for t in range(3):
        data = rng.uniform(500, 3000, size=(10, 10, 10)).astype(np.float32)
        if with_band is None:
            data = np.delete(data, MISSING, axis=0)
        else:
            data[MISSING] = with_band
        files.append(str(write_geotiff(folder / f"S2_2020060{t + 1}.tif", data, origin=ORIGIN)))
    return files


@pytest.fixture
def anysat(tmp_path):
    model = anysat_helpers.small_model(names=("s2",), embed_dim=64, projectors={"s2": ProjectorSpec(dropout=0.0)})
    with torch.no_grad():
        model.projectors["s2"].pad_value.fill_(PAD)
    path = tmp_path / "anysat.safetensors"
    save_checkpoint(path, model)
    return str(path)


def embed(model, files, out, bands=None, reporter=None):
    entry = {"files": files} | ({"bands": bands} if bands is not None else {})
    job = {
        "model": model,
        "modalities": {"s2": entry},
        "patch_size": 20,
        "threads": 1,
        "precision": "fp32",
        "outputs": {"embeddings": str(out), "embeddings_level": "local"},
    }
    run_operation("embed", {"job": job}, reporter)
    with rasterio.open(out) as ds:
        return ds.read()


def test_a_missing_band_reads_as_the_learned_padding_value(tmp_path, anysat):
    spec = sensor("s2")
    (tmp_path / "nine").mkdir()
    (tmp_path / "ten").mkdir()
    bands = list(range(1, 10))
    bands.insert(MISSING, None)
    logs = Logs()
    filled = embed(anysat, scenes(tmp_path / "nine", None), tmp_path / "filled.tif", bands, logs)
    # the same scene with the band present at the raw value that normalizes to the padding value
    raw = PAD * spec.std[MISSING] + spec.mean[MISSING]
    full = embed(anysat, scenes(tmp_path / "ten", raw), tmp_path / "full.tif")
    np.testing.assert_allclose(filled, full, atol=1e-4)
    assert any(
        f"1 of 10 bands missing ({spec.bands[MISSING]}), filled with the learned padding value 0.7" in line
        for line in logs.lines
    )
    # another raw value in that band gives other embeddings: the check above can fail
    other = embed(anysat, scenes(tmp_path / "ten", raw + 5 * spec.std[MISSING]), tmp_path / "other.tif")
    assert np.abs(other - full).max() > 10 * np.abs(filled - full).max() + 1e-3


def test_models_without_a_padding_value_need_every_band(tmp_path):
    path = tmp_path / "omnisat.safetensors"
    save_checkpoint(path, omnisat_helpers.tiny_model(modalities=(sensor("s2"),)).eval())
    bands = list(range(1, 10)) + [None]
    with pytest.raises(EngineError, match="needs every band of 's2'.*only AnySat models fill a missing band"):
        embed(str(path), scenes(tmp_path, None), tmp_path / "out.tif", bands)
    assert not (tmp_path / "out.tif").exists()


def test_bands_need_one_number_per_model_band_and_at_least_one(tmp_path, anysat):
    files = scenes(tmp_path, None)
    with pytest.raises(EngineError, match="lists no band number"):
        embed(anysat, files, tmp_path / "out.tif", [None] * 10)
    with pytest.raises(EngineError, match="lists 9 band"):
        embed(anysat, files, tmp_path / "out.tif", list(range(1, 10)))
