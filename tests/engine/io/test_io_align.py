"""Reference grid and on-the-fly alignment, on the real Peru (30 m) and eo-learn (10 m) rasters."""

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from engine.errors import EngineError
from engine.io.align import ModalityReader, clear_sky
from engine.io.grid import Footprint, reference_grid
from engine.io.series import attach_masks, resolve_modality
from tests.engine.raster_fixtures import SPECS, eolearn_cloud_masks, eolearn_s2_files, write_described


def footprints(*paths):
    out = []
    for p in paths:
        with rasterio.open(p) as ds:
            out.append(Footprint.of(ds, str(p)))
    return out


@pytest.fixture
def peru(shared_data):
    return shared_data / "l8_s1_peru"


def test_30m_landsat_is_warped_onto_a_10m_grid(peru):
    l8 = peru / "LC08_003069_20180906_clip.tif"
    grid = reference_grid(footprints(l8), patch_size_m=30, resolution_m=10)
    assert grid.crs == CRS.from_epsg(32619) and grid.res == 10
    assert (grid.width, grid.height) == (330, 312)  # 110 x 104 px at 30 m, no patch lost
    with rasterio.open(l8) as ds:
        source = ds.read()
    m = resolve_modality("l8", SPECS["l8"], str(l8))
    with ModalityReader(m, grid) as reader:
        data, valid = reader.read(Window(0, 0, 60, 60))
    assert data.shape == (1, 6, 60, 60) and valid.all()
    # Bilinear at the centre of a 30 m pixel gives that pixel's value exactly.
    np.testing.assert_allclose(data[0][:, 1::3, 1::3], source[:, :20, :20], rtol=1e-5)
    between = data[0, 0, 1, 2]  # 1/3 of the way to the next 30 m pixel
    assert min(source[0, 0, 0], source[0, 0, 1]) <= between <= max(source[0, 0, 0], source[0, 0, 1])


def test_on_lattice_input_is_read_directly(shared_data, tmp_path):
    files = eolearn_s2_files(shared_data, tmp_path / "s2")
    grid = reference_grid(footprints(*files), patch_size_m=10, resolution_m=10)
    assert (grid.width, grid.height) == (100, 101)
    m = resolve_modality("s2", SPECS["s2"], [str(f) for f in files])
    with ModalityReader(m, grid) as reader:
        assert all(s.vrt is None for s in reader._sources.values())
        data, _ = reader.read(Window(10, 20, 30, 40))
    with rasterio.open(files[2]) as ds:
        np.testing.assert_array_equal(data[2], ds.read(window=Window(10, 20, 30, 40)))


def test_cloud_masks_and_nodata_invalidate_pixels(shared_data, tmp_path):
    files = eolearn_s2_files(shared_data, tmp_path / "s2")
    with rasterio.open(files[1], "r+") as ds:  # a nodata hole in date 2
        ds.nodata = -1
        block = ds.read()
        block[:, :5, :5] = -1
        ds.write(block)
    masks = eolearn_cloud_masks(shared_data, tmp_path / "clm")
    grid = reference_grid(footprints(*files), patch_size_m=10, resolution_m=10)
    m = attach_masks(resolve_modality("s2", SPECS["s2"], [str(f) for f in files]), [str(p) for p in masks])
    with ModalityReader(m, grid) as reader:
        data, valid = reader.read(Window(0, 0, 100, 101))
    clm = np.load(shared_data / "eolearn_patch/TestEOPatch/mask/CLM.npy", allow_pickle=False)[:5, ..., 0]
    expected = clm == 0
    expected[1, :5, :5] = False
    np.testing.assert_array_equal(valid, expected)
    assert np.isnan(data[~np.broadcast_to(valid[:, None], data.shape)]).all()
    assert np.isfinite(data[np.broadcast_to(valid[:, None], data.shape)]).all()


def test_mask_types():
    values = np.array([0, 3, 4, 9, 11, np.nan], np.float32)
    assert clear_sky(values, "scl", 0).tolist() == [False, False, True, False, True, True]
    assert clear_sky(values, "binary", 0).tolist() == [True, False, False, False, False, True]
    assert clear_sky(values, "valid", 0).tolist() == [False, True, True, True, True, True]
    assert clear_sky(np.array([10, 60], np.float32), "probability", 50).tolist() == [True, False]


def test_geographic_input_gets_a_local_utm_grid(tmp_path):
    path = write_described(
        tmp_path / "geo.tif", np.ones((4, 20, 20), np.float32), (15.0, 46.0), crs="EPSG:4326", pixel=0.0001
    )
    grid = reference_grid(footprints(path), patch_size_m=10, resolution_m=10)
    assert grid.crs == CRS.from_epsg(32633)
    assert 12 <= grid.width <= 16 and 18 <= grid.height <= 23  # 0.002 deg ~ 155 m x 222 m


def test_inputs_that_do_not_overlap_are_an_error(shared_data, tmp_path, peru):
    files = eolearn_s2_files(shared_data, tmp_path / "s2")
    with pytest.raises(EngineError, match="do not overlap.*EPSG:32633.*EPSG:32619|too far apart"):
        reference_grid(footprints(files[0], peru / "LC08_003069_20180906_clip.tif"), 10, 10)
    with pytest.raises(EngineError, match="do not overlap"):
        reference_grid(footprints(peru / "LC08_003069_20180906_clip.tif", peru / "LC08_232066_20190727.tif"), 10, 10)


def test_extent_in_another_crs_crops_the_grid_and_must_hold_a_patch(peru):
    l8 = peru / "LC08_003069_20180906_clip.tif"
    box = transform_bounds("EPSG:32619", "EPSG:4326", 390630, -1424430, 391230, -1423830)
    grid = reference_grid(footprints(l8), 30, 10, extent=(box, CRS.from_epsg(4326)))
    left, bottom, right, top = grid.bounds
    assert 390600 <= left <= 390660 and 391200 <= right <= 391260 and (right - left) % 30 == 0
    tiny = transform_bounds("EPSG:32619", "EPSG:4326", 390630, -1424430, 390645, -1424415)
    with pytest.raises(EngineError, match="less than one 30 m patch"):
        reference_grid(footprints(l8), 30, 10, extent=(tiny, CRS.from_epsg(4326)))
