"""What an analyst would check after the real-QGIS run (tests/gui_run/run.sh): ``python -m tests.gui_run.check OUT``.

Reads OUT/timings.json (written by startup.py inside QGIS) and fails, naming each problem, unless the run
ended without an exception, QGIS's message log got no critical entry, the dock shows a macro-F1 above
MACRO_F1_FLOOR on the held-out labels, every labelled class reaches the class maps' legends with the
colour the dock gave it, the rasters the run added to the project open as valid rasters, and the
screenshot was written.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# Four classes, sixteen labels: chance is 0.25; the scenario's fit showed 0.56 here (2026-12-07).
MACRO_F1_FLOOR = 0.4


def problems(out: Path) -> list[str]:
    record_path = out / "timings.json"
    if not record_path.is_file():
        return [f"{record_path} was not written: the scenario did not reach its end"]
    record = json.loads(record_path.read_text())
    found = []
    if record.get("error"):
        found.append(f"the scenario raised:\n{record['error']}")
    found += [f"QGIS logged a critical message: {entry}" for entry in record.get("log_errors", [])]
    shown = re.search(r"macro-F1 ([0-9.]+)", record.get("metrics_after_fit", ""))
    if not shown:
        found.append(f"the dock shows no macro-F1 after fitting: {record.get('metrics_after_fit')!r}")
    elif float(shown.group(1)) < MACRO_F1_FLOOR:
        found.append(f"macro-F1 {shown.group(1)} on the held-out labels is below {MACRO_F1_FLOOR} (chance is 0.25)")
    labelled = [name for name, count in record.get("labels", {}).items() if count]
    if not labelled:
        found.append("no label was added")
    legends = record.get("legends", {})
    if not legends:
        found.append("no class map with a legend (paletted renderer) is in the project")
    colors = record.get("class_colors", {})
    for layer, entries in legends.items():
        shown = {label: color for label, color in entries}
        for name in labelled:
            if name not in shown:
                found.append(f"class '{name}' is not in the legend of '{layer}' (it shows {sorted(shown)})")
            elif colors.get(name) and shown[name].lower() != colors[name].lower():
                found.append(f"class '{name}' is {shown[name]} in the legend of '{layer}', {colors[name]} in the dock")
    found += _raster_problems(record.get("rasters", {}))
    if not (out / "dock-gui.png").is_file():
        found.append(f"no screenshot at {out / 'dock-gui.png'}")
    return found


def _raster_problems(rasters: dict[str, str]) -> list[str]:
    import rasterio

    if not rasters:
        return ["the run added no raster to the project"]
    found = []
    for name, source in rasters.items():
        try:
            with rasterio.open(source.split("|")[0]) as ds:
                ds.read(1, window=((0, min(ds.height, 64)), (0, min(ds.width, 64))))
        except Exception as exc:  # any failure to open or read is the finding
            found.append(f"the layer '{name}' ({source}) is not a valid raster: {exc}")
    return found


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    found = problems(out)
    for problem in found:
        print(f"gui run: FAIL: {problem}")
    print(f"gui run: {'FAILED' if found else 'passed'} ({out})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
