"""The QGIS plugin object: registers the Processing provider (also under qgis_process)."""

from __future__ import annotations

from qgis.core import QgsApplication

from omnisat_qgis.provider import OmniSatProvider


class OmniSatPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider: OmniSatProvider | None = None

    def initProcessing(self):  # noqa: N802 - QGIS API
        # Called by QGIS (and by qgis_process) before initGui; registering here is
        # what makes the algorithms available headless.
        if self.provider is None:
            self.provider = OmniSatProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 - QGIS API
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
