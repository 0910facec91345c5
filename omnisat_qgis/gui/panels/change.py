"""The dock's Change tab: two periods -> change magnitude (diverging ramp) and change / no change.

A period is either a set of series layers of one modality of the model (picked in a
modality row, as on the Map tab, and embedded by the change run) or an embeddings raster
already in the project. The engine's change operation compares the two periods' per-patch
embeddings; its binary layer is Otsu's threshold of the magnitude unless one is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsRasterLayer
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from omnisat_qgis.gui.engine_task import Step
from omnisat_qgis.gui.modality_row import InputError, ModalityRow
from omnisat_qgis.gui.session import PREVIEW_LEVEL, Advanced, Extent, build_job, qgis_process_command
from omnisat_qgis.model_catalog import ModelInfo

SERIES, RASTERS = "Two periods of a time series", "Two embeddings rasters"
PERIODS = ("Before", "After")


class ChangeTab(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.model: ModelInfo | None = None
        self.rows: list[ModalityRow] = []
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.mode_combo = QComboBox()
        self.mode_combo.addItems([SERIES, RASTERS])
        self.modality_combo = QComboBox()
        self.modality_combo.setToolTip("The time series of the model whose two periods are compared")
        form.addRow("Compare", self.mode_combo)
        form.addRow("Time series", self.modality_combo)
        layout.addLayout(form)

        self.stack = QStackedWidget()
        series = QWidget()
        self.series_box = QVBoxLayout(series)
        self.series_box.setContentsMargins(0, 0, 0, 0)
        rasters = QWidget()
        rasters_form = QFormLayout(rasters)
        self.raster_combos = []
        for period in PERIODS:
            combo = QgsMapLayerComboBox()
            combo.setFilters(Qgis.LayerFilter.RasterLayer)
            self.raster_combos.append(combo)
            rasters_form.addRow(f"{period}: embeddings", combo)
        self.stack.addWidget(series)
        self.stack.addWidget(rasters)
        layout.addWidget(self.stack)
        self.mode_combo.currentIndexChanged.connect(self._mode_changed)
        self.modality_combo.currentIndexChanged.connect(lambda _: self._make_rows())

        options = QFormLayout()
        self.metric_combo = QComboBox()
        self.metric_combo.addItems(["cosine", "euclidean"])
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setDecimals(4)
        self.threshold_spin.setRange(0.0, 1e6)
        self.threshold_spin.setSpecialValueText("automatic (Otsu)")
        self.threshold_spin.setToolTip("Magnitude above which a patch counts as changed")
        options.addRow("Distance", self.metric_combo)
        options.addRow("Threshold", self.threshold_spin)
        layout.addLayout(options)
        note = QLabel("The area is the one chosen on the Map tab.")
        note.setWordWrap(True)
        layout.addWidget(note)
        self.run_button = QPushButton("Detect change")
        layout.addWidget(self.run_button)
        layout.addStretch(1)

    def set_model(self, model: ModelInfo, layers: list[QgsRasterLayer]) -> None:
        self.model, self.layers = model, layers
        self.modality_combo.blockSignals(True)
        self.modality_combo.clear()
        for modality in model.modalities:
            if modality.is_series:
                self.modality_combo.addItem(modality.label, modality.name)
        self.modality_combo.blockSignals(False)
        self._make_rows()

    def _mode_changed(self, index: int) -> None:
        self.stack.setCurrentIndex(index)
        self.modality_combo.setEnabled(index == 0)

    def _make_rows(self) -> None:
        for row in self.rows:
            row.setParent(None)
        self.rows = []
        name = self.modality_combo.currentData()
        if self.model is None or name is None:
            return
        for period in PERIODS:
            row = ModalityRow(self.model.modality(name), self.model)
            row.setTitle(f"{period}: {row.title()}")
            self.series_box.addWidget(row)
            self.rows.append(row)
        self.fill(self.layers)

    def fill(self, layers: list[QgsRasterLayer], state: dict[str, Any] | None = None) -> None:
        """List ``layers`` in both periods; none ticked unless ``state`` ({"Before": [ids], ...}) says so."""
        self.layers = layers
        for period, row in zip(PERIODS, self.rows):
            row.fill(layers, set((state or {}).get(period, ())))

    def state(self) -> dict[str, list[str]]:
        return {period: [lyr.id() for lyr in row.checked_layers()] for period, row in zip(PERIODS, self.rows)}

    def run(self, model: ModelInfo, extent: Extent | None, advanced: Advanced, folder: Path) -> tuple[Step, str]:
        """The change run's worker step and its qgis_process command; InputError when a period is not set."""
        outputs = {"magnitude": str(folder / "magnitude.tif"), "change": str(folder / "change.tif")}
        params: dict[str, Any] = {"model": str(model.path), "metric": self.metric_combo.currentText(), **outputs}
        if self.threshold_spin.value() > 0:
            params["threshold"] = self.threshold_spin.value()
        command = {
            "MODEL": params["model"],
            "METRIC": params["metric"],
            "MAGNITUDE": outputs["magnitude"],
            "CHANGE": outputs["change"],
        }
        if "threshold" in params:
            command["THRESHOLD"] = params["threshold"]
        written = list(outputs.values())
        if self.mode_combo.currentText() == RASTERS:
            for period, combo, key in zip(PERIODS, self.raster_combos, ("before", "after")):
                layer = combo.currentLayer()
                if layer is None:
                    raise InputError(f"Choose the embeddings raster of the '{period}' period.")
                params[key] = command[f"{key.upper()}_RASTER"] = layer.source().split("|")[0]
        else:
            if len(self.rows) != 2:
                raise InputError("This model has no time series: compare two embeddings rasters instead.")
            for period, row, key in zip(PERIODS, self.rows, ("before", "after")):
                entry = row.modality_input()
                if entry is None:
                    raise InputError(f"Tick the layers of the '{period}' period.")
                embeddings = str(folder / f"{key}_embeddings.tif")
                job = build_job(
                    model, [entry], extent, {"embeddings": embeddings, "embeddings_level": PREVIEW_LEVEL}, advanced
                )
                job_file = folder / f"{key}.json"
                job_file.write_text(json.dumps(job, indent=2), encoding="utf-8")
                params[key] = job
                command[f"{key.upper()}_JOB"] = str(job_file)
                written.append(embeddings)
        step = Step("change", params, tuple(written), "Detecting change")
        return step, qgis_process_command("change", command)
