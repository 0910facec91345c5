"""The QGIS plugin object: the Processing provider (also under qgis_process), and in the GUI
a toolbar button and a Raster menu entry that open the OmniSat dock."""

from __future__ import annotations

from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import Qt

# QAction lives in QtGui on Qt6; QGIS 3.40's qgis.PyQt.QtGui re-exports it on Qt5 too.
from qgis.PyQt.QtGui import QAction, QIcon

from omnisat_qgis.paths import resources_dir
from omnisat_qgis.provider import OmniSatProvider
from omnisat_qgis.worker_client import shutdown_workers

MENU = "&OmniSat"
DOCK_WIDTH = 520  # pixels


class OmniSatPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider: OmniSatProvider | None = None
        self.action: QAction | None = None
        self.dock = None
        self.menu_actions: list = []

    def initProcessing(self):  # noqa: N802 - QGIS API
        # Called by QGIS (and by qgis_process) before initGui; registering here is
        # what makes the algorithms available headless.
        if self.provider is None:
            self.provider = OmniSatProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 - QGIS API
        self.initProcessing()
        self.action = QAction(
            QIcon(str(resources_dir() / "icons" / "omnisat.svg")), "OmniSat dock", self.iface.mainWindow()
        )
        self.action.setCheckable(True)
        self.action.setToolTip("Classify with OmniSat / AnySat: pick layers, draw labels, fit, preview, map")
        self.action.toggled.connect(self.show_dock)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(MENU, self.action)
        QgsProject.instance().writeProject.connect(self._save_state)
        QgsProject.instance().readProject.connect(self._restore_state)

        for text, slot in (
            ("Set up the OmniSat engine…", self.show_setup_dialog),
            ("Download the official AnySat model…", lambda: algorithm_dialog("omnisat:fetchmodel")),
            ("Learn this area (pretrain on my layers)…", lambda: algorithm_dialog("omnisat:learnarea")),
        ):
            action = QAction(text, self.iface.mainWindow())
            action.triggered.connect(slot)
            self.iface.addPluginToMenu("OmniSat", action)
            self.iface.addPluginToRasterMenu(MENU, action)  # beside the dock's entry, where analysts look
            self.menu_actions.append(action)

    def show_dock(self, visible: bool = True):
        if self.dock is None and not visible:
            return None  # hiding a dock that does not exist must not build one (e.g. while unloading)
        if self.dock is None:
            from omnisat_qgis.gui.dock import OmniSatDock  # the GUI is built only when first asked for

            self.dock = OmniSatDock(self.iface, self.iface.mainWindow())
            self.dock.visibilityChanged.connect(self.action.setChecked)
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
            # QGIS opens a new dock at its narrowest: wide enough for the layer tables and the buttons.
            self.iface.mainWindow().resizeDocks([self.dock], [DOCK_WIDTH], Qt.Orientation.Horizontal)
            self.dock.restore_state()
        self.dock.setVisible(visible)
        return self.dock

    def _save_state(self, *args):
        if self.dock is not None:
            self.dock.save_state()

    def _restore_state(self, *args):
        if self.dock is not None:
            self.dock.restore_state()

    def show_setup_dialog(self):
        from omnisat_qgis.gui.setup_dialog import SetupDialog

        SetupDialog(self.iface.mainWindow()).exec()

    def unload(self):
        for action in self.menu_actions:
            self.iface.removePluginMenu("OmniSat", action)
            self.iface.removePluginRasterMenu(MENU, action)
            action.deleteLater()
        self.menu_actions = []
        if self.action is not None:
            # First cut the action from the dock: hiding the dock below must not toggle the action back
            # into show_dock while both are being taken apart.
            self.action.toggled.disconnect(self.show_dock)
            if self.dock is not None:
                self.dock.visibilityChanged.disconnect(self.action.setChecked)
            QgsProject.instance().writeProject.disconnect(self._save_state)
            QgsProject.instance().readProject.disconnect(self._restore_state)
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.dock is not None:
            # No orphan worker, no project signal or map tool left pointing into the deleted dock.
            self.dock.release()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        shutdown_workers()  # the engine workers kept between runs end with the plugin


def algorithm_dialog(algorithm_id: str, params: dict | None = None) -> None:
    """The Processing dialog of one of the provider's algorithms (progress, Cancel and log come with it)."""
    import processing

    processing.execAlgorithmDialog(algorithm_id, params or {})
