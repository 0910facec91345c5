"""Fault suite: partial files of a run stopped with SIGTERM or SIGKILL, and of concurrent runs.

SIGTERM: the CLI, like the worker, removes its partial file. SIGKILL: nothing can run, so the
next run writing to that folder removes the partials of processes that are gone, and never those
of a live one. A failing run never touches a concurrent run's partial file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.io.atomic import HOST_TAG, TEMP_MARKER, partial_writer, sweep_partial_outputs, temporary_name
from engine.runtime.registry import run_operation
from tests.engine.rasters import write_geotiff

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def big(tmp_path: Path) -> Path:
    """Enough row strips that a run is still writing when it is stopped."""
    (tmp_path / "inputs").mkdir()
    rng = np.random.default_rng(0)
    return write_geotiff(tmp_path / "inputs" / "big.tif", rng.integers(1, 1000, (2, 256 * 40, 512), dtype=np.uint16))


def start_index(source: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "normalized-index", str(source), str(out), "--band-a", "1", "--band-b", "2"],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_partial(process: subprocess.Popen, out: Path, timeout: float = 60) -> Path:
    """Freeze the run as soon as its partial file exists; return that file."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = list(out.parent.glob(f".{out.name}{TEMP_MARKER}*"))
        if found:
            os.kill(process.pid, signal.SIGSTOP)
            return found[0]
        if process.poll() is not None:
            break
        time.sleep(0.005)
    process.kill()
    pytest.fail(f"no partial file appeared ({process.communicate()[1][-500:]})")


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_partial_names_carry_the_writer_pid_and_host(tmp_path: Path):
    assert partial_writer(temporary_name(tmp_path / "a.tif")) == (os.getpid(), HOST_TAG)
    assert partial_writer(tmp_path / "a.tif") is None


def test_the_sweep_removes_only_partials_of_dead_processes(tmp_path: Path):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        gone = tmp_path / f".map.tif{TEMP_MARKER}{dead_pid()}-{HOST_TAG}-0badc0de.tif"
        live = tmp_path / f".map.tif{TEMP_MARKER}{sleeper.pid}-{HOST_TAG}-0123abcd.tif"
        # The same dead pid, written by another machine into a shared folder: its process is not ours to judge.
        elsewhere = tmp_path / f".map.tif{TEMP_MARKER}{dead_pid()}-{'0' * 8 if HOST_TAG != '0' * 8 else '1' * 8}-00.tif"
        user = tmp_path / ".map.tif.backup"
        for path in (gone, live, elsewhere, user):
            path.write_bytes(b"x")
        assert sweep_partial_outputs(tmp_path) == [gone]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, user.name])
    finally:
        sleeper.kill()
        sleeper.wait()


def test_sigterm_of_the_cli_leaves_nothing(big: Path, tmp_path: Path):
    out = tmp_path / "ndvi.tif"
    process = start_index(big, out)
    wait_for_partial(process, out)
    os.kill(process.pid, signal.SIGTERM)
    os.kill(process.pid, signal.SIGCONT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "cancelled: no output was written" in stderr
    assert not out.exists() and not list(tmp_path.glob(f".ndvi.tif{TEMP_MARKER}*"))


def test_after_sigkill_the_next_run_in_the_folder_removes_the_partial(big: Path, tmp_path: Path):
    out = tmp_path / "ndvi.tif"
    process = start_index(big, out)
    partial = wait_for_partial(process, out)
    process.kill()  # SIGKILL: nothing can clean up
    process.wait()
    assert partial.exists()
    small = write_geotiff(tmp_path / "inputs" / "small.tif", np.full((2, 8, 8), 5, np.uint16))
    run_operation(
        "normalized-index", {"input": str(small), "output": str(tmp_path / "other.tif"), "band_a": 1, "band_b": 2}
    )
    assert not partial.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs", "other.tif"]


def test_a_signal_rewrapped_by_a_library_still_reads_as_cancelled(monkeypatch, capsys):
    # rasterio turns an exception raised inside its nodata check into a ValueError: after a
    # SIGTERM any failure is the cancel, not an internal error.
    import engine.errors
    import engine.runtime.registry
    from engine.runtime.cli import main

    def interrupted(*args, **kwargs):
        engine.errors._termination_signal = 15
        raise ValueError("Given nodata value, -9999.0, is beyond the valid range of its data type, float32.")

    monkeypatch.setattr(engine.runtime.registry, "run_operation", interrupted)
    monkeypatch.setattr(engine.errors, "_termination_signal", None)
    assert main(["stats", "missing.tif"]) == 130
    assert "cancelled" in capsys.readouterr().err


def test_without_a_signal_an_internal_failure_is_not_called_a_cancel(monkeypatch):
    import engine.errors
    import engine.runtime.registry
    from engine.runtime.cli import main

    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(engine.runtime.registry, "run_operation", broken)
    monkeypatch.setattr(engine.errors, "_termination_signal", None)
    with pytest.raises(ValueError, match="a bug"):
        main(["stats", "missing.tif"])
