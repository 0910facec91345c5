"""Where figures go during training: a CSV file always, TensorBoard when installed, a progress line.

The CSV is in long form (step, split, metric, value) so that objectives with
different metrics share one format; a resumed run first drops the rows written
after its checkpoint, so the file never holds two histories.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path
from typing import IO

COLUMNS = ("step", "split", "metric", "value")


class MetricsLog:
    def __init__(self, out_dir: Path, *, enabled: bool, resume_step: int | None = None):
        self.enabled = enabled
        self.path = out_dir / "metrics.csv"
        self.writer = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        new = not self.path.exists()
        self.file = open(self.path, "a", newline="")
        self.csv = csv.writer(self.file)
        if new:
            self.csv.writerow(COLUMNS)
        try:
            from torch.utils.tensorboard import SummaryWriter  # lazy: keeps torch out of this module

            self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step)
        except ImportError:  # tensorboard is optional
            self.writer = None

    def _truncate_after(self, step: int) -> None:
        with open(self.path, newline="") as handle:
            rows = [r for r in csv.reader(handle)]
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
        temp = self.path.with_name(f".{self.path.name}.tmp")
        with open(temp, "w", newline="") as handle:
            csv.writer(handle).writerows(kept)
        os.replace(temp, self.path)

    def write(self, step: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            self.csv.writerow((step, split, name, f"{float(value):.6g}"))
            if self.writer is not None:
                self.writer.add_scalar(f"{split}/{name}", float(value), step)
        self.file.flush()

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.writer is not None:
                self.writer.close()


class Progress:
    """A one-line progress display with throughput; plain lines when not on a terminal."""

    def __init__(self, total: int, start: int = 0, *, enabled: bool = True, stream: IO[str] = sys.stderr):
        self.total, self.enabled, self.stream = total, enabled, stream
        self.tty = stream.isatty()
        self.window_start, self.window_samples = time.perf_counter(), 0
        self.step = start

    def update(self, step: int, samples: int, values: dict[str, float], force: bool = False) -> float:
        """Count ``samples`` done; print when asked; returns the window's samples/s."""
        self.step = step
        self.window_samples += samples
        elapsed = max(time.perf_counter() - self.window_start, 1e-9)
        rate = self.window_samples / elapsed
        if force and self.enabled:
            figures = " ".join(f"{k} {v:.4g}" for k, v in values.items())
            line = f"step {step}/{self.total} {figures} {rate:.1f} samples/s"
            self.stream.write(("\r" + line.ljust(110)) if self.tty else line + "\n")
            self.stream.flush()
        if force:
            self.window_start, self.window_samples = time.perf_counter(), 0
        return rate

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
