"""What the dock's panels ask for, as plain data, and the worker steps each request becomes.

The panels fill these requests (no widget in them); ``RunController`` starts the steps as one
background task and cancels it. Kept free of widgets so the jobs are tested on their own and
a request could be replayed headless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnisat_qgis.gui.engine_task import Step
from omnisat_qgis.gui.session import (
    Advanced,
    EmbeddingCache,
    Extent,
    ModalityInput,
    build_job,
    embedding_key,
    qgis_process_command,
)
from omnisat_qgis.model_catalog import ModelInfo


@dataclass(frozen=True)
class LabelsRequest:
    labels: str  # the file
    class_field: str
    layer: str | None  # the layer inside the file (GeoPackage), if named
    ignore_values: tuple[str, ...] = ()

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "labels": self.labels,
            "class_field": self.class_field,
            "ignore_values": list(self.ignore_values),
        }
        if self.layer:
            params["layer"] = self.layer
        return params

    def processing_source(self) -> str:
        return self.labels + (f"|layername={self.layer}" if self.layer else "")


@dataclass(frozen=True)
class FitRequest:
    model: ModelInfo
    inputs: tuple[ModalityInput, ...]
    extent: Extent
    labels: LabelsRequest
    advanced: Advanced
    learning_curve: bool = False


@dataclass(frozen=True)
class MapRequest:
    model: ModelInfo
    inputs: tuple[ModalityInput, ...]
    extent: Extent | None  # None: where the inputs overlap
    probe: Path
    advanced: Advanced


@dataclass(frozen=True)
class PlannedRun:
    """A request turned into worker steps, with the job it embeds and the commands that repeat it headless."""

    title: str
    steps: tuple[Step, ...]
    command: str
    job: dict[str, Any]


def plan_fit(request: FitRequest, cache: EmbeddingCache, run: Path) -> PlannedRun:
    """Embed the extent (unless the cache has it), then fit the probe; outputs in ``run``."""
    level = request.advanced.level
    key = embedding_key(request.model, list(request.inputs), request.extent, level, request.advanced)
    embeddings = cache.embeddings(key)
    embeddings.parent.mkdir(parents=True, exist_ok=True)
    job = build_job(
        request.model,
        list(request.inputs),
        request.extent,
        {"embeddings": str(embeddings), "embeddings_level": level},
        request.advanced,
    )
    job_file = embeddings.parent / "job.json"
    job_file.write_text(json.dumps(job, indent=2), encoding="utf-8")
    fit = dict(
        request.labels.params(),
        embeddings=str(embeddings),
        model=str(request.model.path),
        output=str(run / "probe.safetensors"),
        report=str(run / "report.html"),
        classes=str(run / "classes.tif"),
        confidence=str(run / "confidence.tif"),
        learning_curve=request.learning_curve,
    )
    steps = []
    if not cache.has(key):
        steps.append(Step("embed", {"job": job}, (str(embeddings),), "Embedding the visible area"))
    steps.append(
        Step("fit-probe", fit, (fit["output"], fit["report"], fit["classes"], fit["confidence"]), "Fitting the probe")
    )
    commands = [
        qgis_process_command("embed", {"JOB": str(job_file), "EMBEDDINGS": str(embeddings)}),
        qgis_process_command(
            "fitprobe",
            {
                "LABELS": request.labels.processing_source(),
                "CLASS_FIELD": request.labels.class_field,
                "IGNORE_VALUES": ",".join(request.labels.ignore_values),
                "EMBEDDINGS_RASTER": str(embeddings),
                "MODEL": str(request.model.path),
                "OUTPUT": fit["output"],
                "REPORT": fit["report"],
                "CLASSES": fit["classes"],
                "CONFIDENCE": fit["confidence"],
                "LEARNING_CURVE": request.learning_curve,
            },
        ),
    ]
    return PlannedRun("OmniSat: fit and preview", tuple(steps), "\n".join(commands), job)


def plan_map(request: MapRequest, run: Path) -> PlannedRun:
    outputs = {
        "classes": str(run / "classes.tif"),
        "confidence": str(run / "confidence.tif"),
        "probabilities": str(run / "probabilities.tif"),  # what Classify parcels averages per parcel
        "embeddings_level": request.advanced.level,
    }
    job = build_job(request.model, list(request.inputs), request.extent, outputs, request.advanced)
    (run / "job.json").write_text(json.dumps(job, indent=2), encoding="utf-8")
    command = qgis_process_command(
        "applyprobe",
        {
            "PROBE": str(request.probe),
            "JOB": str(run / "job.json"),
            "CLASSES": outputs["classes"],
            "CONFIDENCE": outputs["confidence"],
            "PROBABILITIES": outputs["probabilities"],
        },
    )
    step = Step(
        "apply-probe",
        {"probe": str(request.probe), "embeddings": job},
        (outputs["classes"], outputs["confidence"], outputs["probabilities"]),
        "Mapping the whole area",
    )
    return PlannedRun(f"OmniSat: map {run.name}", (step,), command, job)


@dataclass(frozen=True)
class ParcelsRequest:
    """Classify parcels from a finished map: each parcel takes the mean probability of its pixels."""

    parcels: str  # the parcels file
    layer: str | None  # the layer inside it (GeoPackage), if named
    probabilities: str  # the map's per-class probabilities
    classes: str  # the map's class map (names and colours)


def plan_parcels(request: ParcelsRequest, run: Path) -> PlannedRun:
    """One classify-parcels step writing ``run``/parcels.gpkg; the parcels file is only read."""
    output = str(run / "parcels.gpkg")
    params: dict[str, Any] = {
        "parcels": request.parcels,
        "probabilities": request.probabilities,
        "classes": request.classes,
        "output": output,
    }
    if request.layer:
        params["layer"] = request.layer
    command = qgis_process_command(
        "classifyparcels",
        {
            "PARCELS": request.parcels + (f"|layername={request.layer}" if request.layer else ""),
            "PROBABILITIES": request.probabilities,
            "CLASSES": request.classes,
            "OUTPUT": output,
        },
    )
    step = Step("classify-parcels", params, (output,), "Classifying the parcels")
    return PlannedRun(f"OmniSat: parcels {run.name}", (step,), command, {})
