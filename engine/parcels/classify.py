"""A class per parcel, two ways:

- ``pixels``: the per-pixel class probabilities of a map (classify's probabilities raster)
  averaged over the parcel's valid pixels; the class is the highest mean, the runner-up the next;
- ``features``: per-parcel features (per band and index, per date or per month: the mean and the
  spread of the parcel's valid pixels) and a classifier fitted on labelled parcels.

A parcel with no valid pixel (all cloudy, outside the inputs, smaller than a pixel) gets no class,
and its row says why.
"""

from __future__ import annotations

import numpy as np

from engine.parcels.layer import OK, ParcelPixels, ParcelResult

NO_VALID = "no valid pixel"


def _no_class(n: int) -> tuple[np.ndarray, ...]:
    return np.full(n, -1), np.full(n, np.nan), np.full(n, -1), np.full(n, np.nan)


def rank(probabilities: np.ndarray) -> tuple[np.ndarray, ...]:
    """(P, K) -> class, its probability, runner-up, its probability (NaN rows: no class)."""
    n = len(probabilities)
    cls, prob, second, second_prob = _no_class(n)
    ok = np.isfinite(probabilities).all(axis=1)
    if ok.any():
        order = np.argsort(-probabilities[ok], axis=1)
        cls[ok] = order[:, 0]
        prob[ok] = np.take_along_axis(probabilities[ok], order[:, :1], 1)[:, 0]
        if probabilities.shape[1] > 1:
            second[ok] = order[:, 1]
            second_prob[ok] = np.take_along_axis(probabilities[ok], order[:, 1:2], 1)[:, 0]
    return cls, prob, second, second_prob


def parcel_means(values: np.ndarray, valid: np.ndarray, index: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per parcel, the mean of ``values`` (C, H, W) over its ``valid`` (H, W) pixels and their count;
    NaN where a parcel has none."""
    inside = (index >= 0) & valid
    ids = index[inside]
    counts = np.bincount(ids, minlength=n).astype(np.float64)
    sums = np.stack([np.bincount(ids, weights=v[inside].astype(np.float64), minlength=n) for v in values], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None], counts


def aggregate_pixels(probabilities: np.ndarray, pixels: ParcelPixels, status: list[str]) -> ParcelResult:
    """Way 1: the mean probability over each parcel's pixels that have one (``probabilities`` (K, H, W),
    NaN where the map has no value)."""
    valid = np.isfinite(probabilities).all(axis=0)
    means, counts = parcel_means(np.nan_to_num(probabilities), valid, pixels.index, len(status))
    return parcel_result(means, counts, pixels, status)


def parcel_result(
    probabilities: np.ndarray, counts: np.ndarray, pixels: ParcelPixels, status: list[str]
) -> ParcelResult:
    """The rows of the parcel map from per-parcel class probabilities (P, K) and valid pixel counts."""
    cls, prob, second, second_prob = rank(probabilities)
    own = np.maximum(pixels.pixels, 1)
    out_status = []
    for i, s in enumerate(status):
        if s != OK:
            out_status.append(s)
        elif pixels.pixels[i] == 0:
            out_status.append("no pixel centre inside (smaller than a pixel, or outside the map)")
        elif counts[i] == 0:
            out_status.append(
                NO_VALID
                + (
                    " (every pixel shared with an overlapping parcel)"
                    if pixels.shared[i] == pixels.pixels[i]
                    else " (clouds or no data)"
                )
            )
        else:
            out_status.append(
                OK
                if not pixels.shared[i]
                else f"ok; {pixels.shared[i]} pixel(s) shared with an overlapping parcel left out"
            )
    no = np.array([s != OK and not s.startswith("ok;") for s in out_status])
    cls[no], second[no] = -1, -1
    prob[no], second_prob[no] = np.nan, np.nan
    return ParcelResult(cls, prob, second, second_prob, counts / own, pixels.pixels, out_status)


class ParcelStatistics:
    """Per parcel, the mean and standard deviation of pixel feature columns, accumulated block by block
    (NaN values left out column by column)."""

    def __init__(self, n_parcels: int, n_features: int):
        self.n = n_parcels
        self.count = np.zeros((n_parcels, n_features))
        self.sum = np.zeros((n_parcels, n_features))
        self.squares = np.zeros((n_parcels, n_features))
        self.pixels = np.zeros(n_parcels, np.int64)  # pixels with any valid observation

    def add(self, features: np.ndarray, index: np.ndarray, ok: np.ndarray) -> None:
        """``features`` (N, F) of N pixels, ``index`` (N,) their parcel (-1: none), ``ok`` (N,) valid."""
        keep = (index >= 0) & ok
        ids, x = index[keep], features[keep].astype(np.float64)
        finite = np.isfinite(x)
        x0 = np.where(finite, x, 0.0)
        self.pixels += np.bincount(ids, minlength=self.n)
        for f in range(x.shape[1]):
            self.count[:, f] += np.bincount(ids, weights=finite[:, f], minlength=self.n)
            self.sum[:, f] += np.bincount(ids, weights=x0[:, f], minlength=self.n)
            self.squares[:, f] += np.bincount(ids, weights=x0[:, f] ** 2, minlength=self.n)

    def result(self) -> np.ndarray:
        """(P, 2F): the means then the standard deviations; NaN for a parcel without values."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sum / self.count
            std = np.sqrt(np.maximum(self.squares / self.count - mean**2, 0.0))
        return np.concatenate([mean, std], 1).astype(np.float32)
