"""The one run controller of the dock: starts a planned run as a background task, cancels it,
and says how it ended, the same in the dock as in QGIS's task manager.

One run at a time: the run buttons are disabled while it runs; the progress bar ends where
the task ends (100 % "Done", or "Cancelled" / "Failed" instead of a value frozen mid-way).
Below the bar, what the engine is doing, as it says it ("nested selection: candidate 7 of 10 ...,
about 6 min left"): a long step moves there even while its percent does not.
"""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QLabel, QProgressBar, QPushButton

from omnisat_qgis.gui.engine_task import EngineTask, Step
from omnisat_qgis.gui.panels.messages import MessageArea


class RunController:
    def __init__(
        self,
        progress: QProgressBar,
        cancel_button: QPushButton,
        messages: MessageArea,
        log: Callable[[str, str], None],
        doing: QLabel,
    ):
        self.progress, self.cancel_button, self.messages, self.log = progress, cancel_button, messages, log
        self.doing = doing
        self.buttons: list[QPushButton] = []  # disabled while a run is going
        # The buttons a failure's message offers (e.g. set up the engine), from its text.
        self.fixes: Callable[[str], tuple] = lambda text: ()
        self.task: EngineTask | None = None
        self.outcome = ""  # done, cancelled or failed: how the last run ended
        self.worker_log: list[str] = []  # the running task's log lines: the details of a failure
        cancel_button.setEnabled(False)
        cancel_button.clicked.connect(self.cancel)

    @property
    def running(self) -> bool:
        return self.task is not None

    def start(self, title: str, steps: tuple[Step, ...] | list[Step], on_done: Callable[[EngineTask], None]) -> bool:
        if self.task is not None:
            self.messages.say("A run is in progress: wait for it or press Cancel.", Qgis.MessageLevel.Warning)
            return False
        self.worker_log = []
        if self.messages.current is not None and self.messages.current.level == Qgis.MessageLevel.Critical:
            self.messages.clear()  # an earlier attempt's refusal or failure: this run is not refused
        task = EngineTask(title, list(steps), lambda t: self._finished(t, on_done), self._log)
        self.task = task
        task.progressChanged.connect(self._progress)
        task.said.connect(self.doing.setText, Qt.ConnectionType.QueuedConnection)
        for button in self.buttons:
            button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setFormat("%p%")
        self.progress.setValue(0)
        self.doing.setText("Starting the engine")
        QgsApplication.taskManager().addTask(task)
        return True

    def _progress(self, value: float) -> None:
        self.progress.setValue(int(value))

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def detach(self) -> None:
        """Cancel the run and cut it from the widgets: the dock is going, the task may end after it."""
        task, self.task = self.task, None
        if task is None:
            return
        for signal, slot in ((task.progressChanged, self._progress), (task.said, self.doing.setText)):
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        task.on_done = lambda t: None
        task.log = lambda message, level: None
        task.cancel()

    def _log(self, message: str, level: str) -> None:
        self.worker_log.append(message)
        self.log(message, level)

    def _finished(self, task: EngineTask, on_done: Callable[[EngineTask], None]) -> None:
        self.task = None
        self.doing.clear()  # the outcome is the message area's
        for button in self.buttons:
            button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if task.cancelled:
            self.outcome = "cancelled"
            self.progress.setValue(0)
            self.progress.setFormat("Cancelled")
            self.messages.say("Cancelled; no output was written.", Qgis.MessageLevel.Info)
            return
        if task.error:
            self.outcome = "failed"
            self.progress.setValue(0)
            self.progress.setFormat("Failed")
            self.messages.say(
                task.error,
                Qgis.MessageLevel.Critical,
                details="\n".join(self.worker_log[-200:]),
                actions=self.fixes(task.error),
            )
            return
        self.outcome = "done"
        self.progress.setValue(100)
        self.progress.setFormat("Done")
        on_done(task)
