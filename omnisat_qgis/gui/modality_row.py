"""One input row of the dock: the layers of one modality of the chosen model.

A table of the project's raster layers: tick the layer (an image) or the layers
(a time series, one per date, sorted by date); the date read from each layer's
name is shown and can be edited; a layer whose bands are dates x the model's bands (a
GeoTIFF or netCDF variable holding a whole series) is listed with its dates (from its band
descriptions or metadata, else typed as a list) and goes to the engine as one file; the band mapping found from the band
descriptions and an inline check (file layer, CRS, overlap, resolution, bands)
are shown per layer. Below it, the band mapping of the ticked layers as an
editable table (model band -> layer band, or "missing"): what it shows is what
the job's "bands" says.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
)

from omnisat_qgis.band_matching import BandMapping, match_bands
from omnisat_qgis.gui.dates import band_dates, date_of_layer, parse_typed_date
from omnisat_qgis.gui.parts import PartsError, TickedLayer, build_parts
from omnisat_qgis.gui.session import ModalityInput
from omnisat_qgis.model_catalog import ModalityInfo, ModelInfo
from omnisat_qgis.value_scale import FINE, ScaleVerdict, detect_scale

COLUMNS = ("Layer", "Date", "Bands", "Check")
LAYER_ID_ROLE = Qt.ItemDataRole.UserRole
MISSING = "missing"
EDITED = "the band table"
SAMPLE_SIDE = 64  # pixels a side of the block whose values tell the layer's value scale


class InputError(Exception):
    """A row that cannot be run; the message names the layer and the fix."""


class NotAFileLayer(InputError):
    """A ticked layer the worker cannot read (web service, virtual raster): the dock offers an export."""

    def __init__(self, message: str, row: ModalityRow, layer: QgsRasterLayer):
        super().__init__(message)
        self.row, self.layer = row, layer


_SUBDATASET = re.compile(r'^[A-Z0-9_]+:"(?P<path>[^"]+)":')


def layer_file(layer: QgsRasterLayer) -> str | None:
    """What the engine opens for ``layer``: its file, or the GDAL name of a variable in a file
    (NETCDF:"f.nc":ndvi); None for a layer the worker cannot read (web service, memory)."""
    if layer.providerType() != "gdal":
        return None
    source = layer.source().split("|")[0]
    if Path(source).is_file():
        return source
    match = _SUBDATASET.match(source)
    return source if match and Path(match.group("path")).is_file() else None


def is_file_layer(layer: QgsRasterLayer) -> bool:
    return layer_file(layer) is not None


def stack_dates_count(layer: QgsRasterLayer, modality: ModalityInfo) -> int:
    """How many dates a layer holds when its bands are dates x the modality's bands; 0 for a one-date layer."""
    bands = len(modality.bands)
    count = layer.bandCount()
    return count // bands if modality.is_series and count > bands and count % bands == 0 else 0


def descriptions_for(layer: QgsRasterLayer, modality: ModalityInfo) -> list[str]:
    """The band descriptions the model's bands are matched against: a stack's first date."""
    descriptions = layer_descriptions(layer)
    return descriptions[: len(modality.bands)] if stack_dates_count(layer, modality) else descriptions


def stack_date_text(layer: QgsRasterLayer, modality: ModalityInfo) -> str:
    """The Date cell of a stack: its dates, comma separated; empty when one of them is unknown."""
    count = stack_dates_count(layer, modality)
    found = band_dates(layer, count, len(modality.bands))
    return ", ".join(d.isoformat() for d in found) if found and None not in found else ""


@dataclass(frozen=True)
class LayerCheck:
    mapping: BandMapping
    problems: tuple[str, ...]  # refuse to run
    notes: tuple[str, ...]  # said, not blocking

    def text(self) -> str:
        return "; ".join(self.problems + self.notes) or "ok"


def layer_descriptions(layer: QgsRasterLayer) -> list[str]:
    provider = layer.dataProvider()
    return [provider.bandDescription(band) for band in range(1, layer.bandCount() + 1)]


def band_signature(layer: QgsRasterLayer) -> tuple[str, ...]:
    """Layers with the same band count and descriptions take the same band mapping."""
    return tuple(layer_descriptions(layer))


def check_layer(
    layer: QgsRasterLayer,
    modality: ModalityInfo,
    model: ModelInfo,
    reference: QgsRasterLayer | None,
    mapping: BandMapping | None = None,
) -> LayerCheck:
    """``mapping``: the analyst's, when edited; else matched from the band descriptions."""
    mapping = mapping or match_bands(modality.bands, descriptions_for(layer, modality))
    problems, notes = [], []
    dates = stack_dates_count(layer, modality)
    if dates:
        notes.append(f"{dates} dates x {len(modality.bands)} bands in one layer")
        if mapping.layer_bands != tuple(range(1, len(modality.bands) + 1)):
            problems.append(
                f"holds {dates} dates, but the bands of each date are not {', '.join(modality.bands)} in "
                "this order: write one date per file, or reorder the bands of the stack"
            )
    if not is_file_layer(layer):
        problems.append("not a file layer: export it to GeoTIFF (Fit and preview offers it)")
    if mapping.missing:
        if model.architecture == "anysat":
            notes.append(f"missing {', '.join(mapping.missing)}: filled by the model")
        elif model.reads_wavelengths:
            problems.append(
                f"lacks {', '.join(mapping.missing)} (has {layer.bandCount()} bands): pick the layer band in the "
                "band table, or describe the layer with the bands it has (Add other sensor (wavelengths))"
            )
        else:
            problems.append(
                f"lacks {', '.join(mapping.missing)} (has {layer.bandCount()} bands): pick the "
                "layer band in the band table, or choose an AnySat model, which fills missing bands"
            )
    if any(b is not None and not 1 <= b <= layer.bandCount() for b in mapping.layer_bands):
        problems.append(f"has {layer.bandCount()} bands, fewer than the band table names: fix the table")
    if mapping.how not in ("descriptions", EDITED):
        notes.append(f"bands taken by {mapping.how}: check them")
    pixel = layer.rasterUnitsPerPixelX() if layer.crs().isGeographic() is False else None
    if pixel and not 0.5 <= pixel / modality.gsd_m <= 2.0:
        notes.append(f"{pixel:g} m pixels, the model expects {modality.gsd_m:g} m: resampled")
    if reference is not None and reference.id() != layer.id():
        if reference.crs() != layer.crs():
            notes.append(f"CRS {layer.crs().authid()} differs from {reference.crs().authid()}: warped on the fly")
        if not overlaps(layer, reference):
            problems.append(
                f"does not overlap '{reference.name()}' ({where(layer)} against {where(reference)}): "
                "they are different places"
            )
    return LayerCheck(mapping, tuple(problems), tuple(notes))


def sampled_means(layer: QgsRasterLayer, bands: tuple[int | None, ...]) -> list[float | None]:
    """Mean of each band over a coarse block of the whole layer (nodata left out); None for None."""
    provider, means = layer.dataProvider(), []
    for band in bands:
        if band is None or not 1 <= band <= layer.bandCount():
            means.append(None)
            continue
        block = provider.block(band, layer.extent(), SAMPLE_SIDE, SAMPLE_SIDE)
        values = [
            block.value(r, c) for r in range(block.height()) for c in range(block.width()) if not block.isNoData(r, c)
        ]
        values = [v for v in values if v == v]  # NaN is no value either
        means.append(sum(values) / len(values) if values else None)
    return means


def overlaps(layer: QgsRasterLayer, other: QgsRasterLayer) -> bool:
    """Whether the two extents meet; False when one cannot be expressed in the other's CRS."""
    try:
        transform = QgsCoordinateTransform(other.crs(), layer.crs(), QgsProject.instance())
        extent: QgsRectangle = transform.transformBoundingBox(other.extent())
    except QgsCsException:
        return False
    return extent.intersects(layer.extent())


def overlaps_area(layer: QgsRasterLayer, area: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> bool:
    try:
        transform = QgsCoordinateTransform(crs, layer.crs(), QgsProject.instance())
        return transform.transformBoundingBox(area).intersects(layer.extent())
    except QgsCsException:
        return False


def where(layer: QgsRasterLayer) -> str:
    """Where a layer lies, in words an analyst can compare: its CRS and its centre in degrees."""
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    try:
        centre = QgsCoordinateTransform(layer.crs(), wgs84, QgsProject.instance()).transform(layer.extent().center())
        place = f"around {centre.y():.2f}° N, {centre.x():.2f}° E"
    except QgsCsException:
        place = "at a place that cannot be located in degrees"
    return f"{layer.crs().authid() or 'unknown CRS'}, {place}"


def mixed_places(layers: list[QgsRasterLayer]) -> str:
    """The reason, in full, why ticked layers cannot be one run; empty when they all overlap the first."""
    if len(layers) < 2:
        return ""
    first = layers[0]
    apart = [layer for layer in layers[1:] if not overlaps(layer, first)]
    if not apart:
        return ""
    names = "; ".join(f"'{layer.name()}' ({where(layer)})" for layer in apart)
    return (
        f"The ticked layers are in different places: {names} do(es) not overlap '{first.name()}' ({where(first)}). "
        "One run maps one place: untick the layers of the other place (or load layers that cover the same "
        "area)."
    )


def offered(layer: QgsRasterLayer, modality: ModalityInfo) -> bool:
    """Layers listed in a row: not named for other bands, and not far off the modality's resolution."""
    descriptions = descriptions_for(layer, modality)
    mapping = match_bands(modality.bands, descriptions)
    named_elsewhere = any(descriptions) and mapping.how == "position"
    pixel = layer.rasterUnitsPerPixelX()
    far = not layer.crs().isGeographic() and not 0.25 <= pixel / modality.gsd_m <= 4.0
    return not named_elsewhere and not far


def suits(layer: QgsRasterLayer, modality: ModalityInfo, model: ModelInfo) -> bool:
    """A layer the dock ticks by itself: bands matched by name, the modality's resolution, a date for a series."""
    check = check_layer(layer, modality, model, None)
    pixel = layer.rasterUnitsPerPixelX()
    close = not layer.crs().isGeographic() and 0.5 <= pixel / modality.gsd_m <= 2.0
    if stack_dates_count(layer, modality):
        dated = bool(stack_date_text(layer, modality))
    else:
        dated = not modality.is_series or date_of_layer(layer) is not None
    return check.mapping.how == "descriptions" and not check.mapping.missing and not check.problems and close and dated


class ModalityRow(QGroupBox):
    changed = pyqtSignal()

    def __init__(self, modality: ModalityInfo, model: ModelInfo, parent=None):
        super().__init__(f"{modality.label} ({modality.name})", parent)
        self.modality, self.model = modality, model
        self.reference_id = ""  # the layer every ticked one must overlap (kept by id: layers come and go)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.itemChanged.connect(self._item_changed)
        self.empty = QLabel("No layer of this kind in the project (Layer > Add Layer > Raster).")
        self.empty.setWordWrap(True)
        # The checks of the ticked layers in full (the table's Check column is narrow).
        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.known: set[str] = set()  # ids of the layers listed: a layer added later is judged once, on arrival
        # The band table: one row per model band, a drop-down of the ticked layers' bands.
        self.band_table = QTableWidget(len(modality.bands), 2)
        self.band_table.setHorizontalHeaderLabels(("Model band", "Layer band"))
        self.band_table.horizontalHeader().setStretchLastSection(True)
        self.band_table.verticalHeader().setVisible(False)
        self.band_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.band_table.setFixedHeight(
            self.band_table.horizontalHeader().sizeHint().height()
            + len(modality.bands) * self.band_table.verticalHeader().defaultSectionSize()
            + 4
        )
        for index, band in enumerate(modality.bands):
            item = QTableWidgetItem(band)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.band_table.setItem(index, 0, item)
        # Folded while every band is matched by name (nothing to check); the button's text says the mapping.
        self.band_toggle = QToolButton()
        self.band_toggle.setCheckable(True)
        self.band_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.band_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.band_toggle.toggled.connect(self._fold_bands)
        self.band_toggle.setVisible(False)
        self.band_table.setVisible(False)
        self._band_layout: tuple[str, ...] | None = None  # band_signature the band table was built for
        self.edited: tuple[int | None, ...] | None = None  # the analyst's choice, when it differs from the match
        # The value-scale check of the first ticked layer, and the engine's conversion when one fits.
        self.scale_note = QLabel()
        self.scale_note.setWordWrap(True)
        self.convert_box = QCheckBox("Convert while reading (the layer itself is not changed)")
        self.convert_box.toggled.connect(lambda _: self.changed.emit())
        self.verdict: ScaleVerdict = FINE
        self._scale_for: tuple | None = None  # (layer id, layer bands) the verdict was found for
        # On its own wrapped line: in the title, ten band names would set the dock's minimum width.
        expects = QLabel(f"Bands {', '.join(modality.bands)}; {modality.gsd_m:g} m pixels")
        expects.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(expects)
        layout.addWidget(self.empty)
        layout.addWidget(self.table)
        layout.addWidget(self.problems)
        layout.addWidget(self.band_toggle)
        layout.addWidget(self.band_table)
        layout.addWidget(self.scale_note)
        layout.addWidget(self.convert_box)
        self._show_verdict()
        if not modality.is_series:
            self.table.setColumnHidden(1, True)

    def fill(
        self,
        layers: list[QgsRasterLayer],
        checked_ids: set[str] | None = None,
        dates: dict[str, str] | None = None,
        tick=None,
    ) -> None:
        """List ``layers`` (sorted by date); tick ``checked_ids``, or when None the layers ``tick(layer)``
        accepts (default: the suitable ones)."""
        tick = tick or (lambda layer: suits(layer, self.modality, self.model))
        self.known = {layer.id() for layer in layers}
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        ordered = sorted(
            (lyr for lyr in layers if offered(lyr, self.modality)),
            key=lambda lyr: (date_of_layer(lyr) or dt.date.max, lyr.name()),
        )
        for layer in ordered:
            row = self.table.rowCount()
            self.table.insertRow(row)
            name = QTableWidgetItem(layer.name())
            name.setData(LAYER_ID_ROLE, layer.id())
            name.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            ticked = layer.id() in checked_ids if checked_ids is not None else tick(layer)
            name.setCheckState(Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)
            stack = stack_dates_count(layer, self.modality)
            found = (dates or {}).get(layer.id()) or (
                stack_date_text(layer, self.modality) if stack else str(date_of_layer(layer) or "")
            )
            date = QTableWidgetItem(found)
            date.setToolTip(
                f"The {stack} dates of the stack, one per {len(self.modality.bands)} bands, comma "
                "separated (YYYY-MM-DD, ...), read from its band descriptions or metadata; type them "
                "if missing"
                if stack
                else "Acquisition date (YYYY-MM-DD), read from the layer name; edit it if wrong"
            )
            self.table.setItem(row, 0, name)
            self.table.setItem(row, 1, date)
            self.table.setItem(row, 2, QTableWidgetItem(""))
            self.table.setItem(row, 3, QTableWidgetItem(""))
        if not self.modality.is_series:
            self._keep_one()
        self.table.blockSignals(False)
        self.empty.setVisible(not ordered)
        self.table.setVisible(bool(ordered))
        # As tall as its rows (up to eight): the dock shows every modality without scrolling each table.
        rows = min(max(len(ordered), 1), 8)
        self.table.setFixedHeight(
            self.table.horizontalHeader().sizeHint().height()
            + rows * self.table.verticalHeader().defaultSectionSize()
            + 24
        )
        self.refresh_checks()

    def update_layers(self, layers: list[QgsRasterLayer], tick_new) -> None:
        """The project's layers changed: list ``layers``, keeping the ticks and typed dates of those listed
        before; a layer not seen before is ticked when ``tick_new(layer)`` says so."""
        ticked = {layer.id() for layer in self.checked_layers()}
        ticked |= {layer.id() for layer in layers if layer.id() not in self.known and tick_new(layer)}
        typed = {layer_id: date for layer_id, date in self.dates().items() if date}
        self.fill(layers, ticked, typed)

    def _keep_one(self) -> None:
        seen = False
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item.checkState() == Qt.CheckState.Checked:
                if seen:
                    item.setCheckState(Qt.CheckState.Unchecked)
                seen = True

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == 0 and not self.modality.is_series and item.checkState() == Qt.CheckState.Checked:
            self.table.blockSignals(True)
            for row in range(self.table.rowCount()):
                other = self.table.item(row, 0)
                if other is not item:
                    other.setCheckState(Qt.CheckState.Unchecked)
            self.table.blockSignals(False)
        if item.column() in (0, 1):
            self.refresh_checks()
            self.changed.emit()

    def layer(self, row: int) -> QgsRasterLayer | None:
        return QgsProject.instance().mapLayer(self.table.item(row, 0).data(LAYER_ID_ROLE))

    def checked_rows(self) -> list[int]:
        return [
            r
            for r in range(self.table.rowCount())
            if self.table.item(r, 0).checkState() == Qt.CheckState.Checked and self.layer(r) is not None
        ]

    def checked_layers(self) -> list[QgsRasterLayer]:
        return [self.layer(r) for r in self.checked_rows()]

    def dates(self) -> dict[str, str]:
        return {
            self.table.item(r, 0).data(LAYER_ID_ROLE): self.table.item(r, 1).text().strip()
            for r in range(self.table.rowCount())
        }

    # ------------------------------------------------------------------ band table
    def mapping(self, layer: QgsRasterLayer) -> BandMapping:
        """The band table's mapping for layers of its band layout; the automatic match for others."""
        if self.edited is not None and band_signature(layer) == self._band_layout:
            return BandMapping(tuple(self.modality.bands), self.edited, EDITED)
        return match_bands(self.modality.bands, descriptions_for(layer, self.modality))

    def _refresh_band_table(self) -> None:
        """Rebuild the drop-downs when the first ticked layer's band layout changed."""
        layers = self.checked_layers()
        self.band_toggle.setVisible(bool(layers))
        self.band_table.setVisible(bool(layers) and self.band_toggle.isChecked())
        if layers:
            mapping = self.mapping(layers[0])
            self.band_toggle.setText(
                f"Band mapping: {len(mapping.model_bands) - len(mapping.missing)} of "
                f"{len(mapping.model_bands)} bands, by {mapping.how}"
            )
        if not layers or band_signature(layers[0]) == self._band_layout:
            return
        first = layers[0]
        self._band_layout, self.edited = band_signature(first), None
        descriptions = descriptions_for(first, self.modality)
        matched = match_bands(self.modality.bands, descriptions)
        for index, band in enumerate(matched.layer_bands):
            combo = QComboBox()
            combo.addItem(MISSING, None)
            for number, text in enumerate(descriptions, start=1):
                combo.addItem(f"{number}: {text}" if text else f"band {number}", number)
            combo.setCurrentIndex(combo.findData(band) if band is not None else 0)
            combo.currentIndexChanged.connect(self._band_edited)
            self.band_table.setCellWidget(index, 1, combo)
        self.band_toggle.setText(
            f"Band mapping: {len(matched.model_bands) - len(matched.missing)} of "
            f"{len(matched.model_bands)} bands, by {matched.how}"
        )
        self.band_toggle.setChecked(matched.how != "descriptions" or bool(matched.missing))

    def _fold_bands(self, unfolded: bool) -> None:
        self.band_toggle.setArrowType(Qt.ArrowType.DownArrow if unfolded else Qt.ArrowType.RightArrow)
        self.band_table.setVisible(unfolded and bool(self.checked_layers()))

    def band_combo(self, model_band: str) -> QComboBox:
        return self.band_table.cellWidget(self.modality.bands.index(model_band), 1)

    def _band_edited(self) -> None:
        self.edited = tuple(self.band_table.cellWidget(i, 1).currentData() for i in range(len(self.modality.bands)))
        self.refresh_checks()
        self.changed.emit()

    def set_bands(self, bands: list[int | None]) -> None:
        """Restore a saved band table (after the layers are ticked)."""
        self._refresh_band_table()
        for index, band in enumerate(bands[: len(self.modality.bands)]):
            combo = self.band_table.cellWidget(index, 1)
            if combo is not None:
                combo.blockSignals(True)
                combo.setCurrentIndex(max(combo.findData(band), 0) if band is not None else 0)
                combo.blockSignals(False)
        self._band_edited()

    # ------------------------------------------------------------------ value scale
    def _refresh_scale(self) -> None:
        """Sample the first ticked layer when it (or its band mapping) changed."""
        layers = self.checked_layers()
        if not layers:
            self.verdict, self._scale_for = FINE, None
        else:
            mapping = self.mapping(layers[0])
            key = (layers[0].id(), mapping.layer_bands)
            if key == self._scale_for:
                return
            self._scale_for = key
            self.verdict = detect_scale(
                self.modality.bands, self.modality.mean, sampled_means(layers[0], mapping.layer_bands)
            )
            self.convert_box.blockSignals(True)
            self.convert_box.setChecked(self.verdict.conversion is not None)
            self.convert_box.blockSignals(False)
        self._show_verdict()

    def _show_verdict(self) -> None:
        self.scale_note.setText(f"Values: {self.verdict.text}" if self.verdict.text else "")
        self.scale_note.setVisible(bool(self.verdict.text))
        self.convert_box.setVisible(self.verdict.conversion is not None)

    def scale(self) -> str | None:
        """The job's "scale" for this row: the offered conversion, when the box is ticked."""
        return self.verdict.conversion if self.convert_box.isChecked() else None

    @property
    def reference(self) -> QgsRasterLayer | None:
        layer = QgsProject.instance().mapLayer(self.reference_id) if self.reference_id else None
        return layer if isinstance(layer, QgsRasterLayer) else None

    def refresh_checks(self, reference: QgsRasterLayer | None = None) -> None:
        if reference is not None:
            self.reference_id = reference.id()
        self._refresh_band_table()
        self._refresh_scale()
        self.table.blockSignals(True)
        checked = set(self.checked_rows())
        said = []
        for row in range(self.table.rowCount()):
            layer = self.layer(row)
            if layer is None:
                continue
            check = check_layer(layer, self.modality, self.model, self.reference, self.mapping(layer))
            found = [b for b in check.mapping.layer_bands if b is not None]
            self.table.item(row, 2).setText(f"{len(found)} of {layer.bandCount()}: {', '.join(map(str, found))}")
            self.table.item(row, 2).setToolTip(
                f"model band ← layer band ({check.mapping.how}): "
                + ", ".join(
                    f"{m}←{b or 'missing'}" for m, b in zip(check.mapping.model_bands, check.mapping.layer_bands)
                )
            )
            text = check.text() if row in checked else ""
            if row in checked and self.modality.is_series and not self._row_date(row):
                text = "no date: type it (YYYY-MM-DD)" + ("; " + text if text != "ok" else "")
            self.table.item(row, 3).setText(text)
            self.table.item(row, 3).setToolTip(text)
            if row in checked and (check.problems or text.startswith("no date")):
                said.append(f"'{layer.name()}': {text}")
        self.table.blockSignals(False)
        self.problems.setText("\n".join(said))
        self.problems.setVisible(bool(said))

    def _row_date(self, row: int) -> str:
        return self.table.item(row, 1).text().strip()

    def modality_input(self) -> ModalityInput | None:
        """What the job gets for this modality; None when no layer is ticked."""
        rows = self.checked_rows()
        if not rows:
            return None
        layers = [self.layer(r) for r in rows]
        name = self.modality.name
        checks = [
            check_layer(layer, self.modality, self.model, self.reference, self.mapping(layer)) for layer in layers
        ]
        # Layers of different bands (10 m and 20 m files) are read together as parts: one lacks what another holds.
        several = len({c.mapping.layer_bands for c in checks}) > 1
        for layer, check in zip(layers, checks):
            if not is_file_layer(layer):
                raise NotAFileLayer(
                    f"{self.modality.label}: layer '{layer.name()}' is not a file the engine can read (a web "
                    f"service or a virtual layer): export the area to GeoTIFF, or tick a file layer.",
                    self,
                    layer,
                )
            problems = [p for p in check.problems if not (several and p.startswith("lacks "))]
            if problems:
                raise InputError(f"{self.modality.label}: layer '{layer.name()}' {'; '.join(problems)}.")
        if several:
            return self._parts_input(rows, layers, checks)
        stacks = [layer for layer in layers if stack_dates_count(layer, self.modality)]
        if stacks:
            return self._stack_input(rows, layers, stacks)
        dates = []
        if self.modality.is_series:
            for row, layer in zip(rows, layers):
                text = self._row_date(row)
                if not text:
                    raise InputError(
                        f"{self.modality.label}: the date of '{layer.name()}' could not be read from "
                        "its name: type it in the Date column (YYYY-MM-DD)."
                    )
                try:
                    dates.append(parse_typed_date(text).isoformat())
                except ValueError:
                    raise InputError(
                        f"{self.modality.label}: '{text}' (layer '{layer.name()}') is not a date: "
                        "write it as YYYY-MM-DD."
                    ) from None
            if len(set(dates)) != len(dates):
                raise InputError(f"{self.modality.label}: two ticked layers have the same date; untick one.")
        elif len(layers) > 1:
            raise InputError(f"{self.modality.label} is one image: tick one layer only.")
        mapping = checks[0].mapping
        bands = None if mapping.is_identity(layers[0].bandCount()) else mapping.job_bands()
        files = [layer_file(layer) for layer in layers]
        return ModalityInput(name, files, dates, bands, self.scale())

    def _parts_input(self, rows: list[int], layers: list[QgsRasterLayer], checks: list[LayerCheck]) -> ModalityInput:
        """Ticked layers of different bands (Sentinel-2's 10 m and 20 m files): the job's "parts"."""
        ticked = [
            TickedLayer(layer.name(), layer_file(layer), self._row_date(row), check.mapping, layer.bandCount())
            for row, layer, check in zip(rows, layers, checks)
        ]
        try:
            parts = build_parts(self.modality.label, ticked, self.modality.is_series)
        except PartsError as exc:
            raise InputError(str(exc)) from None
        return ModalityInput(self.modality.name, [], [], None, self.scale(), parts=parts)

    def _stack_input(self, rows: list[int], layers: list[QgsRasterLayer], stacks: list[QgsRasterLayer]):
        """One layer holding every date: the job's one file whose bands are dates x channels."""
        label = self.modality.label
        if len(layers) > 1:
            count = stack_dates_count(stacks[0], self.modality)
            raise InputError(
                f"{label}: '{stacks[0].name()}' holds a whole series ({count} dates): tick it alone, "
                "not with other layers."
            )
        layer, count = layers[0], stack_dates_count(layers[0], self.modality)
        text = self._row_date(rows[0])
        if not text:
            raise InputError(
                f"{label}: the dates of '{layer.name()}' ({count} dates of {len(self.modality.bands)} "
                "bands) are not in its band descriptions or metadata: type them in the Date column, "
                "comma separated (YYYY-MM-DD, YYYY-MM-DD, ...)."
            )
        try:
            dates = [
                parse_typed_date(part.strip()).isoformat() for part in text.replace(";", ",").split(",") if part.strip()
            ]
        except ValueError as exc:
            raise InputError(
                f"{label}: the dates of '{layer.name()}' are not dates ({exc}): write them as "
                "YYYY-MM-DD, comma separated."
            ) from None
        if len(dates) != count:
            raise InputError(
                f"{label}: '{layer.name()}' holds {count} dates ({layer.bandCount()} bands of "
                f"{len(self.modality.bands)}), but the Date column lists {len(dates)}: give one date "
                "per date."
            )
        if len(set(dates)) != len(dates):
            raise InputError(f"{label}: the dates of '{layer.name()}' repeat a date: each date once.")
        return ModalityInput(self.modality.name, [layer_file(layer)], dates, None, self.scale())
