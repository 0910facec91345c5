"""Unloading the plugin (QGIS closing, Plugin Reloader) leaves nothing that can call into deleted
objects: no dock rebuilt while the action is taken apart, no project signal left to a dead dock,
no map tool of the dock left on the canvas (issue 22: a segfault once seen at exit)."""

from __future__ import annotations

from qgis.core import QgsProject, QgsRasterLayer

from omnisat_qgis.plugin import OmniSatPlugin
from tests.plugin.test_dock import scene  # noqa: F401 - fixture


def test_unload_takes_the_dock_apart_cleanly(qgis_iface, qgis_new_project, scene):  # noqa: F811
    plugin = OmniSatPlugin(qgis_iface)
    plugin.initGui()
    dock = plugin.show_dock(True)
    dock.inputs_panel.start_drawing()
    canvas = qgis_iface.mapCanvas()
    assert canvas.mapTool() is dock.inputs_panel._map_tool
    panel = dock.inputs_panel
    plugin.unload()
    assert plugin.dock is None and plugin.action is None
    assert canvas.mapTool() is None  # the dock's rectangle tool is off the canvas before the dock goes
    assert plugin.show_dock(False) is None and plugin.dock is None  # hiding builds nothing
    # The dock no longer follows the project: a layer added (or the project cleared) after the unload reaches
    # no slot of a deleted widget (PyQt aborts QGIS on an exception in a slot).
    assert panel._listening is False
    layer = QgsRasterLayer(str(sorted((scene / "s2").glob("*.tif"))[0]), "S2_20150820", "gdal")
    QgsProject.instance().addMapLayer(layer)
    QgsProject.instance().clear()
