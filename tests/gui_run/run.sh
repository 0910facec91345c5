#!/bin/bash
# The analyst's loop in real QGIS under a virtual display: tests/gui_run/run.sh [OUT]
# Needs Xvfb (apt-get install xvfb) and the shared samples beside the checkout (../shared/data).
# The plugin is packaged and installed as a user would (omnisat_qgis.package --install).
# Writes OUT/dock-gui.png (the main window) and OUT/timings.json (fit, re-fit, whole-area seconds).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(realpath -m "${1:-$root/out/gui_run}")
shared=$(realpath "${OMNISAT_SHARED_DATA:-$root/../shared/data}")
rm -rf "$out" && mkdir -p "$out"
(cd "$root" && PYTHONPATH=$root .venv/bin/python -m tests.gui_run.prepare "$shared" "$out/data" \
  && PYTHONPATH=$root .venv/bin/python -m omnisat_qgis.package --output "$out/omnisat_qgis.zip" --install "$out/plugins")
Xvfb :99 -screen 0 1920x1080x24 -nolisten tcp & xvfb=$!
trap 'kill $xvfb' EXIT
sleep 1
DISPLAY=:99 QGIS_PLUGINPATH=$out/plugins OMNISAT_PYTHON=$root/.venv/bin/python OMNISAT_GUI_OUT=$out \
  OMNISAT_SHARED_DATA=$shared timeout 1200 qgis --profiles-path "$out/profile" --noversioncheck --nologo \
  --noplugins --code "$root/tests/gui_run/startup.py" > "$out/qgis.log" 2>&1 || true
cat "$out/timings.json"
