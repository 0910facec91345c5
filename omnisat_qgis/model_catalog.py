"""The models the plugin can offer, read from safetensors headers with plain Python.

A checkpoint's JSON header holds its architecture (modalities, bands, patch size),
classes and provenance (engine.models.checkpoint): reading the header needs neither
torch nor the worker, so the dock and checkParameterValues stay instant.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from omnisat_qgis.contract import contract
from omnisat_qgis.paths import resources_dir

# What an analyst reads instead of the engine's modality name.
HUMAN_LABELS = {
    "aerial": "Aerial image (VHR)",
    "spot": "SPOT image",
    "naip": "NAIP image",
    "s2": "Sentinel-2 time series",
    "s1": "Sentinel-1 time series",
    "s1_asc": "Sentinel-1 ascending time series",
    "s1_des": "Sentinel-1 descending time series",
    "l7": "Landsat-7 time series",
    "l8": "Landsat-8 time series",
    "modis": "MODIS time series",
    "alos": "ALOS-2 time series",
}


# Fewer pretraining steps than this: the checkpoint makes the plugin run, its features are near-random.
TOY_STEPS = 1000
# Official checkpoints the plugin can download (omnisat:fetchmodel), offered after the installed ones, with
# what an analyst reads before starting the download (engine.models.downloads holds their addresses).
DOWNLOADABLE = {
    "anysat-base": "the official AnySat weights, about 504 MB",
    "universat-base": "the official UniverSat Base weights, about 804 MB",
}


class CatalogError(Exception):
    """A model file that cannot be offered; the message names the file and the fix."""


@dataclass(frozen=True)
class ModalityInfo:
    name: str
    kind: str  # image or series
    bands: tuple[str, ...]
    gsd_m: float
    description: str
    mean: tuple[float, ...] = ()  # the normalization's per-band means: the value scale the model expects

    @property
    def label(self) -> str:
        return HUMAN_LABELS.get(self.name, self.description or self.name)

    @property
    def is_series(self) -> bool:
        return self.kind == "series"


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    architecture: str
    modalities: tuple[ModalityInfo, ...]
    patch_size_m: float
    classes: tuple[str, ...]
    colors: tuple[str, ...]
    provenance: dict
    embed_dim: int = 0  # width of a fused vector (0: not recorded)

    @property
    def name(self) -> str:
        return self.path.stem

    def modality(self, name: str) -> ModalityInfo:
        for modality in self.modalities:
            if modality.name == name:
                return modality
        raise KeyError(name)

    @property
    def is_toy(self) -> bool:
        """Trained by this project for a handful of steps (the shipped demo checkpoints): no learned knowledge."""
        steps = self.provenance.get("steps")
        return isinstance(steps, (int, float)) and steps < TOY_STEPS and "weights" not in self.provenance

    def summary(self) -> str:
        """One line an analyst reads in the model combo's tooltip and the dock."""
        steps = self.provenance.get("steps")
        trained = (
            f"{self.provenance.get('objective', 'trained')} pretraining, {steps} steps"
            if steps is not None
            else self.provenance.get("weights") or self.provenance.get("description", "provenance not recorded")
        )
        heads = f"; classes: {', '.join(self.classes)}" if self.classes else "; no classification head (fit a probe)"
        sha = self.provenance.get("reference_sha256")
        # A download whose publisher gives no hash we can read: the one recorded at its first download, shown.
        pinned = (
            f"; sha256 {sha} ({self.provenance['sha256_source']})" if sha and "sha256_source" in self.provenance else ""
        )
        return (
            f"{self.architecture}, patch {self.patch_size_m:g} m; "
            f"modalities: {', '.join(m.name for m in self.modalities)}; {trained}{heads}{pinned}"
        )

    @property
    def reads_wavelengths(self) -> bool:
        """Bands read by their wavelength, the output grid chosen per run: UniverSat (engine/models/universat.py)."""
        return self.architecture == "universat"


def read_header(path: Path) -> dict:
    """The ``__metadata__`` strings of a safetensors file (engine/contract.py reads them)."""
    try:
        return contract.safetensors_metadata(path)
    except contract.ContractError as exc:
        raise CatalogError(str(exc)) from None


def _decoded(raw: dict, key: str, path: Path):
    try:
        return json.loads(raw.get(key) or "null")
    except ValueError:
        raise CatalogError(f"'{path}' has corrupted metadata under '{key}': re-export the checkpoint.") from None


@lru_cache(maxsize=64)
def _model_info(path: Path, mtime_ns: int) -> ModelInfo:
    raw = read_header(path)
    if raw.get("format") != contract.CHECKPOINT_FORMAT:
        raise CatalogError(
            f"'{path}' is a safetensors file but not an OmniSat engine checkpoint; "
            "convert reference weights first (python -m engine import-anysat)."
        )
    config = _decoded(raw, "config", path) or {}
    modalities = tuple(
        ModalityInfo(
            m["name"],
            m["kind"],
            tuple(m["bands"]),
            float(m["gsd_m"]),
            m.get("description", ""),
            tuple(float(v) for v in m.get("mean") or ()),
        )
        for m in config.get("modalities", ())
    )
    if not modalities:
        raise CatalogError(f"'{path}' names no modalities in its architecture: re-export the checkpoint.")
    return ModelInfo(
        path=path,
        architecture=str(config.get("architecture", "unknown")),
        modalities=modalities,
        patch_size_m=float(config.get("patch_size_m", 10.0)),
        classes=tuple(_decoded(raw, "classes", path) or ()),
        colors=tuple(_decoded(raw, "colors", path) or ()),
        provenance=_decoded(raw, "provenance", path) or {},
        embed_dim=int(config.get("embed_dim") or 0),
    )


def model_info(path: str | Path) -> ModelInfo:
    """The model described by a checkpoint's header (cached while the file is unchanged)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise CatalogError(f"The model file '{path}' does not exist: choose a .safetensors checkpoint.")
    return _model_info(path, path.stat().st_mtime_ns)


def shipped_models(folder: Path | None = None) -> list[ModelInfo]:
    """The readable checkpoints in resources/models, by name."""
    found = []
    for path in sorted((folder or resources_dir() / "models").glob("*.safetensors")):
        try:
            found.append(model_info(path))
        except CatalogError:
            continue
    return found


@dataclass(frozen=True)
class PickerEntry:
    name: str
    path: Path | None  # None: not downloaded yet
    note: str  # what the picker says beside the name

    @property
    def installed(self) -> bool:
        return self.path is not None


def picker_entries(models_folder: Path) -> list[PickerEntry]:
    """The models every picker offers, in one order: shipped, then the models folder (downloaded, converted,
    learnt), then the official ones not downloaded yet."""
    entries: list[PickerEntry] = []
    for info in shipped_models() + shipped_models(models_folder):
        if all(e.name != info.name for e in entries):
            note = "installed; toy checkpoint, no learned knowledge" if info.is_toy else "installed"
            entries.append(PickerEntry(info.name, info.path, note))
    for name in DOWNLOADABLE:
        if all(e.name != name for e in entries):
            entries.append(PickerEntry(name, None, "not downloaded: Download it first"))
    return entries


# ---------------------------------------------------------------- the catalog the model pickers offer

# Longest the worker may take to list the catalog (it imports torch) before the pickers fall back
# to the checkpoints' headers.
CATALOG_TIMEOUT_S = 60.0
CACHE_FILE = "catalog-cache.json"
_memory: dict[str, list[dict]] = {}


def _folders() -> list[Path]:
    from omnisat_qgis import settings

    return [resources_dir() / "models", settings.models_folder()]


def fingerprint(folders: list[Path]) -> str:
    """Changes whenever a checkpoint is added, removed or rewritten in ``folders``."""
    entries = sorted(
        (str(p), p.stat().st_mtime_ns, p.stat().st_size)
        for folder in folders
        if folder.is_dir()
        for p in folder.glob("*.safetensors")
    )
    return hashlib.sha256(json.dumps([[str(f) for f in folders], entries]).encode()).hexdigest()


def header_rows(folders: list[Path]) -> list[dict]:
    """Installed checkpoints as catalog rows, read from their headers (no worker: before the engine is set up)."""
    rows, seen = [], set()
    for folder in folders:
        for info in shipped_models(folder):
            if info.name not in seen:
                seen.add(info.name)
                rows.append(
                    {
                        "name": info.name,
                        "status": "installed",
                        "path": str(info.path),
                        "architecture": info.architecture,
                        "has_head": bool(info.classes),
                        "modalities": {m.name: list(m.bands) for m in info.modalities},
                        "provenance": info.provenance,
                    }
                )
    return rows


def _worker_rows(folders: list[Path]) -> list[dict]:
    """``models --catalog-only`` run by the engine worker (raises when the engine cannot run)."""
    import time

    from omnisat_qgis import settings
    from omnisat_qgis.paths import engine_root
    from omnisat_qgis.worker_client import WorkerCallbacks, WorkerRun, run_worker

    python, source = settings.worker_python()
    deadline = time.monotonic() + CATALOG_TIMEOUT_S
    run = WorkerRun(
        python=python,
        engine_root=engine_root(),
        operation="models",
        params={"catalog_only": True, "folders": [str(f) for f in folders[1:]]},
        python_source=source,
    )
    return run_worker(run, WorkerCallbacks(is_cancelled=lambda: time.monotonic() > deadline))["result"]["catalog"]


def catalog_rows() -> list[dict]:
    """The rows of ``python -m engine models --json`` for the shipped models, the models folder and the
    downloadable ones, through the worker, cached (in memory and in the models folder) until a checkpoint
    there changes; the checkpoints' headers while the engine cannot run (not set up yet)."""
    from omnisat_qgis.settings import SettingsError
    from omnisat_qgis.worker_client import WorkerError

    folders = _folders()
    key = fingerprint(folders)
    if key in _memory:
        return _memory[key]
    cache = folders[1] / CACHE_FILE
    try:
        stored = json.loads(cache.read_text(encoding="utf-8"))
        if stored.get("fingerprint") == key:
            _memory[key] = stored["rows"]
            return stored["rows"]
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    try:
        rows = _worker_rows(folders)
    except (SettingsError, WorkerError, KeyError, TypeError):
        return header_rows(folders)  # not cached: the worker's list replaces it once the engine runs
    _memory[key] = rows
    try:
        folders[1].mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"fingerprint": key, "rows": rows}), encoding="utf-8")
    except OSError:
        pass  # a read-only profile: the memory cache still serves this session
    return rows


def catalog_row(name: str) -> dict | None:
    return next((row for row in catalog_rows() if row["name"] == name), None)
