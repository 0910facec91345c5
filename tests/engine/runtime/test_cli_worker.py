"""The engine's command line and worker protocol, on small rasters and the real eo-learn scene."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.errors import EngineError
from engine.runtime.cli import main
from engine.runtime.hold import HOLD_ENV, wait_until_held
from engine.runtime.registry import run_operation
from tests.engine.rasters import eolearn_reference_scene, write_geotiff

ROOT = Path(__file__).resolve().parents[3]


def engine_cmd(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


@pytest.fixture
def four_band(tmp_path: Path) -> Path:
    data = np.stack([np.full((20, 30), v, np.uint16) for v in (10, 20, 30, 50)])
    data[:, 0, 0] = 0
    data[2, 1, 1] = 0  # band 3 nodata alone
    data[2:4, 2, 2] = 0  # would divide by zero too
    return write_geotiff(tmp_path / "four.tif", data, nodata=0)


def test_version_json():
    out = engine_cmd("version", "--json")
    assert out.returncode == 0
    info = json.loads(out.stdout)
    assert info["protocol"] == 1 and info["engine"]


def test_every_command_has_help():
    import argparse

    from engine.runtime.cli import build_parser

    assert engine_cmd("--help").returncode == 0
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = list(subparsers.choices)
    assert {"version", "worker", "stats", "normalized-index"} <= set(commands)
    for command in commands:
        result = engine_cmd(command, "--help")
        assert result.returncode == 0, (command, result.stderr)
        assert "usage:" in result.stdout


def test_normalized_index_values_grid_and_nodata(four_band: Path, tmp_path: Path):
    out = tmp_path / "ndvi.tif"
    assert main(["normalized-index", str(four_band), str(out), "--band-a", "4", "--band-b", "3", "--quiet"]) == 0
    with rasterio.open(four_band) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert (dst.width, dst.height, dst.count, dst.dtypes[0]) == (30, 20, 1, "float32")
        index = dst.read(1)
        assert dst.nodata == -9999.0  # input nodata 0 is a valid index value
    assert index[5, 5] == pytest.approx((50 - 30) / (50 + 30))
    assert index[0, 0] == -9999.0 and index[1, 1] == -9999.0 and index[2, 2] == -9999.0
    assert (index != -9999.0).sum() == 20 * 30 - 3


def test_index_on_real_sentinel2(shared_data: Path, tmp_path: Path):
    scene = eolearn_reference_scene(shared_data, tmp_path / "s2.tif")
    out = tmp_path / "ndvi.tif"
    result = run_operation("normalized-index", {"input": str(scene), "output": str(out), "band_a": 8, "band_b": 4})
    assert result["output"] == str(out)
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        nir, red = src.read(8).astype(np.float64), src.read(4).astype(np.float64)
        expected = (nir - red) / (nir + red)
        assert dst.crs.to_epsg() == 32633 and dst.transform == src.transform
        np.testing.assert_allclose(dst.read(1), expected, rtol=1e-6)
    # Real signal, not just arithmetic: forest is greener than artificial land in August.
    lulc = np.load(shared_data / "eolearn_patch" / "TestEOPatch" / "mask_timeless" / "LULC.npy")[..., 0]
    with rasterio.open(out) as dst:
        ndvi = dst.read(1)
    assert ndvi[lulc == 2].mean() > ndvi[lulc == 8].mean() + 0.05


def test_stats_json(four_band: Path, capsys):
    assert main(["stats", str(four_band), "--json", "--quiet"]) == 0
    stats = json.loads(capsys.readouterr().out)
    band3 = stats["bands"][2]
    assert band3["valid_pixels"] == 600 - 3 and band3["min"] == band3["max"] == 30
    assert stats["crs"] == "EPSG:32633"


def test_a_command_says_it_started_before_the_engine_loads(four_band: Path, capsys):
    """The first line comes before the operation modules (and PyTorch) load: seconds on a loaded machine."""
    assert main(["stats", str(four_band), "--json"]) == 0
    assert capsys.readouterr().err.splitlines()[0] == "stats: loading the engine"
    assert main(["stats", str(four_band), "--json", "--quiet"]) == 0
    assert "loading the engine" not in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "not_raster", "empty_file", "zero_bands"])
def test_bad_inputs_have_clear_messages(case: str, tmp_path: Path):
    path = tmp_path / f"{case}.tif"
    if case == "not_raster":
        path.write_text("this is not a raster")
    elif case == "empty_file":
        path.write_bytes(b"")
    elif case == "zero_bands":  # a container (HDF5 with two arrays): GDAL sees 0 bands
        import h5py

        path = tmp_path / "container.h5"
        with h5py.File(path, "w") as h5:
            h5["a"], h5["b"] = np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32)
    result = engine_cmd("normalized-index", str(path), str(tmp_path / "out.tif"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(path) in result.stderr
    expected = {
        "missing": "does not exist",
        "not_raster": "not a raster",
        "empty_file": "0 bytes",
        "zero_bands": "no bands of its own: it is a container of 2 subdatasets",
    }[case]
    assert expected in result.stderr
    assert not (tmp_path / "out.tif").exists()


def test_output_folder_missing(four_band: Path, tmp_path: Path):
    out = tmp_path / "no" / "such" / "out.tif"
    with pytest.raises(EngineError, match="does not exist: create"):
        run_operation("normalized-index", {"input": str(four_band), "output": str(out)})


def test_band_out_of_range(four_band: Path, tmp_path: Path):
    with pytest.raises(EngineError, match="band_a is band 7, but .* has bands 1 to 4"):
        run_operation("normalized-index", {"input": str(four_band), "output": str(tmp_path / "o.tif"), "band_a": 7})


def worker_messages(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_worker_protocol_success(four_band: Path, tmp_path: Path):
    out = tmp_path / "w.tif"
    job = {"protocol": 1, "operation": "normalized-index", "params": {"input": str(four_band), "output": str(out)}}
    result = engine_cmd("worker", stdin=json.dumps(job))
    messages = worker_messages(result.stdout)
    assert result.returncode == 0, result.stderr
    assert messages[0]["type"] == "hello" and messages[0]["protocol"] == 1
    assert any(m["type"] == "progress" and m["percent"] == 100 for m in messages)
    assert messages[-1]["type"] == "result" and messages[-1]["outputs"] == {"output": str(out)}
    assert out.exists()


@pytest.mark.parametrize(
    "job, expected",
    [
        ("not json", "not valid JSON"),
        ("", "no job"),
        (json.dumps({"protocol": 99, "operation": "stats", "params": {}}), "protocol 99"),
        (json.dumps({"operation": "nope", "params": {}}), "Unknown operation 'nope'"),
        (
            json.dumps({"operation": "stats", "params": {"input": "x", "bogus": 1}}),
            "Unknown parameter(s) for 'stats': bogus",
        ),
        (json.dumps({"operation": "stats", "params": {}}), "Missing required parameter 'input'"),
    ],
)
def test_worker_errors_are_messages(job: str, expected: str):
    result = engine_cmd("worker", stdin=job)
    messages = worker_messages(result.stdout)
    assert result.returncode == 1
    assert messages[-1]["type"] == "error" and messages[-1]["kind"] == "input"
    assert expected in messages[-1]["message"]


def test_serving_worker_answers_each_line_in_order(four_band: Path, tmp_path: Path):
    jobs = [
        {"operation": "normalized-index", "params": {"input": str(four_band), "output": str(tmp_path / "a.tif")}},
        {"operation": "stats", "params": {}},  # an input error ends this job only
        {"operation": "normalized-index", "params": {"input": str(four_band), "output": str(tmp_path / "b.tif")}},
    ]
    result = engine_cmd("worker", "--serve", stdin="\n".join(json.dumps(j) for j in jobs) + "\n\n")
    assert result.returncode == 0, result.stderr
    messages = worker_messages(result.stdout)
    assert [m["type"] for m in messages].count("hello") == 1 and messages[0]["type"] == "hello"
    finals = [m for m in messages if m["type"] in ("result", "error")]
    assert [m["type"] for m in finals] == ["result", "error", "result"]
    assert "Missing required parameter 'input'" in finals[1]["message"]
    assert finals[2]["outputs"] == {"output": str(tmp_path / "b.tif")}
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_serving_worker_ends_after_an_internal_error(tmp_path: Path, monkeypatch):
    import io

    from engine.runtime import worker

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("engine.runtime.registry.run_operation", broken)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # the worker points it at stderr: restored after the test
    out = io.StringIO()
    jobs = io.StringIO('{"operation": "stats", "params": {"input": "x"}}\n{"operation": "stats"}\n')
    assert worker.run_worker(jobs, out, serve=True) == 1
    messages = worker_messages(out.getvalue())
    assert [m["type"] for m in messages] == ["hello", "error"] and messages[1]["kind"] == "internal"
    assert jobs.read() == '{"operation": "stats"}\n'  # the second job was left for a fresh worker


def test_worker_cancel_leaves_no_output(tmp_path: Path):
    big = write_geotiff(
        tmp_path / "big.tif", np.random.default_rng(0).integers(1, 1000, (2, 256 * 4, 512), dtype=np.uint16)
    )
    out = tmp_path / "cancelled.tif"
    hold = tmp_path / "hold"
    hold.mkdir()
    job = {"operation": "normalized-index", "params": {"input": str(big), "output": str(out), "band_a": 1, "band_b": 2}}
    # Held after its first strip (engine/runtime/hold.py): the cancel lands mid-run, whatever the machine's load.
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, HOLD_ENV: str(hold)},
    )
    process.stdin.write(json.dumps(job))
    process.stdin.close()
    assert wait_until_held(hold) == [process.pid]
    partial = list(tmp_path.glob(".cancelled.tif.omnisat-partial-*"))
    assert partial, "the worker should be writing under a temporary name"
    os.kill(process.pid, signal.SIGTERM)
    rest = worker_messages(process.stdout.read())
    assert process.wait(timeout=60) == 1
    assert rest[-1]["type"] == "error" and rest[-1]["kind"] == "cancelled"
    assert 0 < max(m["percent"] for m in rest if m["type"] == "progress") < 100
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif", "hold"]


def test_atomic_output_keeps_previous_file_on_failure(tmp_path: Path):
    from engine.io.atomic import atomic_output

    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as temp:
            temp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
