#!/bin/bash
# The analyst's session in real QGIS under a virtual display, checked: tests/gui_run/run.sh [OUT]
# Needs xvfb-run (apt-get install xvfb xauth; .ci/setup installs them) and the shared samples beside the checkout (../shared/data).
# The plugin is packaged and installed as a user would (omnisat_qgis.package --install).
# Writes OUT/*.png (screenshots; OUT/dock-gui.png the last), OUT/result.json (checks, failures,
# timings), OUT/timings.json and OUT/qgis.log.
# Exits non-zero when a check fails, the scenario did not finish, QGIS did not exit 0, or QGIS's
# output holds a Python traceback.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(realpath -m "${1:-$root/out/gui_run}")
shared=$(realpath "${OMNISAT_SHARED_DATA:-$root/../shared/data}")
rm -rf "$out" && mkdir -p "$out"
(cd "$root" && PYTHONPATH=$root .venv/bin/python -m tests.gui_run.prepare "$shared" "$out/data" \
  && PYTHONPATH=$root .venv/bin/python -m omnisat_qgis.package --output "$out/omnisat_qgis.zip" --install "$out/plugins")
status=0
# xvfb-run -a picks a free display and waits until the server accepts connections (a fixed display and
# a sleep once let QGIS start before Xvfb was ready: it aborted at start-up).
# QT_QPA_PLATFORM=xcb: .ci/test exports offscreen for the suite, and the QGIS desktop built on it died at
# start-up (signal 11 in QgsClipboard) before the plugin loaded.
QT_QPA_PLATFORM=xcb QGIS_PLUGINPATH=$out/plugins OMNISAT_PYTHON=$root/.venv/bin/python OMNISAT_GUI_OUT=$out \
  OMNISAT_SHARED_DATA=$shared OMNISAT_GUI_SCRIPTS=$root/tests/gui_run timeout 1200 xvfb-run -a -s "-screen 0 1920x1080x24 -nolisten tcp" \
  qgis --profiles-path "$out/profile" --noversioncheck --nologo \
  --noplugins --code "$root/tests/gui_run/startup.py" > "$out/qgis.log" 2>&1 || status=$?
(cd "$root" && .venv/bin/python -m tests.gui_run.summary "$out" "$status")
