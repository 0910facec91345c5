"""Qt5-only idioms that break the plugin on a Qt6 build of QGIS (QGIS 4), found by reading the code.

The rule list follows what QGIS's own PyQt5-to-PyQt6 conversion script rewrites or warns about
(scripts/pyqt5_to_pyqt6 in the QGIS source) and Qt6's porting notes: exec_, QVariant types and
null values, QDateTime constructors, qApp, QFontMetrics.width, the [str] signal overloads, compiled
resources, the qgis.PyQt.Qt module, direct PyQt5 imports, fragile addAction overloads, desktop(),
renamed enum values, unscoped enum values, and the classes Qt6 moved (QAction to QtGui) or removed
(QRegExp, QDesktopWidget, QTextCodec, ...). Unscoped enum values are found by resolving each
``Class.Member`` against the installed QGIS: a member that is an enum value reached without its
enum's name does not exist on Qt6 (PyQt6 enums are scoped).
"""

from __future__ import annotations

import ast
import enum
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Rule:
    id: str
    why: str


RULES = {
    r.id: r
    for r in (
        Rule("exec_", "exec_() is gone in PyQt6: call (or define) exec()"),
        Rule(
            "moved-to-qtgui",
            "Qt6 moved this class from QtWidgets to QtGui: import it from qgis.PyQt.QtGui "
            "(QGIS 3.40's qgis.PyQt.QtGui re-exports it on Qt5)",
        ),
        Rule(
            "removed-class",
            "this class is gone in Qt6 (QRegExp -> QRegularExpression, QDesktopWidget -> QScreen, "
            "QTextCodec/QStringRef -> Python str, QMatrix -> QTransform, QtWebKit -> none)",
        ),
        Rule("direct-pyqt", "import Qt through qgis.PyQt (and sip as qgis.PyQt.sip), never PyQt5/PyQt6 directly"),
        Rule("qt-module", "the qgis.PyQt.Qt module is gone with Qt6: import from qgis.PyQt.QtCore"),
        Rule("qapp", "qApp is gone in PyQt6: use QApplication.instance()"),
        Rule("qvariant-type", "QVariant.Type is gone in Qt6: use QMetaType.Type (e.g. QMetaType.Type.QString)"),
        Rule("qvariant-null", "QVariant() / QVariant(QVariant.X) as a null value: use qgis.core.NULL"),
        Rule(
            "qdatetime-ctor",
            "QDateTime(y, m, d, h, mi, s, ms, spec) and QDateTime(QDate) are gone in PyQt6: "
            "use QDateTime(QDate(...), QTime(...))",
        ),
        Rule("desktop", "QApplication.desktop() (QDesktopWidget) is gone in Qt6: use QScreen"),
        Rule("fontmetrics-width", "QFontMetrics.width() is gone in Qt6: use horizontalAdvance()"),
        Rule(
            "str-overload",
            "the [str] signal overloads (activated[str], currentIndexChanged[str]) are gone in Qt6: "
            "use textActivated / currentTextChanged",
        ),
        Rule("resources-rc", "compiled resources (resources_rc) are gone with Qt6: load icons by file path"),
        Rule(
            "add-action",
            "addAction(icon, text, receiver, slot...) overloads changed in Qt6: build a QAction, "
            "then addAction(action)",
        ),
        Rule(
            "renamed-enum",
            "renamed in Qt6: Qt.MidButton -> Qt.MouseButton.MiddleButton, Qt.TextColorRole -> "
            "Qt.ItemDataRole.ForegroundRole, Qt.BackgroundColorRole -> Qt.ItemDataRole.BackgroundRole, "
            "QPainter.HighQualityAntialiasing -> QPainter.RenderHint.Antialiasing",
        ),
        Rule("set-margin", "QLayout.setMargin is gone in Qt6: use setContentsMargins"),
        Rule(
            "unscoped-enum",
            "unscoped enum value: write the enum's class, e.g. Qt.AlignmentFlag.AlignLeft, "
            "Qgis.ProcessingSourceType.Raster",
        ),
    )
}

MOVED_TO_QTGUI = {
    "QAction",
    "QActionGroup",
    "QShortcut",
    "QFileSystemModel",
    "QUndoCommand",
    "QUndoGroup",
    "QUndoStack",
}
REMOVED = {
    "QRegExp",
    "QRegExpValidator",
    "QDesktopWidget",
    "QTextCodec",
    "QTextDecoder",
    "QTextEncoder",
    "QStringRef",
    "QLinkedList",
    "QMatrix",
    "QDirModel",
    "QGLWidget",
    "QSound",
    "QtWebKit",
    "QtWebKitWidgets",
    "QWebView",
    "QWebPage",
}
RENAMED_ENUMS = {
    ("Qt", "MidButton"),
    ("Qt", "TextColorRole"),
    ("Qt", "BackgroundColorRole"),
    ("QPainter", "HighQualityAntialiasing"),
}
STR_OVERLOADS = {"activated", "currentIndexChanged", "highlighted"}
FONT_METRICS = {"QFontMetrics", "QFontMetricsF"}
NAMESPACES = (
    "qgis.core",
    "qgis.gui",
    "qgis.analysis",
    "qgis.PyQt.QtCore",
    "qgis.PyQt.QtGui",
    "qgis.PyQt.QtWidgets",
    "qgis.PyQt.QtNetwork",
    "qgis.PyQt.QtXml",
    "qgis.PyQt.QtSvg",
)


@lru_cache(maxsize=1)
def qt_names() -> dict[str, object]:
    """The classes a plugin module can name, from the installed QGIS (the enum check resolves against them)."""
    import importlib

    names: dict[str, object] = {}
    for module in NAMESPACES:
        names.update(vars(importlib.import_module(module)))
    return names


def is_enum_value(value: object) -> bool:
    if isinstance(value, enum.Enum):
        return True
    return type(type(value)).__name__ == "enumtype"  # PyQt5's sip enums: their values are ints


def _unscoped(node: ast.Attribute) -> bool:
    if not isinstance(node.value, ast.Name) or not node.attr[:1].isupper():
        return False
    owner = qt_names().get(node.value.id)
    if not isinstance(owner, type):
        return False
    try:
        value = getattr(owner, node.attr)
    except AttributeError:
        return False
    return not isinstance(value, type) and is_enum_value(value)


def _font_metrics_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id in FONT_METRICS) or (
        isinstance(func, ast.Attribute) and func.attr == "fontMetrics"
    )


def _rules_of(node: ast.AST, metrics_names: set[str]) -> list[str]:
    found = []
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""
        names = {alias.name for alias in node.names}
        if module.split(".")[0] in ("PyQt4", "PyQt5", "PyQt6", "sip"):
            found.append("direct-pyqt")
        if module == "qgis.PyQt.Qt":
            found.append("qt-module")
        if module.endswith("QtWidgets") and names & MOVED_TO_QTGUI:
            found.append("moved-to-qtgui")
        if names & REMOVED:
            found.append("removed-class")
        if "qApp" in names:
            found.append("qapp")
        if "resources_rc" in names or module.endswith("resources_rc"):
            found.append("resources-rc")
    elif isinstance(node, ast.Import):
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top in ("PyQt4", "PyQt5", "PyQt6", "sip"):
                found.append("direct-pyqt")
            if alias.name.endswith("resources_rc"):
                found.append("resources-rc")
    elif isinstance(node, ast.FunctionDef) and node.name == "exec_":
        found.append("exec_")
    elif isinstance(node, ast.Name):
        if node.id in REMOVED:
            found.append("removed-class")
        if node.id == "qApp":
            found.append("qapp")
    elif isinstance(node, ast.Attribute):
        base = node.value.id if isinstance(node.value, ast.Name) else None
        if node.attr == "exec_":
            found.append("exec_")
        if base == "QtWidgets" and node.attr in MOVED_TO_QTGUI:
            found.append("moved-to-qtgui")
        if node.attr in REMOVED:
            found.append("removed-class")
        if base == "QVariant" and node.attr[:1].isupper():
            found.append("qvariant-type")
        if (base, node.attr) in RENAMED_ENUMS:
            found.append("renamed-enum")
        elif _unscoped(node):
            found.append("unscoped-enum")
        if node.attr == "width" and (_font_metrics_call(node.value) or base in metrics_names):
            found.append("fontmetrics-width")
    elif isinstance(node, ast.Call):
        func = node.func
        if (
            isinstance(func, ast.Name)
            and func.id == "QVariant"
            and (
                not node.args
                or (
                    len(node.args) == 1
                    and isinstance(node.args[0], ast.Attribute)
                    and isinstance(node.args[0].value, ast.Name)
                    and node.args[0].value.id == "QVariant"
                )
            )
        ):
            found.append("qvariant-null")
        if (
            isinstance(func, ast.Name)
            and func.id == "QDateTime"
            and (
                len(node.args) == 8
                or (
                    len(node.args) == 1
                    and isinstance(node.args[0], ast.Call)
                    and isinstance(node.args[0].func, ast.Name)
                    and node.args[0].func.id == "QDate"
                )
            )
        ):
            found.append("qdatetime-ctor")
        if isinstance(func, ast.Attribute):
            if func.attr == "desktop" and not node.args:
                found.append("desktop")
            if func.attr == "addAction" and len(node.args) >= 4:
                found.append("add-action")
            if func.attr == "setMargin":
                found.append("set-margin")
    elif isinstance(node, ast.Subscript):
        if (
            isinstance(node.value, ast.Attribute)
            and node.value.attr in STR_OVERLOADS
            and isinstance(node.slice, ast.Name)
            and node.slice.id == "str"
        ):
            found.append("str-overload")
    return found


def violations(source: str) -> list[tuple[int, str]]:
    """(line, rule id) for every Qt5-only idiom in ``source``, in line order."""
    tree = ast.parse(source)
    # names bound to a QFontMetrics(...) anywhere in the module: their .width() is the removed one
    metrics_names = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and _font_metrics_call(node.value)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found = {(getattr(node, "lineno", 0), rule) for node in ast.walk(tree) for rule in _rules_of(node, metrics_names)}
    return sorted(found)
