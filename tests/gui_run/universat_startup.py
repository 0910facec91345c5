"""Run by real QGIS at start-up (``qgis --code``, see universat_run.sh): a per-cell class map from UniverSat
made in the dock, as an analyst makes it.

Loads three eo-learn Sentinel-2 dates (Slovenia), opens the dock, picks the UniverSat checkpoint of the
models folder in the model picker (which also offers universat-base, not downloaded), reads the rows
(only the sensors with layers, the dates ticked in one sensor), sets the output resolution to 10 m,
labels one point per land-cover polygon, fits and previews, maps the whole area, and takes a screenshot
of the dock beside the map. Writes OUT/universat-dock.json (checks, failures, timings, the paths the
headless run repeats) and OUT/dock-universat.png; universat_run.sh then runs the same through
qgis_process and compares the rasters.
"""

import json
import os
import time
import traceback
from pathlib import Path

from osgeo import gdal
from qgis.core import Qgis, QgsApplication, QgsFeature, QgsGeometry, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QSize, QThreadPool, QTimer
from qgis.utils import iface, loadPlugin, plugins, startPlugin, unloadPlugin

OUT = Path(os.environ["OMNISAT_GUI_OUT"])
SHARED = Path(os.environ["OMNISAT_SHARED_DATA"])
MODEL_NAME = os.environ["OMNISAT_UNIVERSAT_MODEL"]  # the checkpoint's name in the picker
RESOLUTION = 10.0
POINTS_PER_CLASS = 4
run = {"checks": [], "failures": [], "timings": {}, "errors": [], "finished": False}
held = {}


def expect(name, ok, detail=""):
    run["checks"].append({"check": name, "ok": bool(ok), "detail": str(detail)[:2000]})
    if not ok:
        run["failures"].append(f"{name}: {detail}"[:2000])


def on_log(message, tag, level):
    if tag == "Python error" or (level == Qgis.MessageLevel.Critical and tag in ("OmniSat", "Processing")):
        run["errors"].append(f"[{tag}] {message}"[:2000])


def end(error=""):
    if error:
        expect("the scenario ran to its end", False, error)
    expect("no error in QGIS's log", not run["errors"], run["errors"])
    if "dock" in held:
        run["messages"] = held["dock"].messages
    run["finished"] = not error
    (OUT / "universat-dock.json").write_text(json.dumps(run, indent=2))
    if "labels" in held and held["labels"].isEditable():
        held["labels"].commitChanges()
    # The plugin goes first, as when the analyst unloads it: its dock and workers end before QGIS's teardown.
    unloadPlugin("omnisat_qgis")
    QgsProject.instance().clear()
    # QGIS 3.40 crashed at exit in 3 of 5 runs (gdb: a pooled render thread ending, its QThread::finished slot in
    # libqgis_core running inside ~QgsApplication): exit once the idle pool threads have ended (see load()).
    QTimer.singleShot(3000, iface.actionExit().trigger)


def step(function, ms=1000):
    """Call ``function`` after ``ms``; any exception ends the run with its traceback."""

    def call():
        try:
            function()
        except Exception:
            end(traceback.format_exc())

    QTimer.singleShot(ms, call)


def after_task(then, key):
    """Once the dock's task ends: its seconds under ``key``, then ``then``."""
    started = time.monotonic()

    def poll():
        if held["dock"].task is not None:
            step(poll, 200)
            return
        run["timings"][key] = round(time.monotonic() - started, 2)
        step(then, 10)

    step(poll, 200)


def load():
    QThreadPool.globalInstance().setExpiryTimeout(1000)  # idle render threads end within a second (see end())
    QgsApplication.messageLog().messageReceived.connect(on_log)
    iface.mainWindow().resize(QSize(1600, 1000))
    QgsProject.instance().setFileName(str(OUT / "project.qgz"))
    dates = [QgsRasterLayer(str(p), p.stem, "gdal") for p in sorted((OUT / "data/eolearn/s2").glob("*.tif"))]
    QgsProject.instance().addMapLayers(dates)
    held["dates"] = dates
    step(zoom, 1500)


def zoom():
    first = held["dates"][0]
    QgsProject.instance().setCrs(first.crs())
    iface.mapCanvas().setDestinationCrs(first.crs())
    iface.mapCanvas().setExtent(first.extent())
    iface.mapCanvas().refresh()
    step(open_dock, 1500)


def open_dock():
    loadPlugin("omnisat_qgis")
    startPlugin("omnisat_qgis")
    dock = held["dock"] = plugins["omnisat_qgis"].show_dock(True)
    combo = dock.model_combo
    texts = [combo.itemText(i) for i in range(combo.count())]
    expect("the picker offers universat-base to download", "universat-base (not downloaded)" in texts, texts)
    expect("the picker lists the UniverSat checkpoint of the models folder", MODEL_NAME in texts, texts)
    dock.select_model(combo.itemData(texts.index(MODEL_NAME)))  # what choosing it in the picker does
    expect("the UniverSat model is chosen", dock.model_panel.info.architecture == "universat", dock.model_panel.info)
    ticked = {r.modality.name: [lyr.name() for lyr in r.checked_layers()] for r in dock.rows if r.checked_layers()}
    expect(
        "the three dates are ticked in the s2 sensor only", ticked == {"s2": [d.name() for d in held["dates"]]}, ticked
    )
    shown = [r.modality.name for r in dock.rows if r.isVisibleTo(dock)]
    expect("sensors without layers are not shown", "enmap" not in shown and "s2" in shown, shown)
    expect(
        "the output resolution and 'other sensor' are offered",
        dock.inputs_panel.resolution_panel.isVisibleTo(dock) and dock.inputs_panel.add_other_button.isVisibleTo(dock),
    )
    dock.inputs_panel.resolution_panel.spin.setValue(RESOLUTION)
    step(label)


def label():
    dock = held["dock"]
    polygons = QgsVectorLayer(str(SHARED / "eolearn_patch/TestEOPatch/vector_timeless/LULC.gpkg"), "lulc", "ogr")
    inside = QgsGeometry.fromRect(held["dates"][0].extent().buffered(-20))
    names = ["forest", "grassland", "schrubland", "artificial surface"]  # eo-learn's names
    dock.class_table.setRowCount(0)
    for name in names:
        dock.add_class(name)
    layer = held["labels"] = dock.new_labels_layer(str(OUT / "labels.gpkg"))
    count = dict.fromkeys(names, 0)
    for polygon in sorted(polygons.getFeatures(), key=lambda f: -f.geometry().intersection(inside).area()):
        name = polygon["LULC_NAME"]
        point = polygon.geometry().intersection(inside).pointOnSurface()
        if name in count and count[name] < POINTS_PER_CLASS and not point.isEmpty():
            feature = QgsFeature(layer.fields())
            feature.setGeometry(point)
            feature["class"] = name
            layer.addFeature(feature)
            count[name] += 1
    run["labels"] = count
    layer.commitChanges()
    dock.fit_and_preview()
    expect("fit and preview starts", dock.task is not None, dock.messages[-1:])
    after_task(fitted, "fit_and_preview_s")


def fitted():
    dock = held["dock"]
    expect("the fit succeeds", dock.controller.outcome == "done", dock.messages[-2:])
    job = dock.preview_job or {}
    expect(
        "the probe is fitted on one vector per 10 m cell",
        job.get("resolution") == RESOLUTION and job.get("outputs", {}).get("embeddings_level") == "dense",
        job,
    )
    dock.extent_combo.setCurrentText("Where the inputs overlap")
    dock.map_whole_area()
    after_task(mapped, "map_whole_area_s")


def mapped():
    dock = held["dock"]
    expect("the whole area is mapped", dock.controller.outcome == "done", dock.messages[-2:])
    said = next(m for m in reversed(dock.messages) if m.startswith("Mapped"))
    group = QgsProject.instance().layerTreeRoot().findGroup(said.split("group '")[1].rstrip("'."))
    classes = next(n.layer() for n in group.findLayers() if n.layer().name() == "Classes")
    expect("the class map has 10 m cells", abs(classes.rasterUnitsPerPixelX() - RESOLUTION) < 1e-6, classes.source())
    values = gdal.Open(classes.source()).ReadAsArray()
    blocks = {
        tuple(sorted(set(values[r : r + 4, c : c + 4].ravel()))) for r in range(0, 96, 4) for c in range(0, 96, 4)
    }
    expect("the map is per cell, not per 40 m patch", any(len(b) > 1 for b in blocks), f"{len(blocks)} block kinds")
    run["dock_classes"] = classes.source()
    run["probe"] = str(dock.last_probe)
    run["job"] = str(Path(classes.source()).parent / "job.json")
    run["model"] = str(dock.model_panel.info.path)
    run["layers"] = [d.source() for d in held["dates"]]
    run["command"] = dock.command.toPlainText()
    preview = QgsProject.instance().layerTreeRoot().findGroup("OmniSat preview")
    if preview is not None:
        preview.setItemVisibilityChecked(False)
    iface.mapCanvas().setExtent(classes.extent())
    iface.mapCanvas().refreshAllLayers()
    dock.tabs.currentWidget().ensureWidgetVisible(dock.inputs_panel.resolution_panel)
    step(screenshot, 3000)  # let the canvas render


def screenshot():
    iface.mainWindow().grab().save(str(OUT / "dock-universat.png"))
    end()


step(load, 2000)
