"""The dock with a UniverSat checkpoint (Tiny, random weights, the whole sensor table) on the real eo-learn
Sentinel-2 layers: only the sensors the project has layers for, each layer ticked in one sensor only, an
"other sensor" described by its wavelengths, the output resolution (checked, into the job), and a per-cell
class map at 10 m fitted and mapped from the dock (pytest-qgis, offscreen)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsProject, QgsRasterLayer, QgsRectangle

from omnisat_qgis.gui.dock import OmniSatDock
from omnisat_qgis.gui.modality_row import InputError
from omnisat_qgis.paths import resources_dir
from tests.plugin.scenes import write_scene
from tests.plugin.test_dock import add_labels, wait


def write_universat(path: Path) -> Path:
    import torch

    from engine.models.checkpoint import save_checkpoint
    from engine.models.universat import UniverSat, universat_config

    torch.manual_seed(0)
    return save_checkpoint(path, UniverSat(universat_config("tiny")), provenance={"weights": "random, for tests"})


@pytest.fixture(scope="module")
def scene(shared_data, tmp_path_factory):
    root = write_scene(shared_data, tmp_path_factory.mktemp("universat"))
    write_universat(root / "universat-tiny-random.safetensors")
    return root


@pytest.fixture
def dock(qgis_iface, qgis_new_project, scene, tmp_path):
    project = QgsProject.instance()
    project.setFileName(str(tmp_path / "project.qgz"))
    layers = [QgsRasterLayer(str(p), p.stem, "gdal") for p in sorted((scene / "s2").glob("*.tif"))]
    project.addMapLayers(layers)
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(layers[0].crs())
    canvas.setExtent(layers[0].extent())
    widget = OmniSatDock(qgis_iface)
    widget.select_model(str(scene / "universat-tiny-random.safetensors"))
    yield widget
    widget.cancel()
    wait(widget, check=False)
    widget.release()
    widget.deleteLater()


def ticked(dock) -> dict[str, list[str]]:
    return {row.modality.name: [lyr.name() for lyr in row.checked_layers()] for row in dock.rows}


def test_rows_offer_the_models_sensors_each_layer_in_one(dock):
    names = [row.modality.name for row in dock.rows]
    assert {"s2", "s2_4band", "s1", "enmap", "aerial"} <= set(names)  # the model's sensor table
    dates = ["S2_20150820", "S2_20150830", "S2_20150909"]
    # the 10-band layers suit s2 and s2_4band: ticked in s2 only (it reads all their bands)
    assert {name: found for name, found in ticked(dock).items() if found} == {"s2": dates}
    shown = [row.modality.name for row in dock.rows if row.isVisibleTo(dock.inputs_panel)]
    assert "s2" in shown and "enmap" not in shown and "aerial" not in shown, shown  # no layer for them
    assert dock.inputs_panel.resolution_panel.isVisibleTo(dock) and dock.inputs_panel.add_other_button.isVisibleTo(dock)
    dock.select_model(str(resources_dir() / "models" / "omnisat-small.safetensors"))
    assert not dock.inputs_panel.resolution_panel.isVisibleTo(
        dock
    ) and not dock.inputs_panel.add_other_button.isVisibleTo(dock)
    assert all(row.isVisibleTo(dock.inputs_panel) for row in dock.rows)


def test_other_sensor_by_wavelengths(dock):
    layers = {lyr.name(): lyr for lyr in QgsProject.instance().mapLayers().values()}
    box = dock.inputs_panel.add_other_sensor()
    assert box.modality_input() is None
    box.tick(layers["S2_20150820"])
    # guessed from the band descriptions (B2 ... B12): what the analyst sees and can change
    assert box.band_texts() == ["490", "560", "665", "705", "740", "783", "842", "865", "1610", "2190"]
    assert box.pixel_spin.value() == pytest.approx(10.0)
    box.set_band(3, "")  # leave B5 out
    box.set_band(9, "2.19um")
    entry = box.modality_input()
    assert entry.name == "other1" and entry.bands == [1, 2, 3, 5, 6, 7, 8, 9, 10] and entry.dates == []
    assert entry.sensor == {
        "wavelengths": [0.49, 0.56, 0.665, 0.74, 0.783, 0.842, 0.865, 1.61, 2.19],
        "resolution": 10.0,
        "series": False,
    }
    box.tick(layers["S2_20150830"])  # two dates: a time series, dates from the names
    entry = box.modality_input()
    assert entry.sensor["series"] and entry.dates == ["2015-08-20", "2015-08-30"]
    assert entry.job_entry()["sensor"] == entry.sensor
    box.set_band(0, "blue-ish")
    with pytest.raises(InputError, match="band 1: 'blue-ish' is neither a wavelength"):
        box.modality_input()
    box.set_band(0, "490")
    box.name_edit.setText("s2")
    with pytest.raises(InputError, match="already has a sensor 's2'"):
        dock.inputs()
    box.name_edit.setText("camera")
    assert [m.name for m in dock.inputs()] == ["s2", "camera"]
    box.removed.emit(box)
    assert dock.inputs_panel.others == [] and [m.name for m in dock.inputs()] == ["s2"]


def test_output_resolution_is_checked_and_reaches_the_job(dock):
    assert dock.advanced().level == "dense" and dock.advanced().resolution_m is None  # default: the finest input's
    for value, message in ((5, "finer than the finest input's pixels \\(10 m\\)"), (15, "divide the model's 40 m")):
        dock.inputs_panel.resolution_panel.spin.setValue(value)
        with pytest.raises(InputError, match=message):
            dock.advanced()
    dock.inputs_panel.resolution_panel.spin.setValue(20)
    assert dock.advanced().resolution_m == 20
    dock.select_model(str(resources_dir() / "models" / "omnisat-small.safetensors"))
    assert dock.advanced().resolution_m is None and dock.advanced().level == "patch"


@pytest.mark.slow
def test_a_per_cell_class_map_at_10_m_from_the_dock(dock, shared_data, tmp_path):
    add_labels(dock, shared_data, tmp_path / "labels.gpkg")
    dock.inputs_panel.resolution_panel.spin.setValue(10)
    dock.fit_and_preview()
    wait(dock)
    assert dock.controller.outcome == "done", dock.messages[-3:]
    assert dock.preview_job["resolution"] == 10 and dock.preview_job["outputs"]["embeddings_level"] == "dense"
    dock.extent_combo.setCurrentText("Where the inputs overlap")
    dock.map_whole_area()
    wait(dock)
    assert dock.controller.outcome == "done", dock.messages[-3:]
    text = next(m for m in reversed(dock.messages) if m.startswith("Mapped"))
    group = QgsProject.instance().layerTreeRoot().findGroup(text.split("group '")[1].rstrip("'."))
    classes = next(n.layer() for n in group.findLayers() if n.layer().name() == "Classes")
    job = json.loads((Path(classes.source()).parent / "job.json").read_text())
    assert job["resolution"] == 10 and job["outputs"]["embeddings_level"] == "dense"
    assert classes.rasterUnitsPerPixelX() == pytest.approx(10.0)
    from osgeo import gdal

    values = gdal.Open(classes.source()).ReadAsArray()
    # per cell, not per 40 m patch: some 4 x 4 block of cells holds more than one class
    blocks = values[: values.shape[0] // 4 * 4, : values.shape[1] // 4 * 4].reshape(
        values.shape[0] // 4, 4, values.shape[1] // 4, 4
    )
    assert any(len(np.unique(blocks[i, :, j, :])) > 1 for i in range(blocks.shape[0]) for j in range(blocks.shape[2]))


def test_a_preview_too_large_for_per_cell_features_is_refused(dock, shared_data, tmp_path, qgis_iface):
    add_labels(dock, shared_data, tmp_path / "labels.gpkg")
    centre = qgis_iface.mapCanvas().extent().center()
    qgis_iface.mapCanvas().setExtent(
        QgsRectangle(centre.x() - 30e3, centre.y() - 30e3, centre.x() + 30e3, centre.y() + 30e3)
    )
    dock.fit_and_preview()
    assert dock.task is None
    assert "features of the visible area" in dock.messages[-1] and "zoom in" in dock.messages[-1], dock.messages[-1:]


def test_universat_base_not_downloaded_is_offered_for_download(dock, monkeypatch):
    panel, asked = dock.model_panel, []
    monkeypatch.setattr(panel, "_download", asked.append)
    texts = [panel.combo.itemText(i) for i in range(panel.combo.count())]
    panel.combo.activated.emit(texts.index("universat-base (not downloaded)"))
    assert "'universat-base' is not downloaded yet" in dock.messages[-1] and "about 804 MB" in dock.messages[-1]
    assert panel.info.name == "universat-tiny-random"  # the picker stays on an installed model
    button = dock.message_area.buttons[0]
    assert button.text() == "Download universat-base…"
    button.click()
    assert asked == ["universat-base"]
