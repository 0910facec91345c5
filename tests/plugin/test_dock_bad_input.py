"""The dock's bad-input paths on real eo-learn layers: a layer that is not a file (exported on
request), bands that do not map, labels that cannot be fitted, a worker killed mid-run (as by the
out-of-memory killer), and a run cancelled or the dock closed while it runs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsFeature, QgsGeometry, QgsProject, QgsRasterLayer, QgsTask
from qgis.PyQt.QtCore import QTimer

from engine.runtime.hold import HOLD_ENV, held
from omnisat_qgis.worker_client import shutdown_workers
from tests.engine.raster_fixtures import eolearn_corner
from tests.engine.rasters import write_geotiff
from tests.plugin.test_dock import add_labels, dock, scene, wait  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def s2_row(dock):  # noqa: F811
    return dock.rows[[r.modality.name for r in dock.rows].index("s2")]


def test_a_layer_that_is_not_a_file_is_exported_to_geotiff_on_request(dock, scene, shared_data, tmp_path):  # noqa: F811
    from osgeo import gdal

    source = sorted((scene / "s2").glob("*.tif"))[0]
    gdal.Translate("/vsimem/web/S2_20150820.tif", str(source))  # stands for a /vsicurl/ or service layer
    web = QgsRasterLayer("/vsimem/web/S2_20150820.tif", "S2 web", "gdal")
    assert web.isValid()
    QgsProject.instance().addMapLayer(web)
    dock.fill_rows({"s2": {"layers": [web.id()], "dates": {web.id(): "2015-08-20"}}})
    add_labels(dock, shared_data, tmp_path / "labels.gpkg")
    dock.fit_and_preview()
    assert dock.task is None and "is not a file the engine can read" in dock.messages[-1]
    button = next(b for b in dock.message_area.buttons if "GeoTIFF" in b.text())
    button.click()
    assert dock.messages[-1].startswith("'S2 web' exported to")
    entry = s2_row(dock).modality_input()
    exported = Path(entry.files[0])
    assert exported.parent.name == "exports" and entry.dates == ["2015-08-20"] and entry.bands is None
    with_names = QgsRasterLayer(str(exported), "check", "gdal")
    assert with_names.bandCount() == 10 and with_names.dataProvider().bandDescription(8) == "B8A"
    original = gdal.Open(str(source)).ReadAsArray()
    np.testing.assert_array_equal(gdal.Open(str(exported)).ReadAsArray(), original)  # the layer's raw values
    assert not list(exported.parent.glob(".*partial*"))
    gdal.Unlink("/vsimem/web/S2_20150820.tif")


def test_bands_that_do_not_map_are_refused_with_the_fix(dock, shared_data, tmp_path):  # noqa: F811
    path = write_geotiff(
        tmp_path / "S2_20150820_rgbn.tif",
        np.full((4, 20, 20), 900, np.float32),
        crs="EPSG:32633",
        origin=eolearn_corner(shared_data),
    )
    layer = QgsRasterLayer(str(path), "four bands", "gdal")
    QgsProject.instance().addMapLayer(layer)
    dock.fill_rows({"s2": {"layers": [layer.id()]}})
    with pytest.raises(
        Exception,
        match=r"lacks B6, B7, B8, B8A, B11, B12 \(has 4 bands\): pick the layer band "
        "in the band table, or choose an AnySat model",
    ):
        s2_row(dock).modality_input()


def test_labels_that_cannot_be_fitted_say_why(dock, shared_data, tmp_path):  # noqa: F811
    labels = add_labels(dock, shared_data, tmp_path / "labels.gpkg", keep=lambda i: False)
    dock.fit_and_preview()
    assert "has no feature in the visible map area" in dock.messages[-1] and dock.task is None
    centre = dock.canvas_extent().grown(-0.4)
    for index, name in enumerate(("forest", "forest", None)):
        feature = QgsFeature(labels.fields())
        x, y = centre.bounds[0] + 10 * index, centre.bounds[1]
        feature.setGeometry(QgsGeometry.fromWkt(f"POINT ({x} {y})"))
        feature["class"] = name
        labels.addFeature(feature)
    dock.fit_and_preview()
    assert "has 1 class(es) in 'class' in the visible map area: draw samples of at least two" in dock.messages[-1]
    assert "1 feature(s) of 'labels' have no class and are left out." in dock.messages


@pytest.fixture
def oom_worker(tmp_path, monkeypatch):
    """A worker Python that dies as the out-of-memory killer ends a process."""
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\nkill -9 $$\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("OMNISAT_PYTHON", str(script))


def test_a_worker_killed_mid_run_names_what_to_lower(dock, shared_data, tmp_path, oom_worker):  # noqa: F811
    add_labels(dock, shared_data, tmp_path / "labels.gpkg")
    dock.fit_and_preview()
    embeddings = Path(dock.task.steps[0].outputs[0])
    wait(dock, check=False)
    assert "killed (SIGKILL)" in dock.messages[-1] and "lower the batch size or the window" in dock.messages[-1]
    assert not embeddings.exists() and dock.fit_button.isEnabled()


def children() -> list[int]:
    """Live processes started by this test process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("stop", ["cancel", "close"])
def test_cancel_or_closing_the_dock_mid_run_leaves_no_file_and_no_worker(
    dock,
    shared_data,
    tmp_path,
    stop,  # noqa: F811
    monkeypatch,
):
    add_labels(dock, shared_data, tmp_path / "labels.gpkg")
    dock.fit_and_preview()
    wait(dock)
    shutdown_workers()  # the fit's worker waits in the pool for the next run: the mapping run starts its own
    assert children() == []
    hold = tmp_path / "hold"
    hold.mkdir()
    # The mapping run's worker waits after its first window (engine/runtime/hold.py): the stop lands mid-run.
    monkeypatch.setenv(HOLD_ENV, str(hold))
    dock.extent_combo.setCurrentText("Where the inputs overlap")
    dock.map_whole_area()
    run_folder = Path(dock.task.steps[0].outputs[0]).parent
    # QGIS's own notification of a terminated task reads "Task failed": the dock's task is silent and says it.
    assert dock.task.flags() & QgsTask.Flag.Silent
    stopped = []

    def stop_when_held():
        if not stopped and held(hold):
            stopped.append(dock.task.progress())
            getattr(dock, stop)()

    poll = QTimer()
    poll.timeout.connect(stop_when_held)
    poll.start(50)
    wait(dock)
    poll.stop()
    assert stopped and 0 < stopped[0] < 100  # stopped while the worker waited mid-run
    assert dock.messages[-1] == "Cancelled; no output was written."
    assert dock.controller.outcome == "cancelled" and dock.progress.format() == "Cancelled"
    assert dock.progress.value() == 0 and dock.fit_button.isEnabled()
    assert sorted(p.name for p in run_folder.iterdir()) == ["job.json"] and children() == []
