"""Tiled inference end to end on real rasters, with the tiny local model of raster_fixtures."""

import errno
import json
import os

import numpy as np
import pytest
import rasterio
import torch

from engine.errors import Cancelled, EngineError
from engine.io.job import load_job
from engine.io.writers import CLASS_NODATA
from engine.mapping.run import run_map
from engine.models.checkpoint import save_checkpoint
from engine.runtime.progress import Reporter
from engine.runtime.registry import run_operation
from tests.engine.raster_fixtures import eolearn_cloud_masks, eolearn_s2_files, file_digest, tiny_model

torch.set_num_threads(1)


class Recorder(Reporter):
    def __init__(self):
        self.percents, self.logs = [], []

    def progress(self, percent, message=""):
        self.percents.append(percent)

    def log(self, message, level="info"):
        self.logs.append((level, message))


@pytest.fixture
def s2(shared_data, tmp_path):
    files = eolearn_s2_files(shared_data, tmp_path / "s2")
    masks = eolearn_cloud_masks(shared_data, tmp_path / "clm")
    return files, masks


def s2_job(tmp_path, files, masks=None, **extra):
    entry = {"files": [str(f) for f in files]}
    if masks:
        entry["mask"] = {"files": [str(m) for m in masks], "type": "binary"}
    job = {
        "model": "tiny.safetensors",
        "modalities": {"s2": entry},
        "outputs": {"classes": str(tmp_path / "out" / "classes.tif")},
        "device": "cpu",
        "precision": "fp32",
    }
    (tmp_path / "out").mkdir(exist_ok=True)
    job.update(extra)
    return job


def test_classify_writes_the_grid_colour_table_and_class_names(s2, tmp_path):
    files, masks = s2
    model, head = tiny_model(modalities=("s2",))
    outputs = {
        "classes": str(tmp_path / "out/classes.tif"),
        "confidence": str(tmp_path / "out/conf.tif"),
        "probabilities": str(tmp_path / "out/probs.tif"),
    }
    job = load_job(s2_job(tmp_path, files, masks, outputs=outputs, tile_size=320, overlap=40, batch_size=3))
    reporter = Recorder()
    meta = {"classes": ["forest", "grass", "field"], "colors": ["#1b7837", "#a6dba0", "#fee08b"]}
    result = run_map(job, reporter, model, head, meta)
    assert result["windows"] == 16 and reporter.percents[-1] == 100
    with rasterio.open(files[0]) as src, rasterio.open(outputs["classes"]) as out:
        assert out.crs == src.crs and out.transform == src.transform and (out.width, out.height) == (100, 101)
        assert out.dtypes[0] == "uint8" and out.nodata == CLASS_NODATA and out.profile["compress"] == "deflate"
        assert out.colormap(1)[0] == (0x1B, 0x78, 0x37, 255)
        assert json.loads(out.tags(1)["CLASS_NAMES"]) == meta["classes"] and out.tags(1)["CLASS_2"] == "field"
        classes = out.read(1)
    assert set(np.unique(classes)) <= {0, 1, 2}
    with rasterio.open(outputs["probabilities"]) as p, rasterio.open(outputs["confidence"]) as c:
        probs, conf = p.read(), c.read(1)
        assert p.descriptions == ("forest", "grass", "field")
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(classes, probs.argmax(0))
    np.testing.assert_allclose(conf, probs.max(0), atol=1e-6)
    assert not list((tmp_path / "out").glob(".*partial*"))


def test_tiled_run_equals_single_window_run(s2, tmp_path):
    files, masks = s2
    model, head = tiny_model(modalities=("s2",))
    runs = {}
    for name, tile, overlap in (("single", 1010, 0), ("tiled", 230, 60), ("tiled_no_overlap", 170, 0)):
        out = tmp_path / "out" / f"{name}.tif"
        job = load_job(
            s2_job(
                tmp_path,
                files,
                masks,
                outputs={"probabilities": str(out)},
                tile_size=tile,
                overlap=overlap,
                min_valid_fraction=0.0,
            )
        )
        result = run_map(job, Reporter(), model, head, {})
        with rasterio.open(out) as ds:
            runs[name] = (result["windows"], ds.read())
    assert runs["single"][0] == 1 and runs["tiled"][0] > 16
    np.testing.assert_allclose(runs["tiled"][1], runs["single"][1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(runs["tiled_no_overlap"][1], runs["single"][1], rtol=1e-5, atol=1e-6)


def test_nodata_stays_nodata(s2, tmp_path):
    files, _ = s2
    for f in files:  # a 20 x 30 px hole in every date
        with rasterio.open(f, "r+") as ds:
            ds.nodata = 0
            data = ds.read()
            data[:, 40:60, 10:40] = 0
            ds.write(data)
    model, head = tiny_model(modalities=("s2",))
    outputs = {
        "classes": str(tmp_path / "out/c.tif"),
        "confidence": str(tmp_path / "out/conf.tif"),
        "embeddings": str(tmp_path / "out/emb.tif"),
    }
    run_map(load_job(s2_job(tmp_path, files, outputs=outputs, tile_size=160)), Reporter(), model, head, {})
    with (
        rasterio.open(outputs["classes"]) as c,
        rasterio.open(outputs["confidence"]) as k,
        rasterio.open(outputs["embeddings"]) as e,
    ):
        classes, conf, emb = c.read(1), k.read(1), e.read()
    hole = np.zeros_like(classes, bool)
    hole[40:60, 10:40] = True
    assert (classes[hole] == CLASS_NODATA).all() and (classes[~hole] != CLASS_NODATA).all()
    assert np.isnan(conf[hole]).all() and np.isfinite(conf[~hole]).all()
    assert np.isnan(emb[:, hole]).all() and np.isfinite(emb[:, ~hole]).all()


def test_30m_landsat_and_s1_fused_on_a_10m_grid(shared_data, tmp_path):
    peru = shared_data / "l8_s1_peru"
    model, head = tiny_model(modalities=("l8", "s1"))
    job = {
        "model": "tiny.safetensors",
        "modalities": {
            "l8": {"files": str(peru / "LC08_003069_20180906_clip.tif")},
            "s1": {"files": str(peru / "S1_2018_VV_VH_clip.tif"), "bands": [1, 2], "dates": ["2018-09-01"]},
        },
        "outputs": {
            "classes": str(tmp_path / "c.tif"),
            "embeddings": str(tmp_path / "e.tif"),
            "embeddings_dtype": "float16",
        },
        "patch_size": 30,
        "tile_size": 600,
        "overlap": 60,
        "device": "cpu",
        # Landsat-8 surface reflectance x 10000 here, not the spec's 0-1 reflectance.
        "normalization": {"l8": {"mean": [500.0] * 6, "std": [500.0] * 6}},
    }
    before = file_digest(peru.iterdir())
    result = run_map(load_job(job), Reporter(), model, head, {})
    assert file_digest(peru.iterdir()) == before  # inputs untouched
    with rasterio.open(tmp_path / "c.tif") as c, rasterio.open(tmp_path / "e.tif") as e:
        assert c.res == (10, 10) and (c.width, c.height) == (330, 312) and c.crs.to_epsg() == 32619
        assert e.res == (30, 30) and (e.width, e.height) == (110, 104) and e.count == model.embed_dim
        assert e.profile.get("nbits") in (None, 16) and e.tags(1, "IMAGE_STRUCTURE").get("NBITS") == "16"
        classes, emb = c.read(1), e.read()
    # One class per 30 m patch: each 3 x 3 block of the 10 m map is constant.
    blocks = classes.reshape(104, 3, 110, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()
    assert np.isfinite(emb).all() and result["dates"] == {"s1": ["2018-09-01"]}


def test_cancel_between_windows_leaves_nothing(s2, tmp_path):
    files, _ = s2
    model, head = tiny_model(modalities=("s2",))
    calls = []
    with pytest.raises(Cancelled):
        run_map(
            load_job(s2_job(tmp_path, files, tile_size=200, batch_size=1)),
            Reporter(),
            model,
            head,
            {},
            should_cancel=lambda: len(calls) > 2 or calls.append(1),
        )
    assert list((tmp_path / "out").iterdir()) == []


def test_full_disk_mid_run_leaves_no_partial_output_and_inputs_untouched(s2, tmp_path, monkeypatch):
    files, masks = s2
    model, head = tiny_model(modalities=("s2",))
    before = file_digest(files + masks)
    writes = []

    def full_disk(ds, row0, cells, factor=1, col0=0):
        writes.append(row0)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("engine.mapping.outputs.write_cells", full_disk)
    with pytest.raises(EngineError, match="disk is full"):
        run_map(load_job(s2_job(tmp_path, files, masks, tile_size=200)), Reporter(), model, head, {})
    assert writes and list((tmp_path / "out").iterdir()) == []
    assert file_digest(files + masks) == before


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda job, t: job["outputs"].update(classes=str(t / "missing" / "c.tif")), "does not exist: create"),
        (lambda job, t: job["modalities"].update(radar=job["modalities"]["s2"]), "modality 'radar'.*trained with s2"),
        (lambda job, t: job.update(patch_size=15), "not a whole number of modality 's2'"),
        (lambda job, t: job.update(overlap=400, tile_size=200), "overlap .* must be smaller"),
        (
            lambda job, t: job.update(device="cuda") if not torch.cuda.is_available() else pytest.skip("has CUDA"),
            "cuda",
        ),
    ],
)
def test_bad_jobs_fail_before_writing(s2, tmp_path, change, message):
    files, _ = s2
    model, head = tiny_model(modalities=("s2",))
    job = s2_job(tmp_path, files)
    change(job, tmp_path)
    with pytest.raises(EngineError, match=message):
        run_map(load_job(job), Reporter(), model, head, {})
    assert list((tmp_path / "out").iterdir()) == []


def test_read_only_output_folder(s2, tmp_path, monkeypatch):
    files, _ = s2
    model, head = tiny_model(modalities=("s2",))
    (tmp_path / "out").mkdir()
    real_access = os.access
    # chmod does not stop root (tests may run as root): make the folder read-only for os.access.
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if str(p) == str(tmp_path / "out") else real_access(p, mode)
    )
    with pytest.raises(EngineError, match="not writable: choose another folder"):
        run_map(load_job(s2_job(tmp_path, files)), Reporter(), model, head, {})
    assert list((tmp_path / "out").iterdir()) == []


def test_classify_operation_reads_the_job_file_and_a_saved_checkpoint(s2, tmp_path):
    files, masks = s2
    model, head = tiny_model(modalities=("s2",))
    save_checkpoint(
        tmp_path / "tiny.safetensors",
        model,
        head=head,
        classes=["a", "b", "c"],
        colors=["#ff0000", "#00ff00", "#0000ff"],
    )
    job_file = tmp_path / "job.json"
    job = s2_job(tmp_path, files, masks, tile_size=400)
    job["modalities"]["s2"]["files"] = "s2"  # a folder, relative to the job file
    job["outputs"]["classes"] = "out/classes.tif"
    job_file.write_text(json.dumps(job))
    result = run_operation("classify", {"job": str(job_file)})
    assert result["class_names"] == ["a", "b", "c"] and (tmp_path / "out/classes.tif").is_file()
    # The worker sends the same object inline.
    job["outputs"]["classes"] = str(tmp_path / "out/inline.tif")
    job["model"] = str(tmp_path / "tiny.safetensors")
    job["modalities"]["s2"]["files"] = str(tmp_path / "s2")
    run_operation("classify", {"job": job})
    with rasterio.open(tmp_path / "out/classes.tif") as a, rasterio.open(tmp_path / "out/inline.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.colormap(1)[1] == (0, 255, 0, 255)
    with pytest.raises(EngineError, match='embed writes only "embeddings"'):
        run_operation("embed", {"job": job})


def test_normalization_stats_operation_feeds_the_job(s2, tmp_path):
    files, masks = s2
    model, head = tiny_model(modalities=("s2",))
    save_checkpoint(tmp_path / "tiny.safetensors", model, head=head)
    job = s2_job(tmp_path, files, masks, model=str(tmp_path / "tiny.safetensors"))
    result = run_operation("normalization-stats", {"job": job, "output": str(tmp_path / "stats.json")})
    stats = json.loads((tmp_path / "stats.json").read_text())["s2"]
    assert stats["bands"] == ["B2", "B3", "B4", "B8"] and result["statistics"]["s2"] == stats
    assert all(0 < m < 1 for m in stats["mean"]) and all(0 < s < 1 for s in stats["std"])
    job["normalization"] = str(tmp_path / "stats.json")
    run_operation("classify", {"job": job})


def test_extent_in_lon_lat_limits_the_map(s2, tmp_path):
    from rasterio.warp import transform_bounds

    files, _ = s2
    model, head = tiny_model(modalities=("s2",))
    with rasterio.open(files[0]) as ds:
        left, top = ds.bounds.left, ds.bounds.top
    box = transform_bounds("EPSG:32633", "EPSG:4326", left + 200, top - 500, left + 600, top - 100)
    job = s2_job(tmp_path, files, extent={"bounds": list(box), "crs": "EPSG:4326"})
    result = run_map(load_job(job), Reporter(), model, head, {})
    # The lon/lat box's envelope in UTM is a little larger than the 400 m square it came from.
    assert 40 <= result["width"] <= 43 and 40 <= result["height"] <= 43
    t = result["transform"]
    assert left + 190 <= t[2] <= left + 200 and top - 100 <= t[5] <= top - 90


def test_row_band_writer_chunks_columns_and_expands_patches(tmp_path):
    from affine import Affine
    from rasterio.crs import CRS

    from engine.io.grid import Grid
    from engine.io.writers import RowBandAccumulator, geotiff_profile, write_cells

    grid = Grid(CRS.from_epsg(32633), Affine(1, 0, 500000, 0, -1, 5000000), 300, 20)
    cells = np.arange(2 * 4 * 60, dtype=np.float32).reshape(2, 4, 60)
    written = []
    with rasterio.open(tmp_path / "x.tif", "w", **geotiff_profile(grid, 2, "float32", None)) as ds:
        band = RowBandAccumulator(
            4, 60, 2, flush_rows=3, sink=lambda r, m, c: (written.append(r), write_cells(ds, r, m, 5, chunk_px=64))
        )
        band.add(rasterio.windows.Window(0, 0, 60, 4), cells, np.ones((4, 60), np.float32))
        band.finish()
    assert written == [0, 3]
    with rasterio.open(tmp_path / "x.tif") as ds:
        np.testing.assert_array_equal(ds.read(), np.repeat(np.repeat(cells, 5, axis=1), 5, axis=2))


def test_a_date_covering_less_reads_as_nodata_instead_of_shrinking_the_map(s2, tmp_path):
    files, _ = s2
    with rasterio.open(files[2]) as ds:  # date 3 cut to its top half
        data, profile = ds.read()[:, :50], ds.profile
    profile.update(height=50)
    with rasterio.open(files[2], "w", **profile) as ds:
        ds.write(data)
    model, head = tiny_model(modalities=("s2",))
    result = run_map(load_job(s2_job(tmp_path, files, tile_size=200)), Reporter(), model, head, {})
    assert (result["width"], result["height"]) == (100, 101)
    with rasterio.open(tmp_path / "out/classes.tif") as out:
        assert (out.read(1) != CLASS_NODATA).all()  # the other dates still see the bottom half


def test_a_window_without_one_sensor_is_encoded_from_the_others(shared_data, tmp_path):
    peru = shared_data / "l8_s1_peru"
    with rasterio.open(peru / "LC08_003069_20180906_clip.tif") as ds:
        data, profile = ds.read(), ds.profile
    data[:, :20, :] = np.nan  # Landsat has no data in the top 600 m; S1 does
    with rasterio.open(tmp_path / "LC08_003069_20180906_gap.tif", "w", **profile) as ds:
        ds.write(data)
    model, head = tiny_model(modalities=("l8", "s1"))
    outputs = {}
    for name, modalities in (("both", ("l8", "s1")), ("s1_only", ("s1",))):
        job = {
            "model": "tiny.safetensors",
            "modalities": {
                "l8": {"files": str(tmp_path / "LC08_003069_20180906_gap.tif")},
                "s1": {"files": str(peru / "S1_2018_VV_VH_clip.tif"), "bands": [1, 2], "dates": ["2018-09-01"]},
            },
            "outputs": {"probabilities": str(tmp_path / f"{name}.tif")},
            "patch_size": 30,
            "tile_size": 300,
        }
        job["modalities"] = {k: v for k, v in job["modalities"].items() if k in modalities}
        run_map(load_job(job), Reporter(), model, head, {})
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            outputs[name] = ds.read()
    # Windows of 10 patches step by 9: patch rows 0-17 lie only in windows inside the gap,
    # which see S1 alone and must match the S1-only run (54 rows of 10 m pixels).
    np.testing.assert_allclose(outputs["both"][:, :54], outputs["s1_only"][:, :54], rtol=1e-5)
    assert not np.allclose(outputs["both"][:, 200:], outputs["s1_only"][:, 200:])


def test_a_file_truncated_after_its_header_fails_clearly_mid_run(s2, tmp_path):
    from tests.engine.rasters import write_geotiff

    files, _ = s2
    with rasterio.open(files[3]) as ds:  # rewritten in one go: GDAL puts the header first
        pixels, origin = ds.read(), (ds.bounds.left, ds.bounds.top)
    write_geotiff(files[3], pixels, origin=origin)
    data = files[3].read_bytes()
    files[3].write_bytes(data[: len(data) * 6 // 10])  # the header opens, the last rows are gone
    model, head = tiny_model(modalities=("s2",))
    with pytest.raises(EngineError, match="S2_20150830.tif' could not be read .* damaged or incomplete"):
        run_map(load_job(s2_job(tmp_path, files, tile_size=200)), Reporter(), model, head, {})
    assert list((tmp_path / "out").iterdir()) == []


def test_embed_operation_writes_one_band_per_dimension_on_the_patch_grid(s2, tmp_path):
    files, _ = s2
    model, _ = tiny_model(modalities=("s2",))
    save_checkpoint(tmp_path / "encoder.safetensors", model)  # no head: embeddings only
    job = {
        "model": str(tmp_path / "encoder.safetensors"),
        "modalities": {"s2": {"files": [str(f) for f in files]}},
        "outputs": {"embeddings": str(tmp_path / "emb.tif")},
        "patch_size": 20,
        "tile_size": 200,
    }
    result = run_operation("embed", {"job": job})
    with rasterio.open(tmp_path / "emb.tif") as e, rasterio.open(files[0]) as src:
        assert (e.count, e.dtypes[0], e.res) == (model.embed_dim, "float32", (20.0, 20.0))
        assert (e.width, e.height) == (50, 50) and e.transform.c == src.transform.c and e.transform.f == src.transform.f
        assert np.isfinite(e.read()).all()
    assert result["embeddings"] == str(tmp_path / "emb.tif")
    job["outputs"] = {"classes": str(tmp_path / "c.tif")}
    with pytest.raises(EngineError, match="without a classification head.*fit a probe"):
        run_operation("classify", {"job": job})


def test_a_cloudy_date_is_masked_out_not_read_as_data(s2, tmp_path):
    files, masks = s2
    with rasterio.open(masks[1], "r+") as ds:  # date 2 entirely under cloud
        ds.write(np.ones((1, ds.height, ds.width), np.uint8))
    model, head = tiny_model(modalities=("s2",))
    with_mask = s2_job(
        tmp_path, files, masks, outputs={"probabilities": str(tmp_path / "out/masked.tif")}, tile_size=300
    )
    for m in masks[:1] + masks[2:]:  # the other dates clear, so only date 2 is affected
        with rasterio.open(m, "r+") as ds:
            ds.write(np.zeros((1, ds.height, ds.width), np.uint8))
    without = s2_job(
        tmp_path, files[:1] + files[2:], outputs={"probabilities": str(tmp_path / "out/without.tif")}, tile_size=300
    )
    result = run_map(load_job(with_mask), Reporter(), model, head, {})
    run_map(load_job(without), Reporter(), model, head, {})
    assert len(result["dates"]["s2"]) == 5
    with rasterio.open(tmp_path / "out/masked.tif") as a, rasterio.open(tmp_path / "out/without.tif") as b:
        np.testing.assert_allclose(a.read(), b.read(), rtol=1e-5, atol=1e-6)
