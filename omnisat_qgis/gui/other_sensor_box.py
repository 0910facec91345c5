"""The dock's "other sensor (wavelengths)" input, for models that read bands by wavelength (UniverSat).

A sensor the model does not list: the analyst ticks its layers (one image, or one per date for
a time series, dates read from the names and editable), gives each band's centre wavelength in
nm or its SAR polarisation (guessed from the band descriptions; an empty cell leaves the band
out) and the pixel size (the first layer's by default). It goes to the job as a modality with a
``"sensor"`` entry (omnisat_qgis.other_sensor), which the engine reads with no code change.
"""

from __future__ import annotations

import datetime as dt

from qgis.core import QgsRasterLayer
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from omnisat_qgis.gui.dates import date_of_layer, parse_typed_date
from omnisat_qgis.gui.modality_row import (
    LAYER_ID_ROLE,
    InputError,
    ModalityRow,
    is_file_layer,
    layer_descriptions,
    layer_file,
)
from omnisat_qgis.gui.session import ModalityInput
from omnisat_qgis.other_sensor import SensorError, guess_band, sensor_entry


class OtherSensorBox(QGroupBox):
    changed = pyqtSignal()
    removed = pyqtSignal(object)  # this box

    def __init__(self, name: str, taken: set[str], parent=None):
        super().__init__(f"Other sensor (wavelengths): {name}", parent)
        self.taken = taken  # the model's sensor names: this one must differ
        self._bands_for: tuple[str, ...] | None = None  # the band descriptions the band table was built for
        form = QFormLayout()
        self.name_edit = QLineEdit(name)
        self.name_edit.setToolTip("The name this sensor has in the job (letters, digits, _)")
        self.name_edit.textChanged.connect(lambda text: self.setTitle(f"Other sensor (wavelengths): {text}"))
        self.pixel_spin = QDoubleSpinBox()
        self.pixel_spin.setRange(0.0, 10000.0)
        self.pixel_spin.setDecimals(2)
        self.pixel_spin.setSuffix(" m")
        self.pixel_spin.setSpecialValueText("the first layer's")
        self.pixel_spin.setToolTip("The sensor's pixel size (ground sampling distance) in metres")
        form.addRow("Name", self.name_edit)
        form.addRow("Pixel size", self.pixel_spin)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(("Layer", "Date"))
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setToolTip("Tick one image, or one layer per date for a time series (any number of dates)")
        self.table.itemChanged.connect(self._layers_changed)
        self.bands = QTableWidget(0, 2)
        self.bands.setHorizontalHeaderLabels(("Layer band", "Wavelength (nm) or VV / VH / HH / HV"))
        self.bands.horizontalHeader().setStretchLastSection(True)
        self.bands.verticalHeader().setVisible(False)
        self.bands.setToolTip(
            "Each band's centre wavelength in nanometres (red: 665), or its SAR polarisation; leave a cell "
            "empty to leave the band out"
        )
        self.bands.itemChanged.connect(lambda _: self.changed.emit())
        remove = QPushButton("Remove this sensor")
        remove.clicked.connect(lambda: self.removed.emit(self))
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.table)
        layout.addWidget(self.bands)
        layout.addWidget(remove, 0, Qt.AlignmentFlag.AlignRight)

    # ------------------------------------------------------------------ layers
    def fill(self, layers: list[QgsRasterLayer], ticked: set[str] | None = None) -> None:
        """List ``layers`` by date; keep the ticks (``ticked``: these instead) and typed dates."""
        ticked = {lyr.id() for lyr in self.checked_layers()} if ticked is None else ticked
        typed = self.dates()
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        for layer in sorted(layers, key=lambda lyr: (date_of_layer(lyr) or dt.date.max, lyr.name())):
            row = self.table.rowCount()
            self.table.insertRow(row)
            item = QTableWidgetItem(layer.name())
            item.setData(LAYER_ID_ROLE, layer.id())
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            item.setCheckState(Qt.CheckState.Checked if layer.id() in ticked else Qt.CheckState.Unchecked)
            self.table.setItem(row, 0, item)
            self.table.setItem(row, 1, QTableWidgetItem(typed.get(layer.id()) or str(date_of_layer(layer) or "")))
        self.table.blockSignals(False)
        self._refresh_bands()

    def tick(self, layer: QgsRasterLayer, on: bool = True) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(LAYER_ID_ROLE) == layer.id():
                self.table.item(row, 0).setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def _layers_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == 0:
            self._refresh_bands()
        self.changed.emit()

    # The layer table is a modality row's (layer, date; ticked rows): the same reading serves both.
    layer = ModalityRow.layer
    checked_rows = ModalityRow.checked_rows
    checked_layers = ModalityRow.checked_layers
    dates = ModalityRow.dates

    # ------------------------------------------------------------------ bands
    def _refresh_bands(self) -> None:
        """One row per band of the first ticked layer, its wavelength guessed from its description."""
        layers = self.checked_layers()
        descriptions = tuple(layer_descriptions(layers[0])) if layers else ()
        if descriptions == self._bands_for:
            return
        self._bands_for = descriptions
        self.bands.blockSignals(True)
        self.bands.setRowCount(len(descriptions))
        for index, text in enumerate(descriptions):
            label = QTableWidgetItem(f"{index + 1}: {text}" if text else f"band {index + 1}")
            label.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.bands.setItem(index, 0, label)
            self.bands.setItem(index, 1, QTableWidgetItem(guess_band(text)))
        self.bands.blockSignals(False)
        if layers and not self.pixel_spin.value() and not layers[0].crs().isGeographic():
            self.pixel_spin.setValue(layers[0].rasterUnitsPerPixelX())

    def set_band(self, index: int, text: str) -> None:
        """The analyst types a band's wavelength or code (0-based band)."""
        self.bands.item(index, 1).setText(text)

    def band_texts(self) -> list[str]:
        return [self.bands.item(r, 1).text() for r in range(self.bands.rowCount())]

    # ------------------------------------------------------------------ the job
    def modality_input(self) -> ModalityInput | None:
        """What the job gets for this sensor; None when no layer is ticked."""
        rows = self.checked_rows()
        if not rows:
            return None
        name = self.name_edit.text().strip()
        where = f"Other sensor '{name}'"
        if not name.replace("_", "").isalnum():
            raise InputError(f"{where}: name it with letters, digits and _ only (e.g. camera).")
        if name in self.taken:
            raise InputError(f"{where}: the model already has a sensor '{name}': give this one another name.")
        layers = [self.layer(r) for r in rows]
        for layer in layers:
            if not is_file_layer(layer):
                raise InputError(f"{where}: layer '{layer.name()}' is not a file layer: export it to GeoTIFF first.")
        if len({layer.bandCount() for layer in layers}) > 1:
            raise InputError(f"{where}: the ticked layers do not have the same bands; tick layers of one product.")
        dates = []
        if len(layers) > 1:
            for row, layer in zip(rows, layers):
                text = self.table.item(row, 1).text().strip()
                try:
                    dates.append(parse_typed_date(text).isoformat())
                except ValueError:
                    raise InputError(
                        f"{where}: the date of '{layer.name()}' ('{text}') is not a date: type it (YYYY-MM-DD) "
                        "in the Date column."
                    ) from None
            if len(set(dates)) != len(dates):
                raise InputError(f"{where}: two ticked layers have the same date; untick one.")
        pixel = self.pixel_spin.value() or (
            layers[0].rasterUnitsPerPixelX() if not layers[0].crs().isGeographic() else None
        )
        try:
            sensor, bands = sensor_entry(self.band_texts(), pixel, series=len(layers) > 1, where=where)
        except SensorError as exc:
            raise InputError(str(exc)) from None
        return ModalityInput(name, [layer_file(layer) for layer in layers], dates, bands, sensor=sensor)
