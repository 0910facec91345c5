#!/bin/bash
# A crop analyst's session in real QGIS on the Flanders sample, then the same by qgis_process, checked:
#   tests/gui_run/crops_run.sh [OUT]
# Needs xvfb-run and qgis_process (.ci/setup installs them) and the shared samples beside the checkout.
# QGIS (QT_QPA_PLATFORM=xcb under xvfb-run -a, as run.sh) runs tests/gui_run/crops_startup.py: Sentinel-2
# 10 m + 20 m + SCL and Sentinel-1 layers picked in the dock, labels drawn, fit, crop map, parcel map.
# Then tests/gui_run/crops_headless.py runs the qgis_process commands the dock showed, into OUT/headless,
# and compares the outputs pixel for pixel and attribute for attribute.
# Writes OUT/dock-crops.png (the screenshot), OUT/result.json, OUT/headless.json, OUT/qgis.log.
# Prints the checks; exits non-zero when one fails, the scenario did not finish, QGIS did not exit 0,
# QGIS's output holds a Python traceback, or a headless output differs.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(realpath -m "${1:-$root/out/crops_run}")
shared=$(realpath "${OMNISAT_SHARED_DATA:-$root/../shared/data}")
started=$(date +%s)
rm -rf "$out" && mkdir -p "$out"
(cd "$root" && PYTHONPATH=$root .venv/bin/python -m tests.gui_run.crops_prepare "$out/data" \
  && PYTHONPATH=$root .venv/bin/python -m omnisat_qgis.package --output "$out/omnisat_qgis.zip" --install "$out/plugins")
status=0
QT_QPA_PLATFORM=xcb QGIS_PLUGINPATH=$out/plugins OMNISAT_PYTHON=$root/.venv/bin/python OMNISAT_GUI_OUT=$out \
  OMNISAT_ROOT=$root timeout 1200 xvfb-run -a -s "-screen 0 1920x1080x24 -nolisten tcp" \
  qgis --profiles-path "$out/profile" --noversioncheck --nologo \
  --noplugins --code "$root/tests/gui_run/crops_startup.py" > "$out/qgis.log" 2>&1 || status=$?
headless=0
(cd "$root" && QGIS_PLUGINPATH=$out/plugins OMNISAT_PYTHON=$root/.venv/bin/python \
  .venv/bin/python -m tests.gui_run.crops_headless "$out") || headless=$?
"$root/.venv/bin/python" - "$out" "$status" "$headless" "$started" <<'PY'
import json, sys, time
from pathlib import Path

out, status, headless, started = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
problems = []
result = json.loads((out / "result.json").read_text()) if (out / "result.json").is_file() else {}
if not result.get("finished"):
    problems.append("the scenario did not finish (see result.json / qgis.log)")
problems += result.get("failures", [])
if status != 0:
    problems.append(f"QGIS exited with status {status}")
if "Traceback (most recent call last)" in (out / "qgis.log").read_text(errors="replace"):
    problems.append("qgis.log holds a Python traceback")
for item in result.get("checks", []):
    print(("ok    " if item["ok"] else "FAIL  ") + item["check"])
if headless != 0:
    problems.append("the qgis_process run differs from the dock's or failed (see above and headless.json)")
print("timings (s):", json.dumps(result.get("timings", {})), "preview macro-F1:", result.get("macro_f1"))
print(f"whole run: {time.time() - started:.0f} s")
for problem in problems:
    print("PROBLEM:", problem)
sys.exit(1 if problems else 0)
PY
