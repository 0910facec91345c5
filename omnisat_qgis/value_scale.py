"""Does a layer hold values on the scale the model's normalization expects? Plain Python.

Sentinel-2 comes as digital numbers (reflectance x 10000) or as reflectance (0-1);
Sentinel-1 as linear power or in dB. A model normalised for one scale sees noise in
the other, silently. The sampled mean of each matched band is compared with the
model's mean for it, and the engine's on-the-fly conversion (the job's "scale",
engine.io.scales) is offered when the two differ by the conversion's factor.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from omnisat_qgis.band_matching import POLARISATIONS

# How far the sampled means may lie from the model's before the values count as another scale.
SAME_SCALE = (0.05, 20.0)  # wide: the scales differ by 10000, real scenes by up to 10 from the training mean
REFLECTANCE_FACTOR = 1e-4  # reflectance / digital numbers


@dataclass(frozen=True)
class ScaleVerdict:
    conversion: str | None  # the job "scale" that brings the layer to the model's scale
    text: str  # what the dock says; "" when the values look right

    @property
    def ok(self) -> bool:
        return not self.text


FINE = ScaleVerdict(None, "")


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _same_scale(ratio: float) -> bool:
    return SAME_SCALE[0] <= ratio <= SAME_SCALE[1]


def detect_scale(
    model_bands: tuple[str, ...], expected: tuple[float, ...], sampled: list[float | None]
) -> ScaleVerdict:
    """``expected``: the model's per-band means; ``sampled``: the layer's per model band (None: missing)."""
    pairs = [(e, s) for e, s in zip(expected, sampled) if s is not None]
    if not pairs:
        return FINE
    model = _median([e for e, _ in pairs])
    layer = _median([s for _, s in pairs])
    if all(b.upper() in POLARISATIONS for b in model_bands):
        return _radar(model, layer)
    ratios = [s / e for e, s in pairs if e > 0]
    if not ratios:
        return FINE
    ratio = _median(ratios)
    if _same_scale(ratio):
        return FINE
    if _same_scale(ratio / REFLECTANCE_FACTOR):
        return ScaleVerdict(
            "reflectance_to_dn",
            f"values look like reflectance (mean {layer:.3g}); the model "
            f"expects digital numbers (mean {model:.4g}): converted x 10000",
        )
    if _same_scale(ratio * REFLECTANCE_FACTOR):
        return ScaleVerdict(
            "dn_to_reflectance",
            f"values look like digital numbers (mean {layer:.4g}); the model "
            f"expects reflectance (mean {model:.3g}): converted / 10000",
        )
    return ScaleVerdict(
        None,
        f"values are {ratio:.3g} times what the model expects (mean {layer:.4g} vs "
        f"{model:.4g}): check the layer's scale or offset",
    )


def _radar(model: float, layer: float) -> ScaleVerdict:
    """Linear power is positive and mostly below 1; dB mostly negative."""
    model_db, layer_db = model < 0, layer < 0
    if model_db == layer_db:
        return FINE
    if layer_db:
        return ScaleVerdict(
            "db_to_linear",
            f"values look like dB (mean {layer:.3g}); the model expects linear "
            f"power (mean {model:.3g}): converted 10^(dB/10)",
        )
    return ScaleVerdict(
        "linear_to_db",
        f"values look like linear power (mean {layer:.3g}); the model expects dB "
        f"(mean {model:.3g}): converted 10 log10",
    )
