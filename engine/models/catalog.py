"""The checkpoints the engine knows: one entry per model, read from metadata alone (no weights).

Like torchgeo's weights API: ``CatalogEntry`` describes one model (where it lies, its
architecture, modalities and training), ``catalog()`` lists them, ``find_model()`` picks one
by name or path, ``best_encoder()`` the longest-trained one with given modalities. Today the
entries are the checkpoints shipped under ``resources/models``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.progress import Reporter

SHIPPED = Path(__file__).resolve().parents[2] / "resources" / "models"


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
        return f"checkpoint {self.path.name} (provenance: {json.dumps(self.provenance)})"


def _entry(path: Path) -> CatalogEntry | None:
    from engine.models.checkpoint import read_metadata

    try:
        meta = read_metadata(path)
    except EngineError:
        return None  # not an engine checkpoint: not in the catalog
    config = meta.get("config", {})
    names = tuple(m.get("name") if isinstance(m, dict) else m for m in config.get("modalities", []))
    return CatalogEntry(path.stem, path, str(config.get("architecture", "")), names,
                        int((meta.get("provenance") or {}).get("steps") or 0), meta)


def catalog(folder: Path = SHIPPED) -> list[CatalogEntry]:
    """Every checkpoint in ``folder``, longest-trained first (then by file name)."""
    entries = [e for path in (sorted(folder.glob("*.safetensors")) if folder.is_dir() else []) if (e := _entry(path))]
    return sorted(entries, key=lambda e: (-e.steps, e.path.name))


def find_model(name_or_path: str, folder: Path = SHIPPED) -> CatalogEntry:
    """The entry named ``name_or_path`` (a file stem of the catalog) or the checkpoint at that path."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        entry = _entry(path)
        if entry is None:
            raise EngineError(f"'{path}' is not an engine checkpoint: give a .safetensors file written by the engine.")
        return entry
    for entry in catalog(folder):
        if entry.name == name_or_path:
            return entry
    known = ", ".join(e.name for e in catalog(folder)) or "none"
    raise EngineError(f"No model {name_or_path!r}: give a checkpoint file or one of the known models ({known}).")


def with_modalities(modalities: set[str], folder: Path = SHIPPED) -> list[CatalogEntry]:
    """The entries that have every one of ``modalities``, longest-trained first."""
    return [e for e in catalog(folder) if modalities <= set(e.modalities)]


def best_encoder(folder: Path, reporter: Reporter, modalities: set[str]) -> tuple[Path, str]:
    """The longest-trained known checkpoint that has all ``modalities`` and how to describe it;
    without one, a randomly initialised omnisat-treesatai saved in ``folder`` (said loudly)."""
    found = with_modalities(modalities)
    if found:
        return found[0].path, found[0].describe()
    import torch

    from engine.models.checkpoint import save_checkpoint
    from engine.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("omnisat-treesatai").eval()
    path = Path(folder) / "omnisat-treesatai-random.safetensors"
    save_checkpoint(path, model, provenance={"weights": "random initialisation, torch seed 0"})
    reporter.log("No trained checkpoint with these modalities under resources/models: the encoder is a "
                 "RANDOMLY INITIALISED omnisat-treesatai (embeddings are random features).", "warning")
    return path, "omnisat-treesatai with RANDOM weights (torch seed 0): no trained checkpoint in resources/models"
