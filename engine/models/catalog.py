"""The checkpoints the engine knows: one entry per model, read from metadata alone (no weights).

Like torchgeo's weights API: ``CatalogEntry`` describes one model (where it lies, its
architecture, modalities and training), ``catalog()`` lists them, ``find_model()`` picks one
by name or path, ``best_encoder()`` the longest-trained one with given modalities. The
entries are the checkpoints shipped under ``resources/models``; ``catalog_rows()`` adds the
user's models folder (where ``fetch-model`` converts), any folder the user adds, and the
downloadable models of engine.models.downloads, as the rows ``models --json`` lists and the
plugin's model pickers offer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import safe_open

from engine.errors import EngineError
from engine.io.download import sha256_of
from engine.io.units import expected_units
from engine.models.downloads import DOWNLOADS, user_models_dir
from engine.models.modalities import ModalitySpec
from engine.runtime.progress import Reporter

SHIPPED = Path(__file__).resolve().parents[2] / "resources" / "models"
SHIPPED_LICENCE = "GPL-2.0-or-later (trained by this project)"


@dataclass(frozen=True)
class CatalogEntry:
    name: str  # the file's stem
    path: Path
    architecture: str
    modalities: tuple[str, ...]
    steps: int  # training steps of its provenance (0: unknown or random)
    metadata: dict[str, Any] = field(compare=False, repr=False)

    @property
    def provenance(self) -> dict[str, Any]:
        return self.metadata.get("provenance") or {}

    def describe(self) -> str:
        """One short line for logs (the whole provenance is in the checkpoint's header)."""
        how = self.provenance.get("weights")  # e.g. random initialisation
        if self.steps:
            datasets = ", ".join(
                d.get("name", "?") for d in self.provenance.get("datasets") or [] if isinstance(d, dict)
            )
            how = f"{self.provenance.get('objective', 'self-supervised')} pretraining, {self.steps} steps" + (
                f" on {datasets}" if datasets else ""
            )
        return f"checkpoint {self.path.name} ({how or 'provenance not recorded'})"


def _entry(path: Path) -> CatalogEntry | None:
    from engine.models.checkpoint import read_metadata  # lazy: keeps torch out of this module

    try:
        meta = read_metadata(path)
    except EngineError:
        return None  # not an engine checkpoint: not in the catalog
    config = meta.get("config", {})
    names = tuple(m.get("name") if isinstance(m, dict) else m for m in config.get("modalities", []))
    return CatalogEntry(
        path.stem,
        path,
        str(config.get("architecture", "")),
        names,
        int((meta.get("provenance") or {}).get("steps") or 0),
        meta,
    )


def catalog(folder: Path = SHIPPED) -> list[CatalogEntry]:
    """Every checkpoint in ``folder``, longest-trained first (then by file name)."""
    entries = [e for path in (sorted(folder.glob("*.safetensors")) if folder.is_dir() else []) if (e := _entry(path))]
    return sorted(entries, key=lambda e: (-e.steps, e.path.name))


def find_model(name_or_path: str, folder: Path | None = None) -> CatalogEntry:
    """The entry named ``name_or_path`` (a file stem in ``folder``; default: the shipped models,
    then the user's models folder) or the checkpoint at that path."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        entry = _entry(path)
        if entry is None:
            raise EngineError(f"'{path}' is not an engine checkpoint: give a .safetensors file written by the engine.")
        return entry
    entries = [e for f in ([folder] if folder else [SHIPPED, user_models_dir()]) for e in catalog(f)]
    for entry in entries:
        if entry.name == name_or_path:
            return entry
    if folder is None and name_or_path in DOWNLOADS:
        raise EngineError(
            f"The model {name_or_path!r} is not downloaded yet: run 'python -m engine fetch-model "
            f"{name_or_path}' (in QGIS: Plugins > OmniSat > Download the official AnySat model)."
        )
    known = ", ".join(e.name for e in entries) or "none"
    raise EngineError(f"No model {name_or_path!r}: give a checkpoint file or one of the known models ({known}).")


def find_by_weights(encoder_hash: str, hint: str = "") -> CatalogEntry | None:
    """The known checkpoint whose tensors hash to ``encoder_hash`` (engine.models.checkpoint.checkpoint_hash),
    as a probe records its encoder: ``hint`` (the path the probe was fitted with) first, then the shipped
    models and the user's models folder."""
    from engine.models.checkpoint import checkpoint_hash  # lazy: keeps torch out of this module

    hinted = [Path(hint).expanduser()] if hint and Path(hint).expanduser().is_file() else []
    candidates = [e for p in hinted if (e := _entry(p))] + [e for f in (SHIPPED, user_models_dir()) for e in catalog(f)]
    for entry in candidates:
        if checkpoint_hash(entry.path) == encoder_hash:
            return entry
    return None


def with_modalities(modalities: set[str], folder: Path = SHIPPED) -> list[CatalogEntry]:
    """The entries that have every one of ``modalities``, longest-trained first."""
    return [e for e in catalog(folder) if modalities <= set(e.modalities)]


def best_encoder(folder: Path, reporter: Reporter, modalities: set[str]) -> tuple[Path, str]:
    """The longest-trained known checkpoint that has all ``modalities`` and how to describe it;
    without one, a randomly initialised omnisat-treesatai saved in ``folder`` (said loudly)."""
    found = with_modalities(modalities)
    if found:
        return found[0].path, found[0].describe()
    import torch  # lazy: keeps torch out of this module

    from engine.models.checkpoint import save_checkpoint  # lazy: keeps torch out of this module
    from engine.models.registry import build_model  # lazy: keeps torch out of this module

    torch.manual_seed(0)
    model = build_model("omnisat-treesatai").eval()
    path = Path(folder) / "omnisat-treesatai-random.safetensors"
    save_checkpoint(path, model, provenance={"weights": "random initialisation, torch seed 0"})
    reporter.log(
        "No trained checkpoint with these modalities under resources/models: the encoder is a "
        "RANDOMLY INITIALISED omnisat-treesatai (embeddings are random features).",
        "warning",
    )
    return path, "omnisat-treesatai with RANDOM weights (torch seed 0): no trained checkpoint in resources/models"


def _row(entry: CatalogEntry, source: str) -> dict[str, Any]:
    """One installed checkpoint as ``models --json`` lists it (tensor header only, no weights); "units":
    per modality, the values its normalisation statistics expect (engine.io.units.expected_units)."""
    with safe_open(str(entry.path), framework="pt") as f:
        # every stored tensor (weights and buffers such as BatchNorm statistics)
        parameters = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    config = entry.metadata.get("config") or {}
    return {
        "name": entry.name,
        "status": "installed",
        "source": source,
        "path": str(entry.path),
        "architecture": entry.architecture,
        "modalities": {m["name"]: list(m["bands"]) for m in config.get("modalities", []) if isinstance(m, dict)},
        "units": {
            m["name"]: expected_units(ModalitySpec.from_dict(m))
            for m in config.get("modalities", [])
            if isinstance(m, dict)
        },
        "patch_size_m": config.get("patch_size_m"),
        "parameters": parameters,
        "steps": entry.steps,
        "size_bytes": entry.path.stat().st_size,
        "sha256": sha256_of(entry.path),
        "provenance": entry.provenance,
        "licence": entry.provenance.get("licence") or (SHIPPED_LICENCE if source == "shipped" else "unknown"),
        "has_head": entry.metadata.get("head") is not None,
    }


def _downloadable_row(entry) -> dict[str, Any]:
    from engine.models.registry import preset  # lazy: keeps torch and rasterio out of this module

    config = preset(f"{entry.architecture}-{entry.size}").builder()
    return {
        "name": entry.name,
        "status": "downloadable",
        "source": f"fetch-model {entry.name}",
        "path": None,
        "architecture": entry.architecture,
        "modalities": {m.name: list(m.bands) for m in config.modalities},
        "units": {m.name: expected_units(m) for m in config.modalities},
        "patch_size_m": config.patch_size_m,
        "parameters": entry.parameters,
        "steps": None,
        "size_bytes": entry.size_bytes,
        "sha256": entry.sha256 or None,
        "provenance": {"description": entry.provenance, "repository": entry.repository, "file": entry.file},
        "licence": entry.licence,
        "has_head": False,
    }


def catalog_rows(extra_folders: list[Path] = ()) -> list[dict[str, Any]]:
    """Shipped, user and added checkpoints, then the downloadable models not yet in a folder."""
    folders = [(SHIPPED, "shipped"), (user_models_dir(), "user"), *((Path(f), "added") for f in extra_folders)]
    rows, seen = [], set()
    for folder, source in folders:
        for entry in catalog(folder):
            if entry.path.resolve() not in seen:
                seen.add(entry.path.resolve())
                rows.append(_row(entry, source))
    installed = {row["name"] for row in rows}
    return rows + [_downloadable_row(entry) for name, entry in DOWNLOADS.items() if name not in installed]
