"""Fault suite: a full disk or a write that fails silently never leaves a corrupt output, never
replaces an earlier one, and says so. A real full disk is a small tmpfs (needs root; skipped
otherwise); a silent failure is a writer patched to leave a truncated file."""

from __future__ import annotations

import ctypes.util
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.errors import EngineError
from engine.io.atomic import atomic_output
from engine.runtime.registry import run_operation
from tests.engine.rasters import write_geotiff

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 64 KiB file system of its own (tmpfs), unmounted afterwards."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip() or 'not permitted'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.fixture
def large_input(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    return write_geotiff(tmp_path / "in.tif", rng.integers(1, 10000, (2, 512, 512), dtype=np.uint16))


def test_a_full_disk_leaves_no_output_and_says_so(small_disk: Path, large_input: Path):
    out = small_disk / "ndvi.tif"
    with pytest.raises(EngineError, match="The disk is full while writing the output") as caught:
        run_operation("normalized-index", {"input": str(large_input), "output": str(out), "band_a": 1, "band_b": 2})
    assert "Nothing was written" in str(caught.value)
    assert list(small_disk.iterdir()) == []  # no file under the final name, no partial file


def test_a_full_disk_never_replaces_an_earlier_output(small_disk: Path, large_input: Path, tmp_path: Path):
    small = write_geotiff(tmp_path / "small.tif", np.full((2, 16, 16), 7, np.uint16))
    out = small_disk / "ndvi.tif"
    run_operation("normalized-index", {"input": str(small), "output": str(out), "band_a": 1, "band_b": 2})
    earlier = out.read_bytes()
    with pytest.raises(EngineError, match="The file that was there is unchanged"):
        run_operation("normalized-index", {"input": str(large_input), "output": str(out), "band_a": 1, "band_b": 2})
    assert out.read_bytes() == earlier
    assert [p.name for p in small_disk.iterdir()] == ["ndvi.tif"]


def test_the_cli_gives_the_disk_full_message(small_disk: Path, large_input: Path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "normalized-index",
            str(large_input),
            str(small_disk / "ndvi.tif"),
            "--band-a",
            "1",
            "--band-b",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2
    assert "error: The disk is full" in done.stderr and "Traceback" not in done.stderr


def _fill(disk: Path, leave: int) -> None:
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * max(free - leave, 0))


def test_probes_and_reports_on_a_full_disk(small_disk: Path):
    from engine.probes.classifiers import ProbeConfig, fit_probe
    from engine.probes.metrics import classification_metrics
    from engine.probes.probe_file import ProbeMetadata, save_probe
    from engine.probes.report import write_fit_report

    x = np.random.default_rng(0).normal(size=(40, 300)).astype(np.float32)
    y = np.arange(40) % 2
    probe = fit_probe(x, y, 2, ProbeConfig(epochs=2))
    metadata = ProbeMetadata(
        class_names=["a", "b"], colors=["#000000", "#ffffff"], level="patch", encoder_hash="0" * 64
    )
    _fill(small_disk, 1024)
    with pytest.raises(EngineError, match="The disk is full while writing the probe file"):
        save_probe(small_disk / "probe.safetensors", probe, metadata)
    metrics = classification_metrics(np.array([[3, 1], [0, 4]]), ["a", "b"])
    with pytest.raises(EngineError, match="The disk is full while writing the report"):
        write_fit_report(
            small_disk / "report.html",
            title="t",
            metrics=metrics,
            class_names=["a", "b"],
            colors=["#000000", "#ffffff"],
            counts={},
            settings={"padding": "x" * 4096},
        )
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_a_silently_truncated_geotiff_is_not_renamed(tmp_path: Path):
    # rasterio does not raise on a failed block write: the file is whole in name only.
    target = tmp_path / "map.tif"
    target.write_bytes(b"earlier output")
    with pytest.raises(EngineError, match="Writing the map '.*map.tif' failed .*nothing was written"):
        with atomic_output(target, "map") as temp:
            write_geotiff(temp, np.ones((1, 600, 600), np.float32), tiled=True, blockxsize=256, blockysize=256)
            with open(temp, "r+b") as f:
                f.truncate(temp.stat().st_size // 2)
    assert target.read_bytes() == b"earlier output"
    assert [p.name for p in tmp_path.iterdir()] == ["map.tif"]


def gdal_reports(message: bytes) -> None:
    """A failure raised inside GDAL itself (CPLError), as a driver reports one, raising nothing."""
    library = ctypes.util.find_library("gdal")
    if library is None:
        pytest.skip("libgdal not found")
    ctypes.CDLL(library).CPLError(3, 1, b"%s", message)  # CE_Failure, CPLE_AppDefined


def test_a_write_error_gdal_reports_is_not_renamed(tmp_path: Path):
    pytest.importorskip("osgeo.gdal")  # the handler that hears GDAL's reports
    target = tmp_path / "map.tif"
    with pytest.raises(EngineError, match="failed \\(TIFFAppendToStrip:Write error"):
        with atomic_output(target, "map") as temp:
            write_geotiff(temp, np.ones((1, 8, 8), np.float32))
            gdal_reports(b"TIFFAppendToStrip:Write error at scanline 0")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_empty_and_unreadable_outputs_are_not_renamed(tmp_path: Path):
    for name, content in (
        ("stats.json", "{\"mean\": [1, "),
        ("model.safetensors", "\x08\0\0\0\0\0\0\0{}"),
        ("report.html", ""),
    ):
        with pytest.raises(EngineError, match="nothing was written"):
            with atomic_output(tmp_path / name, "output") as temp:
                temp.write_text(content)
    assert list(tmp_path.iterdir()) == []


def test_every_output_gets_the_same_permissions(tmp_path: Path, large_input: Path):
    from engine.probes.classifiers import ProbeConfig, fit_probe
    from engine.probes.probe_file import ProbeMetadata, save_probe

    run_operation(
        "normalized-index", {"input": str(large_input), "output": str(tmp_path / "i.tif"), "band_a": 1, "band_b": 2}
    )
    probe = fit_probe(np.eye(4, dtype=np.float32), np.array([0, 1, 0, 1]), 2, ProbeConfig(epochs=2))
    metadata = ProbeMetadata(
        class_names=["a", "b"], colors=["#000000", "#ffffff"], level="patch", encoder_hash="0" * 64
    )
    save_probe(tmp_path / "p.safetensors", probe, metadata)  # safetensors alone creates 0600 files
    modes = {stat.S_IMODE((tmp_path / n).stat().st_mode) for n in ("i.tif", "p.safetensors")}
    umask = os.umask(0)
    os.umask(umask)
    assert modes == {0o666 & ~umask}
    with rasterio.open(tmp_path / "i.tif") as ds:
        assert ds.shape == (512, 512)


def test_a_stripped_geotiff_with_a_cut_strip_is_not_renamed(tmp_path: Path):
    # The strips' bytes overwritten in the middle of the file: offsets and sizes still lie inside it,
    # only reading each strip back (and decoding it) finds the damage.
    target = tmp_path / "emb.tif"
    with pytest.raises(EngineError, match="does not read back"):
        with atomic_output(target, "embeddings") as temp:
            data = np.random.default_rng(0).random((32, 24, 24)).astype(np.float32)
            write_geotiff(temp, data, compress="deflate", interleave="band")
            with rasterio.open(temp) as ds:
                assert not ds.profile.get("tiled") and ds.block_shapes[0] == (24, 24)
                offset = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=20))
            with open(temp, "r+b") as f:
                f.seek(offset)
                f.write(b"\xff" * 64)
    assert not target.exists() and list(tmp_path.iterdir()) == []


EMBED_PX = 24  # the case: a 24 x 24 px Sentinel-2 tile, embeddings written as a stripped GeoTIFF


@pytest.fixture
def embed_job(tmp_path: Path):
    raster = write_geotiff(
        tmp_path / "s2_20200615.tif",
        (np.random.default_rng(0).random((10, EMBED_PX, EMBED_PX)) * 3000).astype("float32"),
    )

    def job(output: Path) -> dict:
        return {
            "model": str(ROOT / "resources/models/anysat-tiny.safetensors"),
            "device": "cpu",
            "modalities": {"s2": {"files": [str(raster)], "dates": ["2020-06-15"]}},
            "outputs": {"embeddings": str(output)},
        }

    return job


@pytest.fixture
def disk_of_512k(tmp_path: Path):
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip() or 'not permitted'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_embed_on_a_disk_that_fills_anywhere_in_the_file_fails_and_leaves_nothing(
    embed_job, disk_of_512k: Path, tmp_path: Path
):
    whole = tmp_path / "whole.tif"
    run_operation("embed", {"job": embed_job(whole)})
    with rasterio.open(whole) as ds:
        assert ds.shape == (EMBED_PX, EMBED_PX) and not ds.profile.get("tiled")  # stripped, as in the issue
    size = whole.stat().st_size
    assert size < 400 << 10  # fits the disk when it is empty
    out = disk_of_512k / "emb.tif"
    # the disk fills at a point anywhere from the first strip to the last ones (the case that passed before)
    for fraction in (0.05, 0.3, 0.6, 0.75, 0.85, 0.9, 0.95):
        for leftover in disk_of_512k.iterdir():
            leftover.unlink()
        _fill(disk_of_512k, int(size * fraction))
        with pytest.raises(EngineError, match="The disk is full while writing the embeddings"):
            run_operation("embed", {"job": embed_job(out)})
        assert sorted(p.name for p in disk_of_512k.iterdir()) == ["filler"], fraction
    # the command line, as the plugin's worker runs it: a non-zero exit and the message
    (disk_of_512k / "filler").unlink()
    _fill(disk_of_512k, int(size * 0.9))
    job = tmp_path / "job.json"
    job.write_text(json.dumps(embed_job(out)))
    done = subprocess.run(
        [sys.executable, "-m", "engine", "embed", str(job)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode != 0 and "The disk is full while writing the embeddings" in done.stderr, done.stderr[-2000:]
    assert sorted(p.name for p in disk_of_512k.iterdir()) == ["filler"]


def test_a_vrt_naming_a_missing_part_is_not_renamed(tmp_path: Path):
    part = write_geotiff(tmp_path / "part.tif", np.ones((1, 8, 8), np.float32))
    with rasterio.open(part) as ds:
        width, height, transform = ds.width, ds.height, ds.transform.to_gdal()
    xml = (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><GeoTransform>{", ".join(map(str, transform))}'
        '</GeoTransform><VRTRasterBand dataType="Float32" band="1"><SimpleSource>'
        '<SourceFilename relativeToVRT="1">{name}</SourceFilename><SourceBand>1</SourceBand></SimpleSource>'
        '</VRTRasterBand></VRTDataset>'
    )
    with atomic_output(tmp_path / "ok.vrt", "classes") as temp:
        temp.write_text(xml.format(name="part.tif"))
    assert (tmp_path / "ok.vrt").is_file()
    with pytest.raises(EngineError, match="names '.*gone.tif', which does not exist"):
        with atomic_output(tmp_path / "bad.vrt", "classes") as temp:
            temp.write_text(xml.format(name="gone.tif"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.vrt", "part.tif"]
