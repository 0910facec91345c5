"""UniverSat's sensors as data: each band named by its wavelength (optical) or its code (SAR, elevation).

UniverSat has no per-sensor weights at inference: its Universal Patch Encoder reads every
band through a Fourier code of its centre wavelength in micrometres, or through a learned
vector for the eight named channels below. A sensor is therefore fully described by its
bands' wavelengths or codes, its pixel size and its sub-patch factor (pixels per sub-patch
side; 1 for 10-30 m sensors, 10 for sub-metre images). ``describe_sensor`` builds the spec of a
sensor the table lacks from exactly that, with no code change.

The table holds the sensors of the released model's registry under the engine's names (the
reference's name in ``reference``), with their wavelengths, pixel sizes and sub-patch factors
as published. The authors publish no normalisation statistics (they compute them per dataset):
every spec here normalises with mean 0 and std 1, so give the statistics of your own data
(the engine's normalisation-statistics path) or data already standardised.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.models.modalities import ModalitySpec

# Channels the encoder knows by name (one learned vector each) instead of by wavelength.
CHANNEL_CODES = ("VV", "VH", "Ratio_VV_VH", "HH", "HV", "Ratio_HH_HV", "nDEM", "DSM")
# Band names users write for the ratio and elevation codes.
_CODE_ALIASES = {
    "VV/VH": "Ratio_VV_VH",
    "HH/HV": "Ratio_HH_HV",
    "NDSM": "nDEM",
    "NDEM": "nDEM",
    "DEM": "DSM",
    "ELEVATION": "DSM",
}
# The widest wavelength range the released encoder saw (thermal Landsat bands, micrometres).
_WAVELENGTH_RANGE = (0.3, 15.0)

Channel = float | str


@dataclass(frozen=True)
class UniverSatSensor:
    """One sensor: its engine spec (bands, pixel size, kind, statistics) plus what UniverSat reads.

    channels: one entry per band, in the spec's band order: a centre wavelength in micrometres,
    or one of ``CHANNEL_CODES``. sub_px: pixels per sub-patch side. reference: the released
    registry's name for this sensor ("" for a user's sensor).
    """

    spec: ModalitySpec
    channels: tuple[Channel, ...]
    sub_px: int = 1
    reference: str = ""

    def __post_init__(self) -> None:
        if len(self.channels) != self.spec.n_bands:
            raise EngineError(
                f"Sensor {self.spec.name!r}: {self.spec.n_bands} bands ({', '.join(self.spec.bands)}) but "
                f"{len(self.channels)} wavelengths or codes; give one per band."
            )
        for band, channel in zip(self.spec.bands, self.channels):
            if isinstance(channel, str):
                if channel not in CHANNEL_CODES:
                    raise EngineError(
                        f"Sensor {self.spec.name!r}, band {band!r}: {channel!r} is neither a wavelength nor one "
                        f"of the codes {', '.join(CHANNEL_CODES)}."
                    )
            elif not _WAVELENGTH_RANGE[0] <= float(channel) <= _WAVELENGTH_RANGE[1]:
                raise EngineError(
                    f"Sensor {self.spec.name!r}, band {band!r}: wavelength {channel} is outside "
                    f"{_WAVELENGTH_RANGE[0]}-{_WAVELENGTH_RANGE[1]} micrometres; give it in micrometres "
                    "(665 nm = 0.665)."
                )
        if self.sub_px < 1:
            raise EngineError(f"Sensor {self.spec.name!r}: the sub-patch factor must be at least 1.")

    @property
    def name(self) -> str:
        return self.spec.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "channels": list(self.channels),
            "sub_px": self.sub_px,
            "reference": self.reference,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UniverSatSensor:
        return cls(
            ModalitySpec.from_dict(data["spec"]),
            tuple(data["channels"]),
            int(data.get("sub_px", 1)),
            str(data.get("reference", "")),
        )


def parse_channel(value: Any, where: str) -> Channel:
    """A band's wavelength (a number, micrometres; '665nm' accepted) or SAR/elevation code."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text.upper() in _CODE_ALIASES:
        return _CODE_ALIASES[text.upper()]
    for code in CHANNEL_CODES:
        if text.upper() == code.upper():
            return code
    lowered = text.lower().replace(" ", "")
    try:
        if lowered.endswith("nm"):
            return float(lowered[:-2]) / 1000.0
        if lowered.endswith("um") or lowered.endswith("µm"):
            return float(lowered[:-2])
        return float(lowered)
    except ValueError:
        raise EngineError(
            f"{where}: {value!r} is neither a wavelength (micrometres, e.g. 0.665, or '665nm') nor one of "
            f"{', '.join(CHANNEL_CODES)} (VV/VH and HH/HV ratios accepted)."
        ) from None


def describe_sensor(
    name: str,
    channels: Sequence[Any],
    gsd_m: float,
    *,
    series: bool = False,
    sub_px: int | None = None,
    bands: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    description: str = "",
) -> UniverSatSensor:
    """A sensor the table lacks, from its bands' wavelengths (or SAR codes) and pixel size.

    ``sub_px`` defaults to the released registry's rule of thumb: sub-patches of about 2 m for
    sub-metre images (10 px at 0.2 m), one pixel per sub-patch from 2 m on.
    """
    if not channels:
        raise EngineError(f"Sensor {name!r}: give the wavelength or code of each band.")
    parsed = tuple(parse_channel(c, f"Sensor {name!r}, band {i + 1}") for i, c in enumerate(channels))
    if gsd_m is None or float(gsd_m) <= 0:
        raise EngineError(f"Sensor {name!r}: give its pixel size in metres (a positive number).")
    gsd_m = float(gsd_m)
    if sub_px is None:
        sub_px = max(1, round(2.0 / gsd_m)) if gsd_m < 1.0 else 1
    names = tuple(bands) if bands else tuple(c if isinstance(c, str) else f"{round(c * 1000):d}nm" for c in parsed)
    n = len(parsed)
    spec = ModalitySpec(
        name,
        "series" if series else "image",
        names,
        gsd_m,
        bool(series),
        tuple(mean) if mean is not None else (0.0,) * n,
        tuple(std) if std is not None else (1.0,) * n,
        description or f"User sensor, {n} bands, {gsd_m:g} m",
    )
    return UniverSatSensor(spec, parsed, int(sub_px))


def _hyperspectral() -> dict[str, list[float]]:
    return json.loads((Path(__file__).with_name("data") / "hyperspectral_bands.json").read_text())


def _sensor(
    name: str,
    reference: str,
    kind: str,
    bands: Sequence[str],
    channels: Sequence[Channel],
    gsd_m: float,
    sub_px: int,
    description: str,
) -> UniverSatSensor:
    n = len(bands)
    spec = ModalitySpec(name, kind, tuple(bands), gsd_m, kind == "series", (0.0,) * n, (1.0,) * n, description)
    return UniverSatSensor(spec, tuple(channels), sub_px, reference)


_RGBN = ("R", "G", "B", "NIR")
_S2_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")


def _table() -> dict[str, UniverSatSensor]:
    hyper = _hyperspectral()
    sensors = (
        _sensor(
            "aerial",
            "aerial",
            "image",
            _RGBN,
            (0.665, 0.56, 0.49, 0.81),
            0.2,
            10,
            "Aerial orthophoto RGB + NIR, 0.2 m (TreeSatAI)",
        ),
        _sensor(
            "aerial_flair",
            "aerialflair",
            "image",
            _RGBN,
            (0.665, 0.56, 0.49, 0.81),
            0.2,
            8,
            "Aerial orthophoto RGB + NIR, 0.2 m, 8-px sub-patches (FLAIR)",
        ),
        _sensor(
            "spot",
            "spot",
            "image",
            ("R", "G", "B"),
            (0.665, 0.56, 0.49),
            1.0,
            10,
            "SPOT-6/7 pansharpened RGB, 1 m (PASTIS-HD)",
        ),
        _sensor(
            "spot_rgbn",
            "spotRGBN",
            "image",
            _RGBN,
            (0.665, 0.56, 0.49, 0.83),
            1.6,
            2,
            "SPOT-6/7 RGB + NIR, 1.6 m (FLAIR)",
        ),
        _sensor("planet", "planet", "image", _RGBN, (0.665, 0.56, 0.49, 0.83), 4.0, 1, "PlanetScope RGB + NIR, 4 m"),
        _sensor(
            "maxar",
            "maxar",
            "image",
            ("B", "G", "R", "NIR"),
            (0.48, 0.545, 0.66, 0.833),
            0.5,
            1,
            "Maxar B, G, R, NIR, 0.5 m",
        ),
        _sensor("naip", "naip", "image", _RGBN, (0.665, 0.56, 0.49, 0.81), 1.25, 10, "NAIP aerial RGB + NIR, 1.25 m"),
        _sensor(
            "s2",
            "s2",
            "series",
            _S2_BANDS,
            (0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.833, 0.865, 1.61, 2.19),
            10.0,
            1,
            "Sentinel-2 L2A time series, 10 bands resampled to 10 m",
        ),
        _sensor(
            "s2_l1c",
            "s2l1c",
            "series",
            ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"),
            (0.442, 0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.833, 0.865, 0.944, 1.375, 1.612, 2.19),
            10.0,
            1,
            "Sentinel-2 L1C time series, 13 bands resampled to 10 m",
        ),
        _sensor(
            "s2_4band",
            "s2_4band",
            "series",
            ("B2", "B3", "B4", "B8"),
            (0.49, 0.56, 0.665, 0.842),
            10.0,
            1,
            "Sentinel-2 10 m bands B2, B3, B4, B8",
        ),
        _sensor(
            "s1",
            "s1",
            "series",
            ("VV", "VH", "VV/VH"),
            ("VV", "VH", "Ratio_VV_VH"),
            10.0,
            1,
            "Sentinel-1 GRD time series, VV, VH and their ratio",
        ),
        _sensor(
            "alos",
            "alos",
            "series",
            ("HH", "HV", "HH/HV"),
            ("HH", "HV", "Ratio_HH_HV"),
            30.0,
            1,
            "ALOS-2 PALSAR-2 L-band time series, HH, HV and their ratio, 30 m",
        ),
        _sensor(
            "l7",
            "l7",
            "series",
            ("B1", "B2", "B3", "B4", "B5", "B7"),
            (0.485, 0.56, 0.66, 0.835, 1.65, 2.22),
            30.0,
            1,
            "Landsat-7 ETM+ time series, 30 m",
        ),
        _sensor(
            "l8",
            "l8",
            "series",
            ("B8", "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11"),
            (0.59, 0.443, 0.482, 0.562, 0.655, 0.865, 1.61, 2.2, 1.375, 10.9, 12.0),
            10.0,
            1,
            "Landsat-8/9 time series resampled to 10 m (S2NAIP)",
        ),
        _sensor(
            "hls",
            "hls",
            "series",
            ("B", "G", "R", "NIR", "SWIR1", "SWIR2"),
            (0.485, 0.56, 0.66, 0.835, 1.65, 2.22),
            30.0,
            1,
            "Harmonized Landsat Sentinel-2, 30 m",
        ),
        _sensor(
            "dem",
            "dem",
            "image",
            ("DSM", "nDEM"),
            ("DSM", "nDEM"),
            0.2,
            10,
            "Surface model and normalised elevation, 0.2 m (FLAIR)",
        ),
        _sensor("dsm", "dsm", "image", ("DSM",), ("DSM",), 30.0, 1, "Digital surface model, 30 m"),
        _sensor(
            "enmap",
            "enmap",
            "image",
            tuple(f"{round(w * 1000):d}nm" for w in hyper["enmap"]),
            tuple(hyper["enmap"]),
            30.0,
            1,
            "EnMAP hyperspectral, 202 bands, 30 m",
        ),
        _sensor(
            "hyperion",
            "EO1",
            "image",
            tuple(f"{round(w * 1000):d}nm" for w in hyper["hyperion"]),
            tuple(hyper["hyperion"]),
            30.0,
            1,
            "EO-1 Hyperion hyperspectral, 175 bands, 30 m",
        ),
    )
    return {s.name: s for s in sensors}


SENSORS: dict[str, UniverSatSensor] = _table()


def universat_sensor(name: str) -> UniverSatSensor:
    if name not in SENSORS:
        raise EngineError(
            f"UniverSat has no sensor {name!r} in its table ({', '.join(SENSORS)}): describe it by its bands' "
            "wavelengths (or VV/VH/HH/HV codes) and pixel size instead (describe_sensor, or the band table's "
            "'other sensor (wavelengths)')."
        )
    return SENSORS[name]


def with_statistics(sensor: UniverSatSensor, mean: Sequence[float], std: Sequence[float]) -> UniverSatSensor:
    """The sensor normalised with the given per-band statistics."""
    return replace(sensor, spec=replace(sensor.spec, mean=tuple(mean), std=tuple(std)))
