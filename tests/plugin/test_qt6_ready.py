"""The plugin runs on Qt5 and Qt6 builds of QGIS: a scan for Qt5-only idioms fails on regression."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "omnisat_qgis"
METADATA = PLUGIN.parent / "metadata.txt"

# (pattern, why it breaks on Qt6)
QT5_ONLY = (
    (r"\bexec_\s*\(", "exec_() is gone in PyQt6: call exec()"),
    (r"\bQRegExp\b", "QRegExp is gone in Qt6: use QRegularExpression"),
    (r"\bPyQt[45]\b", "import Qt through qgis.PyQt, never PyQt5 directly"),
    (r"\bQDesktopWidget\b", "QDesktopWidget is gone in Qt6: use QScreen"),
    (r"\bQVariant\.(String|Int|Double|Bool|LongLong|Date|DateTime)\b",
     "QVariant.Type is gone in Qt6: use QMetaType.Type"),
    (r"\.setMargin\s*\(", "QLayout.setMargin is gone in Qt6: use setContentsMargins"),
    (r"\bqApp\b", "qApp is gone in PyQt6: use QApplication.instance()"),
    (r"\bQt\.(?!(?:[A-Z][A-Za-z]*\.))[A-Z][A-Za-z0-9]*\b(?!\s*\()",
     "unscoped Qt enum: write the enum's class, e.g. Qt.AlignmentFlag.AlignLeft"),
    (r"\bQgs[A-Za-z0-9]+\.(?!(?:[A-Z][A-Za-z]*\.))(?:Type|Flag|Source)[A-Z][A-Za-z0-9]*\b(?!\s*\()",
     "unscoped QGIS enum: use the Qgis.* scoped enum"),
)
CODE = sorted(PLUGIN.rglob("*.py"))


def violations(text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        for pattern, why in QT5_ONLY:
            if re.search(pattern, code):
                found.append(f"line {number}: {line.strip()} -> {why}")
    return found


def test_the_scan_catches_each_idiom():
    bad = ("dialog.exec_()\nQRegExp('x')\nfrom PyQt5.QtCore import Qt\nlabel.setAlignment(Qt.AlignLeft)\n"
           "QgsField('c', QVariant.String)\nlayout.setMargin(0)\nQgsProcessing.TypeRaster\n")
    assert len(violations(bad)) == 7
    good = ("dialog.exec()\nlabel.setAlignment(Qt.AlignmentFlag.AlignLeft)\nQgsField('c', QMetaType.Type.QString)\n"
            "Qgis.ProcessingSourceType.Raster\nQt.ItemDataRole.UserRole\n")
    assert violations(good) == []


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(PLUGIN)))
def test_no_qt5_only_idiom(path):
    assert violations(path.read_text(encoding="utf-8")) == []


def test_metadata_declares_qt6_support():
    text = METADATA.read_text(encoding="utf-8")
    assert re.search(r"^supportsQt6\s*=\s*(True|yes)\s*$", text, re.MULTILINE)
