"""Layers for the real-QGIS assessment run (tests/gui_run/assess_run.sh), written with the project's venv.

    python -m tests.gui_run.assess_prepare SHARED_DATA OUT

OUT/landcover.tif: eo-learn's land-cover raster (mask_timeless/LULC.npy, 10 m, its five
classes present) as a class map with class names and colours, 0 (no data) as nodata;
OUT/s2_rgb.tif: a clear Sentinel-2 date of the same patch as true colour, the imagery to
label against. Nothing is written into SHARED_DATA.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio

from engine.io.grid import Grid
from engine.io.writers import CLASS_NODATA, open_class_map
from tests.engine.raster_fixtures import L1C_BANDS, eolearn_corner, write_described

# eo-learn LULC codes present in the patch, and the names and colours of the map's classes
CODES = (1, 2, 3, 4, 8)
NAMES = ["cultivated land", "forest", "grassland", "shrubland", "artificial surface"]
COLORS = ["#ffff00", "#054907", "#ffa500", "#806000", "#ff0000"]


def main(argv: list[str]) -> int:
    shared, out = Path(argv[0]), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    patch = shared / "eolearn_patch/TestEOPatch"
    lulc = np.load(patch / "mask_timeless/LULC.npy")[..., 0]
    classes = np.full(lulc.shape, CLASS_NODATA, np.uint8)
    for k, code in enumerate(CODES):
        classes[lulc == code] = k
    left, top = eolearn_corner(shared)
    grid = Grid(
        rasterio.crs.CRS.from_epsg(32633),
        rasterio.transform.from_origin(left, top, 10.0, 10.0),
        lulc.shape[1],
        lulc.shape[0],
    )
    with open_class_map(out / "landcover.tif", grid, NAMES, COLORS) as ds:
        ds.write(classes, 1)
    scene = np.load(shared / "eolearn_patch/REFERENCE_SCENES.npy", allow_pickle=False)[3]
    rgb = np.stack([scene[..., L1C_BANDS.index(b)] for b in ("B4", "B3", "B2")])
    rgb = np.clip(rgb / 0.25 * 255, 0, 255).astype(np.uint8)
    write_described(out / "s2_rgb.tif", rgb, (left, top), descriptions=("red", "green", "blue"))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
