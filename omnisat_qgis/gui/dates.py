"""Dates of layers as the engine reads them, shown in the dock before anything runs.

The engine's date rules (engine.io.dates: pure Python, no torch, no rasterio) are
used as they are, so the dock shows what the engine will see.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from qgis.core import QgsRasterLayer

from omnisat_qgis.paths import engine_root


def _dates_module():
    # An installed plugin carries the engine inside its folder: make it importable once.
    root = str(engine_root())
    if root not in sys.path:
        sys.path.append(root)
    from engine.io import dates

    return dates


def date_of_layer(layer: QgsRasterLayer) -> dt.date | None:
    """The acquisition date in the layer's file name, else in its layer name, else None."""
    dates = _dates_module()
    source = Path(layer.source().split("|")[0]).name
    return dates.date_from_name(source) or dates.date_from_name(layer.name())


def parse_typed_date(text: str) -> dt.date:
    """A date typed by the analyst; ValueError when it is not one."""
    try:
        return _dates_module().parse_date(text)
    except Exception as exc:  # the engine's EngineError: the caller words the message
        raise ValueError(str(exc)) from None
