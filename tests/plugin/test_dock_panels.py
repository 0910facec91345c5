"""The dock as an analyst meets it (issue 22), driving the real widgets on real eo-learn layers:
classes renamed and added without losing the class field, rows that follow the project, ticks
only where the area is, messages shown in full, the engine and model status, date stacks in one
layer, the background class, the action buttons in view, and an unload that leaves nothing behind."""

from __future__ import annotations

import numpy as np
import pytest
from qgis.core import QgsApplication, QgsFeature, QgsGeometry, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QSize, Qt

from omnisat_qgis.paths import resources_dir
from tests.engine.raster_fixtures import eolearn_corner, write_described
from tests.plugin.scenes import S2_TREESAT
from tests.plugin.test_dock import dock, scene, wait  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def s2_row(dock):  # noqa: F811
    return dock.rows[[r.modality.name for r in dock.rows].index("s2")]


def labels_with_two_classes(dock, path):  # noqa: F811
    layer = dock.new_labels_layer(str(path))
    centre = dock.rows[1].checked_layers()[0].extent().center()
    for offset, name in ((0, "class 1"), (50, "class 2"), (100, "class 1")):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromWkt(f"POINT ({centre.x() + offset} {centre.y()})"))
        feature["class"] = name
        assert layer.addFeature(feature)
    return layer


def test_adding_and_renaming_classes_keeps_the_class_field(dock, tmp_path):  # noqa: F811
    layer = labels_with_two_classes(dock, tmp_path / "labels.gpkg")
    assert dock.field_combo.currentField() == "class"
    dock.class_table.item(0, 0).setText("wheat")  # the analyst edits the name in the table
    dock.add_class("maize")
    dock.class_table.item(1, 0).setText("pasture")
    assert dock.field_combo.currentField() == "class"  # never switched to fid
    values = sorted(f["class"] for f in layer.getFeatures())
    assert values == ["pasture", "wheat", "wheat"]
    renderer = layer.renderer()
    assert renderer.classAttribute() == "class"
    assert [c.label() for c in renderer.categories()] == ["wheat", "pasture", "maize"]
    assert [c.value() for c in renderer.categories()] == ["wheat", "pasture", "maize"]
    colours = {c.name: c.color for c in dock.classes()}
    assert renderer.categories()[0].symbol().color().name() == colours["wheat"]
    setup = layer.editorWidgetSetup(layer.fields().indexOf("class"))
    assert setup.type() == "ValueMap" and {"wheat": "wheat"} in setup.config()["map"]
    # One undo puts the old name back in the samples: the rename is an ordinary edit.
    layer.undoStack().undo()
    assert sorted(f["class"] for f in layer.getFeatures()) == ["class 2", "wheat", "wheat"]
    layer.undoStack().redo()
    # A name that is already a class is refused (the samples would merge silently).
    dock.class_table.item(1, 0).setText("wheat")
    assert dock.class_table.item(1, 0).text() == "pasture" and "already a class 'wheat'" in dock.messages[-1]
    request = dock.labels_panel.request()
    assert request.class_field == "class"


def test_a_background_class_is_one_click_away(dock):  # noqa: F811
    dock.labels_panel.background_button.click()
    names = [c.name for c in dock.classes()]
    assert names[-1] == "background (other)" and "none of yours" in dock.labels_panel.background_button.toolTip()


def test_rows_follow_the_project_without_resetting_ticks(dock, scene, tmp_path):  # noqa: F811
    row = s2_row(dock)
    assert len(row.checked_layers()) == 3
    row.table.item(0, 0).setCheckState(Qt.CheckState.Unchecked)  # the analyst unticks the first date
    later = QgsRasterLayer(str(sorted((scene / "s2").glob("*.tif"))[0]), "S2_20150919", "gdal")
    QgsProject.instance().addMapLayer(later)  # a date added after the dock opened
    names = [row.table.item(r, 0).text() for r in range(row.table.rowCount())]
    assert "S2_20150919" in names
    ticked = [lyr.name() for lyr in row.checked_layers()]
    assert "S2_20150820" not in ticked and "S2_20150919" in ticked  # the untick stays; the new date is ticked
    later.setName("S2_20150920 renamed")
    assert "S2_20150920 renamed" in [row.table.item(r, 0).text() for r in range(row.table.rowCount())]
    QgsProject.instance().removeMapLayer(later.id())
    assert row.table.rowCount() == 3 and [lyr.name() for lyr in row.checked_layers()] == ["S2_20150830", "S2_20150909"]
    # Another model keeps the ticks of the inputs it shares.
    dock.select_model(str(resources_dir() / "models" / "anysat-tiny.safetensors"))
    assert [lyr.name() for lyr in s2_row(dock).checked_layers()] == ["S2_20150830", "S2_20150909"]


def far_s2(tmp_path, name="S2_20180601_flanders.tif"):
    """Ten named Sentinel-2 bands in Flanders (UTM 31N): the same product, another place."""
    data = np.full((10, 40, 40), 1200, np.float32)
    return write_described(tmp_path / name, data, (500000.0, 5650000.0), crs="EPSG:32631", descriptions=S2_TREESAT)


def test_only_layers_where_the_area_is_are_ticked_and_a_mixed_selection_is_refused(dock, tmp_path):  # noqa: F811
    far = QgsRasterLayer(str(far_s2(tmp_path)), "S2 Flanders 2018-06-01", "gdal")
    QgsProject.instance().addMapLayer(far)
    row = s2_row(dock)
    assert "S2 Flanders 2018-06-01" not in [lyr.name() for lyr in row.checked_layers()]  # listed, not ticked
    dock.fill_rows()  # filled afresh (as when the dock opens): still only the layers of the visible place
    assert [lyr.name() for lyr in row.checked_layers()] == ["S2_20150820", "S2_20150830", "S2_20150909"]
    far_row = next(r for r in range(row.table.rowCount()) if row.table.item(r, 0).text().startswith("S2 Flanders"))
    row.table.item(far_row, 0).setCheckState(Qt.CheckState.Checked)  # the analyst ticks it anyway
    with pytest.raises(Exception) as refused:
        dock.inputs()
    text = str(refused.value)
    assert "different places" in text and "S2 Flanders 2018-06-01" in text and "EPSG:32631" in text
    assert "untick the layers of the other place" in text
    dock.fit_and_preview()
    assert dock.task is None and dock.message_area.text.text().count("untick the layers of the other place") == 1
    assert "does not overlap" in row.problems.text() and row.problems.isVisibleTo(row)


def test_the_message_area_shows_the_whole_message_with_details_on_demand(dock):  # noqa: F811
    dock.resize(QSize(420, 900))
    dock.show()
    long = (
        "The Python interpreter for the OmniSat engine, '/nowhere/python' (from the setting), does not exist. "
        "Run 'Set up the OmniSat engine' (Plugins > OmniSat, or the Processing algorithm omnisat:setupengine) "
        "to build one."
    )
    dock.say(long, details="line 1 of the worker log\nline 2")
    QgsApplication.processEvents()
    label = dock.message_area.text
    assert long.split("(Plugins")[0].replace("'", "&#x27;") in label.text() or "Run &#x27;Set up" in label.text()
    assert label.wordWrap() and label.height() >= label.heightForWidth(label.width())  # every line shown
    assert not dock.message_area.details.isVisible() and dock.message_area.details_button.isVisible()
    dock.message_area.details_button.click()
    assert dock.message_area.details.isVisible() and "line 2" in dock.message_area.details.toPlainText()
    dock.hide()


def test_engine_and_model_status_at_the_top(dock, monkeypatch):  # noqa: F811
    panel = dock.model_panel
    assert panel.engine.text().startswith("Engine ready")
    dock.select_model(str(resources_dir() / "models" / "anysat-tiny.safetensors"))
    assert "no learned knowledge" in panel.warning.text() and "anysat-base" in panel.warning.text()
    assert not panel.warning.isHidden()
    combo = [panel.combo.itemText(i) for i in range(panel.combo.count())]
    assert combo[:2] == ["anysat-tiny", "omnisat-small"] and "anysat-base (not downloaded)" in combo
    assert not panel.download_button.isHidden()
    monkeypatch.setenv("OMNISAT_PYTHON", "/nowhere/python")
    panel.refresh_status()
    assert panel.engine.text().startswith("Engine not set up") and "bold" in panel.setup_button.styleSheet()


def stack_of_dates(shared_data, scene, tmp_path, descriptions):  # noqa: F811 - the fixture's value
    """The three eo-learn dates in one 30-band GeoTIFF: bands t*10+c+1 (what Earth Engine or openEO export)."""
    import rasterio

    bands = []
    for path in sorted((scene / "s2").glob("*.tif")):
        with rasterio.open(path) as src:
            bands.append(src.read())
    return write_described(
        tmp_path / "s2_stack.tif", np.concatenate(bands), eolearn_corner(shared_data), descriptions=descriptions
    )


def test_a_stack_of_dates_in_one_layer_is_listed_with_its_dates(dock, scene, shared_data, tmp_path):  # noqa: F811
    from engine.io.series import resolve_modality
    from engine.models.checkpoint import load_checkpoint

    days = ["2015-08-20", "2015-08-30", "2015-09-09"]
    path = stack_of_dates(shared_data, scene, tmp_path, [f"{b} {d}" for d in days for b in S2_TREESAT])
    stack = QgsRasterLayer(str(path), "s2 stack", "gdal")
    QgsProject.instance().addMapLayer(stack)
    row = s2_row(dock)
    index = next(r for r in range(row.table.rowCount()) if row.table.item(r, 0).text() == "s2 stack")
    assert row.table.item(index, 1).text() == ", ".join(days)
    dock.fill_rows({"s2": {"layers": [stack.id()]}})
    entry = row.modality_input()
    assert entry.files == [str(path)] and entry.dates == days and entry.bands is None
    spec = load_checkpoint(dock.model().path).model.modalities["s2"]
    resolved = resolve_modality("s2", spec, entry.job_entry()["files"], entry.dates, None)
    assert [str(layer.date) for layer in resolved.layers] == days and resolved.layers[1].bands[0] == 11


def test_a_stack_without_dates_asks_for_them(dock, scene, shared_data, tmp_path):  # noqa: F811
    path = stack_of_dates(shared_data, scene, tmp_path, list(S2_TREESAT) * 3)
    stack = QgsRasterLayer(str(path), "undated stack", "gdal")
    QgsProject.instance().addMapLayer(stack)
    dock.fill_rows({"s2": {"layers": [stack.id()]}})
    row = s2_row(dock)
    with pytest.raises(Exception, match="type them in the Date column, comma separated"):
        row.modality_input()
    index = next(r for r in range(row.table.rowCount()) if row.table.item(r, 0).text() == "undated stack")
    assert row.table.item(index, 1).text() == ""
    row.table.item(index, 1).setText("2015-08-20, 2015-08-30")
    with pytest.raises(Exception, match="holds 3 dates"):
        row.modality_input()
    row.table.item(index, 1).setText("2015-08-20, 2015-08-30, 2015-09-09")
    assert row.modality_input().dates == ["2015-08-20", "2015-08-30", "2015-09-09"]


def test_the_action_buttons_are_in_view_at_the_default_size(dock):  # noqa: F811
    dock.resize(QSize(360, 620))
    dock.show()
    QgsApplication.processEvents()
    for button in (dock.fit_button, dock.map_button, dock.cancel_button):
        assert button.isVisible() and not button.visibleRegion().isEmpty(), button.text()
    dock.hide()


def test_a_run_without_an_engine_says_so_in_full_with_the_set_up_button(dock, tmp_path, monkeypatch):  # noqa: F811
    labels_with_two_classes(dock, tmp_path / "labels.gpkg")
    monkeypatch.setenv("OMNISAT_PYTHON", str(tmp_path / "no-python"))
    dock.fit_and_preview()
    wait(dock, check=False)
    text = dock.message_area.text.text()
    assert "does not exist" in text and "Set up the OmniSat engine" in text  # the fix, not cut off
    assert [b.text() for b in dock.message_area.buttons] == ["Set up the engine…"]
    assert dock.progress.format() == "Failed" and dock.controller.outcome == "failed"


def test_a_run_that_starts_takes_away_an_earlier_refusal(dock, tmp_path, monkeypatch):  # noqa: F811
    from qgis.core import Qgis

    labels_with_two_classes(dock, tmp_path / "labels.gpkg")
    dock.say("Tick at least one layer of one sensor.", Qgis.MessageLevel.Critical)  # an earlier attempt's refusal
    monkeypatch.setenv("OMNISAT_PYTHON", str(tmp_path / "no-python"))
    dock.fit_and_preview()
    assert dock.controller.running and dock.message_area.current is None  # not shown while this run goes
    assert not dock.message_area.isVisible()
    wait(dock, check=False)
    assert "does not exist" in dock.message_area.text.text()  # this run's own failure replaces it
    dock.say("Sentinel-1 looks like dB: read as linear power.", Qgis.MessageLevel.Warning)
    dock.fit_and_preview()
    assert dock.message_area.current.level == Qgis.MessageLevel.Warning  # a warning is not a refusal: it stays
    wait(dock, check=False)
