"""Headless batch: the packaged plugin installed into an isolated profile and run by qgis_process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from omnisat_qgis.package import build_zip, install_zip

pytestmark = pytest.mark.qgis_process

QGIS_PROCESS = shutil.which("qgis_process")


@pytest.fixture(scope="module")
def qgis_env(tmp_path_factory) -> dict[str, str]:
    if QGIS_PROCESS is None:
        pytest.skip("qgis_process is not installed (run .ci/setup)")
    base = tmp_path_factory.mktemp("qgis")
    archive = build_zip(base / "omnisat_qgis.zip")
    install_zip(archive, base / "plugins")
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        QGIS_CUSTOM_CONFIG_PATH=str(base / "profile"),
        QGIS_PLUGINPATH=str(base / "plugins"),
        OMNISAT_PYTHON=sys.executable,
    )
    # The installed copy must run its own engine, not the checkout's.
    env.pop("PYTHONPATH", None)
    enable = subprocess.run(
        [QGIS_PROCESS, "plugins", "enable", "omnisat_qgis"], env=env, capture_output=True, text=True, timeout=120
    )
    assert enable.returncode == 0, enable.stderr
    return env


def qgis_process(env, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_zip_contains_plugin_and_engine(tmp_path: Path):
    names = zipfile.ZipFile(build_zip(tmp_path / "p.zip")).namelist()
    for required in (
        "omnisat_qgis/metadata.txt",
        "omnisat_qgis/__init__.py",
        "omnisat_qgis/engine/runtime/worker.py",
        "omnisat_qgis/engine/__main__.py",
        "omnisat_qgis/resources/icons/omnisat.svg",
    ):
        assert required in names
    assert not any("__pycache__" in n or n.startswith("omnisat_qgis/tests") for n in names)


def test_algorithm_listed(qgis_env):
    listing = qgis_process(qgis_env, "list")
    assert listing.returncode == 0
    assert "omnisat:normalizedindex" in listing.stdout


def test_run_normalized_index(qgis_env, tmp_path: Path):
    data_dir = tmp_path / "in"
    data_dir.mkdir()
    from tests.engine.rasters import write_geotiff

    data = np.stack([np.full((40, 50), v, np.uint16) for v in (10, 20, 30, 70)])
    data[:, 3, 4] = 0
    source = write_geotiff(
        data_dir / "four.tif", data, nodata=0, crs="EPSG:32619", origin=(300000.0, -1200000.0), pixel=30.0
    )
    before = source.read_bytes()
    out = tmp_path / "ndvi.tif"
    result = qgis_process(
        qgis_env,
        "--json",
        "run",
        "omnisat:normalizedindex",
        "--",
        f"INPUT={source}",
        "BAND_A=4",
        "BAND_B=3",
        f"OUTPUT={out}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["results"]["OUTPUT"] == str(out)
    with rasterio.open(out) as dst, rasterio.open(source) as src:
        assert dst.crs == src.crs and dst.transform == src.transform
        values = dst.read(1)
        assert values[10, 10] == pytest.approx((70 - 30) / 100)
        assert values[3, 4] == dst.nodata
    assert source.read_bytes() == before, "the input was modified"
    # qgis_process itself loads the input as a layer, and GDAL then saves statistics
    # in a .aux.xml sidecar (QGIS's own algorithms do the same); nothing else appears.
    assert {p.name for p in data_dir.iterdir()} - {"four.tif.aux.xml"} == {"four.tif"}


def test_bad_output_folder_is_a_clear_error(qgis_env, tmp_path: Path):
    from tests.engine.rasters import write_geotiff

    source = write_geotiff(tmp_path / "s.tif", np.ones((4, 8, 8), np.uint16))
    result = qgis_process(
        qgis_env,
        "run",
        "omnisat:normalizedindex",
        "--",
        f"INPUT={source}",
        "BAND_A=4",
        "BAND_B=3",
        f"OUTPUT={tmp_path / 'nope' / 'o.tif'}",
    )
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "does not exist: create" in text and "Traceback" not in text
