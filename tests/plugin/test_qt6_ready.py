"""The plugin runs on Qt5 and Qt6 builds of QGIS (3.40 LTR and 4.x): a scan for Qt5-only idioms
(tests/plugin/qt6_rules.py) fails on regression, and the scan itself is checked against lines known
to break on Qt6 (each must be flagged with its rule) and their Qt6-safe forms (none flagged)."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from tests.plugin.qt6_rules import RULES, violations

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "omnisat_qgis"
METADATA = ROOT / "metadata.txt"
DATA = Path(__file__).parent / "data"
# Code QGIS runs: the plugin, and the scripts that drive the plugin inside QGIS (real-QGIS run, benches).
CODE = sorted(
    [*PLUGIN.rglob("*.py"), *(ROOT / "tests" / "gui_run").glob("*.py"), *(ROOT / "tests" / "bench").glob("*.py")]
)


def fixture_lines(name: str) -> list[str]:
    return [
        line
        for line in (DATA / name).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


QT5_ONLY = [tuple(part.strip() for part in line.split("|", 1)) for line in fixture_lines("qt5_only_lines.txt")]


@pytest.mark.parametrize("rule, code", QT5_ONLY, ids=[f"{r}:{c[:40]}" for r, c in QT5_ONLY])
def test_each_known_qt5_only_line_is_flagged_with_its_rule(rule, code):
    assert rule in RULES, f"unknown rule {rule!r} in qt5_only_lines.txt"
    assert rule in {found for _, found in violations(code)}, f"{code!r} is not flagged as {rule}"


def test_every_rule_has_known_bad_lines():
    assert {rule for rule, _ in QT5_ONLY} == set(RULES)


@pytest.mark.parametrize("code", fixture_lines("qt6_safe_lines.txt"))
def test_the_qt6_safe_forms_are_not_flagged(code):
    assert violations(code) == []


def test_qgis_340_exports_the_moved_classes_from_qtgui():
    # What makes `from qgis.PyQt.QtGui import QAction` safe on QGIS 3.40's Qt5 builds too.
    from qgis.PyQt import QtGui, QtWidgets

    for name in ("QAction", "QActionGroup", "QShortcut"):
        assert getattr(QtGui, name) is getattr(QtWidgets, name)


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_qt5_only_idiom(path):
    found = violations(path.read_text(encoding="utf-8"))
    assert found == [], "\n".join(f"{path.relative_to(ROOT)}:{line}: {RULES[rule].why}" for line, rule in found)


def test_metadata_declares_qgis_4():
    parser = configparser.ConfigParser(interpolation=None)  # what QGIS's plugin manager reads it with
    parser.read_string(METADATA.read_text(encoding="utf-8"))
    general = parser["general"]
    assert general["qgisMinimumVersion"] == "3.40"
    major, minor = (int(x) for x in general["qgisMaximumVersion"].split("."))
    assert (major, minor) >= (4, 0), "the plugin repository offers a plugin to QGIS 4 only when this is >= 4.0"
    assert general["changelog"].strip().startswith(general["version"]), "the changelog starts with this version"
