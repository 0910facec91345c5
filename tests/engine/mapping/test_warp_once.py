"""Off-grid inputs are warped once per run (engine.io.align.WarpCache), with the per-window path's results."""

import dataclasses
import math

import numpy as np
import pytest
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject

from engine.io import align
from engine.io.job import load_job
from engine.mapping.plan import build_plan
from engine.mapping.run import execute
from engine.runtime.progress import Reporter
from tests.engine.raster_fixtures import eolearn_cloud_masks, eolearn_s2_files, file_digest, tiny_model

torch.set_num_threads(1)


class Recorder(Reporter):
    def __init__(self):
        self.logs = []

    def log(self, message, level="info"):
        self.logs.append((level, message))


def to_lon_lat(path, folder, resampling=Resampling.nearest):
    """A copy of ``path`` in EPSG:4326 at about its own resolution (as S1/S2 products often come)."""
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        profile = dict(
            src.profile,
            crs="EPSG:4326",
            transform=transform,
            width=width,
            height=height,
            nodata=src.nodata if src.nodata is not None else 0,
        )
        out = folder / path.name
        with rasterio.open(out, "w", **profile) as dst:
            for band in range(1, src.count + 1):
                reproject(rasterio.band(src, band), rasterio.band(dst, band), resampling=resampling)
    return out


@pytest.fixture
def lon_lat_s2(shared_data, tmp_path):
    files = eolearn_s2_files(shared_data, tmp_path / "utm")
    masks = eolearn_cloud_masks(shared_data, tmp_path / "clm")
    return ([to_lon_lat(f, tmp_path / "ll") for f in files], [to_lon_lat(m, tmp_path / "ll_clm") for m in masks])


def lon_lat_job(tmp_path, files, masks, name):
    (tmp_path / "out").mkdir(exist_ok=True)
    return load_job(
        {
            "model": "tiny.safetensors",
            "crs": "EPSG:32633",
            "tile_size": 230,
            "overlap": 60,
            "modalities": {
                "s2": {"files": [str(f) for f in files], "mask": {"files": [str(m) for m in masks], "type": "binary"}}
            },
            "outputs": {
                "probabilities": str(tmp_path / "out" / f"{name}.tif"),
                "embeddings": str(tmp_path / "out" / f"{name}_emb.tif"),
            },
            "device": "cpu",
            "precision": "fp32",
            "min_valid_fraction": 0.0,
        }
    )


def run(tmp_path, files, masks, name, warp_once, reporter=None):
    model, head = tiny_model(modalities=("s2",))
    plan = dataclasses.replace(build_plan(lon_lat_job(tmp_path, files, masks, name), model, head), warp_once=warp_once)
    result = execute(plan, model, head, reporter or Reporter())
    with rasterio.open(result["probabilities"]) as p, rasterio.open(result["embeddings"]) as e:
        return result, p.read(), e.read()


def test_a_lon_lat_input_warped_once_maps_as_window_by_window(lon_lat_s2, tmp_path):
    files, masks = lon_lat_s2
    before = file_digest(files + masks)
    recorder = Recorder()
    once, p_once, e_once = run(tmp_path, files, masks, "once", True, recorder)
    windowed, p_win, e_win = run(tmp_path, files, masks, "window", False)
    assert once["windows"] == windowed["windows"] > 4
    assert any("Warped 10 input file(s) onto the grid once" in m for _, m in recorder.logs)  # 5 dates + 5 masks
    announced = [m for _, m in recorder.logs if m.startswith("Warping ")]
    assert len(announced) == 10 and str(files[0]) in announced[0]
    # Same pixels valid, values equal within float rounding of the resampling (GDAL's chunks differ).
    np.testing.assert_array_equal(np.isnan(p_once), np.isnan(p_win))
    assert np.isfinite(p_once).mean() > 0.9
    np.testing.assert_allclose(p_once, p_win, rtol=1e-4, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(e_once, e_win, rtol=1e-4, atol=1e-4, equal_nan=True)
    assert file_digest(files + masks) == before  # inputs untouched


def test_the_warped_copies_live_in_a_temporary_folder_removed_after_the_run(lon_lat_s2, tmp_path, monkeypatch):
    files, masks = lon_lat_s2
    folders = []
    real_folder = align.WarpCache.folder

    def spy(self):
        path = real_folder(self)
        folders.append(path)
        return path

    monkeypatch.setattr(align.WarpCache, "folder", spy)
    run(tmp_path, files, masks, "once", True)
    assert folders and all(not path.exists() for path in set(folders))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["once.tif", "once_emb.tif"]


def test_without_the_space_to_warp_once_it_warps_window_by_window(lon_lat_s2, tmp_path, monkeypatch):
    files, masks = lon_lat_s2
    monkeypatch.setattr(align.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1000})())
    recorder = Recorder()
    _, p_low, _ = run(tmp_path, files, masks, "low", True, recorder)
    warnings = [m for level, m in recorder.logs if level == "warning"]
    assert len(warnings) == 1 and "TMPDIR" in warnings[0] and files[0].name in warnings[0]
    monkeypatch.undo()
    _, p_win, _ = run(tmp_path, files, masks, "window", False)
    np.testing.assert_array_equal(p_low, p_win)  # the very same path


def test_a_file_covering_part_of_the_grid_reads_nan_beyond_it(shared_data, tmp_path):
    from engine.io.grid import Grid
    from engine.io.series import resolve_modality
    from tests.engine.raster_fixtures import SPECS

    utm = eolearn_s2_files(shared_data, tmp_path / "utm")[0]
    lon_lat = to_lon_lat(utm, tmp_path / "ll")
    with rasterio.open(utm) as ds:  # the grid reaches 500 m beyond the file on the right
        grid = Grid(ds.crs, ds.transform, ds.width + 50, ds.height)
        width = ds.width
    m = resolve_modality("s2", SPECS["s2"], str(lon_lat))
    window = rasterio.windows.Window(0, 0, grid.width, grid.height)
    with (
        align.WarpCache() as cache,
        align.ModalityReader(m, grid, cache) as once,
        align.ModalityReader(m, grid) as per_window,
    ):
        assert cache.warped == [str(lon_lat)]
        a, valid_a = once.read(window)
        b, valid_b = per_window.read(window)
    assert not valid_a[..., width + 5 :].any()
    np.testing.assert_array_equal(valid_a, valid_b)
    np.testing.assert_allclose(a, b, rtol=1e-5, equal_nan=True)
    assert math.isnan(a[0, 0, 0, -1])


class ProgressRecorder(Reporter):
    def __init__(self):
        self.messages = []

    def progress(self, percent, message=""):
        self.messages.append((percent, message))


def test_a_warp_in_strips_reports_each_and_equals_the_window_by_window_read(shared_data, tmp_path, monkeypatch):
    """Warping once goes strip by strip (progress, and a cancel between strips): the same values."""
    from engine.io.grid import Grid
    from engine.io.series import resolve_modality
    from tests.engine.raster_fixtures import SPECS

    utm = eolearn_s2_files(shared_data, tmp_path / "utm")[0]
    lon_lat = to_lon_lat(utm, tmp_path / "ll")
    with rasterio.open(utm) as ds:
        grid = Grid(ds.crs, ds.transform, ds.width, ds.height)
    monkeypatch.setattr(align, "WARP_MEM_MB", 0)  # the smallest strip: one row of blocks
    monkeypatch.setattr(align, "WARP_STRIP_ROWS", align.WARP_BLOCK[1])
    m = resolve_modality("s2", SPECS["s2"], str(lon_lat))
    window = rasterio.windows.Window(0, 0, grid.width, grid.height)
    recorder = ProgressRecorder()
    with (
        align.WarpCache(reporter=recorder) as cache,
        align.ModalityReader(m, grid, cache) as once,
        align.ModalityReader(m, grid) as per_window,
    ):
        a, valid_a = once.read(window)
        b, valid_b = per_window.read(window)
    strips = math.ceil(grid.height / align.WARP_BLOCK[1])
    assert strips > 2
    assert len(recorder.messages) == strips
    for k, (_, message) in enumerate(recorder.messages, 1):
        assert message.startswith(f"Warping {lon_lat.name} onto the grid ({k}/{strips})")
    assert recorder.messages[-1][0] == pytest.approx(100.0)
    np.testing.assert_array_equal(valid_a, valid_b)
    # Strips this short shift GDAL's kernel scale (engine.io.align.WARP_STRIP_ROWS): within 2e-3 here;
    # the default strips (256 rows and more) give the whole warp's values (the tests above, 1e-5).
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-4, equal_nan=True)
