"""Feature sets a probe is fitted on: embeddings, the inputs' raw bands, their temporal
statistics, spectral indices, or a combination (``"embeddings+raw"``).

Parts, in the order their columns are stacked:

- ``embeddings``: the encoder's embeddings at the probe's level;
- ``raw``: every band of every date of every input modality (a single image: its bands);
- ``stats``: per band, its mean, standard deviation, minimum, median and maximum over the
  dates (needs a time series with at least two dates);
- ``indices``: normalized differences (NDVI, NDWI, NDMI) of optical inputs and the VV/VH
  ratio (in dB) of radar inputs, at every date, plus their temporal statistics when there
  are at least two dates;
- ``monthly``: per calendar month, the median of each band and index over the month's clear
  dates (the cloud-free monthly composite crop mappers use; a month without a clear date takes
  the month's filled values, i.e. the cell's mean). Unlike ``raw`` its columns do not depend on
  the exact acquisition dates, only on the months covered.

The columns are named (``s2:B4@2020-05-01``, ``s2:NDVI:median``...) and the probe records
the names: applying it to inputs whose columns differ (other dates, other bands) is
refused with the difference spelled out. Whether radar comes in dB or linear power is
decided once from the fitting data and recorded, so a map is computed like its labels.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import EngineError

PARTS = ("embeddings", "raw", "stats", "indices", "monthly")
STATISTICS = ("mean", "std", "min", "median", "max")
# Band roles per sensor (engine.models.modalities band names).
_OPTICAL_ROLES = {
    "s2": {"green": "B3", "red": "B4", "nir": "B8", "swir": "B11"},
    "l8": {"green": "B3", "red": "B4", "nir": "B5", "swir": "B6"},
    "l7": {"green": "B2", "red": "B3", "nir": "B4", "swir": "B5"},
    "modis": {"green": "B4", "red": "B1", "nir": "B2", "swir": "B6"},
}
_GENERIC_OPTICAL = {"green": "G", "red": "R", "nir": "NIR"}
NORMALIZED_DIFFERENCES = {"NDVI": ("nir", "red"), "NDWI": ("green", "nir"), "NDMI": ("nir", "swir")}


@dataclass(frozen=True)
class FeatureSet:
    parts: tuple[str, ...]
    modality: str | None = None  # the only input modality its input parts read (None: every one)

    @classmethod
    def parse(cls, text: str) -> FeatureSet:
        body, _, modality = str(text).partition("@")
        names = [p.strip() for p in body.replace(",", "+").split("+") if p.strip()]
        unknown = [p for p in names if p not in PARTS]
        if unknown or not names:
            raise EngineError(
                f"Unknown feature set {text!r}: combine {', '.join(PARTS)} with '+', e.g. 'embeddings+raw', "
                "optionally followed by '@' and one input modality, e.g. 'monthly+stats@s2'."
            )
        parts = tuple(p for p in PARTS if p in names)
        if modality.strip() and parts == ("embeddings",):
            raise EngineError(f"The feature set {text!r} names a modality but reads only embeddings: drop '@'.")
        return cls(parts, modality.strip() or None)

    @property
    def name(self) -> str:
        return "+".join(self.parts) + (f"@{self.modality}" if self.modality else "")

    @property
    def uses_embeddings(self) -> bool:
        return "embeddings" in self.parts

    @property
    def input_parts(self) -> tuple[str, ...]:
        return tuple(p for p in self.parts if p != "embeddings")

    def read_from(self, inputs: Sequence[InputValues]) -> list[InputValues]:
        """The inputs this set's input parts read."""
        if self.modality is None:
            return list(inputs)
        chosen = [item for item in inputs if item.modality == self.modality]
        if not chosen:
            have = ", ".join(item.modality for item in inputs) or "none"
            raise EngineError(
                f"The feature set {self.name!r} reads the modality {self.modality!r}, which the inputs do not "
                f"have (they have: {have}). Name one of those after '@', or drop '@{self.modality}'."
            )
        return chosen


@dataclass
class InputValues:
    """One input modality's values at N cells: (N, T, C), T = 1 for an image."""

    modality: str
    bands: tuple[str, ...]
    dates: tuple[str, ...]  # empty for an image
    values: np.ndarray
    valid: np.ndarray | None = None  # (N, T) clear observation; None: every value counts (monthly)

    def __post_init__(self):
        if self.values.ndim != 3 or self.values.shape[2] != len(self.bands):
            raise ValueError(f"{self.modality}: values must be (N, T, {len(self.bands)}), got {self.values.shape}")


def _stats(values: np.ndarray) -> list[np.ndarray]:
    """(N, T) -> one (N,) column per statistic."""
    return [values.mean(1), values.std(1), values.min(1), np.median(values, 1), values.max(1)]


def available_indices(modality: str, bands: Sequence[str]) -> list[str]:
    """The indices ``indices`` computes for a modality with these bands."""
    table = _OPTICAL_ROLES.get(modality, _GENERIC_OPTICAL)
    roles = {role for role, band in table.items() if band in bands}
    names = [name for name, (a, b) in NORMALIZED_DIFFERENCES.items() if a in roles and b in roles]
    return names + (["VV/VH dB"] if {"VV", "VH"} <= set(bands) else [])


def _optical_roles(item: InputValues) -> dict[str, int]:
    table = _OPTICAL_ROLES.get(item.modality, _GENERIC_OPTICAL)
    return {role: item.bands.index(band) for role, band in table.items() if band in item.bands}


def _date_labels(item: InputValues) -> list[str]:
    return list(item.dates) if item.dates else ["image"]


def _index_series(item: InputValues, radar_db: dict[str, bool]) -> dict[str, np.ndarray]:
    """Index name -> (N, T) values for one modality."""
    out = {}
    roles = _optical_roles(item)
    for name, (a, b) in NORMALIZED_DIFFERENCES.items():
        if a in roles and b in roles:
            x, y = item.values[:, :, roles[a]], item.values[:, :, roles[b]]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[name] = np.where(np.abs(x + y) > 1e-12, (x - y) / (x + y), 0.0)
    if "VV" in item.bands and "VH" in item.bands:
        vv, vh = item.values[:, :, item.bands.index("VV")], item.values[:, :, item.bands.index("VH")]
        if radar_db[item.modality]:
            out["VV/VH dB"] = vv - vh
        else:
            out["VV/VH dB"] = 10.0 * np.log10(np.maximum(vv, 1e-6) / np.maximum(vh, 1e-6))
    return out


def detect_radar_db(inputs: Sequence[InputValues]) -> dict[str, bool]:
    """Per radar modality: True when its values are in dB (any value <= 0; linear power is positive)."""
    return {
        item.modality: bool((item.values[..., [item.bands.index("VV"), item.bands.index("VH")]] <= 0).any())
        for item in inputs
        if "VV" in item.bands and "VH" in item.bands
    }


def input_features(
    inputs: Sequence[InputValues], feature_set: FeatureSet, radar_db: dict[str, bool] | None = None
) -> tuple[np.ndarray, list[str]]:
    """The input-derived columns of ``feature_set`` ((N, F) float32 and their names)."""
    parts = feature_set.input_parts
    if not parts:
        return np.zeros((len(inputs[0].values) if inputs else 0, 0), np.float32), []
    if not inputs:
        raise EngineError(
            f"The feature set {feature_set.name!r} needs the input rasters (a job), not only an "
            "embeddings raster: give the job."
        )
    inputs = feature_set.read_from(inputs)
    if "stats" in parts and not any(len(item.dates) >= 2 for item in inputs):
        kinds = ", ".join(f"{item.modality} ({len(item.dates) or 'no'} dates)" for item in inputs)
        raise EngineError(
            f"The feature set {feature_set.name!r} needs a time series with at least 2 dates for its "
            f"temporal statistics, but the inputs are {kinds}: use raw or indices instead of stats."
        )
    radar_db = detect_radar_db(inputs) if radar_db is None else radar_db
    columns, names, indices = [], [], 0
    for item in inputs:
        values = item.values.astype(np.float32)
        dates = _date_labels(item)
        if "raw" in parts:
            for t, date in enumerate(dates):
                for c, band in enumerate(item.bands):
                    columns.append(values[:, t, c])
                    names.append(f"{item.modality}:{band}@{date}")
        if "stats" in parts and len(item.dates) >= 2:
            for c, band in enumerate(item.bands):
                columns += _stats(values[:, :, c])
                names += [f"{item.modality}:{band}:{s}" for s in STATISTICS]
        if "indices" in parts:
            for index, series in _index_series(item, radar_db).items():
                indices += 1
                for t, date in enumerate(dates):
                    columns.append(series[:, t])
                    names.append(f"{item.modality}:{index}@{date}")
                if len(item.dates) >= 2:
                    columns += _stats(series)
                    names += [f"{item.modality}:{index}:{s}" for s in STATISTICS]
        if "monthly" in parts and item.dates:
            columns_m, names_m = _monthly_columns(item, radar_db)
            columns += columns_m
            names += names_m
    if "monthly" in parts and not any(item.dates for item in inputs):
        raise EngineError(
            f"The feature set {feature_set.name!r} needs a time series for its monthly composites, but "
            "the inputs are single images: use raw or indices instead of monthly."
        )
    if "indices" in parts and not indices:
        bands = "; ".join(f"{item.modality}: {', '.join(item.bands)}" for item in inputs)
        raise EngineError(
            f"No spectral index can be computed from the inputs' bands ({bands}): NDVI needs red and "
            "near infrared, the radar ratio VV and VH. Drop 'indices' from the feature set."
        )
    return np.stack(columns, 1).astype(np.float32), names


def _monthly_columns(item: InputValues, radar_db: dict[str, bool]) -> tuple[list[np.ndarray], list[str]]:
    """Per month, the median of each band and index over the month's clear dates."""
    months = [d[:7] for d in item.dates]
    series = {band: item.values[:, :, c] for c, band in enumerate(item.bands)}
    series.update(_index_series(item, radar_db))
    valid = np.ones(item.values.shape[:2], bool) if item.valid is None else item.valid
    columns, names = [], []
    for month in sorted(set(months)):
        pick = [t for t, m in enumerate(months) if m == month]
        clear = valid[:, pick]
        for name, values in series.items():
            v = values[:, pick].astype(np.float32)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # cells with no clear date: the fallback below
                median = np.nanmedian(np.where(clear, v, np.nan), axis=1)
            columns.append(np.where(np.isfinite(median), median, np.median(v, axis=1)))
            names.append(f"{item.modality}:{name}@{month}")
    return columns, names


def combine(
    embeddings: np.ndarray | None,
    inputs: Sequence[InputValues],
    feature_set: FeatureSet,
    radar_db: dict[str, bool] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The feature matrix of ``feature_set`` and its record (stored in the probe)."""
    blocks, names = [], []
    if feature_set.uses_embeddings:
        if embeddings is None:
            raise EngineError(f"The feature set {feature_set.name!r} needs embeddings.")
        blocks.append(np.asarray(embeddings, np.float32))
        names += [f"embedding:{i}" for i in range(embeddings.shape[1])]
    radar_db = detect_radar_db(inputs) if radar_db is None else radar_db
    if feature_set.input_parts:
        x, input_names = input_features(inputs, feature_set, radar_db)
        blocks.append(x)
        names += input_names
    read = feature_set.read_from(inputs) if feature_set.input_parts else inputs
    record = {
        "set": feature_set.name,
        "columns": names,
        "radar_db": radar_db,
        "inputs": {item.modality: {"bands": list(item.bands), "dates": list(item.dates)} for item in read},
    }
    return np.concatenate(blocks, 1), record


def check_columns(record: dict[str, Any], names: list[str], probe_path: str = "") -> None:
    """Refuse features whose columns are not the ones the probe was fitted on."""
    expected = record.get("columns") or []
    if expected == names:
        return
    where = f"The probe '{probe_path}'" if probe_path else "The probe"
    missing = [n for n in expected if n not in set(names)][:5]
    extra = [n for n in names if n not in set(expected)][:5]
    raise EngineError(
        f"{where} was fitted on the feature set {record.get('set')!r} with {len(expected)} columns, but these inputs "
        f"give {len(names)}"
        + (f"; missing: {', '.join(missing)}" if missing else "")
        + (f"; not in the probe: {', '.join(extra)}" if extra else "")
        + ". Give inputs with the same modalities, bands and dates, or fit a new probe on these."
    )


# ---------------------------------------------------------------- reading inputs on a grid


def _input_bands(modality) -> tuple[str, ...]:
    bands = modality.spec.bands
    return tuple(bands[i] for i in modality.band_index) if modality.band_index is not None else tuple(bands)


def fill_invalid_dates(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cloudy or missing dates of a cell take the cell's mean over its valid dates, band by band;
    returns the filled (N, T, C) values and whether the cell has any valid date."""
    values = np.where(valid[:, :, None], values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cells without any valid date: handled below
        means = np.nanmean(values, axis=1, keepdims=True)
    filled = np.where(np.isnan(values), means, values)
    return filled, np.isfinite(filled).all(axis=(1, 2))


def read_inputs(modalities: dict, grid, window) -> tuple[list[InputValues], np.ndarray]:
    """The job's inputs (engine.mapping.plan.resolve_inputs) sampled at the cells of ``window`` of the
    embeddings' ``grid`` (engine.io.grid.Grid; bilinear at cell centres, warped when the files lie on
    another grid): per modality (h*w, T, C) values, and (h*w,) whether every modality has data there."""
    from engine.io.align import ModalityReader  # lazy: keeps rasterio out of this module

    out, ok = [], np.ones(int(window.height) * int(window.width), bool)
    for name, modality in modalities.items():
        with ModalityReader(modality, grid) as reader:
            data, valid = reader.read(window)  # (T, C, h, w), (T, h, w)
        values = np.moveaxis(data.reshape(data.shape[0], data.shape[1], -1), -1, 0)  # (hw, T, C)
        filled, has_data = fill_invalid_dates(values, valid.reshape(valid.shape[0], -1).T)
        dates = tuple(str(d) for d in modality.dates) if modality.spec.has_dates else ()
        out.append(
            InputValues(name, _input_bands(modality), dates, np.nan_to_num(filled), valid.reshape(valid.shape[0], -1).T)
        )
        ok &= has_data
    return out, ok


def read_inputs_at(
    modalities: dict, grid, rows: np.ndarray, cols: np.ndarray, block: int = 256
) -> tuple[list[InputValues], np.ndarray]:
    """``read_inputs`` at scattered cells, reading only the blocks that hold some."""
    from rasterio.windows import Window  # lazy: keeps rasterio out of this module

    pieces: list[list[InputValues]] = []
    order, ok = [], []
    block_ids = (rows // block) * (grid.width // block + 1) + cols // block
    for b in np.unique(block_ids):
        pick = np.flatnonzero(block_ids == b)
        r0, c0 = int(rows[pick[0]] // block * block), int(cols[pick[0]] // block * block)
        window = Window(c0, r0, min(block, grid.width - c0), min(block, grid.height - r0))
        values, valid = read_inputs(modalities, grid, window)
        flat = (rows[pick] - r0) * int(window.width) + (cols[pick] - c0)
        pieces.append(
            [
                InputValues(v.modality, v.bands, v.dates, v.values[flat], None if v.valid is None else v.valid[flat])
                for v in values
            ]
        )
        order.append(pick)
        ok.append(valid[flat])
    back = np.argsort(np.concatenate(order))
    merged = [
        InputValues(
            first.modality,
            first.bands,
            first.dates,
            np.concatenate([p[i].values for p in pieces])[back],
            None if first.valid is None else np.concatenate([p[i].valid for p in pieces])[back],
        )
        for i, first in enumerate(pieces[0])
    ]
    return merged, np.concatenate(ok)[back]
