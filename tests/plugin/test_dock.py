"""The OmniSat dock in QGIS (pytest-qgis, offscreen) on real eo-learn Sentinel-2 layers: rows per
model modality filled from the project, L1C band mapping, labels layer, fit and preview with
cached embeddings, and a screenshot of the dock beside the styled preview."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from qgis.core import (
    QgsFeature,
    QgsGeometry,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtGui import QColor, QImage, QPainter

from omnisat_qgis.gui.dock import PREVIEW_GROUP, OmniSatDock
from omnisat_qgis.paths import resources_dir
from tests.plugin.scenes import write_scene
from tests.plugin.test_qgis_process import qgis_env  # noqa: F401 - fixture

pytestmark = pytest.mark.slow
MODEL = resources_dir() / "models" / "omnisat-small.safetensors"
# Screenshots go under out/ (never over the tracked docs/dock-preview.png, which a person updates on purpose).
SHOTS = Path(__file__).resolve().parents[2] / "out" / "dock"


@pytest.fixture(scope="module")
def scene(shared_data, tmp_path_factory):
    return write_scene(shared_data, tmp_path_factory.mktemp("dock"))


@pytest.fixture
def dock(qgis_iface, qgis_new_project, scene, tmp_path):
    project = QgsProject.instance()
    project.setFileName(str(tmp_path / "project.qgz"))  # the dock's work folder lies beside the project
    layers = [QgsRasterLayer(str(p), p.stem, "gdal") for p in sorted((scene / "s2").glob("*.tif"))]
    project.addMapLayers(layers)
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(layers[0].crs())
    canvas.resize(QSize(400, 400))
    canvas.setExtent(layers[0].extent())
    widget = OmniSatDock(qgis_iface)
    widget.select_model(str(MODEL))
    yield widget
    widget.cancel()
    wait(widget, check=False)
    widget.release()  # no signal of the project left pointing at it
    widget.deleteLater()


def wait(dock: OmniSatDock, timeout: float = 600, check: bool = True) -> None:
    """Until the dock's task ends; with ``check``, its last message must not be a failure."""
    from qgis.core import QgsApplication

    started = time.monotonic()
    while dock.task is not None:
        QgsApplication.processEvents()
        time.sleep(0.05)
        assert time.monotonic() - started < timeout, "the dock's task did not finish"
    assert not check or not any("failed" in m.lower() or ":" in m and "Error" in m for m in dock.messages[-1:]), (
        dock.messages
    )


def add_labels(dock: OmniSatDock, shared_data: Path, path: Path, keep=lambda i: True) -> QgsVectorLayer:
    """A labels layer made by the dock, with one point inside each eo-learn land-cover polygon."""
    polygons = QgsVectorLayer(str(shared_data / "eolearn_patch/TestEOPatch/vector_timeless/LULC.gpkg"), "lulc", "ogr")
    names = sorted({f["LULC_NAME"] for f in polygons.getFeatures()} - {None, ""})
    dock.class_table.setRowCount(0)
    for name in names:
        dock.add_class(name)
    layer = dock.new_labels_layer(str(path))
    features = []
    for index, polygon in enumerate(polygons.getFeatures()):
        if keep(index):
            feature = QgsFeature(layer.fields())
            feature.setGeometry(QgsGeometry(polygon.geometry().pointOnSurface()))
            feature["class"] = polygon["LULC_NAME"]
            features.append(feature)
    assert layer.addFeatures(features)
    return layer


def test_rows_are_the_models_modalities_filled_from_the_project(dock):
    assert [row.modality.name for row in dock.rows] == ["aerial", "s2", "s1_asc"]
    s2 = dock.rows[1]
    assert [lyr.name() for lyr in s2.checked_layers()] == ["S2_20150820", "S2_20150830", "S2_20150909"]
    # Neither 10 m Sentinel-2 layers for the 0.2 m aerial row, nor layers whose bands are named for another sensor.
    assert dock.rows[0].table.rowCount() == 0 and dock.rows[2].table.rowCount() == 0
    entry = s2.modality_input()
    assert entry.dates == ["2015-08-20", "2015-08-30", "2015-09-09"] and entry.bands is None
    assert s2.verdict.ok and entry.scale is None and not s2.scale_note.isVisibleTo(s2)  # digital numbers: as trained


def test_reflectance_and_db_layers_get_the_engines_conversion(dock, scene):
    reflectance = [QgsRasterLayer(str(p), "refl " + p.stem, "gdal") for p in sorted((scene / "reflectance").glob("*"))]
    s1 = QgsRasterLayer(str(scene / "s1" / "S1_2018_VV_VH_clip.tif"), "S1 Peru", "gdal")
    QgsProject.instance().addMapLayers([*reflectance, s1])
    dock.fill_rows({"s2": {"layers": [lyr.id() for lyr in reflectance]}})
    row = dock.rows[1]
    assert row.verdict.conversion == "reflectance_to_dn" and "reflectance" in row.scale_note.text()
    assert row.convert_box.isVisibleTo(row) and row.convert_box.isChecked()
    assert row.modality_input().job_entry()["scale"] == "reflectance_to_dn"
    row.convert_box.setChecked(False)  # the analyst's choice: no conversion
    assert "scale" not in row.modality_input().job_entry()

    dock.fill_rows({"s2": {"layers": []}, "s1_asc": {"layers": [s1.id()], "dates": {s1.id(): "2018-09-06"}}})
    radar = dock.rows[2]
    assert radar.verdict.conversion == "db_to_linear" and "dB" in radar.scale_note.text()
    assert radar.modality_input().scale == "db_to_linear"


def test_l1c_stack_maps_ten_of_thirteen_bands(dock, scene):
    l1c = [QgsRasterLayer(str(p), p.stem, "gdal") for p in sorted((scene / "l1c").glob("*.tif"))]
    QgsProject.instance().addMapLayers(l1c)
    dock.fill_rows({"s2": {"layers": [lyr.id() for lyr in l1c]}})
    entry = dock.rows[1].modality_input()
    assert entry.bands == [2, 3, 4, 5, 6, 7, 8, 9, 12, 13]
    cell = dock.rows[1].table.item(0, 2)
    assert cell.text() == "10 of 13: 2, 3, 4, 5, 6, 7, 8, 9, 12, 13" and "B8A←9" in cell.toolTip()


def test_the_band_table_is_what_the_job_and_the_engine_see(dock, scene):
    from engine.io.series import resolve_modality
    from engine.models.checkpoint import load_checkpoint

    l1c = [QgsRasterLayer(str(p), p.stem, "gdal") for p in sorted((scene / "l1c").glob("*.tif"))]
    QgsProject.instance().addMapLayers(l1c)
    dock.fill_rows({"s2": {"layers": [lyr.id() for lyr in l1c]}})
    row = dock.rows[1]
    assert row.band_table.rowCount() == 10 and row.band_combo("B8A").currentText() == "9: B8A"
    # OmniSat cannot fill a band: leaving B5 out is refused, and the message says where to fix it.
    row.band_combo("B5").setCurrentText("missing")
    with pytest.raises(Exception, match="lacks B5.*band table"):
        row.modality_input()

    anysat = resources_dir() / "models" / "anysat-tiny.safetensors"
    state = dock.state()
    dock.select_model(str(anysat))
    dock.fill_rows(state["inputs"])  # the saved table comes back with the rows of the new model
    row = dock.rows[[r.modality.name for r in dock.rows].index("s2")]
    assert row.band_combo("B5").currentText() == "missing"
    entry = row.modality_input()
    assert entry.bands == [2, 3, 4, None, 6, 7, 8, 9, 12, 13]
    assert "missing B5: filled by the model" in row.table.item(0, 3).text()
    spec = load_checkpoint(anysat).model.modalities["s2"]
    resolved = resolve_modality("s2", spec, entry.files, entry.dates, entry.job_entry()["bands"])
    assert resolved.missing_bands == ["B5"] and resolved.layers[0].bands == (2, 3, 4, 6, 7, 8, 9, 12, 13)


def test_an_undated_series_layer_is_refused_until_its_date_is_typed(dock):
    row = dock.rows[1]
    row.table.item(0, 1).setText("")
    with pytest.raises(Exception, match="type it in the Date column"):
        row.modality_input()
    row.table.item(0, 1).setText("2015-08-21")
    assert row.modality_input().dates[0] == "2015-08-21"


def test_fit_preview_refit_from_cache_and_screenshot(dock, shared_data, tmp_path):
    labels = add_labels(dock, shared_data, tmp_path / "labels.gpkg", keep=lambda i: i % 2 == 0)
    assert labels.isEditable() and labels.renderer().type() == "categorizedSymbol"
    # Usual land-cover colours by name; a name without one takes the palette's next colour.
    usual = {c.name: c.color for c in dock.classes()}
    assert usual["forest"] == "#1b7837" and usual["artificial surface"] == "#d73027"
    assert usual["cultivated land"] == "#fdae61" and usual["grassland"] == "#a6d96a"
    assert usual["schrubland"] not in [c for n, c in usual.items() if n != "schrubland"]  # distinct all the same
    dock.fit_and_preview()
    assert [s.operation for s in dock.task.steps] == ["embed", "fit-probe"]
    said: list[str] = []
    dock.task.said.connect(said.append, Qt.ConnectionType.QueuedConnection)
    wait(dock)
    assert dock.last_probe is not None, dock.messages
    # Under the progress bar, each step as the engine says it; cleared once the message area has the outcome.
    assert any(t.startswith("Mapping windows") for t in said), said
    assert any(t.startswith("cross-validation: candidate 1 of 1") for t in said), said
    assert dock.doing.text() == ""
    root = QgsProject.instance().layerTreeRoot()
    group = root.findGroup(PREVIEW_GROUP)
    assert root.children().index(group) == root.children().index(root.findLayer(labels.id())) + 1  # samples on top
    classes = preview_classes(group)
    assert isinstance(classes.renderer(), QgsPalettedRasterRenderer)
    colours = {c.name: c.color for c in dock.classes()}
    legend = {(c.label, c.color.name()) for c in classes.renderer().classes()}
    assert legend and legend <= {(name, colour) for name, colour in colours.items()}
    abstract = classes.metadata().abstract()
    assert "omnisat-small.safetensors" in abstract and "S2_20150820.tif" in abstract
    assert classes.metadata().keywords("OmniSat operation") == ["fit-probe"]
    assert "macro-F1" in dock.metrics.text() and "report" in dock.metrics.text()
    assert "qgis_process run omnisat:fitprobe" in dock.command.toPlainText()

    # New labels, fit again: the cached embeddings are reused, the encoder does not run again.
    more = QgsFeature(labels.fields())
    more.setGeometry(
        QgsGeometry.fromWkt(f"POINT ({classes.extent().center().x():f} {classes.extent().center().y():f})")
    )
    more["class"] = "forest"
    labels.addFeature(more)
    dock.fit_and_preview()
    assert [s.operation for s in dock.task.steps] == ["fit-probe"] and dock.embed_runs == 1
    wait(dock)
    assert len(group.findLayers()) == 2  # the new preview replaced the old one

    SHOTS.mkdir(parents=True, exist_ok=True)
    screenshot(dock, preview_classes(group), SHOTS / "dock-preview.png")


def preview_classes(group) -> QgsRasterLayer:
    return next(n.layer() for n in group.findLayers() if n.layer().name() == "Preview classes")


def screenshot(dock: OmniSatDock, classes: QgsRasterLayer, target: Path) -> None:
    """The dock beside the preview over the real scene (true colour), one PNG."""
    scene = dock.rows[1].checked_layers()[-1]
    provider = scene.dataProvider()
    renderer = QgsMultiBandColorRenderer(provider, 3, 2, 1)
    from qgis.core import QgsContrastEnhancement

    for band, setter in (
        (3, renderer.setRedContrastEnhancement),
        (2, renderer.setGreenContrastEnhancement),
        (1, renderer.setBlueContrastEnhancement),
    ):
        low, high = provider.cumulativeCut(band, 0.02, 0.98)
        contrast = QgsContrastEnhancement(provider.dataType(band))
        contrast.setContrastEnhancementAlgorithm(
            QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum
        )
        contrast.setMinimumValue(low)
        contrast.setMaximumValue(high)
        setter(contrast)
    scene.setRenderer(renderer)
    classes.setOpacity(0.55)
    labels = dock.labels_layer()
    settings = QgsMapSettings()
    settings.setLayers([labels, classes, scene])
    settings.setDestinationCrs(scene.crs())
    settings.setExtent(scene.extent())
    settings.setOutputSize(QSize(640, 640))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    canvas = job.renderedImage()
    dock.resize(QSize(480, 1500))
    panel = dock.widget().grab().toImage()
    image = QImage(canvas.width() + panel.width(), max(canvas.height(), panel.height()), QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.drawImage(0, 0, panel)
    painter.drawImage(panel.width(), 0, canvas)
    painter.end()
    assert image.save(str(target))


@pytest.mark.qgis_process
def test_the_headless_command_makes_the_same_map(dock, shared_data, qgis_env, tmp_path):  # noqa: F811 - fixture
    import shlex

    import numpy as np
    import rasterio

    from tests.plugin.test_qgis_process import qgis_process

    add_labels(dock, shared_data, tmp_path / "labels.gpkg")
    dock.fit_and_preview()
    wait(dock)
    dock.map_whole_area()
    wait(dock)
    assert dock.messages[-1].startswith("Mapped"), dock.messages
    words = shlex.split(dock.command.toPlainText())
    assert words[:4] == ["qgis_process", "run", "omnisat:applyprobe", "--"]
    params = dict(word.split("=", 1) for word in words[4:])
    ours = params["CLASSES"]
    params.update(CLASSES=str(tmp_path / "headless.tif"), CONFIDENCE=str(tmp_path / "headless_conf.tif"))
    result = qgis_process(
        qgis_env, "run", "omnisat:applyprobe", "--", *[f"{k}={v}" for k, v in params.items()], timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    with rasterio.open(ours) as a, rasterio.open(tmp_path / "headless.tif") as b:
        assert a.transform == b.transform and a.crs == b.crs
        np.testing.assert_array_equal(a.read(), b.read())
