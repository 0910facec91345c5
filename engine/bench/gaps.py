"""The longest silences of a run's log: ``python -m engine.bench.gaps``.

Two ways in:

- ``COMMAND 2>&1 | python -m engine.bench.gaps --out run.log``: every line read from standard input
  is passed on to standard output and written to ``--out`` prefixed with the seconds since the
  start (``[  12.34] line``); at the end of the input the longest gaps are printed.
- ``python -m engine.bench.gaps --log run.log``: the same figures from a log written that way.

A gap is the time between a line and the next (the first: from the start; the last: until the end
of the input), charged to the line that preceded it: "after this line, nothing for N s". A progress bar on a terminal
rewrites one line with carriage returns; each of its rewrites counts as a line here.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

STAMP = re.compile(r"^\[\s*(\d+(?:\.\d+)?)\] ?(.*)$")


@dataclass(frozen=True)
class Gap:
    seconds: float
    at: float  # seconds since the start when the silence began
    after: str  # the line before the silence


def stamped(stream: IO[str], out: IO[str] | None = None, echo: IO[str] | None = None) -> Iterator[tuple[float, str]]:
    """(seconds since the start, line) for each line of ``stream`` as it arrives, written to ``out``
    with its stamp and to ``echo`` as is; carriage returns split lines. A last pair marks the end."""
    start = time.monotonic()
    for raw in stream:
        for line in raw.rstrip("\n").split("\r"):
            if not line.strip():
                continue
            t = time.monotonic() - start
            if out is not None:
                out.write(f"[{t:9.2f}] {line}\n")
                out.flush()
            if echo is not None:
                echo.write(line + "\n")
                echo.flush()
            yield t, line
    yield time.monotonic() - start, "(end of the input)"


def read_stamped(lines: Iterable[str]) -> Iterator[tuple[float, str]]:
    """(seconds, line) from a log written by ``stamped``; lines without a stamp are skipped."""
    for line in lines:
        match = STAMP.match(line.rstrip("\n"))
        if match:
            yield float(match.group(1)), match.group(2)


def gaps(events: Iterable[tuple[float, str]]) -> list[Gap]:
    """Every silence between consecutive lines, longest first."""
    out, previous = [], (0.0, "(the start)")
    for t, line in events:
        out.append(Gap(t - previous[0], previous[0], previous[1]))
        previous = (t, line)
    return sorted(out, key=lambda g: -g.seconds)


def summary(found: list[Gap], top: int = 5) -> str:
    if not found:
        return "No lines: no gap to measure."
    total = max(g.at + g.seconds for g in found)
    lines = [f"Longest silent gap: {found[0].seconds:.1f} s (of a {total:.0f} s run, {len(found)} gaps)"]
    for g in found[:top]:
        lines.append(f"  {g.seconds:7.1f} s from {g.at:8.1f} s, after: {g.after[:140]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.bench.gaps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", type=Path, help="a log written with --out earlier (otherwise: standard input)")
    parser.add_argument("--out", type=Path, help="write standard input's lines here, stamped")
    parser.add_argument("--top", type=int, default=5, help="how many of the longest gaps to list")
    parser.add_argument("--limit", type=float, help="exit with status 1 when the longest gap exceeds this (s)")
    args = parser.parse_args(argv)
    if args.log:
        with args.log.open(encoding="utf-8") as f:
            found = gaps(read_stamped(f))
    elif args.out:
        with args.out.open("w", encoding="utf-8") as out:
            found = gaps(stamped(sys.stdin, out, sys.stdout))
    else:
        found = gaps(stamped(sys.stdin, None, sys.stdout))
    print(summary(found, args.top))
    return 1 if args.limit is not None and found and found[0].seconds > args.limit else 0


if __name__ == "__main__":
    sys.exit(main())
