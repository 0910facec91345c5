"""The managed engine environment: base-Python search per install layout, the CUDA table,
the requirements shipped in the zip, and the set-up's failure paths with a fake pip."""

from __future__ import annotations

import json
import os
import re
import sys
import time
import zipfile
from pathlib import Path

import pytest

from omnisat_qgis.environment import builder
from omnisat_qgis.environment.builder import (
    STAMP,
    Commands,
    SetupCallbacks,
    SetupCancelled,
    SetupError,
    SetupOptions,
    explain,
    redact,
    set_up_engine,
)
from omnisat_qgis.environment.interpreters import NoPythonError, Probe, find_base_python, python_candidates
from omnisat_qgis.environment.requirements import engine_requirements, from_pyproject, read_requirements
from omnisat_qgis.environment.torch_builds import (
    TORCH_VERSION,
    choose_torch_build,
    parse_driver_version,
)
from omnisat_qgis.paths import engine_root, resources_dir

ROOT = Path(__file__).resolve().parents[2]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def good(_: Path) -> Probe:
    return Probe((3, 12), True)


# --- which Python the environment is made from, per install layout ---


def test_linux_package_layout_prefers_qgis_own_python(tmp_path):
    usr = tmp_path / "usr"
    qgis_python = touch(usr / "bin" / "python3")
    other = touch(tmp_path / "opt" / "bin" / "python3")
    found = python_candidates("Linux", usr / "bin" / "qgis", usr, [tmp_path / "opt" / "bin", usr / "bin"])
    assert found[0] == qgis_python and found.count(qgis_python) == 1
    assert other in found and found.index(other) > found.index(qgis_python)
    assert find_base_python(found, good) == qgis_python


def test_windows_osgeo4w_layout(tmp_path):
    root = tmp_path / "OSGeo4W"
    older, newer = touch(root / "apps" / "Python39" / "python.exe"), touch(root / "apps" / "Python312" / "python.exe")
    store = touch(tmp_path / "Users" / "me" / "AppData" / "Local" / "Microsoft" / "WindowsApps" / "python.exe")
    # QGIS's sys.base_prefix is the bundled Python's folder; sys.executable is qgis-ltr-bin.exe.
    found = python_candidates(
        "Windows", root / "bin" / "qgis-ltr-bin.exe", root / "apps" / "Python312", [store.parent, root / "bin"]
    )
    assert found[0] == newer and found.index(newer) < found.index(older)
    assert store not in found, "the Microsoft Store alias must never be taken for Python"
    assert find_base_python(found, good) == newer


def test_windows_standalone_installer_without_base_prefix_python(tmp_path):
    root = tmp_path / "Program Files" / "QGIS 3.40.4"
    bundled = touch(root / "apps" / "Python312" / "python.exe")
    found = python_candidates("Windows", root / "bin" / "qgis-bin.exe", root / "apps" / "missing", [])
    assert find_base_python(found, good) == bundled


def test_macos_bundle_layouts(tmp_path):
    contents = tmp_path / "QGIS.app" / "Contents"
    framework = touch(contents / "Frameworks" / "Python.framework" / "Versions" / "3.11" / "bin" / "python3")
    homebrew = touch(tmp_path / "opt" / "homebrew" / "bin" / "python3")
    found = python_candidates("Darwin", contents / "MacOS" / "QGIS", tmp_path / "nowhere", [homebrew.parent])
    assert find_base_python(found, good) == framework
    # Older bundles keep it in Contents/MacOS/bin.
    legacy = tmp_path / "Old.app" / "Contents"
    old_python = touch(legacy / "MacOS" / "bin" / "python3")
    found = python_candidates("Darwin", legacy / "MacOS" / "QGIS", tmp_path / "nowhere", [homebrew.parent])
    assert find_base_python(found, good) == old_python
    assert found.index(old_python) < found.index(homebrew)


def test_unsuitable_pythons_are_skipped_and_named(tmp_path):
    old, novenv, fine = (touch(tmp_path / name / "python3") for name in ("old", "novenv", "fine"))
    probes = {old: Probe((3, 8), True), novenv: Probe((3, 11), False), fine: Probe((3, 11), True)}
    assert find_base_python([old, novenv, fine], probes.get) == fine
    with pytest.raises(NoPythonError) as info:
        find_base_python([old, novenv, tmp_path / "absent"], probes.get)
    assert "Python 3.8" in str(info.value) and "python3-venv" in str(info.value) and str(old) in str(info.value)


def test_a_python_with_gdal_bindings_is_preferred(tmp_path):
    # e.g. pyenv's Python first on PATH, the system one (python3-gdal) after it
    pyenv, system = (touch(tmp_path / name / "python3") for name in ("pyenv", "system"))
    probes = {pyenv: Probe((3, 11), True, has_gdal=False), system: Probe((3, 11), True, has_gdal=True)}
    assert find_base_python([pyenv, system], probes.get) == system
    assert find_base_python([pyenv], probes.get) == pyenv  # without one, the first that works


def test_the_real_probe_accepts_this_interpreter():
    assert find_base_python([Path(sys.executable)]) == Path(sys.executable)


# --- the torch build table ---


@pytest.mark.parametrize(
    "system, driver, tag",
    [
        ("Linux", None, "cpu"),
        ("Linux", (580, 65, 6), "cu130"),
        ("Linux", (575, 51, 3), "cu128"),
        ("Linux", (570, 26), "cu128"),
        ("Linux", (570, 25), "cu126"),
        ("Linux", (560, 28, 3), "cu126"),
        ("Linux", (550, 54, 15), "cpu"),
        ("Windows", (570, 26), "cu126"),  # Windows needs 570.65 for CUDA 12.8
        ("Windows", (572, 16), "cu128"),
        ("Windows", (581, 29), "cu130"),
        ("Darwin", (580, 65), "cpu"),
    ],
)
def test_cuda_table(system, driver, tag):
    assert choose_torch_build(system, driver).tag == tag


def test_forced_cpu_and_old_driver_reasons():
    assert choose_torch_build("Linux", (580, 65, 6), force_cpu=True).tag == "cpu"
    reason = choose_torch_build("Linux", (535, 104, 5)).reason
    assert "535.104.5" in reason and "560.28.3" in reason


def test_driver_version_parsing_and_pip_arguments():
    assert parse_driver_version("550.54.15\n") == (550, 54, 15)
    assert parse_driver_version("NVIDIA-SMI has failed") is None
    cuda = choose_torch_build("Linux", (570, 133, 7))
    assert cuda.pip_arguments(None) == [f"torch=={TORCH_VERSION}"]
    assert cuda.pip_arguments("http://127.0.0.1:9/whl/") == [
        f"torch=={TORCH_VERSION}",
        "--index-url",
        "http://127.0.0.1:9/whl/cu128",
    ]


def test_torch_pin_is_the_one_ci_installs():
    assert f"torch=={TORCH_VERSION}" in (ROOT / ".ci" / "setup").read_text()


# --- requirements: from pyproject at package time, shipped in the zip ---


def test_requirements_come_from_pyproject_without_torch():
    requirements = from_pyproject(ROOT / "pyproject.toml")
    assert requirements and not any(r.startswith("torch") for r in requirements)
    assert "numpy>=1.23,<2" in requirements
    assert engine_requirements() == requirements  # a source checkout reads pyproject.toml


def test_the_zip_ships_the_requirements(tmp_path):
    from omnisat_qgis.package import build_zip

    archive = build_zip(tmp_path / "plugin.zip")
    with zipfile.ZipFile(archive) as zf:
        shipped = zf.read("omnisat_qgis/requirements.txt").decode()
        zf.extractall(tmp_path / "plugins")
    assert read_requirements(shipped) == from_pyproject(ROOT / "pyproject.toml")
    assert engine_requirements(tmp_path / "plugins" / "omnisat_qgis") == read_requirements(shipped)


# --- the set-up with a fake pip ---

FAKE_PIP = """
import json, os, sys, time
mode, record = sys.argv[1], sys.argv[2]
with open(record, "a") as f:
    f.write(json.dumps(sys.argv[3:]) + "\\n")
if mode == "hang":  # its pid first: the test may stop it as soon as it prints
    with open(record + ".pid", "w") as f:
        f.write(str(os.getpid()))
print("Collecting torch==2.13.0", flush=True)
if mode == "fail":
    print("ERROR: Could not find a version that satisfies the requirement torch==2.13.0 (from versions: none)")
    print("ERROR: No matching distribution found for torch==2.13.0", flush=True)
    sys.exit(1)
if mode == "disk":
    print("ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device", flush=True)
    sys.exit(1)
if mode == "hang":
    time.sleep(600)
"""


def fast_venv(base: Path, folder: Path) -> list[str]:
    # No pip and no system site packages: seconds faster, and an environment without numpy,
    # which the verification must notice.
    return [str(base), "-m", "venv", "--without-pip", str(folder)]


def fake_setup(tmp_path: Path, mode: str, **options) -> tuple[SetupOptions, Commands, Path]:
    script = tmp_path / "fake_pip.py"
    script.write_text(FAKE_PIP)
    record = tmp_path / "pip_calls.jsonl"
    commands = Commands(
        venv=fast_venv, pip=lambda python: [sys.executable, str(script), mode, str(record)], driver=lambda: None
    )
    defaults = dict(
        target=tmp_path / "profile" / "omnisat" / "venv",
        engine_root=engine_root(),
        requirements=("numpy>=1.23,<2", "einops>=0.7"),
        verify_model=resources_dir() / "models" / "anysat-tiny.safetensors",
        base_python=Path(sys.executable),
        stall_timeout_s=60.0,
    )
    return SetupOptions(**(defaults | options)), commands, record


def old_environment(target: Path) -> Path:
    """A previous environment: a marker that must survive any failed set-up."""
    marker = touch(target / "previous-environment")
    marker.write_text("keep me")
    return marker


def assert_nothing_left_but(target: Path, marker: Path):
    assert marker.read_text() == "keep me"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_pip_failure_names_the_step_its_last_lines_and_the_cause(tmp_path):
    options, commands, record = fake_setup(tmp_path, "fail", proxy="http://ann:s3cret@proxy.local:3128")
    marker = old_environment(options.target)
    lines = []
    with pytest.raises(SetupError) as info:
        set_up_engine(options, SetupCallbacks(line=lines.append), commands)
    error = info.value
    assert error.step == "Installing torch" and "exit code 1" in str(error)
    assert "no build for this Python and platform" in str(error)
    assert any("No matching distribution found for torch==2.13.0" in line for line in error.tail)
    assert "No matching distribution" in error.report() and "Installing torch failed" in error.report()
    # pip's output was streamed; QGIS's proxy reached pip, its password never the log.
    assert "Collecting torch==2.13.0" in lines
    call = json.loads(record.read_text().splitlines()[0])
    assert call[call.index("--proxy") + 1] == "http://ann:s3cret@proxy.local:3128"
    assert not any("s3cret" in line for line in lines) and any(
        "--proxy http://***@proxy.local:3128" in line for line in lines
    )
    assert_nothing_left_but(options.target, marker)


def test_full_disk(tmp_path):
    options, commands, _ = fake_setup(tmp_path, "disk")
    marker = old_environment(options.target)
    with pytest.raises(SetupError, match="the disk is full") as info:
        set_up_engine(options, SetupCallbacks(), commands)
    assert "No space left on device" in info.value.report()
    assert_nothing_left_but(options.target, marker)


class StallClock:
    """The set-up's clock (omnisat_qgis.environment.processes.time), jumping an hour ahead once the fake
    pip has printed its line and hangs: the stall timeout fires there, at that step, on any machine load,
    while the steps before it keep their real (generous) timeout."""

    def __init__(self, lines: list[str]):
        self.lines = lines

    def monotonic(self) -> float:
        return time.monotonic() + (3600.0 if "Collecting torch==2.13.0" in self.lines else 0.0)


def assert_stopped(record: Path) -> None:
    """The hanging fake pip was stopped (not left running), and reaped."""
    pid = int(Path(f"{record}.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_pip_that_hangs_is_stopped_by_the_stall_timeout(tmp_path, monkeypatch):
    from omnisat_qgis.environment import processes

    options, commands, record = fake_setup(tmp_path, "hang")
    marker = old_environment(options.target)
    lines = []
    monkeypatch.setattr(processes, "time", StallClock(lines))
    with pytest.raises(SetupError, match=r"printed nothing for 60 s and was stopped") as info:
        set_up_engine(options, SetupCallbacks(line=lines.append), commands)
    assert info.value.step == "Installing torch" and info.value.tail == ["Collecting torch==2.13.0"]
    assert_stopped(record)
    assert_nothing_left_but(options.target, marker)


def test_cancel_stops_pip_and_keeps_the_old_environment(tmp_path):
    options, commands, record = fake_setup(tmp_path, "hang")
    marker = old_environment(options.target)
    lines = []
    with pytest.raises(SetupCancelled):  # a cancel that failed would end in the 60 s stall error instead
        set_up_engine(
            options,
            SetupCallbacks(line=lines.append, is_cancelled=lambda: "Collecting torch==2.13.0" in lines),
            commands,
        )
    assert_stopped(record)
    assert_nothing_left_but(options.target, marker)


def test_failed_verification_keeps_the_old_environment(tmp_path):
    # pip "succeeds" but installs nothing: the new environment has no numpy, so the engine
    # worker cannot run the synthetic window and the old environment must stay.
    options, commands, record = fake_setup(tmp_path, "ok")
    marker = old_environment(options.target)
    with pytest.raises(SetupError) as info:
        set_up_engine(options, SetupCallbacks(), commands)
    assert info.value.step == "Verifying the environment"
    assert "numpy" in info.value.report()
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert calls[0][-1] == f"torch=={TORCH_VERSION}" and calls[1][-2] == "-r"
    assert_nothing_left_but(options.target, marker)


def test_verified_build_replaces_the_old_environment_and_is_reused(tmp_path, monkeypatch):
    # The verification itself is what the real end-to-end test below runs; here it passes so
    # that the swap and the idempotent second run are checked in seconds.
    options, commands, record = fake_setup(tmp_path, "ok")
    marker = old_environment(options.target)
    monkeypatch.setattr(builder, "verify_environment", lambda *args: None)
    monkeypatch.setattr(builder, "quick_check", lambda python, root: None)
    first = set_up_engine(options, SetupCallbacks(), commands)
    assert not first.reused and first.python == builder.venv_python(options.target) and first.python.is_file()
    assert not marker.exists() and (options.target / STAMP).is_file()
    assert sorted(p.name for p in options.target.parent.iterdir()) == [options.target.name]
    second = set_up_engine(options, SetupCallbacks(), commands)
    assert second.reused and len(record.read_text().splitlines()) == 2, "the second run must not call pip"
    # Other requirements (a new plugin version) mean a rebuild.
    changed = SetupOptions(**{**options.__dict__, "requirements": options.requirements + ("pyyaml>=6",)})
    assert not set_up_engine(changed, SetupCallbacks(), commands).reused


def test_usual_causes():
    assert "certificate" in explain(["SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED]"])
    assert "no network" in explain(
        ["Failed to establish a new connection: [Errno -3] Temporary failure in name resolution"]
    )
    assert "proxy refused" in explain(["ProxyError('Cannot connect to proxy.')"])
    assert "usual causes" in explain(["something else"])
    assert redact(["pip", "--proxy", "http://a:b@h:1"]) == "pip --proxy http://***@h:1"


@pytest.mark.slow
def test_real_environment_on_this_machine(tmp_path):
    """Creates the environment for real: venv, torch==2.13.0 (CPU), the engine's requirements,
    verification by the engine worker; then a second run that only checks it."""
    system = Path("/usr/bin/python3")
    if not system.is_file():
        pytest.skip("needs the system Python of the CI image (Debian 12)")
    options = SetupOptions(
        target=tmp_path / "omnisat" / "venv",
        engine_root=engine_root(),
        requirements=tuple(engine_requirements()),
        verify_model=resources_dir() / "models" / "anysat-tiny.safetensors",
        force_cpu=True,
        base_python=system,
    )
    steps, lines = [], []
    result = set_up_engine(options, SetupCallbacks(step=lambda m, p: steps.append(m), line=lines.append))
    assert not result.reused and result.torch_build == "cpu"
    assert any(re.search(r"Successfully installed .*torch-2\.13\.0", line) for line in lines)
    assert any("a window of anysat-tiny.safetensors ran" in line for line in lines)
    import subprocess

    version = subprocess.run(
        [str(result.python), "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version.startswith(TORCH_VERSION)
    again = set_up_engine(options, SetupCallbacks())
    assert again.reused and again.seconds < 60
    print(f"\nset-up of the engine environment: {result.seconds:.0f} s; second run {again.seconds:.1f} s")


def test_command_line_reports_a_failed_step(tmp_path, capsys):
    from omnisat_qgis.environment.__main__ import main

    missing = tmp_path / "no-python"
    code = main(["--target", str(tmp_path / "venv"), "--base-python", str(missing), "--quiet"])
    assert code == 2
    error = capsys.readouterr().err
    assert "Creating the virtual environment failed" in error and not (tmp_path / "venv").exists()
