"""What ``models --json`` lists and the plugin's model pickers offer: one row per model.

The checkpoints shipped under ``resources/models``, the user's models folder (where
``fetch-model`` puts converted models), any folder the user adds, and the downloadable
models not yet downloaded. Rows are read from the files' metadata and tensor headers:
no weights are loaded.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.models.downloads import DOWNLOADS, DownloadableModel, user_models_dir

SHIPPED = Path(__file__).resolve().parents[2] / "resources" / "models"
SHIPPED_LICENCE = "GPL-2.0-or-later (trained by this project)"


def checkpoint_row(path: Path, source: str) -> dict[str, Any] | None:
    """The row of one engine checkpoint; None for a file that is not one."""
    from safetensors import safe_open

    from engine.io.download import sha256_of
    from engine.models.checkpoint import read_metadata

    try:
        meta = read_metadata(path)
        with safe_open(str(path), framework="pt") as f:
            # every stored tensor (weights and buffers such as BatchNorm statistics), from the header only
            parameters = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except EngineError:
        return None
    config, provenance = meta.get("config") or {}, meta.get("provenance") or {}
    modalities = config.get("modalities", [])
    return {
        "name": path.stem, "status": "installed", "source": source, "path": str(path),
        "architecture": config.get("architecture", ""),
        "modalities": {m["name"]: list(m["bands"]) for m in modalities if isinstance(m, dict)},
        "patch_size_m": config.get("patch_size_m"), "parameters": parameters,
        "size_bytes": path.stat().st_size, "sha256": sha256_of(path), "provenance": provenance,
        "licence": provenance.get("licence") or (SHIPPED_LICENCE if source == "shipped" else "unknown"),
        "has_head": meta.get("head") is not None,
    }


def downloadable_row(entry: DownloadableModel) -> dict[str, Any]:
    from engine.models.anysat import anysat_config

    config = anysat_config(entry.size)
    return {
        "name": entry.name, "status": "downloadable", "source": f"fetch-model {entry.name}", "path": None,
        "architecture": entry.architecture, "modalities": {m.name: list(m.bands) for m in config.modalities},
        "patch_size_m": config.patch_size_m, "parameters": entry.parameters, "size_bytes": entry.size_bytes,
        "sha256": entry.sha256, "provenance": {"description": entry.provenance, "repository": entry.repository,
                                               "file": entry.file},
        "licence": entry.licence, "has_head": False,
    }


def catalog_rows(extra_folders: list[Path] = ()) -> list[dict[str, Any]]:
    """Shipped, user and added checkpoints, then the downloadable models not yet in a folder."""
    folders = [(SHIPPED, "shipped"), (user_models_dir(), "user"), *((Path(f), "added") for f in extra_folders)]
    rows, seen = [], set()
    for folder, source in folders:
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            if path.resolve() not in seen and (row := checkpoint_row(path, source)) is not None:
                seen.add(path.resolve())
                rows.append(row)
    installed = {row["name"] for row in rows}
    return rows + [downloadable_row(entry) for name, entry in DOWNLOADS.items() if name not in installed]
