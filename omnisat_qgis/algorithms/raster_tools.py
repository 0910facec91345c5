"""Raster tools that run in the engine: a normalized difference index."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterBand,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from omnisat_qgis.algorithms.base import EngineAlgorithm


class NormalizedIndex(EngineAlgorithm):
    operation = "normalized-index"
    display = "Normalized difference index"
    group_name = "Raster tools"
    help_text = (
        "Computes (A - B) / (A + B) from two bands of a raster (e.g. NDVI with A = near infrared, "
        "B = red) in the OmniSat engine worker. The output is a float32 GeoTIFF with the input's "
        "CRS, transform and nodata; pixels where a band is nodata, or where A + B = 0, are nodata."
    )
    output_map = {"OUTPUT": "output"}

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Input raster"))
        self.addParameter(QgsProcessingParameterBand("BAND_A", "Band A (e.g. near infrared)", 4, "INPUT"))
        self.addParameter(QgsProcessingParameterBand("BAND_B", "Band B (e.g. red)", 3, "INPUT"))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Normalized index"))

    def engine_params(self, parameters, context, feedback):
        return {
            "input": self.raster_path(parameters, "INPUT", context),
            "output": self.parameterAsOutputLayer(parameters, "OUTPUT", context),
            "band_a": self.parameterAsInt(parameters, "BAND_A", context),
            "band_b": self.parameterAsInt(parameters, "BAND_B", context),
        }
