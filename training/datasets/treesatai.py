"""TreeSatAI-TS (Ahlswede et al. 2023, time-series extension used by OmniSat/AnySat).

Official layout under ``root``:
    {split}_filenames.lst                  one aerial file name per line (train, test; val if made)
    labels/TreeSatBA_v9_60m_multi_labels.json   {file name: [[genus, area fraction], ...]}
    aerial/<name>.tif  (or aerial/60m/)    0.2 m, 4 bands (R, G, B, NIR), 304 x 304 px
    sentinel-ts/<stem>.h5 (or sentinel/)   sen-2-data (T,10,6,6), sen-2-products,
                                           sen-1-asc-data (T,2,6,6), sen-1-asc-products,
                                           sen-1-des-data, sen-1-des-products
Labels: a genus is present when it covers more than 7 % of the tile (the papers'
threshold); 15 genera, multi-label. The aerial tile is cropped to 300 x 300 px
(60 m, a whole number of 10 m patches): randomly in training, centred otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import rasterio

from engine.errors import EngineError
from engine.io.dates import day_of_year
from training.datasets.common import Sample, TileDataset, conform_s1, date_from_product_name, multi_hot, s1_band_count

CLASSES = [
    "Abies",
    "Acer",
    "Alnus",
    "Betula",
    "Cleared",
    "Fagus",
    "Fraxinus",
    "Larix",
    "Picea",
    "Pinus",
    "Populus",
    "Prunus",
    "Pseudotsuga",
    "Quercus",
    "Tilia",
]
LABEL_FILE = "labels/TreeSatBA_v9_60m_multi_labels.json"
AREA_THRESHOLD = 0.07
AERIAL_CROP = 300
SERIES = {
    "s2": ("sen-2-data", "sen-2-products"),
    "s1_asc": ("sen-1-asc-data", "sen-1-asc-products"),
    "s1_des": ("sen-1-des-data", "sen-1-des-products"),
}
# The *_ratio modalities add the VV/VH band the files lack (3 bands, as in PASTIS).
SERIES.update({f"{name}_ratio": SERIES[name] for name in ("s1_asc", "s1_des")})


class TreeSatAI(TileDataset):
    available = {"aerial": "image", **{name: "series" for name in SERIES}}
    class_names = CLASSES
    tile_size_m = 60.0
    label_kind = "multilabel"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._unknown_options(["area_threshold"])
        threshold = float(self.options.get("area_threshold", AREA_THRESHOLD))
        split_file = self.require(self.root / f"{self.split}_filenames.lst", f"the '{self.split}' split list")
        names = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        labels = json.loads(self.require(self.root / LABEL_FILE, "the label file").read_text())
        self.aerial_dir = self._first_dir(["aerial/60m", "aerial"], "the aerial folder")
        self.series_dir = self._first_dir(["sentinel-ts", "sentinel"], "the Sentinel time-series folder")
        self.items: list[tuple[str, np.ndarray]] = []
        for name in names:
            present = [CLASSES.index(g) for g, area in labels.get(name, []) if area > threshold and g in CLASSES]
            if present:  # as in the papers: tiles without a genus above the threshold are left out
                self.items.append((name, multi_hot(present, len(CLASSES))))
        if not self.items:
            raise EngineError(f"No labelled tile of '{split_file}' is in '{self.root / LABEL_FILE}'.")

    def _first_dir(self, candidates: list[str], what: str) -> Path:
        for candidate in candidates:
            if (self.root / candidate).is_dir():
                return self.root / candidate
        return self.require(self.root / candidates[-1], what)

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int, rng: np.random.Generator) -> Sample:
        name, label = self.items[index]
        sample = Sample(inputs={}, label=label, name=name)
        if "aerial" in self.modalities:
            path = self.require(self.aerial_dir / name, "the aerial tile")
            with rasterio.open(path) as src:
                image = src.read().astype(np.float32)
            top = self.crop_offset(image.shape[1], AERIAL_CROP, rng)
            left = self.crop_offset(image.shape[2], AERIAL_CROP, rng)
            sample.inputs["aerial"] = image[:, top : top + AERIAL_CROP, left : left + AERIAL_CROP]
        series = [m for m in self.modalities if m in SERIES]
        if series:
            path = self.require(self.series_dir / (Path(name).stem + ".h5"), "the Sentinel time series")
            with h5py.File(path, "r") as h5:
                for modality in series:
                    data_key, product_key = SERIES[modality]
                    if data_key not in h5:
                        raise EngineError(f"'{path}' has no dataset '{data_key}': it is not a TreeSatAI-TS file.")
                    doy = np.array([day_of_year(date_from_product_name(p, str(path))) for p in h5[product_key][:]])
                    data, days = self.subsample_dates(h5[data_key][:], doy, rng)
                    if modality.startswith("s1"):
                        # TreeSatAI-TS stores linear backscatter (values around 0.01-0.5).
                        data = conform_s1(data, s1_band_count(modality, self.bands), "linear")
                    sample.inputs[modality], sample.dates[modality] = data, days
        return sample
