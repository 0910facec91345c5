"""What a result layer records about the run that made it (QgsLayerMetadata).

Model (file name and sha256), inputs per modality with their dates, extent, the
parameters sent to the engine and the engine's version: written into the layer
when QGIS adds it and as ``NAME.qmd`` beside the raster, so a map opened months
later still says how it was made.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from qgis.core import QgsLayerMetadata, QgsRasterLayer

from omnisat_qgis.contract import contract
from omnisat_qgis.paths import engine_root


@lru_cache(maxsize=1)
def engine_version() -> str:
    """The version of the engine code the worker runs (read from its source, not imported)."""
    text = (engine_root() / "engine" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    return match.group(1) if match else "unknown"


@lru_cache(maxsize=32)
def _sha256(path: str, mtime_ns: int) -> str:
    return contract.sha256_of(path)


def model_sha256(path: str) -> str:
    file = Path(path)
    return _sha256(str(file), file.stat().st_mtime_ns) if file.is_file() else ""


@dataclass
class RunRecord:
    operation: str
    title: str
    model: str = ""
    inputs: dict[str, list[str]] = field(default_factory=dict)
    dates: dict[str, list[str]] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_run(cls, operation: str, title: str, params: dict[str, Any], result: dict[str, Any]) -> RunRecord:
        job = params.get("job") if isinstance(params.get("job"), dict) else {}
        if not job and isinstance(params.get("embeddings"), dict):
            job = params["embeddings"]
        model = job.get("model") or params.get("model") or ""
        inputs = {}
        for name, entry in (job.get("modalities") or {}).items():
            files = entry.get("files") if isinstance(entry, dict) else entry
            inputs[name] = [str(f) for f in (files if isinstance(files, list) else [files])]
        if isinstance(params.get("embeddings"), str):
            inputs["embeddings"] = [params["embeddings"]]
        if params.get("labels"):
            inputs["labels"] = [str(params["labels"])]
        dates = {n: list(d) for n, d in (result.get("dates") or {}).items()}
        for name, entry in (job.get("modalities") or {}).items():
            if isinstance(entry, dict) and entry.get("dates") and name not in dates:
                dates[name] = [str(d) for d in entry["dates"]]
        return cls(operation, title, str(model), inputs, dates, params)

    def abstract(self) -> str:
        lines = [f"Made by OmniSat for QGIS ({self.title}, engine {engine_version()})."]
        if self.model:
            lines.append(f"Model: {Path(self.model).name} (sha256 {model_sha256(self.model) or 'file not found'})")
        for name, files in self.inputs.items():
            dates = self.dates.get(name)
            lines.append(
                f"Input {name}: "
                + ", ".join(Path(f).name for f in files)
                + (f"; dates {', '.join(dates)}" if dates else "")
            )
        lines.append("Parameters (engine JSON): " + json.dumps(self.parameters, sort_keys=True, default=str))
        return "\n".join(lines)

    def metadata(self, layer: QgsRasterLayer, output: str) -> QgsLayerMetadata:
        metadata = QgsLayerMetadata()
        metadata.setIdentifier(Path(layer.source().split("|")[0]).name)
        metadata.setTitle(f"{output} — OmniSat {self.title}")
        metadata.setType("dataset")
        metadata.setAbstract(self.abstract())
        metadata.addKeywords("OmniSat operation", [self.operation])
        metadata.addKeywords("OmniSat engine version", [engine_version()])
        if self.model:
            metadata.addKeywords("OmniSat model", [Path(self.model).name])
            metadata.addKeywords("OmniSat model sha256", [model_sha256(self.model)])
        for name, dates in self.dates.items():
            metadata.addKeywords(f"OmniSat dates {name}", dates)
        metadata.setCrs(layer.crs())
        extent = QgsLayerMetadata.SpatialExtent()
        extent.extentCrs = layer.crs()
        extent.bounds = layer.extent().toBox3d(0, 0)
        extents = QgsLayerMetadata.Extent()
        extents.setSpatialExtents([extent])
        metadata.setExtent(extents)
        return metadata


def write_metadata(raster: str, record: RunRecord, output: str) -> Path | None:
    """``NAME.qmd`` beside the raster (QGIS reads it as the layer's default metadata)."""
    layer = QgsRasterLayer(raster, Path(raster).stem, "gdal")
    if not layer.isValid():
        return None
    layer.setMetadata(record.metadata(layer, output))
    target = Path(raster).with_suffix(".qmd")
    message, ok = layer.saveNamedMetadata(str(target))
    return target if ok else None
