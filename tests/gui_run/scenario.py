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
PROGRESS_GAP_LIMIT_S = 5.0  # issue 25: no step of a run goes longer than this without progress in the dock


class ProgressRecorder:
    """What the analyst sees move during a run: the dock's progress bar (its percent, then the outcome)
    and the line under it (what the engine says it is doing), read every 100 ms on QGIS's main thread,
    each change stamped. A read delayed by a busy main thread counts as silence: the dock could not
    repaint then either."""

    def __init__(self, dock, on_text: tuple[str, Callable[[], None]] | None = None):
        self.dock = dock
        self.changes: list[tuple[float, str, str]] = []  # (time, bar's text, the line under it)
        self.on_text = on_text  # (start of a line, what to do the first time the line under the bar reads so)
        self.timer = QTimer()
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._read)

    def start(self) -> None:
        """Before the run's button is pressed: the press itself is where the first silence starts."""
        self.changes = [(time.monotonic(), self.dock.progress.text(), self.dock.doing.text())]
        self.timer.start()

    def _read(self) -> None:
        shown = (self.dock.progress.text(), self.dock.doing.text())
        if shown != self.changes[-1][1:]:
            self.changes.append((time.monotonic(), *shown))
            if self.on_text and shown[1].startswith(self.on_text[0]):
                action, self.on_text = self.on_text[1], None
                action()

    @staticmethod
    def _longest(changes: list[tuple[float, str]], end: float) -> tuple[float, str]:
        """The longest time between a change and the next (the last: until ``end``), and what was shown."""
        kept = [c for i, c in enumerate(changes) if i == 0 or c[1] != changes[i - 1][1]]
        ends = [t for t, _ in kept[1:]] + [end]
        return max((stop - t, text) for (t, text), stop in zip(kept, ends))

    def stop(self) -> dict:
        """The longest silence (s) from the press to now, with what the dock showed during it; the same
        for the progress bar alone (its percent moves in whole points)."""
        self.timer.stop()
        self._read()
        end = time.monotonic()
        longest, shown = self._longest([(t, f"{bar} | {doing}") for t, bar, doing in self.changes], end)
        bar_longest, bar_shown = self._longest([(t, bar) for t, bar, _ in self.changes], end)
        return {
            "longest_gap_s": round(longest, 2),
            "shown": shown,
            "bar_alone_longest_gap_s": round(bar_longest, 2),
            "bar_alone_shown": bar_shown,
            "changes": len(self.changes) - 1,
            "run_s": round(end - self.changes[0][0], 2),
        }


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

    def check_progress(self, run: str, gaps: dict) -> None:
        self.record.setdefault("progress_gaps", {})[run] = gaps
        self.check(
            f"the dock's progress moves at least every {PROGRESS_GAP_LIMIT_S:.0f} s during the {run.replace('_', ' ')}",
            gaps["longest_gap_s"] < PROGRESS_GAP_LIMIT_S,
            gaps,
        )

    def guarded(self, step):
        def run(*args):
            try:
                step(*args)
            except Exception:  # any failure ends the run with its traceback in result.json
                self.finish(traceback.format_exc())

        return run

    def later(self, step, ms: int = 1000) -> None:
        QTimer.singleShot(ms, self.guarded(step))

    def when_done(self, then, started: float, key: str, progress: ProgressRecorder | None = None) -> None:
        """Poll until the dock's task ends, record its seconds under ``key``, then call ``then``. With
        ``progress`` (started before the press): its longest silence recorded and checked too."""

        def poll():
            if self.state["dock"].task is not None:
                QTimer.singleShot(100, self.guarded(poll))
                return
            self.record["timings"][key] = round(time.monotonic() - started, 2)
            if progress is not None:
                self.check_progress(key.removesuffix("_s"), progress.stop())
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
