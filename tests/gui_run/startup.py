"""Run by real QGIS at start-up (``qgis --code``, see run.sh): the analyst's session, checked.

Loads the TreeSatAI aerial + Sentinel-1 layers (Lower Saxony) and two eo-learn Sentinel-2 dates
(Slovenia), zooms to Slovenia, opens the dock; then, as an analyst would: adds the third date and
a 30-band stack of the dates after the dock opened, draws labels with eo-learn's class names,
renames two classes in the class table (and adds one), ticks a layer of the other place and reads
the refusal, fits and previews, re-fits after one more label, maps the whole area, maps it again
from the date stack instead of the dates, and cancels a third run. Every step checks what an
analyst would look at (ticks, field, renamed samples and legend, the whole message, held-out
macro-F1, valid outputs, the cancel's outcome, no error in the log); screenshots go to OUT.
Writes OUT/result.json: the checks, the failures, the timings (s, from the button press until
the styled layers are in the project; also alone in OUT/timings.json); the last screenshot is
OUT/dock-gui.png. run.sh exits non-zero on any failure.
"""

import json
import os
import sys
import time
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsFeature,
    QgsGeometry,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QSize, Qt, QTimer
from qgis.utils import iface, loadPlugin, plugins, startPlugin

sys.path.append(os.environ["OMNISAT_GUI_SCRIPTS"])  # after the plugin folder (see scenario.py)
from scenario import ProgressRecorder, Scenario, classes_layer, group_of_last_map, labels_from_polygons, quit_qgis  # noqa: E402

OUT = Path(os.environ["OMNISAT_GUI_OUT"])
DATA = OUT / "data"
SHARED = Path(os.environ["OMNISAT_SHARED_DATA"])
LABELS_PER_CLASS = {"forest": 4, "grassland": 4, "schrubland": 4, "artificial surface": 4}  # eo-learn's names
RENAMED = {"schrubland": "shrubland", "artificial surface": "built-up"}
# Held-out macro-F1 of the re-fit (17 labels, 4 classes, 16 held-out cells) with the scene's
# random-weights test model: 0.56 when this scenario was written (2026-12-07); chance is 0.25.
# The floor sits between the two: a broken band mapping, date order or label transfer falls to chance.
MACRO_F1_FLOOR = 0.45
scenario = Scenario(allowed_criticals=("different places",))  # a refusal the scenario provokes
record, state = scenario.record, scenario.state
check, guarded, later, when_done = scenario.check, scenario.guarded, scenario.later, scenario.when_done


def shot(name: str) -> None:
    iface.mainWindow().grab().save(str(OUT / name))


def finish(error: str = "") -> None:
    scenario.conclude(OUT, error)
    (OUT / "timings.json").write_text(json.dumps(dict(record["timings"], macro_f1=record.get("macro_f1")), indent=2))
    if state.get("labels") is not None and state["labels"].isEditable():
        state["labels"].commitChanges()
    quit_qgis()


scenario.finish = finish


def row(name):
    dock = state["dock"]
    return dock.rows[[r.modality.name for r in dock.rows].index(name)]


def row_index(r, text):
    return next(i for i in range(r.table.rowCount()) if r.table.item(i, 0).text() == text)


def valid_raster(path: str) -> tuple[bool, str]:
    layer = QgsRasterLayer(path, "check", "gdal")
    ok = Path(path).is_file() and layer.isValid() and layer.bandCount() >= 1 and layer.width() > 0
    return ok, f"{path}: valid={layer.isValid()} bands={layer.bandCount()} size={layer.width()}x{layer.height()}"


@guarded
def start():
    QgsApplication.messageLog().messageReceived.connect(scenario.logged)
    iface.mainWindow().resize(QSize(1600, 1000))
    project = QgsProject.instance()
    project.setFileName(str(OUT / "project.qgz"))
    s2 = [QgsRasterLayer(str(p), p.stem, "gdal") for p in sorted((DATA / "eolearn" / "s2").glob("*.tif"))]
    others = [QgsRasterLayer(str(p), p.stem, "gdal") for p in sorted((DATA / "treesatai").glob("*.tif"))]
    project.addMapLayers(others + s2[:2])
    for layer in others:  # in the project and in the rows, but another place: hidden on the map
        project.layerTreeRoot().findLayer(layer.id()).setItemVisibilityChecked(False)
    state["s2"], state["others"] = s2, others
    later(zoom, 1500)  # once QGIS has zoomed to the layers it loaded


@guarded
def zoom():
    """The analyst zooms to the Slovenian dates before opening the dock."""
    s2 = state["s2"]
    canvas = iface.mapCanvas()
    QgsProject.instance().setCrs(s2[0].crs())  # the canvas follows the project's CRS (set by the first layer)
    canvas.setDestinationCrs(s2[0].crs())
    canvas.setExtent(s2[0].extent())
    canvas.refresh()
    later(open_dock, 1500)


@guarded
def open_dock():
    loadPlugin("omnisat_qgis")
    startPlugin("omnisat_qgis")
    dock = plugins["omnisat_qgis"].show_dock(True)
    state["dock"] = dock
    dock.select_model(str(DATA / "eolearn" / "omnisat.safetensors"))
    check(
        "engine status shown ready at the top",
        dock.model_panel.engine.text().startswith("Engine ready"),
        dock.model_panel.engine.text(),
    )
    s2 = state["s2"]
    ticked = {r.modality.name: [lyr.name() for lyr in r.checked_layers()] for r in dock.rows}
    check(
        "only the layers where the map is are ticked",
        ticked == {"aerial": [], "s2": [s.name() for s in s2[:2]], "s1_asc": []},
        ticked,
    )
    QgsProject.instance().addMapLayer(s2[2])  # a date loaded after the dock opened
    ticked = [lyr.name() for lyr in row("s2").checked_layers()]
    check("a layer added after the dock opened is listed and ticked", ticked == [s.name() for s in s2], ticked)
    stack = QgsRasterLayer(str(DATA / "stack" / "s2_stack.tif"), "S2 stack 2015 (30 bands)", "gdal")
    QgsProject.instance().addMapLayer(stack)
    project_root = QgsProject.instance().layerTreeRoot()
    project_root.findLayer(stack.id()).setItemVisibilityChecked(False)
    state["stack"] = stack
    r = row("s2")
    index = row_index(r, stack.name())
    dates = r.table.item(index, 1).text()
    check("a multi-band date stack is listed with its dates", dates == "2015-08-20, 2015-08-30, 2015-09-09", dates)
    check("the stack is not ticked beside the dates", stack.name() not in [lyr.name() for lyr in r.checked_layers()])
    later(draw_labels, 1500)


@guarded
def draw_labels():
    dock = state["dock"]
    labels, record["labels"] = labels_from_polygons(
        dock,
        state["s2"][0].extent().buffered(-20),
        str(SHARED / "eolearn_patch/TestEOPatch/vector_timeless/LULC.gpkg"),
        LABELS_PER_CLASS,
        str(OUT / "labels.gpkg"),
    )
    state["labels"] = labels
    table = dock.class_table
    for old, new in RENAMED.items():  # the analyst double-clicks the name and types
        item = next(table.item(r, 0) for r in range(table.rowCount()) if table.item(r, 0).text() == old)
        item.setText(new)
    dock.labels_panel.add_button.click()  # Add class, then name it
    table.item(table.rowCount() - 1, 0).setText("water")
    check(
        "the class field stays 'class' through renames and Add class",
        dock.field_combo.currentField() == "class",
        dock.field_combo.currentField(),
    )
    values = sorted({f["class"] for f in labels.getFeatures()})
    check("renaming a class renames its samples", values == sorted(["forest", "grassland", *RENAMED.values()]), values)
    categories = [(c.value(), c.label()) for c in labels.renderer().categories()]
    check(
        "the labels' symbols follow the renamed classes",
        labels.renderer().classAttribute() == "class"
        and ("shrubland", "shrubland") in categories
        and ("built-up", "built-up") in categories,
        categories,
    )
    iface.mapCanvas().refreshAllLayers()
    later(lambda: (shot("1-labels-renamed.png"), mixed_places()), 2000)


@guarded
def mixed_places():
    dock = state["dock"]
    radar = row("s1_asc")
    first = state["others"][1]  # an S1 date of Lower Saxony
    radar.table.item(row_index(radar, first.name()), 0).setCheckState(Qt.CheckState.Checked)
    dock.fit_and_preview()
    label = dock.message_area.text
    text = label.text()
    check(
        "a selection of two places is refused, the reason in full",
        dock.task is None
        and "different places" in text
        and "untick the layers of the other place" in text
        and first.name() in text,
        text,
    )

    def untick():
        check(
            "the whole message is shown (wrapped, no line cut)",
            label.wordWrap() and label.isVisible() and label.height() >= label.heightForWidth(label.width()),
            f"{label.height()} px tall, {label.heightForWidth(label.width())} px needed",
        )
        shot("2-message-in-full.png")
        radar.table.item(row_index(radar, first.name()), 0).setCheckState(Qt.CheckState.Unchecked)
        fit()

    later(untick, 1000)


@guarded
def fit():
    dock = state["dock"]
    record["canvas_extent"] = iface.mapCanvas().extent().toString(0)
    progress = ProgressRecorder(dock, ("Mapping windows", lambda: shot("3-fit-progress.png")))
    progress.start()
    started = time.monotonic()
    dock.fit_and_preview()
    check("fit and preview starts", dock.task is not None, dock.messages[-1:])
    when_done(refit, started, "first_fit_s", progress)


def macro_f1(dock):
    result = dock.results_panel.last or {}
    return result.get("macro_f1")


@guarded
def refit():
    dock, labels = state["dock"], state["labels"]
    check("the first fit succeeds", dock.controller.outcome == "done", dock.messages[-1:])
    extent = iface.mapCanvas().extent()
    more = QgsFeature(labels.fields())
    more.setGeometry(QgsGeometry.fromWkt(f"POINT ({extent.center().x()} {extent.center().y()})"))
    more["class"] = "forest"
    labels.addFeature(more)
    started = time.monotonic()
    dock.fit_and_preview()
    steps = [s.operation for s in dock.task.steps] if dock.task else None
    check("a re-fit reuses the cached embeddings", steps == ["fit-probe"], steps)
    when_done(after_refit, started, "refit_s")


@guarded
def after_refit():
    dock = state["dock"]
    score = macro_f1(dock)
    record["macro_f1"] = score
    report = Path((dock.results_panel.last or {}).get("report", OUT / "missing"))
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    check("the fit report names the encoder hash honestly", "encoder tensors sha256 (not the file" in text, report)
    check(
        f"held-out macro-F1 shown and above {MACRO_F1_FLOOR}",
        score is not None and score >= MACRO_F1_FLOOR and "macro-F1" in dock.metrics.text(),
        f"{score}; {dock.metrics.text()[:300]}",
    )
    later(map_area, 500)


@guarded
def map_area():
    dock = state["dock"]
    dock.extent_combo.setCurrentText("Where the inputs overlap")
    progress = ProgressRecorder(dock)
    progress.start()
    started = time.monotonic()
    dock.map_whole_area()
    when_done(after_map, started, "map_whole_area_s", progress)


@guarded
def after_map():
    dock = state["dock"]
    check(
        "the whole area is mapped",
        dock.controller.outcome == "done" and dock.messages[-1].startswith("Mapped"),
        dock.messages[-1:],
    )
    layer = classes_layer(group_of_last_map(dock))
    state["map_classes"] = layer.source()
    for path in (layer.source(), layer.source().replace("classes.tif", "confidence.tif")):
        check(f"output {Path(path).name} is a valid raster", *valid_raster(path))
    renderer = layer.renderer()
    legend = (
        {(c.label, c.color.name()) for c in renderer.classes()}
        if isinstance(renderer, QgsPalettedRasterRenderer)
        else set()
    )
    table = {(c.name, c.color) for c in dock.classes()}
    names = {name for name, _ in legend}
    check(
        "the class map's legend has the labels' class names and colours, renamed ones included",
        legend and legend <= table and {"shrubland", "built-up"} <= names and "schrubland" not in names,
        f"legend {sorted(legend)} table {sorted(table)}",
    )
    state["labels"].commitChanges()
    s2 = row("s2")  # the same dates, from the one-file stack
    for layer_ in state["s2"]:
        s2.table.item(row_index(s2, layer_.name()), 0).setCheckState(Qt.CheckState.Unchecked)
    s2.table.item(row_index(s2, state["stack"].name()), 0).setCheckState(Qt.CheckState.Checked)
    entry = s2.modality_input()
    check(
        "the stack goes to the engine as one file with its dates",
        entry.files == [state["stack"].source()] and entry.dates == ["2015-08-20", "2015-08-30", "2015-09-09"],
        entry,
    )
    started = time.monotonic()
    dock.map_whole_area()
    when_done(after_stack_map, started, "map_from_stack_s")


@guarded
def after_stack_map():
    from osgeo import gdal

    dock = state["dock"]
    check("the area is mapped from the date stack", dock.controller.outcome == "done", dock.messages[-1:])
    stacked = classes_layer(group_of_last_map(dock)).source()
    same = gdal.Open(stacked).ReadAsArray().tolist() == gdal.Open(state["map_classes"]).ReadAsArray().tolist()
    check("the stack's map equals the map of the same dates as layers", same, stacked)
    dock.map_whole_area()
    task = dock.task
    state["cancel_run"] = Path(task.steps[0].outputs[0]).parent
    check(
        "QGIS's task is silent (its own notice of a cancel reads 'Task failed')", bool(task.flags() & task.Flag.Silent)
    )
    task.progressChanged.connect(lambda value: dock.cancel() if value > 0 else None)
    when_done(after_cancel, time.monotonic(), "cancel_s")


@guarded
def after_cancel():
    dock = state["dock"]
    check(
        "a cancel is a cancel (message, progress bar)",
        dock.messages[-1] == "Cancelled; no output was written."
        and dock.progress.format() == "Cancelled"
        and dock.controller.outcome == "cancelled",
        f"{dock.messages[-1:]} {dock.progress.format()}",
    )
    left = sorted(p.name for p in state["cancel_run"].iterdir())
    check("a cancelled run leaves no output", left == ["job.json"], left)
    later(final_shot, 500)


@guarded
def final_shot():
    dock = state["dock"]
    for layer in QgsProject.instance().mapLayers().values():  # the run's inputs stay below the results
        if layer.name().startswith(("Abies", "S1_asc")):
            QgsProject.instance().layerTreeRoot().findLayer(layer.id()).setItemVisibilityChecked(False)
    iface.mapCanvas().refreshAllLayers()
    dock.tabs.currentWidget().ensureWidgetVisible(dock.metrics)  # the accuracy in the picture

    def grab():
        shot("dock-gui.png")
        finish()

    later(grab, 3000)  # let the canvas render


QTimer.singleShot(2000, start)
