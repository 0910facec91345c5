"""Areas with confidence intervals: a reference sample drawn from a class map, then the assessment or the area table."""

from __future__ import annotations

from omnisat_qgis.algorithms.base import EngineAlgorithm
from omnisat_qgis.algorithms.params import Param, ResultRow


class SampleMap(EngineAlgorithm):
    operation = "sample-map"
    display = "Draw a reference sample from a class map"
    group_name = "Areas"
    help_text = (
        "Draws a probability sample of points from a class map into a GeoPackage, for its accuracy assessment: "
        "stratified by map class (proportional, equal or Neyman allocation, with a minimum per class), simple "
        "random, or systematic (a regular grid with a random offset). The size is the number of points, or comes "
        "from a target standard error and the user's accuracy you expect of each class (Olofsson et al. 2014). "
        "The layer records its design and the map's checksum. Label it in the OmniSat dock's assessment panel "
        "(or fill the reference field), then run 'Assess a map's accuracy and areas'."
    )
    params = (
        Param("CLASSES", "classes", "raster", "Class map"),
        Param(
            "DESIGN",
            "design",
            "enum",
            "Sampling design",
            default="stratified",
            options=("stratified", "simple", "systematic"),
        ),
        Param(
            "TOTAL",
            "total",
            "int",
            "Number of points",
            default=500,
            minimum=1,
            help="used when no target standard error is given",
        ),
        Param(
            "ALLOCATION",
            "allocation",
            "enum",
            "Allocation to the classes (stratified)",
            default="proportional",
            options=("proportional", "equal", "neyman"),
        ),
        Param("MIN_PER_CLASS", "min_per_class", "int", "Minimum points per mapped class", default=50, minimum=0),
        Param(
            "TARGET_SE",
            "target_se",
            "float",
            "Target standard error (0..1; empty: use the number of points)",
            optional=True,
            minimum=0,
            help="of the overall accuracy, or of the target class's share of the map's area",
        ),
        Param("TARGET_CLASS", "target_class", "string", "Target class (empty: overall accuracy)", optional=True),
        Param(
            "EXPECTED_USERS_ACCURACY",
            "expected_users_accuracy",
            "texts",
            "Expected user's accuracy of each class, in class order (comma-separated)",
            optional=True,
            help="for the target standard error and for Neyman allocation, e.g. 0.9, 0.8, 0.7",
        ),
        Param(
            "MIN_DISTANCE",
            "min_distance",
            "float",
            "Minimum distance between points (map units)",
            default=0.0,
            minimum=0,
            advanced=True,
            help="random designs only: a candidate closer than this to a kept point is skipped; 0 keeps every draw",
        ),
        Param(
            "GRID_STEP",
            "grid_step",
            "float",
            "Systematic grid step (map units; empty: from the size)",
            optional=True,
            minimum=0,
            advanced=True,
            help="systematic design only: the distance between grid points; empty derives it from the number "
            "of points or the target standard error",
        ),
        Param(
            "REFERENCE_FIELD",
            "reference_field",
            "string",
            "Reference field to fill in",
            default="reference",
            advanced=True,
            help="the empty text field of the sample layer that the labelling panel fills in",
        ),
        Param("SEED", "seed", "int", "Random seed", default=0),
        Param(
            "DRY_RUN",
            "dry_run",
            "bool",
            "Only compute the number of points per class (write nothing)",
            default=False,
            advanced=True,
            help="shows the size per class a target standard error needs before anything is drawn",
        ),
        Param("OUTPUT", "output", "file_out", "Sample points", file_filter="GeoPackage (*.gpkg)"),
    )
    results = (
        ResultRow("SAMPLES", "samples", "number", "Points drawn (or planned)"),
        ResultRow("TARGET_SIZE", "target_size", "number", "Points the target needs"),
    )


class Assess(EngineAlgorithm):
    operation = "assess"
    display = "Assess a map's accuracy and areas"
    group_name = "Areas"
    help_text = (
        "From a class map and the sample drawn from it (Draw a reference sample) and labelled: the error matrix "
        "in points and in estimated area proportions, user's, producer's and overall accuracy with standard "
        "errors, and the area of every class with its 95% interval and coefficient of variation, by the estimator "
        "of the sample's design (stratified; simple random and systematic post-stratified by map class). "
        "Refuses a map that changed since the draw. The HTML report also gives the design and how many points "
        "are labelled."
    )
    params = (
        Param("CLASSES", "classes", "raster", "Class map"),
        Param(
            "SAMPLE",
            "sample",
            "file",
            "Labelled sample (GeoPackage from 'Draw a reference sample')",
            file_filter="GeoPackage (*.gpkg)",
        ),
        Param(
            "REFERENCE_FIELD",
            "reference_field",
            "string",
            "Field holding the reference class",
            default="reference",
            advanced=True,
            help="the field the labelling panel (or you) filled with the class seen in better imagery",
        ),
        Param("OUTPUT", "output", "file_out", "Area and accuracy table", file_filter="CSV (*.csv)"),
        Param("HTML", "html", "file_out", "Assessment report", file_filter="HTML (*.html)", optional=True),
    )
    results = (
        ResultRow("OVERALL_ACCURACY", "overall_accuracy", "number", "Overall accuracy"),
        ResultRow("LABELLED", "labelled", "number", "Labelled points"),
    )


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
