"""Results that Processing adds to a project are styled by the plugin's layer post-processor:
class map with exactly the model's classes, confidence as a 0..1 grey ramp, embeddings as a
principal-component RGB preview; each with the run recorded in its layer metadata."""

from __future__ import annotations

import pytest
from qgis.core import (
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsSingleBandGrayRenderer,
)

from omnisat_qgis.layer_metadata import engine_version, model_sha256
from tests.plugin.scenes import write_scene
from tests.plugin.test_processing import provider  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scene(shared_data, tmp_path_factory):
    return write_scene(shared_data, tmp_path_factory.mktemp("post"))


def loaded(path) -> QgsRasterLayer:
    found = [layer for layer in QgsProject.instance().mapLayers().values() if layer.source() == str(path)]
    assert len(found) == 1, f"{path} was not added to the project"
    return found[0]


def test_run_and_load_results_styles_every_output(provider, scene, tmp_path):  # noqa: F811 - fixture
    import processing

    classes, confidence = tmp_path / "classes.tif", tmp_path / "confidence.tif"
    layers = sorted(str(p) for p in (scene / "s2").glob("*.tif"))
    processing.runAndLoadResults(
        "omnisat:classify",
        {
            "MODEL": str(scene / "omnisat.safetensors"),
            "MODALITY_1": "s2",
            "LAYERS_1": layers,
            "DEVICE": "cpu",
            "CLASSES": str(classes),
            "CONFIDENCE": str(confidence),
        },
    )

    class_layer = loaded(classes)
    renderer = class_layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [(c.value, c.label, c.color.name()) for c in renderer.classes()] == [
        (0, "green", "#1b7837"),
        (1, "grey", "#999999"),
    ]
    metadata = class_layer.metadata()
    assert "omnisat.safetensors" in metadata.abstract() and "2015-08-20" in metadata.abstract()
    assert metadata.keywords("OmniSat model sha256") == [model_sha256(str(scene / "omnisat.safetensors"))]
    assert metadata.keywords("OmniSat engine version") == [engine_version()]

    gray = loaded(confidence).renderer()
    assert isinstance(gray, QgsSingleBandGrayRenderer)
    assert (gray.contrastEnhancement().minimumValue(), gray.contrastEnhancement().maximumValue()) == (0.0, 1.0)
    # The same style beside the file, for layers opened later and runs by qgis_process.
    assert 'label="green"' in (tmp_path / "classes.qml").read_text()
    assert (tmp_path / "classes.qmd").is_file()


def test_embeddings_get_a_principal_component_preview(provider, scene, tmp_path):  # noqa: F811 - fixture
    import processing

    embeddings = tmp_path / "embeddings.tif"
    processing.runAndLoadResults(
        "omnisat:embed",
        {
            "MODEL": str(scene / "omnisat.safetensors"),
            "MODALITY_1": "s2",
            "LAYERS_1": sorted(str(p) for p in (scene / "s2").glob("*.tif")),
            "DEVICE": "cpu",
            "EMBEDDINGS": str(embeddings),
        },
    )
    raw = loaded(embeddings)
    preview = loaded(tmp_path / "embeddings.pca.tif")
    assert isinstance(preview.renderer(), QgsMultiBandColorRenderer) and preview.bandCount() == 3
    root = QgsProject.instance().layerTreeRoot()
    assert root.findLayer(preview.id()).isVisible() and not root.findLayer(raw.id()).itemVisibilityChecked()
    stats = preview.dataProvider().bandStatistics(1)
    assert stats.maximumValue > stats.minimumValue  # a real projection, not a constant
