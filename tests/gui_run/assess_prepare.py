"""Layers for the real-QGIS assessment run (tests/gui_run/assess_run.sh), written with the project's venv.

    python -m tests.gui_run.assess_prepare SHARED_DATA OUT

OUT/eolearn: the plugin tests' scene (three clear eo-learn Sentinel-2 dates as 10-band
GeoTIFFs and an OmniSat checkpoint with random weights: tests.plugin.scenes), from which the
dock fits and maps the class map that is then assessed; OUT/s2_rgb_<date>.tif: two of
those dates as true colour, the imagery to label against (the main canvas and a side view).
Nothing is written into SHARED_DATA.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tests.engine.raster_fixtures import L1C_BANDS, eolearn_corner, write_described
from tests.plugin.scenes import CLEAR_DATES, write_scene


def main(argv: list[str]) -> int:
    shared, out = Path(argv[0]), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    write_scene(shared, out / "eolearn")
    scenes = np.load(shared / "eolearn_patch/REFERENCE_SCENES.npy", allow_pickle=False)
    stamps = json.loads((shared / "eolearn_patch/TestEOPatch/timestamps.json").read_text())
    for t in CLEAR_DATES[:2]:
        rgb = np.stack([scenes[t][..., L1C_BANDS.index(b)] for b in ("B4", "B3", "B2")])
        rgb = np.clip(rgb / 0.25 * 255, 0, 255).astype(np.uint8)
        day = stamps[t][:10]
        write_described(out / f"s2_rgb_{day}.tif", rgb, eolearn_corner(shared), descriptions=("red", "green", "blue"))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
