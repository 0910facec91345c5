"""The Processing dialogs guide (issue 22): sensors offered as a list and checked against the chosen
model, the model picker in the dock's order saying what is installed, fitprobe's defaults equal to
the dock's, and a help text for every advanced parameter (the embedding levels explained)."""

from __future__ import annotations

from qgis.core import Qgis, QgsApplication, QgsProcessingContext, QgsProcessingParameterEnum

from omnisat_qgis.provider import PROVIDER_ID
from tests.plugin.test_model_picker import algorithm, models_folder  # noqa: F401 - fixture
from tests.plugin.test_processing import provider  # noqa: F401 - fixture


def test_sensors_are_a_list_checked_against_the_chosen_model(
    provider,
    models_folder,
    small_raster,  # noqa: F811
    tmp_path,
):
    classify, context = algorithm("classify"), QgsProcessingContext()
    sensor = classify.parameterDefinition("MODALITY_1")
    assert isinstance(sensor, QgsProcessingParameterEnum) and sensor.usesStaticStrings()
    assert {"aerial", "s2", "s1_asc"} <= set(sensor.options())
    base = {"LAYERS_1": str(small_raster), "CLASSES": str(tmp_path / "c.tif")}
    ok, message = classify.checkParameterValues(base | {"MODEL": "omnisat-small", "MODALITY_1": "l8"}, context)
    assert not ok and "'l8' is not a sensor of the model omnisat-small" in message
    ok, message = classify.checkParameterValues({"MODEL": "omnisat-small", "CLASSES": str(tmp_path / "c.tif")}, context)
    assert not ok and "Give the layers of at least one sensor" in message
    assert classify.checkParameterValues(base | {"MODEL": "omnisat-small", "MODALITY_1": "s2"}, context)[0]


def test_the_model_picker_says_what_is_installed_in_the_docks_order(provider, models_folder):  # noqa: F811
    classify = algorithm("classify")
    model = classify.parameterDefinition("MODEL")
    options = list(model.options())
    # installed first (in the dock's order), then the official models not downloaded yet, in the catalog's order
    assert options[:2] == ["anysat-tiny", "omnisat-small"] and options[-2:] == ["anysat-base", "universat-base"]
    assert "installed: anysat-tiny, omnisat-small" in model.description()
    assert "not downloaded yet: anysat-base" in model.description()


def test_fitprobe_defaults_are_the_docks(provider):  # noqa: F811
    fit = algorithm("fitprobe")
    assert fit.parameterDefinition("LEARNING_CURVE").defaultValue() is False
    assert fit.parameterDefinition("REPORT").createByDefault()
    assert fit.parameterDefinition("CLASSES").createByDefault()


def test_every_advanced_parameter_has_a_help_text(provider):  # noqa: F811
    missing = []
    for alg in QgsApplication.processingRegistry().providerById(PROVIDER_ID).algorithms():
        alg = QgsApplication.processingRegistry().createAlgorithmById(alg.id())
        for parameter in alg.parameterDefinitions():
            if parameter.flags() & Qgis.ProcessingParameterFlag.Advanced and not parameter.help().strip():
                missing.append(f"{alg.id()}:{parameter.name()}")
        if "EMBEDDINGS_LEVEL" in [p.name() for p in alg.parameterDefinitions()]:
            text = alg.shortHelpString()
            assert all(f"{level}:" in text for level in ("patch", "local", "both", "dense", "tile")), alg.id()
    assert not missing, missing
