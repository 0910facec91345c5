"""FLAIR #2 (IGN; used by OmniSat and AnySat): VHR aerial + Sentinel-2 super-patches.

Official layout under ``root``:
    flair_aerial_train/<domain>/<zone>/img/IMG_<n>.tif     5 bands (R, G, B, NIR, elevation), 512 px at 0.2 m
    flair_labels_train/<domain>/<zone>/msk/MSK_<n>.tif     classes 1..19
    flair_sen_train/<domain>/<zone>/sen/SEN2_sp_*_data.npy      (T, 10, H, W) super-patch at 10 m
                                        SEN2_sp_*_products.txt  one product name per date
    flair_2_aerial_test/, flair_2_labels_test/, flair_2_sen_test/  (same inside, test split)
    flair-2_centroids_sp_to_patch.json   {"IMG_<n>.tif": [row, col]} of the patch in its super-patch
Splits: ``test`` reads the flair_2_*_test folders; other splits read the
training folders, restricted to the domains of ``splits.json`` ({split: [domains]},
as the reference code expects) or of options.domains_<split>; ``train`` without
either uses every training domain. Classes above 13 merge into "other" (13
classes, as in the papers). The aerial patch is cropped to 500 px (100 m) and
Sentinel-2 to the 10 x 10 px around the patch centroid, the same 100 m.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio

from engine.errors import EngineError
from engine.io.dates import day_of_year
from training.datasets.common import Sample, TileDataset, date_from_product_name, multi_hot, sample_dates

CLASSES = [
    "building",
    "pervious surface",
    "impervious surface",
    "bare soil",
    "water",
    "coniferous",
    "deciduous",
    "brushwood",
    "vineyard",
    "herbaceous vegetation",
    "agricultural land",
    "plowed land",
    "other",
]
AERIAL_CROP = 500
S2_CROP = 10
CENTROIDS = "flair-2_centroids_sp_to_patch.json"


def _folders(split: str) -> tuple[str, str, str]:
    prefix, suffix = ("flair_2", "test") if split == "test" else ("flair", "train")
    return tuple(f"{prefix}_{kind}_{suffix}" for kind in ("aerial", "labels", "sen"))  # type: ignore[return-value]


class Flair(TileDataset):
    available = {"aerial_elevation": "image", "s2": "series"}
    class_names = CLASSES
    tile_size_m = 100.0

    def __init__(self, *args, segmentation: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._unknown_options([f"domains_{s}" for s in ("train", "val", "test")])
        self.label_kind = "segmentation" if segmentation else "multilabel"
        aerial_name, labels_name, sen_name = _folders(self.split)
        aerial_root = self.require(self.root / aerial_name, "the aerial folder")
        self.labels_root = self.require(self.root / labels_name, "the label folder")
        self.sen_root = self.root / sen_name
        self.centroids = json.loads(self.require(self.root / CENTROIDS, "the centroid file").read_text())
        domains = self._domains(aerial_root)
        self.items = sorted(
            (p for d in domains for p in (aerial_root / d).glob("*/img/IMG_*.tif")),
            key=lambda p: int(p.stem.split("_")[-1]),
        )
        if not self.items:
            raise EngineError(f"No IMG_*.tif under '{aerial_root}' for domains {domains}.")

    def _domains(self, aerial_root: Path) -> list[str]:
        if f"domains_{self.split}" in self.options:
            return list(self.options[f"domains_{self.split}"])
        splits = self.root / "splits.json"
        if splits.is_file():
            table = json.loads(splits.read_text())
            if self.split in table:
                return list(table[self.split])
        if self.split in ("train", "test"):
            return sorted(p.name for p in aerial_root.iterdir() if p.is_dir())
        raise EngineError(
            f"FLAIR split {self.split!r} needs its domains: add splits.json to '{self.root}' "
            f"or set options.domains_{self.split}."
        )

    def __len__(self) -> int:
        return len(self.items)

    def _label_path(self, image: Path) -> Path:
        zone, domain = image.parent.parent, image.parent.parent.parent
        path = self.labels_root / domain.name / zone.name / "msk" / image.name.replace("IMG_", "MSK_")
        return self.require(path, "the label mask")

    def _mask(self, image: Path) -> np.ndarray:
        with rasterio.open(self._label_path(image)) as src:
            raw = src.read(1).astype(np.int64)
        return np.minimum(raw, len(CLASSES)) - 1

    def load(self, index: int, rng: np.random.Generator) -> Sample:
        image_path = self.items[index]
        sample = Sample(inputs={}, name=image_path.name)
        with rasterio.open(image_path) as src:
            height, width = src.height, src.width
            top = self.crop_offset(height, AERIAL_CROP, rng)
            left = self.crop_offset(width, AERIAL_CROP, rng)
            if "aerial_elevation" in self.modalities:
                sample.inputs["aerial_elevation"] = src.read()[
                    :, top : top + AERIAL_CROP, left : left + AERIAL_CROP
                ].astype(np.float32)
        mask = self._mask(image_path)
        if self.label_kind == "segmentation":
            sample.label = mask[top : top + AERIAL_CROP, left : left + AERIAL_CROP]
        else:
            sample.label = multi_hot(np.unique(mask), len(CLASSES))
        if "s2" in self.modalities:
            sample.inputs["s2"], sample.dates["s2"] = self._s2(image_path, rng)
        return sample

    def _s2(self, image: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        zone, domain = image.parent.parent, image.parent.parent.parent
        folder = self.require(self.sen_root / domain.name / zone.name / "sen", "the Sentinel-2 folder")
        data_files = sorted(folder.glob("*data.npy"))
        product_files = sorted(folder.glob("*products.txt"))
        if not data_files or not product_files:
            raise EngineError(f"'{folder}' lacks SEN2_*_data.npy / SEN2_*_products.txt (FLAIR layout).")
        if image.name not in self.centroids:
            raise EngineError(f"'{image.name}' has no entry in {CENTROIDS}.")
        row, col = self.centroids[image.name]
        data = np.load(data_files[0], mmap_mode="r", allow_pickle=False)
        half = S2_CROP // 2
        if not (half <= row <= data.shape[2] - half and half <= col <= data.shape[3] - half):
            raise EngineError(f"The centroid of '{image.name}' lies too close to the edge of '{data_files[0]}'.")
        products = [p for p in product_files[0].read_text().splitlines() if p.strip()]
        doy = np.array([day_of_year(date_from_product_name(p, str(product_files[0]))) for p in products])
        if len(doy) != data.shape[0]:
            raise EngineError(f"'{data_files[0]}' has {data.shape[0]} dates, '{product_files[0]}' lists {len(doy)}.")
        keep = sample_dates(len(doy), self.max_dates, rng)
        crop = np.asarray(data[keep, :, row - half : row + half, col - half : col + half], dtype=np.float32)
        return crop, doy[keep].astype(np.float32)
