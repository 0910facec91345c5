"""The plugin's worker client (QGIS-free) against the real engine worker."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from omnisat_qgis.paths import engine_root
from omnisat_qgis.worker_client import WorkerCallbacks, WorkerCancelled, WorkerError, WorkerRun, run_worker


def make_run(params, python=sys.executable, outputs=()):
    return WorkerRun(
        python=Path(python),
        engine_root=engine_root(),
        operation="normalized-index",
        params=params,
        output_paths=list(outputs),
    )


def test_progress_logs_and_result(small_raster: Path, tmp_path: Path):
    out = tmp_path / "o.tif"
    progress, logs = [], []
    message = run_worker(
        make_run({"input": str(small_raster), "output": str(out)}, outputs=[str(out)]),
        WorkerCallbacks(progress=lambda p, m: progress.append(p), log=lambda m, lv: logs.append(m)),
    )
    assert message["type"] == "result" and message["outputs"]["output"] == str(out)
    assert progress[-1] == 100.0 and out.exists()
    assert any("Wrote" in line for line in logs)


def test_cancel_terminates_and_leaves_nothing(slow_raster: Path, tmp_path: Path):
    out = tmp_path / "never.tif"
    seen = []
    callbacks = WorkerCallbacks(progress=lambda p, m: seen.append(p), is_cancelled=lambda: bool(seen))
    with pytest.raises(WorkerCancelled):
        run_worker(
            make_run({"input": str(slow_raster), "output": str(out), "band_a": 1, "band_b": 2}, outputs=[str(out)]),
            callbacks,
        )
    assert seen and seen[-1] < 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow.tif"]


def test_engine_error_is_passed_through(tmp_path: Path):
    with pytest.raises(WorkerError, match="does not exist: check the path") as info:
        run_worker(make_run({"input": str(tmp_path / "missing.tif"), "output": str(tmp_path / "o.tif")}))
    assert "Traceback" not in str(info.value)


def test_missing_interpreter(tmp_path: Path):
    with pytest.raises(WorkerError, match="Could not start the OmniSat worker Python"):
        run_worker(make_run({}, python=tmp_path / "no-python"))


def test_interpreter_without_torch(small_raster: Path, tmp_path: Path):
    # Debian's own Python has numpy and rasterio but no torch.
    system = Path("/usr/bin/python3")
    probe = __import__("subprocess").run([str(system), "-c", "import torch"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("the system Python has torch")
    with pytest.raises(WorkerError, match="lacks torch") as info:
        run_worker(make_run({"input": str(small_raster), "output": str(tmp_path / "o.tif")}, python=system))
    assert str(system) in str(info.value)
