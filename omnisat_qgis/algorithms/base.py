"""One base class for every OmniSat Processing algorithm.

It derives the stable id from the class name, runs the engine worker with the
job a subclass builds, streams progress and log lines into the Processing
feedback, cancels by terminating the worker, and turns every engine or setting
error into a QgsProcessingException whose text a person can act on.
"""

from __future__ import annotations

import difflib
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
)
from qgis.PyQt.QtGui import QIcon

from omnisat_qgis import settings
from omnisat_qgis.algorithms import post_processing
from omnisat_qgis.algorithms.params import OUTPUT_KINDS, Param, ResultRow, set_nested, value_for_engine
from omnisat_qgis.embedding_preview import write_preview
from omnisat_qgis.layer_metadata import RunRecord, write_metadata
from omnisat_qgis.paths import engine_root, resources_dir
from omnisat_qgis.styling import write_style
from omnisat_qgis.worker_client import (
    ProgressLines,
    WorkerCallbacks,
    WorkerCancelled,
    WorkerError,
    WorkerRun,
    run_worker,
)


class EngineAlgorithm(QgsProcessingAlgorithm):
    """Subclasses set ``operation``, ``display``, ``group_name``, ``help_text`` and ``params``
    (rows of omnisat_qgis.algorithms.params.Param); override ``engine_params`` only to
    assemble what a flat row cannot express."""

    operation: str = ""
    display: str = ""
    group_name: str = ""
    help_text: str = ""
    params: tuple[Param, ...] = ()
    results: tuple[ResultRow, ...] = ()
    # pairs of optional parameters of which exactly one must be given
    exactly_one_of: tuple[tuple[str, str], ...] = ()

    # Stable, lowercase id derived once from the class name: renaming the
    # display string never breaks models or scripts.
    def name(self):
        return type(self).__name__.lower()

    def displayName(self):  # noqa: N802 - QGIS API
        return self.display

    def group(self):
        return self.group_name

    def groupId(self):  # noqa: N802 - QGIS API
        return self.group_name.lower().replace(" ", "")

    def shortHelpString(self):  # noqa: N802 - QGIS API
        rows = "".join(f"<li><b>{p.description}</b>: {p.help_text}</li>" for p in self.params if p.help_text)
        return f"<p>{self.help_text}</p>" + (f"<ul>{rows}</ul>" if rows else "")

    def icon(self):
        return QIcon(str(resources_dir() / "icons" / "omnisat.svg"))

    def createInstance(self):  # noqa: N802 - QGIS API
        return type(self)()

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS API
        for param in self.params:
            self.addParameter(param.definition())
        for row in self.results:
            self.addOutput(row.definition())

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API
        # qgis_process and processing.run pass unknown names through, and QGIS would use the
        # default in place of a misspelt one (BANDA=7 for BAND_A): refuse them instead.
        problem = unknown_parameters_message(
            parameters, [d.name() for d in self.parameterDefinitions()], f"omnisat:{self.name()}"
        )
        if problem:
            return False, problem
        parameters = self.model_as_file(parameters)
        if all(parameters.get(n) not in (None, "") for n in ("MODEL", "MODEL_FILE")):
            return False, "Give MODEL (a model of the catalog) or MODEL_FILE (a model file), not both."
        return super().checkParameterValues(parameters, context)

    def model_as_file(self, parameters: dict) -> dict:
        """A checkpoint path given as MODEL (scripts and the dock from before the catalog) read as MODEL_FILE."""
        value = parameters.get("MODEL")
        if self.parameterDefinition("MODEL_FILE") is None or not isinstance(value, str) or not value:
            return parameters
        if value.endswith(".safetensors") or "/" in value or "\\" in value:
            return {k: v for k, v in parameters.items() if k != "MODEL"} | {"MODEL_FILE": value}
        return parameters

    def output_rows(self) -> list[Param]:
        return [p for p in self.params if p.kind in OUTPUT_KINDS]

    def engine_params(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        for first, second in self.exactly_one_of:
            given = [n for n in (first, second) if parameters.get(n) not in (None, "")]
            if len(given) != 1:
                raise QgsProcessingException(f"Give exactly one of {first} and {second}.")
        engine: dict[str, Any] = {}
        for param in self.params:
            value = value_for_engine(self, param, parameters, context)
            if value is None:
                continue
            if param.kind == "vector" and "|layername=" in value:
                value, layer = value.split("|layername=", 1)
                if param.layer_key:
                    set_nested(engine, param.layer_key, layer.split("|")[0])
            set_nested(engine, param.key, value)
        return engine

    def working_folder(self, parameters, context) -> str | None:
        """The worker's working folder (relative paths in a job file resolve against it)."""
        return None

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        params = self.engine_params(self.model_as_file(parameters), context, feedback)
        message = self.run_engine(params, feedback, self.working_folder(parameters, context))
        written, result = message.get("outputs", {}), message.get("result", {})
        results = {p.name: written.get(p.key.rsplit(".", 1)[-1]) for p in self.output_rows()}
        self.describe_outputs(
            results, RunRecord.from_run(self.operation, self.display, params, result), context, feedback
        )
        return results | {row.name: row.value(result) for row in self.results}

    def run_engine(self, params: dict[str, Any], feedback: QgsProcessingFeedback, cwd: str | None = None) -> dict:
        """Run this algorithm's operation in the worker with ``params``; its result message."""
        try:
            python, source = settings.worker_python()
        except settings.SettingsError as exc:
            raise QgsProcessingException(str(exc)) from None
        outputs = [_get_nested(params, p.key) for p in self.output_rows()]
        run = WorkerRun(
            python=python,
            engine_root=engine_root(),
            operation=self.operation,
            params=params,
            threads=settings.worker_threads(),
            output_paths=[o for o in outputs if isinstance(o, str)],
            cwd=cwd,
            python_source=source,
        )
        feedback.pushDebugInfo(f"OmniSat engine: {python} ({source}), operation {self.operation}")
        lines = ProgressLines()  # a text per window would print hundreds of lines in qgis_process
        callbacks = WorkerCallbacks(
            progress=lambda percent, message: (
                feedback.setProgress(percent),
                lines.wanted(percent, message) and feedback.setProgressText(message),
            ),
            log=lambda message, level: _push_log(feedback, message, level),
            is_cancelled=feedback.isCanceled,
        )
        try:
            return run_worker(run, callbacks)
        except WorkerCancelled as exc:
            feedback.reportError(str(exc))
            raise QgsProcessingException(str(exc)) from None
        except WorkerError as exc:
            if exc.detail:
                feedback.pushDebugInfo(exc.detail)
            raise QgsProcessingException(str(exc)) from None

    def describe_outputs(
        self, results: dict[str, Any], record: RunRecord, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        """Style and metadata beside each raster written (for qgis_process and layers opened later),
        and a post-processor styling the layers Processing adds to the project."""
        for row in self.output_rows():
            path = results.get(row.name)
            if not row.style or not path:
                continue
            if row.style == "embeddings":
                feedback.setProgressText("Principal components of the embeddings (false-colour preview)")
                try:
                    preview = str(write_preview(path))
                    write_style(preview, "rgb")
                    write_metadata(preview, record, f"{row.description}: principal components")
                except ValueError as exc:
                    feedback.pushWarning(f"No false-colour preview of {path}: {exc}.")
            else:
                write_style(path, row.style)
            write_metadata(path, record, row.description)
            post_processing.attach(context, path, row.style, record, row.description)


def unknown_parameters_message(given, known: list[str], algorithm: str) -> str | None:
    """A message naming the parameters ``algorithm`` does not have (with the closest known name), or None."""
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return None
    guesses = [
        f"{name} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(name, known, 1)) else name
        for name in unknown
    ]
    return (
        f"{algorithm} has no parameter {', '.join(guesses)}: a misspelt name would be ignored and its default "
        f"used. Its parameters are {', '.join(known)}."
    )


def _get_nested(source: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(source, dict):
            return None
        source = source.get(part)
    return source


def _push_log(feedback: QgsProcessingFeedback, message: str, level: str) -> None:
    if level == "warning":
        feedback.pushWarning(message)
    elif level == "error":
        feedback.reportError(message)
    else:
        feedback.pushInfo(message)
