"""The QGIS plugin object: registers the Processing provider (also under qgis_process)."""

from __future__ import annotations

from qgis.core import QgsApplication

from omnisat_qgis.provider import OmniSatProvider


class OmniSatPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider: OmniSatProvider | None = None
        self.setup_action = None

    def initProcessing(self):  # noqa: N802 - QGIS API
        # Called by QGIS (and by qgis_process) before initGui; registering here is
        # what makes the algorithms available headless.
        if self.provider is None:
            self.provider = OmniSatProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 - QGIS API
        self.initProcessing()
        from qgis.PyQt.QtWidgets import QAction

        self.setup_action = QAction("Set up the OmniSat engine…", self.iface.mainWindow())
        self.setup_action.triggered.connect(self.show_setup_dialog)
        self.iface.addPluginToMenu("OmniSat", self.setup_action)

    def show_setup_dialog(self):
        from omnisat_qgis.gui.setup_dialog import SetupDialog

        SetupDialog(self.iface.mainWindow()).exec()

    def unload(self):
        if self.setup_action is not None:
            self.iface.removePluginMenu("OmniSat", self.setup_action)
            self.setup_action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
