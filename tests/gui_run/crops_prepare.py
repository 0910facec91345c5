"""Layers for the crops run in real QGIS (tests/gui_run/crops_run.sh), written with the project's venv.

    python -m tests.gui_run.crops_prepare OUT

OUT/flanders: the WorldCereal Flanders sample as an analyst has it (engine.bench.flanders: Sentinel-2
10 m, 20 m and SCL GeoTIFFs per date, Sentinel-1 VV/VH in dB per day, parcels.gpkg in EPSG:32631), and
OUT/flanders/register.gpkg: the same parcels in Belgian Lambert 72 (EPSG:31370), as the agency's register
comes, in another CRS than the rasters. Nothing is written into the shared data.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from osgeo import gdal

    from engine.bench.flanders import build

    out = Path(argv[0]) / "flanders"
    files = build(out)
    gdal.UseExceptions()
    gdal.VectorTranslate(
        str(out / "register.gpkg"), str(files.parcels), dstSRS="EPSG:31370", layerName="register", format="GPKG"
    )
    print(out, len(files.s2_10m), "Sentinel-2 dates,", len(files.s1), "Sentinel-1 days")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
