"""What the dock sends to the engine, as plain data: the job, the cached embeddings, the commands.

Pure Python (no Qt widgets) so it is tested on its own. The embeddings of an
extent are cached on disk under a key made of the model file, the inputs (paths,
sizes, modification times, dates, band mapping), the extent and the level: after
new labels, a re-fit reuses them instead of running the encoder again.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnisat_qgis.model_catalog import ModelInfo

PREVIEW_LEVEL = "patch"


@dataclass
class ModalityInput:
    name: str
    files: list[str]
    dates: list[str] = field(default_factory=list)  # empty: read by the engine from names / metadata
    bands: list[int | None] | None = None  # None: the files' bands are the model's, in order
    scale: str | None = None  # the engine's on-the-fly value conversion (engine.io.scales), if any
    sensor: dict[str, Any] | None = None  # a sensor described by its wavelengths (omnisat_qgis.other_sensor)
    # One sensor in several groups of files (Sentinel-2's 10 m and 20 m bands): the job's "parts" instead of files.
    parts: list[dict[str, Any]] | None = None
    mask: dict[str, Any] | None = None  # the job's cloud "mask" entry (files, type, classes)
    season: tuple[str, str] | None = None  # first and last day of the dates used

    def job_entry(self) -> dict[str, Any]:
        if self.parts:
            entry: dict[str, Any] = {"parts": self.parts}
        else:
            entry = {"files": self.files if len(self.files) > 1 else self.files[0]}
        if self.dates:
            entry["dates"] = self.dates
        if self.bands is not None:
            entry["bands"] = self.bands
        if self.scale is not None:
            entry["scale"] = self.scale
        if self.sensor is not None:
            entry["sensor"] = self.sensor
        if self.mask is not None:
            entry["mask"] = self.mask
        if self.season is not None:
            entry["season"] = list(self.season)
        return entry

    def all_files(self) -> list[str]:
        """Every file the modality reads: its files, or its parts' files."""
        if not self.parts:
            return list(self.files)
        return [
            f for part in self.parts for f in (part["files"] if isinstance(part["files"], list) else [part["files"]])
        ]


@dataclass(frozen=True)
class Extent:
    bounds: tuple[float, float, float, float]
    crs: str

    def grown(self, share: float) -> Extent:
        xmin, ymin, xmax, ymax = self.bounds
        dx, dy = (xmax - xmin) * share, (ymax - ymin) * share
        return Extent((xmin - dx, ymin - dy, xmax + dx, ymax + dy), self.crs)

    def job_entry(self) -> dict[str, Any]:
        return {"bounds": list(self.bounds), "crs": self.crs}


@dataclass
class Advanced:
    batch_size: int = 4
    device: str = "auto"
    precision: str = "auto"
    tile_size_m: float | None = None  # window side in metres; None: the model's default
    level: str = PREVIEW_LEVEL  # the embeddings the probe is fitted on and applied to (dense: per output cell)
    resolution_m: float | None = None  # the job's output resolution; None: the finest input's pixel size


def build_job(
    model: ModelInfo, inputs: list[ModalityInput], extent: Extent | None, outputs: dict[str, Any], advanced: Advanced
) -> dict[str, Any]:
    job: dict[str, Any] = {
        "model": str(model.path),
        "modalities": {m.name: m.job_entry() for m in inputs},
        "outputs": outputs,
        "batch_size": advanced.batch_size,
        "device": advanced.device,
        "precision": advanced.precision,
    }
    if advanced.tile_size_m:
        job["tile_size"] = advanced.tile_size_m
    if advanced.resolution_m:
        job["resolution"] = advanced.resolution_m
    if extent is not None:
        job["extent"] = extent.job_entry()
    return job


# GDAL saves the statistics QGIS computes for a VRT inside the VRT itself: they must not change its identity.
_VRT_STATISTICS = re.compile(r"<Histograms>.*?</Histograms>|<MDI key=\"STATISTICS_[A-Z_]+\">[^<]*</MDI>", re.DOTALL)
MAX_VRT_BYTES = 16 * 1024 * 1024


def _file_identity(path: str) -> list[Any]:
    file = Path(path)
    stat = file.stat() if file.exists() else None
    if stat and file.suffix.lower() == ".vrt" and stat.st_size <= MAX_VRT_BYTES:
        text = _VRT_STATISTICS.sub("", file.read_text(encoding="utf-8", errors="replace"))
        text = re.sub(r"\s+", "", text).replace("<Metadata></Metadata>", "")
        return [str(file.resolve()), hashlib.sha256(text.encode()).hexdigest()]
    return [str(file.resolve()), stat.st_size if stat else None, stat.st_mtime_ns if stat else None]


def embedding_key(model: ModelInfo, inputs: list[ModalityInput], extent: Extent, level: str, advanced: Advanced) -> str:
    """Changes whenever the embeddings would: model, inputs, extent, level, precision."""
    identity = {
        "model": _file_identity(str(model.path)),
        "inputs": [[m.name, [_file_identity(f) for f in m.all_files()], m.dates, m.bands, m.scale] for m in inputs],
        # Masks, season and the parts' band split change the embeddings too (absent: the key of a plain input).
        "reading": [[m.parts, m.mask, m.season] for m in inputs if m.parts or m.mask or m.season],
        "extent": [[round(v, 3) for v in extent.bounds], extent.crs],
        "level": level,
        "precision": advanced.precision,
        "window": advanced.tile_size_m,
        "resolution": advanced.resolution_m,
        "sensors": [[m.name, m.sensor] for m in inputs if m.sensor],  # other sensors' wavelengths
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class EmbeddingCache:
    folder: Path

    def embeddings(self, key: str) -> Path:
        return self.folder / key / "embeddings.tif"

    def has(self, key: str) -> bool:
        return self.embeddings(key).is_file()


def qgis_process_command(algorithm: str, params: dict[str, Any]) -> str:
    """The shell command that runs the same thing headless."""
    args = []
    for name, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            args.append(shlex.quote(f"{name}={item}"))
    return " ".join(["qgis_process", "run", f"omnisat:{algorithm}", "--", *args])
