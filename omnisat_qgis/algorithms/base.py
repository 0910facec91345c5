"""One base class for every OmniSat Processing algorithm.

It derives the stable id from the class name, runs the engine worker with the
job a subclass builds, streams progress and log lines into the Processing
feedback, cancels by terminating the worker, and turns every engine or setting
error into a QgsProcessingException whose text a person can act on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsMapLayer,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingUtils,
    QgsProperty,
    QgsRasterLayer,
)
from qgis.PyQt.QtGui import QIcon

from omnisat_qgis import settings
from omnisat_qgis.paths import engine_root, resources_dir
from omnisat_qgis.worker_client import WorkerCallbacks, WorkerCancelled, WorkerError, WorkerRun, run_worker


class EngineAlgorithm(QgsProcessingAlgorithm):
    """Subclasses set ``operation``, ``display``, ``group_name``, ``help_text``,
    and implement ``initAlgorithm`` and ``engine_params``."""

    operation: str = ""
    display: str = ""
    group_name: str = ""
    help_text: str = ""
    # Processing parameter name -> engine result key, for file outputs.
    output_map: dict[str, str] = {}

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
        return self.help_text

    def icon(self):
        return QIcon(str(resources_dir() / "icons" / "omnisat.svg"))

    def createInstance(self):  # noqa: N802 - QGIS API
        return type(self)()

    def engine_params(self, parameters: dict[str, Any], context: QgsProcessingContext,
                      feedback: QgsProcessingFeedback) -> dict[str, Any]:
        raise NotImplementedError

    def raster_path(self, parameters, name: str, context) -> str:
        """The file behind a raster-layer parameter; the engine reads files, not QGIS layers.

        A plain file path is passed on without loading it as a layer: loading makes
        GDAL compute statistics and write a .aux.xml beside the input, and inputs
        are never modified.
        """
        value = parameters.get(name)
        if isinstance(value, QgsProperty):
            value = value.valueAsString(context.expressionContext())
        layer = value if isinstance(value, QgsMapLayer) else None
        if layer is None and isinstance(value, str) and value:
            layer = QgsProcessingUtils.mapLayerFromString(value, context, False)
            if layer is None:
                path = value.split("|")[0]
                if not Path(path).exists():
                    raise QgsProcessingException(f"{name}: the raster '{path}' does not exist: check the path.")
                return path
        if layer is None:
            raise QgsProcessingException(f"{name}: no raster layer was given.")
        if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"{name}: the layer '{layer.name()}' is not a GDAL file raster ({layer.providerType()}); "
                "save it as a GeoTIFF first (Raster > Conversion > Translate)."
            )
        return layer.source().split("|")[0]

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        params = self.engine_params(parameters, context, feedback)
        try:
            python, source = settings.worker_python()
        except settings.SettingsError as exc:
            raise QgsProcessingException(str(exc)) from None
        outputs = [params[key] for key in self.output_map.values() if params.get(key)]
        run = WorkerRun(
            python=python, engine_root=engine_root(), operation=self.operation, params=params,
            threads=settings.worker_threads(), output_paths=outputs,
        )
        feedback.pushDebugInfo(f"OmniSat engine: {python} ({source}), operation {self.operation}")
        callbacks = WorkerCallbacks(
            progress=lambda percent, message: (feedback.setProgress(percent), feedback.setProgressText(message)),
            log=lambda message, level: _push_log(feedback, message, level),
            is_cancelled=feedback.isCanceled,
        )
        try:
            message = run_worker(run, callbacks)
        except WorkerCancelled as exc:
            feedback.reportError(str(exc))
            raise QgsProcessingException(str(exc)) from None
        except WorkerError as exc:
            if exc.detail:
                feedback.pushDebugInfo(exc.detail)
            raise QgsProcessingException(str(exc)) from None
        result = message.get("result", {})
        return {name: result.get(key) for name, key in self.output_map.items()} | self.extra_results(result)

    def extra_results(self, result: dict[str, Any]) -> dict[str, Any]:
        return {}


def _push_log(feedback: QgsProcessingFeedback, message: str, level: str) -> None:
    if level == "warning":
        feedback.pushWarning(message)
    elif level == "error":
        feedback.reportError(message)
    else:
        feedback.pushInfo(message)
