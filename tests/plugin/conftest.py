import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.engine.rasters import write_geotiff

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def worker_python(monkeypatch):
    """The worker runs in the interpreter running the tests (the project's .venv)."""
    monkeypatch.setenv("OMNISAT_PYTHON", sys.executable)


@pytest.fixture(autouse=True)
def models_dir_environment():
    """The algorithms point the worker at the models folder through OMNISAT_MODELS_DIR: put it back after each test."""
    before = os.environ.get("OMNISAT_MODELS_DIR")
    yield
    if before is None:
        os.environ.pop("OMNISAT_MODELS_DIR", None)
    else:
        os.environ["OMNISAT_MODELS_DIR"] = before


@pytest.fixture
def small_raster(tmp_path: Path) -> Path:
    data = np.stack([np.full((20, 30), v, np.uint16) for v in (10, 20, 30, 50)])
    data[:, 0, 0] = 0
    return write_geotiff(tmp_path / "small.tif", data, nodata=0)


@pytest.fixture
def slow_raster(tmp_path: Path) -> Path:
    """Enough row strips that a run can be cancelled before it ends."""
    rng = np.random.default_rng(1)
    return write_geotiff(tmp_path / "slow.tif", rng.integers(1, 1000, (2, 256 * 60, 1024), dtype=np.uint16))


@pytest.fixture
def hold(tmp_path: Path, monkeypatch) -> Path:
    """Engine runs started from now on wait after their first step until ``hold / "release"`` exists
    (engine/runtime/hold.py): cancel and kill tests stop a run at a known point, not in a race."""
    from engine.runtime.hold import HOLD_ENV

    folder = tmp_path / "hold"
    folder.mkdir()
    monkeypatch.setenv(HOLD_ENV, str(folder))
    return folder
