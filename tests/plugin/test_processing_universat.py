"""The Processing mapping algorithms with a UniverSat checkpoint (Tiny, random weights) on the real eo-learn
Sentinel-2 layers: the output resolution (RESOLUTION) and a sensor described by its wavelengths
(WAVELENGTHS_i, PIXEL_SIZE_i) checked before the worker starts, and an embeddings raster at 10 m per cell
from a listed sensor plus a described one (pytest-qgis, offscreen)."""

from __future__ import annotations

import re

import pytest
from qgis.core import Qgis, QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsRasterLayer

from omnisat_qgis.paths import resources_dir
from omnisat_qgis.provider import PROVIDER_ID, OmniSatProvider
from tests.plugin.scenes import write_scene
from tests.plugin.test_dock_universat import write_universat

OMNISAT = str(resources_dir() / "models" / "omnisat-small.safetensors")


@pytest.fixture(scope="module")
def scene(shared_data, tmp_path_factory):
    root = write_scene(shared_data, tmp_path_factory.mktemp("universat-processing"))
    write_universat(root / "universat-tiny-random.safetensors")
    return root


@pytest.fixture(scope="module")
def algorithms(qgis_processing):
    provider = OmniSatProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    yield lambda name: QgsApplication.processingRegistry().createAlgorithmById(f"{PROVIDER_ID}:{name}")
    QgsApplication.processingRegistry().removeProvider(provider)


def test_parameters_are_checked_before_the_worker_starts(algorithms, scene, tmp_path):
    dates = sorted(str(p) for p in (scene / "s2").glob("*.tif"))
    universat = str(scene / "universat-tiny-random.safetensors")
    base = {"MODALITY_1": "s2", "LAYERS_1": dates, "CLASSES": str(tmp_path / "c.tif")}
    context = QgsProcessingContext()
    for name in ("classify", "embed"):
        algorithm = algorithms(name)  # kept alive while its definitions are read
        assert "UniverSat" in algorithm.parameterDefinition("RESOLUTION").description()
        advanced = algorithm.parameterDefinition("WAVELENGTHS_1").flags() & Qgis.ProcessingParameterFlag.Advanced
        assert advanced
    classify = algorithms("classify")
    refused = {
        "only by UniverSat models": base | {"MODEL_FILE": OMNISAT, "RESOLUTION": 10},
        "finer than the finest input's pixels \\(10 m\\)": base | {"MODEL_FILE": universat, "RESOLUTION": 5},
        "must divide the model's 40 m patch": base | {"MODEL_FILE": universat, "RESOLUTION": 15},
        "WAVELENGTHS_2: a sensor described by its wavelengths is read only by UniverSat": base
        | {"MODEL_FILE": OMNISAT, "LAYERS_2": dates[:1], "WAVELENGTHS_2": "490,560", "PIXEL_SIZE_2": 10},
        "MODALITY_2: leave it empty": base
        | {"MODEL_FILE": universat, "MODALITY_2": "s1", "LAYERS_2": dates[:1], "WAVELENGTHS_2": "490"},
        "PIXEL_SIZE_2: give the pixel size": base
        | {"MODEL_FILE": universat, "LAYERS_2": dates[:1], "WAVELENGTHS_2": "490"},
        "WAVELENGTHS_2, band 2: 'green' is neither a wavelength": base
        | {"MODEL_FILE": universat, "LAYERS_2": dates[:1], "WAVELENGTHS_2": "490,green", "PIXEL_SIZE_2": 10},
    }
    for message, params in refused.items():
        ok, text = classify.checkParameterValues(params, context)
        assert not ok, message
        assert re.search(message, text), (message, text)
    ok, text = classify.checkParameterValues(base | {"MODEL_FILE": universat, "RESOLUTION": 20}, context)
    assert ok, text


def test_embeddings_per_10_m_cell_with_a_described_sensor(algorithms, scene, tmp_path):
    dates = sorted(str(p) for p in (scene / "s2").glob("*.tif"))
    params = {
        "MODEL_FILE": str(scene / "universat-tiny-random.safetensors"),
        "MODALITY_1": "s2",
        "LAYERS_1": dates[:2],
        # the third date's red, green, blue and near infrared as a camera the model does not list
        "LAYERS_2": dates[2:],
        "WAVELENGTHS_2": "490,560,665,,,,842",
        "PIXEL_SIZE_2": 10,
        "RESOLUTION": 10,
        "EMBEDDINGS_LEVEL": "dense",
        "PRECISION": "fp32",
        "EMBEDDINGS": str(tmp_path / "emb.tif"),
    }
    embed = algorithms("embed")
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    ok, text = embed.checkParameterValues(params, context)
    assert ok, text
    job = embed.engine_params(params, context, feedback)["job"]
    assert job["resolution"] == 10 and job["modalities"]["other2"] == {
        "files": dates[2:],
        "sensor": {"wavelengths": [0.49, 0.56, 0.665, 0.842], "resolution": 10.0, "series": False},
        "bands": [1, 2, 3, 7],
    }
    results, ok = embed.run(params, context, feedback)
    assert ok
    layer = QgsRasterLayer(results["EMBEDDINGS"], "emb")
    source = QgsRasterLayer(dates[0], "s2")
    assert layer.rasterUnitsPerPixelX() == pytest.approx(10.0) and layer.bandCount() == 2 * 192
    # the 1000 x 1010 m input (not square) holds 25 x 25 whole 40 m patches: 100 x 100 cells of 10 m
    assert (source.width(), source.height()) == (100, 101) and (layer.width(), layer.height()) == (100, 100)


def test_one_date_and_a_rectangle_not_square(algorithms, scene, tmp_path):
    """A series of one date, a tall drawn rectangle (400 x 800 m), and none of the model's other 19 sensors."""
    first = sorted(str(p) for p in (scene / "s2").glob("*.tif"))[0]
    source = QgsRasterLayer(first, "s2")
    left, top = source.extent().xMinimum(), source.extent().yMaximum()
    params = {
        "MODEL_FILE": str(scene / "universat-tiny-random.safetensors"),
        "MODALITY_1": "s2",
        "LAYERS_1": [first],
        "EXTENT": f"{left},{left + 400},{top - 800},{top} [{source.crs().authid()}]",
        "PRECISION": "fp32",
        "EMBEDDINGS": str(tmp_path / "emb.tif"),
    }
    results = algorithms("embed").processAlgorithm(params, QgsProcessingContext(), QgsProcessingFeedback())
    layer = QgsRasterLayer(results["EMBEDDINGS"], "emb")
    assert (layer.width(), layer.height(), layer.bandCount()) == (10, 20, 192)  # 40 m patches
    assert layer.rasterUnitsPerPixelX() == pytest.approx(40.0)
