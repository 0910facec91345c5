"""Plugin settings: which Python interpreter runs the engine worker, and how the
managed engine environment is built.

Resolution order of the worker Python: the OMNISAT_PYTHON environment variable, the
Processing setting "OmniSat worker Python" (Settings > Options > Processing >
Providers > OmniSat), the project's ``.venv`` beside the engine (a source checkout),
then the managed environment that "Set up the engine" builds in the QGIS profile.
"""

from __future__ import annotations

import os
from pathlib import Path

from omnisat_qgis.paths import default_python

ENV_PYTHON = "OMNISAT_PYTHON"
SETTING_PYTHON = "OMNISAT_WORKER_PYTHON"
SETTING_THREADS = "OMNISAT_WORKER_THREADS"
# The managed engine environment (omnisat_qgis.environment).
SETTING_ENV_FOLDER = "OMNISAT_ENV_FOLDER"
SETTING_BASE_PYTHON = "OMNISAT_BASE_PYTHON"
SETTING_FORCE_CPU = "OMNISAT_FORCE_CPU"
SETTING_TORCH_INDEX = "OMNISAT_TORCH_INDEX"
ENV_TORCH_INDEX = "OMNISAT_TORCH_INDEX"
# Downloadable models (engine fetch-model): the hub's base address and where models go.
SETTING_MODEL_HUB = "OMNISAT_MODEL_HUB"
ENV_MODEL_HUB = "OMNISAT_MODEL_HUB"
SETTING_MODELS_FOLDER = "OMNISAT_MODELS_FOLDER"
ENV_MODELS_DIR = "OMNISAT_MODELS_DIR"  # engine.models.downloads.MODELS_DIR_ENV: the engine's models folder
# As the user set it when QGIS started: the algorithms set the variable for their workers afterwards.
USER_MODELS_DIR = os.environ.get(ENV_MODELS_DIR, "").strip()
# QgsNetworkProxy's types that name a proxy pip can use (the others: no proxy, or the system's,
# which pip finds itself in the environment variables).
_PIP_PROXY_TYPES = {"HttpProxy": "http", "HttpCachingProxy": "http", "Socks5Proxy": "socks5"}
SETTINGS_PREFIX = "Processing/Configuration/"


class SettingsError(Exception):
    pass


def _stored(name: str) -> str:
    from qgis.core import QgsSettings

    value = QgsSettings().value(SETTINGS_PREFIX + name, "")
    return str(value or "").strip()


def worker_python() -> tuple[Path, str]:
    """Return (interpreter, where the choice came from); raise SettingsError if unusable."""
    if os.environ.get(ENV_PYTHON, "").strip():
        path, source = Path(os.environ[ENV_PYTHON].strip()), f"the environment variable {ENV_PYTHON}"
    elif _stored(SETTING_PYTHON):
        path, source = Path(_stored(SETTING_PYTHON)), "the Processing setting 'OmniSat worker Python'"
    elif default_python().is_file() or not managed_python().is_file():
        path, source = default_python(), "the default (the project's .venv)"
    else:
        path, source = managed_python(), "the engine environment built by 'Set up the engine'"
    if not path.is_file():
        raise SettingsError(
            f"The Python interpreter for the OmniSat engine, '{path}' (from {source}), does not exist. "
            "Run 'Set up the OmniSat engine' (Plugins > OmniSat, or the Processing algorithm "
            f"omnisat:setupengine) to build one, or set {ENV_PYTHON} or Settings > Options > Processing > "
            "Providers > OmniSat > 'OmniSat worker Python' to a Python that has the engine's requirements "
            "(torch, rasterio)."
        )
    if not os.access(path, os.X_OK):
        raise SettingsError(f"The OmniSat worker Python '{path}' (from {source}) is not executable.")
    share_models_folder()  # every worker is started after this call
    return path, source


def worker_threads() -> int | None:
    value = _stored(SETTING_THREADS)
    return int(value) if value.isdigit() and int(value) > 0 else None


def managed_env_folder() -> Path:
    """Where "Set up the engine" builds the environment: the setting, else the QGIS profile."""
    if _stored(SETTING_ENV_FOLDER):
        return Path(_stored(SETTING_ENV_FOLDER)).expanduser()
    from qgis.core import QgsApplication

    return Path(QgsApplication.qgisSettingsDirPath()) / "omnisat" / "venv"


def managed_python() -> Path:
    from omnisat_qgis.environment.builder import venv_python

    return venv_python(managed_env_folder())


def force_cpu() -> bool:
    return _stored(SETTING_FORCE_CPU).lower() in ("true", "1", "yes")


def base_python() -> Path | None:
    return Path(_stored(SETTING_BASE_PYTHON)) if _stored(SETTING_BASE_PYTHON) else None


def torch_index() -> str | None:
    """Base address of PyTorch's wheel index (its folders cpu, cu126, ...); None: pip's own index."""
    return os.environ.get(ENV_TORCH_INDEX, "").strip() or _stored(SETTING_TORCH_INDEX) or None


def model_hub() -> str | None:
    return os.environ.get(ENV_MODEL_HUB, "").strip() or _stored(SETTING_MODEL_HUB) or None


def models_folder() -> Path:
    """The user's models folder: OMNISAT_MODELS_DIR (set before QGIS started), else the setting, else omnisat/models in the QGIS profile."""
    if USER_MODELS_DIR:
        return Path(USER_MODELS_DIR).expanduser()
    if _stored(SETTING_MODELS_FOLDER):
        return Path(_stored(SETTING_MODELS_FOLDER)).expanduser()
    from qgis.core import QgsApplication

    return Path(QgsApplication.qgisSettingsDirPath()) / "omnisat" / "models"


def share_models_folder() -> None:
    """Name the models folder to the workers, which inherit the environment (OMNISAT_MODELS_DIR): a job naming
    a fetched or learnt model finds it. Done by worker_python, before any worker starts: a serving worker
    keeps the environment it started with."""
    os.environ[ENV_MODELS_DIR] = str(models_folder())


def pip_proxy() -> str | None:
    """QGIS's proxy (Settings > Options > Network) as pip's --proxy value, or None."""
    from qgis.core import QgsSettings

    stored = QgsSettings()
    if str(stored.value("proxy/proxyEnabled", "false")).lower() not in ("true", "1"):
        return None
    scheme = _PIP_PROXY_TYPES.get(str(stored.value("proxy/proxyType", "")))
    host = str(stored.value("proxy/proxyHost", "") or "").strip()
    if scheme is None or not host:
        return None
    from urllib.parse import quote

    port = str(stored.value("proxy/proxyPort", "") or "").strip()
    user = str(stored.value("proxy/proxyUser", "") or "")
    password = str(stored.value("proxy/proxyPassword", "") or "")
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user else ""
    return f"{scheme}://{credentials}{host}{':' + port if port else ''}"


def environment_options(force_cpu_build: bool | None = None, rebuild: bool = False):
    """The managed environment's SetupOptions from the settings; arguments override them."""
    from omnisat_qgis.environment.builder import SetupOptions
    from omnisat_qgis.environment.requirements import engine_requirements
    from omnisat_qgis.paths import engine_root, resources_dir

    return SetupOptions(
        target=managed_env_folder(),
        engine_root=engine_root(),
        requirements=tuple(engine_requirements()),
        verify_model=resources_dir() / "models" / "anysat-tiny.safetensors",
        force_cpu=force_cpu() if force_cpu_build is None else force_cpu_build,
        proxy=pip_proxy(),
        torch_index=torch_index(),
        base_python=base_python(),
        rebuild=rebuild,
    )
