"""Mapping algorithms driven by the engine's job format (engine/io/job.py): classify, embed,
normalization statistics. Each parameter maps onto one job key; a job file can carry the
rest (masks, band selections, normalization), and the parameters given here override it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qgis.core import QgsProcessingException

from omnisat_qgis.algorithms.base import EngineAlgorithm
from omnisat_qgis.algorithms.params import Param, ResultRow, model_path, model_rows
from omnisat_qgis.algorithms.universat_params import RESOLUTION_ROW, check_universat, describe_other, other_sensor_rows
from omnisat_qgis.contract import contract
from omnisat_qgis.model_catalog import HUMAN_LABELS, CatalogError, catalog_row, model_info, read_header

MODALITY_SLOTS = 3
# The engine's levels (engine.mapping.levels.LEVEL_NAMES; tests/plugin/test_levels_enum.py compares), as static
# strings: QGIS never imports the engine.
EMBEDDING_LEVELS = ("patch", "local", "both", "dense", "tile")
JOB_HELP = (
    "Runs an OmniSat model over your area. Choose the model: one of the list (the models shipped with the "
    "plugin, those you downloaded or trained with 'Learn this area'), or a model file. Then, for each sensor "
    "you have, the sensor's name in the model (for the shipped models: aerial = aerial image, s2 = "
    "Sentinel-2 time series, s1_asc = Sentinel-1 ascending time series; a wrong name is refused before "
    "anything runs, with the model's names) and its layers: one image, or one layer per date for a time "
    "series. Dates are read from the file names or metadata; type them (YYYY-MM-DD, comma-separated) "
    "when they are not. Layers in different projections or resolutions are aligned on the fly; your "
    "files are never changed. The OmniSat dock (Raster menu) fills all of this for you. A job file "
    "(JSON, see the README) can hold everything, including cloud masks and band selections; settings "
    "given here override it."
)


def modality_rows() -> tuple[Param, ...]:
    rows = []
    for i in range(1, MODALITY_SLOTS + 1):
        rows += [
            Param(
                f"MODALITY_{i}",
                f"slots.{i}.name",
                "sensor",
                f"Sensor {i} (one of the chosen model's)",
                optional=True,
                help="the sensors the model was trained with (s2 = Sentinel-2 time series, "
                "s1_asc = Sentinel-1 ascending, aerial = aerial image, ...); one the chosen model lacks is "
                "refused before anything runs, with the model's own list",
            ),
            Param(
                f"LAYERS_{i}",
                f"slots.{i}.files",
                "rasters",
                f"Sensor {i}: layers (one per date for a series)",
                optional=True,
            ),
            Param(
                f"DATES_{i}",
                f"slots.{i}.dates",
                "dates",
                f"Sensor {i}: dates (YYYY-MM-DD, comma-separated; default: read from the files)",
                optional=True,
            ),
            Param(
                f"MASKS_{i}",
                f"slots.{i}.masks",
                "rasters",
                f"Sensor {i}: cloud masks (one per date, e.g. the Sentinel-2 SCL layers)",
                optional=True,
                advanced=True,
                help="matched to the layers by the dates in their names, else by order",
            ),
            Param(
                f"MASK_TYPE_{i}",
                f"slots.{i}.mask_type",
                "enum",
                f"Sensor {i}: kind of cloud mask",
                default="scl",
                options=("scl", "binary", "valid", "probability"),
                advanced=True,
                help="scl: Sentinel-2 scene classification (no data, defective, shadow, clouds, cirrus masked); "
                "binary: non-zero is cloud; valid: non-zero is clear; probability: above 50 is cloud",
            ),
        ]
    return tuple(rows)


JOB_ROWS = (
    Param(
        "JOB", "job_file", "file", "Job file (JSON; optional)", optional=True, file_filter="Job (*.json)", advanced=True
    ),
    *model_rows("job.model"),
    *modality_rows(),
    *other_sensor_rows(MODALITY_SLOTS),
    Param(
        "SEASON",
        "job.season",
        "dates",
        "Season: first and last day (YYYY-MM-DD, YYYY-MM-DD; default: every date)",
        optional=True,
        help="only the dates of every time series within this range are used",
    ),
    Param("EXTENT", "job.extent", "extent", "Area to map (default: where all inputs overlap)", optional=True),
    RESOLUTION_ROW,
    Param(
        "PATCH_SIZE",
        "job.patch_size",
        "float",
        "Patch size in metres (default: the model's)",
        optional=True,
        advanced=True,
    ),
    Param(
        "TILE_SIZE",
        "job.tile_size",
        "float",
        "Window size in metres (default: the model's)",
        optional=True,
        advanced=True,
        help="lower it (and the batch size) when the engine runs out of memory",
    ),
    Param(
        "OVERLAP",
        "job.overlap",
        "float",
        "Window overlap in metres (default: 1/6 of a window)",
        optional=True,
        advanced=True,
    ),
    Param("BATCH_SIZE", "job.batch_size", "int", "Windows per model call", default=4, minimum=1, advanced=True),
    Param("DEVICE", "job.device", "enum", "Device", default="auto", options=contract.DEVICES, advanced=True),
    Param(
        "PRECISION",
        "job.precision",
        "enum",
        "Precision",
        default="auto",
        options=contract.PRECISIONS,
        advanced=True,
    ),
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


def add_modalities(job: dict[str, Any], slots: dict[str, dict]) -> dict[str, Any]:
    """The sensor rows (MODALITY_i, LAYERS_i, DATES_i) as the job's modalities."""
    for index, slot in sorted(slots.items()):
        name, files = slot.get("name"), slot.get("files")
        if not name and not files:
            continue
        if slot.get("wavelengths") and files:  # a sensor the model does not list (UniverSat)
            entry = {"files": files}
            name = describe_other(index, slot, entry)
            if slot.get("dates"):
                entry["dates"] = slot["dates"]
            job.setdefault("modalities", {})[name] = entry
            continue
        if not name:
            raise QgsProcessingException(
                f"MODALITY_{index}: name the modality of the layers in LAYERS_{index} as the model calls it (e.g. s2)."
            )
        if not files:
            raise QgsProcessingException(f"LAYERS_{index}: give the layers of modality '{name}'.")
        entry: dict[str, Any] = {"files": files}
        if slot.get("dates"):
            entry["dates"] = slot["dates"]
        if slot.get("masks"):
            entry["mask"] = {"files": slot["masks"], "type": slot.get("mask_type") or "scl"}
        job.setdefault("modalities", {})[name] = entry
    return job


def resolve_model_name(job: dict[str, Any]) -> dict[str, Any]:
    """A job file's model given by its catalog name becomes that model's file: a serving worker started
    before the models folder setting changed would look in the old folder."""
    name = job.get("model")
    if isinstance(name, str) and name and Path(name).name == name and not name.endswith(".safetensors"):
        row = catalog_row(name)
        if row is not None and row.get("status") == "installed" and row.get("path"):
            job["model"] = row["path"]
    return job


def model_sensors(algorithm, parameters, context) -> tuple[str, dict[str, str]] | None:
    """(model name, {sensor name: what an analyst reads}) of the chosen model, None when none is chosen;
    a probe file stands for the encoder it was fitted on. Raises CatalogError for an unreadable file."""
    chosen = algorithm.parameterAsEnumString(parameters, "MODEL", context) if "MODEL" in parameters else ""
    if chosen:
        row = catalog_row(chosen)
        if row is None:
            return None
        return chosen, {m: HUMAN_LABELS.get(m, m) for m in row.get("modalities", {})}
    path = algorithm.parameterAsFile(parameters, "MODEL_FILE", context)
    if not path:
        return None
    header = read_header(Path(path))
    if header.get("format") == contract.PROBE_FORMAT:
        encoder = json.loads(header.get("probe") or "{}").get("encoder", {})
        names = encoder.get("modalities")
        return (
            (f"{encoder.get('name', 'encoder')} (the probe's)", {m: HUMAN_LABELS.get(m, m) for m in names})
            if names
            else None
        )
    info = model_info(path)
    return info.name, {m.name: m.label for m in info.modalities}


def check_sensors(algorithm, parameters, context) -> tuple[bool, str]:
    """The chosen model is there, and the sensor names (MODALITY_i) are its own, before the worker starts."""
    chosen = algorithm.parameterAsEnumString(parameters, "MODEL", context) if "MODEL" in parameters else ""
    try:
        if chosen:
            model_path(chosen)
        found = model_sensors(algorithm, parameters, context)
    except CatalogError as exc:
        return False, f"MODEL_FILE: {exc}"
    except QgsProcessingException as exc:
        return False, str(exc)
    if found is None:
        return True, ""
    name, sensors = found
    for index in range(1, MODALITY_SLOTS + 1):
        given = algorithm.parameterAsString(parameters, f"MODALITY_{index}", context).strip()
        if given and given not in sensors:
            valid = ", ".join(f"{m} ({label})" for m, label in sensors.items())
            return False, f"MODALITY_{index}: '{given}' is not a sensor of the model {name}; valid names: {valid}."
    return True, ""


class JobAlgorithm(EngineAlgorithm):
    group_name = "Mapping"
    help_text = JOB_HELP

    def engine_params(self, parameters, context, feedback) -> dict[str, Any]:
        engine = super().engine_params(parameters, context, feedback)
        job_file = engine.pop("job_file", None)
        job = add_modalities(read_job_file(job_file) if job_file else {}, engine.pop("slots", {}))
        deep_merge(job, engine.pop("job", {}))
        resolve_model_name(job)
        if not job.get("model"):
            raise QgsProcessingException("MODEL: choose a model (or a model file), or give a job file naming one.")
        if not job.get("modalities"):
            raise QgsProcessingException("Give at least one modality (MODALITY_1 and LAYERS_1), or a job file.")
        return {"job": job, **engine}

    def working_folder(self, parameters, context):
        return job_folder(self, parameters, context)

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API
        # The sensors first: a name the model lacks is refused with the model's list, not QGIS's bare
        # "incorrect value" of the sensor drop-down.
        ok, message = check_sensors(self, self.model_as_file(parameters), context)
        if not ok:
            return ok, message
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        ok, message = check_universat(self, self.model_as_file(parameters), context, MODALITY_SLOTS)
        if not ok:
            return ok, message
        if not parameters.get("JOB") and not any(
            parameters.get(f"LAYERS_{i}") not in (None, "", []) for i in range(1, MODALITY_SLOTS + 1)
        ):
            return False, (
                "Give the layers of at least one sensor (Sensor 1 and its layers), or a job file (JOB, under Advanced)."
            )
        return True, ""


class Classify(JobAlgorithm):
    operation = "classify"
    display = "Classify (land cover, crops)"
    help_text = JOB_HELP + (
        " The model needs classes: a model with a classification head, or a probe you fitted on your labels "
        "('Fit a probe on labels'): give it as PROBE (or as the model file); the map is made in one pass, "
        "without writing the embeddings."
    )
    params = JOB_ROWS + (
        Param(
            "PROBE",
            "probe",
            "file",
            "Probe fitted on your labels (for a model without classes)",
            optional=True,
            file_filter="Probe (*.safetensors)",
            help="classifies the model's embeddings window by window; it must have been fitted on this model's",
        ),
        Param("CLASSES", "job.outputs.classes", "raster_out", "Class map", style="classes"),
        Param(
            "CONFIDENCE",
            "job.outputs.confidence",
            "raster_out",
            "Confidence (probability of the chosen class)",
            optional=True,
            style="confidence",
        ),
        Param("PROBABILITIES", "job.outputs.probabilities", "raster_out", "Per-class probabilities", optional=True),
    )
    results = (ResultRow("CLASS_NAMES", "class_names", "string", "Class names"),)


class Embed(JobAlgorithm):
    operation = "embed"
    display = "Embeddings"
    params = JOB_ROWS + (
        Param(
            "EMBEDDINGS_DTYPE",
            "job.outputs.embeddings_dtype",
            "enum",
            "Embedding type",
            default="float32",
            options=("float32", "float16"),
            advanced=True,
        ),
        Param(
            "EMBEDDINGS_LEVEL",
            "job.outputs.embeddings_level",
            "enum",
            "Embedding level (patch: fused; local: each patch's own encoder features; both; dense: AnySat, "
            "per sub-patch, UniverSat, per output cell at RESOLUTION; tile: one pixel per window, windows edge "
            "to edge)",
            default="patch",
            options=EMBEDDING_LEVELS,
        ),
        Param(
            "EMBEDDINGS",
            "job.outputs.embeddings",
            "raster_out",
            "Embeddings (one band per dimension)",
            style="embeddings",
            help="shown in the map as a false-colour image of their three principal "
            "components; the full embeddings stay in the project, unchecked, for probes",
        ),
    )


class NormalizationStats(JobAlgorithm):
    operation = "normalization-stats"
    display = "Normalization statistics of my data"
    params = JOB_ROWS + (
        Param(
            "OUTPUT",
            "output",
            "file_out",
            "Statistics (JSON, for the job's normalization)",
            file_filter="JSON (*.json)",
        ),
    )
