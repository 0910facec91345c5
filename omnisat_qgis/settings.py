"""Plugin settings: which Python interpreter runs the engine worker.

Resolution order: the OMNISAT_PYTHON environment variable, the Processing
setting "OmniSat worker Python" (Settings > Options > Processing > Providers >
OmniSat), then the project's ``.venv`` beside the engine.
"""

from __future__ import annotations

import os
from pathlib import Path

from omnisat_qgis.paths import default_python

ENV_PYTHON = "OMNISAT_PYTHON"
SETTING_PYTHON = "OMNISAT_WORKER_PYTHON"
SETTING_THREADS = "OMNISAT_WORKER_THREADS"
SETTINGS_PREFIX = "Processing/Configuration/"


class SettingsError(Exception):
    pass


def _stored(name: str) -> str:
    from qgis.core import QgsSettings

    value = QgsSettings().value(SETTINGS_PREFIX + name, "")
    return str(value or "").strip()


def worker_python() -> tuple[Path, str]:
    """Return (interpreter, where the choice came from); raise SettingsError if unusable."""
    if os.environ.get(ENV_PYTHON, "").strip():
        path, source = Path(os.environ[ENV_PYTHON].strip()), f"the environment variable {ENV_PYTHON}"
    elif _stored(SETTING_PYTHON):
        path, source = Path(_stored(SETTING_PYTHON)), "the Processing setting 'OmniSat worker Python'"
    else:
        path, source = default_python(), "the default (the project's .venv)"
    if not path.is_file():
        raise SettingsError(
            f"The Python interpreter for the OmniSat engine, '{path}' (from {source}), does not exist. "
            f"Set {ENV_PYTHON} or Settings > Options > Processing > Providers > OmniSat > "
            "'OmniSat worker Python' to a Python that has the engine's requirements (torch, rasterio)."
        )
    if not os.access(path, os.X_OK):
        raise SettingsError(f"The OmniSat worker Python '{path}' (from {source}) is not executable.")
    return path, source


def worker_threads() -> int | None:
    value = _stored(SETTING_THREADS)
    return int(value) if value.isdigit() and int(value) > 0 else None
