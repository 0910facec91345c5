"""The Processing algorithms; the provider registers every class in ALGORITHMS."""

from omnisat_qgis.algorithms.raster_tools import NormalizedIndex

ALGORITHMS = [NormalizedIndex]
