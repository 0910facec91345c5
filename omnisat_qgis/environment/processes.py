"""Run one step's process with its output streamed line by line, Cancel, and a stall timeout."""

from __future__ import annotations

import queue
import subprocess  # nosec B404  # runs pip with an argument list, no shell
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from omnisat_qgis.worker_client import stop_process

TAIL_LINES = 25


@dataclass
class StepOutcome:
    code: int | None  # None: stopped (cancelled or stalled)
    tail: list[str]
    stalled: bool = False
    cancelled: bool = False


def _pump(stream, sink: queue.Queue[str | None]) -> None:
    for line in iter(stream.readline, ""):
        sink.put(line.rstrip("\r\n"))
    sink.put(None)


def run_streaming(
    command: list[str],
    env: dict[str, str],
    on_line: Callable[[str], None],
    is_cancelled: Callable[[], bool],
    stall_timeout_s: float,
    cwd: str | None = None,
) -> StepOutcome:
    """Run ``command``; every output line goes to ``on_line``. A process that prints
    nothing for ``stall_timeout_s`` seconds is stopped (pip stuck on a dead connection)."""
    process = subprocess.Popen(  # nosec B603  # argument list, no shell
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        cwd=cwd,
        creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True)
    reader.start()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    last_output = time.monotonic()
    outcome = None
    while outcome is None:
        if is_cancelled():
            outcome = StepOutcome(None, list(tail), cancelled=True)
            break
        if time.monotonic() - last_output > stall_timeout_s:
            outcome = StepOutcome(None, list(tail), stalled=True)
            break
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            outcome = StepOutcome(process.wait(), list(tail))
            break
        last_output = time.monotonic()
        tail.append(line)
        on_line(line)
    if outcome.code is None:
        stop_process(process)
    reader.join(timeout=2)
    process.stdout.close()
    return outcome
