"""The Processing algorithms inside QGIS (pytest-qgis, offscreen)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
)

from omnisat_qgis.provider import PROVIDER_ID, OmniSatProvider


@pytest.fixture(scope="module")
def provider(qgis_processing):
    provider = OmniSatProvider()
    registry = QgsApplication.processingRegistry()
    registry.addProvider(provider)
    yield provider
    registry.removeProvider(provider)


def run_algorithm(name: str, params: dict, feedback: QgsProcessingFeedback | None = None) -> dict:
    algorithm = QgsApplication.processingRegistry().createAlgorithmById(f"{PROVIDER_ID}:{name}")
    assert algorithm is not None, f"{PROVIDER_ID}:{name} is not registered"
    context = QgsProcessingContext()
    feedback = feedback or QgsProcessingFeedback()
    results, ok = algorithm.run(params, context, feedback)
    assert ok, "algorithm.run reported failure"
    return results


def test_ids_are_stable_and_lowercase(provider):
    ids = [alg.id() for alg in provider.algorithms()]
    assert "omnisat:normalizedindex" in ids
    assert all(i == i.lower() for i in ids)


def test_normalized_index_output(provider, small_raster: Path, tmp_path: Path):
    out = tmp_path / "ndvi.tif"
    results = run_algorithm(
        "normalizedindex", {"INPUT": str(small_raster), "BAND_A": 4, "BAND_B": 3, "OUTPUT": str(out)}
    )
    assert results["OUTPUT"] == str(out)
    layer = QgsRasterLayer(str(out), "ndvi")
    source = QgsRasterLayer(str(small_raster), "src")
    assert layer.isValid()
    assert layer.crs().authid() == "EPSG:32633"
    assert layer.extent() == source.extent()
    provider_ = layer.dataProvider()
    block = provider_.block(1, layer.extent(), layer.width(), layer.height())
    assert block.value(5, 5) == pytest.approx((50 - 30) / 80)
    assert block.isNoData(0, 0)


def test_engine_error_becomes_processing_exception(provider, small_raster: Path, tmp_path: Path):
    out = tmp_path / "missing-folder" / "o.tif"
    algorithm = QgsApplication.processingRegistry().createAlgorithmById(f"{PROVIDER_ID}:normalizedindex")
    with pytest.raises(QgsProcessingException, match="does not exist: create"):
        algorithm.processAlgorithm(
            {"INPUT": str(small_raster), "BAND_A": 4, "BAND_B": 3, "OUTPUT": str(out)},
            QgsProcessingContext(),
            QgsProcessingFeedback(),
        )


def test_missing_worker_python_setting(provider, small_raster: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("OMNISAT_PYTHON", str(tmp_path / "nowhere" / "python"))
    algorithm = QgsApplication.processingRegistry().createAlgorithmById(f"{PROVIDER_ID}:normalizedindex")
    with pytest.raises(QgsProcessingException, match="OMNISAT_PYTHON"):
        algorithm.processAlgorithm(
            {"INPUT": str(small_raster), "BAND_A": 4, "BAND_B": 3, "OUTPUT": str(tmp_path / "o.tif")},
            QgsProcessingContext(),
            QgsProcessingFeedback(),
        )


def test_cancel_from_feedback_leaves_no_output(provider, slow_raster: Path, tmp_path: Path):
    out = tmp_path / "cancelled.tif"
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda percent: feedback.cancel() if percent > 0 else None)
    algorithm = QgsApplication.processingRegistry().createAlgorithmById(f"{PROVIDER_ID}:normalizedindex")
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        algorithm.processAlgorithm(
            {"INPUT": str(slow_raster), "BAND_A": 1, "BAND_B": 2, "OUTPUT": str(out)}, QgsProcessingContext(), feedback
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow.tif"]
    np.testing.assert_equal(feedback.isCanceled(), True)
