#!/bin/bash
# The analyst's loop in real QGIS under a virtual display: bash tests/gui_run/run.sh [OUT]
# Needs xvfb-run (.ci/setup installs it) and the shared samples beside the checkout (../shared/data,
# or OMNISAT_SHARED_DATA). The plugin is packaged and installed as a user would (omnisat_qgis.package
# --install). Writes OUT (default out/gui_run): dock-gui.png (the main window), timings.json (what the
# scenario saw, with its timings), qgis.log. Fails when QGIS exits non-zero or tests/gui_run/check.py
# finds a problem (an exception, a critical log entry, no metrics, a class missing from the legend, ...).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(realpath -m "${1:-$root/out/gui_run}")
shared=$(realpath "${OMNISAT_SHARED_DATA:-$root/../shared/data}")
rm -rf "$out" && mkdir -p "$out"
cd "$root"
PYTHONPATH=$root .venv/bin/python -m tests.gui_run.prepare "$shared" "$out/data"
PYTHONPATH=$root .venv/bin/python -m omnisat_qgis.package --output "$out/omnisat_qgis.zip" --install "$out/plugins"
status=0
QGIS_PLUGINPATH=$out/plugins OMNISAT_PYTHON=$root/.venv/bin/python OMNISAT_GUI_OUT=$out OMNISAT_SHARED_DATA=$shared \
  timeout 1200 xvfb-run -a -s "-screen 0 1920x1080x24 -nolisten tcp" \
  qgis --profiles-path "$out/profile" --noversioncheck --nologo --noplugins --code "$root/tests/gui_run/startup.py" \
  > "$out/qgis.log" 2>&1 || status=$?
if [ "$status" != 0 ]; then
  echo "gui run: QGIS exited with status $status (log: $out/qgis.log)" >&2
  tail -n 30 "$out/qgis.log" >&2
fi
PYTHONPATH=$root .venv/bin/python -m tests.gui_run.check "$out" || status=1
exit "$status"
