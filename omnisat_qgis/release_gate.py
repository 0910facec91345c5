"""The plugin repository's gate, run on the zip as it would be uploaded:
``python -m omnisat_qgis.release_gate [--zip ZIP] [--publish] [--out FOLDER]``.

Builds the zip (omnisat_qgis.package) unless one is given, then checks it the way the QGIS plugin
repository does on upload, and scans what it ships with the three tools the repository runs:

- the archive: at most 25 MB, with headroom (``HEADROOM``: a model update must not break an upload);
  one top folder named as a Python package with ``__init__.py`` and ``metadata.txt``; no path leaving
  the folder, no ``__pycache__``/``.git``/``__MACOSX``, no compiled file, no developer script, no test
  file, no long README; every member readable (CRC);
- metadata.txt, parsed as the repository parses it: a ``[general]`` section with every required field,
  the icon it names inside the zip, a ``LICENSE`` file, an author without a slash, web addresses with a
  scheme and a host, ``qgisMaximumVersion`` at least 4.0 (what offers the plugin to QGIS 4) and a
  changelog that starts with this version. Required fields left empty until the project has a public
  address (email, tracker, repository) are a note here and a failure with ``--publish``;
- Bandit: no finding above low severity may stay; a low one stays only when justified in place
  (``# nosec B404  # the reason``): an unmarked finding of any severity fails, and so does a nosec
  without a reason; detect-secrets: any finding fails (a checksum is marked ``pragma: allowlist
  secret`` in place); flake8: findings that are likely bugs (pyflakes' F codes, E9 syntax errors)
  fail, style findings are counted.

Exit status 0 when nothing fails; the findings and notes are printed either way.
"""

from __future__ import annotations

import argparse
import configparser
import json
import re
import subprocess  # nosec B404  # runs the scanners on the unpacked zip, argument lists, no shell
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from omnisat_qgis.package import COMPILED, PLUGIN, ROOT, build_zip

MAX_UPLOAD_BYTES = 25_000_000  # the plugin repository's limit
HEADROOM = 0.9  # fail at 22.5 MB
REQUIRED = ("name", "description", "version", "qgisMinimumVersion", "author", "email", "about", "tracker", "repository")
ADDRESSES = ("tracker", "repository", "homepage")
UNPUBLISHED_OK = ("email", "tracker", "repository")  # no public address yet: a note until --publish
DEVELOPER_SCRIPTS = re.compile(
    r"(^|/)(bench_[^/]*\.py|package\.py|release_gate\.py|Makefile|\.ci/.*|setup\.cfg|"
    r"pyproject\.toml|tox\.ini)$"
)
TEST_FILES = re.compile(r"(^|/)(tests?/|test_[^/]*\.py$|[^/]*_test\.py$|conftest\.py$)")
README_MAX_LINES = 200
FLAKE8_OPTIONS = ("--max-line-length", "120")
NOSEC = re.compile(r"#\s*nosec\b[^#]*(?:#(?P<reason>.*))?$")
FLAKE8_BLOCKING = re.compile(r"^(E9|F)\d")


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_zip(path: Path, publish: bool = False) -> Report:
    """The repository's upload checks (and ours on what a release carries) on the zip at ``path``."""
    report = Report()
    fail, note = report.failures.append, report.notes.append
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES * HEADROOM:
        fail(
            f"the zip is {size / 1e6:.1f} MB: over {HEADROOM:.0%} of the repository's "
            f"{MAX_UPLOAD_BYTES / 1e6:.0f} MB limit"
        )
    note(f"size {size / 1e6:.1f} MB of {MAX_UPLOAD_BYTES / 1e6:.0f} MB ({size / MAX_UPLOAD_BYTES:.0%})")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        fail(f"not a zip: {exc}")
        return report
    with archive:
        names = archive.namelist()
        bad = archive.testzip()
        if bad:
            fail(f"{bad}: unreadable in the zip (CRC)")
        for name in names:
            parts = name.split("/")
            if ".." in parts or name.startswith("/"):
                fail(f"{name}: leaves the plugin folder")
            if {"__pycache__", ".git", "__MACOSX"} & set(parts):
                fail(f"{name}: a folder the repository refuses")
            if Path(name).suffix in COMPILED:
                fail(f"{name}: a compiled file")
            inner = name.partition("/")[2]
            if DEVELOPER_SCRIPTS.search(inner):
                fail(f"{name}: a developer script")
            if TEST_FILES.search(inner):
                fail(f"{name}: a test file")
            if Path(name).name.upper().startswith("README"):
                lines = archive.read(name).count(b"\n")
                if lines > README_MAX_LINES:
                    fail(f"{name}: a README of {lines} lines (the documentation stays in the repository)")
        tops = {name.split("/")[0] for name in names}
        if tops != {PLUGIN}:
            fail(f"the zip must hold one folder, {PLUGIN}/: it holds {sorted(tops)}")
        if not re.match(r"^[A-Za-z][A-Za-z0-9_]+$", PLUGIN):
            fail(f"{PLUGIN}: not a Python package name")
        for required in ("__init__.py", "metadata.txt", "LICENSE"):
            if f"{PLUGIN}/{required}" not in names:
                fail(f"{PLUGIN}/{required} is missing")
        if f"{PLUGIN}/metadata.txt" in names:
            _check_metadata(archive.read(f"{PLUGIN}/metadata.txt").decode("utf-8"), set(names), publish, report)
    return report


def _check_metadata(text: str, names: set[str], publish: bool, report: Report) -> None:
    fail, note = report.failures.append, report.notes.append
    parser = configparser.ConfigParser()  # as the repository reads it (interpolation included)
    parser.optionxform = str
    try:
        parser.read_string(text)
        general = dict(parser.items("general"))
    except (configparser.Error, KeyError) as exc:
        fail(f"metadata.txt does not parse: {exc}")
        return
    for key in REQUIRED:
        if key not in general:
            fail(f"metadata.txt: {key} is missing")
        elif not general[key].strip():
            (fail if publish or key not in UNPUBLISHED_OK else note)(
                f"metadata.txt: {key} is empty (no public address yet; the repository refuses the upload)"
            )
    for key in ADDRESSES:
        value = general.get(key, "").strip()
        if value and not all(urlparse(value)[:2]):
            fail(f"metadata.txt: {key}={value} is not a web address")
    if "/" in general.get("author", ""):
        fail("metadata.txt: the author contains a slash")
    icon = general.get("icon", "").removeprefix("./")
    if not icon or f"{PLUGIN}/{icon}" not in names:
        fail(f"metadata.txt: the icon '{icon}' is not in the zip")
    try:
        maximum = tuple(int(x) for x in general.get("qgisMaximumVersion", "").split("."))
    except ValueError:
        maximum = ()
    if maximum < (4, 0):
        fail("metadata.txt: qgisMaximumVersion must be 4.0 or higher, or QGIS 4 users never see the plugin")
    if not general.get("changelog", "").strip().startswith(general.get("version", "?")):
        fail("metadata.txt: the changelog does not start with this version")


def scan(folder: Path) -> Report:
    """Bandit, detect-secrets and flake8 over the unpacked plugin folder."""
    report = Report()
    bandit = _run(sys.executable, "-m", "bandit", "-r", str(folder), "-f", "json", "-q")
    results = json.loads(bandit.stdout)
    for finding in results["results"]:
        where = f"{Path(finding['filename']).relative_to(folder.parent)}:{finding['line_number']}"
        line = f"bandit {finding['test_id']} ({finding['issue_severity'].lower()}) {where}: {finding['issue_text']}"
        report.failures.append(line + ("" if finding["issue_severity"] == "LOW" else " (above low: fix it)"))
    marked = 0
    for source in sorted(folder.rglob("*.py")):
        for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            if match := NOSEC.search(line):
                marked += 1
                if not (match.group("reason") or "").strip():
                    report.failures.append(
                        f"bandit nosec without a reason: {source.relative_to(folder.parent)}:{number}"
                    )
    report.notes.append(
        f"bandit: {len(results['results'])} finding(s) left; {marked} marked nosec in place with a reason"
    )
    secrets = _run(sys.executable, "-m", "detect_secrets", "scan", "--all-files", str(folder.name), cwd=folder.parent)
    for name, found in json.loads(secrets.stdout)["results"].items():
        report.failures += [f"detect-secrets {f['type']} {name}:{f['line_number']}" for f in found]
    flake8 = _run(sys.executable, "-m", "flake8", *FLAKE8_OPTIONS, str(folder.name), cwd=folder.parent)
    style = 0
    for line in flake8.stdout.splitlines():
        code = line.split(" ", 2)[1] if line.count(" ") >= 2 else ""
        if FLAKE8_BLOCKING.match(code):
            report.failures.append(f"flake8 {line}")
        else:
            style += 1
    report.notes.append(f"flake8: {style} style finding(s) (pycodestyle, {' '.join(FLAKE8_OPTIONS)})")
    return report


def _run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600)  # nosec B603  # no shell
    if done.returncode not in (0, 1) or not done.stdout.strip() and "flake8" not in command:
        raise SystemExit(f"release gate: {' '.join(command[:3])} failed to run:\n{done.stderr[-2000:]}")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m omnisat_qgis.release_gate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--zip", type=Path, help="check this zip instead of building one")
    parser.add_argument(
        "--publish",
        action="store_true",
        help="also fail on what only an upload needs (a public email, tracker and repository)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "out" / "release_gate",
        help="where the zip is built (default: out/release_gate)",
    )
    args = parser.parse_args(argv)
    archive = args.zip or build_zip(args.out / f"{PLUGIN}.zip")
    report = check_zip(archive, args.publish)
    with tempfile.TemporaryDirectory() as temp, zipfile.ZipFile(archive) as zf:
        zf.extractall(temp)
        scanned = scan(Path(temp) / PLUGIN)
    report.failures += scanned.failures
    report.notes += scanned.notes
    print(f"release gate: {archive}")
    for line in report.notes:
        print(f"  note: {line}")
    for line in report.failures:
        print(f"  FAIL: {line}")
    print(f"release gate: {'FAILED' if report.failures else 'passed'} ({len(report.failures)} failure(s))")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
