"""Real layers for the plugin's in-QGIS tests: three clear eo-learn Sentinel-2 dates as 10-band
GeoTIFFs named by date (digital numbers, and the same as reflectance), a 13-band L1C stack with
band descriptions, a copy of the Peru Sentinel-1 file (dB), and an OmniSat checkpoint (random
weights) with a two-class head."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from tests.engine.raster_fixtures import L1C_BANDS, eolearn_corner, write_described

S2_TREESAT = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
CLEAR_DATES = (2, 3, 4)


def write_scene(shared_data: Path, root: Path) -> Path:
    import torch

    from engine.models.checkpoint import save_checkpoint
    from engine.models.heads import HeadConfig, build_head
    from engine.models.registry import build_model

    scenes = np.load(shared_data / "eolearn_patch/REFERENCE_SCENES.npy", allow_pickle=False)
    stamps = json.loads((shared_data / "eolearn_patch/TestEOPatch/timestamps.json").read_text())
    corner = eolearn_corner(shared_data)
    index = [L1C_BANDS.index(b) for b in S2_TREESAT]
    for folder in ("s2", "l1c", "reflectance", "s1"):
        (root / folder).mkdir(parents=True)
    # A copy: QGIS writes statistics beside the rasters it opens, and the shared samples stay untouched.
    shutil.copy(shared_data / "l8_s1_peru/S1_2018_VV_VH_clip.tif", root / "s1")
    for t in CLEAR_DATES:
        day = stamps[t][:10].replace("-", "")
        data = np.ascontiguousarray(scenes[t][..., index].transpose(2, 0, 1)).astype(np.float32) * 10000
        write_described(root / "s2" / f"S2_{day}.tif", data, corner, descriptions=S2_TREESAT)
        write_described(root / "reflectance" / f"S2_{day}.tif", data / 10000, corner, descriptions=S2_TREESAT)
        full = np.ascontiguousarray(scenes[t].transpose(2, 0, 1)).astype(np.float32) * 10000
        write_described(
            root / "l1c" / f"S2A_MSIL1C_{day}T100000_L1C.tif",
            full,
            corner,
            descriptions=[f"B{b[1:].zfill(2)}" if b != "B8A" else b for b in L1C_BANDS],
        )
    torch.manual_seed(0)
    model = build_model("omnisat-treesatai").eval()
    head = build_head(HeadConfig("patch", model.embed_dim, 2))
    save_checkpoint(
        root / "omnisat.safetensors",
        model,
        head=head,
        classes=["green", "grey"],
        colors=["#1b7837", "#999999"],
        provenance={"weights": "random, for tests"},
    )
    return root
