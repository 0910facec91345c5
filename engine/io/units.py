"""Are the inputs on the scale the model was normalised with? A sample of every modality is set
against the model's normalisation statistics before a run: Sentinel-1 in dB read by a model
trained on linear power runs to the end and gives a map of nonsense, so radar whose values sit
far outside the statistics while the dB conversion brings them in is refused with that conversion
named; optical values another scale fits (digital numbers for reflectance) and values far off that
no conversion fixes give a warning (other statistics may be meant: "normalization").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from engine.errors import EngineError
from engine.io.scales import CONVERSIONS, convert_scale

# In standard deviations (see `distance`): a sample within FITS is on the statistics' scale (one
# scene sits within ~2 of a year's statistics), beyond FAR it is on another (Sentinel-1 dB against
# linear-power statistics: ~200).
FITS, FAR = 3.0, 8.0
RADAR_BANDS = {"VV", "VH", "HH", "HV"}


@dataclass(frozen=True)
class UnitCheck:
    modality: str
    distance: float  # median over bands of |median - mean| / std, on the scale as read
    fitting: tuple[str, ...]  # conversions (engine.io.scales) that bring the sample onto the statistics


def distance(values: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> float:
    """``values`` (N, C) finite samples: the median over bands of |band median - mean| / std."""
    med = np.nanmedian(values, axis=0)
    return float(np.nanmedian(np.abs(med - np.asarray(mean)) / np.asarray(std)))


# The conversions that make sense per kind of band: radar power or dB, optical reflectance or DN.
RADAR_CONVERSIONS, OPTICAL_CONVERSIONS = ("db_to_linear", "linear_to_db"), ("dn_to_reflectance", "reflectance_to_dn")


def check_sample(modality: str, values: np.ndarray, mean, std, scale: str | None, radar: bool = False) -> UnitCheck:
    """``values`` (N, C) as read from the files (before any conversion); ``scale`` the job's;
    ``radar``: backscatter bands (only the dB conversions are tried)."""
    values = values[np.isfinite(values).all(axis=1)]
    if len(values) == 0:
        return UnitCheck(modality, 0.0, ())
    as_read = distance(convert_scale(values.astype(np.float32), scale), mean, std)
    fitting = []
    if as_read > FAR:
        for name in RADAR_CONVERSIONS if radar else OPTICAL_CONVERSIONS:
            with np.errstate(all="ignore"):
                converted = convert_scale(values.astype(np.float32), name)
            ok = np.isfinite(converted).all(axis=1)
            if ok.mean() > 0.9 and distance(converted[ok], mean, std) <= FITS:
                fitting.append(name)
    return UnitCheck(modality, as_read, tuple(fitting))


def enforce(check: UnitCheck, scale: str | None, statistics_source: str, log, radar: bool = False) -> None:
    """Refuse radar another scale fits (power and dB: the model reads nonsense); warn about optical
    values another scale fits (the conversion named) or any far off that nothing fixes."""
    if check.distance <= FAR:
        return
    where = (
        f"The values of modality {check.modality!r} sit {check.distance:.0f} standard deviations from the "
        f"{statistics_source} normalisation statistics{' after the conversion ' + repr(scale) if scale else ''}"
    )
    mine = 'or give statistics of your data ("normalization", from normalization-stats).'
    if check.fitting:
        fix = check.fitting[0]
        message = (
            f"{where}: they look like another scale. Add \"scale\": \"{fix}\" ({CONVERSIONS[fix]}) to the "
            f"modality in the job (the files are not rewritten), {mine}"
        )
        if radar:
            raise EngineError(message)
        log(message, "warning")
        return
    log(f"{where}, and no conversion brings them closer: check the files' units, {mine}", "warning")


def sample_modality(modality, grid, size: int = 64, dates: int = 6) -> np.ndarray:
    """(N, C) valid values of a few dates in a central window of ``grid`` (the modality's), as read,
    before any scale conversion."""
    from rasterio.windows import Window  # lazy: keeps rasterio out of this module (the model catalog imports it)

    from engine.io.align import ModalityReader  # lazy: keeps rasterio out of this module

    w, h = min(size, grid.width), min(size, grid.height)
    window = Window((grid.width - w) // 2, (grid.height - h) // 2, w, h)
    pick = np.unique(np.linspace(0, len(modality.layers) - 1, min(dates, len(modality.layers))).round().astype(int))
    few = replace(
        modality,
        layers=tuple(modality.layers[t] for t in pick),
        masks=tuple(modality.masks[t] for t in pick) if modality.masks else modality.masks,
    )
    with ModalityReader(few, grid) as reader:
        data, valid = reader.read(window)  # (T, C, h, w)
    return np.moveaxis(data, 1, -1)[valid]  # (N, C)


def check_units(modalities: dict, grids: dict, statistics: dict, user_statistics: bool, log) -> dict[str, float]:
    """Every modality's sample against its statistics (engine.mapping.plan's): refuses or warns as
    ``enforce`` says; returns each modality's distance (for the log and the result)."""
    out = {}
    source = "given" if user_statistics else "model's"
    for name, m in modalities.items():
        mean, std = statistics[name]
        if m.band_index is not None:
            mean, std = mean[list(m.band_index)], std[list(m.band_index)]
        radar = bool(set(m.spec.bands) & RADAR_BANDS)
        check = check_sample(name, sample_modality(m, grids[name]), mean, std, m.scale, radar)
        enforce(check, m.scale, source, log, radar)
        out[name] = round(check.distance, 2)
    return out


def expected_units(spec) -> dict[str, object]:
    """What a modality's statistics say about the values it expects (``models --json``)."""
    bands, mean = set(spec.bands), np.asarray(spec.mean, float)
    std = np.asarray(spec.std, float)
    if np.allclose(mean, 0) and np.allclose(std, 1):
        units = "already normalised (identity statistics): give normalised values or \"normalization\""
    elif bands & RADAR_BANDS:
        radar = [i for i, b in enumerate(spec.bands) if b in RADAR_BANDS]
        units = "backscatter in dB" if (mean[radar] < 0).all() else "backscatter as linear power (not dB)"
    elif mean.max() > 100:
        units = (
            "reflectance x 10000 (digital numbers)"
            if spec.name.startswith(("s2", "l8", "l7", "modis"))
            else "digital numbers"
        )
    else:
        units = "reflectance (0-1)"
    return {
        "units": units,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "typical_range": [[float(a - 2 * s), float(a + 2 * s)] for a, s in zip(mean, std)],
    }
