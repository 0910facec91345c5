"""The OmniSat dock: pick a model and layers per modality, draw labels, fit, preview, map.

The dock is a frame around small panels (omnisat_qgis.gui.panels), each a widget with its own
state: the model and engine status at the top, the inputs, the labels, the results, the
change tab and learn. A run reads the panels into a request (omnisat_qgis.gui.requests),
which becomes worker steps that one run controller starts as a background task and cancels
(omnisat_qgis.gui.controller); the message area says the whole outcome.

Fit and preview embeds the visible map area (plus a margin) once, caches the embeddings on
disk (omnisat_qgis.gui.session) and fits a probe on them; adding labels and fitting again
reuses the cache. Map the whole area applies the probe to the chosen extent. Cancelling
kills the worker; nothing half-written stays. The dock shows the qgis_process command
that reproduces each run.
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
    QgsMessageLog,
    QgsProject,
    QgsRasterInterface,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsDockWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QGuiApplication
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from omnisat_qgis.gui.controller import RunController
from omnisat_qgis.gui.engine_task import EngineTask
from omnisat_qgis.gui.export import ExportError, export_extent
from omnisat_qgis.gui.labels_layer import DEFAULT_FIELD, LabelClass, style_labels
from omnisat_qgis.gui.modality_row import InputError, ModalityRow, NotAFileLayer
from omnisat_qgis.gui.panels.assessment import AssessmentPanel
from omnisat_qgis.gui.panels.change import ChangeTab
from omnisat_qgis.gui.panels.crops import CropsPanel
from omnisat_qgis.gui.panels.inputs import EXTENT_CHOICES, InputsPanel, raster_layers
from omnisat_qgis.gui.panels.labels import LabelsPanel
from omnisat_qgis.gui.panels.learn import LearnPanel
from omnisat_qgis.gui.panels.messages import MessageArea
from omnisat_qgis.gui.panels.model import ModelPanel
from omnisat_qgis.gui.panels.resolution import preview_problem
from omnisat_qgis.gui.panels.results import ResultsPanel
from omnisat_qgis.gui.requests import FitRequest, MapRequest, ParcelsRequest, plan_fit, plan_map, plan_parcels
from omnisat_qgis.gui.session import Advanced, EmbeddingCache, Extent, ModalityInput
from omnisat_qgis.layer_metadata import RunRecord
from omnisat_qgis.learn_area import LearnAreaRequest, RequestError
from omnisat_qgis.model_catalog import CatalogError, ModelInfo, model_info
from omnisat_qgis.styling import style_classes, style_layer

PREVIEW_MARGIN = 0.1  # share of the visible extent added on each side: labels near the edge still fall inside
PREVIEW_GROUP = "OmniSat preview"
STATE_SCOPE, STATE_KEY = "omnisat", "dock"


class OmniSatDock(QgsDockWidget):
    def __init__(self, iface, parent=None):
        super().__init__("OmniSat", parent)
        self.setObjectName("OmniSatDock")
        self.iface = iface
        self.last_probe: Path | None = None
        self.last_map: dict[str, Any] | None = None  # the result of the last Map the whole area
        self.preview_job: dict[str, Any] | None = None
        self.embed_runs = 0  # embeddings computed by this dock (a re-fit must not add one)
        self._build()
        self.model_panel.reload()

    # ------------------------------------------------------------------ widgets
    def _build(self) -> None:
        outer = QWidget()
        shared = QVBoxLayout(outer)
        shared.setContentsMargins(4, 4, 4, 4)
        self.message_area = MessageArea()
        shared.addWidget(self.message_area)
        self.model_panel = ModelPanel(self.say, self.set_up_engine, self.download_model)
        self.model_panel.model_changed.connect(self._model_changed)
        shared.addWidget(self.model_panel)

        body = QWidget()
        layout = QVBoxLayout(body)
        self.inputs_panel = InputsPanel(self.iface)
        self.inputs_panel.changed.connect(self._inputs_changed)
        layout.addWidget(self.inputs_panel)
        self.crops_panel = CropsPanel()
        self.crops_panel.parcels_button.clicked.connect(self.classify_parcels)
        layout.addWidget(self.crops_panel)
        self.labels_panel = LabelsPanel(self.iface, self.say)
        layout.addWidget(self.labels_panel)
        layout.addWidget(self._advanced_box())
        self.results_panel = ResultsPanel()
        layout.addWidget(self.results_panel)
        self.learn_panel = LearnPanel()
        self.learn_panel.button.clicked.connect(self.learn_area)
        layout.addWidget(self.learn_panel)
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

        # Below the scrolled panels: the actions stay visible at any dock size.
        buttons = QHBoxLayout()
        self.fit_button = QPushButton("Fit and preview")
        self.fit_button.setToolTip(
            "Embed the visible map area (once; cached), fit a probe on your labels, show the "
            "preview and the held-out accuracy"
        )
        self.fit_button.clicked.connect(self.fit_and_preview)
        self.map_button = QPushButton("Map the whole area")
        self.map_button.setToolTip("Apply the last fitted probe to the area to map")
        self.map_button.clicked.connect(self.map_whole_area)
        for button in (self.fit_button, self.map_button):
            buttons.addWidget(button)
        shared.addLayout(buttons)
        progress_line = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.cancel_button = QPushButton("Cancel")
        progress_line.addWidget(self.progress, 1)
        progress_line.addWidget(self.cancel_button)
        shared.addLayout(progress_line)
        self.doing = QLabel()  # what the engine is doing (RunController)
        self.doing.setWordWrap(True)
        self.doing.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        shared.addWidget(self.doing)

        headless = QgsCollapsibleGroupBox("Same run, headless (qgis_process)")
        headless.setCollapsed(True)
        headless_layout = QVBoxLayout(headless)
        self.command = QPlainTextEdit()
        self.command.setReadOnly(True)
        self.command.setMaximumHeight(90)
        copy = QPushButton("Copy")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.command.toPlainText()))
        headless_layout.addWidget(self.command)
        headless_layout.addWidget(copy, 0, Qt.AlignmentFlag.AlignRight)
        shared.addWidget(headless)
        self.setWidget(outer)

        self.controller = RunController(self.progress, self.cancel_button, self.message_area, self._log, self.doing)
        self.controller.buttons = [
            self.fit_button,
            self.map_button,
            self.learn_panel.button,
            self.change_tab.run_button,
            self.crops_panel.parcels_button,
        ]
        self.controller.fixes = self._fixes

    def _advanced_box(self) -> QWidget:
        advanced = QgsCollapsibleGroupBox("Advanced")
        advanced.setCollapsed(True)
        form = QFormLayout(advanced)
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
        self.window_spin.setToolTip(
            "Side of the windows the model sees at once: lower it when the engine runs out of memory"
        )
        form.addRow("Batch size", self.batch_spin)
        form.addRow("Window size", self.window_spin)
        form.addRow("Device", self.device_combo)
        form.addRow("Precision", self.precision_combo)
        return advanced

    # ------------------------------------------------------------------ what the panels hold (tests and state use it)
    @property
    def messages(self) -> list[str]:
        return self.message_area.history

    @property
    def task(self) -> EngineTask | None:
        return self.controller.task

    @property
    def rows(self) -> list[ModalityRow]:
        return self.inputs_panel.rows

    @property
    def model_combo(self) -> QComboBox:
        return self.model_panel.combo

    @property
    def extent_combo(self) -> QComboBox:
        return self.inputs_panel.extent_combo

    @property
    def class_table(self):
        return self.labels_panel.table

    @property
    def field_combo(self):
        return self.labels_panel.field_combo

    @property
    def metrics(self) -> QLabel:
        return self.results_panel.metrics

    @property
    def learn_name(self):
        return self.learn_panel.name

    @property
    def learn_minutes(self):
        return self.learn_panel.minutes

    def add_class(self, name: str, color: str | None = None) -> None:
        if name not in self.labels_panel.names():  # a class the labels layer brought in already
            self.labels_panel.add_class(name, color)

    def choose_labels(self, layer: QgsVectorLayer, field: str) -> None:
        self.labels_panel.choose(layer, field)

    def classes(self) -> list[LabelClass]:
        return self.labels_panel.classes()

    def labels_layer(self) -> QgsVectorLayer | None:
        return self.labels_panel.layer()

    def new_labels_layer(self, path: str | None = None) -> QgsVectorLayer | None:
        return self.labels_panel.new_labels_layer(path)

    def raster_layers(self) -> list[QgsRasterLayer]:
        return raster_layers()

    def canvas_extent(self) -> Extent:
        return self.inputs_panel.canvas_extent()

    def map_extent(self) -> Extent | None:
        return self.inputs_panel.map_extent()

    # ------------------------------------------------------------------ model and inputs
    def reload_models(self, selected: str | None = None) -> None:
        self.model_panel.reload(selected)

    def select_model(self, path: str) -> None:
        self.model_panel.select(path)

    def _model_changed(self, info: ModelInfo) -> None:
        # Another model keeps the ticks and typed dates of the inputs it shares with the previous one (the band
        # tables are the model's own: matched again).
        previous = {
            name: {"layers": saved["layers"], "dates": saved["dates"]}
            for name, saved in self.inputs_panel.state().items()
        }
        self.inputs_panel.set_model(info)
        self.crops_panel.set_model(info)
        self.change_tab.set_model(info, raster_layers())
        self.fill_rows(previous or None)

    def model(self) -> ModelInfo:
        path = self.model_panel.combo.currentData()
        if not path or str(path).startswith("download:"):
            raise InputError("Choose a model first.")
        return model_info(path)

    def fill_rows(self, state: dict[str, Any] | None = None, change: dict[str, list[str]] | None = None) -> None:
        """Fill the rows (``state``: the saved "inputs") and the Change tab's periods (``change``)."""
        self.inputs_panel.fill(state)
        self.crops_panel.sync(raster_layers())
        self.change_tab.fill(raster_layers(), change)

    def _inputs_changed(self) -> None:
        self.crops_panel.sync(raster_layers())
        self.change_tab.fill(raster_layers(), self.change_tab.state())  # the periods follow the project too

    def refresh_checks(self) -> None:
        self.inputs_panel.refresh_checks()

    def inputs(self) -> list[ModalityInput]:
        """The rows' layers, with the season and the cloud masks of the crops panel."""
        return self.crops_panel.apply(self.inputs_panel.inputs())

    def advanced(self) -> Advanced:
        return Advanced(
            self.batch_spin.value(),
            self.device_combo.currentText(),
            self.precision_combo.currentText(),
            float(self.window_spin.value()) or None,
            **self.inputs_panel.output_grid(),
        )

    # ------------------------------------------------------------------ runs
    def work_folder(self) -> Path:
        home = QgsProject.instance().homePath()
        base = Path(home) / "omnisat" if home else Path(QgsApplication.qgisSettingsDirPath()) / "omnisat"
        base.mkdir(parents=True, exist_ok=True)
        return base

    def new_run_folder(self, kind: str) -> Path:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        folder = self.work_folder() / "runs" / f"{kind}-{stamp}"
        folder.mkdir(parents=True)
        return folder

    def refuse(self, exc: Exception) -> None:
        """Say why a run cannot start, in full, with the action that fixes it where there is one."""
        if isinstance(exc, NotAFileLayer):
            self.say(
                str(exc),
                Qgis.MessageLevel.Warning,
                actions=(("Export the area to GeoTIFF", lambda: self.export_for(exc.row, exc.layer)),),
            )
            return
        self.say(str(exc), Qgis.MessageLevel.Critical, actions=self._fixes(str(exc)))

    def _fixes(self, text: str) -> tuple:
        """The one-click fix a message offers: set up the engine when it cannot run."""
        if "Set up the OmniSat engine" in text or not self.model_panel.engine_ready:
            return (("Set up the engine…", self.set_up_engine),)
        return ()

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
        state = self.inputs_panel.state()
        QgsProject.instance().addMapLayer(exported)
        saved = state[row.modality.name]
        saved["layers"] = [exported.id() if i == layer.id() else i for i in saved["layers"]]
        saved["dates"][exported.id()] = date
        self.fill_rows(state)
        self.say(f"'{layer.name()}' exported to '{path}' and ticked instead; run again.", Qgis.MessageLevel.Success)
        return exported

    def set_up_engine(self) -> None:
        from omnisat_qgis.gui.setup_dialog import SetupDialog

        SetupDialog(self).exec()
        self.model_panel.refresh_status()

    def download_model(self, name: str) -> None:
        """The Processing dialog of omnisat:fetchmodel (progress, resumable, Cancel); the list follows."""
        from omnisat_qgis.plugin import algorithm_dialog

        algorithm_dialog("omnisat:fetchmodel", {"NAME": name})
        self.model_panel.reload()

    def fit_and_preview(self) -> None:
        extent = self.canvas_extent().grown(PREVIEW_MARGIN)
        try:
            request = FitRequest(
                self.model(),
                tuple(self.inputs()),
                extent,
                self.labels_panel.request(extent),
                self.advanced(),
                self.labels_panel.curve_box.isChecked(),
            )
        except (InputError, CatalogError) as exc:
            self.refuse(exc)
            return
        if problem := preview_problem(request.model, extent, request.advanced, self.inputs_panel.ticked_layers()):
            self.refuse(InputError(problem))
            return
        planned = plan_fit(request, EmbeddingCache(self.work_folder() / "cache"), self.new_run_folder("preview"))
        self.preview_job = planned.job
        self.command.setPlainText(planned.command)
        if self.controller.start(planned.title, planned.steps, self._preview_done):
            self.embed_runs += planned.steps[0].operation == "embed"

    def map_whole_area(self) -> None:
        if self.last_probe is None or not self.last_probe.is_file():
            self.say("Fit a probe first (Fit and preview), then map the whole area.", Qgis.MessageLevel.Warning)
            return
        try:
            request = MapRequest(
                self.model(), tuple(self.inputs()), self.map_extent(), self.last_probe, self.advanced()
            )
        except (InputError, CatalogError) as exc:
            self.refuse(exc)
            return
        planned = plan_map(request, self.new_run_folder("map"))
        self.command.setPlainText(planned.command)
        self.controller.start(planned.title, planned.steps, self._map_done)

    def detect_change(self) -> None:
        try:
            model, extent = self.model(), self.map_extent()
            run = self.new_run_folder("change")
            step, command = self.change_tab.run(model, extent, self.advanced(), run)
        except (InputError, CatalogError) as exc:
            self.refuse(exc)
            return
        self.command.setPlainText(command)
        self.controller.start(f"OmniSat: change {run.name}", [step], self._change_done)

    def learn_area(self) -> None:
        try:
            model, inputs, extent = self.model(), self.inputs(), self.map_extent()
            if any(i.parts or i.mask or i.season for i in inputs):
                raise InputError(
                    "Learn this area reads one layer per date and band layout, without cloud masks or a season: "
                    "untick the 20 m layers and the masks, and clear the season, to learn."
                )
            labels = self.labels_panel.request(extent).params() if self.labels_layer() is not None else {}
            run = self.new_run_folder("learn")
            request = LearnAreaRequest(
                model=str(model.path),
                layers={i.name: i.files for i in inputs},
                dates={i.name: i.dates for i in inputs if i.dates},
                name=self.learn_name.text().strip(),
                extent=extent.job_entry() if extent is not None else None,
                tile_size=self.advanced().tile_size_m,
                minutes=float(self.learn_minutes.value()),
                labels=labels.get("labels"),
                class_field=labels.get("class_field", "class"),
                layer=labels.get("layer"),
                ignore_values=tuple(labels.get("ignore_values", ())),
                report=str(run / "report.html"),
                reading={i.name: {k: v for k, v in i.job_entry().items() if k in ("bands", "scale")} for i in inputs},
            )
            step = request.step()
        except (InputError, CatalogError, RequestError) as exc:
            self.refuse(exc)
            return
        self.command.setPlainText(json.dumps({"operation": "learn-area", "params": step.params}, indent=2))
        self.controller.start(f"OmniSat: learn {request.name}", [step], self._learn_done)

    def classify_parcels(self) -> None:
        """Each parcel of the chosen layer takes the mean probability of its pixels in the last map."""
        if not self.last_map or not Path(self.last_map.get("probabilities") or "").is_file():
            self.say(
                "Map the whole area first: the parcels take the class probabilities of that map.",
                Qgis.MessageLevel.Warning,
            )
            return
        try:
            path, layer_name, layer = self.crops_panel.parcels()
        except InputError as exc:
            self.refuse(exc)
            return
        request = ParcelsRequest(path, layer_name, self.last_map["probabilities"], self.last_map["classes"])
        planned = plan_parcels(request, self.new_run_folder("parcels"))
        self.command.setPlainText(planned.command)
        self.controller.start(planned.title, planned.steps, lambda task: self._parcels_done(task, layer.name()))

    def cancel(self) -> None:
        self.controller.cancel()

    # ------------------------------------------------------------------ results
    def _learn_done(self, task: EngineTask) -> None:
        result = task.results[-1]
        self.reload_models(result["output"])
        scores = (
            f"; macro-F1 on your labels {result['macro_f1_before']:.3f} -> {result['macro_f1_after']:.3f}"
            if "macro_f1_after" in result
            else ""
        )
        self.results_panel.show_text(
            f"New model <b>{html.escape(Path(result['output']).stem)}</b> after {result['steps']} steps (final loss "
            f"{result.get('final_loss') or float('nan'):.4g}){html.escape(scores)}. "
            f"<a href='{Path(result['report']).as_uri()}'>Report with the loss curve</a>"
        )
        self.say(
            f"Learnt '{Path(result['output']).stem}': chosen as the model; fit and preview to use it.",
            Qgis.MessageLevel.Success,
        )

    def _preview_done(self, task: EngineTask) -> None:
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
        model = self.model_panel.info
        self.results_panel.show_fit(result, model)
        self.say(
            f"Fitted: the preview is in the group '{PREVIEW_GROUP}', the accuracy below the labels.",
            Qgis.MessageLevel.Success,
        )

    def _map_done(self, task: EngineTask) -> None:
        result, name, group, record = self._run_results(task, "classes", "apply-probe", "dock: map the whole area")
        self.last_map = result
        self.add_result(result["classes"], "Classes", "classes", group, record)
        if result.get("confidence"):
            self.add_result(result["confidence"], "Confidence", "confidence", group, record, visible=False)
        self.say(
            f"Mapped {result.get('area_km2', 0):.2f} km² in {result.get('seconds', 0):.0f} s: group '{name}'.",
            Qgis.MessageLevel.Success,
        )

    def _parcels_done(self, task: EngineTask, source_name: str) -> None:
        result = task.results[-1]
        name = f"OmniSat {Path(result['output']).parent.name}"
        layer = QgsVectorLayer(f"{result['output']}|layername={result['layer']}", f"Parcels of {source_name}", "ogr")
        layer.setCustomProperty("omnisat/output", True)
        classes = self.classes()
        if classes:  # the dock's class colours (the GeoPackage's own style has the map's)
            style_labels(layer, "class", classes)
        QgsProject.instance().addMapLayer(layer, False)
        self.results_group(name).addLayer(layer)
        self.say(
            f"Classified {result['classified']} of {result['parcels']} parcels (the others' status says why): "
            f"group '{name}'.",
            Qgis.MessageLevel.Success,
        )

    def _change_done(self, task: EngineTask) -> None:
        result, name, group, record = self._run_results(task, "magnitude", "change", "dock: change")
        self.add_result(result["change"], "Change", "classes", group, record)
        self.add_result(result["magnitude"], "Change magnitude", "magnitude", group, record)
        share = result.get("changed_share")
        changed = f"{share:.0%} of the patches changed" if share is not None else "change mapped"
        method = result["threshold_method"]
        caution = (
            " Otsu's threshold always splits the magnitudes in two, so it finds some change even between two "
            "unchanged years: look at the magnitude before trusting the change layer."
            if "otsu" in str(method).lower()
            else ""
        )
        self.say(
            f"{changed} (threshold {result['threshold']:.3g}, {method}); the change layer follows the model's "
            f"cells, not field edges.{caution} Results: group '{name}'.",
            Qgis.MessageLevel.Success,
        )

    def _run_results(self, task: EngineTask, output: str, operation: str, title: str):
        """(result, group name, new group, metadata record) of a finished run, named after its run folder."""
        result = task.results[-1]
        name = f"OmniSat {Path(result[output]).parent.name}"
        return (
            result,
            name,
            self.results_group(name),
            RunRecord.from_run(operation, title, task.steps[-1].params, result),
        )

    def results_group(self, name: str):
        """A new group at the top of the layer tree, but below the labels layer: the samples stay visible."""
        root = QgsProject.instance().layerTreeRoot()
        labels = self.labels_layer()
        node = root.findLayer(labels.id()) if labels is not None else None
        index = root.children().index(node) + 1 if node is not None and node.parent() is root else 0
        return root.insertGroup(index, name)

    def add_result(
        self, path: str, name: str, style: str, group, record: RunRecord, visible: bool = True
    ) -> QgsRasterLayer:
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
        self.results_panel.show_fit(result, self.model_panel.info)

    # ------------------------------------------------------------------ state, messages
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model_panel.combo.currentData(),
            "inputs": self.inputs_panel.state(),
            "labels": self.labels_layer().id() if self.labels_layer() else None,
            "field": self.labels_panel.class_field,
            "ignore": self.labels_panel.ignore_edit.text(),
            "classes": [[c.name, c.color] for c in self.classes()],
            "extent": self.extent_combo.currentText(),
            "probe": str(self.last_probe) if self.last_probe else None,
            "change": self.change_tab.state(),
            "crops": self.crops_panel.state(),
        }

    def save_state(self) -> None:
        QgsProject.instance().writeEntry(STATE_SCOPE, STATE_KEY, json.dumps(self.state()))

    def restore_state(self) -> None:
        text, found = QgsProject.instance().readEntry(STATE_SCOPE, STATE_KEY, "")
        if not found or not text:
            self.fill_rows()
            return
        state = json.loads(text)
        if state.get("model") and not str(state["model"]).startswith("download:"):
            self.select_model(state["model"])
        self.fill_rows(state.get("inputs"), state.get("change"))
        self.crops_panel.restore(state.get("crops") or {})
        self.labels_panel.set_classes([(name, color) for name, color in state.get("classes", [])])
        if state.get("labels") and (layer := QgsProject.instance().mapLayer(state["labels"])):
            self.labels_panel.choose(layer, state.get("field") or DEFAULT_FIELD)
        self.labels_panel.ignore_edit.setText(state.get("ignore", ""))
        self.extent_combo.setCurrentText(state.get("extent", EXTENT_CHOICES[0]))
        self.last_probe = Path(state["probe"]) if state.get("probe") else None

    def say(self, text: str, level=Qgis.MessageLevel.Info, details: str = "", actions=()) -> None:
        self.message_area.say(text, level, details, actions)

    def _log(self, message: str, level: str) -> None:
        QgsMessageLog.logMessage(
            message, "OmniSat", Qgis.MessageLevel.Warning if level == "warning" else Qgis.MessageLevel.Info
        )

    def release(self) -> None:
        """Before the dock goes (plugin unloaded, QGIS closing): stop the run and let go of every signal that
        could call into a deleted widget."""
        self.controller.detach()
        self.inputs_panel.listen(False)
        self.inputs_panel.stop_drawing()
        self.labels_panel.release()

    def closeEvent(self, event):  # noqa: N802 - Qt API
        # A closed dock must not leave a worker running or a file half-written.
        self.cancel()
        super().closeEvent(event)
