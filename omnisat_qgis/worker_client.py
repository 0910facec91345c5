"""Runs the engine worker as a separate process and follows its JSON-lines protocol.

QGIS-free on purpose: the Processing algorithms and QgsTask runners both use it,
and it is tested without QGIS. See engine/protocol.py for the messages.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

PROTOCOL_VERSION = 1
# Partial outputs of the engine are named ".<name>.omnisat-partial-<pid>-<host>-*" (engine.io.atomic):
# after a hard kill the client removes those of its own worker, never another run's.
PARTIAL_MARKER = ".omnisat-partial-"
SETTING_HINT = ("the OmniSat worker Python setting (Settings > Options > Processing > Providers > OmniSat) "
                "or OMNISAT_PYTHON")
TERMINATE_GRACE_S = 5.0


class WorkerError(Exception):
    """The engine reported an error, or could not be started; the message is for a person."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


class WorkerCancelled(WorkerError):
    pass


@dataclass
class WorkerCallbacks:
    progress: Callable[[float, str], None] = lambda percent, message: None
    log: Callable[[str, str], None] = lambda message, level: None
    is_cancelled: Callable[[], bool] = lambda: False


@dataclass
class WorkerRun:
    python: Path
    engine_root: Path
    operation: str
    params: dict[str, Any]
    threads: int | None = None
    output_paths: list[str] = field(default_factory=list)
    cwd: str | None = None
    python_source: str = "the OmniSat worker Python setting"  # where the interpreter was chosen (for messages)

    def job(self) -> dict[str, Any]:
        job = {"protocol": PROTOCOL_VERSION, "operation": self.operation, "params": self.params}
        if self.threads:
            job["threads"] = self.threads
        return job


def _reader(stream, sink: "queue.Queue[str | None]") -> None:
    for line in iter(stream.readline, ""):
        sink.put(line)
    sink.put(None)


def _tail_reader(stream, tail: deque) -> None:
    for line in iter(stream.readline, ""):
        tail.append(line.rstrip())


def remove_worker_partials(paths: list[str], pid: int) -> None:
    """Remove the partial outputs of the worker process ``pid``; a concurrent run's stay untouched
    (and the engine sweeps those of dead processes when it next writes to the folder)."""
    for path in paths:
        final = Path(path)
        if final.parent.is_dir():
            for leftover in final.parent.glob(f".{final.name}{PARTIAL_MARKER}{pid}-*"):
                try:
                    leftover.unlink()
                except OSError:
                    pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _explain_exit(run: WorkerRun, code: int, stderr_tail: deque, started: bool) -> WorkerError:
    """A message for a worker that ended without a result or an error message."""
    text = "\n".join(stderr_tail)
    for module in ("torch", "rasterio", "numpy"):
        if f"No module named '{module}'" in text:
            return WorkerError(
                f"The worker Python '{run.python}' (from {run.python_source}) lacks {module}: point "
                f"{SETTING_HINT} at the project's environment, or install the engine's requirements there.",
                text,
            )
    if code == -getattr(signal, "SIGKILL", 9):
        return WorkerError(
            "The OmniSat engine worker was killed (SIGKILL), often because the machine ran out of memory: "
            "lower the batch size or the window (tile) size, or map a smaller extent. Nothing was written.", text)
    if code < 0:
        return WorkerError(f"The OmniSat engine worker was stopped by {_signal_name(-code)}. Nothing was written.", text)
    last = stderr_tail[-1] if stderr_tail else "no message"
    if not started:
        return WorkerError(
            f"The worker Python '{run.python}' (from {run.python_source}) exited with code {code} before the "
            f"engine started ({last}): is it a Python interpreter with the engine's requirements? Point "
            f"{SETTING_HINT} at one.", text)
    return WorkerError(f"The OmniSat engine worker stopped unexpectedly (exit code {code}): {last}", text)


def run_worker(run: WorkerRun, callbacks: WorkerCallbacks | None = None, poll_s: float = 0.1) -> dict[str, Any]:
    """Run one job; return the worker's result message. Raise WorkerError / WorkerCancelled."""
    callbacks = callbacks or WorkerCallbacks()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(run.engine_root), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    # QGIS's own Python settings must not leak into a foreign interpreter.
    env.pop("PYTHONHOME", None)
    try:
        process = subprocess.Popen(
            [str(run.python), "-m", "engine", "worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", env=env, cwd=run.cwd,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0,
        )
    except OSError as exc:
        raise WorkerError(f"Could not start the OmniSat worker Python '{run.python}': {exc.strerror or exc}.") from None
    lines: "queue.Queue[str | None]" = queue.Queue()
    stderr_tail: deque = deque(maxlen=40)
    readers = [
        threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True),
        threading.Thread(target=_tail_reader, args=(process.stderr, stderr_tail), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        process.stdin.write(json.dumps(run.job()))
        process.stdin.close()
    except BrokenPipeError:
        pass  # the worker died at start; its exit code and stderr explain why

    final: dict[str, Any] | None = None
    started = False  # the engine said hello: the interpreter is a Python that runs it
    while True:
        if callbacks.is_cancelled():
            stop_process(process)
            _close(process, readers)
            remove_worker_partials(run.output_paths, process.pid)
            raise WorkerCancelled("Cancelled; no output was written.")
        try:
            line = lines.get(timeout=poll_s)
        except queue.Empty:
            continue
        if line is None:
            break
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            callbacks.log(line.rstrip(), "info")
            continue
        kind = message.get("type")
        started = started or kind == "hello"
        if kind == "hello" and message.get("protocol") != PROTOCOL_VERSION:
            stop_process(process)
            _close(process, readers)
            raise WorkerError(
                f"The engine at '{run.engine_root}' speaks worker protocol {message.get('protocol')}, "
                f"this plugin speaks {PROTOCOL_VERSION}: update the plugin and the engine together."
            )
        if kind == "progress":
            callbacks.progress(float(message.get("percent", 0.0)), str(message.get("message", "")))
        elif kind == "log":
            callbacks.log(str(message.get("message", "")), str(message.get("level", "info")))
        elif kind in ("result", "error"):
            final = message
    code = process.wait()
    _close(process, readers)
    if final is None:
        remove_worker_partials(run.output_paths, process.pid)
        raise _explain_exit(run, code, stderr_tail, started)
    if final["type"] == "error":
        remove_worker_partials(run.output_paths, process.pid)
        error = WorkerCancelled if final.get("kind") == "cancelled" else WorkerError
        raise error(str(final.get("message", "unknown error")), str(final.get("detail", "")))
    return final


def _close(process: subprocess.Popen, readers: list[threading.Thread]) -> None:
    for reader in readers:
        reader.join(timeout=2)
    process.stdout.close()
    process.stderr.close()


def stop_process(process: subprocess.Popen) -> None:
    """Terminate (the worker then removes its partial outputs), kill if it does not exit."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
