"""Styles for the engine's outputs, written as QGIS default styles beside them.

QGIS loads ``NAME.qml`` beside ``NAME.tif`` as the layer's default style, so a
class map opens with its legend (class names and colours) in QGIS whether it
was made in the GUI or by qgis_process.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsPalettedRasterRenderer, QgsRasterLayer


def write_class_style(raster: str, class_names: list[str]) -> Path | None:
    """A paletted style with the raster's colour table and the class names; None if unreadable."""
    layer = QgsRasterLayer(raster, Path(raster).stem, "gdal")
    if not layer.isValid():
        return None
    colors = {int(item.value): item.color for item in layer.dataProvider().colorTable(1)}
    classes = [
        QgsPalettedRasterRenderer.Class(value, colors[value], name)
        for value, name in enumerate(class_names) if value in colors
    ]
    if not classes:
        return None
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    style = Path(raster).with_suffix(".qml")
    message, ok = layer.saveNamedStyle(str(style))
    return style if ok else None
