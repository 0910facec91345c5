"""The OmniSat dock: pick a model and layers per modality, draw labels, fit, preview, map.

Fit and preview embeds the visible map area (plus a margin) once, caches the
embeddings on disk (omnisat_qgis.gui.session) and fits a probe on them; adding
labels and fitting again reuses the cache. Map the whole area applies the probe
to the chosen extent. Every engine run is a background task (cancel kills the
worker; nothing half-written stays), and the dock shows the qgis_process
command that reproduces it.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsProject,
    QgsRasterInterface,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import (
    QgsCollapsibleGroupBox,
    QgsColorButton,
    QgsDockWidget,
    QgsFieldComboBox,
    QgsMapLayerComboBox,
    QgsMapToolExtent,
    QgsMessageBar,
)
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor, QGuiApplication
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from omnisat_qgis import settings
from omnisat_qgis.gui.change_tab import ChangeTab
from omnisat_qgis.gui.engine_task import EngineTask, Step
from omnisat_qgis.gui.export import ExportError, export_extent
from omnisat_qgis.gui.labels_layer import (
    DEFAULT_FIELD,
    LabelClass,
    LabelsError,
    create_labels_layer,
    default_color,
    style_labels,
)
from omnisat_qgis.gui.modality_row import InputError, ModalityRow, NotAFileLayer
from omnisat_qgis.gui.panels.assessment import AssessmentPanel
from omnisat_qgis.gui.session import (
    PREVIEW_LEVEL,
    Advanced,
    EmbeddingCache,
    Extent,
    ModalityInput,
    build_job,
    embedding_key,
    qgis_process_command,
)
from omnisat_qgis.layer_metadata import RunRecord
from omnisat_qgis.learn_area import LearnAreaRequest, RequestError
from omnisat_qgis.model_catalog import CatalogError, ModelInfo, model_info, shipped_models
from omnisat_qgis.styling import style_classes, style_layer

BROWSE = "Browse…"
PREVIEW_MARGIN = 0.1  # share of the visible extent added on each side: labels near the edge still fall inside
PREVIEW_GROUP = "OmniSat preview"
EXTENT_CHOICES = ("Visible map area", "Where the inputs overlap", "Drawn rectangle")
STATE_SCOPE, STATE_KEY = "omnisat", "dock"


class OmniSatDock(QgsDockWidget):
    def __init__(self, iface, parent=None):
        super().__init__("OmniSat", parent)
        self.setObjectName("OmniSatDock")
        self.iface = iface
        self.rows: list[ModalityRow] = []
        self.task: EngineTask | None = None
        self.drawn: Extent | None = None
        self.last_probe: Path | None = None
        self.preview_job: dict[str, Any] | None = None
        self.embed_runs = 0  # embeddings computed by this dock (a re-fit must not add one)
        self.messages: list[str] = []  # what the message bar said, newest last
        self._map_tool: QgsMapToolExtent | None = None
        self._build()
        self.reload_models()

    # ------------------------------------------------------------------ widgets
    def _build(self) -> None:
        outer = QWidget()
        shared = QVBoxLayout(outer)
        self.bar = QgsMessageBar()
        shared.addWidget(self.bar)
        body = QWidget()
        layout = QVBoxLayout(body)

        form = QFormLayout()
        self.model_combo = QComboBox()
        self.model_combo.activated.connect(self._model_activated)
        setup = QPushButton("Set up the engine…")
        setup.setToolTip("Build the Python environment the engine runs in (torch, rasterio), once")
        setup.clicked.connect(self.set_up_engine)
        model_line = QHBoxLayout()
        model_line.addWidget(self.model_combo, 1)
        model_line.addWidget(setup)
        form.addRow("Model", model_line)
        self.model_summary = QLabel()
        self.model_summary.setWordWrap(True)
        form.addRow(self.model_summary)
        shared.addLayout(form)

        self.rows_box = QVBoxLayout()
        layout.addLayout(self.rows_box)

        extent_line = QHBoxLayout()
        self.extent_combo = QComboBox()
        self.extent_combo.addItems(EXTENT_CHOICES)
        self.draw_button = QPushButton("Draw")
        self.draw_button.setToolTip("Draw the area to map with the mouse")
        self.draw_button.clicked.connect(self.start_drawing)
        extent_line.addWidget(QLabel("Area to map"))
        extent_line.addWidget(self.extent_combo, 1)
        extent_line.addWidget(self.draw_button)
        layout.addLayout(extent_line)

        layout.addWidget(self._labels_box())

        advanced = QgsCollapsibleGroupBox("Advanced")
        advanced.setCollapsed(True)
        advanced_form = QFormLayout(advanced)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 256)
        self.batch_spin.setValue(Advanced().batch_size)
        self.batch_spin.setToolTip("Windows per model call: lower it when the engine runs out of memory")
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(["auto", "fp32", "bf16"])
        self.window_spin = QSpinBox()
        self.window_spin.setRange(0, 100000)
        self.window_spin.setSuffix(" m")
        self.window_spin.setSpecialValueText("model default")
        self.window_spin.setToolTip("Side of the windows the model sees at once: lower it when the engine runs "
                                    "out of memory")
        advanced_form.addRow("Batch size", self.batch_spin)
        advanced_form.addRow("Window size", self.window_spin)
        advanced_form.addRow("Device", self.device_combo)
        advanced_form.addRow("Precision", self.precision_combo)
        layout.addWidget(advanced)

        buttons = QHBoxLayout()
        self.fit_button = QPushButton("Fit and preview")
        self.fit_button.clicked.connect(self.fit_and_preview)
        self.map_button = QPushButton("Map the whole area")
        self.map_button.clicked.connect(self.map_whole_area)
        for button in (self.fit_button, self.map_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        layout.addLayout(self._learn_line())

        self.metrics = QLabel("Draw labels, then Fit and preview.")
        self.metrics.setWordWrap(True)
        self.metrics.setTextFormat(Qt.TextFormat.RichText)
        self.metrics.setOpenExternalLinks(True)
        layout.addWidget(self.metrics)
        layout.addStretch(1)

        self.change_tab = ChangeTab()
        self.change_tab.run_button.clicked.connect(self.detect_change)
        self.assessment = AssessmentPanel(self.iface.mapCanvas() if self.iface else None)
        self.tabs = QTabWidget()
        for widget, title in ((body, "Map"), (self.change_tab, "Change"), (self.assessment, "Assess")):
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setWidget(widget)
            self.tabs.addTab(scroll, title)
        shared.addWidget(self.tabs, 1)

        progress_line = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        progress_line.addWidget(self.progress, 1)
        progress_line.addWidget(self.cancel_button)
        shared.addLayout(progress_line)

        command_line = QHBoxLayout()
        command_line.addWidget(QLabel("Same run, headless:"))
        copy = QPushButton("Copy")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.command.toPlainText()))
        command_line.addStretch(1)
        command_line.addWidget(copy)
        shared.addLayout(command_line)
        self.command = QPlainTextEdit()
        self.command.setReadOnly(True)
        self.command.setMaximumHeight(90)
        shared.addWidget(self.command)
        self.setWidget(outer)

    def _labels_box(self) -> QWidget:
        box = QgsCollapsibleGroupBox("Labels")
        layout = QVBoxLayout(box)
        line = QHBoxLayout()
        self.geometry_combo = QComboBox()
        self.geometry_combo.addItems(["points", "polygons"])
        new = QPushButton("New labels layer")
        new.clicked.connect(self.new_labels_layer)
        line.addWidget(new)
        line.addWidget(self.geometry_combo)
        layout.addLayout(line)
        form = QFormLayout()
        self.labels_combo = QgsMapLayerComboBox()
        self.labels_combo.setFilters(Qgis.LayerFilter.PointLayer | Qgis.LayerFilter.PolygonLayer)
        self.labels_combo.setAllowEmptyLayer(True)
        self.field_combo = QgsFieldComboBox()
        self.labels_combo.layerChanged.connect(self._labels_changed)
        self.ignore_edit = QLineEdit()
        self.ignore_edit.setPlaceholderText("e.g. 0 (no data)")
        form.addRow("Labels layer", self.labels_combo)
        form.addRow("Class field", self.field_combo)
        form.addRow("Ignore classes", self.ignore_edit)
        # Off by default: the curve refits the probe for every sample size (about 20 s of a 25 s re-fit).
        self.curve_box = QCheckBox("Learning curve in the fit report (slower re-fits)")
        form.addRow(self.curve_box)
        layout.addLayout(form)
        self.class_table = QTableWidget(0, 2)
        self.class_table.setHorizontalHeaderLabels(["Class", "Colour"])
        self.class_table.horizontalHeader().setStretchLastSection(True)
        self.class_table.verticalHeader().setVisible(False)
        self.class_table.itemChanged.connect(lambda item: self.restyle_labels())
        layout.addWidget(self.class_table)
        class_buttons = QHBoxLayout()
        add = QPushButton("Add class")
        add.clicked.connect(lambda: self.add_class(f"class {self.class_table.rowCount() + 1}"))
        remove = QPushButton("Remove class")
        remove.clicked.connect(self.remove_class)
        class_buttons.addWidget(add)
        class_buttons.addWidget(remove)
        layout.addLayout(class_buttons)
        return box

    def _learn_line(self) -> QHBoxLayout:
        line = QHBoxLayout()
        self.learn_button = QPushButton("Learn this area")
        self.learn_button.setToolTip("Continue the model's self-supervised pretraining on the ticked layers over the "
                                     "area to map; the new model joins the model list (labels, if chosen, score it "
                                     "before and after)")
        self.learn_button.clicked.connect(self.learn_area)
        self.learn_minutes = QSpinBox()
        self.learn_minutes.setRange(1, 24 * 60)
        self.learn_minutes.setValue(10)
        self.learn_minutes.setSuffix(" min")
        self.learn_name = QLineEdit("my-area")
        self.learn_name.setToolTip("The new model's name; the same name resumes its last run")
        for widget in (self.learn_button, self.learn_minutes, self.learn_name):
            line.addWidget(widget)
        return line

    # ------------------------------------------------------------------ model and inputs
    def reload_models(self, selected: str | None = None) -> None:
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        # The shipped checkpoints, then those downloaded, converted or learnt into the models folder.
        for info in shipped_models() + shipped_models(settings.models_folder()):
            self.model_combo.addItem(info.name, str(info.path))
            self.model_combo.setItemData(self.model_combo.count() - 1, info.summary(), Qt.ItemDataRole.ToolTipRole)
        self.model_combo.addItem(BROWSE, None)
        self.model_combo.blockSignals(False)
        if selected:
            self.select_model(selected)
        elif self.model_combo.count() > 1:
            self.select_model(self.model_combo.itemData(0))

    def select_model(self, path: str) -> None:
        try:
            info = model_info(path)
        except CatalogError as exc:
            self.say(str(exc), Qgis.MessageLevel.Critical)
            return
        index = self.model_combo.findData(str(info.path))
        if index < 0:
            self.model_combo.insertItem(self.model_combo.count() - 1, info.name, str(info.path))
            index = self.model_combo.count() - 2
        self.model_combo.setCurrentIndex(index)
        self.model_summary.setText(info.summary())
        self._make_rows(info)

    def _model_activated(self, index: int) -> None:
        path = self.model_combo.itemData(index)
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "OmniSat model", "", "Checkpoint (*.safetensors)")
            if not path:
                return
        self.select_model(path)

    def model(self) -> ModelInfo:
        path = self.model_combo.currentData()
        if not path:
            raise InputError("Choose a model first.")
        return model_info(path)

    def _make_rows(self, info: ModelInfo) -> None:
        for row in self.rows:
            row.setParent(None)
        self.rows = [ModalityRow(m, info) for m in info.modalities]
        for row in self.rows:
            row.changed.connect(self.refresh_checks)
            self.rows_box.addWidget(row)
        self.change_tab.set_model(info, self.raster_layers())
        self.fill_rows()

    def raster_layers(self) -> list[QgsRasterLayer]:
        return [lyr for lyr in QgsProject.instance().mapLayers().values() if isinstance(lyr, QgsRasterLayer)
                and not lyr.customProperty("omnisat/output", False)]

    def fill_rows(self, state: dict[str, Any] | None = None, change: dict[str, list[str]] | None = None) -> None:
        """Fill the rows (``state``: the saved "inputs") and the Change tab's periods (``change``)."""
        layers = self.raster_layers()
        for row in self.rows:
            saved = (state or {}).get(row.modality.name)
            row.fill(layers, set(saved["layers"]) if saved else None, saved.get("dates") if saved else None)
            if saved and saved.get("bands"):
                row.set_bands(saved["bands"])
        self.change_tab.fill(layers, change)
        self.refresh_checks()

    def refresh_checks(self) -> None:
        first = next((layers[0] for row in self.rows if (layers := row.checked_layers())), None)
        for row in self.rows:
            row.refresh_checks(first)

    def inputs(self) -> list[ModalityInput]:
        chosen = [entry for row in self.rows if (entry := row.modality_input()) is not None]
        if not chosen:
            raise InputError("Tick at least one layer for one of the model's inputs.")
        return chosen

    def advanced(self) -> Advanced:
        return Advanced(self.batch_spin.value(), self.device_combo.currentText(), self.precision_combo.currentText(),
                        float(self.window_spin.value()) or None)

    # ------------------------------------------------------------------ extent
    def canvas_extent(self) -> Extent:
        canvas = self.iface.mapCanvas()
        rect = canvas.extent()
        return Extent((rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()),
                      canvas.mapSettings().destinationCrs().authid())

    def map_extent(self) -> Extent | None:
        choice = self.extent_combo.currentText()
        if choice == EXTENT_CHOICES[0]:
            return self.canvas_extent()
        if choice == EXTENT_CHOICES[2]:
            if self.drawn is None:
                raise InputError("No rectangle drawn yet: press Draw and drag a rectangle on the map.")
            return self.drawn
        return None

    def start_drawing(self) -> None:
        canvas = self.iface.mapCanvas()
        self._map_tool = QgsMapToolExtent(canvas)
        self._map_tool.extentChanged.connect(self._drawn)
        canvas.setMapTool(self._map_tool)

    def _drawn(self, rect) -> None:
        crs = self.iface.mapCanvas().mapSettings().destinationCrs().authid()
        self.drawn = Extent((rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()), crs)
        self.extent_combo.setCurrentText(EXTENT_CHOICES[2])
        self.iface.mapCanvas().unsetMapTool(self._map_tool)

    # ------------------------------------------------------------------ labels
    def add_class(self, name: str, color: str | None = None) -> None:
        self.class_table.blockSignals(True)
        row = self.class_table.rowCount()
        self.class_table.insertRow(row)
        self.class_table.setItem(row, 0, QTableWidgetItem(name))
        button = QgsColorButton()
        button.setColor(QColor(color or default_color(row, name)))
        button.colorChanged.connect(lambda _: self.restyle_labels())
        self.class_table.setCellWidget(row, 1, button)
        self.class_table.blockSignals(False)
        self.restyle_labels()

    def remove_class(self) -> None:
        row = self.class_table.currentRow()
        self.class_table.removeRow(row if row >= 0 else self.class_table.rowCount() - 1)
        self.restyle_labels()

    def classes(self) -> list[LabelClass]:
        return [LabelClass(self.class_table.item(r, 0).text().strip(), self.class_table.cellWidget(r, 1).color().name())
                for r in range(self.class_table.rowCount()) if self.class_table.item(r, 0).text().strip()]

    def labels_layer(self) -> QgsVectorLayer | None:
        layer = self.labels_combo.currentLayer()
        return layer if isinstance(layer, QgsVectorLayer) else None

    def restyle_labels(self) -> None:
        layer, field = self.labels_layer(), self.field_combo.currentField()
        if layer is not None and field and layer.customProperty("omnisat/labels", False):
            style_labels(layer, field, self.classes())

    def choose_labels(self, layer: QgsVectorLayer, field: str) -> None:
        self.labels_combo.setLayer(layer)
        self._labels_changed(layer, field)  # setLayer from code does not always emit layerChanged

    def _labels_changed(self, layer, field: str = "") -> None:
        current = field or self.field_combo.currentField()
        self.field_combo.setLayer(layer)
        names = layer.fields().names() if isinstance(layer, QgsVectorLayer) else []
        # A GeoPackage's first field is its feature id: never a sensible default class field.
        for candidate in (current, DEFAULT_FIELD):
            if candidate in names:
                self.field_combo.setField(candidate)
                break
        self.restyle_labels()

    def new_labels_layer(self, path: str | None = None) -> QgsVectorLayer | None:
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "New labels layer", "", "GeoPackage (*.gpkg)")
            if not path:
                return None
        if not self.classes():
            for index, name in enumerate(("class 1", "class 2")):
                self.add_class(name, default_color(index))
        try:
            layer = create_labels_layer(Path(path), self.geometry_combo.currentText(),
                                        self.iface.mapCanvas().mapSettings().destinationCrs())
        except LabelsError as exc:
            self.say(str(exc), Qgis.MessageLevel.Critical)
            return None
        layer.setCustomProperty("omnisat/labels", True)
        QgsProject.instance().addMapLayer(layer)
        self.choose_labels(layer, DEFAULT_FIELD)
        self.iface.setActiveLayer(layer)
        layer.startEditing()
        self.iface.actionAddFeature().trigger()
        return layer

    def labels_source(self, extent: Extent | None = None) -> dict[str, Any]:
        """The fit's labels; with ``extent``, only the features inside it count (the others have no embeddings)."""
        layer, field = self.labels_layer(), self.field_combo.currentField()
        if layer is None or not field:
            raise InputError("Choose a labels layer and its class field (or press New labels layer).")
        if layer.providerType() != "ogr":
            raise InputError(f"The labels layer '{layer.name()}' is not a file layer: save it as GeoPackage first.")
        if layer.isEditable() and layer.isModified():
            # The worker reads the file: save the samples drawn so far, and keep digitizing.
            if not layer.commitChanges(False):
                raise InputError(f"The labels in '{layer.name()}' could not be saved: {layer.commitErrors()}")
        ignored = {v.strip() for v in self.ignore_edit.text().replace(";", ",").split(",") if v.strip()}
        request = QgsFeatureRequest()
        if extent is not None:
            transform = QgsCoordinateTransform(QgsCoordinateReferenceSystem(extent.crs), layer.crs(),
                                               QgsProject.instance())
            request.setFilterRect(transform.transformBoundingBox(QgsRectangle(*extent.bounds)))
        features = list(layer.getFeatures(request))
        if not features:
            where = " in the visible map area" if extent is not None else ""
            raise InputError(f"The labels layer '{layer.name()}' has no feature{where}: draw samples there, or pan "
                             "the map to where the samples are.")
        values = [str(f[field]) for f in features if f[field] not in (None, "")]
        unlabelled = len(features) - len(values)
        classes = {v for v in values if v not in ignored}
        if unlabelled:
            self.say(f"{unlabelled} feature(s) of '{layer.name()}' have no class and are left out.",
                     Qgis.MessageLevel.Warning)
        if len(classes) < 2:
            raise InputError(f"The labels layer '{layer.name()}' has {len(classes)} class(es) in '{field}'"
                             f"{' in the visible map area' if extent is not None else ''}: "
                             "draw samples of at least two classes.")
        path, _, rest = layer.source().partition("|")
        source = {"labels": path, "class_field": field, "ignore_values": sorted(ignored)}
        if rest.startswith("layername="):
            source["layer"] = rest.split("=", 1)[1].split("|")[0]
        return source

    # ------------------------------------------------------------------ runs
    def work_folder(self) -> Path:
        home = QgsProject.instance().homePath()
        base = Path(home) / "omnisat" if home else Path(QgsApplication.qgisSettingsDirPath()) / "omnisat"
        base.mkdir(parents=True, exist_ok=True)
        return base

    def refuse(self, exc: Exception) -> None:
        """Say why a run cannot start; for a layer that is not a file, offer to export it."""
        if not isinstance(exc, NotAFileLayer):
            self.say(str(exc), Qgis.MessageLevel.Critical)
            return
        self.messages.append(str(exc))
        item = self.bar.createMessage("OmniSat", str(exc))
        button = QPushButton("Export the area to GeoTIFF")
        button.clicked.connect(lambda: self.export_for(exc.row, exc.layer))
        item.layout().addWidget(button)
        self.bar.pushWidget(item, Qgis.MessageLevel.Warning)

    def export_for(self, row: ModalityRow, layer: QgsRasterLayer) -> QgsRasterLayer | None:
        """Export ``layer`` over the area to map (the visible area when that is the whole input) to a GeoTIFF
        in the work folder, add it to the project and tick it in ``row`` instead of ``layer``."""
        try:
            extent = self.map_extent() or self.canvas_extent()
        except InputError as exc:
            self.say(str(exc), Qgis.MessageLevel.Critical)
            return None
        sized = bool(layer.dataProvider().capabilities() & QgsRasterInterface.Capability.Size)
        pixel = layer.rasterUnitsPerPixelX() if sized else row.modality.gsd_m
        date = row.dates().get(layer.id(), "")
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in layer.name())
        path = self.work_folder() / "exports" / f"{safe}-{stamp}.tif"
        try:
            export_extent(layer, QgsRectangle(*extent.bounds), QgsCoordinateReferenceSystem(extent.crs), pixel, path)
        except ExportError as exc:
            self.say(str(exc), Qgis.MessageLevel.Critical)
            return None
        exported = QgsRasterLayer(str(path), f"{layer.name()} (GeoTIFF)", "gdal")
        QgsProject.instance().addMapLayer(exported)
        state = self.state()["inputs"]
        saved = state[row.modality.name]
        saved["layers"] = [exported.id() if i == layer.id() else i for i in saved["layers"]]
        saved["dates"][exported.id()] = date
        self.fill_rows(state)
        self.say(f"'{layer.name()}' exported to '{path}' and ticked instead; run again.", Qgis.MessageLevel.Success)
        return exported

    def set_up_engine(self) -> None:
        from omnisat_qgis.gui.setup_dialog import SetupDialog

        SetupDialog(self).exec()

    def fit_and_preview(self) -> None:
        extent, advanced = self.canvas_extent().grown(PREVIEW_MARGIN), self.advanced()
        try:
            model, inputs, labels = self.model(), self.inputs(), self.labels_source(extent)
        except (InputError, CatalogError) as exc:
            self.refuse(exc)
            return
        cache = EmbeddingCache(self.work_folder() / "cache")
        key = embedding_key(model, inputs, extent, PREVIEW_LEVEL, advanced)
        embeddings = cache.embeddings(key)
        embeddings.parent.mkdir(parents=True, exist_ok=True)
        job = build_job(model, inputs, extent, {"embeddings": str(embeddings), "embeddings_level": PREVIEW_LEVEL},
                        advanced)
        self.preview_job = job
        job_file = embeddings.parent / "job.json"
        job_file.write_text(json.dumps(job, indent=2), encoding="utf-8")
        run = self.new_run_folder("preview")
        fit = dict(labels, embeddings=str(embeddings), model=str(model.path), output=str(run / "probe.safetensors"),
                   report=str(run / "report.html"), classes=str(run / "classes.tif"),
                   confidence=str(run / "confidence.tif"), learning_curve=self.curve_box.isChecked())
        steps = []
        if not cache.has(key):
            steps.append(Step("embed", {"job": job}, (str(embeddings),), "Embedding the visible area"))
        steps.append(Step("fit-probe", fit, (fit["output"], fit["report"], fit["classes"], fit["confidence"]),
                          "Fitting the probe"))
        self.embed_runs += steps[0].operation == "embed"
        commands = [qgis_process_command("embed", {"JOB": str(job_file), "EMBEDDINGS": str(embeddings)})]
        commands.append(qgis_process_command("fitprobe", {
            "LABELS": labels["labels"] + (f"|layername={labels['layer']}" if labels.get("layer") else ""),
            "CLASS_FIELD": labels["class_field"], "IGNORE_VALUES": ",".join(labels["ignore_values"]),
            "EMBEDDINGS_RASTER": str(embeddings), "MODEL": str(model.path), "OUTPUT": fit["output"],
            "REPORT": fit["report"], "CLASSES": fit["classes"], "CONFIDENCE": fit["confidence"],
            "LEARNING_CURVE": fit["learning_curve"]}))
        self.command.setPlainText("\n".join(commands))
        self.start(EngineTask("OmniSat: fit and preview", steps, self._preview_done, self._log))

    def map_whole_area(self) -> None:
        if self.last_probe is None or not self.last_probe.is_file():
            self.say("Fit a probe first (Fit and preview), then map the whole area.", Qgis.MessageLevel.Warning)
            return
        try:
            model, inputs, extent = self.model(), self.inputs(), self.map_extent()
        except (InputError, CatalogError) as exc:
            self.refuse(exc)
            return
        run = self.new_run_folder("map")
        outputs = {"classes": str(run / "classes.tif"), "confidence": str(run / "confidence.tif"),
                   "embeddings_level": PREVIEW_LEVEL}
        job = build_job(model, inputs, extent, outputs, self.advanced())
        (run / "job.json").write_text(json.dumps(job, indent=2), encoding="utf-8")
        self.command.setPlainText(qgis_process_command("applyprobe", {
            "PROBE": str(self.last_probe), "JOB": str(run / "job.json"), "CLASSES": outputs["classes"],
            "CONFIDENCE": outputs["confidence"]}))
        step = Step("apply-probe", {"probe": str(self.last_probe), "embeddings": job},
                    (outputs["classes"], outputs["confidence"]), "Mapping the whole area")
        self.start(EngineTask(f"OmniSat: map {run.name}", [step], self._map_done, self._log))

    def detect_change(self) -> None:
        try:
            model, extent = self.model(), self.map_extent()
            run = self.new_run_folder("change")
            step, command = self.change_tab.run(model, extent, self.advanced(), run)
        except (InputError, CatalogError) as exc:
            self.refuse(exc)
            return
        self.command.setPlainText(command)
        self.start(EngineTask(f"OmniSat: change {run.name}", [step], self._change_done, self._log))

    def learn_area(self) -> None:
        try:
            model, inputs, extent = self.model(), self.inputs(), self.map_extent()
            labels = self.labels_source(extent) if self.labels_layer() is not None else {}
            run = self.new_run_folder("learn")
            request = LearnAreaRequest(
                model=str(model.path), layers={i.name: i.files for i in inputs},
                dates={i.name: i.dates for i in inputs if i.dates}, name=self.learn_name.text().strip(),
                extent=extent.job_entry() if extent is not None else None, tile_size=self.advanced().tile_size_m,
                minutes=float(self.learn_minutes.value()), labels=labels.get("labels"),
                class_field=labels.get("class_field", "class"), layer=labels.get("layer"),
                ignore_values=tuple(labels.get("ignore_values", ())), report=str(run / "report.html"),
                reading={i.name: {k: v for k, v in i.job_entry().items() if k in ("bands", "scale")} for i in inputs})
            step = request.step()
        except (InputError, CatalogError, RequestError) as exc:
            self.refuse(exc)
            return
        self.command.setPlainText(json.dumps({"operation": "learn-area", "params": step.params}, indent=2))
        self.start(EngineTask(f"OmniSat: learn {request.name}", [step], self._learn_done, self._log))

    def _learn_done(self, task: EngineTask) -> None:
        if not self._finish(task):
            return
        result = task.results[-1]
        self.reload_models(result["output"])
        scores = (f"; macro-F1 on your labels {result['macro_f1_before']:.3f} -> {result['macro_f1_after']:.3f}"
                  if "macro_f1_after" in result else "")
        self.metrics.setText(f"New model <b>{html.escape(Path(result['output']).stem)}</b> after {result['steps']} "
                             f"steps (final loss {result.get('final_loss') or float('nan'):.4g}){html.escape(scores)}. "
                             f"<a href='{Path(result['report']).as_uri()}'>Report with the loss curve</a>")
        self.say(f"Learnt '{Path(result['output']).stem}': chosen as the model; fit and preview to use it.",
                 Qgis.MessageLevel.Success)

    def new_run_folder(self, kind: str) -> Path:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        folder = self.work_folder() / "runs" / f"{kind}-{stamp}"
        folder.mkdir(parents=True)
        return folder

    def start(self, task: EngineTask) -> None:
        if self.task is not None:
            self.say("A run is in progress: wait for it or press Cancel.", Qgis.MessageLevel.Warning)
            return
        self.task = task
        task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        for button in (self.fit_button, self.map_button, self.learn_button, self.change_tab.run_button):
            button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        QgsApplication.taskManager().addTask(task)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _finish(self, task: EngineTask) -> bool:
        self.task = None
        for button in (self.fit_button, self.map_button, self.learn_button, self.change_tab.run_button):
            button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if task.cancelled_by_user or task.isCanceled():
            self.say("Cancelled; no output was written.", Qgis.MessageLevel.Info)
            return False
        if task.error:
            self.say(task.error, Qgis.MessageLevel.Critical)
            return False
        self.progress.setValue(100)
        return True

    def _preview_done(self, task: EngineTask) -> None:
        if not self._finish(task):
            return
        result = task.results[-1]
        self.last_probe = Path(result["output"])
        root = QgsProject.instance().layerTreeRoot()
        group = root.findGroup(PREVIEW_GROUP)
        if group is not None:
            QgsProject.instance().removeMapLayers(group.findLayerIds())
        else:
            group = self.results_group(PREVIEW_GROUP)
        # The embeddings' job names the layers and dates the preview comes from.
        params = dict(task.steps[-1].params, job=self.preview_job)
        record = RunRecord.from_run("fit-probe", "dock: fit and preview", params, result)
        self.add_result(result["classes"], "Preview classes", "classes", group, record)
        self.add_result(result["confidence"], "Preview confidence", "confidence", group, record, visible=False)
        self.show_metrics(result)

    def _map_done(self, task: EngineTask) -> None:
        if not self._finish(task):
            return
        result, name, group, record = self._run_results(task, "classes", "apply-probe", "dock: map the whole area")
        self.add_result(result["classes"], "Classes", "classes", group, record)
        if result.get("confidence"):
            self.add_result(result["confidence"], "Confidence", "confidence", group, record, visible=False)
        self.say(f"Mapped {result.get('area_km2', 0):.2f} km² in {result.get('seconds', 0):.0f} s: group '{name}'.",
                 Qgis.MessageLevel.Success)

    def _change_done(self, task: EngineTask) -> None:
        if not self._finish(task):
            return
        result, name, group, record = self._run_results(task, "magnitude", "change", "dock: change")
        self.add_result(result["change"], "Change", "classes", group, record)
        self.add_result(result["magnitude"], "Change magnitude", "magnitude", group, record)
        share = result.get("changed_share")
        changed = f"{share:.0%} of the patches changed" if share is not None else "change mapped"
        self.say(f"{changed} (threshold {result['threshold']:.3g}, {result['threshold_method']}): group '{name}'.",
                 Qgis.MessageLevel.Success)

    def _run_results(self, task: EngineTask, output: str, operation: str, title: str):
        """(result, group name, new group, metadata record) of a finished run, named after its run folder."""
        result = task.results[-1]
        name = f"OmniSat {Path(result[output]).parent.name}"
        return result, name, self.results_group(name), RunRecord.from_run(operation, title, task.steps[-1].params,
                                                                          result)

    def results_group(self, name: str):
        """A new group at the top of the layer tree, but below the labels layer: the samples stay visible."""
        root = QgsProject.instance().layerTreeRoot()
        labels = self.labels_layer()
        node = root.findLayer(labels.id()) if labels is not None else None
        index = root.children().index(node) + 1 if node is not None and node.parent() is root else 0
        return root.insertGroup(index, name)

    def add_result(self, path: str, name: str, style: str, group, record: RunRecord,
                   visible: bool = True) -> QgsRasterLayer:
        layer = QgsRasterLayer(path, name, "gdal")
        layer.setCustomProperty("omnisat/output", True)
        layer.setMetadata(record.metadata(layer, name))
        if style == "classes":  # in the dock's class colours, matched by name
            style_classes(layer, {c.name: c.color for c in self.classes()})
        else:
            style_layer(layer, style)
        QgsProject.instance().addMapLayer(layer, False)
        node = group.addLayer(layer)
        node.setItemVisibilityChecked(visible)
        return layer

    def show_metrics(self, result: dict[str, Any]) -> None:
        counts, f1 = result.get("counts", {}), result.get("per_class_f1") or {}
        labelled, held_out = counts.get("labelled cells", {}), counts.get("cells ever held out", {})
        unvalidated = set(result.get("unvalidated_classes") or ()) | {n for n in labelled if not held_out.get(n)}
        per_class = "".join(
            f"<tr><td>{html.escape(name)}</td>"
            f"<td>{'—' if name in unvalidated else f'{f1.get(name, 0):.2f}'}</td>"
            f"<td>{labelled.get(name, 0)}</td><td>{held_out.get(name, 0)}</td></tr>"
            for name in result.get("class_names", labelled))
        note = (f"<br>Not validated (no held-out label: draw more, in other places): "
                f"{html.escape(', '.join(sorted(unvalidated)))}" if unvalidated else "")
        report = result.get("report")
        link = f' — <a href="{Path(report).as_uri()}">report</a>' if report else ""
        if result.get("overall_accuracy") is None:
            scores = "not measured (too few labels to hold any out)"
        else:
            scores = (f"OA {result['overall_accuracy']:.2f}, macro-F1 {result['macro_f1']:.2f} "
                      f"on {result['validation_cells']} held-out cells")
        self.metrics.setText(
            f"<b>Held-out accuracy</b>: {scores}{link}"
            f"<table cellspacing='0' cellpadding='3'><tr><th align='left'>class</th><th>F1</th>"
            f"<th>labelled cells</th><th>held out</th></tr>{per_class}</table>{note}")

    # ------------------------------------------------------------------ state, messages
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model_combo.currentData(),
            "inputs": {row.modality.name: {"layers": [lyr.id() for lyr in row.checked_layers()], "dates": row.dates(),
                                           "bands": list(row.edited) if row.edited is not None else None}
                       for row in self.rows},
            "labels": self.labels_layer().id() if self.labels_layer() else None,
            "field": self.field_combo.currentField(),
            "ignore": self.ignore_edit.text(),
            "classes": [[c.name, c.color] for c in self.classes()],
            "extent": self.extent_combo.currentText(),
            "probe": str(self.last_probe) if self.last_probe else None,
            "change": self.change_tab.state(),
        }

    def save_state(self) -> None:
        QgsProject.instance().writeEntry(STATE_SCOPE, STATE_KEY, json.dumps(self.state()))

    def restore_state(self) -> None:
        text, found = QgsProject.instance().readEntry(STATE_SCOPE, STATE_KEY, "")
        if not found or not text:
            self.fill_rows()
            return
        state = json.loads(text)
        if state.get("model"):
            self.select_model(state["model"])
        self.fill_rows(state.get("inputs"), state.get("change"))
        self.class_table.setRowCount(0)
        for name, color in state.get("classes", []):
            self.add_class(name, color)
        if state.get("labels") and (layer := QgsProject.instance().mapLayer(state["labels"])):
            self.choose_labels(layer, state.get("field") or DEFAULT_FIELD)
        self.ignore_edit.setText(state.get("ignore", ""))
        self.extent_combo.setCurrentText(state.get("extent", EXTENT_CHOICES[0]))
        self.last_probe = Path(state["probe"]) if state.get("probe") else None

    def say(self, text: str, level=Qgis.MessageLevel.Info) -> None:
        self.messages.append(text)
        self.bar.pushMessage("OmniSat", text, level, 10 if level != Qgis.MessageLevel.Critical else 0)

    def _log(self, message: str, level: str) -> None:
        from qgis.core import QgsMessageLog

        QgsMessageLog.logMessage(message, "OmniSat", Qgis.MessageLevel.Warning if level == "warning"
                                 else Qgis.MessageLevel.Info)

    def closeEvent(self, event):  # noqa: N802 - Qt API
        # A closed dock must not leave a worker running or a file half-written.
        self.cancel()
        super().closeEvent(event)
