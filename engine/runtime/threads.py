"""How many CPU threads the engine's torch uses: the user's setting, else the cores free now.

Torch's default is one thread per core, busy or not. On cores that other programs keep
busy, every parallel operation then waits for its slowest thread, which the system has
descheduled: 2 threads on 2 loaded cores ran a small area 4 to 7 times slower than 1
thread. So by default the engine counts the cores it may run on (its CPU affinity) that
are idle right now, and uses that many (at least one). A thread count the user gives
(the job's or the worker's ``"threads"``, ``--threads``, ``OMP_NUM_THREADS``) always wins.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from engine.errors import EngineError

SAMPLE_SECONDS = 0.05  # long enough to see which cores are busy, short against start-up


def choose_threads(requested: int | None, cores: int, busy: float) -> int:
    """Threads for torch: ``requested`` if given, else the ``cores`` not ``busy``, rounded
    half up (one thread too few costs at most its share; one too many stalls every
    operation), between 1 and ``cores``."""
    if requested is not None:
        if requested < 1:
            raise EngineError(f"threads must be 1 or more, got {requested}: leave it unset to use the free cores.")
        return requested
    return max(1, min(cores, math.floor(cores - busy + 0.5)))


def usable_cpus() -> set[int]:
    """The CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def _cpu_times(cpus: set[int]) -> tuple[float, float] | None:
    """(idle, total) jiffies summed over ``cpus`` from /proc/stat, None where it does not exist."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    idle = total = 0.0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [float(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle += values[3] + values[4]
        total += sum(values)
    return idle, total


def busy_cores(cpus: set[int], seconds: float = SAMPLE_SECONDS) -> float:
    """How many of ``cpus`` are busy now: their non-idle share over ``seconds``, times their
    number; where /proc/stat is missing, the one-minute load average."""
    before = _cpu_times(cpus)
    if before is None:
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0
    time.sleep(seconds)
    after = _cpu_times(cpus)
    total = after[1] - before[1]
    if total <= 0:
        return 0.0
    return len(cpus) * (1.0 - (after[0] - before[0]) / total)


def default_threads() -> int:
    cpus = usable_cpus()
    return choose_threads(None, len(cpus), busy_cores(cpus))


def apply_default_threads() -> int | None:
    """At the start of a command or worker job: torch threads from the free cores, unless the
    user set ``OMP_NUM_THREADS``. Returns the count chosen (None when the user's stands).
    A job's own ``threads`` is applied later and overrides this."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    threads = default_threads()
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:  # read by torch when it starts: no need to import it here
        os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Torch runs on ``count`` threads in this block, then on as many as before."""
    import torch  # lazy: the QGIS process imports this module, never torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
