"""Few labels to a map: fit a probe on the engine's embeddings, apply it, detect change."""

from __future__ import annotations

import json
from pathlib import Path

from qgis.core import QgsProcessingException

from omnisat_qgis.algorithms.base import EngineAlgorithm
from omnisat_qgis.algorithms.mapping import (
    EMBEDDING_LEVELS,
    add_modalities,
    check_sensors,
    job_folder,
    modality_rows,
    read_job_file,
    resolve_model_name,
)
from omnisat_qgis.algorithms.params import Param, ResultRow, model_rows
from omnisat_qgis.model_catalog import CatalogError, read_header

EMBEDDING_ROWS = (
    Param("EMBEDDINGS_RASTER", "embeddings", "raster", "Embeddings raster (from 'Embeddings')", optional=True),
    Param(
        "JOB",
        "embeddings",
        "file",
        "…or a job file (model and modalities) to compute them",
        optional=True,
        file_filter="Job (*.json)",
        advanced=True,
    ),
    *model_rows(
        "model",
        "…or the model file the embeddings were computed with",
        "the model that computed the embeddings raster, when the raster does not say (rasters made by 'Embeddings' do)",
    ),
    Param(
        "EMBEDDINGS_LEVEL",
        "embeddings_level",
        "enum",
        "Embedding level (auto: the job's, or the raster's own; dense: per sub-patch; tile: per window)",
        default="auto",
        options=("auto",) + EMBEDDING_LEVELS,
        advanced=True,
    ),
)


class FitProbe(EngineAlgorithm):
    operation = "fit-probe"
    display = "Fit a probe on labels (few labels to a map)"
    group_name = "Few labels"
    help_text = (
        "Learns your classes from a few labelled points or polygons: pick the labels layer and the field "
        "holding each feature's class (a number or a name), and the embeddings made by 'Embeddings'. "
        "The probe is checked on whole polygons (or blocks of points) kept aside, so the accuracy it "
        "reports is not inflated by neighbouring pixels; you get the probe file, an HTML report with "
        "the confusion matrix and, if you ask, the class map of the area."
    )
    params = (
        Param("LABELS", "labels", "vector", "Labelled points or polygons", layer_key="layer"),
        Param("CLASS_FIELD", "class_field", "field", "Class field", default="class", parent="LABELS"),
        Param(
            "IGNORE_VALUES",
            "ignore_values",
            "texts",
            "Class values to ignore (comma-separated, e.g. 0)",
            optional=True,
            help="features with these classes are left out, e.g. 0 = no data",
        ),
        *EMBEDDING_ROWS,
        Param(
            "CLASSIFIER",
            "classifier",
            "enum",
            "Classifier (auto: the best, or a vote of the best, by nested spatial cross-validation)",
            default="linear",
            options=("linear", "mlp", "knn", "random_forest", "extra_trees", "gradient_boosting", "auto"),
        ),
        Param(
            "FEATURES",
            "features",
            "texts",
            "Feature sets, comma-separated (embeddings, raw, stats, indices, or e.g. embeddings+raw; input "
            "features need a job)",
            default="embeddings",
            advanced=True,
        ),
        Param(
            "MIN_COVERAGE",
            "min_coverage",
            "float",
            "Minimum share of a cell a polygon covers",
            default=0.5,
            minimum=0,
            advanced=True,
        ),
        Param("FOLDS", "folds", "int", "Spatial cross-validation folds", default=5, minimum=2, advanced=True),
        # Off as in the dock: the curve refits the probe for every sample size (most of a re-fit's time).
        Param(
            "LEARNING_CURVE",
            "learning_curve",
            "bool",
            "Learning curve in the report (accuracy vs labels per class)",
            default=False,
            advanced=True,
            help="refits the probe for each sample size (slower): turn it on to see whether more labels would help",
        ),
        Param("SEED", "seed", "int", "Random seed", default=0, advanced=True),
        Param("OUTPUT", "output", "file_out", "Probe", file_filter="Probe (*.safetensors)"),
        # Written by default, as the dock does: the accuracy and the map are what a fit is run for.
        Param(
            "REPORT",
            "report",
            "file_out",
            "Fit report",
            file_filter="HTML (*.html)",
            optional=True,
            create_by_default=True,
        ),
        Param("CLASSES", "classes", "raster_out", "Class map", optional=True, style="classes", create_by_default=True),
        Param("CONFIDENCE", "confidence", "raster_out", "Confidence", optional=True, style="confidence"),
    )

    results = (
        ResultRow("OVERALL_ACCURACY", "overall_accuracy", "number", "Validation overall accuracy"),
        ResultRow("MACRO_F1", "macro_f1", "number", "Validation macro-F1"),
        ResultRow("CLASS_NAMES", "class_names", "string", "Class names"),
    )
    exactly_one_of = (("EMBEDDINGS_RASTER", "JOB"),)


def probe_level(path: str) -> str:
    """The embedding level a probe file was fitted at, from its header."""
    try:
        header = read_header(Path(path))
        return json.loads(header.get("probe") or "{}")["level"]
    except (CatalogError, ValueError, KeyError, TypeError):
        raise QgsProcessingException(
            f"PROBE: '{path}' is not a probe file: fit one with 'Fit a probe on labels'."
        ) from None


class ApplyProbe(EngineAlgorithm):
    operation = "apply-probe"
    display = "Apply a probe (class map)"
    group_name = "Few labels"
    help_text = (
        "Maps your classes with a probe fitted by 'Fit a probe on labels'. Give either your layers directly "
        "(the model the probe was fitted with, and each sensor's layers: the model and the probe run together, "
        "in one pass, without writing the embeddings), or an embeddings raster made by 'Embeddings', or a job "
        "file. A probe fitted on another model's embeddings is refused."
    )
    params = (
        Param("PROBE", "probe", "file", "Probe", file_filter="Probe (*.safetensors)"),
        Param(
            "EMBEDDINGS_RASTER",
            "embeddings",
            "raster",
            "Embeddings raster (from 'Embeddings'), or give your layers below",
            optional=True,
        ),
        Param(
            "JOB",
            "embeddings",
            "file",
            "…or a job file (model and modalities) to compute them",
            optional=True,
            file_filter="Job (*.json)",
            advanced=True,
        ),
        *model_rows(
            "model",
            "…or the model file (the probe's encoder)",
            "the model the probe was fitted with: it computes the embeddings of your layers (or made the "
            "embeddings raster, when the raster does not say)",
        ),
        *modality_rows(),
        Param("EXTENT", "extent", "extent", "Area to map (default: where all your layers overlap)", optional=True),
        Param(
            "EMBEDDINGS_LEVEL",
            "embeddings_level",
            "enum",
            "Embedding level (auto: the job's, or the raster's own; dense: per sub-patch; tile: per window)",
            default="auto",
            options=("auto",) + EMBEDDING_LEVELS,
            advanced=True,
        ),
        Param("CLASSES", "classes", "raster_out", "Class map", style="classes"),
        Param("CONFIDENCE", "confidence", "raster_out", "Confidence", optional=True, style="confidence"),
        Param(
            "PROBABILITIES",
            "probabilities",
            "raster_out",
            "Class probabilities (one band per class; for Classify parcels)",
            optional=True,
        ),
    )

    SOURCES = ("EMBEDDINGS_RASTER", "JOB", "LAYERS_1")

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        given = [n for n in self.SOURCES if parameters.get(n) not in (None, "", [])]
        if len(given) != 1:
            return False, (
                "Give one of EMBEDDINGS_RASTER (an embeddings raster), JOB (a job file) or your layers "
                f"(MODEL, MODALITY_1, LAYERS_1...){'; got ' + ', '.join(given) if given else ''}."
            )
        return check_sensors(self, self.model_as_file(parameters), context)

    def engine_params(self, parameters, context, feedback):
        engine = super().engine_params(parameters, context, feedback)
        slots, extent = engine.pop("slots", {}), engine.pop("extent", None)
        if parameters.get("LAYERS_1") not in (None, "", []):
            # The layers themselves: a job whose model embeds and whose probe classifies, in one pass.
            model = engine.pop("model", None)
            if not model:
                raise QgsProcessingException("MODEL: choose the model the probe was fitted with.")
            job = add_modalities({"model": model}, slots)
            if extent:
                job["extent"] = extent
            level = engine.get("embeddings_level", "auto")
            job["outputs"] = {"embeddings_level": probe_level(engine["probe"]) if level == "auto" else level}
        elif parameters.get("JOB") not in (None, ""):
            # A job computes the embeddings tile by tile and writes the map itself.
            job = resolve_model_name(read_job_file(engine["embeddings"]))
            job["outputs"] = {k: v for k, v in job.get("outputs", {}).items() if k == "embeddings_level"}
        else:
            if engine.pop("probabilities", None):
                raise QgsProcessingException(
                    "PROBABILITIES: the probabilities are written when the probe runs with the model (a job file "
                    "or your layers), not from an embeddings raster: give JOB or the layers, or leave it empty."
                )
            return engine
        # the files chosen here become the job's outputs
        job["outputs"] |= {
            key: engine.pop(key) for key in ("classes", "confidence", "probabilities") if engine.get(key)
        }
        engine.pop("probabilities", None)
        return engine | {"embeddings": job}

    def working_folder(self, parameters, context):
        return job_folder(self, parameters, context)


class Change(EngineAlgorithm):
    operation = "change"
    display = "Change between two periods"
    group_name = "Change"
    help_text = (
        "Compares the engine's per-patch embeddings of two periods (two embeddings rasters on the same "
        "grid, or two job files) and writes a change magnitude and a binary change layer (Otsu's "
        "threshold unless given); with labelled change / no-change samples it fits a change probe. Read it with "
        "care: the change follows the model's patches (and windows), not field edges, and Otsu's threshold always "
        "splits the magnitudes in two, so it reports some change even between two unchanged years; look at the "
        "magnitude, or give a threshold or samples."
    )
    params = (
        Param("BEFORE_RASTER", "before", "raster", "First period: embeddings raster", optional=True),
        Param("BEFORE_JOB", "before", "file", "…or first period: job file", optional=True, file_filter="Job (*.json)"),
        Param("AFTER_RASTER", "after", "raster", "Second period: embeddings raster", optional=True),
        Param("AFTER_JOB", "after", "file", "…or second period: job file", optional=True, file_filter="Job (*.json)"),
        *model_rows(
            "model",
            "…or the model file the embeddings rasters were computed with",
            "the model that computed the embeddings rasters, when they do not say",
        ),
        Param(
            "EMBEDDINGS_LEVEL",
            "embeddings_level",
            "enum",
            "Embedding level of both periods (auto: the jobs', or the rasters' own)",
            default="auto",
            options=("auto",) + EMBEDDING_LEVELS,
            advanced=True,
        ),
        Param("METRIC", "metric", "enum", "Distance", default="cosine", options=("cosine", "euclidean")),
        Param("THRESHOLD", "threshold", "float", "Threshold (default: Otsu's)", optional=True),
        Param("LABELS", "labels", "vector", "Change / no-change samples (optional)", optional=True),
        Param(
            "CLASS_FIELD",
            "class_field",
            "field",
            "Class field of the samples",
            default="class",
            parent="LABELS",
            optional=True,
        ),
        Param("MAGNITUDE", "magnitude", "raster_out", "Change magnitude", style="magnitude"),
        Param("CHANGE", "change", "raster_out", "Change (1) / no change (0)", optional=True, style="classes"),
        Param(
            "PROBE_OUTPUT",
            "probe_output",
            "file_out",
            "Change probe",
            file_filter="Probe (*.safetensors)",
            optional=True,
        ),
        Param("REPORT", "report", "file_out", "Change probe report", file_filter="HTML (*.html)", optional=True),
    )

    results = (
        ResultRow("THRESHOLD_USED", "threshold", "number", "Threshold used"),
        ResultRow("METHOD", "threshold_method", "string", "How the change layer was decided"),
    )
    exactly_one_of = (("BEFORE_RASTER", "BEFORE_JOB"), ("AFTER_RASTER", "AFTER_JOB"))
