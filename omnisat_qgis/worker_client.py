"""Runs the engine worker as a separate process and follows its JSON-lines protocol.

QGIS-free on purpose: the Processing algorithms and QgsTask runners both use it,
and it is tested without QGIS. See engine/runtime/protocol.py for the messages. By default a
job runs in a serving worker (``python -m engine worker --serve``) of a shared pool,
kept between runs so that the engine's imports and model set-up are paid once:
cancelling stops the worker (the next run starts another), a crashed one is replaced,
and ``shutdown_workers`` stops them all when the plugin unloads.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import signal
import subprocess  # nosec B404  # starts the engine worker, no shell
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnisat_qgis.contract import contract

PROTOCOL_VERSION = contract.PROTOCOL_VERSION  # the engine's (engine/contract.py)
# Partial outputs of the engine are named ".<name>.omnisat-partial-<pid>-<host>-*" (engine.io.atomic):
# after a hard kill the client removes those of its own worker, never another run's.
PARTIAL_MARKER = ".omnisat-partial-"
SETTING_HINT = (
    "the OmniSat worker Python setting (Settings > Options > Processing > Providers > OmniSat) or OMNISAT_PYTHON"
)
TERMINATE_GRACE_S = 5.0
# Kept between runs: a dock's fit and preview, Processing runs one after another. Each idle worker
# holds the engine's imports (hundreds of MB), hence few, and not forever.
MAX_IDLE_WORKERS = 2
IDLE_TIMEOUT_S = 600.0


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


class ProgressLines:
    """Which progress texts to pass on where each one becomes a line of its own (qgis_process prints
    every text it is given): a text whose wording changes, and one of the same wording (its numbers
    aside, e.g. "Mapping windows (k/N)") once the progress has moved ten points or reached 100."""

    STEP = 10.0

    def __init__(self):
        self.wording: str | None = None
        self.percent = 0.0

    def wanted(self, percent: float, text: str) -> bool:
        wording = re.sub(r"\d+(?:[.,]\d+)*", "#", text)
        moved = abs(percent - self.percent) >= self.STEP or (percent >= 100.0 > self.percent)
        if wording == self.wording and not moved:
            return False
        self.wording, self.percent = wording, percent
        return True


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


def _reader(stream, sink: queue.Queue[str | None]) -> None:
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
            "lower the batch size or the window (tile) size, or map a smaller extent. Nothing was written.",
            text,
        )
    if code < 0:
        return WorkerError(
            f"The OmniSat engine worker was stopped by {_signal_name(-code)}. Nothing was written.", text
        )
    last = stderr_tail[-1] if stderr_tail else "no message"
    if not started:
        return WorkerError(
            f"The worker Python '{run.python}' (from {run.python_source}) exited with code {code} before the "
            f"engine started ({last}): is it a Python interpreter with the engine's requirements? Point "
            f"{SETTING_HINT} at one.",
            text,
        )
    return WorkerError(f"The OmniSat engine worker stopped unexpectedly (exit code {code}): {last}", text)


def _start(run: WorkerRun, serve: bool) -> _Worker:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(run.engine_root), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    # QGIS's own Python settings must not leak into a foreign interpreter.
    env.pop("PYTHONHOME", None)
    try:
        process = subprocess.Popen(  # nosec B603  # the chosen interpreter, fixed arguments
            [str(run.python), "-m", "engine", "worker", *(["--serve"] if serve else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
            cwd=run.cwd,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0,
        )
    except OSError as exc:
        raise WorkerError(f"Could not start the OmniSat worker Python '{run.python}': {exc.strerror or exc}.") from None
    return _Worker(process, serve)


class _Worker:
    """One engine worker process, its output read line by line in background threads."""

    def __init__(self, process: subprocess.Popen, serve: bool):
        self.process, self.serve = process, serve
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr_tail: deque = deque(maxlen=40)
        self.started = False  # the engine said hello: the interpreter is a Python that runs it
        self.answered = False  # a message about the job last sent arrived
        self.idle_since = 0.0
        self.readers = [
            threading.Thread(target=_reader, args=(process.stdout, self.lines), daemon=True),
            threading.Thread(target=_tail_reader, args=(process.stderr, self.stderr_tail), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, job: dict[str, Any]) -> None:
        """The job: one line to a serving worker; the whole of stdin to a one-job worker."""
        self.stderr_tail.clear()
        self.answered = False
        if self.serve:
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
        else:
            self.process.stdin.write(json.dumps(job))
            self.process.stdin.close()

    def follow(self, run: WorkerRun, callbacks: WorkerCallbacks, poll_s: float) -> dict[str, Any] | None:
        """The job's messages up to its result or error (returned), or None when the process ended first.
        Raises WorkerCancelled (the process stopped, its partial outputs removed) and, for a worker of
        another protocol, WorkerError."""
        while True:
            if callbacks.is_cancelled():
                self.close()
                remove_worker_partials(run.output_paths, self.process.pid)
                raise WorkerCancelled("Cancelled; no output was written.")
            try:
                line = self.lines.get(timeout=poll_s)
            except queue.Empty:
                continue
            if line is None:
                return None
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                callbacks.log(line.rstrip(), "info")
                continue
            kind = message.get("type")
            self.started = self.started or kind == "hello"
            self.answered = self.answered or kind != "hello"
            if kind == "hello" and message.get("protocol") != PROTOCOL_VERSION:
                self.close()
                raise WorkerError(
                    f"The engine at '{run.engine_root}' speaks worker protocol {message.get('protocol')}, "
                    f"this plugin speaks {PROTOCOL_VERSION}: update the plugin and the engine together."
                )
            if kind == "progress":
                callbacks.progress(float(message.get("percent", 0.0)), str(message.get("message", "")))
            elif kind == "log":
                callbacks.log(str(message.get("message", "")), str(message.get("level", "info")))
            elif kind in ("result", "error"):
                return message

    def close(self, waiting: bool = False) -> None:
        """Stop the process and its readers. ``waiting``: a serving worker between jobs, which ends by
        itself when its stdin closes; otherwise it is terminated (it removes its partial outputs)."""
        if waiting and self.serve and self.alive():
            try:
                self.process.stdin.close()
                self.process.wait(TERMINATE_GRACE_S)
            except (OSError, subprocess.TimeoutExpired):
                pass
        stop_process(self.process)
        for reader in self.readers:
            reader.join(timeout=2)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            try:
                stream.close()
            except OSError:
                pass


def _outcome(run: WorkerRun, worker: _Worker, final: dict[str, Any] | None) -> dict[str, Any]:
    """The result message, or the error a person reads (the run's partial outputs removed)."""
    if final is None:
        code = worker.process.wait()
        worker.close()
        remove_worker_partials(run.output_paths, worker.process.pid)
        raise _explain_exit(run, code, worker.stderr_tail, worker.started)
    if final["type"] == "error":
        remove_worker_partials(run.output_paths, worker.process.pid)
        error = WorkerCancelled if final.get("kind") == "cancelled" else WorkerError
        raise error(str(final.get("message", "unknown error")), str(final.get("detail", "")))
    return final


def run_worker(
    run: WorkerRun, callbacks: WorkerCallbacks | None = None, poll_s: float = 0.1, reuse: bool = True
) -> dict[str, Any]:
    """Run one job; return the worker's result message. Raise WorkerError / WorkerCancelled.

    ``reuse``: in a worker of the shared pool, kept between runs (imports and model set-up paid
    once); False: in a process of its own that ends with the job (e.g. verifying a new environment).
    """
    callbacks = callbacks or WorkerCallbacks()
    if reuse:
        return POOL.run(run, callbacks, poll_s)
    worker = _start(run, serve=False)
    try:
        worker.send(run.job())
    except BrokenPipeError:
        pass  # the worker died at start; its exit code and stderr explain why
    final = worker.follow(run, callbacks, poll_s)
    if final is not None:
        worker.process.wait()
        worker.close()
    return _outcome(run, worker, final)


class WorkerPool:
    """Serving workers reused between runs: one per concurrent run, at most ``max_idle`` kept waiting,
    each for at most ``idle_timeout_s``. A worker that crashed, was cancelled or failed internally
    is never reused: the next run starts a fresh one."""

    def __init__(self, max_idle: int = MAX_IDLE_WORKERS, idle_timeout_s: float = IDLE_TIMEOUT_S):
        self.max_idle, self.idle_timeout_s = max_idle, idle_timeout_s
        self._lock = threading.Lock()
        self._idle: list[tuple[tuple, _Worker]] = []
        self._busy: set[_Worker] = set()

    @staticmethod
    def _key(run: WorkerRun) -> tuple:
        # The environment too: a worker sees the variables of its start (proxies, TMPDIR, OMNISAT_*).
        return str(run.python), str(run.engine_root), run.cwd, tuple(sorted(os.environ.items()))

    def _take(self, key: tuple) -> _Worker | None:
        """An idle, living worker for ``key``; the stale ones (expired, dead, another setting) stopped."""
        now, found, stale, keep = time.monotonic(), None, [], []
        with self._lock:
            for k, worker in self._idle:
                usable = worker.alive() and now - worker.idle_since < self.idle_timeout_s
                if found is None and k == key and usable:
                    found = worker
                elif usable and k != key:
                    keep.append((k, worker))
                else:
                    stale.append(worker)
            self._idle = keep
            if found is not None:
                self._busy.add(found)
        for worker in stale:
            worker.close(waiting=True)
        return found

    def _release(self, key: tuple, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
            kept = worker.alive() and len(self._idle) < self.max_idle
            if kept:
                worker.idle_since = time.monotonic()
                self._idle.append((key, worker))
        if not kept:
            worker.close(waiting=True)

    def _drop(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
        worker.close()

    def _started(self, run: WorkerRun) -> _Worker:
        worker = _start(run, serve=True)
        with self._lock:
            self._busy.add(worker)
        return worker

    def _follow(self, worker: _Worker, run: WorkerRun, callbacks: WorkerCallbacks, poll_s: float):
        try:
            worker.send(run.job())
        except OSError:
            pass  # the worker died; its exit code and stderr explain why
        try:
            return worker.follow(run, callbacks, poll_s)
        except BaseException:  # cancelled (the worker already stopped), another protocol, an interrupt
            self._drop(worker)
            raise

    def run(self, run: WorkerRun, callbacks: WorkerCallbacks, poll_s: float) -> dict[str, Any]:
        key = self._key(run)
        reused = self._take(key)
        worker = reused or self._started(run)
        final = self._follow(worker, run, callbacks, poll_s)
        if final is None and worker is reused and not worker.answered:
            # It died while waiting (killed, or out of memory) before it read this job: a fresh one takes it.
            self._drop(worker)
            worker = self._started(run)
            final = self._follow(worker, run, callbacks, poll_s)
        if final is not None and not (final["type"] == "error" and final.get("kind") in ("cancelled", "internal")):
            self._release(key, worker)
            return _outcome(run, worker, final)
        if final is not None:  # the worker ends after such an error: let it finish removing its partials
            try:
                worker.process.wait(TERMINATE_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        with self._lock:
            self._busy.discard(worker)
        return _outcome(run, worker, final)  # raises; a worker that ended is closed

    def shutdown(self) -> None:
        """Stop every worker, waiting or running (the plugin unloads, or its environment is replaced)."""
        with self._lock:
            waiting, busy = [w for _, w in self._idle], list(self._busy)
            self._idle, self._busy = [], set()
        for worker in busy:
            worker.close()
        for worker in waiting:
            worker.close(waiting=True)


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


POOL = WorkerPool()
atexit.register(POOL.shutdown)  # qgis_process and scripts: no worker outlives them


def shutdown_workers() -> None:
    """Stop the pool's workers: when QGIS unloads the plugin, or before the environment is replaced."""
    POOL.shutdown()
