"""The engine's requirements the environment gets after torch.

An installed plugin zip ships them as ``requirements.txt`` (written by
omnisat_qgis.package from pyproject.toml); a source checkout reads pyproject.toml.
torch is left out: it is installed first, pinned, from the build chosen for this machine.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from omnisat_qgis.paths import PLUGIN_DIR

REQUIREMENTS_FILE = "requirements.txt"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(line: str) -> str:
    match = _NAME.match(line)
    return match.group(1).lower().replace("_", "-") if match else ""


def from_pyproject(pyproject: Path) -> list[str]:
    import tomllib

    with pyproject.open("rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    return [d for d in dependencies if requirement_name(d) != "torch"]


def requirements_text(requirements: list[str]) -> str:
    header = (
        "# The OmniSat engine's requirements (torch, pinned, is installed before these).\n"
        "# Generated from pyproject.toml by omnisat_qgis.package: do not edit.\n"
    )
    return header + "".join(f"{line}\n" for line in requirements)


def read_requirements(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def engine_requirements(plugin_dir: Path = PLUGIN_DIR) -> list[str]:
    shipped = plugin_dir / REQUIREMENTS_FILE
    if shipped.is_file():
        return read_requirements(shipped.read_text(encoding="utf-8"))
    pyproject = plugin_dir.parent / "pyproject.toml"
    if pyproject.is_file():
        return from_pyproject(pyproject)
    raise FileNotFoundError(f"neither {shipped} nor {pyproject} exists: reinstall the plugin zip")


def fingerprint(requirements: list[str]) -> str:
    return hashlib.sha256("\n".join(requirements).encode()).hexdigest()
