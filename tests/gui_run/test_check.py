"""tests/gui_run/check.py: passes the record of a good run, names each problem of a bad one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.engine.rasters import write_geotiff
from tests.gui_run.check import problems

CLASSES = {"forest": "#1b7837", "grassland": "#a6d96a"}


def good_run(out: Path) -> dict:
    classes = write_geotiff(out / "classes.tif", np.zeros((1, 8, 8), np.uint8))
    (out / "dock-gui.png").write_bytes(b"\x89PNG")
    return {"messages": [], "log_errors": [], "labels": {"forest": 4, "grassland": 4},
            "metrics_after_fit": "<b>Held-out accuracy</b>: OA 0.56, macro-F1 0.56 on 16 held-out cells",
            "metrics": "...", "class_colors": dict(CLASSES),
            "legends": {"Classes": [[name, color] for name, color in CLASSES.items()]},
            "rasters": {"Classes": str(classes)}}


def check(out: Path, record: dict) -> list[str]:
    (out / "timings.json").write_text(json.dumps(record))
    return problems(out)


def test_a_good_run_passes(tmp_path):
    assert check(tmp_path, good_run(tmp_path)) == []


@pytest.mark.parametrize("change, expected", [
    (lambda r: r.update(error="Traceback ... KeyError"), "the scenario raised"),
    (lambda r: r["log_errors"].append("Python error: boom"), "QGIS logged a critical message: Python error: boom"),
    (lambda r: r.update(metrics_after_fit="Draw labels, then Fit and preview."), "shows no macro-F1"),
    (lambda r: r.update(metrics_after_fit="OA 0.30, macro-F1 0.22 on 16 held-out cells"), "macro-F1 0.22"),
    (lambda r: r.update(legends={"Classes": [["class 0", "#1b7837"], ["grassland", "#a6d96a"]]}),
     "class 'forest' is not in the legend of 'Classes'"),
    (lambda r: r.update(legends={"Classes": [["forest", "#ff0000"], ["grassland", "#a6d96a"]]}),
     "class 'forest' is #ff0000 in the legend of 'Classes', #1b7837 in the dock"),
    (lambda r: r.update(legends={}), "no class map with a legend"),
    (lambda r: r.update(rasters={"Classes": "/nonexistent/classes.tif"}), "is not a valid raster"),
])
def test_each_problem_is_named(tmp_path, change, expected):
    record = good_run(tmp_path)
    change(record)
    assert any(expected in problem for problem in check(tmp_path, record))


def test_a_run_that_never_ended_fails(tmp_path):
    assert "was not written" in problems(tmp_path)[0]
