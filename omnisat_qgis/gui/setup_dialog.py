"""The "Set up the OmniSat engine" dialog: each step, pip's output streamed live, Cancel.

The set-up (omnisat_qgis.environment.builder) runs in a QThread; its callbacks reach
the dialog through queued signals, so the QGIS window stays responsive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from qgis.PyQt.QtCore import QObject, QThread, pyqtSignal
from qgis.PyQt.QtGui import QFontDatabase
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from omnisat_qgis import settings
from omnisat_qgis.environment.builder import SetupCallbacks, SetupCancelled, SetupError, set_up_engine
from omnisat_qgis.environment.interpreters import NoPythonError


class _SetupJob(QObject):
    step = pyqtSignal(str, float)
    line = pyqtSignal(str)
    succeeded = pyqtSignal(str)
    failed = pyqtSignal(str)

    def __init__(self, options, runner: Callable):
        super().__init__()
        self.options, self.runner = options, runner
        self.cancel_event = threading.Event()

    def run(self):
        callbacks = SetupCallbacks(step=self.step.emit, line=self.line.emit, is_cancelled=self.cancel_event.is_set)
        try:
            result = self.runner(self.options, callbacks)
        except SetupCancelled as exc:
            self.failed.emit(str(exc))
        except SetupError as exc:
            self.failed.emit(exc.report())
        except (NoPythonError, OSError) as exc:
            self.failed.emit(str(exc))
        else:
            verb = "is ready" if result.reused else f"was built in {result.seconds:.0f} s"
            self.succeeded.emit(f"The engine environment {verb}: {result.python} (torch build {result.torch_build}).")


class SetupDialog(QDialog):
    """Builds the managed environment when the user presses "Set up"; ``runner`` is swapped in tests."""

    def __init__(
        self, parent=None, runner: Callable = set_up_engine, options_factory: Callable = settings.environment_options
    ):
        super().__init__(parent)
        self.runner, self.options_factory = runner, options_factory
        self.thread: QThread | None = None
        self.job: _SetupJob | None = None
        self.setWindowTitle("Set up the OmniSat engine")
        self.resize(760, 480)
        layout = QVBoxLayout(self)
        self.intro = QLabel(
            "Creates the Python environment the OmniSat engine runs in (torch and the engine's requirements), "
            "in the QGIS profile folder. QGIS's own Python is not changed. A first set-up downloads about "
            "200 MB (CPU) to 3 GB (CUDA) and takes minutes; checking an existing one takes seconds."
        )
        self.intro.setWordWrap(True)
        layout.addWidget(self.intro)
        self.force_cpu = QCheckBox("Install the CPU build of torch even when an NVIDIA GPU is present")
        self.force_cpu.setChecked(settings.force_cpu())
        layout.addWidget(self.force_cpu)
        self.rebuild = QCheckBox("Rebuild even when the existing environment works")
        layout.addWidget(self.rebuild)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        layout.addWidget(self.progress)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        layout.addWidget(self.log, 1)
        self.buttons = QDialogButtonBox()
        self.start_button = QPushButton("Set up")
        self.cancel_button = QPushButton("Cancel")
        self.close_button = QPushButton("Close")
        self.buttons.addButton(self.start_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.buttons.addButton(self.close_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        layout.addWidget(self.buttons)

    def running(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def start(self):
        if self.running():
            return
        try:
            options = self.options_factory(self.force_cpu.isChecked(), self.rebuild.isChecked())
        except (OSError, ValueError) as exc:
            self._finished(f"Cannot set up the engine: {exc}", ok=False)
            return
        self.log.clear()
        self.progress.setValue(0)
        self.status.setText(f"Environment folder: {options.target}")
        self.job = _SetupJob(options, self.runner)
        self.thread = QThread(self)
        self.job.moveToThread(self.thread)
        self.thread.started.connect(self.job.run)
        self.job.step.connect(self._step)
        self.job.line.connect(self.log.appendPlainText)
        self.job.succeeded.connect(lambda text: self._finished(text, ok=True))
        self.job.failed.connect(lambda text: self._finished(text, ok=False))
        for button, enabled in ((self.start_button, False), (self.cancel_button, True), (self.close_button, False)):
            button.setEnabled(enabled)
        self.thread.start()

    def cancel(self):
        if self.job is not None:
            self.job.cancel_event.set()
            self.status.setText("Cancelling: stopping pip and removing the unfinished environment…")

    def _step(self, message: str, percent: float):
        self.status.setText(message)
        self.progress.setValue(int(percent))

    def _finished(self, text: str, ok: bool):
        if self.thread is not None:
            self.thread.quit()
            self.thread.wait()
        self.status.setText(text if ok else f"Set-up did not complete.\n{text}")
        self.log.appendPlainText(("" if ok else "ERROR: ") + text)
        if ok:
            self.progress.setValue(100)
        for button, enabled in ((self.start_button, True), (self.cancel_button, False), (self.close_button, True)):
            button.setEnabled(enabled)

    def closeEvent(self, event):  # noqa: N802 - Qt API
        # Closing while pip runs would orphan it: cancel first, wait for the thread.
        if self.running():
            self.cancel()
            self.thread.quit()
            self.thread.wait()
        super().closeEvent(event)
