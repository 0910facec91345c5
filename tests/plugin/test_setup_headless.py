"""From the plugin zip to a working engine without a terminal, headless: the packaged plugin in
an isolated profile, no worker Python configured, `omnisat:setupengine` builds the managed
environment for real (torch==2.13.0 CPU), then an algorithm runs on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from omnisat_qgis.package import build_zip, install_zip
from tests.engine.rasters import write_geotiff

pytestmark = [pytest.mark.qgis_process, pytest.mark.slow]

QGIS_PROCESS = shutil.which("qgis_process")


def run(env, *args, timeout=1800) -> subprocess.CompletedProcess:
    return subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_setupengine_then_an_algorithm_runs_on_the_managed_environment(tmp_path: Path):
    if QGIS_PROCESS is None:
        pytest.skip("qgis_process is not installed (run .ci/setup)")
    install_zip(build_zip(tmp_path / "omnisat_qgis.zip"), tmp_path / "plugins")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OMNISAT_PYTHON")}
    env.update(
        QT_QPA_PLATFORM="offscreen",
        QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "profile"),
        QGIS_PLUGINPATH=str(tmp_path / "plugins"),
    )
    assert run(env, "plugins", "enable", "omnisat_qgis", timeout=120).returncode == 0
    source = write_geotiff(tmp_path / "four.tif", np.stack([np.full((20, 30), v, np.uint16) for v in (10, 20, 30, 70)]))
    ndvi = ("--json", "run", "omnisat:normalizedindex", "--", f"INPUT={source}", "BAND_A=4", "BAND_B=3")

    before = run(env, *ndvi, f"OUTPUT={tmp_path / 'before.tif'}", timeout=300)
    assert before.returncode != 0 and "Set up the OmniSat engine" in before.stdout + before.stderr

    built = run(env, "--json", "run", "omnisat:setupengine", "--", "FORCE_CPU=true")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    results = json.loads(built.stdout)["results"]
    python = Path(results["PYTHON"])
    assert python.is_relative_to(tmp_path / "profile") and python.parent.parent.name == "venv"
    assert results["TORCH_BUILD"] == "cpu" and results["REUSED"] == "False"
    version = subprocess.run(
        [str(python), "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in env.items() if k != "PYTHONHOME"},
    )
    assert version.stdout.startswith("2.13.0"), version.stderr

    after = run(env, *ndvi, f"OUTPUT={tmp_path / 'after.tif'}", timeout=300)
    assert after.returncode == 0, after.stdout + after.stderr
    assert (tmp_path / "after.tif").is_file()

    again = run(env, "--json", "run", "omnisat:setupengine", timeout=300)
    assert again.returncode == 0 and json.loads(again.stdout)["results"]["REUSED"] == "True"
