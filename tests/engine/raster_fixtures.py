"""GeoTIFF fixtures built from the real samples, and a tiny model that follows the EOModel contract.

The tiny model is local: each patch's output depends only on that patch's pixels,
so a tiled run must equal a single-window run exactly (up to float rounding).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from einops import rearrange, reduce
from torch import nn

from engine.models.base import EOModel, Features
from engine.models.heads import HeadConfig, build_head
from engine.models.modalities import ModalitySpec
from engine.models.registry import register_architecture
from tests.engine.rasters import write_geotiff

EOLEARN_CRS = "EPSG:32633"
# Sentinel-2 L1C band order of REFERENCE_SCENES: B01..B08, B8A, B09, B10, B11, B12.
L1C_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
S2_BANDS = ("B2", "B3", "B4", "B8")

SPECS = {
    "s2": ModalitySpec("s2", "series", S2_BANDS, 10.0, True, (0.1,) * 4, (0.05,) * 4),
    "s1": ModalitySpec("s1", "series", ("VV", "VH"), 10.0, True, (-12.0, -19.0), (3.0, 3.0)),
    "l8": ModalitySpec("l8", "image", ("B2", "B3", "B4", "B5", "B6", "B7"), 10.0, False, (0.05,) * 6, (0.05,) * 6),
}


@dataclass
class TinyConfig:
    modalities: list[str] = field(default_factory=lambda: ["s2", "s1", "l8"])
    embed_dim: int = 8
    patch_size_m: float = 10.0
    architecture: str = "tiny-local"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TinyConfig:
        return cls(**data)


class TinyModel(EOModel):
    """Per patch: masked mean over dates, mean over the patch's pixels, a linear map per modality."""

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config, self.embed_dim = config, config.embed_dim
        self.modalities = {n: SPECS[n] for n in config.modalities}
        self.project = nn.ModuleDict({n: nn.Linear(SPECS[n].n_bands, config.embed_dim) for n in config.modalities})

    def forward_features(self, inputs, dates, date_mask=None, patch_size_m=None):
        self.check_inputs(inputs, dates, date_mask)
        patch = None
        for name, x in inputs.items():
            spec = self.modalities[name]
            if spec.kind == "series":
                keep = (date_mask or {}).get(name, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device))
                w = keep.to(x.dtype)[:, :, None, None, None]
                x = (x * w).sum(1) / w.sum(1).clamp(min=1)
            k = round((patch_size_m or self.config.patch_size_m) / spec.gsd_m)
            pooled = reduce(x, "b c (h k1) (w k2) -> b h w c", "mean", k1=k, k2=k)
            out = self.project[name](pooled)
            patch = out if patch is None else patch + out
        return Features(tile=rearrange(patch, "b h w d -> b (h w) d").mean(1), patch=patch)


register_architecture("tiny-local", TinyConfig, TinyModel)


def tiny_model(n_classes: int = 3, seed: int = 0, modalities=("s2", "s1", "l8")):
    torch.manual_seed(seed)
    model = TinyModel(TinyConfig(modalities=list(modalities))).eval()
    head = build_head(HeadConfig("patch", model.embed_dim, n_classes)).eval()
    return model, head


def eolearn_corner(shared_data: Path) -> tuple[float, float]:
    ring = json.loads((shared_data / "eolearn_patch/TestEOPatch/bbox.geojson").read_text())["coordinates"][0]
    return min(p[0] for p in ring), max(p[1] for p in ring)


def write_described(
    path: Path,
    data: np.ndarray,
    origin,
    crs: str = EOLEARN_CRS,
    pixel: float = 10.0,
    nodata=None,
    descriptions=None,
    tags=None,
) -> Path:
    """write_geotiff plus band descriptions and dataset tags."""
    write_geotiff(path, data, crs=crs, origin=origin, pixel=pixel, nodata=nodata)
    with rasterio.open(path, "r+") as ds:
        for i, d in enumerate(descriptions or ()):
            ds.set_band_description(i + 1, d)
        if tags:
            ds.update_tags(**tags)
    return path


def eolearn_s2_files(shared_data: Path, folder: Path) -> list[Path]:
    """The five real L1C dates as single-date 4-band GeoTIFFs named S2_YYYYMMDD.tif (EPSG:32633, 10 m)."""
    folder.mkdir(parents=True, exist_ok=True)
    scenes = np.load(shared_data / "eolearn_patch/REFERENCE_SCENES.npy", allow_pickle=False)
    stamps = json.loads((shared_data / "eolearn_patch/TestEOPatch/timestamps.json").read_text())[:5]
    left, top = eolearn_corner(shared_data)
    idx = [L1C_BANDS.index(b) for b in S2_BANDS]
    files = []
    for t, stamp in enumerate(stamps):
        data = np.ascontiguousarray(scenes[t][..., idx].transpose(2, 0, 1)).astype(np.float32)
        name = f"S2_{stamp[:10].replace('-', '')}.tif"
        files.append(write_described(folder / name, data, (left, top), descriptions=S2_BANDS))
    return files


def eolearn_cloud_masks(shared_data: Path, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    clm = np.load(shared_data / "eolearn_patch/TestEOPatch/mask/CLM.npy", allow_pickle=False)[:5, ..., 0]
    stamps = json.loads((shared_data / "eolearn_patch/TestEOPatch/timestamps.json").read_text())[:5]
    left, top = eolearn_corner(shared_data)
    return [
        write_geotiff(folder / f"CLM_{s[:10]}.tif", clm[t][None].astype(np.uint8), crs=EOLEARN_CRS, origin=(left, top))
        for t, s in enumerate(stamps)
    ]


def file_digest(paths) -> dict[str, bytes]:
    import hashlib

    return {str(p): hashlib.sha256(Path(p).read_bytes()).digest() for p in paths}
