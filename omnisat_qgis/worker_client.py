"""Runs the engine worker as a separate process and follows its JSON-lines protocol.

QGIS-free on purpose: the Processing algorithms and QgsTask runners both use it,
and it is tested without QGIS. See engine/protocol.py for the messages.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

PROTOCOL_VERSION = 1
# Partial outputs of the engine are named ".<name>.omnisat-partial-*" (engine.io.atomic):
# after a hard kill the client removes them, so a cancel never leaves a file behind.
PARTIAL_MARKER = ".omnisat-partial-"
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


def sweep_partial_outputs(paths: list[str]) -> None:
    for path in paths:
        final = Path(path)
        if final.parent.is_dir():
            for leftover in final.parent.glob(f".{final.name}{PARTIAL_MARKER}*"):
                try:
                    leftover.unlink()
                except OSError:
                    pass


def _explain_exit(run: WorkerRun, code: int, stderr_tail: deque) -> WorkerError:
    text = "\n".join(stderr_tail)
    for module in ("torch", "rasterio", "numpy"):
        if f"No module named '{module}'" in text:
            return WorkerError(
                f"The worker Python '{run.python}' lacks {module}: point the OmniSat worker Python setting "
                f"(or OMNISAT_PYTHON) at the project's environment, or install the engine's requirements there.",
                text,
            )
    last = stderr_tail[-1] if stderr_tail else "no message"
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
    while True:
        if callbacks.is_cancelled():
            stop_process(process)
            _close(process, readers)
            sweep_partial_outputs(run.output_paths)
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
        sweep_partial_outputs(run.output_paths)
        raise _explain_exit(run, code, stderr_tail)
    if final["type"] == "error":
        sweep_partial_outputs(run.output_paths)
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
