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
  OMNISAT_ROOT=$root OMNISAT_GUI_SCRIPTS=$root/tests/gui_run timeout 1200 xvfb-run -a -s "-screen 0 1920x1080x24 -nolisten tcp" \
  qgis --profiles-path "$out/profile" --noversioncheck --nologo \
  --noplugins --code "$root/tests/gui_run/crops_startup.py" > "$out/qgis.log" 2>&1 || status=$?
headless=0
(cd "$root" && QGIS_PLUGINPATH=$out/plugins OMNISAT_PYTHON=$root/.venv/bin/python \
  .venv/bin/python -m tests.gui_run.crops_headless "$out") || headless=$?
problems=()
[ "$headless" -eq 0 ] || problems+=("the qgis_process run differs from the dock's or failed (see above and headless.json)")
echo "whole run: $(( $(date +%s) - started )) s"
(cd "$root" && .venv/bin/python -m tests.gui_run.summary "$out" "$status" "${problems[@]}")
