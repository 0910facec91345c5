"""The assessment panel in QGIS (pytest-qgis, offscreen): keyboard-only labelling saved at every
key into the GeoPackage, resume after the layer is closed, blind labelling, the canvas on the
point with the sampling unit drawn, and the same requests as the engine's operations."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rasterio
from osgeo import ogr
from qgis.core import QgsApplication, QgsCoordinateTransform, QgsGeometry, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtTest import QTest
from rasterio.transform import from_origin

from engine.io.grid import Grid
from engine.io.writers import open_class_map
from engine.runtime.registry import build_params, get_operation, run_operation
from omnisat_qgis.gui.panels.assessment import AssessmentPanel

NAMES = ["water", "forest", "crop"]


@pytest.fixture
def drawn(tmp_path):
    data = np.ones((60, 50), np.uint8)
    data[:, :10] = 0
    data[30:, 25:] = 2
    classes = tmp_path / "classes.tif"
    grid = Grid(rasterio.crs.CRS.from_epsg(32633), from_origin(500000.0, 5000000.0, 20.0, 20.0), 50, 60)
    with open_class_map(classes, grid, NAMES, ["#0000ff", "#00aa00", "#ffff00"]) as ds:
        ds.write(data, 1)
    sample = tmp_path / "sample.gpkg"
    run_operation(
        "sample-map", {"classes": str(classes), "output": str(sample), "total": 12, "min_per_class": 4, "seed": 1}
    )
    return classes, sample, data


@pytest.fixture
def panel(qgis_iface, qgis_new_project):
    canvas = qgis_iface.mapCanvas()
    canvas.resize(QSize(400, 400))
    widget = AssessmentPanel(canvas)
    widget.resize(420, 700)
    yield widget
    widget.deleteLater()


def saved(sample):
    """(sample_id, reference, flag, comment, labelled_at) read from the file with GDAL, not QGIS."""
    source = ogr.Open(str(sample))
    rows = sorted(
        (
            f.GetField("sample_id"),
            f.GetField("reference"),
            f.GetField("flag"),
            f.GetField("comment"),
            f.GetField("labelled_at"),
        )
        for f in source.GetLayerByName("reference_sample")
    )
    source = None
    return rows


def truth(panel):
    return panel.feature()["map_class"]


def test_keyboard_only_labelling_saves_every_key_and_resumes(panel, drawn):
    classes, sample, _ = drawn
    panel.open_sample(str(sample))
    assert panel.classes == NAMES and len(panel.fids) == 12 and panel.position == 0
    panel.setFocus()
    keys = {name: key for name, key in zip(NAMES, (Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_3))}
    expected = []
    for step in range(5):
        name = truth(panel)
        QTest.keyClick(panel, keys[name])
        expected.append(name)
        rows = saved(sample)
        # Saved at once: the file already holds this label, the next point is shown.
        assert [r[1] for r in rows[: step + 1]] == expected and rows[step + 1][1] is None
        assert rows[step][4].endswith("Z") and panel.position == step + 1
    QTest.keyClick(panel, Qt.Key.Key_N)  # not sure
    QTest.keyClick(panel, Qt.Key.Key_Left)
    assert panel.position == 5  # back on the "not sure" point
    panel.comment.setText("cloud shadow")
    panel.setFocus()
    QTest.keyClick(panel, Qt.Key.Key_D)  # no data, with the comment
    rows = saved(sample)
    assert rows[5][1:4] == (None, "no data", "cloud shadow")
    assert "Labelled 6/12" in panel.progress_label.text()
    assert panel.progress_label.text().count("/") == 4  # n/N for each of the 3 strata, and overall

    # QGIS closes the layer (or crashes): a new panel on the same file resumes at the first unlabelled point.
    QgsProject.instance().removeMapLayer(panel.layer.id())
    QgsApplication.processEvents()
    assert panel.layer is None and not panel.not_sure_button.isEnabled()  # the old panel lets go of it
    again = AssessmentPanel(panel.canvas)
    again.open_sample(str(sample))
    assert again.position == 6
    assert [r[1] for r in saved(sample)[:5]] == expected
    again.setFocus()
    for _ in range(6):  # the six points left
        QTest.keyClick(again, keys[truth(again)])
    assert all(r[1] or r[2] for r in saved(sample))
    assert "Every point is labelled" in again.messages[-1]
    again.deleteLater()

    # The labelled sample gives the assessment.
    report = run_operation(
        "assess", {"classes": str(classes), "sample": str(sample), "output": str(sample.with_suffix(".csv"))}
    )
    assert report["response"] == {"total": 12, "labelled": 11, "not sure": 0, "no data": 1, "not labelled": 0}
    assert report["overall_accuracy"] == 1.0


def test_blind_labelling_hides_the_map_class(panel, drawn):
    classes, sample, _ = drawn
    raster = QgsRasterLayer(str(classes), "classes", "gdal")
    QgsProject.instance().addMapLayer(raster)
    panel.map_combo.setLayer(raster)
    view = panel.side_views[0]
    view.combo.setLayer(raster)  # the map being assessed, as a side view
    panel.open_sample(str(sample))
    assert "map: <b>" in panel.where.text() and view.canvas.isVisibleTo(panel)
    panel.blind.setChecked(True)
    assert "map:" not in panel.where.text() and "forest" not in panel.progress_label.text()
    assert not view.canvas.isVisibleTo(panel)  # it would show the map class
    panel.blind.setChecked(False)
    assert view.canvas.isVisibleTo(panel)


def test_the_canvas_is_centred_on_the_point_with_its_pixel_drawn(panel, drawn):
    classes, sample, _ = drawn
    raster = QgsRasterLayer(str(classes), "classes", "gdal")
    QgsProject.instance().addMapLayer(raster)
    panel.canvas.setDestinationCrs(raster.crs())
    panel.open_sample(str(sample))
    panel.scale_spin.setValue(5000)
    point = panel.feature().geometry().asPoint()
    centre = panel.canvas.center()
    assert abs(centre.x() - point.x()) < 1 and abs(centre.y() - point.y()) < 1
    assert panel.canvas.scale() == pytest.approx(5000, rel=0.01)
    assert panel.rubber.asGeometry().area() == pytest.approx(400.0)  # one 20 m pixel
    panel.unit_spin.setValue(3)
    assert panel.rubber.asGeometry().area() == pytest.approx(9 * 400.0)  # a 3 x 3 block


def test_the_panel_sends_the_engines_parameter_names(panel, drawn, tmp_path):
    classes, sample, _ = drawn
    raster = QgsRasterLayer(str(classes), "classes", "gdal")
    QgsProject.instance().addMapLayer(raster)
    panel.map_combo.setLayer(raster)
    panel.design_combo.setCurrentText("stratified")
    panel.allocation_combo.setCurrentText("neyman")
    panel.target_spin.setValue(0.05)
    panel.expected.setText("0.9, 0.8, 0.7")
    step = panel.sample_request(str(tmp_path / "s.gpkg"), dry_run=True).step()
    params = build_params(get_operation(step.operation), step.params)
    assert params.allocation == "neyman" and params.expected_users_accuracy == [0.9, 0.8, 0.7] and params.dry_run
    panel.open_sample(str(sample))
    step = panel.assess_step(str(tmp_path / "a.csv"), str(tmp_path / "a.html"))
    assert build_params(get_operation(step.operation), step.params).sample == str(sample)


def test_sizes_then_draw_through_the_worker(panel, drawn, tmp_path):
    classes, _, _ = drawn
    raster = QgsRasterLayer(str(classes), "classes", "gdal")
    QgsProject.instance().addMapLayer(raster)
    panel.map_combo.setLayer(raster)
    panel.total_spin.setValue(30)
    panel.min_spin.setValue(5)

    def wait():
        started = time.monotonic()
        while panel.task is not None:
            QgsApplication.processEvents()
            time.sleep(0.05)
            assert time.monotonic() - started < 300

    panel.draw(dry_run=True)
    wait()
    assert panel.sizes.text().startswith("30 points:") and "water" in panel.sizes.text(), panel.messages
    out = tmp_path / "drawn.gpkg"
    panel.draw(dry_run=False, output=str(out))
    wait()
    assert out.exists() and panel.layer is not None and len(panel.fids) == 30, panel.messages


def test_the_dock_hosts_the_panel(qgis_iface, qgis_new_project):
    from omnisat_qgis.gui.dock import OmniSatDock

    dock = OmniSatDock(qgis_iface)
    titles = [dock.tabs.tabText(i) for i in range(dock.tabs.count())]
    assert "Assess" in titles and dock.assessment.canvas is qgis_iface.mapCanvas()
    dock.deleteLater()


def test_side_views_follow_the_point_at_the_same_scale_with_the_unit_drawn(panel, drawn, tmp_path):
    classes, sample, _ = drawn
    raster = QgsRasterLayer(str(classes), "classes", "gdal")
    # A second image in another CRS (Web Mercator): the side view shows it in its own CRS, on the same point.
    from osgeo import gdal

    mercator = tmp_path / "mercator.tif"
    gdal.Warp(str(mercator), str(classes), dstSRS="EPSG:3857")
    other = QgsRasterLayer(str(mercator), "other date", "gdal")
    QgsProject.instance().addMapLayers([raster, other])
    panel.canvas.setDestinationCrs(raster.crs())
    first, second = panel.side_views
    assert not first.canvas.isVisibleTo(panel)  # no layer chosen: no view
    first.combo.setLayer(raster)
    second.combo.setLayer(other)
    assert first.canvas.layers() == [raster] and second.canvas.layers() == [other]
    panel.open_sample(str(sample))
    panel.scale_spin.setValue(5000)

    def on_point(view):
        point = panel.feature().geometry().asPoint()
        to_view = QgsCoordinateTransform(
            panel.layer.crs(), view.canvas.mapSettings().destinationCrs(), QgsProject.instance()
        )
        expected = to_view.transform(point)
        centre = view.canvas.center()
        unit = QgsGeometry(view.band.asGeometry())
        unit.transform(
            QgsCoordinateTransform(view.canvas.mapSettings().destinationCrs(), panel.layer.crs(), QgsProject.instance())
        )
        return (
            abs(centre.x() - expected.x()) < 1
            and abs(centre.y() - expected.y()) < 1
            and view.canvas.scale() == pytest.approx(5000, rel=0.01)
            and unit.area() == pytest.approx(400.0, rel=0.01)  # one 20 m pixel, back in the map's CRS
            and unit.contains(QgsGeometry.fromPointXY(point))
        )

    panel.setFocus()
    seen = set()
    for key in (None, Qt.Key.Key_Right, Qt.Key.Key_Right, Qt.Key.Key_Left, Qt.Key.Key_1, Qt.Key.Key_U):
        if key is not None:
            QTest.keyClick(panel, key)
        seen.add(panel.position)
        assert on_point(first) and on_point(second), (key, panel.position)
    assert len(seen) >= 3  # the views moved with the point
    panel.unit_spin.setValue(3)
    unit = first.band.asGeometry()
    assert unit.area() == pytest.approx(9 * 400.0)  # a 3 x 3 block, in both views
    second.combo.setLayer(None)
    assert not second.canvas.isVisibleTo(panel) and second.canvas.layers() == []
    # The layer of a side view removed from the project: the view lets go of it, labelling goes on.
    QgsProject.instance().removeMapLayer(raster.id())
    QgsApplication.processEvents()
    assert first.layer() is None and first.canvas.layers() == []
    position = panel.position
    QTest.keyClick(panel, Qt.Key.Key_Right)
    assert panel.position == position + 1


def test_the_target_class_is_picked_from_the_maps_classes(panel, drawn, tmp_path):
    classes, _, _ = drawn
    raster = QgsRasterLayer(str(classes), "classes", "gdal")
    QgsProject.instance().addMapLayer(raster)
    panel.map_combo.setLayer(raster)
    choices = [panel.target_class.itemText(i) for i in range(panel.target_class.count())]
    assert choices == ["overall accuracy", *NAMES]
    assert "water, forest, crop" in panel.expected.placeholderText()
    panel.target_spin.setValue(0.02)
    panel.expected.setText("0.9, 0.8, 0.7")
    assert panel.sample_request(str(tmp_path / "s.gpkg"), dry_run=True).target_class is None
    panel.target_class.setCurrentText("crop")
    step = panel.sample_request(str(tmp_path / "s.gpkg"), dry_run=True).step()
    assert build_params(get_operation(step.operation), step.params).target_class == "crop"
    result = run_operation(step.operation, step.params)  # the engine takes the name as it comes
    assert result["dry_run"] and result["samples"] > 0
    panel.map_combo.setLayer(None)
    assert [panel.target_class.itemText(i) for i in range(panel.target_class.count())] == ["overall accuracy"]


def test_a_map_changed_since_the_draw_is_refused_in_the_panel(panel, drawn, tmp_path):
    classes, sample, data = drawn
    panel.open_sample(str(sample))
    panel.setFocus()
    for _ in range(len(panel.fids)):
        QTest.keyClick(panel, Qt.Key.Key_2)  # every point "forest"
    changed = data.copy()
    changed[0, 0] = 2
    grid = Grid(rasterio.crs.CRS.from_epsg(32633), from_origin(500000.0, 5000000.0, 20.0, 20.0), 50, 60)
    with open_class_map(classes, grid, NAMES, ["#0000ff", "#00aa00", "#ffff00"]) as ds:  # the map rewritten
        ds.write(changed, 1)
    raster = QgsRasterLayer(str(classes), "classes", "gdal")
    QgsProject.instance().addMapLayer(raster)
    panel.map_combo.setLayer(raster)
    panel.assess(csv_path=str(tmp_path / "a.csv"))
    started = time.monotonic()
    while panel.task is not None:
        QgsApplication.processEvents()
        time.sleep(0.05)
        assert time.monotonic() - started < 300
    text = panel.status.text()
    assert "was drawn from another map" in text and "draw a new sample" in text, panel.messages
    assert not (tmp_path / "a.csv").exists()
