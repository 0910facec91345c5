#!/bin/bash
# The assessment loop in real QGIS under a virtual display, then headless: tests/gui_run/assess_run.sh [OUT]
# Needs Xvfb and the shared samples beside the checkout (../shared/data). QGIS is started twice on the
# same profile: the second session must resume the labelling where the first stopped.
# Writes OUT/assess-labelling.png, OUT/assess-done.png, OUT/assess-report.png, OUT/phase1.json,
# OUT/phase2.json, and OUT/headless/ (the same two algorithms through qgis_process).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(realpath -m "${1:-$root/out/assess}")
shared=$(realpath "${OMNISAT_SHARED_DATA:-$root/../shared/data}")
rm -rf "$out" && mkdir -p "$out/headless"
(cd "$root" && PYTHONPATH=$root .venv/bin/python -m tests.gui_run.assess_prepare "$shared" "$out/data" \
  && PYTHONPATH=$root .venv/bin/python -m omnisat_qgis.package --output "$out/omnisat_qgis.zip" --install "$out/plugins")
display=:$((100 + $$ % 100))
Xvfb $display -screen 0 1920x1080x24 -nolisten tcp & xvfb=$!
trap 'kill $xvfb' EXIT
sleep 1
for phase in 1 2; do
  DISPLAY=$display QGIS_PLUGINPATH=$out/plugins OMNISAT_PYTHON=$root/.venv/bin/python OMNISAT_GUI_OUT=$out \
    OMNISAT_SHARED_DATA=$shared OMNISAT_ASSESS_PHASE=$phase timeout 600 qgis --profiles-path "$out/profile" \
    --noversioncheck --nologo --noplugins --code "$root/tests/gui_run/assess_startup.py" > "$out/qgis$phase.log" 2>&1 || true
  cat "$out/phase$phase.json"
done
# Headless: the same algorithms through qgis_process, on the sample labelled above.
export QGIS_PLUGINPATH=$out/plugins OMNISAT_PYTHON=$root/.venv/bin/python QT_QPA_PLATFORM=offscreen \
  QGIS_CUSTOM_CONFIG_PATH=$out/headless/profile
qgis_process plugins enable omnisat_qgis > /dev/null 2>&1 || true
qgis_process run omnisat:samplemap -- CLASSES="$out/data/landcover.tif" TARGET_SE=0.05 \
  EXPECTED_USERS_ACCURACY="0.6,0.9,0.8,0.7,0.8" MIN_PER_CLASS=5 SEED=11 OUTPUT="$out/headless/sample.gpkg" \
  > "$out/headless/samplemap.log" 2>&1
qgis_process run omnisat:assess -- CLASSES="$out/data/landcover.tif" SAMPLE="$out/sample.gpkg" \
  OUTPUT="$out/headless/assessment.csv" HTML="$out/headless/assessment.html" > "$out/headless/assess.log" 2>&1
tail -n 5 "$out/headless/samplemap.log" "$out/headless/assess.log"
