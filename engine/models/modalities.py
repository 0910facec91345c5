"""Modalities as plain data: what a sensor delivers and how to normalize it.

A model holds one module per modality, keyed by the spec's name; adding a
sensor means adding a spec (and weights), not a new code path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from engine.errors import EngineError

KINDS = ("image", "series")


@dataclass(frozen=True)
class ModalitySpec:
    """One sensor input.

    kind "image": a tensor (B, C, H, W); kind "series": (B, T, C, H, W) with
    dates (B, T) as day of year (1..366) when ``has_dates``.
    ``mean``/``std`` hold one value per band, in the units the reader delivers.
    """

    name: str
    kind: str
    bands: tuple[str, ...]
    gsd_m: float
    has_dates: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EngineError(f"Modality {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}.")
        if not self.bands:
            raise EngineError(f"Modality {self.name!r} has no bands.")
        if len(self.mean) != len(self.bands) or len(self.std) != len(self.bands):
            raise EngineError(
                f"Modality {self.name!r}: {len(self.bands)} bands but {len(self.mean)} means and "
                f"{len(self.std)} standard deviations; give one of each per band."
            )
        if any(s <= 0 for s in self.std):
            raise EngineError(f"Modality {self.name!r}: every standard deviation must be positive.")
        if self.gsd_m <= 0:
            raise EngineError(f"Modality {self.name!r}: ground sampling distance must be positive.")
        if self.has_dates and self.kind != "series":
            raise EngineError(f"Modality {self.name!r}: only time series carry dates.")

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModalitySpec:
        values = dict(data)
        for key in ("bands", "mean", "std"):
            values[key] = tuple(values[key])
        return cls(**values)

    def renamed(self, name: str) -> ModalitySpec:
        return replace(self, name=name)


_S2_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
# TreeSatAI-TS statistics (aerial: uint8 digital numbers, S2: L2A reflectance x 10000),
# as published with the AnySat demo for this dataset.
_TREESAT_AERIAL_MEAN = (150.8935, 92.7139, 84.8544, 80.7042)
_TREESAT_AERIAL_STD = (36.7649, 27.6250, 22.4795, 26.7337)
_S2_MEAN = (4304.33, 4159.27, 4057.78, 4328.95, 4571.22, 4644.87, 4837.25, 4700.26, 2823.26, 2319.97)
_S2_STD = (3538.00, 3324.23, 3270.07, 3250.53, 2897.39, 2754.50, 2821.52, 2625.95, 1731.56, 1549.30)
# Sentinel-1 in linear power (as stored in TreeSatAI-TS's HDF5 files), measured on the
# sample tile: the published dB statistics do not fit linear data.
_S1_ASC_MEAN, _S1_ASC_STD = (0.1109, 0.0327), (0.0552, 0.0166)
_S1_DES_MEAN, _S1_DES_STD = (0.1459, 0.0390), (0.0844, 0.0245)
# SPOT and the S1 ratio band: rough defaults (uint8 mid-range; ratio of the S1 means
# above). A checkpoint always carries the statistics its model was trained with.

SENSORS: dict[str, ModalitySpec] = {
    spec.name: spec
    for spec in (
        ModalitySpec(
            "aerial",
            "image",
            ("R", "G", "B", "NIR"),
            0.2,
            False,
            _TREESAT_AERIAL_MEAN,
            _TREESAT_AERIAL_STD,
            "Very-high-resolution aerial orthophoto, RGB + near infrared, 0.2 m",
        ),
        ModalitySpec(
            "aerial_elevation",
            "image",
            ("R", "G", "B", "NIR", "elevation"),
            0.2,
            False,
            (105.08, 110.87, 101.82, 106.38, 53.26),
            (52.17, 45.38, 44.00, 39.69, 79.30),
            "Aerial orthophoto with a normalized surface model band (FLAIR), 0.2 m",
        ),
        ModalitySpec(
            "spot",
            "image",
            ("R", "G", "B"),
            1.0,
            False,
            (125.0, 125.0, 125.0),
            (60.0, 60.0, 60.0),
            "SPOT-6/7 pansharpened RGB, 1 m (PASTIS-HD)",
        ),
        ModalitySpec(
            "s2",
            "series",
            _S2_BANDS,
            10.0,
            True,
            _S2_MEAN,
            _S2_STD,
            "Sentinel-2 L2A time series, 10 bands resampled to 10 m",
        ),
        ModalitySpec(
            "s1_asc",
            "series",
            ("VV", "VH"),
            10.0,
            True,
            _S1_ASC_MEAN,
            _S1_ASC_STD,
            "Sentinel-1 GRD ascending orbit time series, VV and VH linear power",
        ),
        ModalitySpec(
            "s1_des",
            "series",
            ("VV", "VH"),
            10.0,
            True,
            _S1_DES_MEAN,
            _S1_DES_STD,
            "Sentinel-1 GRD descending orbit time series, VV and VH linear power",
        ),
        ModalitySpec(
            "s1_asc_ratio",
            "series",
            ("VV", "VH", "VV/VH"),
            10.0,
            True,
            (0.1109, 0.0327, 3.7),
            (0.0552, 0.0166, 2.0),
            "Sentinel-1 ascending time series with the VV/VH ratio band (PASTIS-HD)",
        ),
        # Further GeoPlex sensors of AnySat. The release publishes no statistics for them:
        # identity normalization, so give normalized data or a checkpoint with its own.
        ModalitySpec(
            "naip",
            "image",
            ("R", "G", "B", "NIR"),
            1.25,
            False,
            (0.0,) * 4,
            (1.0,) * 4,
            "NAIP aerial RGB + near infrared, 1.25 m",
        ),
        ModalitySpec(
            "alos",
            "series",
            ("HH", "HV", "HH/HV"),
            30.0,
            True,
            (0.0,) * 3,
            (1.0,) * 3,
            "ALOS-2 PALSAR-2 L-band radar time series with the HH/HV ratio, 30 m",
        ),
        ModalitySpec(
            "l7",
            "series",
            ("B1", "B2", "B3", "B4", "B5", "B7"),
            30.0,
            True,
            (0.0,) * 6,
            (1.0,) * 6,
            "Landsat-7 ETM+ time series, 30 m",
        ),
        ModalitySpec(
            "l8",
            "series",
            ("B8", "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11"),
            10.0,
            True,
            (0.0,) * 11,
            (1.0,) * 11,
            "Landsat-8/9 time series resampled to 10 m (S2NAIP)",
        ),
        ModalitySpec(
            "modis",
            "series",
            ("B1", "B2", "B3", "B4", "B5", "B6", "B7"),
            250.0,
            True,
            (0.0,) * 7,
            (1.0,) * 7,
            "MODIS surface reflectance time series, 250 m (one context token)",
        ),
    )
}


def sensor(name: str) -> ModalitySpec:
    """The preset spec for a sensor name, with a clear error for unknown names."""
    if name not in SENSORS:
        raise EngineError(f"Unknown sensor {name!r}. Known sensors: {', '.join(sorted(SENSORS))}.")
    return SENSORS[name]
