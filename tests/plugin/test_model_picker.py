"""The Processing dialogs' model picker (the catalog listed by the worker, cached), the checks made
before the worker starts, and Classify / Apply probe taking the input layers with a probe."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import rasterio
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback

from omnisat_qgis import model_catalog, settings
from omnisat_qgis.paths import resources_dir
from omnisat_qgis.provider import PROVIDER_ID
from tests.engine.ops.test_fit_features import keeping, scene  # noqa: F401 - fixture
from tests.plugin.test_processing import provider, run_algorithm  # noqa: F401 - fixture

SHIPPED = sorted(p.stem for p in (resources_dir() / "models").glob("*.safetensors"))


@pytest.fixture
def models_folder(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setattr(settings, "models_folder", lambda: folder)
    monkeypatch.setattr(model_catalog, "_memory", {})
    return folder


def algorithm(name: str):
    found = QgsApplication.processingRegistry().createAlgorithmById(f"{PROVIDER_ID}:{name}")
    assert found is not None, name
    return found


def model_options(name: str) -> list[str]:
    alg = algorithm(name)  # owns its parameter definitions: keep it alive while reading them
    return list(alg.parameterDefinition("MODEL").options())


def test_the_picker_lists_the_catalog_from_the_worker_and_follows_the_models_folder(
    provider, models_folder, monkeypatch
):  # noqa: F811
    options = model_options("classify")
    assert set(SHIPPED) <= set(options) and "anysat-base" in options  # downloadable: only the worker knows it
    assert (models_folder / model_catalog.CACHE_FILE).is_file()
    calls = []
    monkeypatch.setattr(model_catalog, "_worker_rows", lambda folders: calls.append(folders) or [])
    monkeypatch.setattr(model_catalog, "_memory", {})
    assert model_options("embed") == options and not calls  # the cache served
    monkeypatch.undo()
    monkeypatch.setattr(settings, "models_folder", lambda: models_folder)
    shutil.copy(resources_dir() / "models" / "anysat-tiny.safetensors", models_folder / "my-area.safetensors")
    assert "my-area" in model_options("applyprobe")  # a new file: listed again


def test_without_a_working_engine_the_picker_reads_the_headers(provider, models_folder, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OMNISAT_PYTHON", str(models_folder / "no-python"))
    assert sorted(model_options("classify")) == SHIPPED
    assert not (models_folder / model_catalog.CACHE_FILE).exists()  # the worker's list replaces it later


def test_checks_before_the_worker_starts(provider, models_folder, small_raster, tmp_path):  # noqa: F811
    classify, context = algorithm("classify"), QgsProcessingContext()
    base = {"LAYERS_1": str(small_raster), "CLASSES": str(tmp_path / "c.tif")}
    ok, message = classify.checkParameterValues(base | {"MODEL": "omnisat-small", "MODALITY_1": "sentinel2"}, context)
    assert not ok and "'sentinel2' is not a sensor of the model omnisat-small; valid names: aerial" in message
    assert "s2 (Sentinel-2 time series)" in message
    ok, message = classify.checkParameterValues(base | {"MODEL": "anysat-base", "MODALITY_1": "s2"}, context)
    assert not ok and "not downloaded yet" in message and "Download an official model" in message
    # A checkpoint path given as MODEL (scripts, the dock) is read as the model file.
    path = str(resources_dir() / "models" / "omnisat-small.safetensors")
    ok, message = classify.checkParameterValues(base | {"MODEL": path, "MODALITY_1": "s9"}, context)
    assert not ok and "'s9' is not a sensor of the model omnisat-small" in message
    ok, message = classify.checkParameterValues(
        base | {"MODEL": "omnisat-small", "MODEL_FILE": path, "MODALITY_1": "s2"}, context
    )
    assert not ok and "not both" in message
    assert classify.checkParameterValues(base | {"MODEL": "omnisat-small", "MODALITY_1": "s2"}, context)[0]
    apply = algorithm("applyprobe")
    ok, message = apply.checkParameterValues({"PROBE": path, "CLASSES": str(tmp_path / "c.tif")}, context)
    assert not ok and "Give one of EMBEDDINGS_RASTER" in message


def test_technical_parameters_are_advanced_and_the_help_speaks_to_analysts(provider):  # noqa: F811
    from qgis.core import Qgis

    for name in ("classify", "embed", "applyprobe", "fitprobe"):
        alg = algorithm(name)
        for technical in ("JOB", "EMBEDDINGS_LEVEL", "BATCH_SIZE", "DEVICE", "PRECISION"):
            definition = alg.parameterDefinition(technical)
            if definition is not None and (name, technical) != ("embed", "EMBEDDINGS_LEVEL"):  # embed's own choice
                assert definition.flags() & Qgis.ProcessingParameterFlag.Advanced, (name, technical)
        assert "slots." not in alg.shortHelpString() and "job.model" not in alg.shortHelpString()
    fit = algorithm("fitprobe")
    assert fit.parameterDefinition("CLASS_FIELD").parentLayerParameterName() == "LABELS"
    assert fit.parameterDefinition("IGNORE_VALUES") is not None


def test_classify_and_apply_probe_take_the_layers_with_a_probe(provider, scene, tmp_path, models_folder):  # noqa: F811
    from engine.runtime.registry import run_operation

    folder, job, labels, truth = scene
    probe = str(tmp_path / "probe.safetensors")
    run_operation(
        "fit-probe",
        {"labels": labels, "embeddings": keeping(job, tmp_path), "output": probe, "folds": 2, "learning_curve": False},
    )
    layers = job["modalities"]["s2"]["files"]
    common = {
        "MODEL_FILE": job["model"],
        "MODALITY_1": "s2",
        "LAYERS_1": layers,
        "TILE_SIZE": 80,
        "DEVICE": "cpu",
        "PRECISION": "fp32",
    }
    classify = algorithm("classify")
    params = classify.engine_params(
        common | {"PROBE": probe, "CLASSES": str(tmp_path / "c.tif")}, QgsProcessingContext(), QgsProcessingFeedback()
    )
    assert params["probe"] == probe and params["job"]["modalities"]["s2"]["files"] == layers
    run_algorithm("classify", common | {"PROBE": probe, "CLASSES": str(tmp_path / "one_pass.tif")})
    run_algorithm("applyprobe", common | {"PROBE": probe, "CLASSES": str(tmp_path / "applied.tif")})
    run_operation(
        "apply-probe",
        {"probe": probe, "embeddings": str(tmp_path / "embeddings.tif"), "classes": str(tmp_path / "two_pass.tif")},
    )
    maps = {}
    for name in ("one_pass", "applied", "two_pass"):
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            maps[name] = ds.read(1)
    assert (maps["one_pass"] == maps["two_pass"]).all() and (maps["applied"] == maps["two_pass"]).all()
    assert (maps["one_pass"] == truth).mean() > 0.9
    # no embeddings raster beside the maps: only the fit's own
    assert sorted(p.name for p in Path(tmp_path).glob("*.tif")) == [
        "applied.tif",
        "embeddings.tif",
        "one_pass.tif",
        "two_pass.tif",
    ]


def test_a_job_file_naming_a_model_gets_its_file(provider, models_folder, small_raster, tmp_path):  # noqa: F811
    import json

    models_folder.mkdir()
    shutil.copy(resources_dir() / "models" / "anysat-tiny.safetensors", models_folder / "mine.safetensors")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"model": "mine", "modalities": {"s2": {"files": str(small_raster)}}}))
    params = algorithm("classify").engine_params(
        {"JOB": str(job), "CLASSES": str(tmp_path / "c.tif")}, QgsProcessingContext(), QgsProcessingFeedback()
    )
    assert params["job"]["model"] == str(models_folder / "mine.safetensors")
