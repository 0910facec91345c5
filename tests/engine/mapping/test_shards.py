"""Sharded mapping: 1 process vs 2 ranks (gloo on CPU) give bit-equal outputs; a rerun keeps finished shards."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from engine.errors import EngineError
from engine.mapping.shards import balanced_bounds, split_rows
from engine.mapping.tiling import WindowGrid
from engine.models.checkpoint import save_checkpoint
from engine.models.heads import HeadConfig, build_head
from engine.models.modalities import sensor
from engine.runtime.hold import HOLD_ENV, wait_until_held
from engine.runtime.registry import run_operation
from tests.engine import omnisat_helpers
from tests.engine.range_server import serving
from tests.engine.rasters import write_geotiff

CLASSES = ["water", "forest", "field"]
ROOT = Path(__file__).resolve().parents[3]


def test_balanced_bounds_even_out_the_windows_with_data():
    assert balanced_bounds([1] * 8, 2) == [0, 4, 8]
    # rows without data are cheap: the band that holds the data is split
    assert balanced_bounds([0, 0, 0, 0, 5, 5, 5, 5], 2) == [0, 6, 8]
    assert balanced_bounds([0] * 6, 3) == [0, 2, 4, 6]
    assert balanced_bounds([9, 0, 0], 3) == [0, 1, 2, 3]  # every group keeps a row
    assert balanced_bounds([1, 1], 5) == [0, 1, 2]  # no more groups than rows


@pytest.mark.parametrize("height,tile,overlap", [(36, 6, 2), (40, 6, 5), (10, 4, 0), (9, 4, 1)])
def test_shards_own_every_row_once_and_compute_every_window_that_reaches_it(height, tile, overlap):
    windows = WindowGrid(height, 12, tile, overlap)
    shards = split_rows(windows, [1] * len(windows.rows), 3)
    assert shards[0].rows[0] == 0 and shards[-1].rows[1] == height
    for above, below in zip(shards, shards[1:]):
        assert above.rows[1] == below.rows[0] and above.owned_window_rows[1] == below.owned_window_rows[0]
    for shard in shards:
        first, stop = shard.window_rows
        for i, start in enumerate(windows.rows):
            reaches = start < shard.rows[1] and start + min(tile, height) > shard.rows[0]
            assert reaches == (first <= i < stop), (shard, i)


# ----- end to end, through the engine's own ranks (python -m engine worker each) ------------------
@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A tiny OmniSat (S2 only) with a patch head, and 3 synthetic S2 dates, 30 x 34 patches of 10 m,
    a corner without data."""
    folder = tmp_path_factory.mktemp("scene")
    torch.manual_seed(0)
    model = omnisat_helpers.tiny_model(modalities=(sensor("s2"),)).eval()
    head = build_head(HeadConfig("patch", model.embed_dim, len(CLASSES)))
    save_checkpoint(
        folder / "model.safetensors", model, head=head, classes=CLASSES, colors=["#2166ac", "#1b7837", "#fee08b"]
    )
    rng = np.random.default_rng(0)
    for day in ("20200601", "20200701", "20200801"):
        data = rng.uniform(200, 3000, (10, 34, 30)).astype(np.float32)
        data[:, :8, :9] = 0  # no data: windows there are skipped
        write_geotiff(folder / f"S2_{day}.tif", data, nodata=0)
    return folder


def _job(scene, out, outputs, **extra):
    out.mkdir(exist_ok=True)
    job = {
        "model": str(scene / "model.safetensors"),
        "modalities": {"s2": {"files": sorted(map(str, scene.glob("S2_*.tif")))}},
        "outputs": {k: str(out / v) for k, v in outputs.items()},
        "tile_size": 60,
        "overlap": 20,
        "batch_size": 3,
        "device": "cpu",
        "precision": "fp32",
        "threads": 1,
    }
    job.update(extra)
    return job


def _read(path):
    with rasterio.open(path) as ds:
        colors = ds.colormap(1) if ds.dtypes[0] == "uint8" else None
        return {
            "data": ds.read(),
            "transform": ds.transform,
            "crs": ds.crs,
            "nodata": ds.nodata,
            "descriptions": ds.descriptions,
            "tags": ds.tags(),
            "band_tags": ds.tags(1),
            "colors": colors,
        }


def _assert_same(one, many):
    a, b = _read(one), _read(many)
    np.testing.assert_array_equal(b.pop("data"), a.pop("data"))  # bit-equal (NaN where NaN)
    for key in ("transform", "crs", "descriptions", "colors"):
        assert b[key] == a[key], key
    assert b["nodata"] == a["nodata"] or (np.isnan(a["nodata"]) and np.isnan(b["nodata"]))
    for tags in ("tags", "band_tags"):
        assert {k: v for k, v in a[tags].items() if k != "AREA_OR_POINT"}.items() <= b[tags].items(), tags


@pytest.fixture(scope="module")
def single(scene, tmp_path_factory):
    """The one-process run every sharded run must equal."""
    out = tmp_path_factory.mktemp("single")
    outputs = {"classes": "classes.tif", "probabilities": "probabilities.tif", "embeddings": "embeddings.tif"}
    result = run_operation("classify", {"job": _job(scene, out, outputs)})
    assert result["windows"] > 40 and result["windows_without_data"] > 0
    return out, result


def test_two_ranks_equal_one_process_bit_for_bit(scene, single, tmp_path):
    reference, one = single
    outputs = {"classes": "classes.tif", "probabilities": "probabilities.vrt", "embeddings": "embeddings.tif"}
    result = run_operation("classify", {"job": _job(scene, tmp_path, outputs, ranks=2)})
    assert [s["resumed"] for s in result["shards"]] == [False, False]
    assert result["windows"] == one["windows"] and result["windows_without_data"] == one["windows_without_data"]
    assert result["grids"] == one["grids"] and result["transform"] == one["transform"]
    for key, name in outputs.items():
        _assert_same(reference / f"{key}.tif", tmp_path / name)
    with rasterio.open(tmp_path / "classes.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    # the .tif outputs are single COGs (their parts removed); the VRT reads its parts beside it
    assert not (tmp_path / "classes.tif.parts").exists() and (tmp_path / "probabilities.vrt.parts").is_dir()
    assert not list(tmp_path.rglob(".*omnisat-partial*"))


@pytest.mark.slow
def test_a_rerun_recomputes_only_the_shard_that_did_not_finish(scene, single, tmp_path):
    reference, _ = single
    outputs = {"classes": "classes.vrt", "embeddings": "embeddings.vrt"}
    job = _job(scene, tmp_path, outputs, ranks=2)
    run_operation("classify", {"job": job})
    parts = tmp_path / "classes.vrt.parts"
    kept = {p.name: p.stat().st_mtime_ns for p in parts.iterdir()}
    # shard 2 as a crashed rank leaves it: one of its parts never renamed into place, no final outputs
    (tmp_path / "embeddings.vrt.parts" / "part-002-of-002.tif").unlink()
    for name in outputs.values():
        (tmp_path / name).unlink()
    result = run_operation("classify", {"job": job})
    assert [s["resumed"] for s in result["shards"]] == [True, False]
    assert (parts / "part-001-of-002.tif").stat().st_mtime_ns == kept["part-001-of-002.tif"]
    assert (parts / "part-002-of-002.tif").stat().st_mtime_ns != kept["part-002-of-002.tif"]
    for key, name in outputs.items():
        _assert_same(reference / f"{key}.tif", tmp_path / name)
    # a damaged part (same name, other bytes) is not trusted either
    with open(parts / "part-001-of-002.tif", "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\0\0\0\0")
    result = run_operation("classify", {"job": job})
    assert [s["resumed"] for s in result["shards"]] == [False, True]
    # another layout (3 ranks): everything mapped again, the 2-shard parts and manifests removed
    result = run_operation("classify", {"job": {**job, "ranks": 3}})
    assert [s["resumed"] for s in result["shards"]] == [False] * 3
    assert sorted(p.name for p in parts.iterdir()) == [
        f"part-00{k}-of-003.{ext}" for k in (1, 2, 3) for ext in ("json", "tif")
    ]
    _assert_same(reference / "classes.tif", tmp_path / "classes.vrt")


@pytest.mark.slow
def test_a_failing_rank_stops_the_run_and_the_rerun_finishes_it(scene, single, tmp_path):
    reference, _ = single
    job = _job(scene, tmp_path, {"classes": "classes.tif"}, ranks=2)
    blocker = tmp_path / "classes.tif.parts" / "part-002-of-002.tif"
    blocker.mkdir(parents=True)  # rank 1 cannot write its part
    with pytest.raises(EngineError, match="Rank 1 of 2 failed.*is a folder"):
        run_operation("classify", {"job": job})
    assert not (tmp_path / "classes.tif").exists()
    blocker.rmdir()
    result = run_operation("classify", {"job": job})
    assert not result["shards"][1]["resumed"]
    _assert_same(reference / "classes.tif", tmp_path / "classes.tif")


def test_tile_level_embeddings_over_ranks(scene, tmp_path):
    """The tile stream (one cell per window, edge to edge) is sharded by window rows too."""
    for folder, ranks in (("one", 1), ("two", 2)):
        job = _job(scene, tmp_path / folder, {"embeddings": "tiles.tif"}, overlap=0, ranks=ranks)
        job["outputs"]["embeddings_level"] = "tile"
        run_operation("embed", {"job": job})
    _assert_same(tmp_path / "one" / "tiles.tif", tmp_path / "two" / "tiles.tif")


def test_torchrun_ranks_equal_one_process(scene, single, tmp_path):
    """The multi-machine route: torchrun starts the ranks (here 2 on this machine, gloo)."""
    reference, _ = single
    job = tmp_path / "job.json"
    job.write_text(json.dumps(_job(scene, tmp_path, {"classes": "classes.vrt"})))
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [torchrun, "--nnodes", "1", "--nproc-per-node", "2", "-m", "engine", "classify", str(job), "--quiet", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same(reference / "classes.tif", tmp_path / "classes.vrt")


def test_ranks_read_inputs_over_http_by_byte_ranges(scene, single, tmp_path):
    """GDAL's /vsicurl/ as inputs (object storage serves COGs the same way): every rank reads the
    files it needs by HTTP Range requests; the map equals the one from local files."""
    reference, _ = single
    with serving(scene) as server:
        job = _job(scene, tmp_path, {"classes": "classes.tif"}, ranks=2)
        job["modalities"]["s2"]["files"] = ["/vsicurl/" + server.url(p.name) for p in sorted(scene.glob("S2_*.tif"))]
        run_operation("classify", {"job": job})
        gets = [(path, r) for method, path, r in server.requests if method == "GET"]
    # byte ranges of the files only: no whole-file download, no listing of the "folder"
    assert gets and all(path.endswith(".tif") and r and r.startswith("bytes=") for path, r in gets), gets
    _assert_same(reference / "classes.tif", tmp_path / "classes.tif")


@pytest.mark.slow
def test_cancelling_a_run_over_ranks_stops_every_rank_and_leaves_no_partial_file(scene, tmp_path):
    """The plugin cancels by SIGTERM to its worker: the ranks it started go too, their temporary files with them."""
    import signal

    big = tmp_path / "big"
    big.mkdir()
    rng = np.random.default_rng(1)
    for day in ("20200601", "20200701"):
        write_geotiff(big / f"S2_{day}.tif", rng.uniform(200, 3000, (10, 160, 160)).astype(np.float32), nodata=0)
    job = _job(scene, tmp_path / "out", {"classes": "classes.tif"}, ranks=2, batch_size=1)
    job["modalities"]["s2"]["files"] = str(big)
    hold = tmp_path / "hold"
    hold.mkdir()
    # Each rank waits after its first window (engine/runtime/hold.py): the cancel lands while both map.
    worker = subprocess.Popen(
        [sys.executable, "-m", "engine", "worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), HOLD_ENV: str(hold)},
    )
    worker.stdin.write(json.dumps({"operation": "classify", "params": {"job": job}}))
    worker.stdin.close()
    ranks = wait_until_held(hold, 2)
    assert (
        sorted(
            int(p)
            for p in subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True).stdout.split()
        )
        == ranks
    )
    assert list((tmp_path / "out").rglob("*omnisat-partial*")), "the ranks should be writing their parts"
    worker.send_signal(signal.SIGTERM)
    last = [json.loads(line) for line in worker.stdout][-1]
    assert worker.wait(timeout=60) == 1 and last["kind"] == "cancelled"
    for pid in ranks:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (tmp_path / "out" / "classes.tif").exists()
    assert not list((tmp_path / "out").rglob("*omnisat-partial*"))


@pytest.mark.slow
def test_ranks_warp_a_reprojected_input_as_one_process_does(scene, tmp_path):
    """Inputs off the grid (here: mapped in the neighbouring UTM zone) are warped once per run, by each
    rank whole (a band alone warps to other values: GDAL's warper depends on the extent)."""
    outputs = {"classes": "classes.tif", "probabilities": "probabilities.tif"}
    for folder, ranks in (("one", 1), ("two", 2)):
        run_operation("classify", {"job": _job(scene, tmp_path / folder, outputs, ranks=ranks, crs="EPSG:32632")})
    for name in outputs.values():
        _assert_same(tmp_path / "one" / name, tmp_path / "two" / name)
