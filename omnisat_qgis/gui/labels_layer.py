"""The analyst's labels: a GeoPackage of points or polygons with a class field, styled by class.

The dock's class list (name + colour) drives the layer's categories and the
attribute form's value map, so a new sample is one click per vertex and a
choice in a drop-down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsEditorWidgetSetup,
    QgsField,
    QgsFields,
    QgsRendererCategory,
    QgsSymbol,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QMetaType
from qgis.PyQt.QtGui import QColor

DEFAULT_FIELD = "class"
GEOMETRIES = {"points": QgsWkbTypes.Type.Point, "polygons": QgsWkbTypes.Type.Polygon}
PALETTE = ("#1b7837", "#a6d96a", "#fdae61", "#d73027", "#4575b4", "#999999", "#762a83", "#f1b6da")


class LabelsError(Exception):
    pass


@dataclass(frozen=True)
class LabelClass:
    name: str
    color: str  # #rrggbb


# Colours analysts expect for common land-cover names (matched by a word of the class name).
USUAL_COLORS = {
    "forest": "#1b7837",
    "tree": "#1b7837",
    "wood": "#1b7837",
    "grass": "#a6d96a",
    "meadow": "#a6d96a",
    "shrub": "#8c6d31",
    "crop": "#fdae61",
    "cultivated": "#fdae61",
    "farm": "#fdae61",
    "artificial": "#d73027",
    "urban": "#d73027",
    "built": "#d73027",
    "water": "#4575b4",
    "bare": "#bababa",
    "wetland": "#762a83",
    "background": "#7f7f7f",
}
# Everything that is none of the analyst's classes (roads, buildings, water, other crops): without it the
# probe must put every such pixel in one of the classes, and a crop class spreads over the map.
BACKGROUND = "background (other)"


def default_color(index: int, name: str = "") -> str:
    """The usual colour of a land-cover name (forest green, water blue, ...), else the palette's ``index``-th."""
    for word, color in USUAL_COLORS.items():
        if word in name.lower():
            return color
    return PALETTE[index % len(PALETTE)]


def create_labels_layer(
    path: Path, geometry: str, crs: QgsCoordinateReferenceSystem, field: str = DEFAULT_FIELD
) -> QgsVectorLayer:
    """A new, empty GeoPackage layer with a text class field; refuses to overwrite a file."""
    if path.exists():
        raise LabelsError(f"'{path}' already exists: choose a new file name for the labels.")
    fields = QgsFields()
    fields.append(QgsField(field, QMetaType.Type.QString))
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = path.stem
    writer = QgsVectorFileWriter.create(
        str(path), fields, GEOMETRIES[geometry], crs, QgsCoordinateTransformContext(), options
    )
    if writer.hasError() != QgsVectorFileWriter.WriterError.NoError:
        raise LabelsError(f"Could not create '{path}': {writer.errorMessage()}")
    del writer  # closes the file
    layer = QgsVectorLayer(f"{path}|layername={path.stem}", path.stem, "ogr")
    if not layer.isValid():
        raise LabelsError(f"'{path}' was created but cannot be opened as a layer.")
    return layer


def style_labels(layer: QgsVectorLayer, field: str, classes: list[LabelClass]) -> None:
    """One colour per class (categorized renderer) and a drop-down of the classes in the form."""
    categories = []
    for item in classes:
        symbol = QgsSymbol.defaultSymbol(layer.geometryType())
        color = QColor(item.color)
        if layer.geometryType() == QgsWkbTypes.GeometryType.PolygonGeometry:
            color.setAlpha(110)
        symbol.setColor(color)
        categories.append(QgsRendererCategory(item.name, symbol, item.name))
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, categories))
    index = layer.fields().indexOf(field)
    if index >= 0:
        layer.setEditorWidgetSetup(
            index, QgsEditorWidgetSetup("ValueMap", {"map": [{item.name: item.name} for item in classes]})
        )
    layer.triggerRepaint()


def class_values(layer: QgsVectorLayer, field: str) -> list[str]:
    """The distinct non-empty values of ``field``, as text, in first-seen order."""
    index = layer.fields().indexOf(field)
    if index < 0:
        return []
    seen: dict[str, None] = {}
    for feature in layer.getFeatures():
        value = feature.attribute(index)
        if value not in (None, "") and not (hasattr(value, "isNull") and value.isNull()):
            seen.setdefault(str(value), None)
    return list(seen)


def rename_class_values(layer: QgsVectorLayer, field: str, old: str, new: str) -> int:
    """Write ``new`` in ``field`` of every feature whose value is ``old``; the number of features changed.

    One undoable edit command; a layer that was not being edited is saved at once, so the
    worker (which reads the file) sees the new names.
    """
    index = layer.fields().indexOf(field)
    if index < 0:
        raise LabelsError(f"The labels layer '{layer.name()}' has no field '{field}'.")
    ids = [f.id() for f in layer.getFeatures() if str(f.attribute(index)) == old]
    if not ids:
        return 0
    editing = layer.isEditable()
    if not editing and not layer.startEditing():
        raise LabelsError(f"The labels layer '{layer.name()}' cannot be edited: class '{old}' was not renamed.")
    layer.beginEditCommand(f"Rename class '{old}' to '{new}'")
    for fid in ids:
        layer.changeAttributeValue(fid, index, new)
    layer.endEditCommand()
    if not editing and not layer.commitChanges():
        raise LabelsError(f"The renamed classes of '{layer.name()}' could not be saved: {layer.commitErrors()}")
    return len(ids)
