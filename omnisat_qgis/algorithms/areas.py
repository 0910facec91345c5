"""Areas with confidence intervals: a reference sample drawn from a class map, then the area table."""

from __future__ import annotations

from omnisat_qgis.algorithms.base import EngineAlgorithm
from omnisat_qgis.algorithms.params import Param, ResultRow


class SampleMap(EngineAlgorithm):
    operation = "sample-map"
    display = "Draw a reference sample from a class map"
    group_name = "Areas"
    help_text = (
        "Draws a stratified random sample of points from a class map (the map's classes are the strata: a "
        "minimum per class, the rest in proportion to the area) into a GeoPackage with an empty reference "
        "field. Fill it with the class seen on the ground or in imagery, then run 'Area estimates'."
    )
    params = (
        Param("CLASSES", "classes", "raster", "Class map"),
        Param("TOTAL", "total", "int", "Number of points", default=500, minimum=1),
        Param("MIN_PER_CLASS", "min_per_class", "int", "Minimum points per mapped class", default=50, minimum=0),
        Param("REFERENCE_FIELD", "reference_field", "string", "Reference field to fill in", default="reference"),
        Param("SEED", "seed", "int", "Random seed", default=0),
        Param("OUTPUT", "output", "file_out", "Sample points", file_filter="GeoPackage (*.gpkg)"),
    )
    results = (ResultRow("SAMPLES", "samples", "number", "Points drawn"),)


class AreaReport(EngineAlgorithm):
    operation = "area-report"
    display = "Area estimates with confidence intervals"
    group_name = "Areas"
    help_text = (
        "Estimates the area of every class from a class map and a labelled reference sample drawn in it "
        "(Olofsson et al. 2014 stratified estimator): area with its 95% interval, user's and producer's "
        "accuracy with standard errors, overall accuracy; as CSV and HTML."
    )
    params = (
        Param("CLASSES", "classes", "raster", "Class map"),
        Param("REFERENCE", "reference", "vector", "Reference sample points", layer_key="layer"),
        Param("REFERENCE_FIELD", "reference_field", "string", "Field holding the true class", default="reference"),
        Param("OUTPUT", "output", "file_out", "Area table", file_filter="CSV (*.csv)"),
        Param("HTML", "html", "file_out", "Area report", file_filter="HTML (*.html)", optional=True),
    )
    results = (ResultRow("OVERALL_ACCURACY", "overall_accuracy", "number", "Overall accuracy"),)
