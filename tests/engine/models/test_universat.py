"""UniverSat: shapes and levels of the Tiny model, a user's sensor by wavelength, the hub layout's key
mapping, fetch-model from a 127.0.0.1 hub (sha256 recorded at the first download, a differing file
refused), and equality with the reference code when UNIVERSAT_REFERENCE names its checkout."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine.errors import EngineError
from engine.models import downloads
from engine.models.checkpoint import load_checkpoint, read_metadata
from engine.models.pins import PINS_FILE
from engine.models.universat import UniverSat, universat_config
from engine.models.universat_sensors import describe_sensor
from engine.models.universat_weights import load_hub_folder, to_release_state
from engine.runtime.progress import Reporter
from engine.runtime.registry import run_operation
from tests.engine.range_server import serving

REPOSITORY = "test-org/UniverSat-tiny"


def tiny(seed: int = 0) -> UniverSat:
    torch.manual_seed(seed)
    model = UniverSat(universat_config("tiny", ("aerial", "s2", "s1", "l7"))).eval()
    with torch.no_grad():  # layer scales of order 1: every branch counts in the comparisons below
        for name, p in model.named_parameters():
            if "gamma" in name:
                p.uniform_(0.5, 1.0)
    return model


def batch(px: int = 12, dates: int = 4, b: int = 1):
    g = torch.Generator().manual_seed(1)
    inputs = {"s2": torch.randn(b, dates, 10, px, px, generator=g), "s1": torch.randn(b, dates, 3, px, px, generator=g)}
    days = {n: torch.sort(torch.randint(1, 366, (b, dates), generator=g).float()).values for n in inputs}
    return inputs, days


def test_patch_and_dense_levels_from_one_pass():
    model = tiny()
    inputs, days = batch()
    with torch.no_grad():
        feats = model.forward_features(inputs, days, patch_size_m=40, cells=4)
        patch_alone = model(inputs, days, patch_size_m=40)
        fine_alone = model(inputs, days, patch_size_m=40, output_side=12)
    assert feats.patch.shape == (1, 3, 3, 192) and feats.tile.shape == (1, 192) and feats.local.shape == (1, 3, 3, 192)
    assert feats.dense.shape == (1, 12, 12, 384)
    # the cross block's queries are independent: one pass gives what two separate calls give
    torch.testing.assert_close(feats.patch, patch_alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats.dense[..., 192:], fine_alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats.dense[:, ::4, ::4, :192], feats.patch)
    assert not torch.allclose(fine_alone[:, 0, 0], fine_alone[:, 0, 1], atol=1e-3), "cells of a patch differ"


def test_output_resolution_sets_the_dense_grid():
    model = tiny()
    inputs, days = batch()
    assert model.dense_layout(["s2", "s1"], 40.0)[1] == 4  # default: the finest input's pixel (10 m)
    model.output_resolution_m = 20.0
    assert model.dense_layout(["s2", "s1"], 40.0)[1] == 2
    with torch.no_grad():
        assert model.features(inputs, days, patch_size_m=40, dense="s2").dense.shape == (1, 6, 6, 384)
    model.output_resolution_m = 15.0
    with pytest.raises(EngineError, match="does not divide the 40 m patch"):
        model.dense_layout(["s2"], 40.0)


def test_clear_messages_for_rectangles_padding_and_missing_dates():
    model = tiny()
    inputs, days = batch()
    with pytest.raises(EngineError, match="square tiles"):
        model({"s2": inputs["s2"][..., :8]}, {"s2": days["s2"]}, patch_size_m=40)
    with pytest.raises(EngineError, match="needs its dates"):
        model(inputs, {"s2": days["s2"]}, patch_size_m=40)
    with pytest.raises(EngineError, match="whole number of 4-pixel patches"):
        model({"s2": inputs["s2"][..., :10, :10]}, {"s2": days["s2"]}, patch_size_m=40)


def test_masked_dates_are_left_out_per_sample():
    model = tiny()
    inputs, days = batch(b=2)
    mask = torch.tensor([[True, True, False, True], [True, True, True, True]])
    with torch.no_grad():
        masked = model.forward_features(inputs, days, {"s2": mask}, patch_size_m=40)
        first = model.forward_features(
            {"s2": inputs["s2"][:1, [0, 1, 3]], "s1": inputs["s1"][:1]},
            {"s2": days["s2"][:1, [0, 1, 3]], "s1": days["s1"][:1]},
            patch_size_m=40,
        )
        second = model.forward_features(
            {n: t[1:] for n, t in inputs.items()}, {n: t[1:] for n, t in days.items()}, patch_size_m=40
        )
    torch.testing.assert_close(masked.patch, torch.cat([first.patch, second.patch]), atol=1e-5, rtol=1e-5)


def test_any_number_of_dates_and_sensor_subsets():
    model = tiny()
    for dates in (1, 3, 9):
        inputs, days = batch(dates=dates)
        with torch.no_grad():
            out = model({"s1": inputs["s1"]}, {"s1": days["s1"]}, patch_size_m=20)
        assert out.shape == (1, 6, 6, 192) and torch.isfinite(out).all()


def test_a_users_sensor_by_wavelength_needs_no_code():
    model = tiny()
    # a 5-band multispectral camera at 3 m nobody trained on, bands given in nanometres
    camera = describe_sensor("my_camera", ["475nm", "560nm", "668nm", "717nm", "842nm"], 3.0)
    model.add_sensor(camera)
    assert camera.spec.bands == ("475nm", "560nm", "668nm", "717nm", "842nm") and camera.sub_px == 1
    x = torch.randn(1, 5, 40, 40)
    with torch.no_grad():
        out = model({"my_camera": x}, patch_size_m=30)
        shifted = replace(camera, channels=(0.49, 0.56, 0.665, 0.705, 0.865))
        model.add_sensor(shifted)
        other = model({"my_camera": x}, patch_size_m=30)
    assert out.shape == (1, 4, 4, 192)
    assert not torch.allclose(out, other), "the wavelengths are read"
    radar = describe_sensor("my_sar", ["HH", "HV", "HH/HV"], 20.0, series=True)
    assert radar.channels == ("HH", "HV", "Ratio_HH_HV")
    with pytest.raises(EngineError, match="micrometres"):
        describe_sensor("bad", [665, 560], 10.0)
    with pytest.raises(EngineError, match="neither a wavelength"):
        describe_sensor("bad", ["red"], 10.0)


def test_checkpoint_round_trip(tmp_path):
    from engine.models.checkpoint import save_checkpoint

    model = tiny()
    inputs, days = batch()
    path = save_checkpoint(tmp_path / "u.safetensors", model, provenance={"weights": "random, for tests"})
    loaded = load_checkpoint(path).model
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs, days, patch_size_m=40), model(inputs, days, patch_size_m=40))


def published_layout(folder: Path, seed: int = 3) -> tuple[UniverSat, bytes]:
    """A Tiny model written as the hub publishes the Base: config.json + model.safetensors (``model.`` keys)."""
    torch.manual_seed(seed)
    model = UniverSat(universat_config("tiny"))
    state = to_release_state(model)
    state["model.projector__tsaits_s2.0.weight"] = torch.zeros(4, 4)  # a training-only key, to be dropped
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"size": "tiny", "modalities_dict": {"tsaits": ["s2"]}}))
    save_file(state, str(folder / "model.safetensors"))
    return model, (folder / "model.safetensors").read_bytes()


def test_hub_layout_key_mapping(tmp_path):
    model, _ = published_layout(tmp_path / "hub")
    loaded, dropped = load_hub_folder(tmp_path / "hub")
    assert dropped == ["model.projector__tsaits_s2.0.weight"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    (tmp_path / "hub" / "config.json").write_text(json.dumps({"size": "huge"}))
    with pytest.raises(EngineError, match="size 'huge'"):
        load_hub_folder(tmp_path / "hub")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    root = tmp_path / "served"
    model, _ = published_layout(root / REPOSITORY / "resolve" / "main")
    entry = replace(
        downloads.DOWNLOADS["universat-base"], name="universat-test", repository=REPOSITORY, size="tiny", sha256=""
    )
    monkeypatch.setitem(downloads.DOWNLOADS, "universat-test", entry)
    with serving(root, tree=True) as server:
        yield server, model, root / REPOSITORY / "resolve" / "main"


def test_fetch_records_the_hash_then_refuses_a_different_file(hub, tmp_path):
    server, model, published = hub
    base = f"http://127.0.0.1:{server.server_address[1]}"
    folder = tmp_path / "models"
    params = {"name": "universat-test", "folder": str(folder), "hub_url": base}
    result = run_operation("fetch-model", params, Reporter())
    checkpoint = folder / "universat-test.safetensors"
    assert result["output"] == str(checkpoint) and result["converted"] and result["dropped_keys"] == 1
    recorded = json.loads((folder / PINS_FILE).read_text())["universat-test"]
    assert result["sha256"] == recorded and result["sha256_source"] == "recorded at first download"
    meta = read_metadata(checkpoint)
    assert meta["provenance"]["reference_sha256"] == recorded and meta["provenance"]["licence"] == "MIT"
    loaded = load_checkpoint(checkpoint).model
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    assert not (folder / "downloads" / "universat-test").exists(), "downloads removed after conversion"
    again = run_operation("fetch-model", params, Reporter())
    assert again["converted"] is False, "a second run with the checkpoint in place returns at once"
    # the publisher's file changes: the recorded hash refuses it
    published_layout(published, seed=4)
    with pytest.raises(EngineError, match="sha256"):
        run_operation("fetch-model", {**params, "force": True}, Reporter())
    assert load_checkpoint(checkpoint).model.state_dict().keys() == loaded.state_dict().keys()


def test_models_json_lists_universat_base():
    from engine.models.catalog import catalog_rows

    rows = {r["name"]: r for r in catalog_rows()}
    row = rows["universat-base"]
    assert row["architecture"] == "universat" and row["licence"] == "MIT" and row["status"] == "downloadable"
    assert "s2" in row["modalities"] and "enmap" in row["modalities"] and row["sha256"] is None


@pytest.mark.skipif(
    not os.environ.get("UNIVERSAT_REFERENCE"),
    reason="set UNIVERSAT_REFERENCE to a checkout of the reference repository",
)
def test_equal_to_the_reference_code():
    from engine.bench.universat_reference import compare

    result = compare(os.environ["UNIVERSAT_REFERENCE"], ("tiny",), log=lambda *_: None)
    assert result["all_equal"], result


def _write_stack(folder: Path, width: int = 24, height: int = 16, dates: int = 3) -> None:
    import numpy as np

    from tests.engine.rasters import write_geotiff

    rng = np.random.default_rng(0)
    for name, bands in (("s2", 10), ("s1", 3)):
        (folder / name).mkdir(parents=True)
        for t in range(dates):
            write_geotiff(
                folder / name / f"{name}_2021{t + 3:02d}15.tif",
                rng.normal(size=(bands, height, width)).astype(np.float32),
            )
    # a user's sensor at 20 m: 5 bands described by their wavelengths
    write_geotiff(folder / "cam.tif", rng.normal(size=(5, height // 2, width // 2)).astype(np.float32), pixel=20.0)


def test_maps_a_rectangle_at_10_m_with_a_users_sensor(tmp_path):
    """Tiled mapping of a 240 x 160 m area (not square) with S2 + S1 (3 dates) + a sensor given by wavelengths:
    a class map at 10 m from a dense head, and the dense embeddings, per 10 m cell."""
    import numpy as np
    import rasterio

    from engine.models.checkpoint import save_checkpoint
    from engine.models.heads import HeadConfig, build_head

    _write_stack(tmp_path)
    model = tiny()
    torch.manual_seed(0)
    head = build_head(HeadConfig("dense", 2 * model.embed_dim, 3))
    ckpt = save_checkpoint(
        tmp_path / "u.safetensors",
        model,
        head=head,
        classes=["a", "b", "c"],
        provenance={"weights": "random, for tests"},
    )
    job = {
        "model": str(ckpt),
        "patch_size": 40,
        "tile_size": 160,
        "overlap": 40,
        "device": "cpu",
        "threads": 1,
        "modalities": {
            "s2": {"files": "s2"},
            "s1": {"files": "s1"},
            "cam": {"files": "cam.tif", "sensor": {"wavelengths": [0.47, 0.56, 0.66, 0.72, 0.84], "resolution": 20}},
        },
        "outputs": {"classes": "classes.tif", "embeddings": "emb.tif", "embeddings_level": "dense"},
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    result = run_operation("classify", {"job": str(tmp_path / "job.json")}, Reporter())
    assert result["windows"] >= 2
    with rasterio.open(tmp_path / "classes.tif") as c, rasterio.open(tmp_path / "emb.tif") as e:
        assert c.res == pytest.approx((10.0, 10.0)) and (c.width, c.height) == (24, 16)
        assert e.res == pytest.approx((10.0, 10.0)) and (e.width, e.height, e.count) == (24, 16, 384)
        classes, emb = c.read(1), e.read()
    assert set(np.unique(classes)) <= {0, 1, 2} and np.isfinite(emb).all()
    patch_half, cell_half = emb[:192], emb[192:]
    # the patch half is constant over each 40 m patch (4 x 4 cells), the cell half is not
    assert np.allclose(patch_half[:, 0:4, 0:4], patch_half[:, :1, :1], atol=1e-4)
    assert not np.allclose(cell_half[:, 0, 0], cell_half[:, 0, 1], atol=1e-3)


def test_fit_and_apply_a_probe_on_real_sentinel2(tmp_path, shared_data):
    """Few labels with UniverSat: a job's tiled embeddings (eo-learn's five real dates, 4 bands), a probe, a map."""
    import rasterio

    from engine.models.checkpoint import save_checkpoint
    from tests.engine.raster_fixtures import eolearn_s2_files

    files = eolearn_s2_files(shared_data, tmp_path / "s2")
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "u.safetensors", UniverSat(universat_config("tiny", ("s2_4band",))))
    job = {
        "model": str(tmp_path / "u.safetensors"),
        "modalities": {"s2_4band": {"files": [str(f) for f in files]}},
        "outputs": {"embeddings": str(tmp_path / "emb.tif")},
        "patch_size": 40,
        "tile_size": 400,
        "threads": 1,
        "precision": "fp32",
        "normalization": {"s2_4band": {"bands": ["B2", "B3", "B4", "B8"], "mean": [0.1] * 4, "std": [0.05] * 4}},
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
    assert 0.0 <= fit["macro_f1"] <= 1.0 and fit["validation_cells"] > 50
    apply_job = dict(job, outputs={"classes": str(tmp_path / "classes.tif")})
    run_operation("apply-probe", {"probe": str(tmp_path / "probe.safetensors"), "embeddings": apply_job})
    with rasterio.open(tmp_path / "classes.tif") as ds, rasterio.open(tmp_path / "fit_classes.tif") as fitted:
        # fit writes its classes on the 40 m patch grid, apply on the 10 m output grid (4 x 4 pixels a patch)
        assert fitted.shape == (25, 25) and ds.shape == (100, 100)
        assert (ds.read(1)[::4, ::4] == fitted.read(1)).mean() > 0.99


def test_plan_only_then_files_fetched_by_another_tool(hub, tmp_path):
    """The plugin downloads with QGIS's network stack: plan-only names both files, then fetch-model converts."""
    import shutil

    server, model, published = hub
    base = f"http://127.0.0.1:{server.server_address[1]}"
    params = {"name": "universat-test", "folder": str(tmp_path / "models"), "hub_url": base}
    plan = run_operation("fetch-model", {**params, "plan_only": True}, Reporter())
    assert [Path(f["url"]).name for f in plan["files"]] == ["config.json", "model.safetensors"]
    assert plan["sha256"] is None and plan["sha256_source"].startswith("none yet") and not plan["ready"]
    for item in plan["files"]:  # "another tool": a plain copy of the published files
        Path(item["download"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(published / Path(item["url"]).name, item["download"])
    requests = len(server.requests)
    result = run_operation("fetch-model", params, Reporter())
    assert result["converted"] and not result["downloaded"] and len(server.requests) == requests
    assert run_operation("fetch-model", {**params, "plan_only": True}, Reporter())["ready"]
