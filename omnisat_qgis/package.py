"""Build the installable plugin zip: ``python -m omnisat_qgis.package [--output ZIP] [--install DIR]``.

The zip holds one folder, ``omnisat_qgis/``, with the plugin code, metadata.txt, the
licence (LICENSE, which the plugin repository requires), resources/ and the engine and
training packages (run by the worker with the plugin folder on its PYTHONPATH), and
requirements.txt: the engine's requirements from pyproject.toml, which "Set up the
engine" installs after torch. What a user's QGIS does not run stays out: developer
scripts (this one, the release gate), tests, compiled files and the README (the
documentation lives in the repository). ``--install DIR`` also unpacks it into a
QGIS plugins folder (e.g. a profile's python/plugins or a QGIS_PLUGINPATH).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from pathlib import Path

from omnisat_qgis.environment.requirements import REQUIREMENTS_FILE, from_pyproject, requirements_text

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "omnisat_qgis"
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".hypothesis", "tests"}
# Developer scripts: building and checking the zip, and timing two commits of the repository
# against each other (it makes git worktrees, meaningless in an installed plugin).
SKIP_FILES = {f"{PLUGIN}/package.py", f"{PLUGIN}/release_gate.py", f"{PLUGIN}/engine/bench/auto_compare.py"}
COMPILED = {".pyc", ".pyo", ".so", ".pyd", ".dll", ".dylib", ".exe"}


def shipped(name: str) -> bool:
    """Whether a file belongs in the zip (by its name there): no test, no compiled file, no developer script."""
    base = name.rsplit("/", 1)[-1]
    return not (
        name in SKIP_FILES
        or base.startswith("test_")
        or base == "conftest.py"
        or base.startswith(".")
        or Path(base).suffix in COMPILED
    )


def _files(folder: Path, prefix: str):
    for path in sorted(folder.rglob("*")):
        name = f"{prefix}/{path.relative_to(folder).as_posix()}"
        if path.is_file() and not SKIP_PARTS & set(path.relative_to(folder).parts) and shipped(name):
            yield path, name


def plugin_entries():
    """(source file, name in the zip) for everything the installed plugin needs."""
    yield from _files(ROOT / PLUGIN, PLUGIN)
    yield ROOT / "metadata.txt", f"{PLUGIN}/metadata.txt"
    yield ROOT / "LICENSE", f"{PLUGIN}/LICENSE"
    yield from _files(ROOT / "resources", f"{PLUGIN}/resources")
    yield from _files(ROOT / "engine", f"{PLUGIN}/engine")
    yield from _files(ROOT / "training", f"{PLUGIN}/training")


def build_zip(output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = output.with_name(f".{output.name}.partial")
    with zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as archive:
        for source, name in plugin_entries():
            archive.write(source, name)
        archive.writestr(f"{PLUGIN}/{REQUIREMENTS_FILE}", requirements_text(from_pyproject(ROOT / "pyproject.toml")))
    temp.replace(output)
    return output


def install_zip(archive: Path, plugins_dir: Path) -> Path:
    target = plugins_dir / PLUGIN
    if target.exists():
        shutil.rmtree(target)
    plugins_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(plugins_dir)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m omnisat_qgis.package", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "dist" / f"{PLUGIN}.zip",
        help="zip to write (default: dist/omnisat_qgis.zip)",
    )
    parser.add_argument(
        "--install", type=Path, metavar="PLUGINS_DIR", help="also unpack the zip into this QGIS plugins folder"
    )
    args = parser.parse_args(argv)
    archive = build_zip(args.output)
    print(f"plugin zip: {archive} ({archive.stat().st_size / 1e6:.1f} MB)")
    if args.install:
        print(f"installed: {install_zip(archive, args.install)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
