"""Which Python the managed environment is created from.

QGIS's own interpreter sits in a different place in each install layout: Debian and
other Linux packages use the system Python; OSGeo4W and the standalone Windows
installer keep it under ``<root>/apps/Python3xx``; the macOS bundle keeps it inside
``QGIS.app``. ``python_candidates`` lists, for one layout, where to look, nearest
first; ``find_base_python`` takes the first that runs and can create a venv, preferring one with
GDAL's Python bindings (a PATH Python such as pyenv's may come first and lack them).
"""

from __future__ import annotations

import subprocess  # nosec B404  # probes candidate interpreters, no shell
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

MIN_PYTHON = (3, 10)
PROBE_TIMEOUT_S = 30.0
# Printed by a candidate: major, minor, whether venv with pip can be created, whether GDAL's bindings import.
_PROBE = (
    "import sys\n"
    "try:\n    import venv, ensurepip\n    ok = 1\nexcept ImportError:\n    ok = 0\n"
    "try:\n    from osgeo import ogr\n    gdal = 1\nexcept ImportError:\n    gdal = 0\n"
    "print(sys.version_info[0], sys.version_info[1], ok, gdal)"
)


@dataclass(frozen=True)
class Probe:
    version: tuple[int, int]
    can_make_venv: bool
    # GDAL's Python bindings (osgeo): the engine reads vector labels with them, and the environment sees the
    # base Python's site packages; pip cannot install them without a matching GDAL build.
    has_gdal: bool = False


class NoPythonError(Exception):
    """No candidate can create the environment; the message lists each one and why."""


def _dedupe(paths: Sequence[Path]) -> list[Path]:
    seen, unique = set(), []
    for path in paths:
        key = str(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _newest_first(folders: Sequence[Path]) -> list[Path]:
    def version(folder: Path) -> tuple[int, ...]:
        digits = "".join(c for c in folder.name if c.isdigit())
        return (int(digits[:1] or 0), int(digits[1:] or 0))

    return sorted(folders, key=version, reverse=True)


def python_candidates(system: str, executable: Path, base_prefix: Path, path_dirs: Sequence[Path]) -> list[Path]:
    """Interpreters to try, in order, for ``system`` as ``platform.system()`` names it.

    ``executable`` and ``base_prefix`` are QGIS's ``sys.executable`` and
    ``sys.base_prefix``; ``path_dirs`` the folders of PATH.
    """
    if system == "Windows":
        # OSGeo4W and the standalone installer: <root>/bin/qgis*-bin.exe and <root>/apps/Python3xx/python.exe.
        root = executable.parent.parent
        apps = _newest_first(list((root / "apps").glob("Python3*"))) if (root / "apps").is_dir() else []
        found = [base_prefix / "python.exe", *(folder / "python.exe" for folder in apps)]
        # The Microsoft Store alias in WindowsApps opens the Store instead of running Python.
        found += [d / "python.exe" for d in path_dirs if "windowsapps" not in str(d).lower()]
        found += [d / "python3.exe" for d in path_dirs if "windowsapps" not in str(d).lower()]
    elif system == "Darwin":
        # QGIS.app/Contents/MacOS/QGIS; the bundled framework Python, or bin/python3 in older bundles.
        contents = executable.parent.parent
        frameworks = contents / "Frameworks" / "Python.framework" / "Versions"
        versions = _newest_first([v for v in frameworks.glob("3*")]) if frameworks.is_dir() else []
        found = [
            base_prefix / "bin" / "python3",
            *(v / "bin" / "python3" for v in versions),
            contents / "MacOS" / "bin" / "python3",
        ]
        found += [d / "python3" for d in path_dirs]
    else:
        found = [executable] if executable.name.startswith("python") else []
        found += [base_prefix / "bin" / "python3", Path("/usr/bin/python3")]
        found += [d / "python3" for d in path_dirs]
    return _dedupe(found)


def probe_python(python: Path) -> Probe | None:
    """Run ``python`` once; None when it does not start or prints something unexpected."""
    try:
        done = subprocess.run(
            [str(python), "-c", _PROBE],
            capture_output=True,
            text=True,  # nosec B603  # argument list, no shell
            timeout=PROBE_TIMEOUT_S,
            env=clean_environment(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = done.stdout.split()
    if done.returncode != 0 or len(parts) != 4 or not all(p.isdigit() for p in parts):
        return None
    return Probe((int(parts[0]), int(parts[1])), parts[2] == "1", parts[3] == "1")


def find_base_python(candidates: Sequence[Path], probe: Callable[[Path], Probe | None] = probe_python) -> Path:
    """The first candidate that exists, is Python >= 3.10, can create a venv with pip and has GDAL's bindings;
    without one that has them, the first of the others (vector labels then need them installed)."""
    refused, usable = [], []
    for candidate in candidates:
        if not candidate.is_file():
            continue
        found = probe(candidate)
        if found is None:
            refused.append(f"{candidate}: does not run")
        elif found.version < MIN_PYTHON:
            refused.append(
                f"{candidate}: Python {found.version[0]}.{found.version[1]}, "
                f"the engine needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer"
            )
        elif not found.can_make_venv:
            refused.append(f"{candidate}: lacks the venv/ensurepip modules (Debian/Ubuntu: install python3-venv)")
        elif found.has_gdal:
            return candidate
        else:
            usable.append(candidate)
    if usable:
        return usable[0]
    tried = "; ".join(refused) if refused else "none of " + ", ".join(str(c) for c in candidates) + " exists"
    raise NoPythonError(
        f"No Python able to create the OmniSat engine environment was found ({tried}). Install Python "
        f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer, or set the 'OmniSat base Python' setting to one."
    )


def clean_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ without QGIS's own Python settings, which must not leak into another interpreter."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
    env.update(extra or {})
    return env
