"""Run by real QGIS at start-up (``qgis --code``, see crops_run.sh): a crop analyst's session on the
WorldCereal Flanders sample, checked.

Loads what an analyst has (Sentinel-2 L2A 10 m and 20 m GeoTIFFs and the SCL layer per date, Sentinel-1
VV/VH in dB per day, February to November 2018; the parcel register in Belgian Lambert 72), opens the
dock with AnySat-tiny; ticks the 10 m and 20 m layers in the Sentinel-2 row (one sensor, read as parts),
keeps the SCL layers the dock ticked as the cloud mask (default classes), sets the season March-October;
draws one label polygon inside each field of the three crops with at least two fields; fits and previews,
maps the whole area and classifies the register's parcels. Every step checks what an analyst looks at;
screenshots go to OUT. Writes OUT/result.json: the checks, failures, timings (s, button to styled layers),
and the qgis_process commands the dock showed with the outputs they must reproduce (crops_headless.py
runs and compares them).
"""

import datetime as dt
import hashlib
import os
import re
import sys
import time
from pathlib import Path

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsContrastEnhancement,
    QgsCoordinateTransform,
    QgsFeature,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize, Qt, QTimer
from qgis.PyQt.QtWidgets import QApplication
from qgis.utils import iface, loadPlugin, plugins, startPlugin

sys.path.append(os.environ["OMNISAT_GUI_SCRIPTS"])  # after the plugin folder (see scenario.py)
from scenario import Scenario, quit_qgis  # noqa: E402

OUT = Path(os.environ["OMNISAT_GUI_OUT"])
DATA = OUT / "data" / "flanders"
MODEL = Path(os.environ["OMNISAT_ROOT"]) / "resources" / "models" / "anysat-tiny.safetensors"
LOADED = (dt.date(2018, 2, 1), dt.date(2018, 11, 30))  # the files the analyst adds
SEASON = ("2018-03-01", "2018-10-31")  # the dates the run uses
CROPS = {1200: "maize", 9120: "grassland", 7900: "crop 7900"}  # the codes with at least two parcels
OUTPUT_FIELDS = ["class", "probability", "runner_up", "runner_up_probability", "valid_share", "pixels", "status"]
scenario = Scenario()
record, state = scenario.record, scenario.state
record.update(commands={}, outputs={})
check, guarded, later, when_done = scenario.check, scenario.guarded, scenario.later, scenario.when_done


def shot(name: str) -> None:
    iface.mainWindow().grab().save(str(OUT / name))


def finish(error: str = "") -> None:
    scenario.conclude(OUT, error)
    if state.get("labels") is not None and state["labels"].isEditable():
        state["labels"].commitChanges()
    quit_qgis()


scenario.finish = finish


def day_of(path: Path) -> dt.date:
    return dt.datetime.strptime(re.search(r"(\d{8})", path.name).group(1), "%Y%m%d").date()


def loaded(folder: str) -> list[Path]:
    return [p for p in sorted((DATA / folder).glob("*.tif")) if LOADED[0] <= day_of(p) <= LOADED[1]]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def row(name):
    dock = state["dock"]
    return dock.rows[[r.modality.name for r in dock.rows].index(name)]


def clearest_date(scl: list[Path]) -> str:
    """The date whose SCL has the most vegetation / bare soil pixels: the true-colour backdrop."""
    from osgeo import gdal

    def clear(path: Path) -> int:
        values = gdal.Open(str(path)).ReadAsArray()
        return int(((values == 4) | (values == 5)).sum())

    return max(scl, key=clear).name.split("_")[2]


@guarded
def start():
    from qgis.core import QgsApplication

    QgsApplication.messageLog().messageReceived.connect(scenario.logged)
    iface.mainWindow().resize(QSize(1600, 1000))
    project = QgsProject.instance()
    project.setFileName(str(OUT / "project.qgz"))
    files = {folder: loaded(folder) for folder in ("s2_10m", "s2_20m", "scl", "s1")}
    record["loaded"] = {k: len(v) for k, v in files.items()}
    layers = {k: [QgsRasterLayer(str(p), p.stem, "gdal") for p in v] for k, v in files.items()}
    register = QgsVectorLayer(f"{DATA / 'register.gpkg'}|layername=register", "register", "ogr")
    state.update(layers=layers, register=register, register_sha=sha256(DATA / "register.gpkg"))
    backdrop = clearest_date(files["scl"])
    everything = [lyr for group in layers.values() for lyr in group]
    project.addMapLayers(everything + [register])
    root = project.layerTreeRoot()
    for layer in everything:
        shown = layer.name() == f"S2_L2A_{backdrop}_10m"
        root.findLayer(layer.id()).setItemVisibilityChecked(shown)
        if shown:  # true colour (B04, B03, B02)
            renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 3, 2, 1)
            layer.setRenderer(renderer)
            layer.setContrastEnhancement(
                QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum,
                QgsRasterMinMaxOrigin.Limits.CumulativeCut,
            )
            state["backdrop"] = layer
    root.findLayer(register.id()).setItemVisibilityChecked(False)
    later(answer_transformation, 500)


@guarded
def answer_transformation(tries: int = 40):
    """QGIS asks which BD72 -> WGS 84 transformation to use for the register (Lambert 72 in a UTM project), in a
    modal dialog opened inside its layer-tree-to-canvas update: until it is answered the canvas never follows the
    layer tree again (its update stays pending). The analyst clicks OK (the most accurate one, preselected)."""
    question = QApplication.activeModalWidget()
    if question is not None and question.metaObject().className() == "QgsDatumTransformDialog":
        record["transformation_asked"] = question.windowTitle()
        question.accept()
    elif tries:  # not asked yet: the canvas update comes after the 357 layers are in the tree
        return later(lambda: answer_transformation(tries - 1), 250)
    later(zoom, 500)


@guarded
def zoom():
    backdrop = state["backdrop"]
    canvas = iface.mapCanvas()
    QgsProject.instance().setCrs(backdrop.crs())
    canvas.setDestinationCrs(backdrop.crs())
    canvas.setExtent(backdrop.extent().buffered(40))
    canvas.refresh()
    later(open_dock, 1500)


@guarded
def open_dock():
    loadPlugin("omnisat_qgis")
    startPlugin("omnisat_qgis")
    dock = plugins["omnisat_qgis"].show_dock(True)
    state["dock"] = dock
    dock.select_model(str(MODEL))
    layers = state["layers"]
    s2, s1 = row("s2"), row("s1_asc")
    listed = {s2.table.item(i, 0).text() for i in range(s2.table.rowCount())}
    parts = {lyr.name() for lyr in layers["s2_10m"] + layers["s2_20m"]}
    check("the Sentinel-2 row lists the 10 m and the 20 m layers", parts <= listed, sorted(parts - listed)[:5])
    check(
        "the SCL layers are not offered as Sentinel-2 bands",
        not {lyr.name() for lyr in layers["scl"]} & listed,
        sorted({lyr.name() for lyr in layers["scl"]} & listed)[:5],
    )
    panel = dock.crops_panel
    masks = [lyr.name() for lyr in panel.mask_layers()]
    check(
        "the SCL layers are ticked as Sentinel-2's cloud masks",
        masks == sorted(lyr.name() for lyr in layers["scl"]) and panel.mask_modality.currentData() == "s2",
        masks[:3],
    )
    radar = [lyr.name() for lyr in s1.checked_layers()]
    check(
        "the Sentinel-1 days are ticked, their dB values converted while reading",
        len(radar) == len(layers["s1"]) and s1.scale() == "db_to_linear",
        f"{len(radar)} ticked, scale {s1.scale()}; {s1.scale_note.text()}",
    )
    # The analyst ticks the 10 m and 20 m layers of every date in the Sentinel-2 row.
    s2.table.blockSignals(True)
    for index in range(s2.table.rowCount()):
        item = s2.table.item(index, 0)
        item.setCheckState(Qt.CheckState.Checked if item.text() in parts else Qt.CheckState.Unchecked)
    s2.table.blockSignals(False)
    s2.refresh_checks()
    s2.changed.emit()
    panel.setCollapsed(False)
    panel.season_box.setChecked(True)
    panel.set_season(*SEASON)
    entries = {entry.name: entry.job_entry() for entry in dock.inputs()}
    state["entries"] = entries
    s2_job = entries.get("s2", {})
    dates = len(layers["s2_10m"])
    check(
        "Sentinel-2 goes to the engine as one sensor in two parts (10 m, 20 m), same dates",
        [p["bands"] for p in s2_job.get("parts", [])]
        == [["B2", "B3", "B4", "B8"], ["B5", "B6", "B7", "B8A", "B11", "B12"]]
        and all(len(p["dates"]) == dates for p in s2_job["parts"]),
        {k: v for k, v in s2_job.items() if k != "parts"},
    )
    check(
        "the SCL mask with the default classes (no data, defective, shadow, clouds, cirrus, snow), the season",
        s2_job.get("mask", {}).get("classes") == [0, 1, 3, 8, 9, 10, 11]
        and len(s2_job["mask"]["files"]) == dates
        and s2_job.get("season") == list(SEASON)
        and entries.get("s1_asc", {}).get("season") == list(SEASON),
        {k: v for k, v in s2_job.get("mask", {}).items() if k != "files"},
    )
    later(draw_labels, 1000)


@guarded
def draw_labels():
    """One polygon inside each field (10 m in from its edge) of the three crops, traced as an analyst would."""
    dock = state["dock"]
    dock.class_table.setRowCount(0)
    for name in CROPS.values():
        dock.add_class(name)
    dock.labels_panel.geometry_combo.setCurrentText("polygons")
    layer = state["labels"] = dock.new_labels_layer(str(OUT / "labels.gpkg"))
    fields = QgsVectorLayer(f"{DATA / 'parcels.gpkg'}|layername=parcels", "fields", "ogr")
    to_labels = QgsCoordinateTransform(fields.crs(), layer.crs(), QgsProject.instance())
    drawn = dict.fromkeys(CROPS.values(), 0)
    for parcel in fields.getFeatures():
        name = CROPS.get(parcel["crop_code"])
        if name is None:
            continue
        # Inside the field, away from mixed edge pixels; a narrow field less far in.
        inside = next(
            (g for g in (parcel.geometry().buffer(-d, 2) for d in (10, 5, 0)) if not g.isEmpty()), parcel.geometry()
        )
        inside = max(inside.asGeometryCollection(), key=lambda part: part.area())  # the labels are polygons
        inside.transform(to_labels)
        feature = QgsFeature(layer.fields())
        feature.setGeometry(inside)
        feature["class"] = name
        layer.addFeature(feature)
        drawn[name] += 1
    check("the label polygons are saved", layer.commitChanges(), layer.commitErrors())
    layer.startEditing()
    record["labels"] = drawn
    check("label polygons drawn for the three crops", all(drawn.values()), drawn)
    later(fit, 500)


@guarded
def fit():
    dock = state["dock"]
    started = time.monotonic()
    dock.fit_and_preview()
    if not check("fit and preview starts", dock.task is not None, dock.messages[-1:]):
        return finish()
    record["commands"]["fit"] = dock.command.toPlainText()
    when_done(map_area, started, "fit_and_preview_s")


@guarded
def map_area():
    dock = state["dock"]
    if not check("the fit succeeds", dock.controller.outcome == "done", dock.messages[-1:]):
        return finish()
    record["macro_f1"] = (dock.results_panel.last or {}).get("macro_f1")
    record["outputs"]["probe"] = str(dock.last_probe)
    dock.extent_combo.setCurrentText("Where the inputs overlap")
    started = time.monotonic()
    dock.map_whole_area()
    record["commands"]["map"] = dock.command.toPlainText()
    when_done(after_map, started, "map_whole_area_s")


@guarded
def after_map():
    dock = state["dock"]
    if not check("the whole area is mapped", dock.controller.outcome == "done" and dock.last_map, dock.messages[-1:]):
        return finish()
    result = dock.last_map
    for key in ("classes", "confidence", "probabilities"):
        record["outputs"][key] = result[key]
        layer = QgsRasterLayer(result[key], "check", "gdal")
        check(f"output {key} is a valid raster", layer.isValid() and layer.width() == 64, result[key])
    group = QgsProject.instance().layerTreeRoot().findGroup(f"OmniSat {Path(result['classes']).parent.name}")
    crop_map = next(n.layer() for n in group.findLayers() if n.layer().name() == "Classes")
    state["crop_map"] = crop_map
    renderer = crop_map.renderer()
    legend = (
        {(c.label, c.color.name()) for c in renderer.classes()}
        if isinstance(renderer, QgsPalettedRasterRenderer)
        else set()
    )
    table = {(c.name, c.color) for c in dock.classes()}
    check("the crop map is styled in the labels' class names and colours", legend and legend <= table, legend)
    dock.crops_panel.parcels_combo.setLayer(state["register"])
    started = time.monotonic()
    dock.classify_parcels()
    check("Classify parcels starts", dock.task is not None, dock.messages[-1:])
    record["commands"]["parcels"] = dock.command.toPlainText()
    when_done(after_parcels, started, "classify_parcels_s")


@guarded
def after_parcels():
    dock = state["dock"]
    if not check("the parcels are classified", dock.controller.outcome == "done", dock.messages[-1:]):
        return finish()
    layer = next(
        (lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name() == "Parcels of register"), None
    )
    check("the parcel map is in the project", isinstance(layer, QgsVectorLayer) and layer.isValid(), layer)
    record["outputs"]["parcels"] = layer.source().split("|")[0]
    names = [f.name() for f in layer.fields()]
    check("the parcel map has class, probability, runner-up, valid share, status", set(OUTPUT_FIELDS) <= set(names))
    rows = [{k: f[k] for k in OUTPUT_FIELDS} for f in layer.getFeatures()]
    record["parcel_rows"] = rows
    classified = [r for r in rows if r["class"]]
    check(
        "every parcel of the register has its row, in the register's CRS",
        len(rows) == state["register"].featureCount() == 19 and layer.crs().authid() == "EPSG:31370",
        f"{len(rows)} rows, {layer.crs().authid()}",
    )
    check(
        "classified parcels carry a known class, a probability and a valid share in 0..1",
        classified
        and all(
            r["class"] in CROPS.values() and 0 < r["probability"] <= 1 and 0 <= r["valid_share"] <= 1
            for r in classified
        ),
        rows[:3],
    )
    renderer = layer.renderer()
    categories = (
        {(c.value(), c.symbol().color().name()) for c in renderer.categories()}
        if isinstance(renderer, QgsCategorizedSymbolRenderer)
        else set()
    )
    table = {(c.name, c.color) for c in dock.classes()}
    check(
        "the parcel map is styled by class in the dock's colours",
        renderer.classAttribute() == "class" and categories == table if categories else False,
        f"{categories} vs {table}",
    )
    check("the register is not modified", sha256(DATA / "register.gpkg") == state["register_sha"])
    later(final_shot, 500)


@guarded
def final_shot():
    dock = state["dock"]
    root = QgsProject.instance().layerTreeRoot()
    for name in ("Preview classes",):
        for node in root.findLayers():
            if node.layer() is not None and node.layer().name() == name:
                node.setItemVisibilityChecked(False)
    iface.messageBar().clearWidgets()  # QGIS's own notices (fonts it could not download) off the picture
    canvas = iface.mapCanvas()
    canvas.refreshAllLayers()
    dock.tabs.currentWidget().ensureWidgetVisible(dock.crops_panel.parcels_button)

    def grab():
        shown = [layer.name() for layer in canvas.layers()]
        record["canvas"] = {"layers": shown, "frozen": canvas.isFrozen(), "rendering": canvas.renderFlag()}
        check(
            "the canvas draws the crop map and the parcel map", {"Classes", "Parcels of register"} <= set(shown), shown
        )
        canvas.waitWhileRendering()  # the crop map and the parcels drawn, not the canvas's previous image
        shot("dock-crops.png")
        finish()

    later(grab, 3000)


QTimer.singleShot(2000, start)
