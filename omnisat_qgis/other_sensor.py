"""A sensor the model does not list, described by its bands (UniverSat), and the output resolution, in plain Python.

UniverSat reads each band by its centre wavelength (optical) or its code (SAR polarisations,
elevation), so a sensor nobody trained on goes to the engine as a job's ``"sensor"`` entry
(engine/io/job.py): ``{"wavelengths": [µm or code, ...], "resolution": m, "series": bool}``.
The analyst gives wavelengths in nanometres (what band tables print); the engine reads
micrometres. The output resolution (the job's ``"resolution"``) is checked here the way the
engine will check it, so the dock and Processing refuse a bad value before anything runs.
"""

from __future__ import annotations

from typing import Any

from omnisat_qgis.band_matching import band_keys

# Codes the engine reads besides wavelengths (engine/models/universat_sensors.py CHANNEL_CODES and aliases).
CODES = {
    "VV": "VV",
    "VH": "VH",
    "HH": "HH",
    "HV": "HV",
    "VV/VH": "VV/VH",
    "HH/HV": "HH/HV",
    "DSM": "DSM",
    "NDEM": "nDEM",
    "NDSM": "nDEM",
}
# The engine's accepted range, in nanometres (0.3-15 µm).
NM_RANGE = (300.0, 15000.0)
# Centre wavelengths (nm, Sentinel-2's) of the common band names band_matching recognises: a guess the
# analyst sees and can change.
COMMON_NM = {
    "coastal": 443,
    "blue": 490,
    "green": 560,
    "red": 665,
    "rededge1": 705,
    "rededge2": 740,
    "rededge3": 783,
    "nir": 842,
    "nir08": 865,
    "watervapour": 945,
    "cirrus": 1375,
    "swir1": 1610,
    "swir2": 2190,
}
# Models whose bands are read by wavelength and whose output grid is chosen per run.
WAVELENGTH_ARCHITECTURES = ("universat",)


class SensorError(ValueError):
    """The message names the band or setting and the fix."""


def guess_band(description: str) -> str:
    """What a layer band's description says about its wavelength or code ("665", "VV"), or ""."""
    keys = band_keys(description)
    if keys.polarisation:
        return keys.polarisation
    if keys.common in COMMON_NM:
        return f"{COMMON_NM[keys.common]:g}"
    upper = description.strip().upper()
    return CODES.get(upper, "")


def parse_band(text: str, where: str) -> float | str | None:
    """A band as the engine reads it: a wavelength in µm, a code, or None (the band is left out)."""
    text = text.strip()
    if not text:
        return None
    if text.upper() in CODES:
        return CODES[text.upper()]
    value = text.lower().replace(" ", "")
    factor = 1.0
    if value.endswith("nm"):
        value = value[:-2]
    elif value.endswith(("um", "µm")):
        value, factor = value[:-2], 1000.0
    try:
        nm = float(value) * factor
    except ValueError:
        raise SensorError(
            f"{where}: '{text}' is neither a wavelength in nm (e.g. 665) nor one of {', '.join(sorted(set(CODES.values())))}."
        ) from None
    if not NM_RANGE[0] <= nm <= NM_RANGE[1]:
        raise SensorError(
            f"{where}: {nm:g} nm is outside {NM_RANGE[0]:g}-{NM_RANGE[1]:g} nm: give the band's centre wavelength "
            "in nanometres (red: 665)."
        )
    return round(nm / 1000.0, 6)


def sensor_entry(
    texts: list[str], pixel_size_m: float | None, series: bool, where: str
) -> tuple[dict[str, Any], list[int] | None]:
    """(the job's "sensor", its "bands" or None when every layer band is used) for bands described by
    ``texts``, one per layer band in order, an empty one leaving that band out."""
    parsed = [parse_band(text, f"{where}, band {i}") for i, text in enumerate(texts, start=1)]
    used = [i for i, value in enumerate(parsed, start=1) if value is not None]
    if not used:
        raise SensorError(f"{where}: give the wavelength (nm) or polarisation of at least one band.")
    if not pixel_size_m or pixel_size_m <= 0:
        raise SensorError(f"{where}: give the pixel size in metres (a positive number).")
    sensor = {
        "wavelengths": [parsed[i - 1] for i in used],
        "resolution": float(pixel_size_m),
        "series": bool(series),
    }
    return sensor, (None if used == list(range(1, len(texts) + 1)) else used)


def resolution_problem(resolution_m: float, finest_pixel_m: float | None, patch_m: float, architecture: str) -> str:
    """Why ``resolution_m`` cannot be a run's output resolution; "" when it can."""
    if architecture not in WAVELENGTH_ARCHITECTURES:
        return (
            f"The output resolution is chosen per run only by UniverSat models; this model ({architecture}) maps "
            "at its own patch or sub-patch grid: leave the output resolution empty, or choose a universat model."
        )
    if resolution_m <= 0:
        return "The output resolution must be a positive number of metres."
    if finest_pixel_m and resolution_m < finest_pixel_m - 1e-6:
        return (
            f"The output resolution ({resolution_m:g} m) is finer than the finest input's pixels "
            f"({finest_pixel_m:g} m): choose {finest_pixel_m:g} m or coarser."
        )
    cells = patch_m / resolution_m
    if abs(cells - round(cells)) > 1e-6:
        return (
            f"The output resolution ({resolution_m:g} m) must divide the model's {patch_m:g} m patch into whole "
            f"cells: choose e.g. {', '.join(f'{patch_m / n:g}' for n in (1, 2, 4) if patch_m / n >= (finest_pixel_m or 0))} m."
        )
    return ""
