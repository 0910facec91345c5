"""Value scales an input may be converted from on the fly (a job's per-modality "scale").

A model is normalised with the statistics of the values it was trained on: Sentinel-2
as digital numbers (reflectance x 10000) or as reflectance, Sentinel-1 as linear power
or in dB. An input on the other scale is converted while it is read; the file itself
is never rewritten. NaN (invalid pixels) stays NaN.
"""

from __future__ import annotations

import numpy as np

REFLECTANCE_DN = 10000.0  # Sentinel-2 (and Landsat Collection "scaled") digital numbers per unit reflectance
CONVERSIONS = {
    "dn_to_reflectance": "digital numbers (reflectance x 10000) read as reflectance",
    "reflectance_to_dn": "reflectance (0-1) read as digital numbers (x 10000)",
    "linear_to_db": "linear power read as dB (10 log10)",
    "db_to_linear": "dB read as linear power (10^(dB/10))",
}


def convert_scale(data: np.ndarray, scale: str | None) -> np.ndarray:
    """``data`` (float32) on the scale the model expects; unchanged when ``scale`` is None."""
    if scale is None:
        return data
    if scale == "dn_to_reflectance":
        return data / np.float32(REFLECTANCE_DN)
    if scale == "reflectance_to_dn":
        return data * np.float32(REFLECTANCE_DN)
    if scale == "linear_to_db":
        with np.errstate(divide="ignore", invalid="ignore"):
            # Zero or negative power has no dB value: invalid, like nodata.
            return np.where(data > 0, np.float32(10) * np.log10(data), np.float32(np.nan)).astype(np.float32)
    if scale == "db_to_linear":
        return np.power(np.float32(10), data / np.float32(10)).astype(np.float32)
    raise ValueError(f"unknown scale {scale!r}; known: {', '.join(CONVERSIONS)}")
