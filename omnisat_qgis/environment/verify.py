"""Does an environment run the engine? Checked by running the engine worker in it."""

from __future__ import annotations

import json
import subprocess  # nosec B404  # runs the new environment's engine, no shell
import tempfile
from collections.abc import Callable
from pathlib import Path

from omnisat_qgis.environment.interpreters import clean_environment
from omnisat_qgis.worker_client import (
    PROTOCOL_VERSION,
    WorkerCallbacks,
    WorkerCancelled,
    WorkerError,
    WorkerRun,
    run_worker,
)

CHECK_TIMEOUT_S = 120.0
# Imported by the quick check of an existing environment: the engine's requirements by module name.
ENGINE_MODULES = ("torch", "numpy", "rasterio", "safetensors", "einops", "h5py", "yaml")
# Written by the environment's own Python, so that its numpy and rasterio (GDAL) are checked
# too: one Sentinel-2 date of 10 bands on a 60 m square, one model window at 10 m.
_SYNTHETIC_RASTER = (
    "import sys, numpy, rasterio\n"
    "from rasterio.transform import from_origin\n"
    "data = (numpy.random.default_rng(0).random((10, 6, 6)) * 3000).astype('float32')\n"
    "with rasterio.open(sys.argv[1], 'w', driver='GTiff', width=6, height=6, count=10, dtype='float32',\n"
    "                   crs='EPSG:32633', transform=from_origin(500000, 5100000, 10, 10)) as out:\n"
    "    out.write(data)\n"
)


class VerificationError(Exception):
    def __init__(self, message: str, tail: list[str] | None = None):
        super().__init__(message)
        self.tail = list(tail or [])


def _run(command: list[str], engine_root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,  # nosec B603  # argument list, no shell
        env=clean_environment({"PYTHONPATH": str(engine_root)}),
    )


def engine_version(python: Path, engine_root: Path) -> dict:
    """``python -m engine version --json``; raise VerificationError when it fails."""
    try:
        done = _run([str(python), "-m", "engine", "version", "--json"], engine_root)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VerificationError(f"'{python} -m engine version' did not run: {exc}") from None
    try:
        info = json.loads(done.stdout)
    except ValueError:
        info = None
    if done.returncode != 0 or not isinstance(info, dict):
        raise VerificationError(
            f"'{python} -m engine version --json' failed (exit code {done.returncode})", done.stderr.splitlines()[-12:]
        )
    if info.get("protocol") != PROTOCOL_VERSION:
        raise VerificationError(
            f"the engine speaks worker protocol {info.get('protocol')}, "
            f"this plugin {PROTOCOL_VERSION}: reinstall the plugin zip"
        )
    return info


def quick_check(python: Path, engine_root: Path) -> str | None:
    """Why an existing environment cannot run the engine, or None when it can (a few seconds)."""
    try:
        engine_version(python, engine_root)
        done = _run([str(python), "-c", "import " + ", ".join(ENGINE_MODULES)], engine_root)
    except (VerificationError, OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"it cannot import the engine's requirements ({last})"
    return None


def verify_environment(
    python: Path,
    engine_root: Path,
    model: Path,
    scratch: Path,
    on_line: Callable[[str], None],
    is_cancelled: Callable[[], bool],
) -> None:
    """The engine's version, then one window of ``model`` through the worker on a synthetic raster."""
    info = engine_version(python, engine_root)
    on_line(f"engine {info.get('engine')} (worker protocol {info.get('protocol')}) on Python {info.get('python')}")
    with tempfile.TemporaryDirectory(prefix="omnisat-verify-", dir=scratch) as folder:
        raster = Path(folder) / "s2_20200615.tif"
        try:
            done = _run([str(python), "-c", _SYNTHETIC_RASTER, str(raster)], engine_root)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise VerificationError(
                f"writing a synthetic raster with the environment's rasterio failed: {exc}"
            ) from None
        if done.returncode != 0:
            raise VerificationError(
                "writing a synthetic raster with the environment's numpy and rasterio failed",
                done.stderr.splitlines()[-12:],
            )
        output = Path(folder) / "embeddings.tif"
        job = {
            "model": str(model),
            "modalities": {"s2": {"files": [str(raster)]}},
            "outputs": {"embeddings": str(output)},
            "device": "cpu",
        }
        run = WorkerRun(
            python=python,
            engine_root=engine_root,
            operation="embed",
            params={"job": job},
            threads=1,
            output_paths=[str(output)],
        )
        try:
            # In a process of its own: the environment being verified is not yet the one runs reuse.
            message = run_worker(
                run, WorkerCallbacks(log=lambda text, level: on_line(text), is_cancelled=is_cancelled), reuse=False
            )
        except WorkerCancelled:
            raise
        except WorkerError as exc:
            raise VerificationError(
                f"the engine worker could not run a model window: {exc}", exc.detail.splitlines()[-12:]
            ) from None
        if not output.is_file() or message.get("result", {}).get("windows") != 1:
            raise VerificationError(
                f"the engine worker ran but wrote no embeddings for the synthetic window ({output})"
            )
        on_line(f"a window of {model.name} ran in {message['result'].get('seconds', 0):.2f} s")
