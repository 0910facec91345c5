"""The crop analyst's panel: the season (a date range), a sensor's cloud masks (Sentinel-2's SCL layers
with the scene classes that count as not a clear view), and "Classify parcels" (a parcels polygon layer
in any CRS -> a new styled GeoPackage layer).

It adds to the rows' inputs (``apply``) the job keys "season" and "mask" of each modality; the
Sentinel-2 10 m and 20 m files themselves are ticked in the Sentinel-2 row (read together as parts).
The mask list follows the project like the rows: a single-band layer named or described SCL is
listed and ticked when it arrives.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.gui import QgsCollapsibleGroupBox, QgsMapLayerComboBox
from qgis.PyQt.QtCore import QDate, Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QWidget,
)

from omnisat_qgis.gui.modality_row import InputError, layer_file
from omnisat_qgis.gui.session import ModalityInput
from omnisat_qgis.model_catalog import ModelInfo

# Sentinel-2 L2A scene classification (SCL) values and what they mean.
SCL_CLASSES = (
    (0, "no data"),
    (1, "saturated or defective"),
    (2, "dark area pixels"),
    (3, "cloud shadows"),
    (4, "vegetation"),
    (5, "not vegetated"),
    (6, "water"),
    (7, "unclassified"),
    (8, "cloud, medium probability"),
    (9, "cloud, high probability"),
    (10, "thin cirrus"),
    (11, "snow or ice"),
)
# Not a clear view of the ground: no data and defective pixels, cloud shadow, clouds, cirrus, snow.
DEFAULT_MASKED = (0, 1, 3, 8, 9, 10, 11)
MASK_KINDS = (
    ("scl", "Sentinel-2 scene classification (SCL)"),
    ("binary", "binary (non-zero is cloud)"),
    ("valid", "validity (non-zero is clear)"),
    ("probability", "cloud probability (above 50 is cloud)"),
)
LAYER_ID_ROLE = Qt.ItemDataRole.UserRole
DATE_FORMAT = "yyyy-MM-dd"


def looks_like_scl(layer: QgsRasterLayer) -> bool:
    """A single-band layer named or described as a scene classification."""
    if layer.bandCount() != 1:
        return False
    text = f"{layer.name()} {layer.dataProvider().bandDescription(1)} {Path(layer.source()).name}".upper()
    return "SCL" in text


def parcels_source(layer: QgsVectorLayer) -> tuple[str, str | None]:
    """(file, layer name inside it) the engine reads for ``layer``; InputError for a layer not in a file."""
    parts = layer.source().split("|")
    path = parts[0]
    if layer.providerType() != "ogr" or not Path(path).is_file():
        raise InputError(
            f"The parcels layer '{layer.name()}' is not a file the engine can read (a memory, database or web "
            "layer): save it as a GeoPackage (right-click > Export > Save Features As) and pick the saved layer."
        )
    name = next((p.split("=", 1)[1] for p in parts[1:] if p.startswith("layername=")), None)
    return path, name


class CropsPanel(QgsCollapsibleGroupBox):
    def __init__(self, parent=None):
        super().__init__("Season, cloud masks, parcels", parent)
        self.model: ModelInfo | None = None
        self.known: set[str] = set()  # mask candidates listed: a new SCL layer is ticked once, on arrival
        form = QFormLayout(self)

        self.season_box = QCheckBox("Only the dates of the season")
        self.season_box.setToolTip("Time series use only their dates in this range (both ends included)")
        self.season_start, self.season_end = QDateEdit(), QDateEdit()
        for edit, date in ((self.season_start, QDate(QDate.currentDate().year(), 3, 1)), (self.season_end, None)):
            edit.setDisplayFormat(DATE_FORMAT)
            edit.setCalendarPopup(True)
            edit.setDate(date or QDate(QDate.currentDate().year(), 10, 31))
            edit.setEnabled(False)
        self.season_box.toggled.connect(self.season_start.setEnabled)
        self.season_box.toggled.connect(self.season_end.setEnabled)
        season = QHBoxLayout()
        season.addWidget(self.season_start)
        season.addWidget(QLabel("to"))
        season.addWidget(self.season_end)
        form.addRow(self.season_box)
        form.addRow("Season", season)

        self.mask_modality = QComboBox()
        self.mask_modality.setToolTip("The sensor whose dates the masks below hide where cloudy")
        self.mask_list = QListWidget()
        self.mask_list.setToolTip(
            "Cloud masks, one single-band layer per date, matched to the sensor's layers by the date in their names"
        )
        self.mask_list.setMaximumHeight(110)
        self.mask_kind = QComboBox()
        for key, text in MASK_KINDS:
            self.mask_kind.addItem(text, key)
        self.mask_kind.currentIndexChanged.connect(self._kind_changed)
        self.class_list = QListWidget()
        self.class_list.setToolTip("The scene classes masked (hidden as not a clear view of the ground)")
        for value, name in SCL_CLASSES:
            item = QListWidgetItem(f"{value}: {name}")
            item.setData(LAYER_ID_ROLE, value)
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            item.setCheckState(Qt.CheckState.Checked if value in DEFAULT_MASKED else Qt.CheckState.Unchecked)
            self.class_list.addItem(item)
        self.class_list.setMaximumHeight(110)
        self.classes_label = QLabel("Masked classes")
        form.addRow("Cloud masks for", self.mask_modality)
        form.addRow(self.mask_list)
        form.addRow("Kind", self.mask_kind)
        form.addRow(self.classes_label, self.class_list)

        self.parcels_combo = QgsMapLayerComboBox()
        self.parcels_combo.setFilters(Qgis.LayerFilter.PolygonLayer)
        self.parcels_combo.setAllowEmptyLayer(True)
        self.parcels_combo.setToolTip("Parcels (any CRS; never changed): each gets a class from the last map")
        self.parcels_button = QPushButton("Classify parcels")
        self.parcels_button.setToolTip(
            "Each parcel takes the mean class probability of its pixels in the last map (Map the whole area): "
            "class, probability, runner-up, share of valid pixels and status, as a new styled GeoPackage layer"
        )
        parcels = QWidget()
        line = QHBoxLayout(parcels)
        line.setContentsMargins(0, 0, 0, 0)
        line.addWidget(self.parcels_combo, 1)
        line.addWidget(self.parcels_button)
        form.addRow("Parcels", parcels)

    # ------------------------------------------------------------------ following the model and the project
    def set_model(self, info: ModelInfo) -> None:
        self.model = info
        self.mask_modality.clear()
        series = [m for m in info.modalities if m.is_series]
        # The optical series first: SCL layers belong to Sentinel-2.
        series.sort(key=lambda m: "B2" not in m.bands)
        for modality in series:
            self.mask_modality.addItem(f"{modality.label} ({modality.name})", modality.name)

    def sync(self, layers: list[QgsRasterLayer]) -> None:
        """List the single-band layers as mask candidates, ticks kept; a new SCL layer ticked."""
        ticked = {layer.id() for layer in self.mask_layers()}
        single = sorted((lyr for lyr in layers if lyr.bandCount() == 1), key=lambda lyr: lyr.name())
        ticked |= {lyr.id() for lyr in single if lyr.id() not in self.known and looks_like_scl(lyr)}
        self.known = {lyr.id() for lyr in single}
        self.mask_list.clear()
        for layer in single:
            item = QListWidgetItem(layer.name())
            item.setData(LAYER_ID_ROLE, layer.id())
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            item.setCheckState(Qt.CheckState.Checked if layer.id() in ticked else Qt.CheckState.Unchecked)
            self.mask_list.addItem(item)

    def _kind_changed(self) -> None:
        scl = self.mask_kind.currentData() == "scl"
        self.class_list.setVisible(scl)
        self.classes_label.setVisible(scl)

    # ------------------------------------------------------------------ what the job gets
    def mask_layers(self) -> list[QgsRasterLayer]:
        found = []
        for index in range(self.mask_list.count()):
            item = self.mask_list.item(index)
            layer = QgsProject.instance().mapLayer(item.data(LAYER_ID_ROLE))
            if item.checkState() == Qt.CheckState.Checked and isinstance(layer, QgsRasterLayer):
                found.append(layer)
        return found

    def masked_classes(self) -> list[int]:
        items = (self.class_list.item(i) for i in range(self.class_list.count()))
        return [item.data(LAYER_ID_ROLE) for item in items if item.checkState() == Qt.CheckState.Checked]

    def set_masked_classes(self, classes: list[int]) -> None:
        for index in range(self.class_list.count()):
            item = self.class_list.item(index)
            item.setCheckState(
                Qt.CheckState.Checked if item.data(LAYER_ID_ROLE) in classes else Qt.CheckState.Unchecked
            )

    def season(self) -> tuple[str, str] | None:
        if not self.season_box.isChecked():
            return None
        start, end = self.season_start.date(), self.season_end.date()
        if end < start:
            raise InputError(
                f"The season ends ({end.toString(DATE_FORMAT)}) before it starts ({start.toString(DATE_FORMAT)}): "
                "set its first day before its last."
            )
        return start.toString(DATE_FORMAT), end.toString(DATE_FORMAT)

    def set_season(self, start: str, end: str) -> None:
        self.season_start.setDate(QDate.fromString(start, DATE_FORMAT))
        self.season_end.setDate(QDate.fromString(end, DATE_FORMAT))
        self.season_box.setChecked(True)

    def mask(self) -> dict[str, Any] | None:
        """The job's "mask" entry of the chosen sensor; None when no mask layer is ticked."""
        layers = self.mask_layers()
        if not layers:
            return None
        files = []
        for layer in layers:
            file = layer_file(layer)
            if file is None:
                raise InputError(
                    f"The cloud mask '{layer.name()}' is not a file the engine can read: export it to GeoTIFF "
                    "(right-click > Export > Save As) and tick the exported layer."
                )
            files.append(file)
        entry: dict[str, Any] = {"files": files, "type": self.mask_kind.currentData()}
        if entry["type"] == "scl":
            classes = self.masked_classes()
            if not classes:
                raise InputError(
                    "No scene class is ticked as masked: tick the classes to hide (cloud, shadow, cirrus, snow), "
                    "or untick the SCL layers."
                )
            entry["classes"] = classes
        return entry

    def apply(self, inputs: list[ModalityInput]) -> list[ModalityInput]:
        """The rows' inputs with the season on every time series and the masks on their sensor."""
        season, mask = self.season(), self.mask()
        target = self.mask_modality.currentData()
        if mask is not None and target not in {i.name for i in inputs}:
            raise InputError(
                f"Cloud masks are ticked for '{target}', but no layer of '{target}' is ticked: tick its layers, "
                "or untick the masks."
            )
        series = {m.name for m in self.model.modalities if m.is_series} if self.model else set()
        return [
            replace(
                entry,
                season=season if entry.name in series else None,
                mask=mask if entry.name == target else None,
            )
            for entry in inputs
        ]

    def parcels(self) -> tuple[str, str | None, QgsVectorLayer]:
        layer = self.parcels_combo.currentLayer()
        if not isinstance(layer, QgsVectorLayer):
            raise InputError("Pick the parcels layer (polygons, any CRS) beside 'Classify parcels'.")
        path, name = parcels_source(layer)
        return path, name, layer

    def state(self) -> dict[str, Any]:
        return {
            "season": [e.date().toString(DATE_FORMAT) for e in (self.season_start, self.season_end)]
            if self.season_box.isChecked()
            else None,
            "masks": [layer.id() for layer in self.mask_layers()],
            "kind": self.mask_kind.currentData(),
            "classes": self.masked_classes(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """A saved ``state`` back (after ``sync``): the season, the ticked masks, their kind and classes."""
        if state.get("season"):
            self.set_season(*state["season"])
        masks = set(state.get("masks", []))
        for index in range(self.mask_list.count()):
            item = self.mask_list.item(index)
            item.setCheckState(Qt.CheckState.Checked if item.data(LAYER_ID_ROLE) in masks else Qt.CheckState.Unchecked)
        self.mask_kind.setCurrentIndex(max(self.mask_kind.findData(state.get("kind", "scl")), 0))
        self.set_masked_classes(state.get("classes", list(DEFAULT_MASKED)))
