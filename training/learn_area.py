"""``learn-area``: self-supervised pretraining of a model on the user's own rasters ("learn this area").

The job (engine.io.job) names the starting model and the user's layers per modality and
extent; the project's trainer (training.trainer) runs the model's own pretraining objective
(omnisat, anysat or universat) on windows of the job's window grid (training.datasets.rasters), for a
time budget or a number of steps, checkpointing often into a run folder: a cancel keeps the
last checkpoint and the next run resumes from it. The result is a new checkpoint with its
provenance (parent model and its sha256, inputs, steps, minutes); given labels, a probe is
fitted on the parent's and on the new model's embeddings with the same folds, so the user
sees whether the area's pretraining helped.

An operation of the engine's registry (engine.runtime.registry) defined here: training imports the engine,
never the reverse; training.engine_operations registers it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from engine.convert import from_dict
from engine.errors import Cancelled, EngineError
from engine.io.atomic import atomic_output, check_output_path
from engine.io.download import sha256_of
from engine.io.job import load_job
from engine.models.catalog import find_model
from engine.runtime.progress import Reporter
from engine.runtime.registry import operation
from training.config import ExperimentConfig, validate

OBJECTIVES = {
    "omnisat": "omnisat",
    "anysat": "anysat",
    "universat": "universat",
}  # architecture -> its pretraining objective
# Checkpoint at least this often: a cancel loses no more than this much training.
CHECKPOINT_MINUTES = 1.0


@dataclass
class LearnAreaParams:
    job: str | dict = field(
        metadata={
            "help": "job JSON file (or object): the starting model (a catalog name or "
            "checkpoint), the layers per modality, the extent; its outputs are "
            "not written",
            "positional": True,
        }
    )
    output: str = field(
        metadata={
            "help": "the new model to write (.safetensors; put it in the models folder to "
            "find it in every model picker)",
            "positional": True,
        }
    )
    minutes: float = field(default=10.0, metadata={"help": "time budget of the training, in minutes (0: steps only)"})
    steps: int = field(
        default=0, metadata={"help": "training steps of this run (0: as many as the time budget allows)"}
    )
    run_dir: str | None = field(
        default=None,
        metadata={
            "help": "folder of the training checkpoints and the loss log (default: beside the output, <name>-run)"
        },
    )
    resume: bool = field(
        default=True, metadata={"help": "continue from the run folder's last checkpoint when there is one"}
    )
    checkpoint_every: int = field(
        default=25,
        metadata={"help": "checkpoint every this many steps (and at least every minute): a cancel keeps the last one"},
    )
    batch_size: int = field(default=4, metadata={"help": "windows per training step"})
    learning_rate: float = field(default=5e-5, metadata={"help": "Adam learning rate"})
    max_dates: int = field(default=16, metadata={"help": "dates per time series drawn for each window"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: default)"})
    seed: int = field(default=0, metadata={"help": "random seed of the windows drawn and of the probes' folds"})
    labels: str | None = field(
        default=None,
        metadata={
            "help": "labelled points or polygons: probe accuracy before and after, on the same folds",
            "role": "input",
        },
    )
    class_field: str = field(default="class", metadata={"help": "field of the labels holding the class"})
    layer: str | None = field(default=None, metadata={"help": "layer name in the labels file (default: the first)"})
    ignore_values: list[str] = field(default_factory=list, metadata={"help": "class values to skip, e.g. 0"})
    report: str | None = field(default=None, metadata={"help": "HTML report to write (loss curve, before/after)"})


class LossLog(Reporter):
    """Passes everything on, and writes every ``every``-th step's line (step, loss, samples/s) to the log too:
    the Processing log then holds the loss curve as text."""

    def __init__(self, inner: Reporter, every: int = 10):
        self.inner, self.every, self.count = inner, every, 0

    def progress(self, percent: float, message: str = "") -> None:
        self.inner.progress(percent, message)
        if message.startswith("step "):
            self.count += 1
            if self.count % self.every == 1 or self.every == 1:
                self.inner.log(message)

    def log(self, message: str, level: str = "info") -> None:
        self.inner.log(message, level)


def dataset_job(job, model: str, run_dir: Path) -> Path:
    """The job as the rasters dataset reads it, in the run folder: paths absolute, the model the
    starting checkpoint; its "outputs" only satisfy the job format (training writes none)."""
    raw = dataclasses.asdict(job)
    raw.pop("source")
    raw["model"] = model
    raw["outputs"] = {"embeddings": str(run_dir / "not-written.tif")}
    if job.extent is not None:
        raw["extent"] = {"bounds": list(job.extent[0]), "crs": job.extent[1]}
    path = run_dir / "job.json"
    path.write_text(json.dumps(raw, indent=1))
    return path


def loss_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, training loss) as the trainer logged them (metrics.csv), every run of the folder."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [
            (int(r["step"]), float(r["value"]))
            for r in csv.DictReader(handle)
            if r["split"] == "train" and r["metric"] == "loss"
        ]


def curve_svg(points: list[tuple[int, float]], width: int = 480, height: int = 200) -> str:
    """The loss curve as an inline SVG line (no plotting library in the engine)."""
    if len(points) < 2:
        return "<p>Too few logged steps for a curve.</p>"
    steps, losses = [p[0] for p in points], [p[1] for p in points]
    s0, s1, lo, hi = min(steps), max(steps), min(losses), max(losses)
    span_s, span_l = max(s1 - s0, 1), max(hi - lo, 1e-12)
    xy = " ".join(
        f"{40 + (s - s0) / span_s * (width - 50):.1f},{10 + (hi - v) / span_l * (height - 40):.1f}" for s, v in points
    )
    return (
        f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{xy}"/>'
        f'<text x="40" y="{height - 8}" font-size="11">step {s0}</text>'
        f'<text x="{width - 70}" y="{height - 8}" font-size="11">step {s1}</text>'
        f'<text x="2" y="14" font-size="11">{hi:.3g}</text><text x="2" y="{height - 30}" font-size="11">{lo:.3g}</text>'
        "</svg>"
    )


def count_windows(job, model_path: Path) -> int:
    """The windows the rasters dataset cuts the job's area into (as training.datasets.rasters does)."""
    from engine.mapping.plan import plan_geometry, resolve_inputs  # lazy: keeps torch and rasterio out of this module
    from engine.models.checkpoint import load_checkpoint  # lazy: keeps torch out of this module

    model = load_checkpoint(model_path).model
    return len(plan_geometry(job, model, resolve_inputs(job, model)).windows)


def probe_scores(params: LearnAreaParams, job, model: str, probe: Path, reporter: Reporter) -> dict[str, Any]:
    """Spatially cross-validated accuracy of a linear probe on ``model``'s embeddings (fixed seed and folds)."""
    from engine.probes import plan as fit  # lazy: keeps rasterio out of this module
    from engine.probes.workflow import run_fit  # lazy: keeps rasterio out of this module

    embeddings = dataclasses.replace(
        job,
        model=model,
        outputs=dataclasses.replace(job.outputs, embeddings=None, classes=None, confidence=None, probabilities=None),
    )
    plan = fit.FitPlan(
        labels=fit.LabelRequest(params.labels, params.class_field, params.layer, tuple(params.ignore_values)),
        embeddings=fit.EmbeddingRequest(embeddings),
        fit=fit.fit_settings(seed=params.seed, learning_curve=False),
        outputs=fit.FitOutputs(str(probe)),
    )
    scores = run_fit(fit.checked(plan), reporter)
    return {k: scores[k] for k in ("overall_accuracy", "macro_f1", "validation_cells", "validation_rule")}


@operation(
    "learn-area",
    LearnAreaParams,
    outputs=("output", "report"),
    summary="Self-supervised pretraining of a model on your own rasters; a new model with its provenance.",
)
def learn_area(params: LearnAreaParams, reporter: Reporter) -> dict[str, Any]:
    """Continue the starting model's own pretraining (omnisat: contrastive + reconstruction; anysat: JEPA; universat:
    masked latent prediction + cross-sensor contrast) on
    windows of the job's layers, for ``minutes`` or ``steps``; progress gives step, loss and samples/s. A cancel
    keeps the run folder's last checkpoint (at most a minute old): run again to resume. Writes ``output``, a
    checkpoint recording its parent, inputs and steps; with ``labels``, the probe accuracy of the parent and of
    the new model on the same spatial folds."""
    from training.state import resolve_checkpoint  # lazy: keeps torch out of this module
    from training.trainer import Trainer  # lazy: keeps torch out of this module

    if params.minutes <= 0 and params.steps <= 0:
        raise EngineError("Give a time budget (minutes) or a number of steps: both are 0.")
    check_output_path(params.output, "output")
    if params.report:
        check_output_path(params.report, "report")
    output = Path(params.output).expanduser()
    if output.suffix != ".safetensors":
        raise EngineError(f"The output '{output}' must be a .safetensors file (the new model).")
    job = load_job(params.job)
    parent = find_model(job.model)
    objective = OBJECTIVES.get(parent.architecture)
    if objective is None:
        raise EngineError(
            f"The model '{parent.path}' is a {parent.architecture!r} model, which has no pretraining "
            f"objective here (known: {', '.join(OBJECTIVES)})."
        )
    batch_size = min(params.batch_size, count_windows(job, parent.path))
    if batch_size < params.batch_size:
        reporter.log(f"The area holds {batch_size} windows: batches of {batch_size}.", "warning")
    run_dir = Path(params.run_dir).expanduser() if params.run_dir else output.with_name(f"{output.stem}-run")
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = ""
    if params.resume:
        try:
            resume = str(resolve_checkpoint(run_dir))
        except EngineError:
            resume = ""  # nothing to resume: a fresh run
    tree = {
        "objective": objective,
        "model": {"preset": parent.name, "init_from": str(parent.path)},
        "data": {
            "datasets": [
                {
                    "format": "rasters",
                    "root": str(dataset_job(job, str(parent.path), run_dir)),
                    "batch_size": batch_size,
                    "max_dates": params.max_dates,
                    "options": {"val_every": 10},
                }
            ]
        },
        "optim": {"name": "adam", "lr": params.learning_rate, "schedule": "constant"},
        "train": {
            "out_dir": str(run_dir),
            "max_steps": 1,
            "seed": params.seed,
            "device": params.device,
            "threads": params.threads,
            "log_every": 1,
            "checkpoint_every": params.checkpoint_every,
            "checkpoint_minutes": CHECKPOINT_MINUTES,
            "max_minutes": params.minutes,
            "resume": resume,
            "eval_every": 0,
            "progress": False,
        },
    }
    config = from_dict(ExperimentConfig, tree, "learn-area's training config")
    validate(config)
    trainer = Trainer(
        config, LossLog(reporter), f"python -m engine learn-area (run folder {run_dir})", splits=("train",)
    )
    try:
        start = trainer.step
        # Steps of this run; by time alone, more than any budget reaches (the loop stops on the clock).
        config.train.max_steps = start + (params.steps if params.steps > 0 else 10**9)
        reporter.log(
            f"Learning the area with {parent.name} ({objective} objective) on "
            f"{len(trainer.data.datasets['rasters'])} windows of {', '.join(job.modalities)}, "
            + (f"{params.minutes:g} min" if params.minutes > 0 else "")
            + (" or " if params.minutes > 0 and params.steps > 0 else "")
            + (f"{params.steps} steps" if params.steps > 0 else "")
        )
        try:
            fitted = trainer.fit()
        except Cancelled:
            reporter.log(
                f"Cancelled: the last checkpoint of {run_dir} is kept; run again (resume) to continue.", "warning"
            )
            raise
        provenance = {
            "parent": {
                "name": parent.name,
                "path": str(parent.path),
                "sha256": sha256_of(parent.path),
                "licence": parent.provenance.get("licence", ""),
            },
            "licence": parent.provenance.get("licence") or "derived from the parent model (see its licence)",
            "inputs": {
                n: list(m.files)
                if isinstance(m.files, list)
                else [m.files]
                if m.files is not None
                else [p.files for p in m.parts]
                for n, m in job.modalities.items()
            },
            "extent": dataclasses.asdict(job)["extent"],
            "steps_this_run": trainer.step - start,
            "minutes_budget": params.minutes,
            "weights": f"learn-area: {objective} pretraining on the user's rasters",
        }
        trainer.export(output, provenance)
    finally:
        trainer.close()
    reporter.log(f"Wrote {output} after {fitted['steps']} steps ({fitted['samples_per_s']:.1f} samples/s)")
    result = {
        "output": str(output),
        "run_dir": str(run_dir),
        "parent": parent.name,
        "steps": fitted["steps"],
        "steps_this_run": fitted["steps"] - start,
        "resumed_from": start,
        "final_loss": fitted["final"].get("loss"),
        "samples_per_s": fitted["samples_per_s"],
        "loss_curve": loss_curve(run_dir),
        "report": params.report,
    }
    if params.labels:
        reporter.log("Probe accuracy on your labels, parent model then the new one (same folds)")
        result["before"] = probe_scores(params, job, str(parent.path), run_dir / "probe-before.safetensors", reporter)
        result["after"] = probe_scores(params, job, str(output), run_dir / "probe-after.safetensors", reporter)
        result.update(macro_f1_before=result["before"]["macro_f1"], macro_f1_after=result["after"]["macro_f1"])
        reporter.log(
            f"Macro-F1 {result['before']['macro_f1']:.3f} -> {result['after']['macro_f1']:.3f}, overall "
            f"accuracy {result['before']['overall_accuracy']:.3f} -> {result['after']['overall_accuracy']:.3f}"
        )
    if params.report:
        write_report(params.report, result)
    return result


def write_report(path: str, result: dict[str, Any]) -> None:
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(str(result[k]))}</td></tr>"
        for k in ("parent", "output", "steps", "steps_this_run", "final_loss", "samples_per_s", "run_dir")
    )
    scores = ""
    if "before" in result:
        scores = (
            "<h2>Probe on your labels (same spatial folds)</h2><table><tr><th></th><th>overall accuracy</th>"
            "<th>macro-F1</th></tr>"
            + "".join(
                f"<tr><th>{name}</th><td>{result[key]['overall_accuracy']:.3f}</td>"
                f"<td>{result[key]['macro_f1']:.3f}</td></tr>"
                for key, name in (("before", "parent model"), ("after", "new model"))
            )
            + "</table>"
        )
    html = (
        f"<html><head><meta charset='utf-8'><title>Learn this area</title></head><body><h1>Learn this area</h1>"
        f"<table>{rows}</table><h2>Training loss</h2>{curve_svg(result['loss_curve'])}{scores}</body></html>"
    )
    with atomic_output(path, "report") as temp:
        temp.write_text(html, encoding="utf-8")
