"""Models the engine can download and convert: one frozen entry per downloadable model.

The files are fetched from a model hub whose base address is configured
(``OMNISAT_MODEL_HUB``, or the plugin's setting), at
``<base>/<repository>/resolve/main/<file>``, and checked against the sha256 pinned here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.errors import EngineError

HUB_ENV = "OMNISAT_MODEL_HUB"
MODELS_DIR_ENV = "OMNISAT_MODELS_DIR"


@dataclass(frozen=True)
class DownloadableModel:
    name: str  # the catalog name and the file stem of the converted checkpoint
    repository: str  # on the model hub
    file: str  # inside the repository
    sha256: str  # of the published file; "" when none can be read here: recorded at the first download (pins)
    size_bytes: int  # about, for the user before the download starts
    architecture: str
    size: str  # the architecture's size preset
    parameters: int  # of the converted encoder (tests/engine/ops/test_fetch_model.py counts them)
    licence: str
    provenance: str
    converter: str  # the engine operation that turns the file into a checkpoint

    def url(self, base: str) -> str:
        return f"{base.rstrip('/')}/{self.repository}/resolve/main/{self.file}"

    @property
    def download_name(self) -> str:
        return Path(self.file).name

    def checkpoint_name(self) -> str:
        return f"{self.name}.safetensors"


DOWNLOADS: dict[str, DownloadableModel] = {
    entry.name: entry
    for entry in (
        DownloadableModel(
            name="anysat-base",
            repository="g-astruc/AnySat",
            file="models/AnySat.pth",
            sha256="ce1246527a28bade624048c448a1fa473ca85791b998f562ce2bcc3dcac93d4f",  # pragma: allowlist secret (a checksum)
            size_bytes=504_000_000,
            architecture="anysat",
            size="base",
            parameters=125_904_103,
            licence="MIT",
            provenance="official AnySat base encoder (Astruc et al., CVPR 2025), pretrained on GeoPlex "
            "(11 sensors); converted by the engine's AnySat importer",
            converter="import-anysat",
        ),
        DownloadableModel(
            name="universat-base",
            repository="g-astruc/UniverSat",
            file="model.safetensors",
            sha256="",
            size_bytes=804_000_000,
            architecture="universat",
            size="base",
            parameters=144_339_232,
            licence="MIT",
            provenance="official UniverSat Base encoder (Astruc et al., 2026, 'AnySat v2'), one set of weights "
            "for 13 sensors; the hub layout (config.json + model.safetensors) read directly, the "
            "training-only SSL projectors dropped",
            converter="universat-hub",
        ),
    )
}


def downloadable(name: str) -> DownloadableModel:
    if name not in DOWNLOADS:
        raise EngineError(f"No downloadable model is named {name!r}. Known: {', '.join(sorted(DOWNLOADS))}.")
    return DOWNLOADS[name]


def hub_base(given: str | None) -> str:
    base = (given or os.environ.get(HUB_ENV, "")).strip()
    if not base:
        raise EngineError(
            f"No model hub address is set: give --hub-url, set {HUB_ENV}, or in QGIS the Processing setting "
            "'OmniSat model hub address', to the base address of the hub "
            "that hosts the model's repository (files are fetched from <base>/<repository>/resolve/main/<file>)."
        )
    return base


def user_models_dir() -> Path:
    """Where downloaded and converted models go by default (``OMNISAT_MODELS_DIR`` overrides)."""
    if os.environ.get(MODELS_DIR_ENV, "").strip():
        return Path(os.environ[MODELS_DIR_ENV]).expanduser()
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home())) / "omnisat" / "models"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "omnisat" / "models"
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "omnisat" / "models"


def normalization_notes(modalities) -> dict[str, str]:
    """Per modality: whether the checkpoint's statistics are published ones or identity placeholders."""
    notes = {}
    for spec in modalities:
        if all(m == 0.0 for m in spec.mean) and all(s == 1.0 for s in spec.std):
            notes[spec.name] = (
                "none published: identity placeholder; compute the statistics of your data with "
                "'Normalization statistics of my data' (normalization-stats) and pass them to the job"
            )
        else:
            notes[spec.name] = "published statistics of the reference configs / demo (see engine/models/modalities.py)"
    return notes
