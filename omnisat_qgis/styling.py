"""Renderers for the engine's outputs, and QGIS default styles written beside them.

One function per output kind (``STYLERS``): class maps get a paletted renderer with
exactly the classes the raster records (names and colours from its band metadata
and colour table, no 0..255 entries), confidence a grey ramp 0..1, change
magnitude a diverging ramp, embeddings a false-colour RGB of their first three
principal components (a 3-band preview raster beside them, see
omnisat_qgis.embedding_preview). ``NAME.qml`` beside ``NAME.tif`` keeps the style
for layers opened later, from the GUI or after qgis_process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from qgis.core import (
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandGrayRenderer,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
)
from qgis.PyQt.QtGui import QColor

CLASS_NAMES_TAG = "CLASS_NAMES"


def class_table(layer: QgsRasterLayer) -> list[tuple[int, str, QColor]]:
    """(value, name, colour) of each class the raster records in band 1's metadata."""
    from osgeo import gdal  # QGIS's own GDAL: a layer's band metadata is not exposed by the provider

    dataset = gdal.OpenEx(layer.source().split("|")[0], gdal.OF_RASTER | gdal.OF_READONLY)
    if dataset is None:
        return []
    band = dataset.GetRasterBand(1)
    tags = band.GetMetadata() or {}
    if tags.get(CLASS_NAMES_TAG):
        names = dict(enumerate(json.loads(tags[CLASS_NAMES_TAG])))
    else:
        names = {int(key[6:]): value for key, value in tags.items() if key.startswith("CLASS_") and key[6:].isdigit()}
    table = band.GetColorTable()
    rows = []
    for value, name in sorted(names.items()):
        entry = table.GetColorEntry(value) if table is not None and value < table.GetCount() else None
        rows.append((value, name, QColor(*entry[:3]) if entry else QColor.fromHsv((value * 67) % 360, 170, 220)))
    return rows


def style_classes(layer: QgsRasterLayer, colors: dict[str, str] | None = None) -> bool:
    """Paletted renderer of the recorded classes; ``colors`` (class name -> #rrggbb) overrides the raster's."""
    colors = colors or {}
    classes = [
        QgsPalettedRasterRenderer.Class(value, QColor(colors[name]) if name in colors else color, name)
        for value, name, color in class_table(layer)
    ]
    if not classes:
        return False
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    return True


def _gray(layer: QgsRasterLayer, minimum: float, maximum: float) -> None:
    renderer = QgsSingleBandGrayRenderer(layer.dataProvider(), 1)
    contrast = QgsContrastEnhancement(layer.dataProvider().dataType(1))
    contrast.setContrastEnhancementAlgorithm(
        QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum
    )
    contrast.setMinimumValue(minimum)
    contrast.setMaximumValue(maximum)
    renderer.setContrastEnhancement(contrast)
    layer.setRenderer(renderer)


def style_confidence(layer: QgsRasterLayer) -> bool:
    """Probabilities: black = 0, white = 1, the same scale on every map."""
    _gray(layer, 0.0, 1.0)
    return True


def style_magnitude(layer: QgsRasterLayer) -> bool:
    """Change magnitude on a diverging ramp centred on the layer's median."""
    stats = layer.dataProvider().bandStatistics(1)
    low, high = stats.minimumValue, stats.maximumValue
    if not high > low:
        high = low + 1.0
    ramp = QgsStyle.defaultStyle().colorRamp("RdBu")
    ramp.invert()  # red = much change
    shader_function = QgsColorRampShader(low, high, ramp)
    shader_function.classifyColorRamp(9)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(shader_function)
    layer.setRenderer(QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader))
    return True


def style_rgb(layer: QgsRasterLayer) -> bool:
    """Three bands as red, green, blue, each stretched over its 2-98 % range."""
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 1, 2, 3)
    for band, setter in (
        (1, renderer.setRedContrastEnhancement),
        (2, renderer.setGreenContrastEnhancement),
        (3, renderer.setBlueContrastEnhancement),
    ):
        low, high = layer.dataProvider().cumulativeCut(band, 0.02, 0.98)
        contrast = QgsContrastEnhancement(layer.dataProvider().dataType(band))
        contrast.setContrastEnhancementAlgorithm(
            QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum
        )
        contrast.setMinimumValue(low)
        contrast.setMaximumValue(high if high > low else low + 1.0)
        setter(contrast)
    layer.setRenderer(renderer)
    return True


STYLERS: dict[str, Callable[[QgsRasterLayer], bool]] = {
    "classes": style_classes,
    "confidence": style_confidence,
    "magnitude": style_magnitude,
    "rgb": style_rgb,
}


def style_layer(layer: QgsRasterLayer, kind: str) -> bool:
    """Apply the renderer of ``kind`` (a key of STYLERS); False when the raster gives nothing to style."""
    return layer.isValid() and STYLERS[kind](layer)


def write_style(raster: str, kind: str) -> Path | None:
    """``NAME.qml`` beside the raster with the renderer of ``kind``; None if the raster is unreadable."""
    layer = QgsRasterLayer(raster, Path(raster).stem, "gdal")
    if not style_layer(layer, kind):
        return None
    style = Path(raster).with_suffix(".qml")
    message, ok = layer.saveNamedStyle(str(style))
    return style if ok else None
