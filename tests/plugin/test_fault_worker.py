"""Fault suite, plugin side: a worker that is not a Python, a worker killed by SIGKILL, two runs on
one output folder, and what qgis_process does with an output on its input or a misspelt parameter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.io.atomic import TEMP_MARKER
from engine.runtime.hold import held, wait_until_held
from omnisat_qgis.paths import engine_root
from omnisat_qgis.worker_client import WorkerCallbacks, WorkerError, WorkerRun, run_worker
from tests.engine.rasters import write_geotiff
from tests.plugin.test_qgis_process import qgis_env, qgis_process  # noqa: F401 - the fixture is used below

ROOT = Path(__file__).resolve().parents[2]


def index_run(source: Path, out: Path, python: str = sys.executable, **params) -> WorkerRun:
    return WorkerRun(
        python=Path(python),
        engine_root=engine_root(),
        operation="normalized-index",
        params={"input": str(source), "output": str(out), "band_a": 1, "band_b": 2, **params},
        output_paths=[str(out)],
        python_source="the environment variable OMNISAT_PYTHON",
    )


def worker_children() -> list[int]:
    """Pids of this process's children that run the engine worker (Linux /proc)."""
    pids = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(int(pid))
    return pids


def test_an_interpreter_that_is_not_python_is_named_with_the_setting(small_raster: Path, tmp_path: Path):
    with pytest.raises(WorkerError) as caught:
        run_worker(index_run(small_raster, tmp_path / "o.tif", python="/bin/false"))
    message = str(caught.value)
    assert "'/bin/false' (from the environment variable OMNISAT_PYTHON)" in message
    assert "before the engine started" in message and "OMNISAT_PYTHON" in message


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the worker through /proc")
def test_a_worker_killed_by_sigkill_says_out_of_memory_and_leaves_nothing(
    slow_raster: Path, tmp_path: Path, hold: Path
):
    out = tmp_path / "o.tif"
    killed = []

    def kill_once(percent, message):
        if not killed:
            wait_until_held(hold)  # the worker waits mid-run, its partial file open
            killed.extend(worker_children())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    with pytest.raises(
        WorkerError,
        match="killed \\(SIGKILL\\), often because the machine ran out of memory: lower the batch size or the window",
    ):
        run_worker(index_run(slow_raster, out), WorkerCallbacks(progress=kill_once))
    assert killed == held(hold)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hold", "slow.tif"]  # its partial removed by the client


def test_a_failing_run_leaves_a_concurrent_runs_partial_alone(slow_raster: Path, tmp_path: Path, hold: Path):
    out = tmp_path / "ndvi.tif"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine",
            "normalized-index",
            str(slow_raster),
            str(out),
            "--band-a",
            "1",
            "--band-b",
            "2",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until_held(hold) == [first.pid]  # the first run waits mid-write while the second one fails
        partials = list(tmp_path.glob(f".ndvi.tif{TEMP_MARKER}*"))
        assert partials, "the first run should be writing under a temporary name"
        # The same output, as two Processing runs would have it; this one fails and its client cleans up.
        with pytest.raises(WorkerError, match="band 99"):
            run_worker(index_run(slow_raster, out, band_a=99))
        assert partials[0].exists()
    finally:
        (hold / "release").touch()
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    with rasterio.open(out) as ds:
        assert ds.shape == (256 * 60, 1024) and np.isfinite(ds.read(1, window=((0, 8), (0, 8)))).all()
    assert not list(tmp_path.glob(f".*{TEMP_MARKER}*"))


@pytest.mark.qgis_process
def test_qgis_process_refuses_an_output_on_its_input(qgis_env, tmp_path: Path):  # noqa: F811
    raster = write_geotiff(tmp_path / "in.tif", np.full((4, 10, 10), 9, np.uint16))
    original = raster.read_bytes()
    done = qgis_process(qgis_env, "run", "omnisat:normalizedindex", "--", f"INPUT={raster}", f"OUTPUT={raster}")
    assert done.returncode != 0
    assert f"The output '{raster}' (output) is also the input '{raster}' (input)" in done.stdout + done.stderr
    assert raster.read_bytes() == original


@pytest.mark.qgis_process
def test_qgis_process_refuses_a_misspelt_parameter(qgis_env, tmp_path: Path):  # noqa: F811
    raster = write_geotiff(tmp_path / "in.tif", np.full((4, 10, 10), 9, np.uint16))
    out = tmp_path / "o.tif"
    done = qgis_process(qgis_env, "run", "omnisat:normalizedindex", "--", f"INPUT={raster}", "BANDA=7", f"OUTPUT={out}")
    assert done.returncode != 0
    assert "has no parameter BANDA (did you mean BAND_A?)" in done.stdout + done.stderr
    assert not out.exists()
