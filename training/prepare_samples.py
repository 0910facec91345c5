"""Lay out the project's real samples for the default-model trainings (resources/models/README.md).

``python -m training.prepare_samples SHARED_DATA OUT`` writes into OUT:
- ``TreeSat/``: the TreeSatAI-TS sample tile in the official layout (links to the
  aerial GeoTIFF and the HDF5 series, a label file naming its genus, split lists);
- ``eolearn/``: eo-learn's five Sentinel-2 L1C reference scenes (Slovenia, 10 m) as
  one GeoTIFF per date with the model's 10 bands (reflectance x 10000), plus
  ``job.json`` in the engine's job format for the ``rasters`` reader;
- ``eolearn-pastis/``: the same five scenes with eo-learn's land-cover raster (LULC) in the
  PASTIS-HD layout, for segmentation fine-tuning (training/configs/anysat_eolearn_segmentation.yaml):
  25 tiles of 20 x 20 px (200 m); folds are the five 200 m wide columns from west to east, so
  the default splits (train folds 1-3, val 4, test 5) are spatially separate. Classes 0-4 =
  cultivated, forest, grassland, shrubland, artificial; pixels without a label get PASTIS's
  void value 19.
Nothing is written into SHARED_DATA.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

TREESAT_TILE = "Abies_alba_1_1005_WEFL_NLF"
EOLEARN_DATES = ("20150711", "20150731", "20150820", "20150830", "20150909")
# L1C band order B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B10 B11 B12 -> the model's B2..B8A, B11, B12.
EOLEARN_BANDS = [1, 2, 3, 4, 5, 6, 7, 8, 11, 12]
# eo-learn LULC ids 1 cultivated, 2 forest, 3 grassland, 4 shrubland, 8 artificial -> 0..4; 0 (no data) -> void.
LULC_CLASSES = {1: 0, 2: 1, 3: 2, 4: 3, 8: 4}
PASTIS_VOID = 19
SEGMENTATION_TILE_PX = 20


def treesat(shared: Path, out: Path) -> Path:
    root = out / "TreeSat"
    for folder in ("aerial", "sentinel-ts", "labels"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for src, dst in (
        (f"{TREESAT_TILE}.tif", f"aerial/{TREESAT_TILE}.tif"),
        (f"{TREESAT_TILE}.h5", f"sentinel-ts/{TREESAT_TILE}.h5"),
    ):
        link = root / dst
        if not link.exists():
            link.symlink_to((shared / "treesatai_sample" / src).resolve())
    labels = {f"{TREESAT_TILE}.tif": [["Abies", 1.0]]}
    (root / "labels" / "TreeSatBA_v9_60m_multi_labels.json").write_text(json.dumps(labels))
    for split in ("train", "val", "test"):
        (root / f"{split}_filenames.lst").write_text(f"{TREESAT_TILE}.tif\n")
    return root


def eolearn(shared: Path, out: Path) -> Path:
    root = out / "eolearn"
    root.mkdir(parents=True, exist_ok=True)
    scenes = np.load(shared / "eolearn_patch" / "REFERENCE_SCENES.npy", allow_pickle=False)
    bbox = json.loads((shared / "eolearn_patch" / "TestEOPatch" / "bbox.geojson").read_text())
    xs = [p[0] for p in bbox["coordinates"][0]]
    ys = [p[1] for p in bbox["coordinates"][0]]
    files = []
    for t, day in enumerate(EOLEARN_DATES):
        data = (scenes[t][:, :, EOLEARN_BANDS] * 10000).astype("float32").transpose(2, 0, 1)
        path = root / f"S2_{day}.tif"
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=data.shape[2],
            height=data.shape[1],
            count=data.shape[0],
            dtype="float32",
            crs="EPSG:32633",
            transform=from_origin(min(xs), max(ys), 10, 10),
        ) as dst:
            dst.write(data)
        files.append(str(path.resolve()))
    job = {
        "model": "unused.safetensors",
        "outputs": {"embeddings": "unused.tif"},
        "modalities": {"s2": {"files": files}},
    }
    (root / "job.json").write_text(json.dumps(job, indent=1))
    return root


def eolearn_segmentation(shared: Path, out: Path) -> Path:
    root = out / "eolearn-pastis"
    for folder in ("DATA_S2", "ANNOTATIONS"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    patch = shared / "eolearn_patch"
    scenes = np.load(patch / "REFERENCE_SCENES.npy", allow_pickle=False)[..., EOLEARN_BANDS]
    series = np.round(scenes * 10000).astype(np.int16).transpose(0, 3, 1, 2)  # (T, 10, H, W) as PASTIS
    lulc = np.load(patch / "TestEOPatch" / "mask_timeless" / "LULC.npy", allow_pickle=False)[..., 0]
    target = np.full(lulc.shape, PASTIS_VOID, np.uint8)
    for source, index in LULC_CLASSES.items():
        target[lulc == source] = index
    dates = {str(t): int(day) for t, day in enumerate(EOLEARN_DATES)}
    size = SEGMENTATION_TILE_PX
    features = []
    for row in range(lulc.shape[0] // size):
        for col in range(lulc.shape[1] // size):
            pid = 100 * row + col
            rows, cols = slice(row * size, (row + 1) * size), slice(col * size, (col + 1) * size)
            np.save(root / "DATA_S2" / f"S2_{pid}.npy", np.ascontiguousarray(series[:, :, rows, cols]))
            # PASTIS targets hold (semantic, instance, ...) channels; the reader uses channel 0.
            np.save(root / "ANNOTATIONS" / f"TARGET_{pid}.npy", np.repeat(target[None, rows, cols], 3, axis=0))
            features.append(
                {
                    "type": "Feature",
                    "geometry": None,
                    "properties": {"ID_PATCH": pid, "Fold": col + 1, "dates-S2": dates},
                }
            )
    (root / "metadata.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return root


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    shared, out = Path(argv[0]), Path(argv[1])
    print(treesat(shared, out))
    print(eolearn(shared, out))
    print(eolearn_segmentation(shared, out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
