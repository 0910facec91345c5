"""Where the plugin finds the engine and the resources, installed or in a source checkout."""

from __future__ import annotations

import sys
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent


def engine_root() -> Path:
    """The folder that contains the ``engine`` package.

    An installed plugin zip carries the engine inside the plugin folder; in a
    source checkout the engine sits beside the plugin.
    """
    for candidate in (PLUGIN_DIR, PLUGIN_DIR.parent):
        if (candidate / "engine" / "__init__.py").is_file():
            return candidate
    raise FileNotFoundError(f"the engine package was not found beside {PLUGIN_DIR}")


def resources_dir() -> Path:
    for candidate in (PLUGIN_DIR / "resources", PLUGIN_DIR.parent / "resources"):
        if candidate.is_dir():
            return candidate
    return PLUGIN_DIR / "resources"


def default_python() -> Path:
    """The project's own environment: ``.venv`` beside the engine."""
    venv = engine_root() / ".venv"
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
