"""Crop analysts' inputs on the real Flanders sample, written as GeoTIFFs per date the way a user has
them: Sentinel-2 10 m and 20 m bands in separate files read as one modality, the SCL mask, a season,
radar in dB, netCDF time coordinates; and the bad inputs of each."""

import datetime as dt
import json
import shutil

import numpy as np
import pytest
import rasterio
from affine import Affine

from engine.errors import EngineError
from engine.io.job import load_job
from engine.runtime.progress import Reporter

S2_10M = ["B2", "B3", "B4", "B8"]
S2_20M = ["B5", "B6", "B7", "B8A", "B11", "B12"]


class Log(Reporter):
    def __init__(self):
        super().__init__()
        self.lines = []

    def log(self, message, level="info"):
        self.lines.append((level, message))


@pytest.fixture(scope="module")
def flanders(shared_data, tmp_path_factory):
    """Six S2 dates of May-June 2018 (10 m, 20 m, SCL) and ten S1 days around them, as per-date GeoTIFFs."""
    from engine.bench.flanders import build

    return build(tmp_path_factory.mktemp("flanders"), slice(60, 66), slice(96, 106))


@pytest.fixture(scope="module")
def model():
    from engine.models.catalog import find_model
    from engine.models.checkpoint import load_checkpoint

    return load_checkpoint(str(find_model("anysat-tiny").path)).model


def s2_entry(files, **extra):
    return {
        "parts": [
            {"files": str(files.s2_10m[0].parent), "bands": S2_10M},
            {"files": str(files.s2_20m[0].parent), "bands": S2_20M},
        ],
        **extra,
    }


def job(files, tmp_path, s2=None, s1=None, **extra):
    modalities = {}
    if s2 is not None:
        modalities["s2"] = s2
    if s1 is not None:
        modalities["s1_asc"] = s1
    return load_job(
        {"model": "anysat-tiny", "modalities": modalities, "outputs": {"embeddings": str(tmp_path / "e.tif")}, **extra}
    )


def resolve(j, model, log=None):
    from engine.mapping.plan import plan_geometry, resolve_inputs

    modalities = resolve_inputs(j, model, log or Reporter())
    return modalities, plan_geometry(j, model, modalities)


def read_all(modality, grid):
    from rasterio.windows import Window

    from engine.io.align import ModalityReader

    with ModalityReader(modality, grid) as reader:
        return reader.read(Window(0, 0, grid.width, grid.height))


def test_10m_and_20m_bands_read_as_one_modality_in_the_model_order(flanders, model, tmp_path):
    log = Log()
    mods, geometry = resolve(job(flanders, tmp_path, s2=s2_entry(flanders)), model, log)
    s2 = mods["s2"]
    assert s2.dates == flanders.s2_dates and s2.band_index is None
    assert any("B5, B6, B7, B8A, B11, B12 at 20 m, resampled (bilinear) to the 10 m grid" in m for _, m in log.lines)
    grid = geometry.modality_grids["s2"]
    assert (grid.width, grid.height, grid.res) == (64, 64, 10.0)
    data, valid = read_all(s2, grid)  # (T, 10, 64, 64), in the model's order B2 B3 B4 B5 B6 B7 B8 B8A B11 B12
    with rasterio.open(flanders.s2_10m[0]) as ten, rasterio.open(flanders.s2_20m[0]) as twenty:
        b2, b8 = ten.read(1).astype(np.float32), ten.read(4).astype(np.float32)
        b11 = twenty.read(5).astype(np.float32)
    ok = valid[0]
    assert np.array_equal(data[0, 0][ok], b2[ok])  # 10 m bands read as they are
    assert np.array_equal(data[0, 6][ok], b8[ok])  # B8 sits after the red edge bands in the model's order
    # B11 resampled: inside the area it stays within the range of the 20 m pixels around
    inner = data[0, 8, 2:-2, 2:-2]
    coarse = np.kron(b11, np.ones((2, 2)))[2:-2, 2:-2]
    assert (
        np.nanmax(np.abs(inner - coarse)) < np.ptp(b11)
        and np.corrcoef(inner[np.isfinite(inner)], coarse[np.isfinite(inner)])[0, 1] > 0.9
    )


def test_dates_that_differ_between_the_band_files_are_refused(flanders, model, tmp_path):
    partial = tmp_path / "s2_20m"
    shutil.copytree(flanders.s2_20m[0].parent, partial)
    (partial / flanders.s2_20m[2].name).unlink()
    entry = {
        "parts": [{"files": str(flanders.s2_10m[0].parent), "bands": S2_10M}, {"files": str(partial), "bands": S2_20M}]
    }
    with pytest.raises(EngineError, match=rf"disagree on dates.*only in part 1: {flanders.s2_dates[2].isoformat()}"):
        resolve(job(flanders, tmp_path, s2=entry), model)


def test_a_20m_grid_that_does_not_nest_in_the_10m_grid_is_refused(flanders, model, tmp_path):
    shifted = tmp_path / "s2_20m"
    shifted.mkdir()
    for path in flanders.s2_20m:
        with rasterio.open(path) as ds:
            profile, data = ds.profile, ds.read()
        t = profile["transform"]
        profile["transform"] = Affine(t.a, t.b, t.c + 5.0, t.d, t.e, t.f)  # half a 10 m pixel off
        with rasterio.open(shifted / path.name, "w", **profile) as out:
            out.write(data)
    entry = {
        "parts": [{"files": str(flanders.s2_10m[0].parent), "bands": S2_10M}, {"files": str(shifted), "bands": S2_20M}]
    }
    with pytest.raises(EngineError, match="does not nest.*5 map units off the 10 grid"):
        resolve(job(flanders, tmp_path, s2=entry), model)


def test_parts_naming_unknown_or_repeated_bands_are_refused(flanders, model, tmp_path):
    entry = {"parts": [{"files": str(flanders.s2_10m[0].parent), "bands": ["B2", "B3", "B4", "B08"]}]}
    with pytest.raises(EngineError, match="B08, which the model's 's2' does not have"):
        resolve(job(flanders, tmp_path, s2=entry), model)
    entry = {
        "parts": [
            {"files": str(flanders.s2_10m[0].parent), "bands": S2_10M},
            {"files": str(flanders.s2_20m[0].parent), "bands": ["B5", "B6", "B7", "B8", "B11", "B12"]},
        ]
    }
    with pytest.raises(EngineError, match="B8 more than once"):
        resolve(job(flanders, tmp_path, s2=entry), model)
    with pytest.raises(EngineError, match='either "files" or "parts"'):
        job(flanders, tmp_path, s2={"files": "x.tif", "parts": entry["parts"]})


def test_scl_masks_the_configured_classes(flanders, model, tmp_path):
    scl = str(flanders.scl[0].parent)
    default, geometry = resolve(
        job(flanders, tmp_path, s2=s2_entry(flanders, mask={"files": scl, "type": "scl"})), model
    )
    only_shadow, _ = resolve(
        job(flanders, tmp_path, s2=s2_entry(flanders, mask={"files": scl, "type": "scl", "classes": [3]})), model
    )
    grid = geometry.modality_grids["s2"]
    _, valid_default = read_all(default["s2"], grid)
    _, valid_shadow = read_all(only_shadow["s2"], grid)
    classes = np.stack([np.kron(rasterio.open(p).read(1), np.ones((2, 2), np.uint8)) for p in flanders.scl])
    cloudy = np.isin(classes, (8, 9, 10))
    assert cloudy.any(), "the chosen dates hold clouds"
    assert not valid_default[cloudy].any()  # clouds masked by default
    assert valid_shadow[cloudy & ~np.isin(classes, (0, 1))].all()  # not when only shadows are masked
    assert not valid_shadow[classes == 3].any()
    with pytest.raises(EngineError, match="Sentinel-2 scene classes"):
        job(flanders, tmp_path, s2=s2_entry(flanders, mask={"files": scl, "type": "scl", "classes": [12]}))


def test_scl_with_unknown_values_or_of_another_extent_is_refused(flanders, model, tmp_path):
    odd = tmp_path / "scl_odd"
    odd.mkdir()
    small = tmp_path / "scl_small"
    small.mkdir()
    for path in flanders.scl:
        with rasterio.open(path) as ds:
            profile, data = ds.profile, ds.read()
        with rasterio.open(odd / path.name, "w", **profile) as out:
            out.write(np.where(data == 4, 42, data).astype(np.uint8))
        profile.update(width=16, height=16)
        with rasterio.open(small / path.name, "w", **profile) as out:
            out.write(data[:, :16, :16])
    mods, geometry = resolve(
        job(flanders, tmp_path, s2=s2_entry(flanders, mask={"files": str(odd), "type": "scl"})), model
    )
    with pytest.raises(EngineError, match="values 42, which are not Sentinel-2 SCL classes"):
        read_all(mods["s2"], geometry.modality_grids["s2"])
    with pytest.raises(EngineError, match="The mask .* covers .* but the data"):
        resolve(job(flanders, tmp_path, s2=s2_entry(flanders, mask={"files": str(small), "type": "scl"})), model)


def test_a_season_keeps_its_dates_and_each_sensor_keeps_its_revisits(flanders, model, tmp_path):
    s1 = {"files": str(flanders.s1[0].parent), "scale": "db_to_linear"}
    first, last = flanders.s2_dates[1], flanders.s2_dates[4]
    mods, _ = resolve(
        job(flanders, tmp_path, s2=s2_entry(flanders), s1=s1, season=[first.isoformat(), last.isoformat()]), model
    )
    assert mods["s2"].dates == flanders.s2_dates[1:5]
    assert mods["s1_asc"].dates == [d for d in flanders.s1_dates if first <= d <= last]
    # a modality's own season overrides the job's
    mods, _ = resolve(
        job(
            flanders,
            tmp_path,
            s2=s2_entry(flanders),
            s1=dict(s1, season=["2000-01-01", "2030-01-01"]),
            season=[first.isoformat(), last.isoformat()],
        ),
        model,
    )
    assert mods["s1_asc"].dates == flanders.s1_dates
    with pytest.raises(EngineError, match="no date in the season 2017-01-01..2017-02-01"):
        resolve(job(flanders, tmp_path, s2=s2_entry(flanders, season=["2017-01-01", "2017-02-01"])), model)
    with pytest.raises(EngineError, match="ends .* before it starts"):
        job(flanders, tmp_path, s2=s2_entry(flanders), season=["2018-10-01", "2018-03-01"])


def test_radar_in_db_without_scale_is_refused_with_the_conversion(flanders, model, tmp_path):
    from engine.mapping.plan import build_plan

    s1 = {"files": str(flanders.s1[0].parent)}
    with pytest.raises(EngineError, match=r'look like another scale\. Add "scale": "db_to_linear"'):
        build_plan(job(flanders, tmp_path, s1=s1), model)
    plan = build_plan(job(flanders, tmp_path, s1=dict(s1, scale="db_to_linear")), model)
    assert plan.modalities["s1_asc"].scale == "db_to_linear"


def test_models_json_states_each_sensors_units(tmp_path):
    from engine.models.catalog import catalog_rows

    row = next(r for r in catalog_rows() if r["name"] == "anysat-tiny")
    assert row["units"]["s1_asc"]["units"] == "backscatter as linear power (not dB)"
    assert row["units"]["s2"]["units"] == "reflectance x 10000 (digital numbers)"
    low, high = row["units"]["s1_asc"]["typical_range"][0]
    assert low < 0.11 < high


def test_netcdf_time_coordinates_give_band_dates(shared_data):
    from engine.io.series import netcdf_band_dates

    path = next((shared_data / "worldcereal_flanders").glob("S2_L2A_20m_*.nc"))
    with rasterio.open(f'NETCDF:"{path}":SCL') as ds:
        dates = netcdf_band_dates(ds)
    assert len(dates) == 118 and dates[0] == dt.date(2017, 8, 4) and dates[-1] == dt.date(2018, 11, 27)
    assert all(a < b for a, b in zip(dates, dates[1:]))


def test_subdataset_names_are_kept_as_written_in_a_job(tmp_path):
    name = 'NETCDF:"/data/S2.nc":B02'
    parsed = load_job(
        {
            "model": "m.safetensors",
            "modalities": {"s2": {"files": name}},
            "outputs": {"embeddings": str(tmp_path / "e.tif")},
        }
    )
    assert parsed.modalities["s2"].files == name
    assert json.dumps(parsed.modalities["s2"].files) == json.dumps(name)


def test_a_netcdf_without_a_grid_gdal_reads_is_refused_with_the_fix(shared_data, model, tmp_path):
    """The sample's netCDF files carry x/y coordinates GDAL does not take as a grid: named, with the fix."""
    path = next((shared_data / "worldcereal_flanders").glob("S2_L2A_10m_*.nc"))
    parts = [{"files": f'NETCDF:"{path}":{v}', "bands": [b]} for v, b in (("B02", "B2"), ("B03", "B3"))]
    with pytest.raises(EngineError, match="has no geotransform .*gdal_translate -a_ullr"):
        resolve(
            load_job(
                {
                    "model": "anysat-tiny",
                    "modalities": {"s2": {"parts": parts}},
                    "outputs": {"embeddings": str(tmp_path / "e.tif")},
                }
            ),
            model,
        )
