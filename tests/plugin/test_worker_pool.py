"""The persistent workers of worker_client.WorkerPool against the real engine worker (--serve)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.runtime.hold import held, wait_until_held
from omnisat_qgis.paths import engine_root
from omnisat_qgis.worker_client import WorkerCallbacks, WorkerCancelled, WorkerError, WorkerPool, WorkerRun, run_worker


def index_run(source: Path, out: Path, **params) -> WorkerRun:
    return WorkerRun(
        python=Path(sys.executable),
        engine_root=engine_root(),
        operation="normalized-index",
        params={"input": str(source), "output": str(out), "band_a": 1, "band_b": 2, **params},
        output_paths=[str(out)],
    )


@pytest.fixture
def pool():
    pool = WorkerPool()
    yield pool
    pool.shutdown()


def waiting_pids(pool: WorkerPool) -> list[int]:
    return [worker.process.pid for _, worker in pool._idle]


def test_many_jobs_run_in_one_process_with_the_one_shot_results(pool, small_raster: Path, tmp_path: Path):
    pids = []
    for k in range(4):
        out = tmp_path / f"warm_{k}.tif"
        message = pool.run(index_run(small_raster, out, band_a=1 + k % 2), WorkerCallbacks(), 0.05)
        assert message["outputs"]["output"] == str(out)
        pids.append(waiting_pids(pool))
    assert len(set(map(tuple, pids))) == 1 and len(pids[0]) == 1  # the same single process every time
    cold = tmp_path / "cold.tif"
    run_worker(index_run(small_raster, cold), reuse=False)
    with rasterio.open(cold) as a, rasterio.open(tmp_path / "warm_0.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.profile == b.profile


def test_an_input_error_keeps_the_worker_for_the_next_job(pool, small_raster: Path, tmp_path: Path):
    pool.run(index_run(small_raster, tmp_path / "a.tif"), WorkerCallbacks(), 0.05)
    first = waiting_pids(pool)
    with pytest.raises(WorkerError, match="does not exist: check the path"):
        pool.run(index_run(tmp_path / "missing.tif", tmp_path / "b.tif"), WorkerCallbacks(), 0.05)
    pool.run(index_run(small_raster, tmp_path / "c.tif"), WorkerCallbacks(), 0.05)
    assert waiting_pids(pool) == first


def test_a_crashed_worker_is_replaced(pool, small_raster: Path, slow_raster: Path, tmp_path: Path, hold: Path):
    pool.run(index_run(small_raster, tmp_path / "a.tif"), WorkerCallbacks(), 0.05)
    [first] = waiting_pids(pool)
    os.kill(first, signal.SIGKILL)  # dies while waiting for a job
    pool.run(index_run(small_raster, tmp_path / "b.tif"), WorkerCallbacks(), 0.05)
    [second] = waiting_pids(pool)
    assert second != first and (tmp_path / "b.tif").is_file()

    def kill(percent, message):  # dies mid-job: the job fails clearly, the next one gets a fresh worker
        assert wait_until_held(hold) == [second]  # held after its first strip (engine/runtime/hold.py)
        os.kill(second, signal.SIGKILL)

    with pytest.raises(WorkerError, match="killed \\(SIGKILL\\)"):
        pool.run(index_run(slow_raster, tmp_path / "c.tif"), WorkerCallbacks(progress=kill), 0.05)
    assert waiting_pids(pool) == [] and not (tmp_path / "c.tif").exists()
    assert not [p for p in tmp_path.iterdir() if ".omnisat-partial-" in p.name]
    pool.run(index_run(small_raster, tmp_path / "d.tif"), WorkerCallbacks(), 0.05)
    assert waiting_pids(pool) not in ([], [second])


def test_cancel_kills_the_worker_and_leaves_nothing(
    pool, small_raster: Path, slow_raster: Path, tmp_path: Path, hold: Path
):
    pool.run(index_run(small_raster, tmp_path / "warm.tif"), WorkerCallbacks(), 0.05)
    [pid] = waiting_pids(pool)
    seen = []
    with pytest.raises(WorkerCancelled):
        pool.run(
            index_run(slow_raster, tmp_path / "never.tif"),
            WorkerCallbacks(progress=lambda p, m: seen.append(p), is_cancelled=lambda: held(hold) == [pid]),
            0.05,
        )
    assert seen and 0 < seen[-1] < 100  # cancelled mid-run: the worker was held after its first strip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hold", "slow.tif", "small.tif", "warm.tif"]
    assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()
    assert waiting_pids(pool) == []


def test_shutdown_stops_waiting_workers(small_raster: Path, tmp_path: Path):
    pool = WorkerPool()
    pool.run(index_run(small_raster, tmp_path / "a.tif"), WorkerCallbacks(), 0.05)
    [worker] = [w for _, w in pool._idle]
    pool.shutdown()
    assert worker.process.poll() == 0  # ended by itself when its stdin closed
    assert pool._idle == []


def test_a_worker_past_its_idle_time_is_replaced(small_raster: Path, tmp_path: Path):
    pool = WorkerPool(idle_timeout_s=0.0)
    try:
        pool.run(index_run(small_raster, tmp_path / "a.tif"), WorkerCallbacks(), 0.05)
        [first] = [w for _, w in pool._idle]
        pool.run(index_run(small_raster, tmp_path / "b.tif"), WorkerCallbacks(), 0.05)
        assert first.process.poll() == 0 and waiting_pids(pool) != [first.process.pid]
    finally:
        pool.shutdown()


def test_a_changed_environment_gets_a_fresh_worker(pool, small_raster: Path, tmp_path: Path, monkeypatch):
    pool.run(index_run(small_raster, tmp_path / "a.tif"), WorkerCallbacks(), 0.05)
    [first] = [w for _, w in pool._idle]
    monkeypatch.setenv("OMNISAT_TEST_SETTING", "changed")  # e.g. a proxy set after the first run
    pool.run(index_run(small_raster, tmp_path / "b.tif"), WorkerCallbacks(), 0.05)
    pids = waiting_pids(pool)
    assert len(pids) == 2 and pids[0] == first.process.pid  # the second job ran in a new worker
