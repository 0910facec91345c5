"""Mapping operations driven by a job file (engine.io.job): classify, embed, normalization-stats."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from engine.errors import EngineError
from engine.io.job import CLASS_OUTPUTS, Job, load_job
from engine.mapping.ranks import map_job
from engine.mapping.statistics import write_job_statistics
from engine.models.catalog import find_by_weights
from engine.probes.apply import map_job_with_probe
from engine.probes.probe_file import is_probe_file, load_probe
from engine.runtime.progress import Reporter
from engine.runtime.registry import operation

JOB_HELP = "job JSON file (or the job object itself, from the worker): see the example job below"


@dataclass
class MapParams:
    job: str | dict = field(metadata={"help": JOB_HELP, "positional": True})


def _load(job: Job, with_head: bool = True):
    from engine.models.checkpoint import load_checkpoint  # lazy: keeps torch out of --help

    loaded = load_checkpoint(job.model)
    return loaded.model, loaded.head if with_head else None, loaded.metadata


@dataclass
class ClassifyParams(MapParams):
    probe: str | None = field(
        default=None,
        metadata={
            "help": "probe file (fit-probe) classifying the embeddings of the job's model, in the same pass "
            "(no embeddings raster is written); a probe file given as the job's model also works",
            "role": "input",
        },
    )


def encoder_of_probe(probe_path: str, reporter: Reporter) -> str:
    """The checkpoint a probe was fitted on: the one whose tensors hash to the probe's record."""
    _, meta = load_probe(probe_path)
    found = find_by_weights(meta.encoder_hash, meta.encoder.get("checkpoint", ""))
    if found is None:
        name = meta.encoder.get("name") or "its encoder"
        raise EngineError(
            f"The probe '{probe_path}' was fitted on embeddings of {name} (weights sha256 {meta.encoder_hash[:12]}), "
            "which is neither where it was then nor among the shipped models and the models folder: give that "
            "checkpoint as the job's model and the probe as 'probe', or copy the checkpoint into the models folder."
        )
    reporter.log(f"The model is a probe; its encoder is {found.name} ({found.path}).")
    return str(found.path)


@operation(
    "classify",
    ClassifyParams,
    outputs=CLASS_OUTPUTS + ("embeddings",),
    summary="Map classes over an area with the model's head or a fitted probe: class map (colour table, "
    "class names), confidence, probabilities.",
)
def classify(params: ClassifyParams, reporter: Reporter) -> dict[str, Any]:
    """Tiled classification of the job's modalities with the checkpoint's head, or with a probe
    fitted on the model's embeddings (``probe``, or a probe file as the job's model: its encoder is
    found in the catalog by the hash the probe records). The probe classifies each window's
    embeddings in the same streaming pass.

    Writes the job's outputs: "classes" (uint8, nodata 255), "confidence" and
    "probabilities" (float32, NaN nodata), optionally "embeddings".
    Over several processes: the job's "ranks", or torchrun ... -m engine classify JOB.json;
    inputs may be /vsicurl/ or /vsis3/ names.
    """
    job = load_job(params.job)
    if not any(getattr(job.outputs, k) for k in CLASS_OUTPUTS):
        raise EngineError(
            'classify writes "classes", "confidence" or "probabilities": name one in the job\'s "outputs".'
        )
    probe_path = params.probe
    if is_probe_file(job.model):
        if probe_path:
            raise EngineError(
                f"The job's model '{job.model}' is a probe and 'probe' names another: give the encoder "
                "checkpoint as the model, or leave 'probe' empty."
            )
        probe_path = job.model
        job = replace(job, model=encoder_of_probe(probe_path, reporter))
    if probe_path:
        from engine.runtime.distributed import launched_by_torchrun  # lazy: keeps torch out of --help

        if job.ranks > 1 or launched_by_torchrun():
            raise EngineError(
                "Classifying with a probe runs in one process: set the job's \"ranks\" to 1 and run "
                "without torchrun, or map the embeddings over ranks (embed) and run apply-probe on them."
            )

        probe, meta = load_probe(probe_path)
        return map_job_with_probe(job, probe_path, probe, meta, reporter)
    return map_job("classify", params.job, job, reporter, lambda: _load(job))


@operation(
    "embed",
    MapParams,
    outputs=("embeddings",),
    summary="Embeddings over an area, as a multi-band raster (one pixel per patch, sub-patch or window).",
)
def embed(params: MapParams, reporter: Reporter) -> dict[str, Any]:
    """Tiled embedding of the job's modalities: one band per embedding dimension, at the job's
    outputs.embeddings_level: patch / local / both: one pixel per patch; dense (AnySat):
    [patch, sub-patch token] per sub-patch of the finest modality, one pixel per sub-patch;
    tile: one vector per window, windows laid edge to edge (no overlap), one pixel per
    window (the last row/column: the window moved back to end on the area's edge).
    Over several processes: the job's "ranks", or torchrun ... -m engine embed JOB.json."""
    job = load_job(params.job)
    if not job.outputs.embeddings or any(getattr(job.outputs, k) for k in CLASS_OUTPUTS):
        raise EngineError(
            'embed writes only "embeddings": name that file (and no class output) in the job\'s "outputs".'
        )
    return map_job("embed", params.job, job, reporter, lambda: _load(job, with_head=False))


@dataclass
class StatsJobParams:
    job: str | dict = field(metadata={"help": JOB_HELP, "positional": True})
    output: str = field(
        metadata={"help": "statistics JSON to write (give it as the job's \"normalization\")", "positional": True}
    )


@operation(
    "normalization-stats",
    StatsJobParams,
    outputs=("output",),
    summary="Per-band mean and std of a job's inputs on its grid, for the job's \"normalization\".",
)
def normalization_stats(params: StatsJobParams, reporter: Reporter) -> dict[str, Any]:
    """Statistics of the job's own data (valid, cloud-free pixels of every date, on the job's grid).

    The result replaces the checkpoint's statistics when the data differ from the
    training data (another processing level, units or sensor).
    """
    return write_job_statistics(load_job(params.job), params.output, reporter)
