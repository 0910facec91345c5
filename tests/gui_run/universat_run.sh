#!/bin/bash
# A per-cell class map from UniverSat (random weights) made in the dock in real QGIS, then by qgis_process,
# compared pixel for pixel: tests/gui_run/universat_run.sh [OUT]
# Needs xvfb-run (apt-get install xvfb xauth) and the shared samples beside the checkout (../shared/data).
# UNIVERSAT_SIZE=tiny (default) or base picks the architecture of the random checkpoint.
# The plugin is packaged and installed as a user would (omnisat_qgis.package --install).
# Writes OUT/dock-universat.png (the dock beside the map), OUT/universat-dock.json (the dock's checks and
# timings), OUT/headless/ (the qgis_process runs) and OUT/qgis.log. Prints every check; exits non-zero when
# one fails, the scenario did not finish, QGIS did not exit 0, or QGIS's output holds a Python traceback.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(realpath -m "${1:-$root/out/universat_run}")
shared=$(realpath "${OMNISAT_SHARED_DATA:-$root/../shared/data}")
size=${UNIVERSAT_SIZE:-tiny}
rm -rf "$out" && mkdir -p "$out/headless"
started=$(date +%s)
(cd "$root" && PYTHONPATH=$root .venv/bin/python -m tests.gui_run.universat_prepare "$shared" "$out" "$size" \
  && PYTHONPATH=$root .venv/bin/python -m omnisat_qgis.package --output "$out/omnisat_qgis.zip" --install "$out/plugins")
export QGIS_PLUGINPATH=$out/plugins OMNISAT_PYTHON=$root/.venv/bin/python OMNISAT_MODELS_DIR=$out/models
status=0
# QT_QPA_PLATFORM=xcb and xvfb-run -a: see run.sh.
QT_QPA_PLATFORM=xcb OMNISAT_GUI_OUT=$out OMNISAT_SHARED_DATA=$shared OMNISAT_UNIVERSAT_MODEL=universat-$size-random \
  timeout 1200 xvfb-run -a -s "-screen 0 1920x1080x24 -nolisten tcp" \
  qgis --profiles-path "$out/profile" --noversioncheck --nologo \
  --noplugins --code "$root/tests/gui_run/universat_startup.py" > "$out/qgis.log" 2>&1 || status=$?
gui_s=$(($(date +%s) - started))
# Headless: the same map through qgis_process, twice: the command the dock shows (apply the probe to the
# dock's job), and classify with the layers and RESOLUTION given as parameters.
export QT_QPA_PLATFORM=offscreen QGIS_CUSTOM_CONFIG_PATH=$out/headless/profile
headless=0
if [ -f "$out/universat-dock.json" ]; then
  read -r probe job model layers < <("$root/.venv/bin/python" -c '
import json, sys
run = json.load(open(sys.argv[1]))
print(run.get("probe", "-"), run.get("job", "-"), run.get("model", "-"), ";".join(run.get("layers", [])) or "-")
' "$out/universat-dock.json")
  qgis_process plugins enable omnisat_qgis > /dev/null 2>&1 || true
  layer_args=()
  IFS=';' read -ra files <<< "$layers"
  for f in "${files[@]}"; do layer_args+=("LAYERS_1=$f"); done
  qgis_process run omnisat:applyprobe -- PROBE="$probe" JOB="$job" CLASSES="$out/headless/applyprobe.tif" \
    > "$out/headless/applyprobe.log" 2>&1 || headless=$?
  qgis_process run omnisat:classify -- MODEL_FILE="$model" PROBE="$probe" MODALITY_1=s2 "${layer_args[@]}" \
    RESOLUTION=10 CLASSES="$out/headless/classify.tif" > "$out/headless/classify.log" 2>&1 || headless=$?
fi
total_s=$(($(date +%s) - started))
"$root/.venv/bin/python" - "$out" "$status" "$headless" "$gui_s" "$total_s" <<'PY'
import json, sys
from pathlib import Path

import numpy as np
import rasterio

out, status, headless, gui_s, total_s = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
run = json.loads((out / "universat-dock.json").read_text()) if (out / "universat-dock.json").is_file() else {}
checks = list(run.get("checks", []))
problems = list(run.get("failures", []))
if not run.get("finished"):
    problems.append("the dock's scenario did not finish (see universat-dock.json / qgis.log)")
if status != 0:
    problems.append(f"QGIS exited with status {status}")
if "Traceback (most recent call last)" in (out / "qgis.log").read_text(errors="replace"):
    problems.append("qgis.log holds a Python traceback")
if headless != 0:
    problems.append(f"a qgis_process run failed (status {headless}; see headless/*.log)")


def compare(name, path):
    if not run.get("dock_classes") or not path.is_file():
        checks.append({"check": f"{name}: identical to the dock's map", "ok": False, "detail": f"{path} missing"})
        return
    with rasterio.open(run["dock_classes"]) as a, rasterio.open(path) as b:
        same_grid = a.crs == b.crs and a.transform == b.transform and a.shape == b.shape
        left, right = a.read(1), b.read(1)
        differing = int((left != right).sum()) if same_grid else -1
        detail = f"{a.shape[1]} x {a.shape[0]} cells of {a.res[0]:g} m; {differing} differ; classes {np.unique(left).tolist()}"
    checks.append({"check": f"{name}: identical to the dock's map, pixel for pixel", "ok": same_grid and differing == 0, "detail": detail})


compare("qgis_process applyprobe (the dock's command)", out / "headless" / "applyprobe.tif")
compare("qgis_process classify (layers + RESOLUTION=10)", out / "headless" / "classify.tif")
for item in checks:
    print(("ok    " if item["ok"] else "FAIL  ") + item["check"] + (f"  [{item['detail']}]" if "cells" in item["detail"] else ""))
    if not item["ok"] and item not in run.get("checks", []):
        problems.append(f"{item['check']}: {item['detail']}")
print("timings (s):", json.dumps(run.get("timings", {})), f"QGIS session {gui_s}, whole run {total_s}")
for problem in problems:
    print("PROBLEM:", problem)
sys.exit(1 if problems else 0)
PY
