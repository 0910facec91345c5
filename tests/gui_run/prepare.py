"""Layers for the real-QGIS run (tests/gui_run/run.sh), written with the project's venv.

    python -m tests.gui_run.prepare SHARED_DATA OUT

OUT/s2: three clear eo-learn Sentinel-2 dates (10 bands, named, digital numbers; the
plugin tests' scene), OUT/treesatai: the TreeSatAI aerial tile (a copy) and six of its
Sentinel-1 ascending dates as VV/VH GeoTIFFs on the tile's footprint (the HDF5 has no
georeferencing: its 60 m are the aerial tile's), OUT/stack/s2_stack.tif: the three eo-learn
dates in one 30-band GeoTIFF whose bands are dates x bands, each band described "B2 2015-08-20"
(what Earth Engine or openEO exports look like). Nothing is written into SHARED_DATA.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import rasterio

from tests.engine.raster_fixtures import write_described
from tests.plugin.scenes import write_scene

TREESAT = "Abies_alba_1_1005_WEFL_NLF"
S1_DATES_KEPT = 6


def treesatai(shared: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    aerial = shared / "treesatai_sample" / f"{TREESAT}.tif"
    shutil.copy(aerial, out / aerial.name)
    with rasterio.open(aerial) as src:
        crs, left, top = src.crs.to_string(), src.bounds.left, src.bounds.top
    with h5py.File(shared / "treesatai_sample" / f"{TREESAT}.h5", "r") as f:
        data = f["sen-1-asc-data"][()]  # (T, 2, 6, 6), linear power
        products = [p.decode() for p in f["sen-1-asc-products"][()]]
    for t in np.linspace(0, len(products) - 1, S1_DATES_KEPT).round().astype(int):
        day = products[t].split("_")[4][:8]
        write_described(
            out / f"S1_asc_{day}.tif",
            np.ascontiguousarray(data[t], np.float32),
            (left, top),
            crs=crs,
            descriptions=("VV", "VH"),
        )


def date_stack(scene: Path, out: Path) -> Path:
    """The scene's dates in one file, dates x bands, each band described with its band and date."""
    out.mkdir(parents=True, exist_ok=True)
    bands, descriptions = [], []
    for path in sorted((scene / "s2").glob("*.tif")):
        day = path.stem.split("_")[1]
        with rasterio.open(path) as src:
            bands.append(src.read())
            profile = src.profile
            descriptions += [f"{d} {day[:4]}-{day[4:6]}-{day[6:]}" for d in src.descriptions]
    data = np.concatenate(bands)
    profile.update(count=data.shape[0])
    target = out / "s2_stack.tif"
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
        for index, text in enumerate(descriptions, start=1):
            dst.set_band_description(index, text)
    return target


def main(argv: list[str]) -> int:
    shared, out = Path(argv[0]), Path(argv[1])
    write_scene(shared, out / "eolearn")
    treesatai(shared, out / "treesatai")
    date_stack(out / "eolearn", out / "stack")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
