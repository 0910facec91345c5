"""The Labels panel: the labels layer, its class field (chosen once, kept), the class table.

The class table edits names and colours without ever touching the class field: QGIS
rebuilds a layer's fields when its form changes (the value map of the classes), which
reset a field drop-down to the first field (``fid``), so the panel keeps the analyst's
choice itself and puts it back. Renaming a class renames its value in the features of a
labels layer the dock made (one undoable edit) and the layer's symbols follow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsColorButton, QgsFieldComboBox, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from omnisat_qgis.gui.labels_layer import (
    BACKGROUND,
    DEFAULT_FIELD,
    LabelClass,
    LabelsError,
    class_values,
    create_labels_layer,
    default_color,
    rename_class_values,
    style_labels,
)
from omnisat_qgis.gui.modality_row import InputError
from omnisat_qgis.gui.requests import LabelsRequest
from omnisat_qgis.gui.session import Extent

NAME_ROLE = Qt.ItemDataRole.UserRole  # the class name the features hold (before an edit of the cell)


def is_dock_labels(layer: QgsVectorLayer | None) -> bool:
    return layer is not None and bool(layer.customProperty("omnisat/labels", False))


class LabelsPanel(QgsCollapsibleGroupBox):
    def __init__(self, iface, say: Callable[..., object], parent=None):
        super().__init__("Labels", parent)
        self.iface, self.say = iface, say
        self.class_field = ""  # the analyst's choice; survives every rebuild of the layer's fields
        self._watched: QgsVectorLayer | None = None
        layout = QVBoxLayout(self)
        line = QHBoxLayout()
        self.geometry_combo = QComboBox()
        self.geometry_combo.addItems(["points", "polygons"])
        new = QPushButton("New labels layer")
        new.setToolTip("A new GeoPackage with a 'class' field, styled by the class table; start clicking samples")
        new.clicked.connect(lambda: self.new_labels_layer())
        line.addWidget(new)
        line.addWidget(self.geometry_combo)
        layout.addLayout(line)
        form = QFormLayout()
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(Qgis.LayerFilter.PointLayer | Qgis.LayerFilter.PolygonLayer)
        self.layer_combo.setAllowEmptyLayer(True)
        self.layer_combo.layerChanged.connect(self._layer_chosen)
        self.field_combo = QgsFieldComboBox()
        self.field_combo.setToolTip("The field holding each sample's class; kept while you edit the classes")
        self.field_combo.activated.connect(self._field_chosen)
        self.ignore_edit = QLineEdit()
        self.ignore_edit.setPlaceholderText("e.g. 0 (no data)")
        self.ignore_edit.setToolTip("Class values left out of the fit (comma separated)")
        form.addRow("Labels layer", self.layer_combo)
        form.addRow("Class field", self.field_combo)
        form.addRow("Ignore classes", self.ignore_edit)
        # Off by default: the curve refits the probe for every sample size (about 20 s of a 25 s re-fit).
        self.curve_box = QCheckBox("Learning curve in the fit report (slower re-fits)")
        form.addRow(self.curve_box)
        layout.addLayout(form)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Class", "Colour"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setToolTip("Double-click a name to rename the class: its samples are renamed with it")
        self.table.itemChanged.connect(self._item_changed)
        layout.addWidget(self.table)
        buttons = QHBoxLayout()
        self.add_button = add = QPushButton("Add class")
        add.clicked.connect(lambda: self.add_class(self.free_name()))
        self.background_button = QPushButton("Add background class")
        self.background_button.setToolTip(
            "A class for everything that is none of yours (roads, buildings, water, other crops): without it, "
            "each such pixel is put in one of your classes, and a class spreads far beyond its fields"
        )
        self.background_button.clicked.connect(lambda: self.add_class(BACKGROUND))
        remove = QPushButton("Remove class")
        remove.clicked.connect(self.remove_class)
        for button in (add, self.background_button, remove):
            buttons.addWidget(button)
        layout.addLayout(buttons)

    # ------------------------------------------------------------------ the layer and its class field
    def layer(self) -> QgsVectorLayer | None:
        layer = self.layer_combo.currentLayer()
        return layer if isinstance(layer, QgsVectorLayer) else None

    def choose(self, layer: QgsVectorLayer, field: str = "") -> None:
        self.layer_combo.setLayer(layer)
        self._layer_chosen(layer, field)  # setLayer from code does not always emit layerChanged

    def _layer_chosen(self, layer, field: str = "") -> None:
        self.release()
        self._watched = layer if isinstance(layer, QgsVectorLayer) else None
        self.field_combo.setLayer(self._watched)
        names = self._watched.fields().names() if self._watched is not None else []
        # A GeoPackage's first field is its feature id: never a sensible default class field.
        self.class_field = next(
            (f for f in (field, self.class_field, DEFAULT_FIELD) if f and f in names),
            next((n for n in names if n.lower() != "fid"), ""),
        )
        if self._watched is not None:
            self._watched.updatedFields.connect(self._show_field)
        self._show_field()
        if self._watched is not None and self.class_field:
            for name in class_values(self._watched, self.class_field):  # the layer's classes join the table
                if name not in self.names():
                    self.add_class(name, restyle=False)
        self.restyle()

    def release(self) -> None:
        """Stop watching the labels layer's fields (the panel is going)."""
        if self._watched is not None:
            try:
                self._watched.updatedFields.disconnect(self._show_field)
            except (TypeError, RuntimeError):
                pass
            self._watched = None

    def _field_chosen(self, index: int) -> None:
        self.class_field = self.field_combo.currentField()
        self.restyle()

    def _show_field(self) -> None:
        """Put the kept class field back in the drop-down (its model is rebuilt with the layer's fields)."""
        self.field_combo.blockSignals(True)
        self.field_combo.setField(self.class_field)
        self.field_combo.blockSignals(False)

    def restyle(self) -> None:
        layer = self.layer()
        if layer is not None and self.class_field and is_dock_labels(layer):
            style_labels(layer, self.class_field, self.classes())
        self._show_field()

    # ------------------------------------------------------------------ the class table
    def names(self) -> list[str]:
        return [self.table.item(r, 0).data(NAME_ROLE) for r in range(self.table.rowCount())]

    def free_name(self) -> str:
        number = self.table.rowCount() + 1
        while f"class {number}" in self.names():
            number += 1
        return f"class {number}"

    def add_class(self, name: str, color: str | None = None, restyle: bool = True) -> None:
        if name in self.names():
            self.say(f"The class '{name}' is already in the table.", Qgis.MessageLevel.Warning)
            return
        self.table.blockSignals(True)
        row = self.table.rowCount()
        self.table.insertRow(row)
        item = QTableWidgetItem(name)
        item.setData(NAME_ROLE, name)
        self.table.setItem(row, 0, item)
        button = QgsColorButton()
        button.setColor(QColor(color or default_color(row, name)))
        button.colorChanged.connect(lambda _: self.restyle())
        self.table.setCellWidget(row, 1, button)
        self.table.blockSignals(False)
        if restyle:
            self.restyle()

    def rename_class(self, old: str, new: str) -> None:
        row = self.names().index(old)
        self.table.item(row, 0).setText(new)  # _item_changed does the renaming

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != 0:
            return
        old, new = item.data(NAME_ROLE), item.text().strip()
        if new == old:
            return
        layer, problem = self.layer(), ""
        if not new:
            problem = "A class needs a name."
        elif new in self.names():
            problem = f"There is already a class '{new}': choose another name (remove a class to merge it)."
        elif (
            layer is not None
            and self.class_field
            and not is_dock_labels(layer)
            and old in class_values(layer, self.class_field)
        ):
            problem = (
                f"'{layer.name()}' was not made by the dock: its samples are not renamed here (the dock does "
                "not change your layers). Rename the values in its attribute table, or copy it first."
            )
        if problem:
            self.table.blockSignals(True)
            item.setText(old)
            self.table.blockSignals(False)
            self.say(problem, Qgis.MessageLevel.Warning)
            return
        changed = 0
        if layer is not None and self.class_field:
            try:
                changed = rename_class_values(layer, self.class_field, old, new)
            except LabelsError as exc:
                self.table.blockSignals(True)
                item.setText(old)
                self.table.blockSignals(False)
                self.say(str(exc), Qgis.MessageLevel.Critical)
                return
        self.table.blockSignals(True)
        item.setData(NAME_ROLE, new)
        self.table.blockSignals(False)
        self.restyle()
        if changed:
            self.say(
                f"Class '{old}' renamed '{new}' in {changed} sample(s); fit again to carry the name into the maps.",
                Qgis.MessageLevel.Info,
            )

    def remove_class(self) -> None:
        row = self.table.currentRow()
        row = row if row >= 0 else self.table.rowCount() - 1
        if row < 0:
            return
        name, layer = self.names()[row], self.layer()
        self.table.removeRow(row)
        self.restyle()
        if layer is not None and self.class_field and name in class_values(layer, self.class_field):
            self.say(
                f"Samples of '{layer.name()}' still have the class '{name}': they count in the next fit until "
                "you delete them or change their class.",
                Qgis.MessageLevel.Warning,
            )

    def classes(self) -> list[LabelClass]:
        return [
            LabelClass(self.table.item(r, 0).data(NAME_ROLE), self.table.cellWidget(r, 1).color().name())
            for r in range(self.table.rowCount())
        ]

    def set_classes(self, classes: list[tuple[str, str]]) -> None:
        self.table.setRowCount(0)
        for name, color in classes:
            self.add_class(name, color, restyle=False)
        self.restyle()

    # ------------------------------------------------------------------ new layer, request
    def new_labels_layer(self, path: str | None = None) -> QgsVectorLayer | None:
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "New labels layer", "", "GeoPackage (*.gpkg)")
            if not path:
                return None
        if not self.classes():
            for index, name in enumerate(("class 1", "class 2")):
                self.add_class(name, default_color(index), restyle=False)
        try:
            layer = create_labels_layer(
                Path(path), self.geometry_combo.currentText(), self.iface.mapCanvas().mapSettings().destinationCrs()
            )
        except LabelsError as exc:
            self.say(str(exc), Qgis.MessageLevel.Critical)
            return None
        layer.setCustomProperty("omnisat/labels", True)
        QgsProject.instance().addMapLayer(layer)
        self.choose(layer, DEFAULT_FIELD)
        self.iface.setActiveLayer(layer)
        layer.startEditing()
        self.iface.actionAddFeature().trigger()
        return layer

    def request(self, extent: Extent | None = None) -> LabelsRequest:
        """The fit's labels; with ``extent``, only the features inside it count (the others have no embeddings)."""
        layer, field = self.layer(), self.class_field
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
            transform = QgsCoordinateTransform(
                QgsCoordinateReferenceSystem(extent.crs), layer.crs(), QgsProject.instance()
            )
            request.setFilterRect(transform.transformBoundingBox(QgsRectangle(*extent.bounds)))
        features = list(layer.getFeatures(request))
        where = " in the visible map area" if extent is not None else ""
        if not features:
            raise InputError(
                f"The labels layer '{layer.name()}' has no feature{where}: draw samples there, or pan "
                "the map to where the samples are."
            )
        values = [str(f[field]) for f in features if f[field] not in (None, "")]
        unlabelled = len(features) - len(values)
        classes = {v for v in values if v not in ignored}
        if unlabelled:
            self.say(
                f"{unlabelled} feature(s) of '{layer.name()}' have no class and are left out.",
                Qgis.MessageLevel.Warning,
            )
        if len(classes) < 2:
            raise InputError(
                f"The labels layer '{layer.name()}' has {len(classes)} class(es) in '{field}'{where}: "
                "draw samples of at least two classes."
            )
        path, _, rest = layer.source().partition("|")
        name = rest.split("=", 1)[1].split("|")[0] if rest.startswith("layername=") else None
        return LabelsRequest(path, field, name, tuple(sorted(ignored)))
