"""The QGIS plugin object: registers the Processing provider (also under qgis_process)."""

from __future__ import annotations

from qgis.core import QgsApplication

from omnisat_qgis.provider import OmniSatProvider


class OmniSatPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider: OmniSatProvider | None = None
        self.menu_actions: list = []

    def initProcessing(self):  # noqa: N802 - QGIS API
        # Called by QGIS (and by qgis_process) before initGui; registering here is
        # what makes the algorithms available headless.
        if self.provider is None:
            self.provider = OmniSatProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 - QGIS API
        self.initProcessing()
        from qgis.PyQt.QtWidgets import QAction

        for text, slot in (("Set up the OmniSat engine…", self.show_setup_dialog),
                           ("Download the official AnySat model…", self.show_fetch_model)):
            action = QAction(text, self.iface.mainWindow())
            action.triggered.connect(slot)
            self.iface.addPluginToMenu("OmniSat", action)
            self.menu_actions.append(action)

    def show_setup_dialog(self):
        from omnisat_qgis.gui.setup_dialog import SetupDialog

        SetupDialog(self.iface.mainWindow()).exec()

    def show_fetch_model(self):
        import processing

        processing.execAlgorithmDialog("omnisat:fetchmodel")

    def unload(self):
        for action in self.menu_actions:
            self.iface.removePluginMenu("OmniSat", action)
        self.menu_actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
