"""``omnisat:setupengine``: build (or check) the managed engine environment.

The same steps as the "Set up the engine" dialog, with Processing feedback: pip's
output as log lines, each step as progress, Cancel. Runs in QGIS's process but only
starts other processes (venv, pip, the engine worker): torch is never imported here.
"""

from __future__ import annotations

from qgis.core import QgsProcessingException

from omnisat_qgis import settings
from omnisat_qgis.algorithms.base import EngineAlgorithm
from omnisat_qgis.algorithms.params import Param, ResultRow
from omnisat_qgis.environment.builder import SetupCallbacks, SetupCancelled, SetupError, set_up_engine
from omnisat_qgis.environment.interpreters import NoPythonError


class SetupEngine(EngineAlgorithm):
    display = "Set up the OmniSat engine"
    group_name = "Engine"
    help_text = (
        "Creates the Python environment the OmniSat engine runs in, in the QGIS profile folder "
        "(omnisat/venv, or the folder of the 'OmniSat engine environment folder' setting): a virtual "
        "environment made from a Python found next to QGIS's own or on PATH, torch (the CPU build, or the "
        "CUDA build the NVIDIA driver runs), then the engine's pinned requirements; verified by running the "
        "engine worker on a synthetic input before it replaces a previous environment. Run again, it checks "
        "the environment and returns in seconds. QGIS's own Python is never changed; QGIS's proxy "
        "(Settings > Options > Network) is passed to pip."
    )
    params = (
        Param(
            "FORCE_CPU",
            "force_cpu",
            "bool",
            "Install the CPU build of torch even when an NVIDIA GPU is present",
            default=False,
        ),
        Param(
            "REBUILD", "rebuild", "bool", "Rebuild even when the existing environment passes its check", default=False
        ),
    )
    results = (
        ResultRow("PYTHON", "python", "string", "The engine environment's Python"),
        ResultRow("TORCH_BUILD", "torch_build", "string", "torch build (cpu or the CUDA tag)"),
        ResultRow("REUSED", "reused", "string", "Whether the existing environment was kept"),
    )

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS API
        force = self.parameterAsBool(parameters, "FORCE_CPU", context) or settings.force_cpu()
        options = settings.environment_options(force, self.parameterAsBool(parameters, "REBUILD", context))
        feedback.pushInfo(f"Engine environment: {options.target}")
        callbacks = SetupCallbacks(
            step=lambda message, percent: (
                feedback.setProgress(percent),
                feedback.setProgressText(message),
                feedback.pushInfo(message),
            ),
            line=feedback.pushConsoleInfo,
            is_cancelled=feedback.isCanceled,
        )
        try:
            result = set_up_engine(options, callbacks)
        except SetupCancelled as exc:
            raise QgsProcessingException(str(exc)) from None
        except SetupError as exc:
            raise QgsProcessingException(exc.report()) from None
        except NoPythonError as exc:
            raise QgsProcessingException(str(exc)) from None
        try:
            python, source = settings.worker_python()
        except settings.SettingsError:
            python, source = None, ""
        if python != result.python:
            feedback.pushWarning(
                f"The worker Python in use is {python} ({source}), not this environment: clear "
                f"{settings.ENV_PYTHON} or the 'OmniSat worker Python' setting to use it."
            )
        return {"PYTHON": str(result.python), "TORCH_BUILD": result.torch_build, "REUSED": str(result.reused)}
