"""What the real-QGIS scenarios share (startup.py, assess_startup.py, crops_startup.py, run by
``qgis --code``): the record of checks and failures, steps that end the run with their traceback,
timers, waiting for the dock's task, QGIS's log watched for errors, and the labels drawn on eo-learn's
polygons. The scenario sets ``finish`` (how it ends) after defining it.

QGIS runs a ``--code`` script without ``__file__``: the scripts put this folder
($OMNISAT_GUI_SCRIPTS, set by the run scripts) at the end of ``sys.path``, after the plugin folder,
so that the plugin imported is still the installed one.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from qgis.core import Qgis, QgsFeature, QgsGeometry, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QThreadPool, QTimer
from qgis.utils import iface, plugins, unloadPlugin

QThreadPool.globalInstance().setExpiryTimeout(1000)  # idle render threads end within a second (see quit_qgis)


class Scenario:
    def __init__(self, allowed_criticals: tuple[str, ...] = ()):
        self.record: dict = {"checks": [], "failures": [], "timings": {}, "log_errors": []}
        self.state: dict = {}
        self.finish: Callable[[str], None] = lambda error="": None
        self.allowed = allowed_criticals  # texts of Critical messages the scenario provokes on purpose

    def check(self, name: str, ok, detail="") -> bool:
        self.record["checks"].append({"check": name, "ok": bool(ok), "detail": str(detail)[:2000]})
        if not ok:
            self.record["failures"].append(f"{name}: {detail}"[:2000])
        return bool(ok)

    def conclude(self, out: Path, error: str = "") -> None:
        """The end in ``out``/result.json: the error if any, the dock's messages, the log's errors."""
        if error:
            self.check("the scenario ran to its end", False, error)
        if self.state.get("dock") is not None:
            self.record["messages"] = self.state["dock"].messages
        errors = self.record["log_errors"]
        self.check("no error in QGIS's log (Python errors, OmniSat criticals)", not errors, errors)
        self.record["finished"] = not error
        (out / "result.json").write_text(json.dumps(self.record, indent=2))

    def logged(self, message, tag, level) -> None:
        """Slot of QgsApplication.messageLog().messageReceived: Python errors and OmniSat criticals."""
        critical = level == Qgis.MessageLevel.Critical and tag in ("OmniSat", "Processing")
        if tag == "Python error" or (critical and not any(text in message for text in self.allowed)):
            self.record["log_errors"].append(f"[{tag}] {message}"[:2000])

    def guarded(self, step):
        def run(*args):
            try:
                step(*args)
            except Exception:  # any failure ends the run with its traceback in result.json
                self.finish(traceback.format_exc())

        return run

    def later(self, step, ms: int = 1000) -> None:
        QTimer.singleShot(ms, self.guarded(step))

    def when_done(self, then, started: float, key: str) -> None:
        """Poll until the dock's task ends, record its seconds under ``key``, then call ``then``."""

        def poll():
            if self.state["dock"].task is not None:
                QTimer.singleShot(100, self.guarded(poll))
                return
            self.record["timings"][key] = round(time.monotonic() - started, 2)
            then()

        QTimer.singleShot(100, self.guarded(poll))


def labels_from_polygons(dock, inside, polygons_path: str, per_class: dict[str, int], path: str) -> tuple:
    """Points inside eo-learn land-cover polygons and inside ``inside`` (the polygons reach beyond the
    Sentinel-2 scene), one per polygon, at most ``per_class[name]`` per class, the largest polygons
    first: what an analyst clicks, one point per field. Returns (labels layer, points per class)."""
    polygons = QgsVectorLayer(polygons_path, "lulc", "ogr")
    dock.class_table.setRowCount(0)
    for name in per_class:
        dock.add_class(name)
    layer = dock.new_labels_layer(path)
    area = QgsGeometry.fromRect(inside)
    taken = dict.fromkeys(per_class, 0)
    for polygon in sorted(polygons.getFeatures(), key=lambda f: -f.geometry().intersection(area).area()):
        name = polygon["LULC_NAME"]
        point = polygon.geometry().intersection(area).pointOnSurface()
        if name in taken and taken[name] < per_class[name] and not point.isEmpty():
            feature = QgsFeature(layer.fields())
            feature.setGeometry(point)
            feature["class"] = name
            layer.addFeature(feature)
            taken[name] += 1
    return layer, taken


def group_of_last_map(dock) -> str:
    text = next(m for m in reversed(dock.messages) if m.startswith("Mapped"))
    return text.split("group '")[1].rstrip("'.")


def classes_layer(group_name: str):
    """The 'Classes' layer the dock added in the group of a map run."""
    group = QgsProject.instance().layerTreeRoot().findGroup(group_name)
    return next(n.layer() for n in group.findLayers() if n.layer().name() == "Classes")


def quit_qgis() -> None:
    """File > Exit as the analyst leaves: the plugin unloaded first (its dock and workers end before QGIS's
    teardown), the project cleared (no "save the project?" question), then exit once idle pooled threads
    have ended. QGIS 3.40 crashed at exit (signal 11) in runs under load: gdb showed a pooled render thread
    ending, its QThread::finished slot running inside ~QgsApplication."""
    if "omnisat_qgis" in plugins:
        unloadPlugin("omnisat_qgis")
    QgsProject.instance().clear()
    QTimer.singleShot(3000, iface.actionExit().trigger)
