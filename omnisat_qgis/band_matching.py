"""Match a model's bands to a layer's bands by band description, in plain Python.

A layer's band descriptions are matched to the model's band names through
standard Sentinel-2 / Landsat codes (B02, B2, "B04 red"), polarisations (VV, VH)
and common names (red, nir, swir1...). Layers whose bands carry no names fall back
to a known product layout (the 13 bands of Sentinel-2 L1C, the 12 of L2A) or to
the first bands in the model's order, and the mapping says so. The result is the
job's ``"bands"``: one 1-based band number per model band, None where the layer
lacks the band.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Sentinel-2 codes and the common names that mean the same band.
S2_COMMON_NAMES = {
    "B1": "coastal",
    "B2": "blue",
    "B3": "green",
    "B4": "red",
    "B5": "rededge1",
    "B6": "rededge2",
    "B7": "rededge3",
    "B8": "nir",
    "B8A": "nir08",
    "B9": "watervapour",
    "B10": "cirrus",
    "B11": "swir1",
    "B12": "swir2",
}
# Words (lower case, spaces and punctuation removed) and the common name they stand for.
WORDS = {
    "coastal": "coastal",
    "aerosol": "coastal",
    "blue": "blue",
    "b": "blue",
    "green": "green",
    "g": "green",
    "red": "red",
    "r": "red",
    "rededge1": "rededge1",
    "re1": "rededge1",
    "rededge2": "rededge2",
    "re2": "rededge2",
    "rededge3": "rededge3",
    "re3": "rededge3",
    "nir": "nir",
    "n": "nir",
    "nearinfrared": "nir",
    "nir08": "nir08",
    "narrownir": "nir08",
    "nirnarrow": "nir08",
    "watervapour": "watervapour",
    "watervapor": "watervapour",
    "cirrus": "cirrus",
    "swir1": "swir1",
    "swir16": "swir1",
    "swir2": "swir2",
    "swir22": "swir2",
}
POLARISATIONS = ("VV", "VH", "HH", "HV")
# Band orders of products that usually come without band names.
KNOWN_LAYOUTS = {
    13: ("Sentinel-2 L1C", ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")),
    12: ("Sentinel-2 L2A", ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")),
}
_S2_CODE = re.compile(r"(?<![A-Za-z0-9])B0?(\d{1,2}A?)(?![0-9])", re.IGNORECASE)
_POLARISATION = re.compile(r"(?<![A-Za-z])(VV|VH|HH|HV)(?![A-Za-z])", re.IGNORECASE)


@dataclass(frozen=True)
class BandKeys:
    """What a band name says: a sensor code, a polarisation, a common name (each may be empty)."""

    code: str = ""
    polarisation: str = ""
    common: str = ""


def band_keys(text: str) -> BandKeys:
    text = (text or "").strip()
    code = ""
    if match := _S2_CODE.search(text):
        candidate = "B" + match.group(1).upper()
        code = candidate if candidate in S2_COMMON_NAMES else ""
    polarisation = match.group(1).upper() if (match := _POLARISATION.search(text)) else ""
    common = S2_COMMON_NAMES.get(code, "")
    if not common:
        for word in re.split(r"[\s,;:()\[\]/|]+", text):
            squeezed = re.sub(r"[^a-z0-9]", "", word.lower())
            # single letters only when they are the whole name ("R", "G"): inside a
            # sentence "b" or "n" mean nothing
            if squeezed in WORDS and (len(squeezed) > 1 or squeezed == re.sub(r"[^a-z0-9]", "", text.lower())):
                common = WORDS[squeezed]
                break
    return BandKeys(code, polarisation, common)


@dataclass(frozen=True)
class BandMapping:
    model_bands: tuple[str, ...]
    layer_bands: tuple[int | None, ...]  # 1-based, None: missing
    how: str  # "descriptions", "<layout> layout", "position"

    @property
    def missing(self) -> list[str]:
        return [name for name, band in zip(self.model_bands, self.layer_bands) if band is None]

    def job_bands(self) -> list[int | None]:
        return list(self.layer_bands)

    def is_identity(self, layer_band_count: int) -> bool:
        """True when the job needs no "bands": the layer's bands are the model's, in order."""
        return layer_band_count == len(self.model_bands) and list(self.layer_bands) == list(
            range(1, layer_band_count + 1)
        )


def _pick(model: BandKeys, layer: list[BandKeys], taken: set[int]) -> int | None:
    for attribute in ("code", "polarisation", "common"):
        wanted = getattr(model, attribute)
        if not wanted:
            continue
        for index, keys in enumerate(layer):
            if index not in taken and getattr(keys, attribute) == wanted:
                return index
    return None


def _pick_all(model_bands: tuple[str, ...], layer: list[BandKeys]) -> list[int | None]:
    """1-based layer band per model band, each layer band used once."""
    taken: set[int] = set()
    picked = []
    for name in model_bands:
        index = _pick(band_keys(name), layer, taken)
        if index is not None:
            taken.add(index)
        picked.append(None if index is None else index + 1)
    return picked


def match_bands(model_bands: list[str] | tuple[str, ...], descriptions: list[str]) -> BandMapping:
    """The layer band (1-based) for each model band; see the module docstring for the rules."""
    model_bands = tuple(model_bands)
    layer = [band_keys(d) for d in descriptions]
    if any(k != BandKeys() for k in layer):
        picked = _pick_all(model_bands, layer)
        if any(p is not None for p in picked):
            return BandMapping(model_bands, tuple(picked), "descriptions")
    count = len(descriptions)
    if count in KNOWN_LAYOUTS and count != len(model_bands):
        label, layout = KNOWN_LAYOUTS[count]
        return BandMapping(
            model_bands, tuple(_pick_all(model_bands, [band_keys(b) for b in layout])), f"{label} layout"
        )
    picked = [i + 1 if i < count else None for i in range(len(model_bands))]
    return BandMapping(model_bands, tuple(picked), "position")
