"""The output resolution of a map, for models whose output grid is chosen per run (UniverSat).

Metres per output cell, down to the finest input's pixel size; empty (the default) is the finest
ticked input's pixel size, what an analyst expects of a map. Hidden for the other models, whose
maps lie on their patch or sub-patch grid. Checked before a run with the engine's rules
(omnisat_qgis.other_sensor.resolution_problem).
"""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsDistanceArea,
    QgsGeometry,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QWidget

from omnisat_qgis.gui.modality_row import InputError
from omnisat_qgis.gui.session import Advanced, Extent
from omnisat_qgis.model_catalog import ModelInfo
from omnisat_qgis.other_sensor import resolution_problem


def finest_pixel(layers: list[QgsRasterLayer]) -> float | None:
    """The finest pixel size in metres of ``layers`` (projected ones; None when there is none)."""
    sizes = [layer.rasterUnitsPerPixelX() for layer in layers if not layer.crs().isGeographic()]
    return min(sizes) if sizes else None


# Most bytes the preview's per-cell features may take in the dock's cache (float32, 2 x the model's width a cell).
PREVIEW_BYTES = 2e9


def area_m2(extent: Extent) -> float:
    """The extent's area on the ellipsoid (any CRS, degrees included)."""
    crs = QgsCoordinateReferenceSystem(extent.crs)
    measure = QgsDistanceArea()
    measure.setSourceCrs(crs, QgsProject.instance().transformContext())
    measure.setEllipsoid(crs.ellipsoidAcronym() or "EPSG:7030")
    return measure.measureArea(QgsGeometry.fromRect(QgsRectangle(*extent.bounds)))


def preview_problem(model: ModelInfo, extent: Extent, advanced: Advanced, layers: list[QgsRasterLayer]) -> str:
    """Why the per-cell features of the preview area are too large to cache; "" when they fit."""
    if advanced.level != "dense" or not model.embed_dim:
        return ""
    resolution = advanced.resolution_m or finest_pixel(layers) or model.patch_size_m
    area = area_m2(extent)
    size = area / resolution**2 * 2 * model.embed_dim * 4
    if size <= PREVIEW_BYTES:
        return ""
    return (
        f"At {resolution:g} m, the features of the visible area ({area / 1e6:,.1f} km², one vector of "
        f"{2 * model.embed_dim} numbers per cell) would take {size / 1e9:,.1f} GB: zoom in to where your labels "
        "are (Fit and preview embeds the visible area), or choose a coarser output resolution. Map the whole "
        "area afterwards: the map itself never stores these features."
    )


class ResolutionPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        line = QHBoxLayout(self)
        line.setContentsMargins(0, 0, 0, 0)
        self.spin = QDoubleSpinBox()
        self.spin.setRange(0.0, 100000.0)
        self.spin.setDecimals(2)
        self.spin.setSuffix(" m")
        self.spin.setSpecialValueText("finest input's pixel size")
        self.spin.setToolTip(
            "Metres per cell of the maps and of the features the probe reads (one vector per cell, from one pass "
            "of the model); it must divide the model's patch, and cannot be finer than the finest input's pixels"
        )
        line.addWidget(QLabel("Output resolution"))
        line.addWidget(self.spin, 1)
        self.setVisible(False)

    def set_model(self, info: ModelInfo) -> None:
        self.setVisible(info.reads_wavelengths)

    def value(self, model: ModelInfo, layers: list[QgsRasterLayer]) -> float | None:
        """The job's "resolution" for ``model`` on ``layers`` (None: the finest input's); InputError when the
        engine would refuse it."""
        if not model.reads_wavelengths or not self.spin.value():
            return None
        if problem := resolution_problem(
            self.spin.value(), finest_pixel(layers), model.patch_size_m, model.architecture
        ):
            raise InputError(problem)
        return self.spin.value()
