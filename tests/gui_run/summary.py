"""The verdict of a real-QGIS run (run.sh, crops_run.sh): its checks printed, exit 1 on any problem.

    python -m tests.gui_run.summary OUT QGIS_STATUS [PROBLEM ...]

Problems: the scenario did not finish, a check failed, QGIS did not exit 0, QGIS's output holds a
Python traceback, and each PROBLEM given (the caller's own, e.g. a headless half that differs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    out, status, problems = Path(argv[0]), int(argv[1]), list(argv[2:])
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
    print("timings (s):", json.dumps(result.get("timings", {})), "macro-F1:", result.get("macro_f1"))
    for run, gaps in result.get("progress_gaps", {}).items():
        print(f"longest silence of the dock's progress, {run}: {gaps['longest_gap_s']} s of {gaps['run_s']} s", gaps)
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
