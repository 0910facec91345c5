"""The dock's Change tab on real eo-learn Sentinel-2 dates: two periods of the series, then the
same two periods as embeddings rasters; styled magnitude and change layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsPalettedRasterRenderer, QgsProject, QgsRasterLayer, QgsSingleBandPseudoColorRenderer

from omnisat_qgis.gui.panels.change import RASTERS
from tests.plugin.test_dock import dock, scene, wait  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def results(name: str) -> dict[str, QgsRasterLayer]:
    group = QgsProject.instance().layerTreeRoot().findGroup(name)
    return {node.layer().name(): node.layer() for node in group.findLayers()}


def test_two_periods_give_a_styled_magnitude_and_change_layer(dock):  # noqa: F811
    import rasterio

    layers = {lyr.name(): lyr for lyr in dock.raster_layers()}
    tab = dock.change_tab
    assert tab.modality_combo.currentData() == "s2" and [r.title()[:6] for r in tab.rows] == ["Before", "After:"]
    assert not tab.rows[0].checked_layers()  # nothing ticked until the analyst says which dates are which
    tab.fill(
        dock.raster_layers(),
        {"Before": [layers["S2_20150820"].id(), layers["S2_20150830"].id()], "After": [layers["S2_20150909"].id()]},
    )
    dock.extent_combo.setCurrentText("Where the inputs overlap")
    dock.detect_change()
    assert (
        "qgis_process run omnisat:change" in dock.command.toPlainText() and "BEFORE_JOB=" in dock.command.toPlainText()
    )
    wait(dock)
    assert "of the patches changed" in dock.messages[-1], dock.messages
    # What the layer is worth is said with it: model cells, not fields; Otsu always finds some change.
    assert "not field edges" in dock.messages[-1] and "always splits the magnitudes in two" in dock.messages[-1]
    group = dock.messages[-1].split("group '")[1].rstrip("'.")
    found = results(group)
    assert isinstance(found["Change magnitude"].renderer(), QgsSingleBandPseudoColorRenderer)
    change = found["Change"].renderer()
    assert isinstance(change, QgsPalettedRasterRenderer)
    assert [c.label for c in change.classes()] == ["no change", "change"]
    run = Path(found["Change"].source()).parent

    # The same two periods as the embeddings rasters the first run kept: the same magnitude.
    tab.mode_combo.setCurrentText(RASTERS)
    for combo, key in zip(tab.raster_combos, ("before", "after")):
        layer = QgsRasterLayer(str(run / f"{key}_embeddings.tif"), key, "gdal")
        QgsProject.instance().addMapLayer(layer)
        combo.setLayer(layer)
    dock.detect_change()
    assert "BEFORE_RASTER=" in dock.command.toPlainText()
    wait(dock)
    again = results(dock.messages[-1].split("group '")[1].rstrip("'."))
    with rasterio.open(found["Change magnitude"].source()) as a, rasterio.open(again["Change magnitude"].source()) as b:
        np.testing.assert_array_equal(a.read(), b.read())
