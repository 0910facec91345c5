#!/bin/bash
# The assessment loop in real QGIS under a virtual display, then headless, checked: tests/gui_run/assess_run.sh [OUT]
# Needs xvfb-run and the shared samples beside the checkout (../shared/data). QGIS is started twice on the
# same profile (assess_startup.py): phase 1 maps the land cover from the dock, draws a stratified sample
# sized from a target standard error and labels half of 40 points with the keyboard; phase 2 reopens the
# project, must resume where phase 1 stopped, labels the rest and assesses. Then the same two algorithms
# through qgis_process must draw the identical sample and, with the same labels, give the identical table.
# Writes OUT/assess-labelling.png, OUT/assess-done.png, OUT/assess-report.png, OUT/phase1.json,
# OUT/phase2.json, OUT/qgis<N>.log and OUT/headless/. Prints every check; exits non-zero when one fails,
# a phase did not finish, QGIS did not exit 0 or its output holds a Python traceback.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(realpath -m "${1:-$root/out/assess}")
shared=$(realpath "${OMNISAT_SHARED_DATA:-$root/../shared/data}")
rm -rf "$out" && mkdir -p "$out/headless"
(cd "$root" && PYTHONPATH=$root .venv/bin/python -m tests.gui_run.assess_prepare "$shared" "$out/data" \
  && PYTHONPATH=$root .venv/bin/python -m omnisat_qgis.package --output "$out/omnisat_qgis.zip" --install "$out/plugins")
status=()
for phase in 1 2; do
  # xcb: .ci/test exports offscreen for the suite, and the desktop QGIS dies at start-up on it (see run.sh).
  rc=0
  QT_QPA_PLATFORM=xcb QGIS_PLUGINPATH=$out/plugins OMNISAT_PYTHON=$root/.venv/bin/python OMNISAT_GUI_OUT=$out \
    OMNISAT_SHARED_DATA=$shared OMNISAT_GUI_SCRIPTS=$root/tests/gui_run OMNISAT_ASSESS_PHASE=$phase \
    timeout 900 xvfb-run -a -s "-screen 0 1920x1080x24 -nolisten tcp" \
    qgis --profiles-path "$out/profile" --noversioncheck --nologo --noplugins \
    --code "$root/tests/gui_run/assess_startup.py" > "$out/qgis$phase.log" 2>&1 || rc=$?
  status+=("$rc")
done
# Headless: qgis_process draws with the dock's settings (recorded in phase1.json) and assesses with the same labels.
QGIS_PLUGINPATH=$out/plugins OMNISAT_PYTHON=$root/.venv/bin/python QT_QPA_PLATFORM=offscreen \
  QGIS_CUSTOM_CONFIG_PATH=$out/headless/profile qgis_process plugins enable omnisat_qgis > /dev/null 2>&1 || true
QGIS_PLUGINPATH=$out/plugins OMNISAT_PYTHON=$root/.venv/bin/python QT_QPA_PLATFORM=offscreen \
  QGIS_CUSTOM_CONFIG_PATH=$out/headless/profile "$root/.venv/bin/python" - "$out" "${status[@]}" <<'PY'
import json
import subprocess
import sys
from pathlib import Path

from osgeo import ogr

out, statuses = Path(sys.argv[1]), [int(s) for s in sys.argv[2:]]
checks, problems = [], []


def check(name, ok, detail=""):
    checks.append((name, bool(ok), str(detail)[:600]))


def points(path):
    """sample_id -> (x, y, stratum, reference, flag) and the recorded design, read with GDAL."""
    source = ogr.Open(str(path))
    rows = {
        f.GetField("sample_id"): (
            round(f.GetGeometryRef().GetX(), 6),
            round(f.GetGeometryRef().GetY(), 6),
            f.GetField("stratum"),
            f.GetField("reference"),
            f.GetField("flag"),
        )
        for f in source.GetLayerByName("reference_sample")
    }
    design = json.loads(next(iter(source.GetLayerByName("sample_design"))).GetField("value"))
    return rows, design


phases = []
for phase, status in enumerate(statuses, start=1):
    result_file = out / f"phase{phase}.json"
    result = json.loads(result_file.read_text()) if result_file.is_file() else {}
    phases.append(result)
    checks.extend((c["check"], c["ok"], c["detail"]) for c in result.get("checks", []))
    if not result.get("finished"):
        problems.append(f"phase {phase} did not finish (see phase{phase}.json / qgis{phase}.log)")
    if status != 0:
        problems.append(f"QGIS exited with status {status} in phase {phase}")
    if "Traceback (most recent call last)" in (out / f"qgis{phase}.log").read_text(errors="replace"):
        problems.append(f"qgis{phase}.log holds a Python traceback")

if all(p.get("finished") for p in phases):
    settings, class_map = phases[0]["settings"], phases[0]["class_map"]
    headless = out / "headless"

    def algorithm(name, *args):
        run = subprocess.run(["qgis_process", "run", name, "--", *args], capture_output=True, text=True)
        (headless / f"{name.split(':')[1]}.log").write_text(run.stdout + run.stderr)
        check(f"headless: qgis_process {name} succeeds", run.returncode == 0, (run.stdout + run.stderr)[-600:])

    algorithm(
        "omnisat:samplemap",
        f"CLASSES={class_map}",
        f"DESIGN={settings['design']}",
        f"ALLOCATION={settings['allocation']}",
        f"TARGET_SE={settings['target_se']}",
        f"TARGET_CLASS={settings['target_class']}",
        f"EXPECTED_USERS_ACCURACY={settings['expected_users_accuracy'].replace(' ', '')}",
        f"MIN_PER_CLASS={settings['min_per_class']}",
        f"SEED={settings['seed']}",
        f"OUTPUT={headless / 'sample.gpkg'}",
    )
    gui, gui_design = points(out / "sample.gpkg")
    drawn, drawn_design = points(headless / "sample.gpkg")
    same = {k: v[:3] for k, v in gui.items()} == {k: v[:3] for k, v in drawn.items()}
    check("headless: the identical sample (every point, its place and stratum)", same, f"{len(gui)} vs {len(drawn)}")
    check(
        "headless: the identical recorded design (map sha256, sizes, target, seed)",
        gui_design == drawn_design,
        {k: (gui_design.get(k), drawn_design.get(k)) for k in gui_design if gui_design.get(k) != drawn_design.get(k)},
    )
    # The interpreter's labels, copied point by point onto the headless sample (its own output file).
    source = ogr.Open(str(headless / "sample.gpkg"), 1)
    layer = source.GetLayerByName("reference_sample")
    for feature in layer:
        _, _, _, reference, flag = gui[feature.GetField("sample_id")]
        feature.SetField("reference", reference)
        feature.SetField("flag", flag)
        layer.SetFeature(feature)
    source = None
    algorithm(
        "omnisat:assess",
        f"CLASSES={class_map}",
        f"SAMPLE={headless / 'sample.gpkg'}",
        f"OUTPUT={headless / 'assessment.csv'}",
        f"HTML={headless / 'assessment.html'}",
    )
    table = headless / "assessment.csv"
    check(
        "headless: the identical area and accuracy table",
        table.is_file() and table.read_text() == (out / "assessment.csv").read_text(),
        table,
    )
    print("sizes:", phases[0].get("sizes"))
    print("panel:", phases[1].get("status"))
    for row in phases[1].get("areas", []):
        print("area:", json.dumps(row))
    timings = {**phases[0].get("timings", {}), **phases[1].get("timings", {})}
    print("timings (s):", json.dumps(timings))

for name, ok, detail in checks:
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else f"  [{detail}]"))
problems += [name for name, ok, _ in checks if not ok]
for problem in problems:
    print("PROBLEM:", problem)
sys.exit(1 if problems else 0)
PY
