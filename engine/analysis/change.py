"""Change between two periods from per-patch embeddings.

The change magnitude of a patch is the distance between its embeddings in the two
periods (cosine distance by default: the norm of an embedding carries little
meaning, its direction does). Otsu's threshold on the magnitude histogram splits it
into change / no change without a user setting. With labelled change / no-change
samples, a probe can instead be fitted on ``change_features``.
"""

from __future__ import annotations

import numpy as np

from engine.errors import EngineError

METRICS = ("cosine", "euclidean")


def change_magnitude(before: np.ndarray, after: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Distance between embeddings along the last axis: (..., D) x (..., D) -> (...).

    Cosine distance lies in [0, 2]; NaN where either embedding is NaN (nodata).
    """
    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    if before.shape != after.shape:
        raise EngineError(
            f"The two periods give embeddings of different shapes {before.shape} and {after.shape}: "
            "use the same grid, model and patch size for both."
        )
    if metric == "euclidean":
        return np.sqrt(np.square(after - before).sum(-1))
    if metric != "cosine":
        raise EngineError(f"Unknown change metric {metric!r}: use one of {', '.join(METRICS)}.")
    norms = np.linalg.norm(before, axis=-1) * np.linalg.norm(after, axis=-1)
    dot = (before * after).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where(norms > 0, dot / norms, np.where(np.isnan(norms), np.nan, 1.0))
    return np.clip(1.0 - cosine, 0.0, 2.0)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold maximising the between-class variance of the finite ``values``."""
    data = np.asarray(values, np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        raise EngineError("No valid change magnitude to threshold: the two periods share no valid patch.")
    low, high = float(data.min()), float(data.max())
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return high  # flat magnitude: nothing stands out as change
    counts, edges = np.histogram(data, bins=bins, range=(low, high))
    centres = 0.5 * (edges[:-1] + edges[1:])
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * np.square(mean_low - mean_high)
    between = between[:-1]  # the cut after bin i puts bin i on the "no change" side
    # Empty bins between the modes give a plateau of equal cuts: take its middle.
    first = int(np.argmax(between))
    last = first
    while last + 1 < between.size and between[last + 1] >= between[first] * (1 - 1e-9):
        last += 1
    return float(0.5 * (edges[first + 1] + edges[last + 1]))


def change_layer(magnitude: np.ndarray, threshold: float | None = None) -> tuple[np.ndarray, float]:
    """Binary change (1 change, 0 none, 255 nodata) and the threshold used (Otsu when None)."""
    magnitude = np.asarray(magnitude, np.float64)
    if threshold is None:
        threshold = otsu_threshold(magnitude)
    valid = np.isfinite(magnitude)
    binary = np.full(magnitude.shape, 255, np.uint8)
    binary[valid] = (magnitude[valid] > threshold).astype(np.uint8)
    return binary, float(threshold)


def change_features(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Features for a change probe: |after - before| (what moved) and the mean (on what cover)."""
    before, after = np.asarray(before, np.float32), np.asarray(after, np.float32)
    return np.concatenate([np.abs(after - before), 0.5 * (after + before)], axis=-1)
