"""Run by real QGIS at start-up (``qgis --code``, see assess_run.sh): the assessment loop in two sessions.

Phase 1: the class map and a true-colour Sentinel-2 date in the project, the plugin's dock on
its Assess tab; a stratified sample sized from a target standard error (sizes first, then the
draw, both through the engine worker), then half the points labelled with the keyboard only
(the reference class of each point taken from eo-learn's land-cover polygons, standing in for
the interpreter); a screenshot; QGIS quits. Phase 2: QGIS again, the sample opened again
(it must resume at the first point not labelled), the rest labelled, the assessment run,
screenshots of the panel and of the HTML report. Writes OUT/phase<N>.json.
OUT: $OMNISAT_GUI_OUT; phase: $OMNISAT_ASSESS_PHASE.
"""

import json
import os
import traceback
from pathlib import Path

from qgis.core import QgsGeometry, QgsPointXY, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QSize, Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QTextBrowser
from qgis.utils import iface, loadPlugin, plugins, startPlugin

OUT = Path(os.environ["OMNISAT_GUI_OUT"])
DATA = OUT / "data"
SHARED = Path(os.environ["OMNISAT_SHARED_DATA"])
PHASE = int(os.environ.get("OMNISAT_ASSESS_PHASE", "1"))
KEYS = [Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_3, Qt.Key.Key_4, Qt.Key.Key_5]
NAMES = {
    "cultivated land": "cultivated land",
    "forest": "forest",
    "grassland": "grassland",
    "shrubland": "shrubland",
    "schrubland": "shrubland",
    "artificial surface": "artificial surface",
}
record = {"phase": PHASE, "messages": []}
state = {}


def finish(error: str = "") -> None:
    if error:
        record["error"] = error
    panel = state.get("panel")
    if panel is not None:
        record["messages"] = panel.messages
    (OUT / f"phase{PHASE}.json").write_text(json.dumps(record, indent=2))
    QgsProject.instance().clear()
    QTimer.singleShot(500, iface.actionExit().trigger)


def guarded(step):
    def run(*args):
        try:
            step(*args)
        except Exception:
            finish(traceback.format_exc())

    return run


def when_done(then):
    def poll():
        if state["panel"].task is not None:
            QTimer.singleShot(100, guarded(poll))
            return
        then()

    QTimer.singleShot(100, guarded(poll))


def reference_of(point) -> str:
    """The eo-learn land-cover polygon under the point: the stand-in for the interpreter's label."""
    geometry = QgsGeometry.fromPointXY(QgsPointXY(point))
    for polygon in state["polygons"].getFeatures():
        if polygon.geometry().contains(geometry):
            return NAMES.get(polygon["LULC_NAME"], "")
    return ""


def press_labels(count: int) -> None:
    """Label ``count`` points with the keyboard only: the class's number key, or D (no data)."""
    panel = state["panel"]
    panel.setFocus()
    for _ in range(count):
        name = reference_of(panel.feature().geometry().asPoint())
        key = KEYS[panel.classes.index(name)] if name in panel.classes else Qt.Key.Key_D
        QTest.keyClick(panel, key)


@guarded
def start():
    iface.mainWindow().resize(QSize(1600, 1000))
    project = QgsProject.instance()
    rgb = QgsRasterLayer(str(DATA / "s2_rgb.tif"), "Sentinel-2 true colour", "gdal")
    classes = QgsRasterLayer(str(DATA / "landcover.tif"), "land cover map", "gdal")
    project.addMapLayers([rgb, classes])
    project.layerTreeRoot().findLayer(classes.id()).setItemVisibilityChecked(False)  # label against the imagery
    state["polygons"] = QgsVectorLayer(
        str(SHARED / "eolearn_patch/TestEOPatch/vector_timeless/LULC.gpkg"), "lulc", "ogr"
    )
    loadPlugin("omnisat_qgis")
    startPlugin("omnisat_qgis")
    dock = plugins["omnisat_qgis"].show_dock(True)
    titles = [dock.tabs.tabText(i) for i in range(dock.tabs.count())]
    dock.tabs.setCurrentIndex(titles.index("Assess"))
    panel = dock.assessment
    state["dock"], state["panel"] = dock, panel
    panel.map_combo.setLayer(classes)
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(rgb.crs())
    canvas.setExtent(rgb.extent())
    panel.scale_spin.setValue(4000)
    if PHASE == 1:
        panel.design_combo.setCurrentText("stratified")
        panel.allocation_combo.setCurrentText("proportional")
        panel.target_spin.setValue(0.05)
        panel.expected.setText("0.6, 0.9, 0.8, 0.7, 0.8")
        panel.min_spin.setValue(5)
        panel.seed_spin.setValue(11)
        panel.draw(dry_run=True)
        when_done(draw)
    else:
        QTimer.singleShot(1000, guarded(resume))


@guarded
def draw():
    panel = state["panel"]
    record["sizes"] = panel.sizes.text()
    panel.draw(dry_run=False, output=str(OUT / "sample.gpkg"))
    when_done(label_half)


@guarded
def label_half():
    panel = state["panel"]
    record["drawn"] = panel.sizes.text()
    record["points"] = len(panel.fids)
    record["half"] = half = len(panel.fids) // 2
    press_labels(half)
    record["position_after_half"] = panel.position
    record["progress"] = panel.progress_label.text()
    QTimer.singleShot(2500, guarded(shoot_and_quit))


@guarded
def shoot_and_quit():
    iface.mainWindow().grab().save(str(OUT / "assess-labelling.png"))
    finish()


@guarded
def resume():
    panel = state["panel"]
    panel.open_sample(str(OUT / "sample.gpkg"))
    record["resumed_at"] = panel.position
    record["progress_on_reopen"] = panel.progress_label.text()
    press_labels(len(panel.fids) - panel.position)
    record["progress"] = panel.progress_label.text()
    panel.assess(csv_path=str(OUT / "assessment.csv"))
    when_done(report)


@guarded
def report():
    panel = state["panel"]
    record["status"] = panel.status.text()
    QTimer.singleShot(2500, guarded(shoot_report))


@guarded
def shoot_report():
    state["dock"].tabs.currentWidget().ensureWidgetVisible(state["panel"].status)  # the result in the picture
    iface.mainWindow().grab().save(str(OUT / "assess-done.png"))
    browser = QTextBrowser()
    browser.setHtml((OUT / "assessment.html").read_text())
    browser.resize(1100, 1500)
    browser.grab().save(str(OUT / "assess-report.png"))
    finish()


QTimer.singleShot(2000, start)
