"""Raster tools that run in the engine: a normalized difference index."""

from __future__ import annotations

from omnisat_qgis.algorithms.base import EngineAlgorithm
from omnisat_qgis.algorithms.params import Param


class NormalizedIndex(EngineAlgorithm):
    operation = "normalized-index"
    display = "Normalized difference index"
    group_name = "Raster tools"
    help_text = (
        "Computes (A - B) / (A + B) from two bands of a raster (e.g. NDVI with A = near infrared, "
        "B = red) in the OmniSat engine worker. The output is a float32 GeoTIFF on the input's grid "
        "(CRS, transform); pixels where a band is nodata, or where A + B = 0, are nodata."
    )
    params = (
        Param("INPUT", "input", "raster", "Input raster"),
        Param("BAND_A", "band_a", "band", "Band A (e.g. near infrared)", default=4, parent="INPUT"),
        Param("BAND_B", "band_b", "band", "Band B (e.g. red)", default=3, parent="INPUT"),
        Param("OUTPUT", "output", "raster_out", "Normalized index"),
    )
