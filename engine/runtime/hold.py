"""A test hook that holds a run at a known point: ``OMNISAT_TEST_HOLD=FOLDER``.

When a loop of several steps (``Reporter.steps``) has done its first step and reported it, the run
is mid-way: its outputs are open under their temporary names and part-written. There the process
writes ``FOLDER/held-PID`` and waits until ``FOLDER/release`` exists, or until it is cancelled
(SIGTERM) or killed. Tests cancel or kill a run there instead of racing its speed on a loaded
machine. Unset, as it always is outside tests, it costs one environment lookup per loop step.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HOLD_ENV = "OMNISAT_TEST_HOLD"
HOLD_LIMIT_S = 600.0  # a test that never releases nor stops the run still ends
POLL_S = 0.01


def hold_here() -> None:
    folder = os.environ.get(HOLD_ENV)
    if not folder:
        return
    release = Path(folder) / "release"
    if release.exists():
        return
    (Path(folder) / f"held-{os.getpid()}").write_text(str(os.getpid()))
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(POLL_S)  # a signal handler (SIGTERM -> Cancelled) runs between these sleeps


def held(folder: Path) -> list[int]:
    """Process ids the hook holds in ``folder`` (for tests)."""
    return sorted(int(p.name.removeprefix("held-")) for p in folder.glob("held-*"))


def wait_until_held(folder: Path, count: int = 1, timeout_s: float = 300.0) -> list[int]:
    """Wait until ``count`` processes are held in ``folder`` (for tests); their ids."""
    deadline = time.monotonic() + timeout_s
    while len(pids := held(folder)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{count} run(s) should have reached the hold point in {timeout_s:.0f} s, {len(pids)} did"
            )
        time.sleep(POLL_S)
    return pids
