"""``bench auto`` on another commit's code and on this checkout's, interleaved: medians and whether
the choice is the same (``python -m engine.bench.auto_compare --base main``).

The base commit is checked out in a temporary git worktree beside this checkout (the samples are
found at ../shared/data from either; removed at the end) with this checkout's engine/bench/auto.py copied in, so both
sides are timed and read by the same bench. Each round runs every (scene, threads) pair on the base
and then here. Printed per pair: the median seconds of fit_honestly (scene loading excluded), the
fits, the load average during the runs, the speed-up; then whether the chosen candidate(s), each
candidate's outer macro-F1 per fold, each outer fold's pick and the nested estimate are equal in
every run of the pair, and the learning curve's points at the sizes both sides draw. (Main's code on
2 threads differs from itself on 1 thread in the last digits: docs/speed.md.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHOICE = ("chosen", "picked_per_fold")
SCORES = ("outer_macro_f1", "nested_macro_f1")


def bench(checkout: Path, scene: str, threads: int, quick: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "engine", "bench", "auto", "--json", "--quiet"]
    command += ["--datasets", scene, "--threads", str(threads)] + (["--quick"] if quick else [])
    done = subprocess.run(command, cwd=checkout, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench auto failed in {checkout}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def compare(runs: list[dict]) -> str:
    def same(keys):
        return all(r[k] == runs[0][k] for r in runs for k in keys)

    curves = [dict(map(tuple, r["curve"])) for r in runs]
    equal = all(c[n] == d[n] for c in curves for d in curves for n in c if n in d)
    return (
        f"choice and each fold's pick identical: {same(CHOICE)}; outer scores and nested estimate identical: "
        f"{same(SCORES)}; curve points at shared sizes equal: {equal}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="the commit to compare against (default: main)")
    parser.add_argument("--datasets", default="eolearn,crops", help="scenes of bench auto, comma-separated")
    parser.add_argument("--threads", default="1,2", help="torch thread counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="bench auto --quick: linear and kNN only")
    args = parser.parse_args()
    pairs = [(s, int(t)) for s in args.datasets.split(",") for t in args.threads.split(",")]
    runs: dict[tuple[str, str, int], list[dict]] = {}
    base = ROOT.parent / f".auto-base-{os.getpid()}"  # beside this checkout: ../shared/data is the same
    subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], cwd=ROOT, check=True)
    try:
        shutil.copy(ROOT / "engine/bench/auto.py", base / "engine/bench/auto.py")
        for number in range(args.rounds):
            for scene, threads in pairs:
                for side, checkout in (("base", base), ("this", ROOT)):
                    result = bench(checkout, scene, threads, args.quick)
                    runs.setdefault((side, scene, threads), []).append(result)
                    print(
                        f"round {number + 1}, {scene}, {threads} thread(s), {side}: {result['seconds']} s, "
                        f"{result['fits']} fits, load {result['load_average'][0]:.1f}",
                        flush=True,
                    )
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=True)
    print(f"\nbench auto{' --quick' if args.quick else ''}: {args.base} against this checkout, {args.rounds} rounds")
    for scene, threads in pairs:
        base_runs, new_runs = runs["base", scene, threads], runs["this", scene, threads]
        a, b = (statistics.median(r["seconds"] for r in rs) for rs in (base_runs, new_runs))
        loads = [r["load_average"][0] for r in base_runs + new_runs]
        print(
            f"{scene}, {threads} thread(s): {a:.1f} s ({base_runs[0]['fits']} fits) -> {b:.1f} s "
            f"({new_runs[0]['fits']} fits), {a / b:.2f}x, load {min(loads):.1f}-{max(loads):.1f}; "
            + compare(base_runs + new_runs)
        )
    print(f"load average now: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
