"""Every plugin module imports, and the plugin starts, with Qt6's module layout simulated
(tests/plugin/qt6_layout.py): what a QGIS 4 build would do first, checked without one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def simulate(*modules: str, path: Path | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT, path) if p),
        "QT_QPA_PLATFORM": "offscreen",
    }
    return subprocess.run(
        [sys.executable, "-m", "tests.plugin.qt6_layout", *modules],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_plugin_module_imports_and_the_plugin_starts_with_qt6s_layout():
    done = simulate()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    modules = {
        p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
        for p in (ROOT / "omnisat_qgis").rglob("*.py")
    }
    imported = {line.split()[-1] for line in done.stdout.splitlines() if line.startswith("ok import ")}
    assert imported == modules
    assert "ok initGui/unload" in done.stdout


@pytest.mark.parametrize(
    "code",
    [
        "from qgis.PyQt.QtWidgets import QAction",
        "from qgis.PyQt.QtWidgets import QShortcut",
        "from qgis.PyQt.QtCore import QRegExp",
        "from qgis.PyQt.QtCore import Qt\nLEFT = Qt.AlignLeft",
        "from qgis.PyQt.Qt import Qt",
    ],
)
def test_the_simulation_rejects_what_qt6_lacks(tmp_path, code):
    (tmp_path / "qt5_only.py").write_text(code + "\n")
    done = simulate("qt5_only", path=tmp_path)
    assert done.returncode == 1 and "FAIL import qt5_only" in done.stdout, done.stdout + done.stderr
    # ... while the same code imports on the real Qt5 layout (the failure is the simulation's doing)
    plain = subprocess.run(
        [sys.executable, "-c", "import qt5_only"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        timeout=120,
    )
    assert plain.returncode == 0, plain.stderr
