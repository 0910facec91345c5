"""The output resolution of a map, for models whose output grid is chosen per run (UniverSat).

Metres per output cell, down to the finest input's pixel size; empty (the default) is the finest
ticked input's pixel size, what an analyst expects of a map. Hidden for the other models, whose
maps lie on their patch or sub-patch grid. Checked before a run with the engine's rules
(omnisat_qgis.other_sensor.resolution_problem).
"""

from __future__ import annotations

from qgis.core import QgsRasterLayer
from qgis.PyQt.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QWidget

from omnisat_qgis.gui.modality_row import InputError
from omnisat_qgis.model_catalog import ModelInfo
from omnisat_qgis.other_sensor import resolution_problem


def finest_pixel(layers: list[QgsRasterLayer]) -> float | None:
    """The finest pixel size in metres of ``layers`` (projected ones; None when there is none)."""
    sizes = [layer.rasterUnitsPerPixelX() for layer in layers if not layer.crs().isGeographic()]
    return min(sizes) if sizes else None


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
