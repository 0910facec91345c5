"""Progress and log reporting shared by the CLI, the worker and the Python API."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

from engine.runtime.hold import hold_here


class Reporter:
    """Receives progress (0-100) and log messages from long operations. Silent by default."""

    def progress(self, percent: float, message: str = "") -> None:
        pass

    def log(self, message: str, level: str = "info") -> None:
        pass

    def steps(self, total: int, message: str, start: float = 0.0, end: float = 100.0) -> StepCounter:
        """Progress for a loop of ``total`` steps mapped onto [start, end] percent."""
        return StepCounter(self, total, message, start, end)


class StepCounter:
    def __init__(self, reporter: Reporter, total: int, message: str, start: float, end: float):
        self.reporter, self.total, self.message = reporter, max(total, 1), message
        self.start, self.end, self.done = start, end, 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        fraction = min(self.done / self.total, 1.0)
        self.reporter.progress(
            self.start + (self.end - self.start) * fraction,
            f"{self.message} ({self.done}/{self.total})",
        )
        if self.done == n < self.total:  # mid-run, first step reported: where tests hold a run
            hold_here()


class TerminalReporter(Reporter):
    """A one-line progress bar on stderr when it is a terminal; plain log lines otherwise, where
    progress becomes a line too whenever ``LINE_EVERY_S`` passed without one (a log file then
    shows every long step moving)."""

    LINE_EVERY_S = 4.0

    def __init__(self, stream: IO[str] = sys.stderr, quiet: bool = False):
        self.stream, self.quiet = stream, quiet
        self.is_tty = stream.isatty()
        self._last = 0.0
        self._last_line = time.monotonic()

    def progress(self, percent: float, message: str = "") -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if not self.is_tty:
            if now - self._last_line >= self.LINE_EVERY_S:
                self._last_line = now
                self.stream.write(f"[{percent:5.1f}%] {message}\n")
                self.stream.flush()
            return
        if percent < 100 and now - self._last < 0.1:
            return
        self._last = now
        filled = int(percent / 100 * 30)
        bar = "#" * filled + "-" * (30 - filled)
        self.stream.write(f"\r[{bar}] {percent:5.1f}% {message[:60]:<60}")
        if percent >= 100:
            self.stream.write("\n")
        self.stream.flush()

    def log(self, message: str, level: str = "info") -> None:
        if self.quiet and level == "info":
            return
        if self.is_tty:
            self.stream.write("\r" + " " * 100 + "\r")
        prefix = "" if level == "info" else f"{level}: "
        self._last_line = time.monotonic()
        self.stream.write(f"{prefix}{message}\n")
        self.stream.flush()


class JsonLinesReporter(Reporter):
    """Writes protocol messages (see engine.runtime.protocol) as JSON lines."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def send(self, message: dict[str, Any]) -> None:
        self.stream.write(json.dumps(message, default=str) + "\n")
        self.stream.flush()

    def progress(self, percent: float, message: str = "") -> None:
        self.send({"type": "progress", "percent": round(float(percent), 2), "message": message})

    def log(self, message: str, level: str = "info") -> None:
        self.send({"type": "log", "level": level, "message": message})
