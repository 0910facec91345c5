"""fit-probe, apply-probe and change, end to end through the operation registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from engine.errors import EngineError
from engine.probes.sources import HASH_TAG
from engine.runtime.registry import run_operation
from tests.engine.probes.test_labels import box, write_layer
from tests.engine.rasters import write_geotiff

torch.set_num_threads(1)
ORIGIN = (500000.0, 5000000.0)  # the grid of test_labels' helpers: 10 m cells from this corner
SIZE, DIM = 40, 8


def embeddings_raster(path, swap=None, digest="e" * 64, seed=0):
    """Embeddings whose mean depends on the class of 4-column stripes (class = stripe index % 2)."""
    rng = np.random.default_rng(seed)
    classes = (np.arange(SIZE) // 4 % 2)[None, :].repeat(SIZE, 0)
    centres = rng.normal(size=(2, DIM)) * 2.0
    data = centres[classes] + rng.normal(scale=0.5, size=(SIZE, SIZE, DIM))
    if swap is not None:  # the area takes the embeddings found 4 columns further: the other class
        rows, cols = swap
        data[rows, cols] = data[rows, slice(cols.start + 4, cols.stop + 4)]
    data = np.moveaxis(data, -1, 0).astype(np.float32)
    data[:, 0, 0] = np.nan  # one nodata patch
    write_geotiff(path, data, origin=ORIGIN, nodata=float("nan"))
    if digest:
        with rasterio.open(path, "r+") as ds:
            ds.update_tags(**{HASH_TAG: digest})
    return str(path), classes


def stripe_labels(path, rows=(2, 30)):
    """One polygon per stripe, over rows[0]..rows[1]: 10 polygons, 5 per class, text classes."""
    names = ("crop", "forest")
    features = [(box(c, rows[0], c + 4, rows[1]), names[(c // 4) % 2]) for c in range(0, SIZE, 4)]
    return write_layer(path, features, field_type="text")


def test_fit_then_apply_on_an_embeddings_raster(tmp_path):
    emb, truth = embeddings_raster(tmp_path / "emb.tif")
    labels = stripe_labels(tmp_path / "labels.gpkg")
    result = run_operation(
        "fit-probe",
        {
            "labels": labels,
            "embeddings": emb,
            "output": str(tmp_path / "probe.safetensors"),
            "report": str(tmp_path / "report.html"),
            "classes": str(tmp_path / "fit_classes.tif"),
        },
    )
    assert result["class_names"] == ["crop", "forest"]
    assert result["overall_accuracy"] > 0.95 and result["macro_f1"] > 0.95
    assert result["validation_cells"] > 0 and result["unvalidated_classes"] == []
    assert "confusion" in (tmp_path / "report.html").read_text()
    applied = run_operation(
        "apply-probe",
        {
            "probe": str(tmp_path / "probe.safetensors"),
            "embeddings": emb,
            "classes": str(tmp_path / "classes.tif"),
            "confidence": str(tmp_path / "confidence.tif"),
        },
    )
    assert applied["class_names"] == ["crop", "forest"]
    with rasterio.open(tmp_path / "classes.tif") as ds, rasterio.open(tmp_path / "fit_classes.tif") as fitted:
        classes = ds.read(1)
        assert np.array_equal(classes, fitted.read(1))
        assert ds.colormap(1)[0][:3] == (0x1F, 0x77, 0xB4)
        assert json.loads(ds.tags(1)["CLASS_NAMES"]) == ["crop", "forest"]
        assert ds.transform.c == ORIGIN[0] and ds.crs.to_epsg() == 32633
    assert classes[0, 0] == 255  # nodata embedding -> nodata class
    valid = classes != 255
    assert (classes[valid] == truth[valid]).mean() > 0.97  # also outside the labelled rows
    with rasterio.open(tmp_path / "confidence.tif") as ds:
        confidence = ds.read(1)
    assert np.isnan(confidence[0, 0]) and (confidence[valid] >= 0.5).all()


def test_a_probe_refuses_another_encoder(tmp_path):
    emb, _ = embeddings_raster(tmp_path / "emb.tif")
    labels = stripe_labels(tmp_path / "labels.gpkg")
    probe = str(tmp_path / "probe.safetensors")
    run_operation("fit-probe", {"labels": labels, "embeddings": emb, "output": probe})
    other, _ = embeddings_raster(tmp_path / "other.tif", digest="f" * 64)
    with pytest.raises(EngineError, match="fitted on embeddings of .*not of the chosen model"):
        run_operation("apply-probe", {"probe": probe, "embeddings": other, "classes": str(tmp_path / "c.tif")})
    assert not (tmp_path / "c.tif").exists()
    untagged, _ = embeddings_raster(tmp_path / "untagged.tif", digest=None)
    with pytest.raises(EngineError, match="does not say which model"):
        run_operation("apply-probe", {"probe": probe, "embeddings": untagged, "classes": str(tmp_path / "c.tif")})


def test_fit_probe_bad_labels(tmp_path):
    emb, _ = embeddings_raster(tmp_path / "emb.tif")
    one_class = write_layer(tmp_path / "one.gpkg", [(box(0, 0, 8, 8), 1), (box(10, 10, 20, 20), 1)])
    with pytest.raises(EngineError, match="single class"):
        run_operation("fit-probe", {"labels": one_class, "embeddings": emb, "output": str(tmp_path / "p.safetensors")})
    far = write_layer(tmp_path / "far.gpkg", [(box(100, 100, 104, 104), 1), (box(110, 110, 114, 114), 2)])
    with pytest.raises(EngineError, match="falls on the raster"):
        run_operation("fit-probe", {"labels": far, "embeddings": emb, "output": str(tmp_path / "p.safetensors")})
    assert not (tmp_path / "p.safetensors").exists()


def test_change_is_zero_for_identical_periods_and_finds_a_swapped_area(tmp_path):
    before, _ = embeddings_raster(tmp_path / "before.tif")
    same = run_operation(
        "change",
        {"before": before, "after": before, "magnitude": str(tmp_path / "m0.tif"), "change": str(tmp_path / "c0.tif")},
    )
    with rasterio.open(tmp_path / "m0.tif") as ds:
        m0 = ds.read(1)
    assert np.nanmax(np.abs(m0)) < 1e-5 and np.isnan(m0[0, 0])
    with rasterio.open(tmp_path / "c0.tif") as ds:
        assert set(np.unique(ds.read(1))) <= {0, 255}
    assert same["changed_share"] == 0.0

    area = (slice(10, 20), slice(5, 25))
    after, _ = embeddings_raster(tmp_path / "after.tif", swap=area)
    result = run_operation(
        "change",
        {"before": before, "after": after, "magnitude": str(tmp_path / "m.tif"), "change": str(tmp_path / "c.tif")},
    )
    with rasterio.open(tmp_path / "m.tif") as ds:
        magnitude = ds.read(1)
    with rasterio.open(tmp_path / "c.tif") as ds:
        change = ds.read(1)
        assert ds.tags(1)["CLASS_1"] == "change"
    inside = np.zeros(magnitude.shape, bool)
    inside[area] = True
    inside[0, 0] = False
    assert np.nanmin(magnitude[inside]) > 0.3 and np.nanmax(magnitude[~inside]) < 1e-5
    assert np.array_equal(change == 1, inside)
    assert result["threshold_method"] == "otsu" and result["changed_share"] == pytest.approx(200 / (SIZE * SIZE - 1))


def test_change_probe_from_change_labels(tmp_path):
    before, _ = embeddings_raster(tmp_path / "before.tif")
    after, _ = embeddings_raster(tmp_path / "after.tif", swap=(slice(10, 20), slice(0, 36)))
    # Change polygons inside the changed band, no-change polygons above and below it.
    features = [(box(c, 11, c + 3, 19), "change") for c in range(0, 35, 5)]
    features += [(box(c, 25, c + 3, 35), "stable") for c in range(0, 35, 5)]
    labels = write_layer(tmp_path / "change.gpkg", features, field_type="text")
    result = run_operation(
        "change",
        {
            "before": before,
            "after": after,
            "magnitude": str(tmp_path / "m.tif"),
            "change": str(tmp_path / "c.tif"),
            "labels": labels,
            "probe_output": str(tmp_path / "change_probe.safetensors"),
            "report": str(tmp_path / "r.html"),
        },
    )
    assert result["threshold_method"] == "change probe" and result["change_classes"] == ["change", "stable"]
    assert result["probe_overall_accuracy"] > 0.95
    with rasterio.open(tmp_path / "c.tif") as ds:
        change = ds.read(1)
    assert (change[12:18, :36] == 0).mean() > 0.95 and (change[30:, :] == 1).mean() > 0.95


def test_change_needs_the_same_grid_and_encoder(tmp_path):
    before, _ = embeddings_raster(tmp_path / "before.tif")
    other, _ = embeddings_raster(tmp_path / "other.tif", digest="f" * 64)
    with pytest.raises(EngineError, match="different models"):
        run_operation("change", {"before": before, "after": other, "magnitude": str(tmp_path / "m.tif")})
    data = np.zeros((DIM, 20, 20), np.float32)
    small = write_geotiff(tmp_path / "small.tif", data, origin=ORIGIN)
    with rasterio.open(small, "r+") as ds:
        ds.update_tags(**{HASH_TAG: "e" * 64})
    with pytest.raises(EngineError, match="different grids"):
        run_operation("change", {"before": before, "after": str(small), "magnitude": str(tmp_path / "m.tif")})


def test_fit_and_apply_through_a_job_on_real_sentinel2(tmp_path, shared_data):
    """The whole path on eo-learn's real scenes: job -> tiled embeddings -> probe -> class map."""
    from engine.models.checkpoint import save_checkpoint
    from tests.engine.raster_fixtures import eolearn_s2_files, tiny_model

    files = eolearn_s2_files(shared_data, tmp_path / "s2")
    model, _ = tiny_model(modalities=("s2",))
    save_checkpoint(tmp_path / "model.safetensors", model)
    job = {
        "model": str(tmp_path / "model.safetensors"),
        "modalities": {"s2": {"files": [str(f) for f in files]}},
        "outputs": {"embeddings": str(tmp_path / "emb.tif")},
        "tile_size": 320,
        "threads": 1,
        "precision": "fp32",
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    labels = str(shared_data / "eolearn_patch/TestEOPatch/vector_timeless/LULC.gpkg")
    fit = run_operation(
        "fit-probe",
        {
            "labels": labels,
            "embeddings": str(tmp_path / "job.json"),
            "output": str(tmp_path / "probe.safetensors"),
            "class_field": "LULC_NAME",
            "ignore_values": [""],
            "classes": str(tmp_path / "fit_classes.tif"),
        },
    )
    assert fit["class_names"] == ["artificial surface", "cultivated land", "forest", "grassland", "schrubland"]
    assert 0.0 <= fit["macro_f1"] <= 1.0 and fit["validation_cells"] > 100
    with rasterio.open(tmp_path / "emb.tif") as ds:  # the job's embeddings were kept, tagged with the encoder
        assert ds.tags()[HASH_TAG] and ds.count == model.embed_dim
    apply_job = dict(job, outputs={"classes": str(tmp_path / "classes.tif")})
    run_operation("apply-probe", {"probe": str(tmp_path / "probe.safetensors"), "embeddings": apply_job})
    with rasterio.open(tmp_path / "classes.tif") as ds, rasterio.open(tmp_path / "fit_classes.tif") as fitted:
        assert ds.shape == fitted.shape and ds.transform == fitted.transform
        # The tiny model is local (no context across patches): both paths give the same map.
        assert (ds.read(1) == fitted.read(1)).mean() > 0.999
    other, _ = tiny_model(modalities=("s2",), seed=1)
    save_checkpoint(tmp_path / "other.safetensors", other)
    with pytest.raises(EngineError, match="not of the chosen model"):
        run_operation(
            "apply-probe",
            {
                "probe": str(tmp_path / "probe.safetensors"),
                "embeddings": dict(apply_job, model=str(tmp_path / "other.safetensors")),
            },
        )


def test_change_between_two_jobs_on_real_sentinel2(tmp_path, shared_data):
    """Two periods given as jobs (eo-learn's first two vs last two dates): embeddings computed on one grid."""
    from engine.models.checkpoint import save_checkpoint
    from tests.engine.raster_fixtures import eolearn_s2_files, tiny_model

    files = [str(f) for f in eolearn_s2_files(shared_data, tmp_path / "s2")]
    model, _ = tiny_model(modalities=("s2",))
    save_checkpoint(tmp_path / "model.safetensors", model)

    def job(dates):
        return {
            "model": str(tmp_path / "model.safetensors"),
            "modalities": {"s2": {"files": dates}},
            "outputs": {"embeddings": str(tmp_path / "unused.tif")},
            "precision": "fp32",
            "threads": 1,
        }

    before, after = job(files[:2]), job(files[3:])
    before["outputs"] = {"embeddings": str(tmp_path / "kept_before.tif")}  # kept where the job says
    same = run_operation(
        "change",
        {
            "before": before,
            "after": dict(before, outputs={"embeddings": str(tmp_path / "b2.tif")}),
            "magnitude": str(tmp_path / "m0.tif"),
        },
    )
    with rasterio.open(tmp_path / "m0.tif") as ds:
        assert np.nanmax(ds.read(1)) < 1e-5
    assert same["threshold_method"] == "otsu" and (tmp_path / "kept_before.tif").exists()
    result = run_operation(
        "change",
        {"before": before, "after": after, "magnitude": str(tmp_path / "m.tif"), "change": str(tmp_path / "c.tif")},
    )
    with rasterio.open(tmp_path / "m.tif") as ds, rasterio.open(tmp_path / "kept_before.tif") as emb:
        magnitude = ds.read(1)
        assert ds.transform == emb.transform and ds.shape == emb.shape
    assert np.isfinite(magnitude).all() and magnitude.max() > 0
    assert 0.0 <= result["changed_share"] <= 1.0
