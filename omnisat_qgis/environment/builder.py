"""Build, verify and swap in the managed engine environment.

Steps: check the existing environment (a second run stops here, in seconds); find a
base Python; choose the torch build; create a venv in a temporary folder beside the
target; install torch, then the engine's requirements; verify by running the engine
worker in it; swap it in. Any failure or Cancel removes the temporary folder and
leaves the previous environment as it was.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess  # nosec B404  # runs pip and the new environment's python, no shell
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omnisat_qgis.environment.interpreters import clean_environment, find_base_python, python_candidates
from omnisat_qgis.environment.processes import StepOutcome, run_streaming
from omnisat_qgis.environment.requirements import fingerprint
from omnisat_qgis.environment.torch_builds import TORCH_VERSION, TorchChoice, choose_torch_build, nvidia_driver_version
from omnisat_qgis.environment.verify import VerificationError, quick_check, verify_environment
from omnisat_qgis.worker_client import WorkerCancelled, shutdown_workers

STAMP = "omnisat-environment.json"
STAMP_FORMAT = 1


@dataclass(frozen=True)
class SetupOptions:
    target: Path  # the environment's folder
    engine_root: Path  # the folder holding the engine package (put on the worker's PYTHONPATH)
    requirements: tuple[str, ...]
    verify_model: Path  # a shipped checkpoint for the verification forward
    force_cpu: bool = False
    proxy: str | None = None  # passed to pip's --proxy
    torch_index: str | None = None  # base of PyTorch's wheel index; None: pip's configured index
    base_python: Path | None = None  # None: searched next to QGIS's Python, then on PATH
    stall_timeout_s: float = 600.0  # a pip run that prints nothing this long is stopped
    rebuild: bool = False  # build anew even when the existing environment passes its check


@dataclass
class SetupCallbacks:
    step: Callable[[str, float], None] = lambda message, percent: None
    line: Callable[[str], None] = lambda text: None
    is_cancelled: Callable[[], bool] = lambda: False


def venv_command(base: Path, folder: Path) -> list[str]:
    # System site packages: on Linux rasterio comes from the distribution (one GDAL/PROJ);
    # pip installs into the venv whatever the base lacks, and never into the base.
    return [str(base), "-m", "venv", "--system-site-packages", str(folder)]


def pip_command(python: Path) -> list[str]:
    return [str(python), "-m", "pip"]


@dataclass(frozen=True)
class Commands:
    """How the venv and pip processes start; tests put a fake pip here."""

    venv: Callable[[Path, Path], list[str]] = venv_command
    pip: Callable[[Path], list[str]] = pip_command
    driver: Callable[[], tuple[int, ...] | None] = nvidia_driver_version


@dataclass
class SetupResult:
    python: Path
    reused: bool
    torch_build: str
    seconds: float


class SetupError(Exception):
    """A step failed: ``step`` names it, ``tail`` holds the process's last lines."""

    def __init__(self, step: str, message: str, tail: list[str] | None = None):
        super().__init__(message)
        self.step, self.tail = step, list(tail or [])

    def report(self) -> str:
        lines = [f"{self.step} failed: {self}"]
        if self.tail:
            lines += ["Last lines of its output:", *("    " + line for line in self.tail[-12:])]
        return "\n".join(lines)


class SetupCancelled(SetupError):
    pass


# (what the output says, what it usually means and the fix)
USUAL_CAUSES = (
    (
        ("No space left on device", "Errno 28", "ENOSPC"),
        "the disk is full: torch needs about 1 GB (CPU) to 5 GB (CUDA) in the environment folder and pip's cache; "
        "free space there, or choose another environment folder in the settings",
    ),
    (
        ("CERTIFICATE_VERIFY_FAILED", "SSLError", "SSL: ", "certificate verify failed"),
        "the connection's certificate was refused, usually a company proxy that intercepts SSL: give pip your "
        "organisation's CA bundle (PIP_CERT, or 'cert' in pip's configuration file)",
    ),
    (
        ("ProxyError", "407 Proxy", "Tunnel connection failed"),
        "the proxy refused the connection: check the proxy in QGIS's Settings > Options > Network "
        "(it is passed to pip)",
    ),
    (
        (
            "NewConnectionError",
            "Name or service not known",
            "Temporary failure in name resolution",
            "Network is unreachable",
            "getaddrinfo failed",
            "Connection refused",
            "ConnectTimeoutError",
            "Read timed out",
        ),
        "no network connection to the package index: check the network, or the proxy in QGIS's "
        "Settings > Options > Network (it is passed to pip)",
    ),
    (
        ("No matching distribution found", "Could not find a version that satisfies"),
        f"the package index has no build for this Python and platform (torch {TORCH_VERSION} needs a 64-bit "
        "Python 3.10 to 3.13): choose another base Python in the settings",
    ),
)
GENERAL_CAUSES = (
    "usual causes: no network or a proxy (QGIS's proxy settings are passed to pip), "
    "a full disk, or a company proxy intercepting SSL"
)


def explain(tail: list[str]) -> str:
    text = "\n".join(tail)
    found = [cause for needles, cause in USUAL_CAUSES if any(n in text for n in needles)]
    return "; ".join(found) if found else GENERAL_CAUSES


def venv_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def wanted_stamp(options: SetupOptions, choice: TorchChoice) -> dict:
    return {
        "format": STAMP_FORMAT,
        "torch": TORCH_VERSION,
        "torch_build": choice.tag,
        "requirements": fingerprint(list(options.requirements)),
    }


def read_stamp(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def redact(command: list[str]) -> str:
    """A command line for the log, without the proxy's password."""
    shown = []
    for part in command:
        if "://" in part and "@" in part:
            scheme, rest = part.split("://", 1)
            part = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        shown.append(part)
    return " ".join(shown)


class _Run:
    """One set-up: holds the options, the callbacks and the temporary folder."""

    def __init__(self, options: SetupOptions, callbacks: SetupCallbacks, commands: Commands):
        self.options, self.callbacks, self.commands = options, callbacks, commands
        self.building = options.target.with_name(f".{options.target.name}.building")

    def say(self, message: str, percent: float) -> None:
        self.callbacks.step(message, percent)

    def cancelled_check(self, step: str) -> None:
        if self.callbacks.is_cancelled():
            raise SetupCancelled(step, "cancelled; the previous environment, if any, is unchanged")

    def run(self, step: str, command: list[str], env: dict[str, str]) -> StepOutcome:
        self.callbacks.line(f"$ {redact(command)}")
        try:
            outcome = run_streaming(
                command, env, self.callbacks.line, self.callbacks.is_cancelled, self.options.stall_timeout_s
            )
        except OSError as exc:
            raise SetupError(step, f"'{command[0]}' could not be started ({exc.strerror or exc})") from None
        if outcome.cancelled:
            raise SetupCancelled(step, "cancelled; the previous environment, if any, is unchanged", outcome.tail)
        if outcome.stalled:
            raise SetupError(
                step,
                f"it printed nothing for {self.options.stall_timeout_s:.0f} s and was stopped; "
                "usually a network stall or a proxy that holds connections open: " + explain(outcome.tail),
                outcome.tail,
            )
        if outcome.code != 0:
            raise SetupError(step, f"exit code {outcome.code}; {explain(outcome.tail)}", outcome.tail)
        return outcome

    def pip_env(self) -> dict[str, str]:
        # PIP_REQUIRE_VIRTUALENV: pip itself refuses to install outside a virtual environment,
        # so nothing can land in QGIS's own Python whatever interpreter a setting names.
        return clean_environment(
            {
                "PIP_REQUIRE_VIRTUALENV": "1",
                "PIP_NO_INPUT": "1",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )

    def pip_install(self, step: str, python: Path, arguments: list[str]) -> None:
        command = self.commands.pip(python) + ["install", "--progress-bar", "off"]
        if self.options.proxy:
            command += ["--proxy", self.options.proxy]
        self.run(step, command + arguments, self.pip_env())

    def build(self, choice: TorchChoice) -> Path:
        options = self.options
        base = options.base_python
        if base is None:
            self.say("Looking for a Python to create the environment from", 8)
            base = find_base_python(
                python_candidates(
                    platform.system(),
                    Path(sys.executable),
                    Path(sys.base_prefix),
                    [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p],
                )
            )
        self.callbacks.line(f"base Python: {base}")
        shutil.rmtree(self.building, ignore_errors=True)
        self.building.parent.mkdir(parents=True, exist_ok=True)
        self.say(f"Creating the virtual environment in {self.building}", 12)
        self.run("Creating the virtual environment", self.commands.venv(base, self.building), clean_environment())
        python = venv_python(self.building)
        self.check_is_venv(python)
        self.cancelled_check("Installing torch")
        self.say(f"Installing torch {TORCH_VERSION}: {choice.reason}", 20)
        self.pip_install("Installing torch", python, choice.pip_arguments(options.torch_index))
        self.cancelled_check("Installing the engine's requirements")
        requirements = self.building / "omnisat-requirements.txt"
        requirements.write_text("".join(f"{r}\n" for r in options.requirements), encoding="utf-8")
        self.say("Installing the engine's requirements", 60)
        self.pip_install("Installing the engine's requirements", python, ["-r", str(requirements)])
        self.cancelled_check("Verifying the environment")
        self.say("Verifying: the engine's version and one model window on a synthetic input", 85)
        try:
            verify_environment(
                python,
                options.engine_root,
                options.verify_model,
                self.building,
                self.callbacks.line,
                self.callbacks.is_cancelled,
            )
        except VerificationError as exc:
            raise SetupError("Verifying the environment", str(exc), exc.tail) from None
        except WorkerCancelled:
            raise SetupCancelled(
                "Verifying the environment", "cancelled; the previous environment, if any, is unchanged"
            ) from None
        return python

    def check_is_venv(self, python: Path) -> None:
        """Refuse to go on unless ``python`` is a virtual environment's own interpreter."""
        try:
            done = subprocess.run(
                [str(python), "-c", "import sys; print(int(sys.prefix != sys.base_prefix))"],  # nosec B603  # argument list, no shell
                capture_output=True,
                text=True,
                timeout=60,
                env=clean_environment(),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SetupError(
                "Creating the virtual environment", f"its Python '{python}' does not run ({exc})"
            ) from None
        if done.stdout.strip() != "1":
            raise SetupError(
                "Creating the virtual environment",
                f"'{python}' is not a virtual environment's Python; nothing is installed outside one",
            )

    def swap(self) -> None:
        """Put the verified build where the environment belongs; the old one goes only once it is there."""
        target = self.options.target
        previous = target.with_name(f".{target.name}.previous")
        shutil.rmtree(previous, ignore_errors=True)
        shutdown_workers()  # a worker kept between runs holds the old environment's files open (Windows)
        if target.exists():
            os.replace(target, previous)
        try:
            os.replace(self.building, target)
        except OSError:
            if previous.exists():
                os.replace(previous, target)
            raise
        shutil.rmtree(previous, ignore_errors=True)


def set_up_engine(
    options: SetupOptions, callbacks: SetupCallbacks | None = None, commands: Commands = Commands()
) -> SetupResult:
    """Make sure a verified engine environment exists at ``options.target``; return its Python."""
    started = time.monotonic()
    run = _Run(options, callbacks or SetupCallbacks(), commands)
    choice = choose_torch_build(platform.system(), commands.driver(), options.force_cpu)
    wanted = wanted_stamp(options, choice)
    python = venv_python(options.target)
    run.say("Checking the existing environment", 2)
    if not options.rebuild and python.is_file():
        stamp = read_stamp(options.target) or {}
        problem = (
            "it was built for other requirements or another torch build"
            if {key: stamp.get(key) for key in wanted} != wanted
            else quick_check(python, options.engine_root)
        )
        if problem is None:
            run.say(f"The engine environment {options.target} is ready (torch {TORCH_VERSION}, {choice.tag})", 100)
            return SetupResult(python, True, choice.tag, time.monotonic() - started)
        run.callbacks.line(f"the existing environment will be rebuilt: {problem}")
    try:
        run.build(choice)
        try:
            (run.building / STAMP).write_text(
                json.dumps(wanted | {"built": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1), encoding="utf-8"
            )
            run.swap()
        except OSError as exc:
            raise SetupError(
                "Replacing the previous environment",
                f"{exc}; is the environment in use (a running engine, another QGIS)? "
                f"The previous environment, if any, is still at {options.target}",
            ) from None
    except BaseException:
        shutil.rmtree(run.building, ignore_errors=True)
        raise
    seconds = time.monotonic() - started
    run.say(f"The engine environment is ready: {python} (built in {seconds:.0f} s)", 100)
    return SetupResult(python, False, choice.tag, seconds)
