"""Tiny synthetic datasets written in the official on-disk layouts (for the readers and smoke runs).

The folder and file structure, names and array layouts are those of the public
datasets; the arrays are random and smaller than the real ones where the layout
does not fix the size (PASTIS patches, FLAIR super-patches).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import h5py
import numpy as np
import rasterio
from rasterio.transform import from_origin

from training.datasets.treesatai import CLASSES as TREESAT_CLASSES


def _dates(rng: np.random.Generator, count: int, year: int = 2020) -> list[dt.date]:
    days = np.sort(rng.choice(np.arange(365), size=count, replace=False))
    return [dt.date(year, 1, 1) + dt.timedelta(days=int(d)) for d in days]


def _write_tif(path: Path, array: np.ndarray, gsd: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=array.shape[1],
        width=array.shape[2],
        count=array.shape[0],
        dtype=array.dtype,
        crs="EPSG:25832",
        transform=from_origin(500000, 5770000, gsd, gsd),
    ) as dst:
        dst.write(array)


def write_treesatai(
    root: Path, tiles: int = 6, dates: tuple[int, int] = (12, 9), seed: int = 0, splits: dict[str, slice] | None = None
) -> Path:
    """aerial/*.tif, sentinel-ts/*.h5, labels/TreeSatBA_v9_60m_multi_labels.json, {split}_filenames.lst."""
    rng = np.random.default_rng(seed)
    names, labels = [], {}
    for i in range(tiles):
        genus = TREESAT_CLASSES[i % 3]
        name = f"{genus}_synthetic_{i}_WEFL_NLF.tif"
        names.append(name)
        # Class-dependent brightness so that supervised training has something to learn.
        base = 60 + 50 * (i % 3)
        _write_tif(root / "aerial" / name, (base + rng.integers(0, 40, (4, 304, 304))).astype(np.uint8), 0.2)
        labels[name] = [[genus, 0.9], ["Picea", 0.05]]  # Picea below the 7 % threshold
        s2_dates, s1_dates = _dates(rng, dates[0]), _dates(rng, dates[1])
        (root / "sentinel-ts").mkdir(parents=True, exist_ok=True)
        with h5py.File(root / "sentinel-ts" / (Path(name).stem + ".h5"), "w") as h5:
            h5["sen-2-data"] = (1000 * (1 + i % 3) + rng.normal(0, 300, (len(s2_dates), 10, 6, 6))).astype(np.float32)
            h5["sen-2-masks"] = rng.uniform(0, 100, (len(s2_dates), 2, 6, 6)).astype(np.float32)
            h5["sen-2-products"] = np.array(
                [f"S2A_MSIL2A_{d:%Y%m%d}T102421_N0213_R065_T32UNC_{d:%Y%m%d}T115419".encode() for d in s2_dates],
                dtype=object,
            )
            for orbit in ("asc", "des"):
                h5[f"sen-1-{orbit}-data"] = rng.uniform(0.01, 0.3, (len(s1_dates), 2, 6, 6)).astype(np.float32)
                h5[f"sen-1-{orbit}-products"] = np.array(
                    [
                        f"S1A_IW_GRDH_1SDV_{d:%Y%m%d}T170841_{d:%Y%m%d}T170906_030639_0382D5_360A".encode()
                        for d in s1_dates
                    ],
                    dtype=object,
                )
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "TreeSatBA_v9_60m_multi_labels.json").write_text(json.dumps(labels))
    splits = splits or {"train": slice(0, tiles), "val": slice(0, tiles), "test": slice(0, tiles)}
    for split, part in splits.items():
        (root / f"{split}_filenames.lst").write_text("\n".join(names[part]) + "\n")
    return root


def write_pastis(root: Path, patches: int = 4, size: int = 32, dates: int = 7, seed: int = 0) -> Path:
    """metadata.geojson, DATA_S2, DATA_S1A, DATA_S1D, DATA_SPOT/..., ANNOTATIONS/TARGET_*.npy."""
    rng = np.random.default_rng(seed)
    features = []
    for i in range(patches):
        pid = 10000 + i
        per_source = {}
        for key, bands in (("S2", 10), ("S1A", 3), ("S1D", 3)):
            days = _dates(rng, dates, 2019)
            per_source[key] = {str(k): int(f"{d:%Y%m%d}") for k, d in enumerate(days)}
            folder = root / f"DATA_{key}"
            folder.mkdir(parents=True, exist_ok=True)
            scale = 1000.0 if key == "S2" else 1.0
            np.save(
                folder / f"{key}_{pid}.npy",
                (scale * rng.uniform(-1, 1, (dates, bands, size, size))).astype(
                    np.int16 if key == "S2" else np.float32
                ),
            )
        _write_tif(
            root / "DATA_SPOT" / "PASTIS_SPOT6_RVB_1M00_2019" / f"SPOT6_RVB_1M00_2019_{pid}.tif",
            rng.integers(0, 255, (3, size * 10, size * 10)).astype(np.uint8),
            1.0,
        )
        target = rng.integers(0, 20, (3, size, size)).astype(np.uint8)
        (root / "ANNOTATIONS").mkdir(parents=True, exist_ok=True)
        np.save(root / "ANNOTATIONS" / f"TARGET_{pid}.npy", target)
        features.append(
            {
                "type": "Feature",
                "geometry": None,
                "properties": {"ID_PATCH": pid, "Fold": 1 + i % 5, **{f"dates-{k}": v for k, v in per_source.items()}},
            }
        )
    (root / "metadata.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return root


def write_flair(
    root: Path, domains: tuple[str, ...] = ("D001_2019",), images: int = 3, dates: int = 6, seed: int = 0
) -> Path:
    """flair_{aerial,labels,sen}_train/<domain>/<zone>/..., flair-2_centroids_sp_to_patch.json (+ test)."""
    rng = np.random.default_rng(seed)
    centroids = {}
    number = 0
    for prefix, suffix in (("flair", "train"), ("flair_2", "test")):
        for domain in domains:
            zone = "Z1_UF"
            for _ in range(images):
                number += 1
                name = f"IMG_{number:06d}.tif"
                _write_tif(
                    root / f"{prefix}_aerial_{suffix}" / domain / zone / "img" / name,
                    rng.integers(0, 255, (5, 512, 512)).astype(np.uint8),
                    0.2,
                )
                _write_tif(
                    root / f"{prefix}_labels_{suffix}" / domain / zone / "msk" / name.replace("IMG_", "MSK_"),
                    rng.integers(1, 20, (1, 512, 512)).astype(np.uint8),
                    0.2,
                )
                centroids[name] = [int(rng.integers(5, 35)), int(rng.integers(5, 35))]
            sen = root / f"{prefix}_sen_{suffix}" / domain / zone / "sen"
            sen.mkdir(parents=True, exist_ok=True)
            np.save(
                sen / f"SEN2_sp_{domain}-{zone}_data.npy", rng.integers(0, 5000, (dates, 10, 40, 40)).astype(np.int16)
            )
            np.save(
                sen / f"SEN2_sp_{domain}-{zone}_masks.npy", rng.integers(0, 100, (dates, 2, 40, 40)).astype(np.uint8)
            )
            (sen / f"SEN2_sp_{domain}-{zone}_products.txt").write_text(
                "\n".join(f"SENTINEL2A_{d:%Y%m%d}-104856-123_L2A_T31TFJ_C_V2-2" for d in _dates(rng, dates, 2021))
            )
    (root / "flair-2_centroids_sp_to_patch.json").write_text(json.dumps(centroids))
    return root


# A very small OmniSat (the presets' code path with tiny widths) so that a CPU step takes ~0.1-1 s.
TINY_OMNISAT = {
    "embed_dim": 32,
    "depth": 1,
    "heads": 2,
    "ltae_in_mlp": [16, 32],
    "ltae_out_mlp": [64, 32],
    "ltae_heads": 4,
    "ltae_key_dim": 4,
    "dropout": 0.0,
    "attn_dropout": 0.0,
    "drop_path": 0.0,
    "ltae_dropout": 0.0,
}


def experiment(
    out_dir: Path,
    datasets: list[dict],
    objective: str = "omnisat",
    preset: str = "omnisat-treesatai",
    overrides: dict | None = None,
    **sections,
) -> dict:
    """A raw config tree for a short fp32 CPU run (deterministic, one thread)."""
    tree = {
        "objective": objective,
        "model": {"preset": preset, "overrides": TINY_OMNISAT if overrides is None else overrides},
        "data": {"datasets": datasets},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {
            "out_dir": str(out_dir),
            "max_steps": 3,
            "log_every": 1,
            "checkpoint_every": 100,
            "device": "cpu",
            "precision": "fp32",
            "progress": False,
            "seed": 3,
        },
    }
    for name, values in sections.items():
        tree.setdefault(name, {}).update(values)
    return tree
