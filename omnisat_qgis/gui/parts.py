"""One sensor ticked as several groups of layers: Sentinel-2 L2A's 10 m and 20 m bands in separate files.

The layers of a modality row whose band layouts differ become the job's "parts": one part per band
layout, each listing its layers (one per date) and the model's bands they hold in their band order.
The parts must hold different bands and the same dates; the engine resamples the coarser ones onto
the finest grid while reading (and refuses grids that do not nest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omnisat_qgis.band_matching import BandMapping
from omnisat_qgis.gui.dates import parse_typed_date


class PartsError(Exception):
    """Layers of one sensor that cannot be read together; the message names them and the fix."""


@dataclass(frozen=True)
class TickedLayer:
    name: str
    file: str
    date_text: str  # the Date column
    mapping: BandMapping
    band_count: int


def part_bands(layer: TickedLayer, label: str) -> list[str]:
    """The model's bands ``layer`` holds, in its band order; every band of the layer must be one of them."""
    held = {band: name for name, band in zip(layer.mapping.model_bands, layer.mapping.layer_bands) if band is not None}
    if sorted(held) != list(range(1, layer.band_count + 1)):
        unnamed = [str(b) for b in range(1, layer.band_count + 1) if b not in held]
        raise PartsError(
            f"{label}: layer '{layer.name}' is ticked with layers of other bands, so it is read as one group of "
            f"bands, but its band(s) {', '.join(unnamed)} match none of the model's bands: give its bands names "
            "(band descriptions such as B05, B8A) or tick only layers holding the model's bands."
        )
    return [held[band] for band in sorted(held)]


def build_parts(label: str, layers: Sequence[TickedLayer], is_series: bool) -> list[dict[str, Any]]:
    """The job's "parts" for ``layers`` of one modality (``label`` names it in messages): grouped by the
    model bands they hold; each part's files sorted by date with its "dates"."""
    groups: dict[tuple[str, ...], list[TickedLayer]] = {}
    for layer in layers:
        groups.setdefault(tuple(part_bands(layer, label)), []).append(layer)
    seen: dict[str, tuple[str, ...]] = {}
    for bands in groups:
        for band in bands:
            if band in seen:
                raise PartsError(
                    f"{label}: band {band} is in two groups of ticked layers ({', '.join(seen[band])} and "
                    f"{', '.join(bands)}): tick one product per group of bands."
                )
            seen[band] = bands
    parts, dates_of = [], {}
    for bands, members in groups.items():
        dated = []
        for layer in members:
            if not is_series:
                dated.append(("", layer))
                continue
            if not layer.date_text:
                raise PartsError(
                    f"{label}: the date of '{layer.name}' could not be read from its name: type it in the Date "
                    "column (YYYY-MM-DD)."
                )
            try:
                dated.append((parse_typed_date(layer.date_text).isoformat(), layer))
            except ValueError:
                raise PartsError(
                    f"{label}: '{layer.date_text}' (layer '{layer.name}') is not a date: write it as YYYY-MM-DD."
                ) from None
        dated.sort(key=lambda pair: pair[0])
        dates = [d for d, _ in dated]
        if len(set(dates)) != len(dates):
            twice = sorted({d for d in dates if dates.count(d) > 1})
            raise PartsError(
                f"{label}: two ticked layers of bands {', '.join(bands)} have the same date ({', '.join(twice)}); "
                "untick one."
            )
        if not is_series and len(members) > 1:
            raise PartsError(f"{label} is one image: tick one layer per group of bands.")
        part: dict[str, Any] = {"files": [layer.file for _, layer in dated], "bands": list(bands)}
        if is_series:
            part["dates"] = dates
            dates_of[bands] = set(dates)
        parts.append(part)
    if dates_of:
        union = set().union(*dates_of.values())
        for bands, dates in dates_of.items():
            if dates != union:
                missing = sorted(union - dates)
                shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
                raise PartsError(
                    f"{label}: the layers of bands {', '.join(bands)} lack the date(s) {shown} that the other "
                    "ticked layers have: every group of bands needs the same dates (tick or untick the layers of "
                    "those dates)."
                )
    return parts
