"""Engine runs in the background: a QgsTask that runs worker jobs one after another.

Progress goes to the task manager (and the dock, through ``progressChanged``), and what the engine
says it is doing (its progress texts and log lines) to the dock through ``said``;
cancelling the task terminates the worker, which removes its partial files, so a
cancelled run leaves nothing behind. The task never touches the project: the
dock loads the results in ``on_done`` on the main thread.

QGIS has no "cancelled" state for a task: a cancel ends as "Terminated" and QGIS's own
notification for it reads "Task failed". The task is therefore silent (the dock says the
outcome) and its description in the task manager says how it ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from omnisat_qgis import settings
from omnisat_qgis.paths import engine_root
from omnisat_qgis.worker_client import WorkerCallbacks, WorkerCancelled, WorkerError, WorkerRun, run_worker


@dataclass(frozen=True)
class Step:
    """One worker job: an engine operation, its parameters and the files it writes."""

    operation: str
    params: dict[str, Any]
    outputs: tuple[str, ...]
    label: str


class EngineTask(QgsTask):
    # Emitted from the task's thread: connect with a queued connection to touch widgets.
    said = pyqtSignal(str)

    def __init__(
        self,
        description: str,
        steps: list[Step],
        on_done: Callable[[EngineTask], None],
        log: Callable[[str, str], None] = lambda m, level: None,
    ):
        super().__init__(description, QgsTask.Flag.CanCancel | QgsTask.Flag.Silent)
        self.steps, self.on_done, self.log = steps, on_done, log
        self.results: list[dict[str, Any]] = []
        self.error = ""
        self.cancelled_by_user = False

    def run(self) -> bool:  # background thread
        try:
            python, source = settings.worker_python()
        except settings.SettingsError as exc:
            self.error = str(exc)
            return False
        share = 100.0 / len(self.steps)
        for index, step in enumerate(self.steps):
            callbacks = WorkerCallbacks(
                progress=lambda percent, message, i=index: self._progress(i * share + percent * share / 100, message),
                log=self._log,
                is_cancelled=self.isCanceled,
            )
            run = WorkerRun(
                python=python,
                engine_root=engine_root(),
                operation=step.operation,
                params=step.params,
                threads=settings.worker_threads(),
                output_paths=list(step.outputs),
                python_source=source,
            )
            try:
                self.results.append(run_worker(run, callbacks).get("result", {}))
            except WorkerCancelled:
                self.cancelled_by_user = True
                self.setDescription(f"{self.description()} (cancelled)")
                return False
            except WorkerError as exc:
                self.error = f"{step.label}: {exc}"
                self.setDescription(f"{self.description()} (failed)")
                return False
        self.setProgress(100.0)
        return True

    def _progress(self, percent: float, message: str) -> None:  # task's thread
        self.setProgress(percent)
        if message:
            self.said.emit(message)

    def _log(self, message: str, level: str) -> None:  # task's thread
        self.log(message, level)
        # A step's start ("Fitting ...") is progress too; warnings stay in the log.
        if level == "info" and message.strip():
            self.said.emit(message.strip().splitlines()[0])

    @property
    def cancelled(self) -> bool:
        return self.cancelled_by_user or self.isCanceled()

    def finished(self, result: bool) -> None:  # main thread
        self.on_done(self)
