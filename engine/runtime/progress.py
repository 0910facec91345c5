"""Progress and log reporting shared by the CLI, the worker and the Python API."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
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


def duration_text(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


# Within one counted step (a classifier's fit, a file's warp), the computation tells its share done to
# whoever listens here: the counter of the loop that runs it (StepCounter.part). None: nobody listens.
_listener: ContextVar[Callable[[float], None] | None] = ContextVar("omnisat_progress_within", default=None)
WITHIN_EVERY_S = 0.5  # progress from inside a step goes out at most this often


def report_within(fraction: float) -> None:
    """Share (0-1) of the current step done, from inside a long computation (iterations of a fit,
    trees built so far, rows warped). Reporting often is cheap: the listener sends at most every
    ``WITHIN_EVERY_S``. Calling it also lets a pending cancel (SIGTERM -> Cancelled) take effect,
    since signal handlers run between Python bytecodes."""
    listener = _listener.get()
    if listener is not None:
        listener(min(max(float(fraction), 0.0), 1.0))


@contextlib.contextmanager
def listening(listener: Callable[[float], None]) -> Iterator[None]:
    """``report_within`` calls in this block go to ``listener``."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


@contextlib.contextmanager
def share_of_step(start: float, end: float) -> Iterator[None]:
    """``report_within`` calls in this block count as the share [start, end] of the enclosing step
    (e.g. one member of a vote fitted after another)."""
    outer = _listener.get()
    if outer is None:
        yield
        return
    with listening(lambda fraction: outer(start + (end - start) * fraction)):
        yield


class StepCounter:
    """Progress of a loop of ``total`` steps of about equal cost: after each step (and, with
    ``part``, from inside one), the share done and the time left, extrapolated from the steps so far."""

    def __init__(self, reporter: Reporter, total: int, message: str, start: float, end: float):
        self.reporter, self.total, self.message = reporter, max(total, 1), message
        self.start, self.end, self.done = start, end, 0
        self.started = time.monotonic()
        self._last_within = 0.0

    def time_left(self, done: float) -> str:
        """The time left as ", about N s left", once a whole step is timed (the first also pays imports
        and warm-up); "" before that and at the end."""
        if done < 1 or done >= self.total:
            return ""
        elapsed = time.monotonic() - self.started
        return f", about {duration_text(elapsed / done * (self.total - done))} left"

    def label(self, number: int, message: str, within: float | None = None) -> str:
        """The text of step ``number`` (``within``: its share done, while it runs)."""
        share = "" if within is None else f", {within:.0%}"
        return f"{message} ({number}/{self.total}{share})"

    def _send(self, done: float, text: str) -> None:
        fraction = min(done / self.total, 1.0)
        self.reporter.progress(self.start + (self.end - self.start) * fraction, text + self.time_left(done))

    def count(self, n: int = 1, message: str | None = None) -> None:
        """``n`` more steps done; ``message``: what they were (default: the counter's message)."""
        self.done += n
        self._send(self.done, self.label(self.done, message or self.message))

    def advance(self, n: int = 1, message: str | None = None) -> None:
        """``count``, and the test hold point (engine.runtime.hold) after the first of several steps."""
        self.count(n, message)
        if self.done == n < self.total:  # mid-run, first step reported: where tests hold a run
            hold_here()

    @contextlib.contextmanager
    def part(self, message: str | None = None) -> Iterator[None]:
        """The next step runs in this block: what it reports with ``report_within`` becomes progress,
        at most every ``WITHIN_EVERY_S``. Counting the step stays the caller's."""

        def listener(fraction: float) -> None:
            now = time.monotonic()
            if now - self._last_within < WITHIN_EVERY_S:
                return
            self._last_within = now
            self._send(self.done + fraction, self.label(self.done + 1, message or self.message, fraction))

        with listening(listener):
            yield


class TerminalReporter(Reporter):
    """A one-line progress bar on stderr when it is a terminal; plain log lines otherwise, where
    progress becomes a line too whenever ``LINE_EVERY_S`` passed without one (a log file then
    shows every long step moving)."""

    LINE_EVERY_S = 2.0

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
