"""Normalization of model inputs: the checkpoint's per-band statistics, or the user's.

User statistics (the ``normalization-stats`` operation writes them; a job's
"normalization" reads them) are JSON::

    {"s2": {"bands": ["B2", ...], "mean": [...], "std": [...]}, "s1": {...}}

Invalid values (NaN) become 0 after normalization, i.e. the band's mean.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import EngineError


def load_statistics(source: str | dict | None) -> dict[str, dict[str, Any]]:
    """Statistics given inline (a dict) or as a JSON file; {} when none."""
    if source is None:
        return {}
    if isinstance(source, dict):
        return source
    path = Path(source).expanduser()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EngineError(
            f"The normalization file '{path}' does not exist: run normalization-stats to create it."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EngineError(f"The normalization file '{path}' is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise EngineError(f"The normalization file '{path}' must hold one object per modality.")
    return data


def modality_statistics(spec, user: dict[str, dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per band: the user's for this modality when given, else the spec's."""
    entry = user.get(spec.name)
    if entry is None:
        return np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    try:
        mean = np.asarray(entry["mean"], np.float64)
        std = np.asarray(entry["std"], np.float64)
    except (KeyError, TypeError, ValueError):
        raise EngineError(f'The normalization of {spec.name!r} needs "mean" and "std" lists of numbers.') from None
    if mean.shape != (spec.n_bands,) or std.shape != (spec.n_bands,):
        raise EngineError(
            f"The normalization of {spec.name!r} has {mean.size} means and {std.size} stds; the model's "
            f"modality has {spec.n_bands} bands ({', '.join(spec.bands)}): give one of each per band."
        )
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise EngineError(f"The normalization of {spec.name!r} must have finite means and positive stds.")
    return mean.astype(np.float32), std.astype(np.float32)


def normalize(data, mean, std):
    """(..., C, h, w) -> (data - mean) / std per band, NaN replaced by 0 (the mean): float32 NumPy
    arrays at inference, torch tensors (on their device, in their dtype) in training."""
    if isinstance(data, np.ndarray):
        shape = (-1, 1, 1)
        out = (data - np.asarray(mean).reshape(shape)) / np.asarray(std).reshape(shape)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)
    import torch  # lazy: keeps torch out of this module

    def column(values):
        return torch.as_tensor(np.asarray(values), dtype=data.dtype, device=data.device).view(-1, 1, 1)

    return torch.nan_to_num((data - column(mean)) / column(std), nan=0.0, posinf=0.0, neginf=0.0)


class RunningStats:
    """Per-band count, mean and variance over streamed blocks (Chan's parallel update)."""

    def __init__(self, bands: int):
        self.n = np.zeros(bands)
        self.mean = np.zeros(bands)
        self.m2 = np.zeros(bands)

    def update(self, data: np.ndarray) -> None:
        """data (C, ...) float with NaN for invalid values."""
        for c in range(data.shape[0]):
            values = data[c][np.isfinite(data[c])].astype(np.float64)
            if values.size == 0:
                continue
            n, mean, m2 = values.size, values.mean(), ((values - values.mean()) ** 2).sum()
            total = self.n[c] + n
            delta = mean - self.mean[c]
            self.mean[c] += delta * n / total
            self.m2[c] += m2 + delta**2 * self.n[c] * n / total
            self.n[c] = total

    def result(self) -> tuple[list[float], list[float], list[int]]:
        std = [math.sqrt(m2 / n) if n else float("nan") for m2, n in zip(self.m2, self.n)]
        return [float(m) for m in self.mean], std, [int(n) for n in self.n]
