"""Parcel maps: each parcel of a parcel layer (LPIS) gets a class, its probability, the runner-up and
the share of valid pixels, as a new styled GeoPackage layer (engine operation classify-parcels)."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsProcessingException

from omnisat_qgis.algorithms.base import EngineAlgorithm
from omnisat_qgis.algorithms.mapping import job_folder, read_job_file
from omnisat_qgis.algorithms.params import Param, ResultRow


class ClassifyParcels(EngineAlgorithm):
    operation = "classify-parcels"
    display = "Classify parcels"
    group_name = "Mapping"
    help_text = (
        "Gives every parcel of a parcel layer (any projection; the layer is never changed) a class, its "
        "probability, the runner-up class and the share of its pixels that had a valid (cloud-free, mapped) "
        "value, written as a new GeoPackage layer styled in the class colours. Two ways: from a map's "
        "probabilities (the probabilities layer of 'Classify' or 'Apply a probe'; each parcel takes the mean "
        "of its pixels), or from a job file with a class field holding the known class of some parcels (a "
        "classifier is fitted on per-parcel statistics of the inputs, e.g. monthly cloud-free composites, "
        "scored on held-out whole parcels, and applied to every parcel). A parcel without any valid pixel "
        "gets no class and its status says why."
    )
    params = (
        Param("PARCELS", "parcels", "vector", "Parcels", layer_key="layer"),
        Param("PROBABILITIES", "probabilities", "raster", "Class probabilities (from Classify)", optional=True),
        Param("CLASSES", "classes", "raster", "Class map of the same run (for its colours)", optional=True),
        Param(
            "JOB",
            "job_file",
            "file",
            "Job file of the input rasters (features way)",
            optional=True,
            file_filter="Job (*.json)",
        ),
        Param(
            "CLASS_FIELD",
            "class_field",
            "field",
            "Field with the known class of some parcels (features way)",
            optional=True,
            parent="PARCELS",
        ),
        Param(
            "FEATURE_SET",
            "feature_set",
            "string",
            "Per-parcel features (features way)",
            default="monthly+stats",
            advanced=True,
            help="raw, stats, indices, monthly, combined with '+'",
        ),
        Param(
            "CLASSIFIER",
            "classifier",
            "enum",
            "Classifier (features way)",
            default="random_forest",
            options=("random_forest", "extra_trees", "linear", "knn", "mlp", "gradient_boosting"),
            advanced=True,
            help="the classifier fitted on the per-parcel features and scored on held-out whole parcels; "
            "unused when the parcels take the mean of a probability map",
        ),
        Param("OUTPUT", "output", "file_out", "Parcel map", file_filter="GeoPackage (*.gpkg)"),
    )
    results = (
        ResultRow("CLASSIFIED", "classified", "number", "Parcels classified"),
        ResultRow("PARCEL_COUNT", "parcels", "number", "Parcels"),
    )
    exactly_one_of = (("PROBABILITIES", "JOB"),)

    def engine_params(self, parameters, context, feedback) -> dict[str, Any]:
        engine = super().engine_params(parameters, context, feedback)
        job_file = engine.pop("job_file", None)
        if job_file:
            if not engine.get("class_field"):
                raise QgsProcessingException(
                    "CLASS_FIELD: the features way fits a classifier on parcels of known "
                    "class; choose the field holding it."
                )
            engine["job"] = read_job_file(job_file)
        return engine

    def working_folder(self, parameters, context):
        return job_folder(self, parameters, context)
