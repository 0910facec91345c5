"""Fault suite: inputs without data (NaN-only, nodata-only, all cloud), mostly empty inputs, and a
raster header that declares an absurd size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from engine.errors import EngineError
from engine.io.job import load_job
from engine.mapping.run import run_map
from engine.mapping.tiling import WindowGrid
from engine.models.checkpoint import load_checkpoint, save_checkpoint
from engine.runtime.registry import run_operation
from tests.engine.raster_fixtures import tiny_model
from tests.engine.rasters import write_geotiff
from tests.engine.test_inference import Recorder

torch.set_num_threads(1)
SIZE = 40  # pixels of 10 m: 400 m, several windows of 10 patches


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    model, head = tiny_model(modalities=("s2", "s1"))
    save_checkpoint(tmp_path / "tiny.safetensors", model, head=head)
    return tmp_path / "tiny.safetensors"


def series(folder: Path, name: str, values: np.ndarray, dates=("20200601", "20200701"), nodata=None) -> list[str]:
    folder.mkdir(exist_ok=True)
    return [str(write_geotiff(folder / f"{name}_{d}.tif", values, nodata=nodata)) for d in dates]


def reflectance(bands: int = 4) -> np.ndarray:
    return np.random.default_rng(0).uniform(0.05, 0.3, (bands, SIZE, SIZE)).astype(np.float32)


def job(tmp_path: Path, checkpoint: Path, modalities: dict) -> dict:
    return {
        "model": str(checkpoint),
        "modalities": modalities,
        "tile_size": 100,
        "overlap": 0,
        "outputs": {"classes": str(tmp_path / "classes.tif"), "embeddings": str(tmp_path / "emb.tif")},
        "device": "cpu",
        "precision": "fp32",
    }


EMPTY = {
    "NaN only": lambda: (np.full((4, SIZE, SIZE), np.nan, np.float32), None, None),
    "nodata only": lambda: (np.zeros((4, SIZE, SIZE), np.float32), 0.0, None),
    "all cloud": lambda: (reflectance(), None, np.ones((1, SIZE, SIZE), np.uint8)),
}


@pytest.mark.parametrize("case", list(EMPTY))
def test_a_run_that_saw_no_data_is_an_error_and_writes_nothing(case: str, tmp_path: Path, checkpoint: Path):
    values, nodata, cloud = EMPTY[case]()
    entry = {"files": series(tmp_path / "s2", "S2", values, nodata=nodata)}
    if cloud is not None:
        entry["mask"] = {"files": series(tmp_path / "clm", "CLM", cloud), "type": "binary"}
    with pytest.raises(
        EngineError,
        match="No window had data: every pixel of 's2' .*S2_20200601.tif.* is nodata, "
        "NaN or masked.*check the files' nodata value, the cloud masks",
    ):
        run_operation("classify", {"job": job(tmp_path, checkpoint, {"s2": entry})})
    assert not (tmp_path / "classes.tif").exists() and not (tmp_path / "emb.tif").exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_mostly_empty_inputs_warn_with_the_share(tmp_path: Path, checkpoint: Path):
    values = reflectance()
    values[:, :, 10:] = np.nan  # three quarters of the columns: 12 of the 16 windows hold nothing
    loaded = load_job(job(tmp_path, checkpoint, {"s2": {"files": series(tmp_path / "s2", "S2", values)}}))
    ckpt = load_checkpoint(checkpoint)
    reporter = Recorder()
    result = run_map(loaded, reporter, ckpt.model, ckpt.head, ckpt.metadata)
    assert result["windows"] == 16 and result["windows_without_data"] == 12
    assert (
        "warning",
        next(m for level, m in reporter.logs if "75% of the windows (12 of 16) had no data" in m),
    ) in reporter.logs
    with rasterio.open(tmp_path / "classes.tif") as ds:
        assert (ds.read(1)[:, :10] != ds.nodata).all() and (ds.read(1)[:, 10:] == ds.nodata).all()


def test_a_modality_without_data_anywhere_is_named(tmp_path: Path, checkpoint: Path):
    modalities = {
        "s2": {"files": series(tmp_path / "s2", "S2", reflectance())},
        "s1": {"files": series(tmp_path / "s1", "S1", np.full((2, SIZE, SIZE), np.nan, np.float32))},
    }
    ckpt = load_checkpoint(checkpoint)
    reporter = Recorder()
    run_map(load_job(job(tmp_path, checkpoint, modalities)), reporter, ckpt.model, ckpt.head, ckpt.metadata)
    assert any(
        level == "warning" and "Modality 's1'" in m and "no valid pixel in any window" in m
        for level, m in reporter.logs
    )
    assert (tmp_path / "classes.tif").exists()


@pytest.fixture
def huge_header(tmp_path: Path) -> Path:
    """A GeoTIFF whose header declares 400 000 x 400 000 px of 10 m (no block written: a few KB)."""
    path = tmp_path / "huge.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=400_000,
        height=400_000,
        count=4,
        dtype="float32",
        crs="EPSG:32633",
        transform=rasterio.transform.from_origin(0, 4_000_000, 10, 10),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        sparse_ok=True,
        BIGTIFF="YES",
        nodata=np.nan,
    ):
        pass
    assert path.stat().st_size < 50 << 20
    return path


def test_a_huge_header_is_refused_unless_an_extent_is_given(huge_header: Path, tmp_path: Path, checkpoint: Path):
    files = [str(huge_header), str(huge_header)]
    spec = job(tmp_path, checkpoint, {"s2": {"files": files, "dates": ["2020-06-01", "2020-07-01"]}})
    with pytest.raises(EngineError, match='The area is 4,000 x 4,000 km, more than .* give an "extent"'):
        run_operation("embed", {"job": dict(spec, outputs={"embeddings": str(tmp_path / "emb.tif")})})
    spec["extent"] = {"bounds": [0, 3_999_600, 400, 4_000_000]}  # with an extent it maps that extent
    with pytest.raises(EngineError, match="No window had data"):  # the sparse file holds only nodata
        run_operation("embed", {"job": dict(spec, outputs={"embeddings": str(tmp_path / "emb.tif")})})


def test_windows_are_generated_lazily():
    grid = WindowGrid(400_000, 400_000, 6, 1)  # 6.4e9 windows: a list of them would not fit in memory
    assert len(grid) == 80_000**2
    first = next(iter(grid))
    assert (first.col_off, first.row_off, first.width) == (0, 0, 6)
