"""The analyst's workflows through qgis_process with the packaged plugin, on real data:
embed a real Sentinel-2 series with an OmniSat model, fit a probe on the eo-learn land-cover
polygons, apply it, classify directly, and detect change."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.plugin.scenes import write_scene
from tests.plugin.test_qgis_process import qgis_env, qgis_process  # noqa: F401 - fixture

pytestmark = [pytest.mark.qgis_process, pytest.mark.slow]


@pytest.fixture(scope="module")
def workspace(shared_data, tmp_path_factory) -> Path:
    """Three real Sentinel-2 dates (10 bands, named by date) and an OmniSat checkpoint (random weights)."""
    return write_scene(shared_data, tmp_path_factory.mktemp("workflow"))


def s2_layers(workspace: Path) -> list[Path]:
    return sorted((workspace / "s2").glob("*.tif"))


def run(env, algorithm: str, **params) -> dict:
    # qgis_process takes a multiple-layer parameter by repeating it.
    args = [
        f"{key}={item}" for key, value in params.items() for item in (value if isinstance(value, list) else [value])
    ]
    result = qgis_process(env, "--json", "run", f"omnisat:{algorithm}", "--", *args, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout)["results"]


def test_classify_writes_a_styled_class_map(qgis_env, workspace, tmp_path):
    results = run(
        qgis_env,
        "classify",
        MODEL=workspace / "omnisat.safetensors",
        MODALITY_1="s2",
        LAYERS_1=s2_layers(workspace),
        DEVICE="cpu",
        CLASSES=tmp_path / "classes.tif",
        CONFIDENCE=tmp_path / "confidence.tif",
    )
    assert results["CLASSES"] == str(tmp_path / "classes.tif")
    with rasterio.open(tmp_path / "classes.tif") as classes, rasterio.open(tmp_path / "confidence.tif") as conf:
        assert classes.crs.to_epsg() == 32633 and classes.colormap(1)[0][:3] == (0x1B, 0x78, 0x37)
        values = classes.read(1)
        assert set(np.unique(values)) <= {0, 1} and np.isfinite(conf.read(1)).all()
    style = (tmp_path / "classes.qml").read_text()
    assert 'label="green"' in style and 'label="grey"' in style


def test_embed_fit_apply_and_change(qgis_env, workspace, shared_data, tmp_path):
    embeddings = tmp_path / "embeddings.tif"
    run(
        qgis_env,
        "embed",
        MODEL=workspace / "omnisat.safetensors",
        MODALITY_1="s2",
        LAYERS_1=s2_layers(workspace),
        DEVICE="cpu",
        EMBEDDINGS=embeddings,
    )
    with rasterio.open(embeddings) as ds:
        assert ds.count == 256 and ds.crs.to_epsg() == 32633

    labels = shared_data / "eolearn_patch/TestEOPatch/vector_timeless/LULC.gpkg"
    fit = run(
        qgis_env,
        "fitprobe",
        LABELS=labels,
        CLASS_FIELD="LULC_NAME",
        EMBEDDINGS_RASTER=embeddings,
        MODEL=workspace / "omnisat.safetensors",
        OUTPUT=tmp_path / "probe.safetensors",
        REPORT=tmp_path / "report.html",
        CLASSES=tmp_path / "fit_classes.tif",
    )
    assert 0.0 <= fit["OVERALL_ACCURACY"] <= 1.0 and 0.0 <= fit["MACRO_F1"] <= 1.0
    assert (
        "Confusion" in (tmp_path / "report.html").read_text() or "confusion" in (tmp_path / "report.html").read_text()
    )

    applied = run(
        qgis_env,
        "applyprobe",
        PROBE=tmp_path / "probe.safetensors",
        EMBEDDINGS_RASTER=embeddings,
        MODEL=workspace / "omnisat.safetensors",
        CLASSES=tmp_path / "applied.tif",
    )
    with rasterio.open(applied["CLASSES"]) as a, rasterio.open(tmp_path / "fit_classes.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
    assert (tmp_path / "applied.qml").is_file()

    # The same probe applied through a job: the embeddings are computed tile by tile.
    job = {"model": str(workspace / "omnisat.safetensors"), "modalities": {"s2": {"files": "s2"}}, "device": "cpu"}
    (workspace / "job.json").write_text(json.dumps(job))
    run(
        qgis_env,
        "applyprobe",
        PROBE=tmp_path / "probe.safetensors",
        JOB=workspace / "job.json",
        CLASSES=tmp_path / "from_job.tif",
    )
    with rasterio.open(tmp_path / "from_job.tif") as from_job, rasterio.open(tmp_path / "fit_classes.tif") as fitted:
        assert from_job.crs == fitted.crs and from_job.colormap(1) == fitted.colormap(1)
        assert set(np.unique(from_job.read(1))) <= set(range(len(fit["CLASS_NAMES"].split(", ")))) | {255}
    assert (tmp_path / "from_job.qml").is_file()

    change = run(
        qgis_env,
        "change",
        BEFORE_RASTER=embeddings,
        AFTER_RASTER=embeddings,
        MODEL=workspace / "omnisat.safetensors",
        MAGNITUDE=tmp_path / "magnitude.tif",
        CHANGE=tmp_path / "change.tif",
    )
    with rasterio.open(change["MAGNITUDE"]) as magnitude:
        values = magnitude.read(1)
        assert np.nanmax(np.abs(values)) < 1e-5  # identical periods: no change


def test_bad_modality_name_is_a_clear_error(qgis_env, workspace, tmp_path):
    result = qgis_process(
        qgis_env,
        "run",
        "omnisat:classify",
        "--",
        f"MODEL={workspace / 'omnisat.safetensors'}",
        "MODALITY_1=sentinel2",
        *[f"LAYERS_1={p}" for p in s2_layers(workspace)],
        f"CLASSES={tmp_path / 'c.tif'}",
    )
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "sentinel2" in text and "Traceback" not in text
    assert not (tmp_path / "c.tif").exists()
