"""What every dataset reader shares: samples, dates, date sampling, S1 ratio, batching.

A reader returns one ``Sample`` per tile: per-modality arrays (image (C, H, W),
series (T, C, H, W)), day-of-year dates for the series, a label and a name.
``collate`` pads series to the longest in the batch and marks padded dates in
``date_mask`` (True = a real date), the engine's ModalityBatch convention.

Every random choice a reader makes (which dates to keep, where to crop) comes
from a generator seeded by the sampler for that item, so a run resumed from a
checkpoint reads exactly the same data as the run that wrote it, whatever the
number of loader workers.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from engine.errors import EngineError
from engine.runtime.precision import to_device

_DATE = re.compile(r"(19|20)\d{6}")


def parse_yyyymmdd(text: str | int) -> dt.date:
    digits = str(text)
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        raise EngineError(f"Cannot read a date from {text!r}: expected YYYYMMDD.") from None


def date_from_product_name(name: str | bytes, source: str) -> dt.date:
    """The acquisition date in a Sentinel product name (first YYYYMMDD in it)."""
    text = name.decode() if isinstance(name, bytes) else str(name)
    match = _DATE.search(text)
    if not match:
        raise EngineError(f"No acquisition date (YYYYMMDD) in product name {text!r} of {source}.")
    return parse_yyyymmdd(match.group(0))


def sample_dates(count: int, max_dates: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``max_dates`` dates out of ``count``, kept in time order."""
    if count <= max_dates:
        return np.arange(count)
    return np.sort(rng.choice(count, size=max_dates, replace=False))


def s1_ratio(series: np.ndarray, units: str) -> np.ndarray:
    """The VV/VH ratio band from VV (channel 0) and VH (channel 1).

    In dB the ratio is a difference; in linear power a quotient (VH is floored
    to avoid dividing by zero over water or no data).
    """
    vv, vh = series[:, 0:1], series[:, 1:2]
    if units == "db":
        return vv - vh
    return vv / np.maximum(vh, 1e-6)


def guess_s1_units(series: np.ndarray) -> str:
    # Backscatter in dB is mostly negative; linear power is never negative.
    finite = series[np.isfinite(series)]
    return "db" if finite.size and np.median(finite) < 0 else "linear"


def conform_s1(series: np.ndarray, bands: int, units: str = "auto") -> np.ndarray:
    """Add the VV/VH ratio band when the model expects 3 S1 bands and the data has 2 (or drop it)."""
    if series.shape[1] == bands:
        return series
    if series.shape[1] == 3 and bands == 2:
        return series[:, :2]
    if series.shape[1] == 2 and bands == 3:
        units = guess_s1_units(series) if units == "auto" else units
        return np.concatenate([series, s1_ratio(series, units)], axis=1)
    raise EngineError(f"Sentinel-1 data has {series.shape[1]} bands; the model expects {bands} (VV, VH[, ratio]).")


def s1_band_count(modality: str, bands: dict[str, int]) -> int:
    """Bands a reader delivers for an S1 modality: the model's count, else 3 for *_ratio."""
    return bands.get(modality, 3 if modality.endswith("_ratio") else 2)


def fill_nan(array: np.ndarray) -> np.ndarray:
    """Replace NaN with the per-date, per-band mean (0 where everything is NaN)."""
    if not np.isnan(array).any():
        return array
    axes = (-2, -1)
    with np.errstate(all="ignore"):
        means = np.nanmean(array, axis=axes, keepdims=True)
    means = np.where(np.isnan(means), 0.0, means)
    return np.where(np.isnan(array), np.broadcast_to(means, array.shape), array).astype(np.float32)


@dataclass
class Sample:
    inputs: dict[str, np.ndarray]
    dates: dict[str, np.ndarray] = field(default_factory=dict)
    label: Any = None
    name: str = ""


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]
    dates: dict[str, torch.Tensor]
    date_mask: dict[str, torch.Tensor]
    label: torch.Tensor | None
    names: list[str]
    dataset: str = ""
    patch_size_m: float | None = None

    @property
    def size(self) -> int:
        return len(self.names)

    def to(self, device: torch.device) -> Batch:
        move = lambda d: {k: to_device(v, device) for k, v in d.items()}  # noqa: E731
        return Batch(
            move(self.inputs),
            move(self.dates),
            move(self.date_mask),
            None if self.label is None else to_device(self.label, device),
            self.names,
            self.dataset,
            self.patch_size_m,
        )

    def select(self, index: slice) -> Batch:
        pick = lambda d: {k: v[index] for k, v in d.items()}  # noqa: E731
        return Batch(
            pick(self.inputs),
            pick(self.dates),
            pick(self.date_mask),
            None if self.label is None else self.label[index],
            self.names[index],
            self.dataset,
            self.patch_size_m,
        )


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack samples; pad series to the longest in the batch (date_mask False on padding)."""
    first = samples[0]
    inputs, dates, masks = {}, {}, {}
    for name, value in first.inputs.items():
        if name in first.dates:
            longest = max(s.inputs[name].shape[0] for s in samples)
            stacked = np.zeros((len(samples), longest, *value.shape[1:]), dtype=np.float32)
            day = np.zeros((len(samples), longest), dtype=np.float32)
            valid = np.zeros((len(samples), longest), dtype=bool)
            for i, s in enumerate(samples):
                t = s.inputs[name].shape[0]
                stacked[i, :t], day[i, :t], valid[i, :t] = s.inputs[name], s.dates[name], True
            inputs[name], dates[name], masks[name] = map(torch.from_numpy, (stacked, day, valid))
        else:
            inputs[name] = torch.from_numpy(np.stack([s.inputs[name] for s in samples]).astype(np.float32))
    labels = None
    if first.label is not None:
        labels = torch.from_numpy(np.stack([np.asarray(s.label) for s in samples]))
    return Batch(inputs, dates, masks, labels, [s.name for s in samples])


class TileDataset(Dataset):
    """Base of the readers: index -> Sample, with seeded randomness per item.

    Subclasses set ``available`` (modality name -> kind "image"/"series"),
    ``class_names``, ``tile_size_m`` and implement ``load(index, rng, train)``.
    """

    available: dict[str, str] = {}
    class_names: list[str] = []
    tile_size_m: float = 0.0
    label_kind: str = "multilabel"

    def __init__(
        self,
        root: str | Path,
        split: str,
        modalities: Sequence[str],
        max_dates: int = 50,
        train: bool = True,
        bands: dict[str, int] | None = None,
        options: dict | None = None,
    ):
        self.root = Path(root).expanduser()
        self.split, self.train, self.max_dates = split, train, max_dates
        self.bands = dict(bands or {})
        self.options = dict(options or {})
        if not self.root.exists():
            raise EngineError(f"The dataset folder '{self.root}' does not exist: check data.datasets[].root.")
        chosen = list(modalities) or list(self.available)
        unknown = [m for m in chosen if m not in self.available]
        if unknown:
            raise EngineError(
                f"{type(self).__name__} has no modality {', '.join(map(repr, unknown))}; "
                f"it provides: {', '.join(self.available)}."
            )
        self.modalities = chosen

    def _unknown_options(self, allowed: Sequence[str]) -> None:
        extra = sorted(set(self.options) - set(allowed))
        if extra:
            raise EngineError(
                f"Unknown option(s) {', '.join(extra)} for the {type(self).__name__} reader; "
                f"allowed: {', '.join(allowed) or 'none'}."
            )

    def require(self, path: Path, what: str) -> Path:
        if not path.exists():
            raise EngineError(
                f"'{self.root}' is not in the {type(self).__name__} layout: {what} '{path}' is missing. "
                f"Point data.datasets[].root at the folder that holds it."
            )
        return path

    def load(self, index: int, rng: np.random.Generator) -> Sample:
        raise NotImplementedError

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        index, seed = key if isinstance(key, tuple) else (key, key)
        sample = self.load(int(index), np.random.default_rng(seed))
        for name, array in sample.inputs.items():
            sample.inputs[name] = fill_nan(np.ascontiguousarray(array, dtype=np.float32))
        return sample

    def subsample_dates(self, series: np.ndarray, doy: np.ndarray, rng: np.random.Generator):
        keep = sample_dates(len(doy), self.max_dates, rng)
        return series[keep], doy[keep].astype(np.float32)

    def crop_offset(self, size: int, target: int, rng: np.random.Generator) -> int:
        """Random crop position in training, centred crop otherwise."""
        if size <= target:
            return 0
        return int(rng.integers(0, size - target + 1)) if self.train else (size - target) // 2


def multi_hot(indices: Sequence[int], count: int) -> np.ndarray:
    out = np.zeros(count, dtype=np.float32)
    out[list(indices)] = 1.0
    return out
