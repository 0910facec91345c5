"""What the real-QGIS scenarios share (startup.py, crops_startup.py, run by ``qgis --code``): the record
of checks and failures, steps that end the run with their traceback, timers, waiting for the dock's
task, and QGIS's log watched for errors. The scenario sets ``finish`` (how it ends) after defining it.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from qgis.core import Qgis
from qgis.PyQt.QtCore import QTimer


class Scenario:
    def __init__(self, allowed_criticals: tuple[str, ...] = ()):
        self.record: dict = {"checks": [], "failures": [], "timings": {}, "log_errors": []}
        self.state: dict = {}
        self.finish: Callable[[str], None] = lambda error="": None
        self.allowed = allowed_criticals  # texts of Critical messages the scenario provokes on purpose

    def check(self, name: str, ok, detail="") -> bool:
        self.record["checks"].append({"check": name, "ok": bool(ok), "detail": str(detail)[:2000]})
        if not ok:
            self.record["failures"].append(f"{name}: {detail}"[:2000])
        return bool(ok)

    def conclude(self, out: Path, error: str = "") -> None:
        """The end in ``out``/result.json: the error if any, the dock's messages, the log's errors."""
        if error:
            self.check("the scenario ran to its end", False, error)
        if self.state.get("dock") is not None:
            self.record["messages"] = self.state["dock"].messages
        errors = self.record["log_errors"]
        self.check("no error in QGIS's log (Python errors, OmniSat criticals)", not errors, errors)
        self.record["finished"] = not error
        (out / "result.json").write_text(json.dumps(self.record, indent=2))

    def logged(self, message, tag, level) -> None:
        """Slot of QgsApplication.messageLog().messageReceived: Python errors and OmniSat criticals."""
        critical = level == Qgis.MessageLevel.Critical and tag in ("OmniSat", "Processing")
        if tag == "Python error" or (critical and not any(text in message for text in self.allowed)):
            self.record["log_errors"].append(f"[{tag}] {message}"[:2000])

    def guarded(self, step):
        def run(*args):
            try:
                step(*args)
            except Exception:  # any failure ends the run with its traceback in result.json
                self.finish(traceback.format_exc())

        return run

    def later(self, step, ms: int = 1000) -> None:
        QTimer.singleShot(ms, self.guarded(step))

    def when_done(self, then, started: float, key: str) -> None:
        """Poll until the dock's task ends, record its seconds under ``key``, then call ``then``."""

        def poll():
            if self.state["dock"].task is not None:
                QTimer.singleShot(100, self.guarded(poll))
                return
            self.record["timings"][key] = round(time.monotonic() - started, 2)
            then()

        QTimer.singleShot(100, self.guarded(poll))
