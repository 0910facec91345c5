"""The plugin repository's gate (omnisat_qgis/release_gate.py): the real zip passes it, and each thing
the repository refuses, planted in a small plugin zip, makes it fail."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from omnisat_qgis import release_gate
from omnisat_qgis.package import ROOT, build_zip, plugin_entries

SMALL = ("__init__.py", "plugin.py", "metadata.txt", "LICENSE", "resources/icons/omnisat.svg")


def small_zip(
    path: Path, extra: dict[str, str] | None = None, drop: tuple[str, ...] = (), metadata: str | None = None
) -> Path:
    """A plugin zip with the real metadata, licence and icon (fast to build), changed as asked."""
    sources = {name: source for source, name in plugin_entries() if name.partition("/")[2] in SMALL}
    with zipfile.ZipFile(path, "w") as archive:
        for name, source in sources.items():
            if name.partition("/")[2] in drop:
                continue
            if name.endswith("metadata.txt") and metadata is not None:
                archive.writestr(name, metadata)
            else:
                archive.write(source, name)
        for name, text in (extra or {}).items():
            archive.writestr(name, text)
    return path


def test_the_shipped_zip_passes_the_repository_checks(tmp_path):
    archive = build_zip(tmp_path / "omnisat_qgis.zip")
    report = release_gate.check_zip(archive)
    assert report.failures == []
    names = zipfile.ZipFile(archive).namelist()
    assert "omnisat_qgis/LICENSE" in names and "omnisat_qgis/README.md" not in names
    assert not [n for n in names if "bench_preview" in n or "bench_worker" in n or n.endswith("package.py")]
    assert "omnisat_qgis/engine/bench/auto_compare.py" not in names  # a developer script (git worktrees)
    # ... but not an upload yet: no public address exists, and --publish says so
    published = release_gate.check_zip(archive, publish=True)
    assert sorted(f.split(":")[1].split()[0] for f in published.failures) == ["email", "repository", "tracker"]


def test_a_small_zip_passes(tmp_path):
    assert release_gate.check_zip(small_zip(tmp_path / "p.zip")).failures == []


METADATA = (ROOT / "metadata.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "case, change, expected",
    [
        ("compiled", {"extra": {"omnisat_qgis/plugin.cpython-311.pyc": "x"}}, "a compiled file"),
        ("pycache", {"extra": {"omnisat_qgis/__pycache__/plugin.py": "x"}}, "a folder the repository refuses"),
        ("bench", {"extra": {"omnisat_qgis/bench_preview.py": "x = 1\n"}}, "a developer script"),
        ("ci", {"extra": {"omnisat_qgis/.ci/test": "x"}}, "a developer script"),
        ("tests", {"extra": {"omnisat_qgis/tests/helpers.py": "x = 1\n"}}, "a test file"),
        ("test file", {"extra": {"omnisat_qgis/engine/test_io.py": "x = 1\n"}}, "a test file"),
        ("readme", {"extra": {"omnisat_qgis/README.md": "line\n" * 1000}}, "a README of 1000 lines"),
        ("escape", {"extra": {"omnisat_qgis/../evil.py": "x = 1\n"}}, "leaves the plugin folder"),
        ("two folders", {"extra": {"other/x.py": "x = 1\n"}}, "must hold one folder"),
        ("licence", {"drop": ("LICENSE",)}, "omnisat_qgis/LICENSE is missing"),
        (
            "icon",
            {"drop": ("resources/icons/omnisat.svg",)},
            "the icon 'resources/icons/omnisat.svg' is not in the zip",
        ),
        (
            "qgis 4",
            {"metadata": METADATA.replace("qgisMaximumVersion=4.99", "qgisMaximumVersion=3.99")},
            "qgisMaximumVersion must be 4.0 or higher",
        ),
        (
            "no maximum",
            {"metadata": METADATA.replace("qgisMaximumVersion=4.99\n", "")},
            "qgisMaximumVersion must be 4.0 or higher",
        ),
        ("about", {"metadata": METADATA.replace("\nabout=", "\nabout_=")}, "metadata.txt: about is missing"),
        (
            "address",
            {"metadata": METADATA.replace("homepage=\n", "homepage=omnisat\n")},
            "homepage=omnisat is not a web",
        ),
        ("author", {"metadata": METADATA.replace("author=", "author=a/b ")}, "the author contains a slash"),
        ("changelog", {"metadata": METADATA.replace("    0.1.0 -", "    0.0.9 -")}, "changelog does not start"),
        ("percent", {"metadata": METADATA.replace("description=", "description=100% ")}, "does not parse"),
    ],
)
def test_each_refused_content_fails_the_gate(tmp_path, case, change, expected):
    report = release_gate.check_zip(small_zip(tmp_path / "p.zip", **change))
    assert any(expected in failure for failure in report.failures), report.failures


def test_a_zip_near_the_size_limit_fails(tmp_path, monkeypatch):
    archive = small_zip(tmp_path / "p.zip")
    monkeypatch.setattr(release_gate, "MAX_UPLOAD_BYTES", int(archive.stat().st_size / release_gate.HEADROOM) - 1)
    assert any("over 90% of the repository's" in f for f in release_gate.check_zip(archive).failures)


def test_the_scanners_fail_on_planted_findings(tmp_path):
    folder = tmp_path / "omnisat_qgis"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "clean.py").write_text("import subprocess  # nosec B404  # starts a fixed tool\n\nRUN = subprocess.run\n")
    assert release_gate.scan(folder).failures == []
    (folder / "shell.py").write_text("import os\n\n\ndef run(command):\n    os.system(command)\n")
    (folder / "key.py").write_text('AWS = "AKIA' + 'ZZZZZZZZZZZZZZZZ"\n')  # split: no secret in this test file
    (folder / "undefined.py").write_text("def f():\n    return missing_name\n")
    (folder / "bare.py").write_text("import pickle  # nosec B403\n")
    failures = release_gate.scan(folder).failures
    assert any(f.startswith("bandit B605") and "shell.py:5" in f for f in failures), failures
    assert any(f.startswith("detect-secrets AWS Access Key") and "key.py:1" in f for f in failures), failures
    assert any(f.startswith("flake8") and "F821" in f for f in failures), failures
    assert any(f.startswith("bandit nosec without a reason") and "bare.py:1" in f for f in failures), failures
