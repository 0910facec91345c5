"""The crops run's second half (crops_run.sh): the qgis_process commands the dock showed, run headless into
OUT/headless, and their outputs compared with the dock's, pixel for pixel and attribute for attribute.

    python -m tests.gui_run.crops_headless OUT

Reads OUT/result.json (the commands and the dock's outputs, written by crops_startup.py). The dock's work
folder OUT/omnisat becomes OUT/headless/omnisat in every argument (its job files copied there first, as
inputs). Writes OUT/headless.json; exits 1 when a command fails or an output differs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np


def run_commands(out: Path, commands: dict[str, str], env: dict[str, str]) -> list[dict]:
    old, new = str(out / "omnisat"), str(out / "headless" / "omnisat")
    for job in (out / "omnisat").rglob("*.json"):  # inputs of the commands: the jobs the dock wrote
        target = Path(new) / job.relative_to(old)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(job, target)
    ran = []
    for step in ("fit", "map", "parcels"):
        for line in commands[step].splitlines():
            args = [arg.replace(old, new) for arg in shlex.split(line)]
            for arg in args:  # output folders of the run
                if "=" in arg and new in arg:
                    Path(arg.split("=", 1)[1].split("|")[0]).parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
            ran.append({"command": shlex.join(args), "rc": done.returncode, "tail": done.stderr[-1500:]})
            if done.returncode != 0:
                print(done.stdout[-3000:], done.stderr[-3000:])
                return ran
    return ran


def same_raster(a: str, b: str) -> tuple[bool, str]:
    from osgeo import gdal

    first, second = gdal.Open(a), gdal.Open(b)
    if second is None:
        return False, f"{b} missing"
    x, y = first.ReadAsArray(), second.ReadAsArray()
    geo = first.GetGeoTransform() == second.GetGeoTransform() and first.GetProjection() == second.GetProjection()
    if x.shape != y.shape:
        return False, f"shapes {x.shape} vs {y.shape}"
    differ = int(np.sum(x != y))
    largest = float(np.max(np.abs(x.astype(np.float64) - y))) if differ else 0.0
    return differ == 0 and geo, f"{differ} of {x.size} values differ (largest {largest:g}); same grid: {geo}"


def parcel_rows(path: str) -> list[dict]:
    from osgeo import ogr

    source = ogr.Open(path)
    layer = source.GetLayer(0)
    rows = [dict(f.items(), geometry=f.GetGeometryRef().ExportToWkt()) for f in layer]
    return rows


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    result = json.loads((out / "result.json").read_text())
    env = dict(os.environ)
    env.update(QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(out / "headless" / "profile"))
    env.pop("PYTHONPATH", None)  # the installed plugin runs its own engine
    (out / "headless").mkdir(exist_ok=True)
    subprocess.run(["qgis_process", "plugins", "enable", "omnisat_qgis"], env=env, capture_output=True, timeout=120)
    checks = []
    commands = result.get("commands", {})
    if set(commands) != {"fit", "map", "parcels"}:
        print("FAIL  the dock showed the commands of its three runs:", sorted(commands))
        return 1
    ran = run_commands(out, commands, env)
    checks.append(("every qgis_process command ran", all(r["rc"] == 0 for r in ran), [r["rc"] for r in ran]))
    old, new = str(out / "omnisat"), str(out / "headless" / "omnisat")
    for key in ("classes", "confidence", "probabilities"):
        dock = result["outputs"][key]
        ok, detail = same_raster(dock, dock.replace(old, new)) if all(r["rc"] == 0 for r in ran) else (False, "")
        checks.append((f"{key}: the same pixels by qgis_process as in the dock", ok, detail))
    if all(r["rc"] == 0 for r in ran):
        dock = result["outputs"]["parcels"]
        ours, theirs = parcel_rows(dock), parcel_rows(dock.replace(old, new))
        differ = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
        checks.append(
            (
                "parcels: the same rows (every attribute, geometry) by qgis_process as in the dock",
                len(ours) == len(theirs) and not differ,
                f"{len(ours)} vs {len(theirs)} rows; differing rows {differ[:5]}",
            )
        )
    for name, ok, detail in checks:
        print(("ok    " if ok else "FAIL  ") + name + (f" ({detail})" if detail else ""))
    (out / "headless.json").write_text(
        json.dumps({"ran": ran, "checks": [{"check": c, "ok": o, "detail": str(d)} for c, o, d in checks]}, indent=2)
    )
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
