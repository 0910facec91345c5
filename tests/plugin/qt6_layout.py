"""Qt6's module layout simulated over QGIS 3.40's Qt5 (no Qt6 QGIS can be installed here):
``python -m tests.plugin.qt6_layout [MODULE...]`` imports every plugin module (or the ones named) with

- ``qgis.PyQt.QtWidgets`` without the classes Qt6 moved to QtGui (QAction, QActionGroup, QShortcut, ...),
  nor the ones it removed (QDesktopWidget, QDirModel, qApp);
- ``qgis.PyQt.QtCore`` / ``QtGui`` without QRegExp, QTextCodec, QStringRef, QRegExpValidator, QMatrix;
- ``qgis.PyQt.Qt`` gone;
- ``Qt`` answering only scoped enums (``Qt.AlignmentFlag.AlignLeft``, never ``Qt.AlignLeft``),

then starts the plugin (initGui, unload) against a stand-in interface. Prints one line per module and
exits 1 on the first failure, with its traceback. Run in a fresh process: it replaces modules for good.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
import types

MOVED_TO_QTGUI = (
    "QAction",
    "QActionGroup",
    "QShortcut",
    "QFileSystemModel",
    "QUndoCommand",
    "QUndoGroup",
    "QUndoStack",
)
REMOVED = {
    "QtWidgets": ("QDesktopWidget", "QDirModel", "qApp", *MOVED_TO_QTGUI),
    "QtCore": ("QRegExp", "QTextCodec", "QTextDecoder", "QTextEncoder", "QStringRef", "QLinkedList"),
    "QtGui": ("QRegExpValidator", "QMatrix"),
}


class ScopedQt:
    """Qt as PyQt6 has it: enum classes and functions, no enum value without its enum's name."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        value = getattr(self._real, name)
        if not isinstance(value, type) and type(type(value)).__name__ == "enumtype":
            raise AttributeError(f"type object 'Qt' has no attribute '{name}' (Qt6 enums are scoped)")
        return value


def simulate_qt6() -> None:
    import qgis.PyQt
    from qgis.PyQt import QtCore, QtGui, QtWidgets

    for real in (QtWidgets, QtCore, QtGui):
        short = real.__name__.rsplit(".", 1)[1]
        fake = types.ModuleType(real.__name__, real.__doc__)
        fake.__dict__.update({k: v for k, v in vars(real).items() if k not in REMOVED[short]})
        if short == "QtGui":
            fake.__dict__.update({name: getattr(QtWidgets, name) for name in MOVED_TO_QTGUI})
        if short == "QtCore":
            fake.Qt = ScopedQt(real.Qt)
        sys.modules[real.__name__] = fake
        setattr(qgis.PyQt, short, fake)
    sys.modules["qgis.PyQt.Qt"] = None  # "import qgis.PyQt.Qt" raises ImportError, as on Qt6
    if hasattr(qgis.PyQt, "Qt"):
        delattr(qgis.PyQt, "Qt")


def plugin_modules() -> list[str]:
    import omnisat_qgis

    return ["omnisat_qgis", *sorted(m.name for m in pkgutil.walk_packages(omnisat_qgis.__path__, "omnisat_qgis."))]


def start_plugin() -> None:
    from omnisat_qgis import classFactory
    from tests.plugin.test_plugin_menu import FakeIface

    iface = FakeIface()
    plugin = classFactory(iface)
    plugin.initGui()
    if not iface.menu:
        raise AssertionError("initGui added no menu entry")
    plugin.unload()


def main(argv: list[str]) -> int:
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    simulate_qt6()
    for name in argv or plugin_modules():
        try:
            importlib.import_module(name)
        except Exception:  # every failure is reported with its module, then the run fails
            print(f"FAIL import {name}\n{traceback.format_exc()}", flush=True)
            return 1
        print(f"ok import {name}", flush=True)
    if not argv:
        try:
            start_plugin()
        except Exception:  # as above
            print(f"FAIL initGui\n{traceback.format_exc()}", flush=True)
            return 1
        print("ok initGui/unload", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
