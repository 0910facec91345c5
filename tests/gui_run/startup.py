"""Run by real QGIS at start-up (``qgis --code``, see run.sh): the analyst's loop, then a screenshot.

Loads the prepared eo-learn Sentinel-2 dates and the TreeSatAI aerial + Sentinel-1 layers,
starts the plugin, opens the dock, ticks the Sentinel-2 dates (the TreeSatAI tile lies in
Germany, the eo-learn patch in Slovenia: they cannot be fused in one run), adds sixteen labels (four per
class) in the dock's labels layer, runs Fit and preview, one re-fit after an eleventh label, and Map the
whole area, timing each from the button press until the styled layers are in the project; grabs
the main window to OUT/dock-gui.png, writes OUT/timings.json and quits. OUT: $OMNISAT_GUI_OUT.
"""

import json
import os
import time
import traceback
from pathlib import Path

from qgis.core import (Qgis, QgsApplication, QgsFeature, QgsGeometry, QgsPalettedRasterRenderer, QgsProject,
                       QgsRasterLayer, QgsVectorLayer)
from qgis.PyQt.QtCore import QSize, QTimer
from qgis.PyQt.QtGui import QColor
from qgis.utils import iface, loadPlugin, plugins, startPlugin

OUT = Path(os.environ["OMNISAT_GUI_OUT"])
DATA = OUT / "data"
SHARED = Path(os.environ["OMNISAT_SHARED_DATA"])
LABELS_PER_CLASS = {"forest": 4, "grassland": 4, "schrubland": 4, "artificial surface": 4}  # eo-learn's names
record = {"messages": [], "log_errors": []}
state = {}


def log_error(message: str, tag: str, level) -> None:
    """Every critical entry of QGIS's message log (Python errors included) fails the run (tests/gui_run/check.py)."""
    if level == Qgis.MessageLevel.Critical:
        record["log_errors"].append(f"{tag}: {message}")


QgsApplication.messageLog().messageReceived.connect(log_error)


def finish(error: str = "") -> None:
    if error:
        record["error"] = error
    dock = state.get("dock")
    if dock is not None:
        record["messages"] = dock.messages
    (OUT / "timings.json").write_text(json.dumps(record, indent=2))
    if state.get("labels") is not None:
        state["labels"].commitChanges()
    # File > Exit without questions ("save the project?", "temporary layers": files under /tmp count as such)
    QgsProject.instance().clear()
    QTimer.singleShot(500, iface.actionExit().trigger)


def guarded(step):
    def run(*args):
        try:
            step(*args)
        except Exception:  # any failure ends the run with its traceback in timings.json
            finish(traceback.format_exc())
    return run


def when_done(then, started: float, key: str):
    """Poll until the dock's task ends, record its seconds under ``key``, then call ``then``."""
    def poll():
        if state["dock"].task is not None:
            QTimer.singleShot(100, guarded(poll))
            return
        record[key] = round(time.monotonic() - started, 2)
        then()
    QTimer.singleShot(100, guarded(poll))


def labels_from_polygons(dock, inside):
    """Ten points, each inside its own eo-learn land-cover polygon and inside the Sentinel-2 scene
    (the polygons reach beyond it): what an analyst clicks, one point per field."""
    polygons = QgsVectorLayer(str(SHARED / "eolearn_patch/TestEOPatch/vector_timeless/LULC.gpkg"), "lulc", "ogr")
    dock.class_table.setRowCount(0)
    for name in LABELS_PER_CLASS:
        dock.add_class(name)
    layer = dock.new_labels_layer(str(OUT / "labels.gpkg"))
    area = QgsGeometry.fromRect(inside)
    taken = dict.fromkeys(LABELS_PER_CLASS, 0)
    for polygon in sorted(polygons.getFeatures(), key=lambda f: -f.geometry().intersection(area).area()):
        name = polygon["LULC_NAME"]
        point = polygon.geometry().intersection(area).pointOnSurface()
        if name in taken and taken[name] < LABELS_PER_CLASS[name] and not point.isEmpty():
            feature = QgsFeature(layer.fields())
            feature.setGeometry(point)
            feature["class"] = name
            layer.addFeature(feature)
            taken[name] += 1
    record["labels"] = taken
    return layer


@guarded
def start():
    iface.mainWindow().resize(QSize(1600, 1000))
    project = QgsProject.instance()
    project.setFileName(str(OUT / "project.qgz"))
    s2 = [QgsRasterLayer(str(p), p.stem, "gdal") for p in sorted((DATA / "eolearn" / "s2").glob("*.tif"))]
    tree = sorted((DATA / "treesatai").glob("*.tif"))
    others = [QgsRasterLayer(str(p), p.stem, "gdal") for p in tree]
    project.addMapLayers(others + s2)
    for layer in others:  # in the project and in the rows, but another place: hidden on the map
        project.layerTreeRoot().findLayer(layer.id()).setItemVisibilityChecked(False)
    loadPlugin("omnisat_qgis")
    startPlugin("omnisat_qgis")
    dock = plugins["omnisat_qgis"].show_dock(True)
    state["dock"], state["s2"] = dock, s2
    dock.select_model(str(DATA / "eolearn" / "omnisat.safetensors"))
    dock.fill_rows({"s2": {"layers": [lyr.id() for lyr in s2]}, "aerial": {"layers": []},
                    "s1_asc": {"layers": []}})
    record["rows"] = {row.modality.name: [lyr.name() for lyr in row.checked_layers()] for row in dock.rows}
    record["offered"] = {row.modality.name: row.table.rowCount() for row in dock.rows}
    QTimer.singleShot(1500, guarded(zoom))  # once the dock has taken its width from the canvas


@guarded
def zoom():
    s2 = state["s2"]
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(s2[0].crs())
    canvas.setExtent(s2[0].extent())
    canvas.refresh()
    QTimer.singleShot(1500, guarded(fit))


@guarded
def fit():
    dock = state["dock"]
    extent = state["s2"][0].extent()
    state["labels"] = labels_from_polygons(dock, extent.buffered(-20))
    record["canvas_extent"] = iface.mapCanvas().extent().toString(0)
    started = time.monotonic()
    dock.fit_and_preview()
    when_done(refit, started, "first_fit_s")


@guarded
def refit():
    dock, labels = state["dock"], state["labels"]
    record["metrics_after_fit"] = dock.metrics.text()
    extent = iface.mapCanvas().extent()
    more = QgsFeature(labels.fields())
    more.setGeometry(QgsGeometry.fromWkt(f"POINT ({extent.center().x()} {extent.center().y()})"))
    more["class"] = "forest"
    labels.addFeature(more)
    started = time.monotonic()
    dock.fit_and_preview()
    record["refit_steps"] = [s.operation for s in dock.task.steps] if dock.task else None
    when_done(map_area, started, "refit_s")


@guarded
def map_area():
    dock = state["dock"]
    dock.extent_combo.setCurrentText("Where the inputs overlap")
    started = time.monotonic()
    dock.map_whole_area()
    when_done(shoot, started, "map_whole_area_s")


@guarded
def shoot():
    dock = state["dock"]
    record["map_message"] = dock.messages[-1] if dock.messages else ""
    record["metrics"] = dock.metrics.text()
    record["class_colors"] = {c.name: QColor(c.color).name() for c in dock.classes()}
    record["legends"] = {layer.name(): [[c.label, c.color.name()] for c in layer.renderer().classes()]
                         for layer in QgsProject.instance().mapLayers().values()
                         if isinstance(layer, QgsRasterLayer) and isinstance(layer.renderer(), QgsPalettedRasterRenderer)}
    record["rasters"] = {layer.name(): layer.source() for layer in QgsProject.instance().mapLayers().values()
                         if isinstance(layer, QgsRasterLayer) and not layer.source().startswith(str(DATA))}
    for layer in QgsProject.instance().mapLayers().values():  # the run's inputs stay below the results
        if layer.name().startswith(("Abies", "S1_asc")):
            node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
            node.setItemVisibilityChecked(False)
    iface.mapCanvas().refreshAllLayers()
    dock.tabs.currentWidget().ensureWidgetVisible(dock.metrics)  # the accuracy in the picture

    def grab():
        iface.mainWindow().grab().save(str(OUT / "dock-gui.png"))
        finish()
    QTimer.singleShot(3000, guarded(grab))  # let the canvas render


QTimer.singleShot(2000, start)
