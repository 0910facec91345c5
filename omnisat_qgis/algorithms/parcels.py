"""Parcel maps: each parcel of a parcel layer (LPIS) gets a class, its probability, the runner-up and
the share of valid pixels, as a new styled GeoPackage layer (engine operation classify-parcels)."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsProcessingException

from omnisat_qgis.algorithms.base import EngineAlgorithm
from omnisat_qgis.algorithms.mapping import (
    JOB_ROWS,
    MODALITY_SLOTS,
    add_modalities,
    check_sensors,
    deep_merge,
    job_folder,
    read_job_file,
    resolve_model_name,
)
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
        "gets no class and its status says why. The inputs of the features way are given as in 'Classify': "
        "a job file, or the model and each sensor's layers, with their cloud masks and the season."
    )
    params = (
        Param("PARCELS", "parcels", "vector", "Parcels", layer_key="layer"),
        Param("PROBABILITIES", "probabilities", "raster", "Class probabilities (from Classify)", optional=True),
        Param("CLASSES", "classes", "raster", "Class map of the same run (for its colours)", optional=True),
        *(row for row in JOB_ROWS if row.name not in ("BATCH_SIZE", "PATCH_SIZE", "TILE_SIZE", "OVERLAP")),
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
        Param(
            "WAY",
            "way",
            "enum",
            "How parcels are classified (features way)",
            default="features",
            options=("features", "pixels", "auto"),
            help="features: a classifier on per-parcel statistics; pixels: a classifier on the parcels' pixels, its "
            "probabilities averaged per parcel; auto: the one with the higher macro-F1 on held-out whole parcels "
            "(both scores in the log)",
        ),
        Param("OUTPUT", "output", "file_out", "Parcel map", file_filter="GeoPackage (*.gpkg)"),
    )
    results = (
        ResultRow("CLASSIFIED", "classified", "number", "Parcels classified"),
        ResultRow("PARCEL_COUNT", "parcels", "number", "Parcels"),
    )

    @staticmethod
    def gives_inputs(parameters) -> bool:
        return parameters.get("JOB") not in (None, "") or any(
            parameters.get(f"LAYERS_{i}") not in (None, "", []) for i in range(1, MODALITY_SLOTS + 1)
        )

    def way_error(self, parameters) -> str:
        """Why the parameters give no way, or two; empty when they give one."""
        if (parameters.get("PROBABILITIES") not in (None, "")) == self.gives_inputs(parameters):
            return (
                "Give exactly one of PROBABILITIES (a map's probabilities: the pixels way) and the inputs of the "
                "features way (JOB, or MODEL with each sensor's layers)."
            )
        return ""

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        if error := self.way_error(parameters):
            return False, error
        if self.gives_inputs(parameters):
            return check_sensors(self, self.model_as_file(parameters), context)
        return True, ""

    def engine_params(self, parameters, context, feedback) -> dict[str, Any]:
        if error := self.way_error(parameters):
            raise QgsProcessingException(error)
        engine = super().engine_params(parameters, context, feedback)
        job_file, slots, keys = engine.pop("job_file", None), engine.pop("slots", {}), engine.pop("job", {})
        if engine.get("probabilities"):
            engine.pop("way", None)
            return engine
        if not engine.get("class_field"):
            raise QgsProcessingException(
                "CLASS_FIELD: the features way fits a classifier on parcels of known class; choose the field holding it."
            )
        job = add_modalities(read_job_file(job_file) if job_file else {}, slots)
        deep_merge(job, keys)
        resolve_model_name(job)
        if not job.get("model") or not job.get("modalities"):
            raise QgsProcessingException(
                "The features way reads the inputs: give a job file (JOB), or MODEL and at least one sensor's layers."
            )
        # The job format asks for an output; classify-parcels writes only its GeoPackage.
        job["outputs"] = job.get("outputs") or {"embeddings": "unused-embeddings.tif"}
        return {**engine, "job": job}

    def working_folder(self, parameters, context):
        return job_folder(self, parameters, context)
