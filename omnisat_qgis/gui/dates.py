"""Dates of layers as the engine reads them, shown in the dock before anything runs.

The engine's date rules (engine/contract.py: pure Python, no torch, no rasterio) are
used as they are, so the dock shows what the engine will see.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from qgis.core import QgsRasterLayer

from omnisat_qgis.contract import contract


def date_of_layer(layer: QgsRasterLayer) -> dt.date | None:
    """The acquisition date in the layer's file name, else in its layer name, else None."""
    source = Path(layer.source().split("|")[0]).name
    return contract.date_from_name(source) or contract.date_from_name(layer.name())


def parse_typed_date(text: str) -> dt.date:
    """A date typed by the analyst; ValueError when it is not one."""
    try:
        return contract.parse_date(text)
    except contract.ContractError as exc:  # the caller words the message
        raise ValueError(str(exc)) from None
