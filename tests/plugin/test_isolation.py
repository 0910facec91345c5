"""QGIS's interpreter never imports torch or rasterio: the engine runs as a worker process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback
app = QgsApplication([], False)
app.initQgis()
import omnisat_qgis
plugin = omnisat_qgis.classFactory(None)
plugin.initProcessing()
alg = QgsApplication.processingRegistry().createAlgorithmById("omnisat:normalizedindex")
params = {"INPUT": sys.argv[1], "BAND_A": 4, "BAND_B": 3, "OUTPUT": sys.argv[2]}
results, ok = alg.run(params, QgsProcessingContext(), QgsProcessingFeedback())
plugin.unload()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "rasterio", "engine"))
print(json.dumps({"ok": ok, "heavy": heavy}))
"""


def test_plugin_never_imports_torch_or_rasterio(small_raster: Path, tmp_path: Path):
    out = tmp_path / "o.tif"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(small_raster), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] and out.exists(), "the algorithm must really have run"
    assert report["heavy"] == [], f"QGIS's interpreter imported {report['heavy']}"
