"""Mapping algorithms driven by the engine's job format (engine/io/job.py): classify, embed,
normalization statistics. Each parameter maps onto one job key; a job file can carry the
rest (masks, band selections, normalization), and the parameters given here override it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qgis.core import QgsProcessingException

from omnisat_qgis.algorithms.base import EngineAlgorithm
from omnisat_qgis.algorithms.params import Param, ResultRow

MODALITY_SLOTS = 3
# The engine's levels (engine.mapping.levels.LEVEL_NAMES; tests/plugin/test_levels_enum.py compares), as static
# strings: QGIS never imports the engine.
EMBEDDING_LEVELS = ("patch", "local", "both", "dense", "tile")
JOB_HELP = (
    "Runs the OmniSat engine over an area: pick the model checkpoint, then up to three modalities, "
    "each with the model's modality name (e.g. aerial, s2, s1), its layers (one image, or one layer "
    "per date; dates are read from file names or metadata, or typed as YYYY-MM-DD, comma-separated). "
    "A job file (JSON, see the README) can hold everything, including cloud masks and band "
    "selections; parameters given here override its keys. Relative paths in a job file are relative "
    "to its folder."
)


def modality_rows() -> tuple[Param, ...]:
    rows = []
    for i in range(1, MODALITY_SLOTS + 1):
        rows += [
            Param(f"MODALITY_{i}", f"slots.{i}.name", "string", f"Modality {i}: name in the model (e.g. s2)", optional=True),
            Param(f"LAYERS_{i}", f"slots.{i}.files", "rasters", f"Modality {i}: layers (one per date for a series)",
                  optional=True),
            Param(f"DATES_{i}", f"slots.{i}.dates", "dates", f"Modality {i}: dates (YYYY-MM-DD, comma-separated; "
                  "default: read from the files)", optional=True),
        ]
    return tuple(rows)


JOB_ROWS = (
    Param("JOB", "job_file", "file", "Job file (JSON; optional)", optional=True, file_filter="Job (*.json)"),
    Param("MODEL", "job.model", "file", "Model checkpoint", optional=True,
          file_filter="Checkpoint (*.safetensors)"),
    *modality_rows(),
    Param("EXTENT", "job.extent", "extent", "Area to map (default: where all inputs overlap)", optional=True),
    Param("PATCH_SIZE", "job.patch_size", "float", "Patch size in metres (default: the model's)", optional=True),
    Param("TILE_SIZE", "job.tile_size", "float", "Window size in metres (default: the model's)", optional=True),
    Param("OVERLAP", "job.overlap", "float", "Window overlap in metres (default: 1/6 of a window)", optional=True),
    Param("BATCH_SIZE", "job.batch_size", "int", "Windows per model call", default=4, minimum=1),
    Param("DEVICE", "job.device", "enum", "Device", default="auto", options=("auto", "cpu", "cuda")),
    Param("PRECISION", "job.precision", "enum", "Precision", default="auto", options=("auto", "fp32", "bf16")),
)


def read_job_file(job_file: str, name: str = "JOB") -> dict[str, Any]:
    try:
        job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise QgsProcessingException(f"{name}: the job file '{job_file}' could not be read as JSON ({exc}).") from None
    if not isinstance(job, dict):
        raise QgsProcessingException(f"{name}: the job file '{job_file}' must hold one JSON object.")
    return job


def job_folder(algorithm, parameters, context, name: str = "JOB") -> str | None:
    """Relative paths in a job file resolve against its folder: the worker runs there."""
    job_file = algorithm.parameterAsFile(parameters, name, context)
    return str(Path(job_file).parent) if job_file else None


def deep_merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


class JobAlgorithm(EngineAlgorithm):
    group_name = "Mapping"
    help_text = JOB_HELP

    def engine_params(self, parameters, context, feedback) -> dict[str, Any]:
        engine = super().engine_params(parameters, context, feedback)
        job_file = engine.pop("job_file", None)
        job: dict[str, Any] = read_job_file(job_file) if job_file else {}
        for index, slot in sorted(engine.pop("slots", {}).items()):
            name, files = slot.get("name"), slot.get("files")
            if not name and not files:
                continue
            if not name:
                raise QgsProcessingException(
                    f"MODALITY_{index}: name the modality of the layers in LAYERS_{index} as the model calls it (e.g. s2).")
            if not files:
                raise QgsProcessingException(f"LAYERS_{index}: give the layers of modality '{name}'.")
            entry: dict[str, Any] = {"files": files}
            if slot.get("dates"):
                entry["dates"] = slot["dates"]
            job.setdefault("modalities", {})[name] = entry
        deep_merge(job, engine.pop("job", {}))
        if not job.get("model"):
            raise QgsProcessingException("MODEL: choose a model checkpoint (.safetensors), or give a job file naming one.")
        if not job.get("modalities"):
            raise QgsProcessingException("Give at least one modality (MODALITY_1 and LAYERS_1), or a job file.")
        return {"job": job, **engine}

    def working_folder(self, parameters, context):
        return job_folder(self, parameters, context)


class Classify(JobAlgorithm):
    operation = "classify"
    display = "Classify (land cover, crops)"
    params = JOB_ROWS + (
        Param("CLASSES", "job.outputs.classes", "raster_out", "Class map"),
        Param("CONFIDENCE", "job.outputs.confidence", "raster_out", "Confidence (probability of the chosen class)",
              optional=True),
        Param("PROBABILITIES", "job.outputs.probabilities", "raster_out", "Per-class probabilities", optional=True),
    )
    results = (ResultRow("CLASS_NAMES", "class_names", "string", "Class names"),)


class Embed(JobAlgorithm):
    operation = "embed"
    display = "Embeddings"
    params = JOB_ROWS + (
        Param("EMBEDDINGS_DTYPE", "job.outputs.embeddings_dtype", "enum", "Embedding type", default="float32",
              options=("float32", "float16")),
        Param("EMBEDDINGS_LEVEL", "job.outputs.embeddings_level", "enum",
              "Embedding level (patch: fused; local: each patch's own encoder features; both; dense: AnySat, "
              "per sub-patch; tile: one pixel per window, windows edge to edge)", default="patch",
              options=EMBEDDING_LEVELS),
        Param("EMBEDDINGS", "job.outputs.embeddings", "raster_out", "Embeddings (one band per dimension)"),
    )


class NormalizationStats(JobAlgorithm):
    operation = "normalization-stats"
    display = "Normalization statistics of my data"
    params = JOB_ROWS + (
        Param("OUTPUT", "output", "file_out", "Statistics (JSON, for the job's normalization)",
              file_filter="JSON (*.json)"),
    )
