"""PASTIS-HD (PASTIS-R + SPOT-6 VHR, Garnot et al.; used by OmniSat and AnySat).

Official layout under ``root``:
    metadata.geojson           features with properties ID_PATCH, Fold (1-5),
                               dates-S2 / dates-S1A / dates-S1D ({"0": 20180924, ...})
    DATA_S2/S2_<id>.npy        (T, 10, 128, 128) at 10 m
    DATA_S1A/S1A_<id>.npy      (T, 3, 128, 128): VV, VH, VV/VH (ascending)
    DATA_S1D/S1D_<id>.npy      descending, same bands
    DATA_SPOT/PASTIS_SPOT6_RVB_1M00_2019/SPOT6_RVB_1M00_2019_<id>.tif   3 bands, 1 m
    ANNOTATIONS/TARGET_<id>.npy  (3, 128, 128): channel 0 = semantic class 0..19
Classes: 0 background, 1-18 crop types, 19 void. Classification (as in the
papers) is multi-label over the 18 crop types present in the tile; segmentation
keeps 0..18 per pixel with 19 ignored. S1 modalities named *_ratio carry
VV, VH and VV/VH; the others VV and VH. Splits are fold lists: the papers train on
folds 1-3, validate on 4, test on 5 (override with options.folds_<split>).
Dates become day of year (the engine's convention), not days since 2018-09-01.
"""

from __future__ import annotations

import json

import numpy as np
import rasterio

from engine.errors import EngineError
from engine.io.dates import day_of_year
from training.datasets.common import Sample, TileDataset, conform_s1, multi_hot, parse_yyyymmdd, s1_band_count

CLASSES = [
    "Background",
    "Meadow",
    "Soft winter wheat",
    "Corn",
    "Winter barley",
    "Winter rapeseed",
    "Spring barley",
    "Sunflower",
    "Grapevine",
    "Beet",
    "Winter triticale",
    "Winter durum wheat",
    "Fruits, vegetables, flowers",
    "Potatoes",
    "Leguminous fodder",
    "Soybeans",
    "Orchard",
    "Mixed cereal",
    "Sorghum",
    "Void label",
]
VOID = 19
DEFAULT_FOLDS = {"train": [1, 2, 3], "val": [4], "test": [5]}
SERIES = {"s2": "S2", "s1_asc": "S1A", "s1_des": "S1D", "s1_asc_ratio": "S1A", "s1_des_ratio": "S1D"}
SPOT_DIR = "DATA_SPOT/PASTIS_SPOT6_RVB_1M00_2019"


class Pastis(TileDataset):
    available = {"spot": "image", **{name: "series" for name in SERIES}}
    tile_size_m = 1280.0

    def __init__(self, *args, segmentation: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._unknown_options(["folds_train", "folds_val", "folds_test"])
        self.label_kind = "segmentation" if segmentation else "multilabel"
        self.class_names = CLASSES[:VOID] if segmentation else CLASSES[1:VOID]
        folds = self.options.get(f"folds_{self.split}", DEFAULT_FOLDS.get(self.split))
        if folds is None:
            raise EngineError(f"PASTIS has no split {self.split!r}: set options.folds_{self.split} to a fold list.")
        meta = self.require(self.root / "metadata.geojson", "the patch index")
        try:
            features = json.loads(meta.read_text())["features"]
        except (ValueError, KeyError):
            raise EngineError(f"'{meta}' is not a GeoJSON feature collection (PASTIS metadata).") from None
        self.patches = [f["properties"] for f in features if int(f["properties"].get("Fold", -1)) in folds]
        if not self.patches:
            raise EngineError(f"'{meta}' lists no patch in folds {folds}.")

    def __len__(self) -> int:
        return len(self.patches)

    def _dates(self, properties: dict, key: str) -> np.ndarray:
        raw = properties.get(f"dates-{key}")
        if isinstance(raw, str):
            raw = json.loads(raw)
        if not isinstance(raw, dict):
            raise EngineError(f"PASTIS patch {properties.get('ID_PATCH')} has no dates-{key} in metadata.geojson.")
        ordered = [raw[k] for k in sorted(raw, key=int)]
        return np.array([day_of_year(parse_yyyymmdd(d)) for d in ordered], dtype=np.float32)

    def load(self, index: int, rng: np.random.Generator) -> Sample:
        properties = self.patches[index]
        pid = properties["ID_PATCH"]
        target = np.load(
            self.require(self.root / "ANNOTATIONS" / f"TARGET_{pid}.npy", "the annotation"), allow_pickle=False
        )[0].astype(np.int64)
        if self.label_kind == "segmentation":
            label = target
        else:
            present = [c - 1 for c in np.unique(target) if 0 < c < VOID]
            label = multi_hot(present, VOID - 1)
        sample = Sample(inputs={}, label=label, name=str(pid))
        for modality in self.modalities:
            if modality == "spot":
                with rasterio.open(
                    self.require(self.root / SPOT_DIR / f"SPOT6_RVB_1M00_2019_{pid}.tif", "the SPOT tile")
                ) as src:
                    sample.inputs["spot"] = src.read().astype(np.float32)
                continue
            key = SERIES[modality]
            path = self.require(self.root / f"DATA_{key}" / f"{key}_{pid}.npy", f"the {key} series")
            data = np.load(path, mmap_mode="r", allow_pickle=False)
            doy = self._dates(properties, key)
            if len(doy) != data.shape[0]:
                raise EngineError(f"'{path}' has {data.shape[0]} dates but metadata.geojson lists {len(doy)}.")
            data, days = self.subsample_dates(data, doy, rng)
            if modality.startswith("s1"):
                data = conform_s1(np.asarray(data, dtype=np.float32), s1_band_count(modality, self.bands))
            sample.inputs[modality], sample.dates[modality] = np.asarray(data, dtype=np.float32), days
        return sample
