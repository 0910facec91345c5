"""The Inputs panel: one row per modality of the model, and the area to map.

The rows follow the project: a raster layer added, removed or renamed after the dock opened
shows up, goes or is renamed in the rows at once, and the ticks already set stay. A layer is
ticked by the dock only when it suits the modality and lies where the other ticked layers
and the area to map are: layers of another place are listed, unticked, and a selection
that mixes places is refused with the reason in full.
"""

from __future__ import annotations

from typing import Any

from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer, QgsRectangle
from qgis.gui import QgsMapToolExtent
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from omnisat_qgis.gui.modality_row import (
    InputError,
    ModalityRow,
    mixed_places,
    overlaps,
    overlaps_area,
    stack_dates_count,
    suits,
)
from omnisat_qgis.gui.other_sensor_box import OtherSensorBox
from omnisat_qgis.gui.panels.resolution import ResolutionPanel
from omnisat_qgis.gui.session import Extent, ModalityInput
from omnisat_qgis.model_catalog import ModelInfo

EXTENT_CHOICES = ("Visible map area", "Where the inputs overlap", "Drawn rectangle")


def raster_layers() -> list[QgsRasterLayer]:
    """The project's raster layers an analyst may feed the model (the dock's own outputs left out)."""
    return [
        lyr
        for lyr in QgsProject.instance().mapLayers().values()
        if isinstance(lyr, QgsRasterLayer) and not lyr.customProperty("omnisat/output", False)
    ]


class InputsPanel(QWidget):
    changed = pyqtSignal()  # ticks, dates or the project's layers changed

    def __init__(self, iface, parent=None):
        super().__init__(parent)
        self.iface = iface
        self.model: ModelInfo | None = None
        self.rows: list[ModalityRow] = []
        self.drawn: Extent | None = None
        self._map_tool: QgsMapToolExtent | None = None
        self._listening = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.rows_box = QVBoxLayout()
        layout.addLayout(self.rows_box)
        # Sensors the model does not list, described by their bands' wavelengths (UniverSat only).
        self.others: list[OtherSensorBox] = []
        self.others_box = QVBoxLayout()
        layout.addLayout(self.others_box)
        self.add_other_button = QPushButton("Add other sensor (wavelengths)…")
        self.add_other_button.setToolTip(
            "A sensor this model does not list: give each band's wavelength (nm) or polarisation and the pixel "
            "size; UniverSat reads it with no retraining"
        )
        self.add_other_button.clicked.connect(lambda: self.add_other_sensor())
        self.add_other_button.setVisible(False)
        layout.addWidget(self.add_other_button)
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
        self.resolution_panel = ResolutionPanel()
        layout.addWidget(self.resolution_panel)
        self.listen(True)

    # ------------------------------------------------------------------ following the project
    def listen(self, on: bool) -> None:
        """Follow the project's layers (on), or stop (the dock is being deleted: no slot on a dead widget)."""
        if on == self._listening:
            return
        project = QgsProject.instance()
        signals = (
            (project.layersAdded, self._layers_added),
            (project.layersRemoved, self._layers_removed),
            (project.layerTreeRoot().nameChanged, self._renamed),
            (project.cleared, self._layers_removed),
        )
        for signal, slot in signals:
            if on:
                signal.connect(slot)
            else:
                try:
                    signal.disconnect(slot)
                except (TypeError, RuntimeError):  # the project already let go of it
                    pass
        self._listening = on

    def _layers_added(self, layers) -> None:
        if any(isinstance(layer, QgsRasterLayer) for layer in layers):
            self.sync()

    def _layers_removed(self, *args) -> None:
        self.sync()

    def _renamed(self, node, name) -> None:
        self.sync()

    def sync(self) -> None:
        """List the project's layers now, ticks kept; a new layer ticked when it fits (see ``tick_new``)."""
        layers = raster_layers()
        for row in self.rows:
            row.update_layers(layers, lambda layer, r=row: self.tick_new(layer, r))
        for box in self.others:
            box.fill(layers)
        self._show_rows()
        self.refresh_checks()
        self.changed.emit()

    # ------------------------------------------------------------------ ticks
    def area(self) -> tuple[QgsRectangle, QgsCoordinateReferenceSystem]:
        """Where the analyst works: the drawn rectangle when that is the choice, else the visible map area."""
        canvas = self.iface.mapCanvas()
        if self.extent_combo.currentText() == EXTENT_CHOICES[2] and self.drawn is not None:
            return QgsRectangle(*self.drawn.bounds), QgsCoordinateReferenceSystem(self.drawn.crs)
        return canvas.extent(), canvas.mapSettings().destinationCrs()

    def anchor(self) -> QgsRasterLayer | None:
        """The first ticked layer: every other one must overlap it."""
        return next((layers[0] for row in self.rows if (layers := row.checked_layers())), None)

    def tick_new(self, layer: QgsRasterLayer, row: ModalityRow) -> bool:
        if not suits(layer, row.modality, row.model) or not self.claims(row, layer):
            return False
        ticked = row.checked_layers()
        stacked = [lyr for lyr in [layer, *ticked] if stack_dates_count(lyr, row.modality)]
        if ticked and stacked:
            return False  # a stack holds a whole series: never ticked beside other layers of its row
        anchor = self.anchor()
        if anchor is not None:
            return overlaps(layer, anchor)
        area, crs = self.area()
        return area.isEmpty() or overlaps_area(layer, area, crs)

    def initial_ticks(self, layers: list[QgsRasterLayer]) -> set[str]:
        """The layers ticked when the rows are first filled: suitable ones in one place, the place nearest the
        middle of the area (so Slovenian and Flemish dates are never ticked together)."""
        candidates = [layer for row in self.rows for layer in layers if suits(layer, row.modality, row.model)]
        if not candidates:
            return set()
        area, crs = self.area()
        inside = [layer for layer in candidates if area.isEmpty() or overlaps_area(layer, area, crs)]
        pool = inside or candidates
        if area.isEmpty():
            anchor = max(pool, key=lambda a: sum(overlaps(b, a) for b in pool))  # the place most layers share
        else:
            anchor = min(pool, key=lambda layer: _distance(layer, area, crs))
        return {layer.id() for layer in pool if overlaps(layer, anchor)}

    def claims(self, row: ModalityRow, layer: QgsRasterLayer) -> bool:
        """Whether ``row`` is where the dock ticks ``layer`` by itself: UniverSat lists sensors whose bands
        overlap (s2, s2_4band), and a layer goes to the one that reads most of its bands, never to two."""
        if self.model is None or not self.model.reads_wavelengths:
            return True
        fitting = [r for r in self.rows if suits(layer, r.modality, r.model)]
        return max(fitting, key=lambda r: len(r.modality.bands), default=None) is row

    # ------------------------------------------------------------------ rows
    def set_model(self, info: ModelInfo) -> None:
        self.model = info
        for row in self.rows:
            row.setParent(None)
            row.deleteLater()
        self.rows = [ModalityRow(m, info) for m in info.modalities]
        for row in self.rows:
            row.changed.connect(self._row_changed)
            self.rows_box.addWidget(row)
        self.add_other_button.setVisible(info.reads_wavelengths)
        self.resolution_panel.set_model(info)
        for box in list(self.others):
            if info.reads_wavelengths:
                box.taken = {m.name for m in info.modalities}
            else:
                self.remove_other_sensor(box)

    def _show_rows(self) -> None:
        """A model of many sensors (UniverSat's table) shows only the rows the project has layers for."""
        for row in self.rows:
            row.setVisible(not self.model.reads_wavelengths or row.table.rowCount() > 0)

    def add_other_sensor(self, name: str = "") -> OtherSensorBox:
        taken = {m.name for m in self.model.modalities} | {b.name_edit.text() for b in self.others}
        name = name or next(f"other{i}" for i in range(1, 100) if f"other{i}" not in taken)
        box = OtherSensorBox(name, {m.name for m in self.model.modalities})
        box.changed.connect(self.changed.emit)
        box.removed.connect(self.remove_other_sensor)
        box.fill(raster_layers(), set())
        self.others.append(box)
        self.others_box.addWidget(box)
        return box

    def remove_other_sensor(self, box: OtherSensorBox) -> None:
        self.others.remove(box)
        box.setParent(None)
        box.deleteLater()
        self.changed.emit()

    def _row_changed(self) -> None:
        self.refresh_checks()
        self.changed.emit()

    def fill(self, state: dict[str, Any] | None = None) -> None:
        """Fill the rows: from ``state`` (the saved "inputs") for the modalities it names, else with the layers
        ``initial_ticks`` picks."""
        layers = raster_layers()
        ticks = self.initial_ticks(layers)
        for row in self.rows:
            saved = (state or {}).get(row.modality.name)
            if saved:
                row.fill(layers, set(saved["layers"]), saved.get("dates"))
            else:
                mine = [
                    lyr
                    for lyr in layers
                    if lyr.id() in ticks and suits(lyr, row.modality, row.model) and self.claims(row, lyr)
                ]
                single = [lyr for lyr in mine if not stack_dates_count(lyr, row.modality)]
                # Dates as layers and a stack of the same dates: the layers, unless there are none.
                row.fill(layers, {lyr.id() for lyr in (single or mine[:1])})
            if saved and saved.get("bands"):
                row.set_bands(saved["bands"])
        self._show_rows()
        self.refresh_checks()

    def refresh_checks(self) -> None:
        first = self.anchor()
        for row in self.rows:
            row.refresh_checks(first)

    def ticked_layers(self) -> list[QgsRasterLayer]:
        """Every ticked layer, of the model's sensors and of the other sensors."""
        return [layer for row in [*self.rows, *self.others] for layer in row.checked_layers()]

    def output_grid(self) -> dict[str, Any]:
        """The run's level and output resolution: a UniverSat probe reads one vector per output cell (the dense
        level), so its map is per cell; {} for other models (their defaults)."""
        if self.model is None or not self.model.reads_wavelengths:
            return {}
        return {"level": "dense", "resolution_m": self.resolution_panel.value(self.model, self.ticked_layers())}

    def inputs(self) -> list[ModalityInput]:
        ticked = self.ticked_layers()
        if reason := mixed_places(ticked):
            raise InputError(reason)
        chosen = [entry for row in [*self.rows, *self.others] if (entry := row.modality_input()) is not None]
        if not chosen:
            raise InputError("Tick at least one layer for one of the model's inputs.")
        return chosen

    def state(self) -> dict[str, Any]:
        return {
            row.modality.name: {
                "layers": [lyr.id() for lyr in row.checked_layers()],
                "dates": row.dates(),
                "bands": list(row.edited) if row.edited is not None else None,
            }
            for row in self.rows
        }

    # ------------------------------------------------------------------ extent
    def canvas_extent(self) -> Extent:
        canvas = self.iface.mapCanvas()
        rect = canvas.extent()
        return Extent(
            (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()),
            canvas.mapSettings().destinationCrs().authid(),
        )

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

    def stop_drawing(self) -> None:
        """Take the rectangle tool off the canvas: the canvas must not keep a tool that is deleted with the dock."""
        if self._map_tool is not None:
            self.iface.mapCanvas().unsetMapTool(self._map_tool)
            self._map_tool = None

    def _drawn(self, rect) -> None:
        crs = self.iface.mapCanvas().mapSettings().destinationCrs().authid()
        self.drawn = Extent((rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()), crs)
        self.extent_combo.setCurrentText(EXTENT_CHOICES[2])
        self.iface.mapCanvas().unsetMapTool(self._map_tool)


def _distance(layer: QgsRasterLayer, area: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> float:
    """How far the layer's centre lies from the area's, in the area's CRS (infinite when it cannot be said)."""
    from qgis.core import QgsCoordinateTransform, QgsCsException

    try:
        centre = QgsCoordinateTransform(layer.crs(), crs, QgsProject.instance()).transform(layer.extent().center())
    except QgsCsException:
        return float("inf")
    return centre.distance(area.center())
